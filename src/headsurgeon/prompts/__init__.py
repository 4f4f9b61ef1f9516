"""Prompt sets: the built-in diagnostic set and user prompt files."""

from .builtin import BUILTIN_PROMPTS, DOMAINS, Prompt, builtin_prompts
from .files import read_prompt_file

__all__ = ["BUILTIN_PROMPTS", "DOMAINS", "Prompt", "builtin_prompts", "read_prompt_file"]
