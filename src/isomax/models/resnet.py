"""CIFAR ResNets: ResNet-18/34 (four stages) and the thin ResNet-8/20/32/56 (three stages).

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv 1512.03385), in
the variant used for 32x32 images in the IsoMax papers: a 3x3 stride-1 stem without max-pool,
four stages of widths 64-128-256-512 (strides 1, 2, 2, 2), 1x1 projection shortcuts, global
average pooling; ~11.17M (ResNet-18) and ~21.28M (ResNet-34) parameters for 10 classes.

The thin family is the paper's own CIFAR-10 network (section 4.2): a 3x3 stem with 16
channels, three stages of ``n`` basic blocks with 16-32-64 channels (strides 1, 2, 2), ``6n + 2``
layers, and parameter-free shortcuts ("option A": subsample by 2, zero-pad the new channels).
ResNet-20 has ~0.27M parameters; these train in minutes on a laptop CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .base import Classifier, HeadSpec, init_weights
from .registry import register_model

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "ThinResNet",
    "resnet8",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet56",
    "resnet110",
]


class _PadShortcut(nn.Module):
    """He et al.'s option A: subsample by ``stride`` and zero-pad ``extra`` channels."""

    def __init__(self, extra: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = extra, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut."""

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, projection: bool = True
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if (stride != 1 or in_planes != planes) and not projection:
            self.shortcut = _PadShortcut(planes - in_planes, stride)
        elif stride != 1 or in_planes != planes:
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
            raise InputError(
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


class ThinResNet(Classifier):
    """He et al.'s CIFAR ResNet with ``6 * blocks + 2`` layers; ``num_features`` = 64.

    Args:
        blocks: basic blocks per stage (3 stages), e.g. 3 for ResNet-20.
        num_classes: number of classes.
        head: the last layer (see :func:`isomax.models.base.make_head`).
        in_channels: image channels.
        widths: channels of the three stages.
    """

    def __init__(
        self,
        blocks: int,
        num_classes: int,
        head: HeadSpec = "linear",
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
            raise InputError(f"blocks must be a positive integer, got {blocks!r}")
        if len(widths) != 3 or any(w < 1 for w in widths) or list(widths) != sorted(widths):
            raise InputError(
                "widths must give 3 positive, non-decreasing stage widths (the zero-padding "
                f"shortcuts cannot drop channels), got {tuple(widths)}"
            )
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for i, width in enumerate(widths):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(BasicBlock(in_planes, width, stride, projection=False))
                in_planes = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        init_weights(self)
        self._attach_head(head, in_planes, num_classes)

    def features(self, x: Tensor) -> Tensor:
        self._check_image(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return self.pool(self.layers(out)).flatten(1)


@register_model("resnet8")
def resnet8(num_classes: int, head: HeadSpec = "linear", in_channels: int = 3) -> ThinResNet:
    """Thin CIFAR ResNet-8 (1 block per stage), ~0.08M parameters for 10 classes."""
    return ThinResNet(1, num_classes, head=head, in_channels=in_channels)


@register_model("resnet20")
def resnet20(num_classes: int, head: HeadSpec = "linear", in_channels: int = 3) -> ThinResNet:
    """Thin CIFAR ResNet-20 (3 blocks per stage), ~0.27M parameters for 10 classes."""
    return ThinResNet(3, num_classes, head=head, in_channels=in_channels)


@register_model("resnet32")
def resnet32(num_classes: int, head: HeadSpec = "linear", in_channels: int = 3) -> ThinResNet:
    """Thin CIFAR ResNet-32 (5 blocks per stage), ~0.46M parameters for 10 classes."""
    return ThinResNet(5, num_classes, head=head, in_channels=in_channels)


@register_model("resnet44")
def resnet44(num_classes: int, head: HeadSpec = "linear", in_channels: int = 3) -> ThinResNet:
    """Thin CIFAR ResNet-44 (7 blocks per stage), ~0.66M parameters for 10 classes."""
    return ThinResNet(7, num_classes, head=head, in_channels=in_channels)


@register_model("resnet56")
def resnet56(num_classes: int, head: HeadSpec = "linear", in_channels: int = 3) -> ThinResNet:
    """Thin CIFAR ResNet-56 (9 blocks per stage), ~0.85M parameters for 10 classes."""
    return ThinResNet(9, num_classes, head=head, in_channels=in_channels)


@register_model("resnet110")
def resnet110(num_classes: int, head: HeadSpec = "linear", in_channels: int = 3) -> ThinResNet:
    """Thin CIFAR ResNet-110 (18 blocks per stage), ~1.7M parameters for 10 classes."""
    return ThinResNet(18, num_classes, head=head, in_channels=in_channels)
