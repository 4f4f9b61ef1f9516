"""A run folder you can trust: kills, damage, foreign runs, concurrency, leftovers, Ctrl-C, disk.

The kill tests run ``headsurgeon operate`` in processes of their own (forked from the test
process, ``tests/forked_cli.py``) and kill them (SIGKILL) at named points of the program's own
progress (``HEADSURGEON_KILL_AT``, :mod:`headsurgeon.surgery.killpoints`), drawn from a fixed
seed: which byte was on disk when the process died never depends on how fast the machine is.
Every interrupted run must end with the very weights and history rows of an
uninterrupted one.
"""

from __future__ import annotations

import json
import os
import pickle
import random

import pytest
import torch
from safetensors.torch import load_file

from forked_cli import run_cli
from headsurgeon.errors import HeadsurgeonError
from headsurgeon.models import wrap_model
from headsurgeon.models.adapters import HeadRef
from headsurgeon.models.tiny import tiny_model_and_tokenizer
from headsurgeon.surgery import RunFolder, RunInterrupted, SurgeryPlan, operate, preset
from headsurgeon.surgery.checkpoint import generations
from headsurgeon.surgery.folder import FolderBusy

PLAN = SurgeryPlan(model={}, targets=[HeadRef(0, 1), HeadRef(1, 2)])


def _cfg(corpus, **kw):
    return preset("tiny").with_(corpus=str(corpus), **kw)


def _lm(seed=0):
    return wrap_model(*tiny_model_and_tokenizer("llama", seed=seed))


def _rows(manifest: dict) -> list[dict]:
    """History rows without what depends on time."""
    drop = {"eval_seconds", "tokens_per_second"}
    return [{k: v for k, v in r.items() if k not in drop} for r in manifest["history"]]


def _final_weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(RunFolder(run).model("final") / "model.safetensors"))


@pytest.fixture
def cli_run(text_corpus, tmp_path):
    """``run(out, kill_at=None) -> CompletedProcess`` of ``headsurgeon operate`` on a saved tiny
    model, each in a process of its own (forked: see ``tests/forked_cli.py``)."""
    model, tok = tiny_model_and_tokenizer("llama", seed=3)
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    plan = tmp_path / "plan.json"
    PLAN.save(plan)

    def run(out, kill_at=None):
        argv = ["operate", str(plan), "-m", str(tmp_path / "tiny"), "--preset", "tiny", "--corpus", str(text_corpus),
                "--other-corpus", "none", "--max-steps", "8", "--eval-every", "3", "--no-progress", "-o", str(out)]
        return run_cli(argv, env={"HEADSURGEON_KILL_AT": kill_at})

    return run


def test_killed_anywhere_resumes_to_the_uninterrupted_run(cli_run, tmp_path):
    """SIGKILL in the early window (before and after the stock evaluation), during checkpoint
    writes, between a checkpoint and its manifest, while a model folder is written, and between
    steps: each time the next start resumes, and the end is the uninterrupted run exactly."""
    ref = cli_run(tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    rng = random.Random(12)
    kills = [
        rng.choice(["manifest-created:1", "stock-evaluated:1"]),  # the early window: no checkpoint yet
        f"checkpoint-file:{rng.randint(1, 3)}",  # inside the first checkpoint's writes
        f"checkpoint-renamed:{rng.randint(1, 2)}",  # a checkpoint on disk, its manifest not yet
        f"model-written:{rng.randint(1, 2)}",  # a model folder half-way
        f"step:{rng.randint(1, 3)}",
    ]
    out = tmp_path / "cut"
    for kill_at in kills:
        proc = cli_run(out, kill_at)
        assert proc.returncode == -9, (kill_at, proc.returncode, proc.stderr[-2000:])
        assert (out / "manifest.json").is_file(), kill_at  # the first byte written is the manifest
    done = cli_run(out)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = (json.loads((p / "manifest.json").read_text()) for p in (tmp_path / "ref", out))
    assert b["status"] == "finished" and b["resumed"]
    assert _rows(a) == _rows(b)  # no history row lost, none changed
    assert a["best"] == b["best"] and a["stock"]["heldout_ppl"] == b["stock"]["heldout_ppl"]
    wa, wb = _final_weights(tmp_path / "ref"), _final_weights(out)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert b["invariant"]["final"]["held"]
    assert not [p for p in out.rglob("*") if p.name.startswith((".tmp-", ".old-"))]


def test_ctrl_c_says_what_was_kept_and_how_to_resume(cli_run, tmp_path):
    proc = cli_run(tmp_path / "run", "checkpoint-renamed:2:INT")
    assert proc.returncode == 130
    assert "interrupted" in proc.stderr and "checkpoint at step 3" in proc.stderr and "run the same command again" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigterm_is_handled_like_ctrl_c_and_the_run_resumes(cli_run, tmp_path):
    """A scheduler's preemption (SIGTERM) mid-run: the same message as Ctrl-C, exit 143, and the
    next start resumes from the checkpoint it names and finishes."""
    proc = cli_run(tmp_path / "run", "checkpoint-renamed:2:TERM")
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert "interrupted (SIGTERM)" in proc.stderr and "checkpoint at step 3" in proc.stderr and "Traceback" not in proc.stderr
    done = cli_run(tmp_path / "run")
    assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["status"] == "finished" and m["resumed"][0]["from_step"] == 3


def test_damaged_last_checkpoint_falls_back_to_the_previous_one(text_corpus, tmp_path, capsys):
    cfg = _cfg(text_corpus, max_steps=10, eval_every=3)
    full = operate(_lm(seed=5), PLAN, out_dir=tmp_path / "full", config=cfg, progress=False)
    with pytest.raises(RunInterrupted, match="checkpoint at step 6.*run the same command again"):
        operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False, stop_after_step=7)
    last = generations(tmp_path / "cut" / "checkpoints")[0]
    assert last.name == "step-000006" and not list(last.glob("*.pt"))  # nothing pickled
    data = bytearray((last / "pieces.safetensors").read_bytes())
    for i in range(100):  # 100 flipped bytes in the tensor data
        data[-1 - 3 * i] ^= 0xFF
    (last / "pieces.safetensors").write_bytes(bytes(data))
    capsys.readouterr()
    resumed = operate(_lm(seed=5), PLAN, out_dir=tmp_path / "cut", config=cfg, progress=False)
    err = capsys.readouterr().err
    assert "checkpoint step 6" in err and "damaged" in err and "resuming from step 3" in err
    assert resumed.manifest["resumed"][-1]["from_step"] == 3 and resumed.manifest["resumed"][-1]["damaged_skipped"][0]["step"] == 6
    assert _rows(resumed.manifest) == _rows(full.manifest)
    wa, wb = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "cut")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_no_intact_checkpoint_is_an_error_not_a_silent_restart(text_corpus, tmp_path):
    cfg = _cfg(text_corpus, max_steps=6, eval_every=3)
    with pytest.raises(RunInterrupted):
        operate(_lm(), PLAN, out_dir=tmp_path / "run", config=cfg, progress=False, stop_after_step=4)
    for gen in generations(tmp_path / "run" / "checkpoints"):
        (gen / "optimizer.safetensors").write_bytes(b"")
    with pytest.raises(HeadsurgeonError, match="no checkpoint .* is intact"):
        operate(_lm(), PLAN, out_dir=tmp_path / "run", config=cfg, progress=False)


def test_a_planted_pickle_is_never_loaded(text_corpus, tmp_path):
    cfg = _cfg(text_corpus, max_steps=6, eval_every=3)
    with pytest.raises(RunInterrupted):
        operate(_lm(), PLAN, out_dir=tmp_path / "run", config=cfg, progress=False, stop_after_step=4)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for gen in generations(tmp_path / "run" / "checkpoints"):
        (gen / "optimizer.pt").write_bytes(pickle.dumps(Payload()))
    res = operate(_lm(), PLAN, out_dir=tmp_path / "run", config=cfg, progress=False)
    assert res.manifest["status"] == "finished" and not marker.exists()


def test_another_model_under_the_same_name_is_refused_before_training(text_corpus, tmp_path):
    cfg = _cfg(text_corpus, max_steps=4, eval_every=2)
    operate(_lm(seed=0), PLAN, out_dir=tmp_path / "run", config=cfg, progress=False)
    other = _lm(seed=1)  # same name and shape, other weights
    with pytest.raises(HeadsurgeonError, match="input weights .* there, .* now"):
        operate(other, PLAN, out_dir=tmp_path / "run", config=cfg, progress=False)


def test_a_second_process_is_refused_while_the_folder_is_locked(text_corpus, tmp_path):
    folder = RunFolder(tmp_path / "run")
    with folder.locked():
        with pytest.raises(FolderBusy, match="in use by process"):
            operate(_lm(), PLAN, out_dir=folder.root, config=_cfg(text_corpus, max_steps=2), progress=False)
    assert not folder.holds_run()  # the refused process wrote nothing
    res = operate(_lm(), PLAN, out_dir=folder.root, config=_cfg(text_corpus, max_steps=2, eval_every=2), progress=False)
    assert res.manifest["status"] == "finished"  # the lock went with the first holder


def test_leftovers_of_interrupted_writes_are_removed_on_start(text_corpus, tmp_path, capsys):
    cfg = _cfg(text_corpus, max_steps=4, eval_every=2)
    with pytest.raises(RunInterrupted):
        operate(_lm(), PLAN, out_dir=tmp_path / "run", config=cfg, progress=False, stop_after_step=2)
    run = tmp_path / "run"
    planted = [run / "models" / ".tmp-best-abc", run / "models" / ".old-best-123", run / "checkpoints" / ".tmp-xyz"]
    for p in planted:
        p.mkdir(parents=True)
        (p / "model.safetensors").write_bytes(b"x" * 1000)
    (run / ".manifest.json.k2j3.tmp").write_text("{")
    capsys.readouterr()
    operate(_lm(), PLAN, out_dir=run, config=cfg, progress=False)
    assert "removed 4 leftovers" in capsys.readouterr().err
    assert not any(p.exists() for p in planted) and not (run / ".manifest.json.k2j3.tmp").exists()


def test_a_run_refused_by_its_settings_leaves_no_folder_behind(text_corpus, tmp_path):
    """Settings that cannot work are found before the first file is written (the folder stays usable)."""
    with pytest.raises(HeadsurgeonError, match="fewer than one optimizer step"):
        operate(_lm(), PLAN, out_dir=tmp_path / "run", config=_cfg(text_corpus, batch_size=64, grad_accum=64), progress=False)
    assert not RunFolder(tmp_path / "run").holds_run() and not RunFolder(tmp_path / "run").has_foreign_content()


def test_best_equal_to_final_is_stored_once_with_plain_modes(text_corpus, tmp_path):
    cfg = _cfg(text_corpus, max_steps=4, eval_every=2, lr=1e-3)
    res = operate(_lm(), PLAN, out_dir=tmp_path / "run", config=cfg, progress=False)
    folder = RunFolder(res.run_dir)
    assert res.best["step"] == 4, "the test needs the best step to be the last"
    best, final = (folder.model(t) / "model.safetensors" for t in ("best", "final"))
    assert os.stat(best).st_ino == os.stat(final).st_ino  # one copy on disk
    assert json.loads((folder.model("final") / "headsurgeon-surgery.json").read_text())["tag"] == "final"
    assert res.manifest["invariant"]["best"]["held"] and res.invariant_held
    umask = os.umask(0)
    os.umask(umask)
    for d in (folder.model("best"), folder.model("final"), generations(folder.checkpoints)[0]):
        assert (d.stat().st_mode & 0o777) == (0o777 & ~umask), d


def test_cli_exits_non_zero_on_an_invariant_violation(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import headsurgeon.surgery as surgery
    from headsurgeon.cli.main import app
    from headsurgeon.surgery import SurgeryResult

    manifest = {"status": "finished", "history": [{"step": 0}, {"step": 4}], "stock": {}, "best": None,
                "outcome": {"steps": 4, "tokens": 10, "targets": 2, "recollapsed_targets": []}, "timing": {},
                "invariant": {"final": {"held": False, "changed": ["model.layers.0.mlp.up_proj.weight"]}}}
    monkeypatch.setattr(surgery, "operate", lambda *a, **k: SurgeryResult(tmp_path, manifest))
    plan = tmp_path / "plan.json"
    PLAN.save(plan)
    result = CliRunner().invoke(app, ["operate", str(plan), "-o", str(tmp_path / "x"), "--no-progress"])
    assert result.exit_code == 1 and "invariant was violated" in result.output
