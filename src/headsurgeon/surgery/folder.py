"""The run folder: the one type that knows where everything of a training run lives.

Layout (``operate`` and the study's LoRA arm write the same one)::

    RUN/manifest.json               the run's manifest (:mod:`.manifest`), rewritten atomically
    RUN/diagnoses/<tag>.json        a diagnosis per evaluation: stock, step-000000, step-NNNNNN
    RUN/checkpoints/step-NNNNNN/    training-state generations (:mod:`.checkpoint`), the last two kept
    RUN/models/<tag>/               full models (surgery: best, final, epoch-N; plain save_pretrained)
    RUN/adapter/<tag>.safetensors   LoRA matrices (the LoRA arm's best and final)
    RUN/evaluation/<part>.json      the report's cached model-loading results (generations, ...)
    RUN/study-measures.json         a study's end-of-run measures of this run
    RUN/.lock                       held (``flock``) by the process working in the folder

Writers and readers (``compare``, ``report``, studies, the next surgery pass) ask this type for
paths instead of spelling them, so the layout can only change in one place. Every name that
starts with ``.tmp-`` or ``.old-`` (or ends in ``.tmp``) is a leftover of an interrupted atomic
write and is removed when a process opens the folder for writing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from headsurgeon.errors import HeadsurgeonError

MANIFEST = "manifest.json"
LOCK = ".lock"
#: Prefixes (and a suffix) of names that only ever exist while an atomic write is under way.
TEMP_PREFIXES = (".tmp-", ".old-")
TEMP_SUFFIX = ".tmp"


class FolderBusy(HeadsurgeonError):
    """Another process holds the run folder's lock."""


class RunFolder:
    """Paths of one run folder, its lock, and the clean-up of interrupted writes."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    # --- paths -------------------------------------------------------------------------------
    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model(self, tag: str) -> Path:
        """A full model folder: ``best``, ``final`` or ``epoch-N``."""
        return self.models / tag

    @staticmethod
    def diagnosis_rel(tag: str) -> str:
        """Where the diagnosis of evaluation ``tag`` is stored, relative to the folder (kept in rows)."""
        return f"diagnoses/{tag}.json"

    def diagnosis(self, tag: str) -> Path:
        return self.root / self.diagnosis_rel(tag)

    @staticmethod
    def adapter_rel(tag: str) -> str:
        return f"adapter/{tag}.safetensors"

    def adapter(self, tag: str) -> Path:
        return self.root / self.adapter_rel(tag)

    def report_part(self, name: str) -> Path:
        return self.root / "evaluation" / f"{name}.json"

    @property
    def study_measures(self) -> Path:
        return self.root / "study-measures.json"

    def resolve(self, rel: str) -> Path:
        """A path recorded in the manifest (relative to the folder)."""
        return self.root / rel

    @staticmethod
    def step_tag(step: int) -> str:
        return f"step-{step:06d}"

    # --- state ---------------------------------------------------------------------------------
    def holds_run(self) -> bool:
        return self.manifest.is_file()

    def has_foreign_content(self) -> bool:
        """Whether the folder holds visible files although it has no manifest (someone else's folder)."""
        return self.root.is_dir() and any(not p.name.startswith(".") for p in self.root.iterdir())

    def ensure_writable(self) -> None:
        from headsurgeon.io import ensure_output_dir

        ensure_output_dir(self.root)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the folder; a second process is refused at once (not queued).

        ``flock`` locks vanish with the process that held them, so a killed run never leaves a
        stale lock behind; the ``.lock`` file itself is harmless and stays.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise FolderBusy(f"{self.root} is in use by process {holder}; wait for it to finish, or choose another --out") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def lock_holder(self) -> int | None:
        """The id of the process working in this folder now (holding its lock), or ``None``.

        Never takes the lock, not even for a moment: that could refuse a run starting at the same
        instant. On Linux the kernel's lock table (``/proc/locks``) says whether the lock file is
        held; elsewhere the id written in the lock file is trusted if that process is alive.
        """
        lock = self.root / LOCK
        try:
            st = lock.stat()
            text = lock.read_text(errors="replace").strip()
        except OSError:
            return None
        written = int(text) if text.isdigit() and int(text) > 0 else None  # a hand-edited file must not hide a live lock
        try:
            table = Path("/proc/locks").read_text()
        except OSError:
            table = None
        if table is not None:
            where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
            for line in table.splitlines():
                parts = line.split()  # "1: FLOCK  ADVISORY  WRITE 2663 fe:00:5457199 0 EOF"
                if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == where:
                    return int(parts[4]) if parts[4].isdigit() else written
            return None
        if written is None:
            return None
        try:
            os.kill(written, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
        return written

    def remove_leftovers(self) -> list[str]:
        """Delete what interrupted atomic writes left behind; returns the removed names (relative)."""
        removed = []
        for parent in (self.root, self.checkpoints, self.models, self.root / "diagnoses", self.root / "adapter", self.root / "evaluation"):
            if not parent.is_dir():
                continue
            for p in parent.iterdir():
                if p.name.startswith(TEMP_PREFIXES) or (p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)):
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
                    removed.append(str(p.relative_to(self.root)))
        return sorted(removed)
