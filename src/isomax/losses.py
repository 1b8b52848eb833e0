"""The IsoMax loss: cross-entropy of entropic-scaled logits, a drop-in for ``nn.CrossEntropyLoss``.

The entropic scale E_s (10 in the papers) acts only in training; at inference the head's logits are
used as they are, which yields high-entropy posteriors that separate in- from out-of-distribution
inputs (Macêdo et al., arXiv 1908.05569).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_float_matrix, check_labels, check_positive
from .errors import InputError

__all__ = ["IsoMaxLoss"]

_REDUCTIONS = ("mean", "sum", "none")


class IsoMaxLoss(nn.Module):
    """Cross-entropy of ``entropic_scale * logits`` in the numerically stable (log-softmax) form.

    With ``entropic_scale=1`` on a linear head this is exactly ``nn.CrossEntropyLoss`` (the SoftMax
    baseline). Use it with any head of this package: IsoMax, IsoMax+ or DisMax.

    Args:
        entropic_scale: E_s, multiplies the logits in the loss only (default 10).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``, as in ``nn.CrossEntropyLoss``.
        ignore_index: targets equal to it contribute nothing (and are left out of the mean).
    """

    def __init__(
        self, entropic_scale: float = 10.0, reduction: str = "mean", ignore_index: int = -100
    ) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise InputError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.entropic_scale = check_positive(entropic_scale, "entropic_scale")
        self.reduction = reduction
        self.ignore_index = int(ignore_index)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        check_float_matrix(logits, "logits")
        check_labels(targets, "targets", logits.shape[0], logits.shape[1], self.ignore_index)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # the loss is always reduced in at least float32
        targets = targets.long()  # int32 / uint8 labels are accepted
        return F.cross_entropy(
            self.entropic_scale * logits,
            targets,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
        )

    def extra_repr(self) -> str:
        return f"entropic_scale={self.entropic_scale:g}, reduction={self.reduction!r}"
