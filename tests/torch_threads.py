"""One torch thread for tiny-model tests (shared by the conftests)."""

from contextlib import contextmanager


@contextmanager
def one_torch_thread():
    """Tiny models run on one thread: on a shared 2-core machine a second OpenMP thread only
    spins (it tripled the CPU time of these tests under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
