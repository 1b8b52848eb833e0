"""DenseNet-BC for small images (DenseNet-BC-100 with growth rate 12).

Huang et al., "Densely Connected Convolutional Networks", CVPR 2017 (arXiv 1608.06993): a 3x3
stem with 2k channels, three dense blocks of bottleneck layers (BN-ReLU-1x1 conv to 4k, BN-ReLU-
3x3 conv to k), transitions (BN-ReLU-1x1 conv with compression 0.5, 2x2 average pooling), a final
BN-ReLU and global average pooling. Depth 100, k = 12 gives 16 layers per block, 342 features and
~0.77M parameters, the model of the IsoMax papers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .base import Classifier, HeadSpec, init_weights
from .registry import register_model

__all__ = ["DenseNet", "densenet100"]


class _DenseLayer(nn.Module):
    """BN-ReLU-conv(1x1, 4k)-BN-ReLU-conv(3x3, k) (bottleneck) or BN-ReLU-conv(3x3, k); its
    output is concatenated to its input."""

    def __init__(self, in_planes: int, growth_rate: int, bottleneck: bool, drop_rate: float):
        super().__init__()
        self.drop_rate = drop_rate
        self.bottleneck = bottleneck
        if bottleneck:
            inner = 4 * growth_rate
            self.bn1 = nn.BatchNorm2d(in_planes)
            self.conv1 = nn.Conv2d(in_planes, inner, 1, bias=False)
            in_planes = inner
        self.bn2 = nn.BatchNorm2d(in_planes)
        self.conv2 = nn.Conv2d(in_planes, growth_rate, 3, padding=1, bias=False)

    def _dropout(self, x: Tensor) -> Tensor:
        return F.dropout(x, p=self.drop_rate, training=self.training) if self.drop_rate else x

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if self.bottleneck:
            out = self._dropout(self.conv1(F.relu(self.bn1(out))))
        out = self._dropout(self.conv2(F.relu(self.bn2(out))))
        return torch.cat([x, out], dim=1)


class _Transition(nn.Module):
    """BN-ReLU-conv(1x1)-(dropout)-avgpool(2x2)."""

    def __init__(self, in_planes: int, out_planes: int, drop_rate: float) -> None:
        super().__init__()
        self.drop_rate = drop_rate
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(F.relu(self.bn(x)))
        if self.drop_rate:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return F.avg_pool2d(out, 2)


class DenseNet(Classifier):
    """DenseNet(-BC) with three dense blocks for small images.

    Args:
        depth: total depth; (depth - 4) must be divisible by 6 with bottlenecks (by 3 without).
        growth_rate: k, channels added by each layer.
        num_classes: number of classes.
        head: the last layer (see :func:`isomax.models.base.make_head`).
        in_channels: image channels.
        compression: channel reduction of the transitions (0.5 for DenseNet-BC).
        bottleneck: use 1x1 bottleneck convolutions (the "B" of BC).
        drop_rate: dropout after each convolution (0 in the IsoMax papers).
    """

    min_input_size = 4  # two 2x2 average poolings

    def __init__(
        self,
        depth: int,
        growth_rate: int,
        num_classes: int,
        head: HeadSpec = "linear",
        in_channels: int = 3,
        compression: float = 0.5,
        bottleneck: bool = True,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        per_block = (depth - 4) // (6 if bottleneck else 3)
        if per_block < 1 or (depth - 4) % (6 if bottleneck else 3):
            raise InputError(f"depth {depth} is not 6n + 4 (with bottlenecks) or 3n + 4 (without)")
        if not 0.0 < compression <= 1.0:
            raise InputError(f"compression must lie in (0, 1], got {compression!r}")
        if not 0.0 <= drop_rate < 1.0:
            raise InputError(f"drop_rate must lie in [0, 1), got {drop_rate!r}")
        planes = 2 * growth_rate if bottleneck else 16
        self.conv1 = nn.Conv2d(in_channels, planes, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i in range(3):
            layers = []
            for _ in range(per_block):
                layers.append(_DenseLayer(planes, growth_rate, bottleneck, drop_rate))
                planes += growth_rate
            stages.append(nn.Sequential(*layers))
            if i < 2:
                out_planes = math.floor(planes * compression)
                stages.append(_Transition(planes, out_planes, drop_rate))
                planes = out_planes
        self.block1, self.trans1, self.block2, self.trans2, self.block3 = stages
        self.bn = nn.BatchNorm2d(planes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        init_weights(self)
        self._attach_head(head, planes, num_classes)

    def features(self, x: Tensor) -> Tensor:
        self._check_image(x, self.min_input_size)
        out = self.trans1(self.block1(self.conv1(x)))
        out = self.block3(self.trans2(self.block2(out)))
        return self.pool(F.relu(self.bn(out))).flatten(1)


@register_model("densenet100")
def densenet100(
    num_classes: int, head: HeadSpec = "linear", in_channels: int = 3, drop_rate: float = 0.0
) -> DenseNet:
    """DenseNet-BC-100 with k = 12 (342 features), ~0.77M parameters for 10 classes."""
    return DenseNet(100, 12, num_classes, head=head, in_channels=in_channels, drop_rate=drop_rate)
