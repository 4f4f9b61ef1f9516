"""MLP dormancy: the share of MLP neurons that barely read or write anything.

Neuron ``i`` of a layer's MLP reads the residual stream through row ``i`` of the up projection
and writes through column ``i`` of the down projection (positions given by the family
adapter's ``neuron_vectors``; fused gate/up projections and mixture-of-experts MLPs included). It is *dormant* when ``||up_i|| * ||down_i|| < threshold`` (0.01,
SCIENCE.md). Surgery only touches attention slices, so a repaired model must show exactly the
stock model's dormancy; measuring both turns that claim into a check. (Gated MLPs have a third,
gate, projection; the definition uses up and down only, as the paper does.)
"""

from __future__ import annotations

import torch

from headsurgeon.models import LoadedModel


@torch.no_grad()
def mlp_dormancy(loaded: LoadedModel, *, threshold: float = 0.01) -> dict:
    """``{threshold, neurons, dormant, fraction, min_product, per_layer: [{layer, neurons, dormant,
    fraction, min_product}]}``; ``min_product`` (the quietest neuron's norm product) shows how far
    a model is from the threshold when nothing is dormant."""
    ad = loaded.adapter
    rows = []
    for layer in range(ad.num_layers):
        up_vectors, down_vectors = ad.neuron_vectors(layer)
        up = torch.linalg.vector_norm(up_vectors, dim=1)
        down = torch.linalg.vector_norm(down_vectors, dim=1)
        product = up * down
        dormant = int((product < threshold).sum())
        rows.append({"layer": layer, "neurons": int(up.numel()), "dormant": dormant, "fraction": dormant / up.numel(),
                     "min_product": round(float(product.min()), 6)})
    total = sum(r["neurons"] for r in rows)
    dormant = sum(r["dormant"] for r in rows)
    return {"threshold": threshold, "neurons": total, "dormant": dormant, "fraction": dormant / total if total else 0.0,
            "min_product": min((r["min_product"] for r in rows), default=None), "per_layer": rows}


def compare_dormancy(results: dict[str, dict]) -> dict:
    """Several models' dormancy side by side, and whether every per-layer count is identical."""
    labels = list(results)
    first = results[labels[0]]
    identical = all(
        [r["dormant"] for r in results[k]["per_layer"]] == [r["dormant"] for r in first["per_layer"]] for k in labels[1:]
    )
    return {"models": results, "identical": identical}
