"""DisMax Fractional Probability Regularization (FPR).

The batch is permuted; each image of the second half becomes a 2x2 mosaic whose quadrants come
from that image and from the half rolled by 1, 2 and 3 along the batch, and its target puts 0.25
on each source label (mass adds up where labels repeat). The loss is
``[CE(first half) + alpha * KL(target || softmax(E_s z))(second half)] / 2``
(Macêdo et al., "Distinction Maximization Loss", arXiv 2205.05874).

Two lines in a training loop::

    inputs, targets = fpr(inputs, labels)
    loss = criterion(model(inputs), targets)      # criterion = FPRLoss()
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_float_matrix, check_labels, check_positive
from .errors import InputError

__all__ = [
    "FPRLoss",
    "FPRTargets",
    "FractionalProbabilityRegularization",
    "fractional_targets",
    "mosaics",
]

ALPHAS = (1.0, 0.5, 0.25)


@dataclass(frozen=True)
class FPRTargets:
    """Targets of an FPR batch.

    Attributes:
        probs: target distributions, shape (N, C): one-hot for the first ``num_plain`` rows,
            fractional (multiples of 0.25) for the mosaics that follow.
        labels: the permuted hard labels, shape (N,); for a mosaic, the label of its top-left
            quadrant.
        num_plain: number of unmodified images at the start of the batch.
    """

    probs: Tensor
    labels: Tensor
    num_plain: int

    def to(self, device: torch.device | str) -> FPRTargets:
        return FPRTargets(self.probs.to(device), self.labels.to(device), self.num_plain)


class FractionalProbabilityRegularization:
    """Batch transform of DisMax FPR: ``(images, labels) -> (images, FPRTargets)``.

    Args:
        num_classes: number of classes C (sets the width of the target distributions).
        generator: a ``torch.Generator`` (CPU) that seeds the permutation; ``None`` uses the
            global generator.

    Images are (N, C, H, W) with any H, W (odd too: the top and left quadrants take the floor
    half). With N images, the first ceil(N/2) stay as they are and the last floor(N/2) become
    mosaics; a batch of one image is returned unchanged.
    """

    def __init__(self, num_classes: int, generator: torch.Generator | None = None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise InputError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = num_classes
        self.generator = generator

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, FPRTargets]:
        if not isinstance(images, Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise InputError(f"images must be a 4-D tensor (N, C, H, W), got {shape}")
        n = images.shape[0]
        if n == 0:
            raise InputError("images must hold at least one image, got an empty batch")
        check_labels(labels, "labels", n, self.num_classes, ignore_index=-(2**62))
        labels = labels.long()
        perm = torch.randperm(n, generator=self.generator).to(images.device)
        images = images[perm]
        labels = labels[perm]
        num_plain = n - n // 2
        probs = F.one_hot(labels, self.num_classes).to(torch.float32)
        if n - num_plain == 0:
            return images, FPRTargets(probs, labels, num_plain)
        mixed = fractional_targets(labels[num_plain:], self.num_classes).to(probs.device)
        images = torch.cat([images[:num_plain], mosaics(images[num_plain:])])
        probs = torch.cat([probs[:num_plain], mixed])
        return images, FPRTargets(probs, labels, num_plain)


def mosaics(images: Tensor) -> Tensor:
    """2x2 mosaics of a batch (N, C, H, W): image i keeps its top-left quadrant and takes the
    top-right from image i - 1, the bottom-left from i - 2 and the bottom-right from i - 3
    (indices modulo N, i.e. the batch rolled by 1, 2 and 3). Top and left take the floor half.
    """
    h, w = images.shape[2] // 2, images.shape[3] // 2
    out = images.clone()
    out[:, :, :h, w:] = images.roll(1, 0)[:, :, :h, w:]
    out[:, :, h:, :w] = images.roll(2, 0)[:, :, h:, :w]
    out[:, :, h:, w:] = images.roll(3, 0)[:, :, h:, w:]
    return out


def fractional_targets(labels: Tensor, num_classes: int) -> Tensor:
    """Targets of :func:`mosaics`: 0.25 on the label of each source image, shape (N, C), float32
    (mass adds up where labels repeat)."""
    mixed = torch.zeros(labels.shape[0], num_classes, device=labels.device)
    for k in range(4):
        mixed += 0.25 * F.one_hot(labels.long().roll(k, 0), num_classes).to(mixed.dtype)
    return mixed


class FPRLoss(nn.Module):
    """DisMax loss with FPR: ``[CE(plain) + alpha * KL(target || softmax(E_s z))(mosaics)] / 2``.

    Given plain integer labels it is the IsoMax loss (cross-entropy of ``entropic_scale * z``), so
    the same criterion serves training with FPR and evaluation without it. When a batch has no
    mosaic (a batch of one), the loss is the cross-entropy of the plain part alone.

    Args:
        entropic_scale: E_s (default 10).
        alpha: weight of the fractional term, one of 1, 0.5, 0.25 (default 1).
    """

    def __init__(self, entropic_scale: float = 10.0, alpha: float = 1.0) -> None:
        super().__init__()
        self.entropic_scale = check_positive(entropic_scale, "entropic_scale")
        if float(alpha) not in ALPHAS:
            raise InputError(f"alpha must be one of {ALPHAS}, got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, logits: Tensor, targets: FPRTargets | Tensor) -> Tensor:
        check_float_matrix(logits, "logits")
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        log_q = F.log_softmax(self.entropic_scale * logits.to(dtype), dim=1)
        if isinstance(targets, Tensor):
            check_labels(targets, "targets", logits.shape[0], logits.shape[1], -100)
            return F.nll_loss(log_q, targets.long())
        if not isinstance(targets, FPRTargets):
            raise TypeError(
                f"targets must be FPRTargets or a tensor of labels, got {type(targets).__name__}"
            )
        if targets.probs.shape != logits.shape:
            raise InputError(
                f"targets.probs has shape {tuple(targets.probs.shape)}, expected the logits "
                f"shape {tuple(logits.shape)}"
            )
        k = targets.num_plain
        ce = F.nll_loss(log_q[:k], targets.labels[:k])
        if k == logits.shape[0]:
            return ce
        kl = F.kl_div(log_q[k:], targets.probs[k:].to(dtype), reduction="batchmean")
        return 0.5 * (ce + self.alpha * kl)

    def extra_repr(self) -> str:
        return f"entropic_scale={self.entropic_scale:g}, alpha={self.alpha:g}"
