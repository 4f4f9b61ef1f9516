"""Quality measures: perplexity trajectory, MLP dormancy, head-ablation groups, generations."""

import json

import pytest
import torch
from eval_helpers import AFTER, BEFORE, MID, PLAN, diag, fake_run

from headsurgeon.errors import HeadsurgeonError
from headsurgeon.evaluation import (
    GenerationSettings,
    ablation_before_after,
    ablation_effects,
    ablation_groups,
    compare_dormancy,
    generate_side_by_side,
    load_run,
    mlp_dormancy,
    per_head_effects,
    perplexity_trajectory,
)
from headsurgeon.models import wrap_model
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.tiny import tiny_model_and_tokenizer


def test_perplexity_trajectory_reads_the_manifest(tmp_path):
    run = load_run(fake_run(tmp_path / "run", [diag(BEFORE), diag(BEFORE), diag(MID), diag(AFTER)]))
    t = perplexity_trajectory(run.manifest)
    assert t["sets"] == ["train", "heldout"] and t["steps"] == [0, 4, 8]
    assert t["series"] == {"train": [10.0, 9.0, 8.0], "heldout": [11.0, 10.5, 10.0]}
    assert t["stock"] == {"train": 9.0, "heldout": 10.0}
    assert t["points"]["after re-initialisation"] == {"step": 0, "train": 10.0, "heldout": 11.0}
    assert t["points"]["best"] == {"step": 8, "train": 8.0, "heldout": 10.0}
    assert t["points"]["final"] == {"step": 8, "train": 8.0, "heldout": 10.0}
    m = {**run.manifest.to_dict(), "status": "running", "best": None}
    assert "latest" in perplexity_trajectory(m)["points"] and "best" not in perplexity_trajectory(m)["points"]


@pytest.mark.parametrize("family,up,down,transposed", [
    ("llama", "model.layers.{l}.mlp.up_proj.weight", "model.layers.{l}.mlp.down_proj.weight", False),
    ("gpt2", "transformer.h.{l}.mlp.c_fc.weight", "transformer.h.{l}.mlp.c_proj.weight", True),  # Conv1D: stored transposed
])
def test_mlp_dormancy_counts_the_neurons_made_quiet(family, up, down, transposed):
    lm = wrap_model(*tiny_model_and_tokenizer(family, seed=0))
    params = dict(lm.model.named_parameters())
    hidden = lm.adapter.hidden_size
    quiet = {0: [3, 7], 1: [5]}
    with torch.no_grad():
        for l in range(2):
            u, d = params[up.format(l=l)], params[down.format(l=l)]
            u.fill_(0.1)
            d.fill_(0.1)  # every neuron: 0.1 * sqrt(hidden) squared = 0.32 > 0.01
            for i in quiet[l]:
                (u[:, i] if transposed else u[i]).mul_(0.01)  # product 0.0032 < 0.01
    res = mlp_dormancy(lm)
    assert [r["dormant"] for r in res["per_layer"]] == [2, 1]
    n = res["per_layer"][0]["neurons"]
    assert res["neurons"] == 2 * n and res["dormant"] == 3 and res["fraction"] == pytest.approx(3 / (2 * n))
    assert res["min_product"] == pytest.approx(0.001 * hidden * 0.1, abs=1e-6)  # 0.01 x 0.1 x sqrt(hidden) each
    assert hidden * 0.1 * 0.1 > 0.01
    assert mlp_dormancy(lm, threshold=0.5)["dormant"] == 2 * n  # 0.32 < 0.5: everything is dormant
    same = compare_dormancy({"a": res, "b": mlp_dormancy(lm)})
    assert same["identical"]
    assert not compare_dormancy({"a": res, "b": mlp_dormancy(lm, threshold=0.5)})["identical"]


def test_ablation_groups_come_from_the_stock_classes():
    g = ablation_groups(diag(BEFORE), PLAN.targets)
    assert [str(h) for h in g["targets"]] == ["L1H0", "L2H0"]
    assert [str(h) for h in g["collapsed"]] == ["L1H2"]  # L1H0 and L2H0 are collapsed too, but targets
    assert len(g["healthy"]) == 9 and HeadRef(0, 0) in g["healthy"]  # low-entropy counts as not collapsed


def test_ablation_before_after_matches_direct_ablation():
    a = wrap_model(*tiny_model_and_tokenizer("llama", seed=0))
    b = wrap_model(*tiny_model_and_tokenizer("llama", seed=1))
    seqs = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    every = [HeadRef(l, h) for l in range(2) for h in range(4)]
    groups = {"targets": [HeadRef(0, 1)], "collapsed": [], "healthy": every[2:]}
    res = ablation_before_after({"stock": a, "repaired": b}, groups, seqs, per_group=3, batch_size=2, progress=False)
    assert res["groups"]["healthy"] == {"size": 6, "sampled": ["L0H2", "L1H0", "L1H3"]}  # evenly spread: 0, 2(.5->2), 5
    assert res["settings"]["tokens"] == 2 * 11
    for label, lm in (("stock", a), ("repaired", b)):
        got = res["models"][label]
        direct = per_head_effects(lm, seqs, [HeadRef(0, 2), HeadRef(1, 0), HeadRef(1, 3)], batch_size=2)
        assert got["groups"]["healthy"]["per_head"] == pytest.approx(direct.delta, abs=1e-5)
        assert got["groups"]["healthy"]["mean_per_head"] == pytest.approx(sum(direct.delta.values()) / 3, abs=1e-5)
        whole = ablation_effects(lm, seqs, {"all": groups["healthy"]}, batch_size=2)
        assert got["groups"]["healthy"]["set_delta"] == pytest.approx(whole.delta["all"], abs=1e-5)
        assert got["base_loss"] == pytest.approx(whole.base_loss, abs=1e-5)
        assert got["groups"]["collapsed"] == {"per_head": {}, "mean_per_head": None, "set_delta": None}
    assert res["models"]["stock"]["base_loss"] != res["models"]["repaired"]["base_loss"]


def test_generations_are_seeded_per_prompt_and_differ_only_by_weights(tmp_path):
    for name, seed in (("a", 0), ("a_copy", 0), ("b", 1)):
        m, tok = tiny_model_and_tokenizer("llama", seed=seed)
        m.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    settings = GenerationSettings(seed=3, max_new_tokens=12)
    prompts = ["Hello there", "def f(x):"]
    g = generate_side_by_side({k: tmp_path / k for k in ("a", "a_copy", "b")}, prompts, settings=settings, progress=False)
    assert g.texts["a"] == g.texts["a_copy"]  # same weights, same seeds -> same samples
    assert g.texts["a"] != g.texts["b"]
    assert all(0 < n <= 12 for n in g.new_tokens["a"])
    again = generate_side_by_side({"a": tmp_path / "a"}, prompts, settings=settings, progress=False)
    assert again.texts["a"] == g.texts["a"]
    assert json.loads(json.dumps(g.to_dict()))["settings"] == {"seed": 3, "temperature": 0.7, "top_p": 0.92, "max_new_tokens": 12}
    with pytest.raises(HeadsurgeonError, match="no config.json"):
        generate_side_by_side({"x": tmp_path}, prompts, progress=False)
    with pytest.raises(HeadsurgeonError, match="temperature"):
        GenerationSettings(temperature=0)
