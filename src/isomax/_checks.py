"""Input validation shared by the heads, losses and scores.

Every check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong
shape or value) with a message that names the argument, what was seen and what was expected.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import InputError


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def check_float_matrix(x: object, name: str, columns: int | None = None) -> Tensor:
    """Check that ``x`` is a floating 2-D tensor, optionally with ``columns`` columns."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must have a floating dtype (float16, bfloat16, float32 or float64), "
            f"got {x.dtype}"
        )
    expected = f"(N, {columns})" if columns is not None else "(N, C)"
    if x.dim() != 2:
        raise InputError(
            f"{name} must be 2-D with shape {expected}, got {x.dim()}-D shape {tuple(x.shape)}"
        )
    if columns is not None and x.shape[1] != columns:
        raise InputError(
            f"{name} has shape {tuple(x.shape)}, expected {expected}: "
            f"the last dimension must be {columns}"
        )
    return x


def check_labels(labels: object, name: str, n: int, num_classes: int, ignore_index: int) -> Tensor:
    """Check integer class labels of shape (n,) in [0, num_classes) (or equal to ignore_index).

    The range check runs for CPU tensors only: on an accelerator it would force a host
    synchronisation on every step, and PyTorch's own kernels assert on out-of-range labels.
    """
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integer class indices (torch.long), got dtype {labels.dtype}"
        )
    if labels.dim() != 1 or labels.shape[0] != n:
        raise InputError(
            f"{name} must have shape ({n},) to match the logits, got {tuple(labels.shape)}"
        )
    if labels.device.type == "cpu" and n > 0 and not _is_compiling():
        valid = (labels >= 0) & (labels < num_classes) | (labels == ignore_index)
        if not bool(valid.all()):
            bad = labels[~valid][0].item()
            raise InputError(
                f"{name} must lie in [0, {num_classes - 1}] (or equal ignore_index="
                f"{ignore_index}), found {bad}"
            )
    return labels


def check_positive(value: float, name: str) -> float:
    """Check a finite, strictly positive number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    return v
