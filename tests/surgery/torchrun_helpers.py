"""Running a test's command under ``torchrun`` on this CPU, with no port fixed in advance.

``--standalone`` has torch's rendezvous store bind port 0, so the operating system picks a
free port and the workers reach the store through it: two test runs on one machine cannot
collide, and there is no window between finding a free port and binding it. The run gets its
own process group, killed as a whole after a hard timeout (a safety net only: nothing asserted
depends on speed), so a wedged rank cannot outlive the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

HARD_KILL_SECONDS = 900


def run(args: list[str], *, env: dict[str, str], nproc: int | None = None) -> subprocess.CompletedProcess:
    """``python [-m torch.distributed.run --standalone --nproc_per_node N] *args`` to completion."""
    launcher = [] if nproc is None else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    proc = subprocess.Popen([sys.executable, *launcher, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=HARD_KILL_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{args[0]} did not finish in {HARD_KILL_SECONDS} s (killed): {err[-3000:]}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # any worker left behind
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
