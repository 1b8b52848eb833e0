"""CIFAR ResNets (ResNet-18 and ResNet-34 with basic blocks).

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv 1512.03385), in
the variant used for 32x32 images in the IsoMax papers: a 3x3 stride-1 stem without max-pool,
four stages of widths 64-128-256-512 (strides 1, 2, 2, 2), 1x1 projection shortcuts, global
average pooling; ~11.17M (ResNet-18) and ~21.28M (ResNet-34) parameters for 10 classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .base import Classifier, HeadSpec, init_weights
from .registry import register_model

__all__ = ["BasicBlock", "CifarResNet", "resnet18", "resnet34"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(Classifier):
    """ResNet with basic blocks for small images; ``num_features`` = 512.

    Args:
        num_blocks: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        num_classes: number of classes.
        head: the last layer (see :func:`isomax.models.base.make_head`).
        in_channels: image channels.
        widths: channels of the four stages.
    """

    def __init__(
        self,
        num_blocks: Sequence[int],
        num_classes: int,
        head: HeadSpec = "linear",
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        if len(num_blocks) != 4 or len(widths) != 4 or any(n < 1 for n in num_blocks):
            raise ValueError(
                "num_blocks and widths must each give 4 stages with at least one block, got "
                f"{tuple(num_blocks)} and {tuple(widths)}"
            )
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages: list[nn.Module] = []
        in_planes = widths[0]
        for i, (n, width) in enumerate(zip(num_blocks, widths)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, width, stride=2 if i > 0 and j == 0 else 1))
                in_planes = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        init_weights(self)
        self._attach_head(head, in_planes, num_classes)

    def features(self, x: Tensor) -> Tensor:
        self._check_image(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.pool(out).flatten(1)


@register_model("resnet18")
def resnet18(num_classes: int, head: HeadSpec = "linear", in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-18 (blocks 2-2-2-2), ~11.17M parameters for 10 classes."""
    return CifarResNet((2, 2, 2, 2), num_classes, head=head, in_channels=in_channels)


@register_model("resnet34")
def resnet34(num_classes: int, head: HeadSpec = "linear", in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-34 (blocks 3-4-6-3), ~21.28M parameters for 10 classes."""
    return CifarResNet((3, 4, 6, 3), num_classes, head=head, in_channels=in_channels)
