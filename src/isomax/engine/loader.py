"""Tensor-resident batch loader: data kept on the device, shuffled, sharded and augmented there.

The order of an epoch depends only on ``(seed, epoch)``, never on hidden state, so a resumed run
sees exactly the batches an uninterrupted run would, and all ranks of a distributed run agree
on the permutation before each takes its own shard.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from ..errors import InputError
from .augment import crop_flip

__all__ = ["TensorLoader", "epoch_generator"]


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator determined by (seed, epoch, stream)."""
    # distinct (seed, epoch, stream) triples give distinct seeds for streams < 1,000,033
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + stream)


class TensorLoader:
    """Batches from in-memory tensors of raw images and labels.

    Args:
        images: raw images (N, C, H, W), uint8 (divided by 255) or float in [0, 1].
        labels: (N,) int64.
        batch_size: per-process batch size.
        mean, std: per-channel normalisation applied after augmentation.
        device: where batches are produced (the tensors are moved there once).
        shuffle, drop_last: as in ``DataLoader``.
        augment: apply random crop (padding 4) and horizontal flip.
        seed: base of the per-epoch generators; call :meth:`set_epoch` before each epoch.
        rank, world_size: shard of a distributed run.
        even_shards: every rank gets the same number of samples (wrapping around, for
            training); ``False`` gives disjoint shards of unequal size (for evaluation).
        channels_last: produce batches in channels-last memory format.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        drop_last: bool = False,
        augment: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        even_shards: bool = True,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise InputError(
                f"images and labels disagree: {images.shape[0]} images, {labels.shape[0]} labels"
            )
        if images.shape[0] == 0:
            raise InputError("cannot make batches from an empty set of images")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.long)
        self.batch_size = batch_size
        shape = (1, -1) + (1,) * (images.dim() - 2)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(shape)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(shape)
        self.shuffle, self.drop_last, self.augment = shuffle, drop_last, augment
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.channels_last = channels_last
        self.even_shards = even_shards
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> Tensor:
        n = self.images.shape[0]
        if self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, self.epoch))
        else:
            order = torch.arange(n)
        if self.world_size > 1 and not self.even_shards:
            return order[self.rank :: self.world_size]
        if self.world_size > 1:
            per_rank = n // self.world_size if self.drop_last else -(-n // self.world_size)
            total = per_rank * self.world_size
            if total > n:  # pad by wrapping around, as DistributedSampler does
                order = torch.cat([order, order[: total - n]])
            order = order[self.rank : total : self.world_size]
        return order

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples this process sees per epoch."""
        n = len(self._indices())
        return (n // self.batch_size) * self.batch_size if self.drop_last else n

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._indices().to(self.device)
        gen = epoch_generator(self.seed, self.epoch, stream=1 + self.rank)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.images[idx]
            x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
            if self.augment and x.dim() == 4:
                x = crop_flip(x, gen)
            x = (x - self.mean) / self.std
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
