"""Small networks: for 8x8 digits (scikit-learn), 28x28 MNIST-like images and feature vectors.

These run in well under a second per epoch on a CPU, for examples, tests and quick studies.

* ``digits_mlp``: adaptive 8x8 average pooling, flatten, two hidden layers (128, 64).
* ``digits_cnn``: three 3x3 conv-BN-ReLU layers (16, 32, 64 channels, one 2x2 max-pool),
  global average pooling, 64 features.
* ``mnist_cnn``: LeNet-like (LeCun et al., "Gradient-Based Learning Applied to Document
  Recognition", Proc. IEEE 1998): two 5x5 conv-ReLU-max-pool stages (32, 64 channels),
  adaptive 4x4 average pooling, a 128-unit fully connected layer.
* ``mlp``: a multilayer perceptron on ``(N, input_dim)`` vectors: no images needed.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..errors import InputError
from .base import Classifier, HeadSpec, init_weights
from .registry import register_model

__all__ = [
    "MLP",
    "DigitsCNN",
    "DigitsMLP",
    "MnistCNN",
    "digits_cnn",
    "digits_mlp",
    "mlp",
    "mnist_cnn",
]


def _mlp_layers(in_dim: int, hidden_sizes: Sequence[int], dropout: float) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InputError(f"hidden sizes must be positive integers, got {tuple(hidden_sizes)}")
        layers += [nn.Linear(in_dim, size), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_dim = size
    return nn.Sequential(*layers), in_dim


def _check_dropout(dropout: float) -> float:
    if not 0.0 <= dropout < 1.0:
        raise InputError(f"dropout must lie in [0, 1), got {dropout!r}")
    return dropout


class _DigitsBase(Classifier):
    """Accepts ``(N, C, H, W)`` images or flat ``(N, C * 64)`` rows (scikit-learn's layout)."""

    in_channels: int

    def _as_image(self, x: Tensor) -> Tensor:
        if isinstance(x, Tensor) and x.dim() == 2 and x.shape[1] == self.in_channels * 64:
            return x.reshape(x.shape[0], self.in_channels, 8, 8)
        self._check_image(x)
        return x


class DigitsMLP(_DigitsBase):
    """MLP for 8x8 digits; inputs of other sizes are average-pooled to 8x8 first."""

    def __init__(
        self,
        num_classes: int,
        head: HeadSpec = "linear",
        in_channels: int = 1,
        hidden_sizes: Sequence[int] = (128, 64),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.pool = nn.AdaptiveAvgPool2d(8)
        self.body, out = _mlp_layers(in_channels * 64, hidden_sizes, _check_dropout(dropout))
        self._attach_head(head, out, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(self.pool(self._as_image(x)).flatten(1))


class DigitsCNN(_DigitsBase):
    """Tiny CNN for 8x8 digits (~24k parameters), 64 features."""

    def __init__(self, num_classes: int, head: HeadSpec = "linear", in_channels: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.body = nn.Sequential(
            *block(in_channels, 16),
            *block(16, 32),
            nn.MaxPool2d(2, ceil_mode=True),
            *block(32, 64),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
        )
        init_weights(self)
        self._attach_head(head, 64, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(self._as_image(x))


class MnistCNN(Classifier):
    """LeNet-like CNN for 28x28 images, 128 features; needs inputs of at least 4x4."""

    min_input_size = 4

    def __init__(
        self,
        num_classes: int,
        head: HeadSpec = "linear",
        in_channels: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(1),
        )
        self.fc, out = _mlp_layers(64 * 16, (128,), _check_dropout(dropout))
        init_weights(self)
        self._attach_head(head, out, num_classes)

    def features(self, x: Tensor) -> Tensor:
        self._check_image(x, self.min_input_size)
        return self.fc(self.conv(x))


class MLP(Classifier):
    """Multilayer perceptron on feature vectors ``(N, input_dim)``; ReLU hidden layers.

    ``num_features`` is the last hidden size (``input_dim`` when there is no hidden layer, and
    the head then sits directly on the inputs).
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        head: HeadSpec = "linear",
        hidden_sizes: Sequence[int] = (128, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
            raise InputError(f"input_dim must be a positive integer, got {input_dim!r}")
        self.input_dim = input_dim
        self.body, out = _mlp_layers(input_dim, hidden_sizes, _check_dropout(dropout))
        self._attach_head(head, out, num_classes)

    def features(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.input_dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"MLP expects inputs of shape (N, {self.input_dim}), got {shape}")
        return self.body(x)


@register_model("digits_mlp")
def digits_mlp(
    num_classes: int,
    head: HeadSpec = "linear",
    in_channels: int = 1,
    hidden_sizes: Sequence[int] = (128, 64),
    dropout: float = 0.0,
) -> DigitsMLP:
    """MLP for 8x8 digits (64 features)."""
    return DigitsMLP(num_classes, head, in_channels, hidden_sizes, dropout)


@register_model("digits_cnn")
def digits_cnn(num_classes: int, head: HeadSpec = "linear", in_channels: int = 1) -> DigitsCNN:
    """Tiny CNN for 8x8 digits (64 features)."""
    return DigitsCNN(num_classes, head, in_channels)


@register_model("mnist_cnn")
def mnist_cnn(
    num_classes: int, head: HeadSpec = "linear", in_channels: int = 1, dropout: float = 0.0
) -> MnistCNN:
    """LeNet-like CNN for 28x28 images (128 features)."""
    return MnistCNN(num_classes, head, in_channels, dropout)


@register_model("mlp")
def mlp(
    num_classes: int,
    head: HeadSpec = "linear",
    in_channels: int | None = None,
    input_dim: int | None = None,
    hidden_sizes: Sequence[int] = (128, 128),
    dropout: float = 0.0,
) -> MLP:
    """MLP on feature vectors; needs ``input_dim``; ``in_channels`` is ignored."""
    if input_dim is None:
        raise InputError(
            "the 'mlp' model needs input_dim, e.g. create_model('mlp', 3, input_dim=4)"
        )
    return MLP(input_dim, num_classes, head, hidden_sizes, dropout)
