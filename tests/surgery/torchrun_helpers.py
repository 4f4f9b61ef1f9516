"""Several ranks of one job on this CPU (gloo), as ``torchrun --nproc_per_node N`` starts them.

Each rank is a process forked from the test process (``tests/forked_cli.py``: torch,
transformers and accelerate already imported, so no rank pays ~10 s of imports) with the
environment torchrun gives its workers: ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT``. The rendezvous store is a ``TCPStore`` this process binds to
port 0, so the operating system picks a free port that stays taken while the job runs (no
fixed port to collide with another test run, no window between finding a port and binding it);
the ranks reach it as torchrun's workers reach its agent's store
(``TORCHELASTIC_USE_AGENT_STORE``). When one rank fails the others are killed; a hard timeout
kills everything (a safety net only: nothing asserted depends on speed).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import forked_cli


def run_ranks(target: Callable[[], int | None], nproc: int = 2) -> list[subprocess.CompletedProcess]:
    """``target()`` in ``nproc`` ranks of one process group; each rank's exit code, stdout, stderr."""
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, world_size=nproc, is_master=True, wait_for_workers=False)
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port), "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
           "GROUP_RANK": "0", "ROLE_RANK": None, "TORCHELASTIC_USE_AGENT_STORE": "True", "OMP_NUM_THREADS": "1"}
    try:
        children = [forked_cli.start(target, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, label=f"rank {r}")
                    for r in range(nproc)]
        return forked_cli.finish_all(children)
    finally:
        del store


def check(results: list[subprocess.CompletedProcess]) -> None:
    """Every rank exited 0 (else the first failure's stderr)."""
    failed = [r for r in results if r.returncode != 0]
    assert not failed, f"{failed[0].args} exited {failed[0].returncode}: {failed[0].stderr[-3000:]}"
