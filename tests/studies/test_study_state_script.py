"""scripts/study-state: what a long study commits so that it resumes on another machine."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "study-state"


def _run(folder: Path, arm: str, seed: int, *, status: str, reason: str | None, steps: list[int]) -> Path:
    run = folder / "runs" / arm / f"seed-{seed}"
    for step in steps:
        gen = run / "checkpoints" / f"step-{step:06d}"
        gen.mkdir(parents=True)
        for name in ("pieces.safetensors", "optimizer.safetensors", "state.json"):
            (gen / name).write_text(name)
        (gen / "checksums.json").write_text(json.dumps({n: "x" for n in ("pieces.safetensors", "optimizer.safetensors", "state.json")}))
    (run / "models" / "best").mkdir(parents=True)
    (run / "models" / "best" / "model.safetensors").write_text("big")
    (run / "diagnoses").mkdir()
    (run / "diagnoses" / f"step-{steps[-1]:06d}.json").write_text("{}")
    manifest = {"status": status, "history": [{"step": s} for s in steps], "stopping": {"reason": reason} if reason else None}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_save_commits_what_a_resume_needs_and_no_models(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts" / "study-state")
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.org")
    _git(repo, "config", "user.name", "t")
    (repo / ".gitignore").write_text("runs/\n")  # the repository's rule the results folder must override
    shutil.copy(SCRIPT.parents[1] / "results" / ".gitignore", tmp_path / "results.gitignore")
    study = repo / "results" / "study-converged"
    study.mkdir(parents=True)
    shutil.copy(tmp_path / "results.gitignore", repo / "results" / ".gitignore")
    (study / "stock-diagnosis.json").write_text("{}")
    _run(study, "surgery", 0, status="running", reason=None, steps=[100, 150])
    _run(study, "lora", 0, status="finished", reason="patience", steps=[300, 350])
    _run(study, "no_reinit", 0, status="finished", reason="cap", steps=[1350, 1400])
    (study / "runs" / "surgery" / "seed-0" / "checkpoints" / "step-000150" / "state.json").unlink()  # half-written: not complete
    _git(repo, "add", ".gitignore", "results/.gitignore", "scripts")
    _git(repo, "commit", "-q", "-m", "init")
    out = subprocess.run([sys.executable, str(repo / "scripts" / "study-state"), "save"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    files = set(_git(repo, "ls-files", "results").split())
    ck = {f.split("/checkpoints/")[0].split("/runs/")[1] + ":" + f.split("/checkpoints/")[1].split("/")[0] for f in files if "/checkpoints/" in f}
    # the running run: its newest *complete* generation; the patience run: newest; the cap run: none
    assert ck == {"surgery/seed-0:step-000100", "lora/seed-0:step-000350"}
    assert not [f for f in files if "/models/" in f]
    assert "results/study-converged/runs/no_reinit/seed-0/manifest.json" in files
    assert "results/study-converged/stock-diagnosis.json" in files
    # the run went on: the next save drops the generation it no longer needs
    gen = study / "runs" / "surgery" / "seed-0" / "checkpoints" / "step-000150"
    (gen / "state.json").write_text("state.json")
    subprocess.run([sys.executable, str(repo / "scripts" / "study-state"), "save"], check=True, capture_output=True, text=True)
    files = set(_git(repo, "ls-files", "results").split())
    assert not [f for f in files if "step-000100" in f and "/surgery/" in f]
    assert [f for f in files if "step-000150" in f and "/surgery/" in f]
    assert _git(repo, "status", "--porcelain", "results").strip() == ""
