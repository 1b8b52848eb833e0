"""Distributed training on PyTorch's own engine (``torchrun``): process group, ranks, reductions."""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_reduce_sum", "cleanup", "setup"]

log = logging.getLogger(__name__)


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


def setup(device: torch.device, timeout_s: float = 600.0) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Uses NCCL on CUDA and gloo on the CPU. ``timeout_s`` bounds how long a collective waits
    for a dead or hung peer before raising instead of hanging.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
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
