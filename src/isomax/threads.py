"""How many torch threads to use: one per core that other processes leave free."""

from __future__ import annotations

import os

__all__ = ["free_cores", "size_threads"]


def free_cores() -> int:
    """Cores not busy with other work now: the cores this process may use minus the load
    average of the last minute (at least 1). OMP_NUM_THREADS, when set, wins."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not on Unix
        load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


def size_threads() -> int:
    """One torch thread per free core: more threads than free cores spin against the other
    processes (on a busy 2-core machine the demo took five times the CPU time). Returns it."""
    import torch

    n = free_cores()
    torch.set_num_threads(n)
    return n
