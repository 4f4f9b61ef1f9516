"""Options every computing command shares, with one spelling and one meaning each.

``--threads`` (torch CPU threads for this process) and ``--json`` (the command's result document
on stdout, the human summary suppressed; progress stays on stderr) are declared here once, so
the commands cannot drift apart. docs/cli.md lists the shared vocabulary.
"""

from __future__ import annotations

import json

import typer

from .display import console

THREADS_HELP = ("torch CPU threads for this command (default: torch's own choice, all cores); on a machine busy with other "
                "jobs use 1: there a second thread made every step several times slower.")
JSON_HELP = "Print the result as JSON on stdout (for scripts) instead of the summary; progress still goes to stderr."


def threads_option():
    return typer.Option(None, "--threads", min=1, help=THREADS_HELP)


def json_option():
    return typer.Option(False, "--json", help=JSON_HELP)


FORMAT_HELP = "File format of the figures written beside the JSON: png, svg or pdf (HTML reports embed PNG)."
DPI_HELP = "Resolution of raster figures (dots per inch; default 150)."


def format_option():
    return typer.Option("png", "--format", help=FORMAT_HELP)


def dpi_option():
    return typer.Option(None, "--dpi", help=DPI_HELP)


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` to this process (a CLI call is one process; the library leaves it alone)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def quiet_for_json(as_json: bool) -> None:
    """With ``--json`` the tables and "wrote ..." lines would corrupt stdout: silence them."""
    console.quiet = as_json


def emit_json(doc) -> None:
    """The result document on stdout, alone, so ``headsurgeon ... --json | jq`` works."""
    typer.echo(json.dumps(doc, indent=1, default=str))


def say(text: str) -> None:
    """A human line (suppressed with ``--json``)."""
    console.print(text, highlight=False, soft_wrap=True)
