"""Llama family (Llama, Mistral, Qwen2, SmolLM/SmolLM2): separate q/k/v/o projections, GQA.

``q_proj`` rows are ``[head0 | head1 | ...]`` (head_dim rows each); ``k_proj``/``v_proj`` rows are
one block per *KV* head, and query head ``h`` reads KV group ``h // (heads / kv_heads)``.
``o_proj`` is an ``nn.Linear`` whose *columns* ``[h*d, (h+1)*d)`` take head ``h``'s output.
Qwen2 has q/k/v biases; the others usually have none (``attention_bias``). Mistral windows every
layer when ``sliding_window`` is set (see :meth:`FamilyAdapter.attention_window`).

The newer families with the same projection layout (Qwen3, Gemma 2/3, OLMo 2, gpt-oss) subclass
:class:`LlamaAdapter` and add only what their attention computes differently.
"""

from __future__ import annotations

from .base import FamilyAdapter, HeadRef, HeadSlices, NeuronAxes, rows


class LlamaAdapter(FamilyAdapter):
    model_types = ("llama", "mistral", "qwen2")
    family = "llama"
    attention_path = "model.layers.{layer}.self_attn"
    output_projection_path = "model.layers.{layer}.self_attn.o_proj"
    block_path = "model.layers.{layer}"

    def head_slices(self, layer: int, head: int) -> HeadSlices:
        self.check_head(layer, head)
        p = self.path(self.attention_path, layer)
        d, g = self.head_dim, self.kv_group(head)

        def bias(name: str, start: int):
            full = f"{p}.{name}.bias"
            return rows(full, start, d) if self.has_param(full) else None

        return HeadSlices(
            head=HeadRef(layer, head),
            kv_group=g,
            q_weight=rows(f"{p}.q_proj.weight", head * d, d),
            k_weight=rows(f"{p}.k_proj.weight", g * d, d),  # shared by every head of group g
            v_weight=rows(f"{p}.v_proj.weight", g * d, d),
            o_weight=rows(f"{p}.o_proj.weight", head * d, d, dim=1),  # columns of o_proj
            q_bias=bias("q_proj", head * d),
            k_bias=bias("k_proj", g * d),
            v_bias=bias("v_proj", g * d),
        )

    def neuron_axes(self, layer: int) -> NeuronAxes:
        p = f"model.layers.{layer}.mlp"
        # up_proj [intermediate, hidden]: neuron i is row i; down_proj [hidden, intermediate]: column i.
        return NeuronAxes(up=f"{p}.up_proj.weight", up_dim=0, down=f"{p}.down_proj.weight", down_dim=1)


class QKNormMixin:
    """Families with ``q_norm``/``k_norm`` modules inside the attention: their weights belong to
    no single head, so they are frozen, shared parameters."""

    def shared_parameters(self, layer: int) -> list[str]:
        p = self.path(self.attention_path, layer)
        return [f"{p}.q_norm.weight", f"{p}.k_norm.weight"]
