"""run_extremes end to end on tiny models: JSON round trip, figures, parts, domains, CLI, errors."""

import json

import numpy as np
import pytest

from headsurgeon.cli.main import run as cli
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.extremes import ExtremesResult, ExtremesSettings, run_extremes
from headsurgeon.extremes.domains import build_domains, parse_domain_option
from headsurgeon.models import HeadRef, wrap_model
from headsurgeon.models.tiny import tiny_model_and_tokenizer


@pytest.fixture(scope="module")
def small():
    model, tok = tiny_model_and_tokenizer("qwen2", layers=3, heads=4, kv_heads=2)
    return wrap_model(model, tok)


@pytest.fixture(scope="module")
def full(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("extremes")
    settings = ExtremesSettings(sink_threshold=0.2, dormant_threshold=0.1, margin=0.05, intervention_prompts=1)
    res = run_extremes(small, domains=["prose", "code", "math"], local_text=0, settings=settings, max_length=40, out_dir=out, progress=False)
    return res, out


def test_full_run_writes_json_and_figures(full):
    res, out = full
    for name in ("extremes.json", "norms.png", "drain_heatmap.png", "dormancy.png", "domain_dependent.png", "interventions.png"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "extremes.json").read_text())
    assert doc["kind"] == "extremes" and doc["schema_version"] and doc["model"]["family"] == "llama"
    assert [d["name"] for d in doc["domains"]] == ["prose", "code", "math"]
    assert sum(d["tokens"] for d in doc["domains"]) == sum(p["tokens"] for p in doc["prompts"])
    assert len(doc["per_prompt"]["value_first"]) == 6 and np.array(doc["per_prompt"]["resid_first"]).shape == (6, 4)


def test_json_round_trip(full):
    res, out = full
    back = ExtremesResult.load(out / "extremes.json")
    for k, v in res.per_prompt.items():
        np.testing.assert_allclose(back.per_prompt[k], v, atol=1e-6, equal_nan=True)
    assert back.interventions == res.interventions and back.massive_dims == res.massive_dims
    again = ExtremesResult.from_dict(json.loads(json.dumps(back.to_dict())))
    assert again.to_dict() == back.to_dict()
    assert (back.dormancy_classes() == res.dormancy_classes()).all()


def test_interventions_report_every_head_and_domain(full):
    res, _ = full
    iv = res.interventions
    assert iv["heads"], "the loose thresholds must yield some heads"
    for row in iv["heads"]:
        assert set(row["zero"]) == set(row["remove_sink"]) == {"prose", "code", "math"}
    assert any(abs(v) > 1e-4 for row in iv["heads"] for v in row["zero"].values())
    assert iv["prompts"] == {"prose": 1, "code": 1, "math": 1}
    assert set(iv["summary"]) == {"zero", "remove_sink"}


def test_only_some_parts(small, tmp_path):
    res = run_extremes(small, domains=["prose"], local_text=0, what="sinks", max_length=32, out_dir=tmp_path, progress=False)
    assert "value_first" not in res.per_prompt and "resid_first" not in res.per_prompt
    assert res.interventions is None and res.massive_dims is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extremes.json"]
    peak = run_extremes(small, domains=["prose"], local_text=0, what=["peak"], max_length=32, progress=False)
    assert "resid_first" in peak.per_prompt and "value_first" not in peak.per_prompt


def test_explicit_heads_and_user_domain(small, tmp_path):
    f = tmp_path / "legal.txt"
    f.write_text("The tenant shall pay the rent on the first day of each month.\n\nThe landlord shall keep the roof in repair.")
    res = run_extremes(small, domains=["code"], domain_files={"legal": f}, local_text=0, heads=[HeadRef(2, 1)],
                       settings=ExtremesSettings(intervention_prompts=2), max_length=32, progress=False)
    assert [d["name"] for d in res.domains] == ["code", "legal"]
    assert res.domains[1]["sources"] == [str(f)] and res.domains[1]["prompts"] == 2
    assert [r["head"] for r in res.interventions["heads"]] == ["L2H1"]


def test_domain_building(tmp_path):
    assert parse_domain_option(["a=x.txt", "b = y.txt"]) == {"a": "x.txt", "b": "y.txt"}
    with pytest.raises(HeadsurgeonError, match="name=path"):
        parse_domain_option(["nonsense"])
    with pytest.raises(HeadsurgeonError, match="unknown built-in domain"):
        build_domains(["poetry"])
    with pytest.raises(HeadsurgeonError, match="built in"):
        build_domains(["code"], {"code": tmp_path / "c.txt"})
    with pytest.raises(HeadsurgeonError, match="does not exist"):
        build_domains([], {"mine": tmp_path / "missing.txt"})
    with pytest.raises(HeadsurgeonError, match="no domains"):
        build_domains([])
    doms = build_domains(["prose", "math"], local_text=2)
    assert all(p.domain == d.name for d in doms for p in d.prompts)
    assert len(doms[1].prompts) == 2 and doms[1].sources == ["builtin"]  # no local source for math


def test_run_errors(small):
    with pytest.raises(HeadsurgeonError, match="unknown part"):
        run_extremes(small, what="sinks,bogus")
    with pytest.raises(HeadsurgeonError, match="interventions are not selected"):
        run_extremes(small, domains=["prose"], what="sinks", heads=[HeadRef(0, 0)], progress=False)
    with pytest.raises(HeadsurgeonError, match="does not exist"):
        run_extremes(small, domains=["prose"], heads=[HeadRef(9, 0)], progress=False)
    with pytest.raises(HeadsurgeonError, match="not an extremes"):
        ExtremesResult.from_dict({"kind": "diagnosis"})


def test_cli(tmp_path, saved_tiny):
    folder = saved_tiny("gpt2")
    out = tmp_path / "out"
    code = cli(["extremes", "--model", str(folder), "--builtin", "prose,repetitive", "--local-text", "0",
                "--only", "sinks,drain,peak,dormancy", "--max-length", "32", "--out", str(out), "--no-progress"])
    assert code == 0
    assert ExtremesResult.load(out / "extremes.json").parts == ["sinks", "drain", "peak", "dormancy"]
    assert cli(["extremes", "--model", str(folder), "--only", "bogus", "--out", str(out)]) == 2
    assert cli(["extremes", "--model", str(folder), "--head", "X", "--out", str(out)]) == 2


def test_every_json_key_is_documented(full):
    from pathlib import Path

    res, out = full
    doc = json.loads((out / "extremes.json").read_text())
    page = (Path(__file__).resolve().parents[2] / "docs" / "extremes.md").read_text()
    keys = set(doc) | set(doc["settings"]) | set(doc["options"]) | set(doc["per_prompt"]) | set(doc["dormancy"])
    keys |= set(doc["drain"]) | set(doc["drain"]["first"]) | set(doc["peak"]) | set(doc["peak"]["first"])
    keys |= set(doc["interventions"]) | set(doc["interventions"]["heads"][0]) | set(doc["domains"][0]) | set(doc["prompts"][0])
    keys |= {k for layer in doc["massive_dims"]["first"] for d in layer for k in d}
    if doc["dormancy"]["domain_dependent"]:
        keys |= set(doc["dormancy"]["domain_dependent"][0])
    missing = sorted(k for k in keys if f"`{k}`" not in page)
    assert not missing, f"document these extremes.json keys in docs/extremes.md: {missing}"
