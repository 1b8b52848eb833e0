"""Distributed training on PyTorch's own engine (``torchrun``): process group, ranks, reductions."""

from __future__ import annotations

import datetime
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import InputError

__all__ = ["PARENT_POLL_S", "DistInfo", "all_reduce_sum", "cleanup", "setup", "watch_parent"]

log = logging.getLogger(__name__)

#: How often a torchrun worker checks that its launcher is alive. A worker whose launcher was
#: killed (even with SIGKILL) stops within PARENT_POLL_S + TERM_GRACE_S at worst, and within
#: about PARENT_POLL_S when it has no SIGTERM handler of its own.
PARENT_POLL_S = 0.5
TERM_GRACE_S = 5.0
_watcher: threading.Thread | None = None


def watch_parent(
    interval_s: float = PARENT_POLL_S, grace_s: float = TERM_GRACE_S
) -> threading.Thread:
    """Stop this process when its parent (the ``torchrun`` launcher) dies.

    A daemon thread polls ``os.getppid()`` every ``interval_s`` seconds; when the parent is gone
    (the process was re-parented), it logs an error and sends this process SIGTERM, then exits
    it outright after ``grace_s`` seconds if it is still running. Checkpoints are written
    atomically, so the run can be resumed. Started once per process.
    """
    global _watcher
    if _watcher is not None and _watcher.is_alive():
        return _watcher
    parent = os.getppid()

    def run() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        log.error(
            "the launcher of this worker (pid %d) is gone; stopping rank %s (pid %d)",
            parent,
            os.environ.get("RANK", "?"),
            os.getpid(),
        )
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    _watcher = threading.Thread(target=run, name="isomax-parent-watch", daemon=True)
    _watcher.start()
    return _watcher


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def read_env() -> tuple[int, int, int]:
    """(WORLD_SIZE, RANK, LOCAL_RANK) from the environment, checked; (1, 0, 0) without torchrun.

    Raises ValueError with one clear line when they are not integers, when WORLD_SIZE > 1 comes
    without RANK, or when RANK is not in [0, WORLD_SIZE).
    """
    env = os.environ
    values = {}
    for name, default in (("WORLD_SIZE", "1"), ("RANK", None), ("LOCAL_RANK", "0")):
        text = env.get(name, default)
        if text is None:
            values[name] = None
            continue
        try:
            values[name] = int(text)
        except ValueError:
            raise InputError(f"environment variable {name}={text!r} is not an integer") from None
    world = values["WORLD_SIZE"]
    if world < 1:
        raise InputError(f"environment variable WORLD_SIZE={world} must be >= 1")
    if world == 1:
        return 1, 0, 0
    rank = values["RANK"]
    if rank is None:
        raise InputError(
            f"WORLD_SIZE={world} is set but RANK is not: start the processes with torchrun "
            "(which sets both), or unset WORLD_SIZE"
        )
    if not 0 <= rank < world:
        raise InputError(f"RANK={rank} must be in [0, WORLD_SIZE={world})")
    return world, rank, values["LOCAL_RANK"]


def setup(device: torch.device, timeout_s: float = 600.0) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Uses NCCL on CUDA and gloo on the CPU. ``timeout_s`` bounds how long a collective waits
    for a dead or hung peer before raising instead of hanging. Each worker also watches its
    launcher (:func:`watch_parent`) and stops within about ``PARENT_POLL_S`` seconds of its
    death.
    """
    world, rank, local_rank = read_env()
    if world <= 1:
        return DistInfo()
    watch_parent()  # a worker must not train on alone when torchrun itself is killed
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
        log.info("rank %d/%d joined the process group (%s)", rank, world, backend)
    return DistInfo(rank, world, local_rank)


def all_reduce_sum(values: list[float], device: torch.device, info: DistInfo) -> list[float]:
    """Sum a few numbers over all ranks (identity in a single process)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every rank."""
    if info.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
