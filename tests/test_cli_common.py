"""Options shared by every command (--version, --json, --threads), the runs listing, renamed
options, and the diagnose summary's wording. In-process: cheap."""

from __future__ import annotations

import json

import pytest

from headsurgeon.cli.main import run
from headsurgeon.surgery.checkpoint import CHECKSUMS, FILES, _sha256
from headsurgeon.surgery.folder import RunFolder
from headsurgeon.surgery.listing import list_runs
from headsurgeon.surgery.manifest import RunManifest, save_manifest


@pytest.fixture(autouse=True)
def _wide_help(monkeypatch):
    """rich wraps --help at the terminal width; a wide one keeps option names whole."""
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TERMINAL_WIDTH", "250")


def test_version(capsys):
    from headsurgeon import __version__

    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip().startswith(f"headsurgeon {__version__}")


def test_an_interrupt_while_the_root_command_parses_says_so_and_exits_143(monkeypatch, capsys):
    """SIGTERM during the root's option handling (here inside --version's callback): typer would
    have returned a bare 130 with nothing printed."""
    import headsurgeon.cli.main as main

    real, calls = main.typer.echo, []

    def echo(*args, **kwargs):
        if not calls:
            calls.append(1)
            raise main.Terminated("SIGTERM")
        return real(*args, **kwargs)

    monkeypatch.setattr(main.typer, "echo", echo)
    assert run(["--version"]) == 143
    assert "error: interrupted (SIGTERM)" in capsys.readouterr().err


def test_diagnose_json_is_the_document_alone(saved_tiny, tmp_path, capsys):
    model = str(saved_tiny("llama-gqa"))
    capsys.readouterr()
    assert run(["diagnose", "--model", model, "--out", str(tmp_path / "d"), "--no-progress", "--json", "--threads", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "diagnosis" and doc == json.loads((tmp_path / "d" / "diagnosis.json").read_text())


def test_every_computing_command_has_threads_and_json(capsys):
    for cmd in (["diagnose"], ["operate"], ["report"], ["study"], ["extremes"], ["toy", "train"], ["toy", "compare"], ["lab", "run"]):
        assert run([*cmd, "--help"]) == 0
        out = capsys.readouterr().out
        assert "--threads" in out and "--json" in out, cmd
    for cmd in (["plan"], ["compare"], ["runs"], ["lab", "analyze"]):
        assert run([*cmd, "--help"]) == 0
        assert "--json" in capsys.readouterr().out, cmd


def test_renamed_options_and_hidden_old_spellings(capsys):
    assert run(["extremes", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--key-sink-threshold" in out and "--sink-threshold " not in out.replace("--key-sink-threshold", "")
    assert run(["report", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--generation-prompts" in out and "--prompts " not in out.replace("--generation-prompts", "")
    assert run(["toy", "train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--max-steps" in out and "--steps " not in out.replace("--max-steps", "")


def test_operate_help_shows_preset_defaults():
    import typer

    from headsurgeon.cli.main import app

    params = {p.name: p for p in typer.main.get_command(app).commands["operate"].params}
    assert params["lr"].help.endswith("Preset defaults: paper 5e-05 · cpu 0.001 · tiny 0.01.")
    assert "paper none · cpu 200 · tiny 12" in params["max_steps"].help
    assert params["preset"].default == "auto" and "dry_run" in params


def _manifest(path, status="running", kind="surgery_run"):
    m = RunManifest(kind=kind, fingerprint="f", model={"name": "tiny"}, plan={"targets": {"0": [1], "1": [0, 2]}, "gqa_mode": "query"},
                    config={"max_steps": 8}, status=status, history=[{"step": 0}, {"step": 4}])
    path.mkdir(parents=True)
    save_manifest(RunFolder(path), m)
    return path


def _generation(run, step, *, intact=True):
    """A checkpoint generation whose files match their checksums (or, ``intact=False``, do not)."""
    g = run / "checkpoints" / f"step-{step:06d}"
    g.mkdir(parents=True)
    for name in FILES:
        (g / name).write_bytes(name.encode())
    sums = {name: _sha256(g / name) for name in FILES}
    if not intact:
        (g / FILES[0]).write_bytes(b"flipped")
    (g / CHECKSUMS).write_text(json.dumps(sums))


def test_runs_lists_states(tmp_path, capsys):
    fin = _manifest(tmp_path / "a" / "finished", "finished")
    (fin / "models" / "final").mkdir(parents=True)
    (fin / "models" / "final" / "config.json").write_text("{}")
    _manifest(tmp_path / "a" / "half")
    res = _manifest(tmp_path / "b" / "resumable")
    _generation(res, 4)
    fallback = _manifest(tmp_path / "b" / "fallback")
    _generation(fallback, 4)
    _generation(fallback, 8, intact=False)
    gone = _manifest(tmp_path / "b" / "all-damaged")
    _generation(gone, 8, intact=False)
    _manifest(tmp_path / "c" / "final-missing", "finished")
    carried = _manifest(tmp_path / "c" / "carried", "finished")  # copied without models/, its last step's slices kept
    _generation(carried, 4)
    (carried / "checkpoints" / "step-000004" / "optimizer.safetensors").unlink()  # scripts/study-state leaves it out
    _generation(_manifest(tmp_path / "c" / "carried-flipped", "finished"), 4, intact=False)  # its slices not as saved
    _manifest(tmp_path / "c" / "nan", "stopped: loss became nan at step 3")
    lora = _manifest(tmp_path / "e" / "lora", "finished", kind="lora_run")
    (lora / "adapter").mkdir()
    (lora / "adapter" / "final.safetensors").write_bytes(b"x")
    (tmp_path / "d" / "broken").mkdir(parents=True)
    (tmp_path / "d" / "broken" / "manifest.json").write_text("{")
    states = {r.path.split("/")[-1]: (r.state, r.detail) for r in list_runs(tmp_path)}
    assert {k: v[0] for k, v in states.items()} == {
        "finished": "finished", "half": "resumable", "resumable": "resumable", "fallback": "resumable", "all-damaged": "damaged",
        "final-missing": "damaged", "carried": "finished", "carried-flipped": "damaged", "nan": "stopped", "broken": "damaged", "lora": "finished"}
    assert "final slices are in the step-4 checkpoint" in states["carried"][1]
    assert "step-4 checkpoint" in states["resumable"][1] and "no training checkpoint" in states["half"][1]
    assert "step-4 checkpoint (newer step 8 damaged" in states["fallback"][1]
    assert "no checkpoint generation is intact (step 8)" in states["all-damaged"][1]
    assert run(["runs", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "run_list" and len(doc["runs"]) == 11
    assert {r["targets"] for r in doc["runs"] if r["targets"] is not None} == {3}  # heads (in 2 layers), not layers
    assert run(["runs", str(tmp_path / "nope")]) == 2


def test_runs_says_running_while_a_process_holds_the_folder(tmp_path, monkeypatch):
    """A run being trained right now is "running", not "resumable" (re-running its command would
    be refused as busy); once the lock is released it is resumable again. Checked through the
    kernel's lock table and through the fallback (the id in the lock file, if alive)."""
    import os
    import pathlib
    import subprocess
    import sys

    run_dir = _manifest(tmp_path / "busy")
    _generation(run_dir, 4)
    folder = RunFolder(run_dir)
    state = lambda: {r.path.split("/")[-1]: r for r in list_runs(tmp_path)}["busy"]  # noqa: E731
    with folder.locked():
        assert folder.lock_holder() == os.getpid()
        assert state().state == "running" and f"process {os.getpid()}" in state().detail
    assert folder.lock_holder() is None and state().state == "resumable"
    with folder.locked():  # a lock file whose text is not an id still shows the live lock from the table
        (run_dir / ".lock").write_text("held by hand\n")
        assert folder.lock_holder() == os.getpid() and state().state == "running"
    # no lock table (not Linux): trust the id written in the lock file if that process lives
    real = pathlib.Path.read_text
    monkeypatch.setattr(pathlib.Path, "read_text", lambda self, *a, **k: (_ for _ in ()).throw(OSError("no /proc"))
                        if str(self) == "/proc/locks" else real(self, *a, **k))
    with folder.locked():
        assert folder.lock_holder() == os.getpid()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    (run_dir / ".lock").write_text(gone.stdout.strip())  # a process that has ended
    assert folder.lock_holder() is None and state().state == "resumable"


def test_diagnose_summary_wording(capsys):
    import numpy as np

    from headsurgeon.cli.display import print_diagnosis
    from test_diagnosis import make_diagnosis

    bos = np.array([[0.9, 0.1, 0.9, 0.1], [0.1, 0.9, 0.1, 0.9], [0.9, 0.9, 0.99, 0.9], [0.1, 0.1, 0.1, 0.1]])
    d = make_diagnosis(bos)
    print_diagnosis(d)
    out = " ".join(capsys.readouterr().out.split())
    assert "no sick band (a head index is in the sick band when" in out
    assert "most collapsed heads (BOS mass): L2H2 0.990" in out
    assert f"first token of the {len(d.prompts)} prompts" in out
