"""The :class:`Classifier` base class: a feature extractor followed by a swappable ``head``.

Every model of :mod:`isomax.models` computes ``forward(x) = head(features(x))``, where
``features`` returns the penultimate representation ``(N, num_features)`` (after global pooling,
flattened) and ``head`` is the last layer: ``nn.Linear`` for the SoftMax baseline or one of the
distance heads of :mod:`isomax.heads` (IsoMax, IsoMax+, DisMax). Swapping the head is all that
changes between the methods, as in Macêdo et al., "Entropic Out-of-Distribution Detection",
IJCNN 2021 (arXiv 1908.05569).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeAlias

from torch import Tensor, nn

from ..errors import InputError
from ..heads import build_head

__all__ = ["Classifier", "HeadSpec", "count_parameters", "init_weights", "make_head"]

#: A head given by name (see :func:`isomax.heads.build_head`), as a ready module, or as a
#: factory ``(in_features, num_classes) -> nn.Module`` (a head class such as
#: :class:`isomax.IsoMaxPlusHead` is such a factory).
HeadSpec: TypeAlias = str | nn.Module | Callable[[int, int], nn.Module]


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _head_size(head: nn.Module, *attrs: str) -> int | None:
    """The first integer attribute among ``attrs`` (e.g. ``in_features``), or None."""
    for attr in attrs:
        value = getattr(head, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def make_head(head: HeadSpec, in_features: int, num_classes: int) -> nn.Module:
    """Turn a :data:`HeadSpec` into a head module mapping ``(N, in_features)`` to ``(N, C)``.

    Args:
        head: a head name (``"linear"``/``"softmax"``, ``"isomax"``, ``"isomaxplus"``,
            ``"dismax"``), an ``nn.Module`` instance (used as is), or a callable
            ``(in_features, num_classes) -> nn.Module``.
        in_features: size of the features the head receives.
        num_classes: number of classes (logits) it must produce.

    Raises:
        TypeError: ``head`` is none of the above, or the callable did not return a module.
        ValueError: unknown head name, or a module whose ``in_features`` (or ``num_classes`` /
            ``out_features``) disagrees with the requested sizes.
    """
    _check_positive_int(in_features, "in_features")
    _check_positive_int(num_classes, "num_classes")
    if isinstance(head, str):
        module = build_head(head, in_features, num_classes)
    elif isinstance(head, nn.Module):
        module = head
    elif callable(head):
        module = head(in_features, num_classes)
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"the head factory {head!r} must return an nn.Module, got {type(module).__name__}"
            )
    else:
        raise TypeError(
            "head must be a head name, an nn.Module or a callable "
            f"(in_features, num_classes) -> nn.Module, got {type(head).__name__}"
        )
    got_in = _head_size(module, "in_features")
    if got_in is not None and got_in != in_features:
        raise InputError(
            f"the head expects {got_in} input features but the model produces {in_features}"
        )
    got_out = _head_size(module, "num_classes", "out_features")
    if got_out is not None and got_out != num_classes:
        raise InputError(f"the head produces {got_out} classes, expected num_classes={num_classes}")
    return module


def init_weights(module: nn.Module) -> None:
    """Standard initialisation of a backbone, in place.

    Convolutions: Kaiming-normal (fan-out, ReLU gain), bias zero, as in He et al., "Delving Deep
    into Rectifiers", ICCV 2015. Batch/group norm: weight 1, bias 0. Linear layers keep PyTorch's
    default. Distance heads are never touched: call this before attaching the head.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm | nn.GroupNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Classifier(nn.Module):
    """Base class: ``forward(x) = head(features(x))`` with a swappable ``head``.

    Subclasses build their layers, then call :meth:`_attach_head`, and implement
    :meth:`features`. Attributes:

    * ``num_features``: size D of the features (input size of the head).
    * ``head``: the last layer; assigning ``model.head = IsoMaxPlusHead(model.num_features, C)``
      replaces it (so does :meth:`replace_head`).
    * ``num_classes``: read from the head (``num_classes`` or ``out_features``) when it says,
      else the value given at construction.
    """

    head: nn.Module
    num_features: int

    def __init__(self) -> None:
        super().__init__()
        self._num_classes = 0

    def _attach_head(self, head: HeadSpec, num_features: int, num_classes: int) -> None:
        """Record the sizes and build ``self.head`` from ``head``."""
        self.num_features = _check_positive_int(num_features, "num_features")
        self._num_classes = _check_positive_int(num_classes, "num_classes")
        self.head = make_head(head, num_features, num_classes)

    @property
    def num_classes(self) -> int:
        """Number of logits the head produces."""
        size = _head_size(self.head, "num_classes", "out_features")
        return self._num_classes if size is None else size

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features of shape ``(N, num_features)``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``head(features(x))`` of shape ``(N, num_classes)``."""
        return self.head(self.features(x))

    def replace_head(self, head: HeadSpec, num_classes: int | None = None) -> Classifier:
        """Replace the head (by name, module or factory) and return the model itself.

        The new head is moved to the device (and floating dtype) of the model's parameters.
        ``num_classes`` defaults to the module's own size (``num_classes`` or ``out_features``)
        for a module, else to the current number of classes.
        """
        n = num_classes
        if n is None and isinstance(head, nn.Module):
            n = _head_size(head, "num_classes", "out_features")
        if n is None:
            n = self.num_classes
        module = make_head(head, self.num_features, n)
        reference = next((p for p in self.parameters() if p.is_floating_point()), None)
        if reference is not None:
            module = module.to(device=reference.device, dtype=reference.dtype)
        self.head = module
        self._num_classes = n
        return self

    def _check_image(self, x: Tensor, min_size: int = 1) -> None:
        """Raise a clear error unless ``x`` is ``(N, C, H, W)`` with H, W >= ``min_size``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise InputError(
                f"{type(self).__name__} expects images of shape (N, C, H, W), "
                f"got {x.dim()}-D shape {tuple(x.shape)}"
            )
        if min(x.shape[-2:]) < min_size:
            raise InputError(
                f"{type(self).__name__} needs images of at least {min_size}x{min_size}, "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (distinct) parameters of ``model``; only ``requires_grad`` ones if asked."""
    return sum(
        math.prod(p.shape) for p in model.parameters() if p.requires_grad or not trainable_only
    )
