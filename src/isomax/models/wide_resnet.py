"""Wide residual networks (WRN-28-10).

Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv 1605.07146): a 3x3 stem
with 16 channels, three groups of (depth - 4) / 6 pre-activation blocks (BN-ReLU-3x3 conv-BN-
ReLU-dropout-3x3 conv) of widths 16k, 32k, 64k with strides 1, 2, 2, a final BN-ReLU and global
average pooling. WRN-28-10 has 640 features and ~36.5M parameters.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .base import Classifier, HeadSpec, init_weights
from .registry import register_model

__all__ = ["WideBasicBlock", "WideResNet", "wrn28_10"]


class WideBasicBlock(nn.Module):
    """Pre-activation block; a 1x1 projection of the pre-activated input when shapes change."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(pre)))
        if self.dropout:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(Classifier):
    """WRN-depth-k; ``num_features`` = 64k.

    Args:
        depth: 6n + 4 (28 gives n = 4 blocks per group).
        widen_factor: k.
        num_classes: number of classes.
        head: the last layer (see :func:`isomax.models.base.make_head`).
        in_channels: image channels.
        dropout: dropout between the two convolutions of each block (0.3 in the paper for
            CIFAR; default 0).
    """

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int,
        head: HeadSpec = "linear",
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise InputError(f"depth must be 6n + 4 with n >= 1, got {depth}")
        if widen_factor < 1:
            raise InputError(f"widen_factor must be >= 1, got {widen_factor}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must lie in [0, 1), got {dropout!r}")
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        groups: list[nn.Module] = []
        in_planes = 16
        for i, width in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(WideBasicBlock(in_planes, width, stride, dropout))
                in_planes = width
            groups.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = groups
        self.bn = nn.BatchNorm2d(in_planes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        init_weights(self)
        self._attach_head(head, in_planes, num_classes)

    def features(self, x: Tensor) -> Tensor:
        self._check_image(x)
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.pool(F.relu(self.bn(out))).flatten(1)


@register_model("wrn28_10")
def wrn28_10(
    num_classes: int, head: HeadSpec = "linear", in_channels: int = 3, dropout: float = 0.0
) -> WideResNet:
    """WRN-28-10 (640 features), ~36.5M parameters for 10 classes."""
    return WideResNet(28, 10, num_classes, head=head, in_channels=in_channels, dropout=dropout)
