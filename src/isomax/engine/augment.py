"""Batched image augmentation on whatever device the batch is on (GPU-side for fast training).

Random crop with zero padding and horizontal flip, as ``RandomCrop(32, padding=4)`` +
``RandomHorizontalFlip()`` do per image, done for a whole batch with a few indexing ops. The
random draws come from a CPU ``torch.Generator``, so a seed gives the same batch on any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["crop_flip"]


def crop_flip(x: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Randomly crop (after zero padding) and horizontally flip every image of ``x`` (N, C, H, W).

    ``x`` must hold raw pixel values (not yet normalised), so that the padding is black as in
    the reference recipe.
    """
    n, _, h, w = x.shape
    if n == 0:
        return x
    flips = torch.rand(n, generator=generator) < 0.5
    if padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        padded = F.pad(x, (padding, padding, padding, padding))
        rows = (dy[:, None] + torch.arange(h)).to(x.device)  # (N, H)
        cols = (dx[:, None] + torch.arange(w)).to(x.device)  # (N, W)
        batch = torch.arange(n, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
        x = x.permute(0, 3, 1, 2)
    flips = flips.to(x.device)[:, None, None, None]
    return torch.where(flips, x.flip(3), x).contiguous()
