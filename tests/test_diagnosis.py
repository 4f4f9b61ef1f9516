"""Diagnosis: metrics on hand-made maps, classes at their thresholds, derived views, JSON, figures."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from headsurgeon import HeadsurgeonError, diagnose
from headsurgeon.capture import AttentionBatch
from headsurgeon.diagnosis import BOS_SINK, DEAD, HEALTHY, LOW_ENTROPY, Diagnosis, Thresholds, classify
from headsurgeon.diagnosis.alibi import alibi_analysis
from headsurgeon.diagnosis.metrics import head_stats
from headsurgeon.models import HeadRef

DOCS = Path(__file__).resolve().parents[1] / "docs"


# ----- metrics on hand-made maps --------------------------------------------------------------
def hand_made_maps() -> torch.Tensor:
    """``[1, 3, 4, 4]``: head 0 all on position 0, head 1 uniform causal, head 2 on itself."""
    T = 4
    sink = torch.zeros(T, T)
    sink[:, 0] = 1
    uniform = torch.tril(torch.ones(T, T))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    self_only = torch.eye(T)
    return torch.stack([sink, uniform, self_only])[None]


def test_metrics_on_hand_made_maps_excluding_query_zero():
    s = head_stats(AttentionBatch(0, hand_made_maps(), torch.tensor([4])))
    bos, ent, loc = s.bos_mass[0].tolist(), s.entropy[0].tolist(), s.local_mass[0].tolist()
    # queries t = 1, 2, 3
    assert bos == pytest.approx([1.0, (1 / 2 + 1 / 3 + 1 / 4) / 3, 0.0])
    assert ent == pytest.approx([0.0, (math.log(2) + math.log(3) + math.log(4)) / 3, 0.0])
    # local band = keys t-2..t: the sink head's query 3 cannot see position 0 in its band
    assert loc == pytest.approx([(1 + 1 + 0) / 3, (1 + 1 + 3 / 4) / 3, 1.0])


def test_metrics_on_hand_made_maps_including_query_zero():
    s = head_stats(AttentionBatch(0, hand_made_maps(), torch.tensor([4])), include_first_query=True)
    assert s.bos_mass[0].tolist() == pytest.approx([1.0, (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4, 1 / 4])
    assert s.entropy[0].tolist() == pytest.approx([0.0, (0 + math.log(2) + math.log(3) + math.log(4)) / 4, 0.0])
    assert s.local_mass[0].tolist() == pytest.approx([3 / 4, (1 + 1 + 1 + 3 / 4) / 4, 1.0])


@pytest.mark.parametrize("n", [2, 7, 50])
def test_entropy_of_a_uniform_row_is_log_n(n):
    w = torch.zeros(1, 1, n, n)
    w[0, 0] = torch.eye(n)
    w[0, 0, n - 1] = 1.0 / n  # only the last query is uniform over its n keys
    s = head_stats(AttentionBatch(0, w, torch.tensor([n])))
    # queries 1..n-1: n-2 of them have entropy 0, the last has log(n)
    assert s.entropy.item() == pytest.approx(math.log(n) / (n - 1), rel=1e-6)


def test_padded_queries_do_not_count():
    maps = hand_made_maps()
    batch = torch.cat([maps, maps.clone()])  # second sequence: length 2, rest is padding
    batch[1, :, 2:, :] = 0.123  # padding rows carry junk
    s = head_stats(AttentionBatch(0, batch, torch.tensor([4, 2])))
    assert s.bos_mass[1].tolist() == pytest.approx([1.0, 1 / 2, 0.0])  # only query 1 counts
    assert s.entropy[1].tolist() == pytest.approx([0.0, math.log(2), 0.0])


# ----- classes ------------------------------------------------------------------------------------
def test_classes_at_the_default_thresholds():
    t = Thresholds()
    bos = np.array([0.0, 0.5, 0.5000001, 0.95, 0.9500001, 1.0, 0.3, 0.3, 0.7, 0.99])
    ent = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.4999, 0.5, 0.1, 0.1])
    expected = [HEALTHY, HEALTHY, BOS_SINK, BOS_SINK, DEAD, DEAD, LOW_ENTROPY, HEALTHY, BOS_SINK, DEAD]
    assert classify(bos, ent, t).tolist() == expected  # low entropy never overrides a sink class


def test_classes_follow_custom_thresholds():
    t = Thresholds(sink=0.3, dead=0.6, low_entropy=1.0)
    bos = np.array([0.2, 0.31, 0.6, 0.61, 0.2])
    ent = np.array([1.5, 0.1, 0.1, 0.1, 0.99])
    assert classify(bos, ent, t).tolist() == [HEALTHY, BOS_SINK, BOS_SINK, DEAD, LOW_ENTROPY]


@pytest.mark.parametrize(
    "kw", [dict(sink=0.6, dead=0.5), dict(sink=0.5, dead=0.5), dict(sink=-0.1), dict(dead=1.01), dict(low_entropy=-1.0)]
)
def test_thresholds_out_of_order_are_rejected(kw):
    with pytest.raises(HeadsurgeonError) as info:
        Thresholds(**kw)
    assert "\n" not in str(info.value)


# ----- derived views on a hand-made Diagnosis -----------------------------------------------------
def make_diagnosis(bos: np.ndarray, entropy: np.ndarray | None = None, thresholds: Thresholds | None = None,
                   spread: float = 0.0) -> Diagnosis:
    """Two prompts whose mean is ``bos`` (``[L, H]``), the second shifted by ``spread``."""
    bos = np.asarray(bos, dtype=float)
    entropy = np.full(bos.shape, 2.0) if entropy is None else np.asarray(entropy, dtype=float)
    per_prompt = {
        "bos_mass": np.stack([bos - spread, bos + spread]),
        "entropy": np.stack([entropy, entropy]),
        "local_mass": np.stack([1 - bos, 1 - bos]),
    }
    L, H = bos.shape
    return Diagnosis(
        model={"name": "hand-made", "source": "test", "family": "llama", "model_type": "llama",
               "num_layers": L, "num_heads": H, "num_kv_heads": H, "head_dim": 8, "hidden_size": 8 * H},
        settings={"thresholds": (thresholds or Thresholds()).to_dict(), "include_first_query": False, "bos": "auto",
                  "prompt_source": "test", "max_length": 512, "batch_size": 4},
        prompts=[{"name": f"p{i}", "domain": "test", "tokens": 10, "first_token": "x"} for i in range(2)],
        per_prompt=per_prompt,
    )


BOS = np.array([
    [0.10, 0.45, 0.55, 0.97],
    [0.20, 0.30, 0.65, 0.90],
    [0.05, 0.10, 0.20, 0.80],
])


def test_counts_sweep_and_collapsed_heads():
    d = make_diagnosis(BOS, spread=0.01)
    assert d.shape == (3, 4)
    assert d.counts() == {HEALTHY: 7, BOS_SINK: 4, DEAD: 1, LOW_ENTROPY: 0}
    assert d.threshold_sweep() == {
        "0.40": {HEALTHY: 6, BOS_SINK: 5, DEAD: 1, LOW_ENTROPY: 0},
        "0.50": {HEALTHY: 7, BOS_SINK: 4, DEAD: 1, LOW_ENTROPY: 0},
        "0.60": {HEALTHY: 8, BOS_SINK: 3, DEAD: 1, LOW_ENTROPY: 0},
    }
    assert d.collapsed() == [HeadRef(0, 2), HeadRef(0, 3), HeadRef(1, 2), HeadRef(1, 3), HeadRef(2, 3)]
    assert d.heads(DEAD) == [HeadRef(0, 3)]
    np.testing.assert_allclose(d.bos_mass, BOS)
    np.testing.assert_allclose(d.std("bos_mass"), np.full(BOS.shape, 0.02 / math.sqrt(2)))  # ddof=1 over 2 prompts
    s = d.summary()
    assert s["heads"] == 12 and s["collapsed_percent"] == pytest.approx(100 * 5 / 12, abs=0.01)


def test_sweep_skips_sink_thresholds_at_or_above_dead():
    d = make_diagnosis(BOS, thresholds=Thresholds(sink=0.3, dead=0.55))
    assert list(d.threshold_sweep()) == ["0.40", "0.50"]
    assert d.threshold_sweep()["0.40"][DEAD] == 4  # 0.65, 0.80, 0.90, 0.97 are above 0.55


def test_columns_and_sick_band():
    d = make_diagnosis(BOS)
    cols = d.columns()
    assert cols["collapsed_layers"] == [0, 0, 2, 3]
    assert cols["mean_bos_mass"] == pytest.approx(BOS.mean(0).tolist(), abs=1e-6)  # rounded for JSON
    assert cols["sick_band"] == [2, 3]  # collapsed in >= 1/2 of layers and >= 2x as often as the other indices
    assert d.columns(band_fraction=1.0)["sick_band"] == [3]
    assert "at least 0.5 of the layers" in cols["band_rule"]


def test_evenly_spread_collapse_is_no_band():
    """Every head index collapsed in about half the layers (like SmolLM2): no index stands out."""
    bos = np.array([[0.9, 0.1, 0.9, 0.1], [0.1, 0.9, 0.1, 0.9], [0.9, 0.9, 0.9, 0.9], [0.1, 0.1, 0.1, 0.1]])
    cols = make_diagnosis(bos).columns()
    assert cols["collapsed_layers"] == [2, 2, 2, 2] and cols["sick_band"] == []


def test_most_collapsed_and_short_prompt_notes():
    d = make_diagnosis(BOS)
    top = d.most_collapsed(2)
    assert [h for h, _ in top] == sorted(d.collapsed(), key=lambda r: -d.bos_mass[r.layer, r.head])[:2]
    assert top[0][1] == pytest.approx(d.bos_mass.max())
    for p in d.prompts:
        p["tokens"] = 12
    assert any("shorter than 64 tokens" in n for n in d.notes())
    for p in d.prompts:
        p["tokens"] = 300
    assert d.notes() == []


def test_single_prompt_has_zero_spread():
    d = make_diagnosis(BOS)
    d.per_prompt = {m: v[:1] for m, v in d.per_prompt.items()}
    assert (d.std("bos_mass") == 0).all()


# ----- ALiBi analysis -----------------------------------------------------------------------
def test_alibi_reading_says_gentler_slopes_sink_when_they_do():
    slopes = np.array([0.5, 0.25, 0.125, 0.0625])  # steep -> gentle
    bos = np.tile(np.array([0.05, 0.2, 0.6, 0.9]), (3, 1))  # gentle heads sink
    out = alibi_analysis(slopes, bos, bos > 0.5)
    assert out["spearman_rho_all_heads"] < -0.8
    assert out["spearman_rho_head_index_means"] == pytest.approx(-1.0)
    assert "gentler slopes have higher BOS mass" in out["reading"]
    assert out["median_slope_collapsed"] < out["median_slope_healthy"]
    flipped = alibi_analysis(slopes, bos[:, ::-1].copy(), bos[:, ::-1] > 0.5)
    assert "steeper slopes have higher BOS mass" in flipped["reading"]


# ----- the whole run on tiny models -------------------------------------------------------------
PROMPTS = ["The cat sat on the mat and looked at the door.", "for i in range(10):\n    print(i * i)", "x = 1"]


def test_diagnose_tiny_model_end_to_end(tmp_path, tiny_factory):
    loaded = tiny_factory("bloom")
    d = diagnose(loaded, prompts=PROMPTS, out_dir=tmp_path, progress=False)
    assert d.shape == (2, 4) and d.per_prompt["bos_mass"].shape == (3, 2, 4)
    assert sum(d.counts().values()) == 8
    assert [p["tokens"] for p in d.prompts] == [len(loaded.tokenizer(t)["input_ids"]) for t in PROMPTS]
    assert [p["first_token"] for p in d.prompts] == ["T", "f", "x"]  # tiny BLOOM adds no BOS
    assert d.settings["include_first_query"] is False and d.settings["prompt_source"] == "user"
    assert d.model["family"] == "bloom" and d.model["num_heads"] == 4
    # ALiBi section: slopes from the adapter, correlation over all heads
    assert d.alibi is not None
    np.testing.assert_allclose(d.alibi["slopes"], loaded.adapter.alibi_slopes().numpy(), rtol=1e-6)
    assert -1.0 <= d.alibi["spearman_rho_all_heads"] <= 1.0
    # files: the JSON and two real PNGs
    for name in ("diagnosis.json", "heatmap.png", "histogram.png"):
        assert (tmp_path / name).is_file(), name
    for name in ("heatmap.png", "histogram.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, (name, len(data))


def test_alibi_section_only_for_alibi_models(tiny_factory):
    d = diagnose(tiny_factory("llama-gqa"), prompts=PROMPTS, progress=False)
    assert d.alibi is None
    assert d.prompts[0]["first_token"] == "<bos>"  # tiny Llama tokenizer adds one


def test_include_first_query_is_recorded_and_raises_bos_mass(tiny_factory):
    loaded = tiny_factory("gpt2")
    excl = diagnose(loaded, prompts=PROMPTS, progress=False)
    incl = diagnose(loaded, prompts=PROMPTS, include_first_query=True, progress=False)
    assert incl.settings["include_first_query"] is True
    assert (incl.per_prompt["bos_mass"] > excl.per_prompt["bos_mass"]).all()


def test_bad_options_are_user_errors(tmp_path, tiny_factory):
    loaded = tiny_factory("gpt2")
    with pytest.raises(HeadsurgeonError, match="batch-size"):
        diagnose(loaded, prompts=PROMPTS, batch_size=0, progress=False)
    with pytest.raises(HeadsurgeonError, match="empty"):
        diagnose(loaded, prompts=[], progress=False)
    with pytest.raises(HeadsurgeonError, match="not both"):
        diagnose(loaded, prompts=PROMPTS, prompt_file=tmp_path / "p.txt", progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(HeadsurgeonError, match="cannot write to output directory"):
        diagnose(loaded, prompts=PROMPTS, out_dir=blocker / "sub", progress=False)


def test_json_round_trip(tmp_path, tiny_factory):
    d = diagnose(tiny_factory("qwen2-gqa"), prompts=PROMPTS, progress=False)
    path = d.save(tmp_path / "d.json")
    back = Diagnosis.load(path)
    for m in ("bos_mass", "entropy", "local_mass"):
        np.testing.assert_allclose(back.per_prompt[m], d.per_prompt[m], atol=1e-6, rtol=0)
        np.testing.assert_allclose(back.mean(m), d.mean(m), atol=1e-6, rtol=0)
    assert back.classes.tolist() == d.classes.tolist()
    assert back.thresholds == d.thresholds
    assert (back.model, back.settings, back.prompts, back.alibi) == (d.model, d.settings, d.prompts, d.alibi)
    doc = json.loads(path.read_text())
    assert doc["classes"] == d.classes.tolist() and doc["summary"]["counts"] == d.counts()
    assert doc["schema_version"].startswith("1.") and doc["kind"] == "diagnosis" and doc["package_version"]


def test_json_is_readable_by_others(tmp_path):
    """Atomic writes must not leave the result private to the writing user (mkstemp makes 0600)."""
    import os

    path = make_diagnosis(BOS).save(tmp_path / "d.json")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_loading_rejects_foreign_documents(tmp_path):
    good = json.loads(make_diagnosis(BOS).save(tmp_path / "d.json").read_text())
    cases = {
        "missing.json": None,
        "garbage.json": "{not json",
        "kind.json": json.dumps({**good, "kind": "plan"}),
        "schema.json": json.dumps({**good, "schema_version": "2.0"}),
    }
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(HeadsurgeonError) as info:
            Diagnosis.load(tmp_path / name)
        assert "\n" not in str(info.value), name


@pytest.mark.parametrize("case", ["bloom", "gpt_oss", "gemma2", "olmo2"])
def test_every_json_key_is_documented(case, tmp_path, tiny_factory):
    """docs/schema.md documents every key diagnosis.json carries (keeps the doc honest); the cases
    cover the family-specific keys (sliding windows, learned sinks, soft-cap, warnings)."""
    d = diagnose(tiny_factory(case), prompts=PROMPTS, progress=False)
    doc = d.to_dict()
    documented = set(re.findall(r"`([a-z_0-9.\[\]]+)`", (DOCS / "schema.md").read_text()))
    nested = {"model", "model.attention", "settings", "settings.thresholds", "summary", "columns", "alibi", "layers", "sinks"}

    def walk(obj, prefix):
        for k, v in obj.items():
            key = f"{prefix}{k}"
            assert key in documented, f"{key} is not documented in docs/schema.md"
            if isinstance(v, dict) and key in nested:
                walk(v, key + ".")

    walk(doc, "")
    walk(doc["prompts"][0], "prompts[].")


def test_bf16_rounding_past_one_reads_back_but_not_in_float32(tmp_path, tiny_factory):
    """A bf16 run can average a head's BOS weight to 1.00004 (seen on SmolLM2): the reader allows
    the same rounding the capture allowed for that dtype, and no more for float32 files."""
    doc = diagnose(tiny_factory("qwen2-gqa"), prompts=PROMPTS, progress=False).to_dict()
    doc["per_prompt"]["bos_mass"][0][0][0] = 1.001  # within bf16 rounding, past float32's
    for dtype, ok in (("bfloat16", True), ("float32", False), (None, False)):
        settings = {**doc["settings"], "dtype": dtype}
        (tmp_path / "d.json").write_text(json.dumps({**doc, "settings": settings}))
        if ok:
            assert Diagnosis.load(tmp_path / "d.json").per_prompt["bos_mass"][0, 0, 0] == pytest.approx(1.001)
        else:
            with pytest.raises(HeadsurgeonError, match=r"outside \[0, 1\]"):
                Diagnosis.load(tmp_path / "d.json")
