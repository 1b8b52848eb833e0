"""Image files decoded into memory once, for every run and detector that reads them.

Decoding image files is the slow part of reading a folder or an archive; a comparison trains,
calibrates and fits post-hoc detectors on the same splits many times, so it decodes them once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch

__all__ = ["NormalizedBatches", "decode_splits_once", "fit_batches"]

log = logging.getLogger(__name__)


class NormalizedBatches:
    """Re-iterable normalised ``(x, y)`` batches of raw images held in memory."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: Any, std: Any, size: int) -> None:
        self.x, self.y, self.mean, self.std, self.size = x, y, mean, std, size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from .data import normalize

        for i in range(0, len(self.y), self.size):
            yield (
                normalize(self.x[i : i + self.size], self.mean, self.std),
                self.y[i : i + self.size],
            )


def decode_splits_once(bundle: Any) -> Any:
    """The bundle with its training and validation splits decoded into memory once for every
    run: training, calibration and the post-hoc detectors of each run then read them instead of
    the image files (training holds both in memory anyway, so this costs no more memory)."""
    from .data import ImageDataset, TensorImageDataset, to_tensors

    def in_memory(split: Any) -> Any:
        if not isinstance(split, ImageDataset) or split.transform is not None:
            return split
        if split.raw_tensors() is not None:  # already in memory
            return split
        x, y = to_tensors(split)
        if len(y) < len(split):
            log.warning("%d unreadable images were skipped (on_error='skip')", len(split) - len(y))
        names = getattr(split, "class_names", None)
        return TensorImageDataset(x, y, mean=split.mean, std=split.std, class_names=names)

    val = bundle.val
    if val is not None and len(val):
        val = in_memory(val)
    return replace(bundle, train=in_memory(bundle.train), val=val)


def fit_batches(fit_data: Any, batch_size: int) -> Any:
    """Batches to fit detectors on: image files are decoded once (by threads) for them all."""
    from .data import ImageDataset, to_tensors

    if isinstance(fit_data, ImageDataset) and fit_data.transform is None:
        x, y = to_tensors(fit_data)
        return NormalizedBatches(x, y, fit_data.mean, fit_data.std, batch_size)
    return torch.utils.data.DataLoader(fit_data, batch_size=batch_size, shuffle=False)
