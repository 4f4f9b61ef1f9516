"""The CLI in a process of its own, forked from the test process: real exit codes, real signals.

A test that kills ``headsurgeon operate`` with SIGKILL, or checks the exit code and stderr of a
bad input, needs a separate process; starting ``python -m headsurgeon`` anew costs ~10 s of CPU
importing torch and transformers (most of a tiny run), and the suite paid it dozens of times.
A forked child starts with those modules already imported and otherwise behaves as the user's
process does: :func:`headsurgeon.cli.main.run` with the given arguments and environment, its own
stdout/stderr (file descriptors 1 and 2, so output written below Python is caught too), its own
exit status; a kill point's SIGKILL ends only the child. ``python -m headsurgeon`` itself (a
fresh interpreter) stays covered by the happy path of ``test_cli_diagnose.py``.

Linux/macOS only (``os.fork``); the children run with one torch thread like the parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

#: Only a safety net against a wedged child (killed, and the test fails): no test outcome
#: depends on how fast the child is.
HARD_KILL_SECONDS = 900


def warm_up() -> None:
    """Import, in the parent, what the commands import lazily, so no child pays for it."""
    import accelerate  # noqa: F401
    import datasets  # noqa: F401
    import transformers  # noqa: F401
    from transformers import LlamaForCausalLM  # noqa: F401

    import headsurgeon.cli.main  # noqa: F401
    import headsurgeon.surgery.operate  # noqa: F401


@dataclass
class Child:
    """A forked child still running: its pid and the files its stdout and stderr go to."""

    pid: int
    label: str
    out: IO[bytes]
    err: IO[bytes]


def start(target: Callable[[], int | None], *, env: dict[str, str | None] | None = None, cwd=None, label: str = "child") -> Child:
    """Fork a child that runs ``target()`` and exits with its return value (``None``: 0).

    ``env`` sets (or, with ``None``, removes) variables in the child only."""
    warm_up()
    sys.stdout.flush()
    sys.stderr.flush()
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
            for key, value in (env or {}).items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if cwd is not None:
                os.chdir(cwd)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a fresh process
            import torch
            from accelerate.state import AcceleratorState

            from headsurgeon.surgery import killpoints

            torch.set_num_threads(1)  # what OMP_NUM_THREADS=1 gave a fresh process
            AcceleratorState._reset_state(reset_partial_state=True)  # read the environment anew, as a new process does
            killpoints._hits.clear()  # kill points count from this process's start
            result = target()
            code = 0 if result is None else result
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    return Child(pid, label, out, err)


def finish(child: Child) -> subprocess.CompletedProcess:
    """Wait for ``child``; its exit code (``-signal`` when killed by one), stdout and stderr."""
    return finish_all([child])[0]


def finish_all(children: list[Child]) -> list[subprocess.CompletedProcess]:
    """Wait for every child; once one fails, the others are killed (they could wait for it forever)."""
    deadline = time.monotonic() + HARD_KILL_SECONDS
    status: dict[int, int | None] = {}
    while len(status) < len(children):
        for i, child in enumerate(children):
            if i in status:
                continue
            done, st = os.waitpid(child.pid, os.WNOHANG)
            if done:
                status[i] = st
                if not (os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0):
                    _kill_rest(children, status)
        if len(status) < len(children) and time.monotonic() > deadline:
            _kill_rest(children, status, timed_out=True)
        time.sleep(0.02)
    results = [_result(child, status[i]) for i, child in enumerate(children)]
    late = [r for r in results if r.returncode is None]
    if late:
        raise AssertionError(f"{late[0].args} did not finish in {HARD_KILL_SECONDS} s (killed): {late[0].stderr[-2000:]}")
    return results


def _kill_rest(children: list[Child], status: dict[int, int | None], *, timed_out: bool = False) -> None:
    for i, child in enumerate(children):
        if i not in status:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
            status[i] = None if timed_out else -1


def _result(child: Child, status: int | None) -> subprocess.CompletedProcess:
    texts = []
    for f in (child.out, child.err):
        f.seek(0)
        texts.append(f.read().decode("utf-8", errors="replace"))
        f.close()
    if status is None:
        code = None  # killed at the hard limit
    elif status == -1:
        code = -signal.SIGKILL  # killed because another child failed
    else:
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return subprocess.CompletedProcess(child.label, code, *texts)


def run_cli(argv: list[str], *, env: dict[str, str | None] | None = None, cwd=None) -> subprocess.CompletedProcess:
    """``headsurgeon *argv`` in a forked child, to completion."""
    def target() -> int:
        from headsurgeon.cli.main import run

        return run(list(argv))

    return finish(start(target, env=env, cwd=cwd, label=f"headsurgeon {' '.join(argv)}"))
