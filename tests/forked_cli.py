"""The CLI in a process of its own, forked from the test process: real exit codes, real signals.

A test that kills ``headsurgeon operate`` with SIGKILL, or checks the exit code and stderr of a
bad input, needs a separate process; starting ``python -m headsurgeon`` anew costs ~10 s of CPU
importing torch and transformers (most of a tiny run), and the suite paid it dozens of times.
A forked child starts with those modules already imported and otherwise behaves as the user's
process does: :func:`headsurgeon.cli.main.run` with the given arguments and environment, its own
stdout/stderr (file descriptors 1 and 2, so output written below Python is caught too), its own
exit status; a kill point's SIGKILL ends only the child. ``python -m headsurgeon`` itself (a
fresh interpreter) stays covered by the tests that start it as a subprocess (the happy path of
``test_cli_diagnose.py``, the multi-process runs).

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

#: Only a safety net against a wedged child (killed, and the test fails): no test outcome
#: depends on how fast the child is.
HARD_KILL_SECONDS = 900


def warm_up() -> None:
    """Import, in the parent, what the commands import lazily, so no child pays for it."""
    import datasets  # noqa: F401
    import transformers  # noqa: F401
    from transformers import LlamaForCausalLM  # noqa: F401

    import headsurgeon.cli.main  # noqa: F401
    import headsurgeon.surgery.operate  # noqa: F401


def run_cli(argv: list[str], *, env: dict[str, str | None] | None = None, cwd=None) -> subprocess.CompletedProcess:
    """``headsurgeon *argv`` in a forked child; ``env`` sets (or, with ``None``, removes) variables there."""
    warm_up()
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
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

                torch.set_num_threads(1)  # what OMP_NUM_THREADS=1 gave a fresh process
                from headsurgeon.cli.main import run
                from headsurgeon.surgery import killpoints

                killpoints._hits.clear()  # kill points count from this process's start
                code = run(list(argv))
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
        status = _wait(pid)
        out.seek(0)
        err.seek(0)
        stdout, stderr = (f.read().decode("utf-8", errors="replace") for f in (out, err))
    if status is None:
        raise AssertionError(f"headsurgeon {' '.join(argv)} did not finish in {HARD_KILL_SECONDS} s (killed): {stderr[-2000:]}")
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return subprocess.CompletedProcess(["headsurgeon", *argv], code, stdout, stderr)


def _wait(pid: int) -> int | None:
    """The child's wait status, or ``None`` after killing it at the hard limit."""
    deadline = time.monotonic() + HARD_KILL_SECONDS
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.02)
