"""scripts/study-state: what a long study commits so that it resumes on another machine."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "study-state"
RESULTS_IGNORE = Path(__file__).resolve().parents[2] / "results" / ".gitignore"
FILES = ("pieces.safetensors", "optimizer.safetensors", "state.json")


def _generation(run: Path, step: int, *, complete: bool = True) -> Path:
    gen = run / "checkpoints" / f"step-{step:06d}"
    gen.mkdir(parents=True)
    for name in FILES:
        (gen / name).write_text(f"{name} {step}")
    sums = {n: hashlib.sha256(f"{n} {step}".encode()).hexdigest() for n in FILES}
    (gen / "checksums.json").write_text(json.dumps(sums))
    if not complete:
        (gen / "state.json").unlink()  # replaced while the script copies it
    return gen


def _run(study: Path, arm: str, *, status: str, reason: str | None, steps: list[int], measured: int | None = None) -> Path:
    run = study / "runs" / arm / "seed-0"
    for step in steps:
        _generation(run, step)
    (run / "models" / "best").mkdir(parents=True)
    (run / "models" / "best" / "model.safetensors").write_text("big")
    (run / "diagnoses").mkdir()
    (run / "diagnoses" / f"step-{steps[-1]:06d}.json").write_text("{}")
    (run / ".manifest.json.abc123.tmp").write_text("half")  # an atomic write in progress
    (run / ".lock").write_text("")
    manifest = {"status": status, "history": [{"step": s} for s in steps], "stopping": {"reason": reason} if reason else None,
                "outcome": {"steps": steps[-1]}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    if measured is not None:
        (run / "study-measures.json").write_text(json.dumps({"steps": measured}))
    return run


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "results").mkdir()
    shutil.copy(SCRIPT, repo / "scripts" / "study-state")
    shutil.copy(RESULTS_IGNORE, repo / "results" / ".gitignore")
    (repo / ".gitignore").write_text("runs/\nout/\n")  # the repository's rules the snapshot must get past
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.org")
    _git(repo, "config", "user.name", "t")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "init")
    return repo


def _checkpoints(files: set[str]) -> set[str]:
    return {f.split("/runs/")[1].split("/seed-")[0] + ":" + f.split("/checkpoints/")[1].split("/")[0] for f in files if "/checkpoints/" in f}


def _save(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(repo / "scripts" / "study-state"), "save"], capture_output=True, text=True)


def test_save_commits_what_a_resume_needs_and_restore_brings_it_back(tmp_path):
    repo = _repo(tmp_path)
    work = repo / "out" / "study-converged"
    work.mkdir(parents=True)
    (work / "stock-diagnosis.json").write_text("{}")
    surgery = _run(work, "surgery", status="running", reason=None, steps=[100])
    _generation(surgery, 150, complete=False)
    _run(work, "lora", status="finished", reason="patience", steps=[300, 350], measured=350)
    _run(work, "no_reinit", status="finished", reason="cap", steps=[1350, 1400], measured=1400)
    _run(work, "random_healthy", status="finished", reason="cap", steps=[1350, 1400])  # not measured yet
    out = _save(repo)
    assert out.returncode == 0, out.stderr
    files = set(_git(repo, "ls-files", "results").split())
    # running: the newest generation that copies intact; patience: newest; cap + measured: none; cap, unmeasured: newest
    assert _checkpoints(files) == {"surgery:step-000100", "lora:step-000350", "random_healthy:step-001400"}
    # ended at the cap, never trains again: its slices only, no optimizer state
    cap_gen = "results/study-converged/runs/random_healthy/seed-0/checkpoints/step-001400/"
    assert {f[len(cap_gen):] for f in files if f.startswith(cap_gen)} == {"checksums.json", "pieces.safetensors", "state.json"}
    assert {"optimizer.safetensors", "pieces.safetensors"} <= {f.rsplit("/", 1)[1] for f in files if "/surgery/" in f and "/step-000100/" in f}
    assert not [f for f in files if "/models/" in f or f.endswith((".tmp", ".lock"))]
    assert {"results/study-converged/runs/no_reinit/seed-0/manifest.json", "results/study-converged/stock-diagnosis.json"} <= files
    assert _git(repo, "status", "--porcelain").strip() == ""  # the study's own folder stays out of git
    # the run went on: the next save takes the new generation and drops the one no longer needed
    shutil.rmtree(surgery / "checkpoints" / "step-000150")
    _generation(surgery, 200)
    assert _save(repo).returncode == 0
    files = set(_git(repo, "ls-files", "results").split())
    assert "surgery:step-000200" in _checkpoints(files) and "surgery:step-000100" not in _checkpoints(files)
    assert _save(repo).stdout.startswith("study-state: nothing changed")
    # a fresh clone gets the study folder back, byte for byte, and restore never overwrites
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    assert subprocess.run([sys.executable, str(clone / "scripts" / "study-state"), "restore"], capture_output=True).returncode == 0
    back = clone / "out" / "study-converged"
    gen = back / "runs" / "surgery" / "seed-0" / "checkpoints" / "step-000200"
    assert (gen / "state.json").read_text() == "state.json 200"
    assert (back / "runs" / "no_reinit" / "seed-0" / "manifest.json").read_bytes() == (work / "runs" / "no_reinit" / "seed-0" / "manifest.json").read_bytes()
    (back / "stock-diagnosis.json").write_text("newer, on this machine")
    subprocess.run([sys.executable, str(clone / "scripts" / "study-state"), "restore"], check=True, capture_output=True)
    assert (back / "stock-diagnosis.json").read_text() == "newer, on this machine"


def test_a_run_that_reaches_its_cap_keeps_only_its_slices_in_the_next_save(tmp_path):
    """Saved whole while it trained; once it ends at the cap (measures still to come) the next save
    drops its optimizer state from the snapshot and keeps the slices the measures are built from."""
    repo = _repo(tmp_path)
    work = repo / "out" / "study-converged"
    run = _run(work, "surgery", status="running", reason=None, steps=[1400])
    assert _save(repo).returncode == 0
    gen = "results/study-converged/runs/surgery/seed-0/checkpoints/step-001400/"
    names = lambda: {f[len(gen):] for f in _git(repo, "ls-files", "results").split() if f.startswith(gen)}  # noqa: E731
    assert "optimizer.safetensors" in names()
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "finished", "stopping": {"reason": "cap"}}))
    assert _save(repo).returncode == 0
    assert names() == {"checksums.json", "pieces.safetensors", "state.json"}
    (run / "study-measures.json").write_text(json.dumps({"steps": 1400}))  # measured: nothing of it is needed
    assert _save(repo).returncode == 0
    assert names() == set()


def test_a_run_that_ended_is_saved_with_its_last_steps_slices_or_a_warning(tmp_path):
    """An older generation's slices are no use to a finished run's end measures (they are built
    from its last step): when that step does not copy intact the save says so instead of
    committing another step. A LoRA run that ended at the cap needs no checkpoint at all."""
    repo = _repo(tmp_path)
    work = repo / "out" / "study-converged"
    run = _run(work, "surgery", status="finished", reason="cap", steps=[1350, 1400])
    (run / "checkpoints" / "step-001400" / "pieces.safetensors").write_text("flipped")
    lora = _run(work, "lora", status="finished", reason="cap", steps=[1400])
    manifest = json.loads((lora / "manifest.json").read_text())
    (lora / "manifest.json").write_text(json.dumps({**manifest, "kind": "lora_run"}))
    out = _save(repo)
    assert out.returncode == 0 and "last step's slices (step-001400) did not copy intact" in out.stderr
    assert "cannot rebuild this run's end measures" in out.stderr
    assert _checkpoints(set(_git(repo, "ls-files", "results").split())) == set()


def test_save_refuses_other_staged_changes_and_a_missing_study(tmp_path):
    repo = _repo(tmp_path)
    out = _save(repo)
    assert out.returncode == 1 and "does not exist" in out.stderr and "Traceback" not in out.stderr
    (repo / "out" / "study-converged").mkdir(parents=True)
    (repo / "README.md").write_text("x")
    _git(repo, "add", "README.md")
    out = _save(repo)
    assert out.returncode == 1 and "README.md" in out.stderr and "staged already" in out.stderr


def test_a_checkpoint_that_does_not_match_its_checksums_is_never_saved(tmp_path):
    """Content checked, not just presence: a newest generation whose bytes differ from its
    checksums.json is passed over for the one before; when none is intact, the last save's
    generation stays committed (with a warning) instead of the run losing every checkpoint."""
    repo = _repo(tmp_path)
    work = repo / "out" / "study-converged"
    run = _run(work, "surgery", status="running", reason=None, steps=[100])
    assert _save(repo).returncode == 0
    (_generation(run, 150) / "pieces.safetensors").write_text("changed after its checksum was taken")
    out = _save(repo)
    assert out.returncode == 0 and "surgery:step-000100" in _checkpoints(set(_git(repo, "ls-files", "results").split()))
    assert "surgery:step-000150" not in _checkpoints(set(_git(repo, "ls-files", "results").split()))
    # the run moves on, and every generation it has now is damaged: the saved one is kept
    shutil.rmtree(run / "checkpoints" / "step-000100")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["history"].append({"step": 150})
    (run / "manifest.json").write_text(json.dumps(manifest))
    out = _save(repo)
    assert out.returncode == 0 and "no checkpoint copied intact" in out.stderr and "kept the last save's step-000100" in out.stderr
    assert "surgery:step-000100" in _checkpoints(set(_git(repo, "ls-files", "results").split()))


def test_restore_leaves_a_run_folder_of_this_machine_whole(tmp_path):
    repo = _repo(tmp_path)
    work = repo / "out" / "study-converged"
    _run(work, "surgery", status="running", reason=None, steps=[100, 150])
    _run(work, "lora", status="running", reason=None, steps=[50])
    assert _save(repo).returncode == 0
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    mine = clone / "out" / "study-converged" / "runs" / "surgery" / "seed-0"
    _generation(mine, 0)  # another run started here from scratch
    (mine / "manifest.json").write_text(json.dumps({"status": "running", "history": [{"step": 0}], "fingerprint": "other"}))
    out = subprocess.run([sys.executable, str(clone / "scripts" / "study-state"), "restore"], capture_output=True, text=True)
    assert out.returncode == 0 and "kept this machine's" in out.stdout
    assert [g.name for g in (mine / "checkpoints").iterdir()] == ["step-000000"]  # nothing of the saved run mixed in
    assert (clone / "out" / "study-converged" / "runs" / "lora" / "seed-0" / "checkpoints" / "step-000050" / "state.json").is_file()


def test_save_refuses_a_results_folder_that_is_a_live_study(tmp_path):
    """The layout before snapshots: the study itself ran in results/study-converged. Pruning it as
    a snapshot would delete its models and newer checkpoints."""
    repo = _repo(tmp_path)
    (repo / "out" / "study-converged").mkdir(parents=True)
    _run(repo / "results" / "study-converged", "surgery", status="running", reason=None, steps=[100])
    out = _save(repo)
    assert out.returncode == 1 and "not a snapshot" in out.stderr
    assert (repo / "results" / "study-converged" / "runs" / "surgery" / "seed-0" / "models" / "best" / "model.safetensors").is_file()


def test_finished_only_save_leaves_runs_still_training_as_the_last_save_had_them(tmp_path):
    """An insurance save in mid-session: finished runs are saved as usual; a run still training
    adds nothing (no in-progress checkpoint enters git) and keeps what the last save had of it."""
    repo = _repo(tmp_path)
    work = repo / "out" / "study-converged"
    surgery = _run(work, "surgery", status="running", reason=None, steps=[100])
    assert _save(repo).returncode == 0  # an ordinary save while it trains
    _generation(surgery, 150)
    manifest = json.loads((surgery / "manifest.json").read_text())
    (surgery / "manifest.json").write_text(json.dumps({**manifest, "history": [{"step": 100}, {"step": 150}]}))
    _run(work, "extended", status="running", reason=None, steps=[50])  # started since
    _run(work, "lora", status="finished", reason="cap", steps=[1400], measured=1400)
    out = subprocess.run([sys.executable, str(repo / "scripts" / "study-state"), "save", "--finished-only"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    files = set(_git(repo, "ls-files", "results").split())
    assert _checkpoints(files) == {"surgery:step-000100"}  # the last save's, not step 150
    saved = json.loads((repo / "results/study-converged/runs/surgery/seed-0/manifest.json").read_text())
    assert saved["history"] == [{"step": 100}]
    assert not [f for f in files if "/extended/" in f]
    assert "results/study-converged/runs/lora/seed-0/manifest.json" in files
    bad = subprocess.run([sys.executable, str(repo / "scripts" / "study-state"), "save", "--finished"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_a_run_continued_to_a_budget_at_the_cap_never_trains_again_so_keeps_no_optimizer_state(tmp_path):
    """Stopped on patience, continued to the seed's budget, and that budget is the cap: it can
    never train on, so once measured nothing of its checkpoint is needed (unmeasured: slices only)."""
    repo = _repo(tmp_path)
    work = repo / "out" / "study-converged"
    run = _run(work, "no_reinit", status="finished", reason="budget", steps=[1250, 1400])
    manifest = json.loads((run / "manifest.json").read_text())
    stopping = {"reason": "budget", "step": 1250, "final_step": 1400, "cap": 1400, "budget": 1400}
    (run / "manifest.json").write_text(json.dumps({**manifest, "stopping": stopping}))
    assert _save(repo).returncode == 0
    gen = "results/study-converged/runs/no_reinit/seed-0/checkpoints/step-001400/"
    names = lambda: {f[len(gen):] for f in _git(repo, "ls-files", "results").split() if f.startswith(gen)}  # noqa: E731
    assert names() == {"checksums.json", "pieces.safetensors", "state.json"}
    (run / "study-measures.json").write_text(json.dumps({"steps": 1400}))
    assert _save(repo).returncode == 0 and names() == set()
    (run / "manifest.json").write_text(json.dumps({**manifest, "stopping": {**stopping, "final_step": 1300, "budget": 1300}}))
    assert _save(repo).returncode == 0 and "optimizer.safetensors" in names()  # below the cap: a larger budget may continue it


def test_the_script_saves_the_files_a_checkpoint_is_made_of():
    """The script runs without the package (system Python, no torch), so it names a checkpoint's
    files itself: they must be the ones :mod:`headsurgeon.surgery.checkpoint` writes and reads."""
    import importlib.machinery
    import importlib.util

    from headsurgeon.surgery import checkpoint

    loader = importlib.machinery.SourceFileLoader("study_state_script", str(SCRIPT))
    script = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(script)
    assert script.CHECKSUMS == checkpoint.CHECKSUMS
    assert set(script.WHOLE) == {checkpoint.CHECKSUMS, *checkpoint.FILES}
    assert set(script.SLICES) == {checkpoint.CHECKSUMS, *checkpoint.FINAL_FILES}
