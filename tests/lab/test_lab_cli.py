"""``headsurgeon lab``: presets listing, one-line errors, and analyze on an existing folder."""

from __future__ import annotations

from headsurgeon.cli.main import run


def test_presets_lists_presets_and_keys(capsys):
    assert run(["lab", "presets"]) == 0
    text = capsys.readouterr().out
    assert "default" in text and "tiny" in text and "encodings" in text


def test_bad_encoding_is_an_input_error(capsys, tmp_path):
    assert run(["lab", "run", "--preset", "tiny", "--encodings", "alibi,bogus", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown encoding") and err.count("\n") == 1


def test_analyze_needs_a_lab_folder(capsys, tmp_path):
    assert run(["lab", "analyze", str(tmp_path)]) == 2
    assert "holds no lab runs" in capsys.readouterr().err


def test_analyze_rewrites_the_summary(tiny_lab, capsys):
    out, _ = tiny_lab
    assert run(["lab", "analyze", str(out)]) == 0
    text = capsys.readouterr().out
    assert "alibi: 1 runs (1 finished)" in text and "slope vs BOS rho" in text


def test_analyze_markdown_tables(tiny_lab, capsys):
    out, _ = tiny_lab
    assert run(["lab", "analyze", str(out), "--markdown"]) == 0
    text = capsys.readouterr().out
    assert "| alibi | 1 |" in text  # one seed in the tiny lab
    assert "| rope (null) |" in text and "held-out PPL step 0" in text


def test_analyze_writes_svg_and_prints_json(tiny_lab, capsys):
    import json

    out, _ = tiny_lab
    capsys.readouterr()
    assert run(["lab", "analyze", str(out), "--format", "svg", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "lab" and doc == json.loads((out / "lab.json").read_text())
    assert (out / "collapse.svg").read_text().lstrip().startswith("<?xml") and (out / "collapse.png").is_file()
