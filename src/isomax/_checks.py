"""Input validation shared by the heads, losses, scores, metrics and detectors.

Every check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong
shape or value) with a message that names the argument, what was seen and what was expected.
"""

from __future__ import annotations

import math

import numpy as np
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


def check_labels(
    labels: object,
    name: str,
    n: int,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    rows: str = "logits",
) -> Tensor:
    """Check integer class labels of shape (n,) in [0, num_classes) (or equal to ignore_index).

    The one label check of isomax (losses, heads, metrics, post-hoc detectors, fine-tuning).
    ``labels`` is a tensor, or a NumPy array (returned as a CPU tensor, unsigned widened to
    int64); ``num_classes=None`` only requires labels >= 0; ``rows`` names what the labels pair
    with, in the message. The range check runs for CPU tensors only: on an accelerator it would
    force a host synchronisation on every step, and PyTorch's own kernels assert on
    out-of-range labels.
    """
    if isinstance(labels, np.ndarray):
        labels = _from_numpy(labels, name)
    if not isinstance(labels, Tensor):
        raise TypeError(
            f"{name} must be a tensor of integer class indices, got {type(labels).__name__}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integer class indices (torch.long), got dtype {labels.dtype}"
        )
    if labels.dim() != 1 or labels.shape[0] != n:
        raise InputError(
            f"{name} must have shape ({n},) to match the {rows}, got {tuple(labels.shape)}"
        )
    if labels.device.type == "cpu" and n > 0 and not _is_compiling():
        high = num_classes if num_classes is not None else None
        valid = labels >= 0
        if high is not None:
            valid &= labels < high
        if ignore_index is not None:
            valid |= labels == ignore_index
        if not bool(valid.all()):
            bad = labels[~valid][0].item()
            where = f"lie in [0, {high - 1}]" if high is not None else "be >= 0"
            also = "" if ignore_index is None else f" (or equal ignore_index={ignore_index})"
            raise InputError(f"{name} must {where}{also}, found {bad}")
    return labels


def _from_numpy(arr: np.ndarray, name: str) -> Tensor:
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must hold integer class indices (torch.long), got dtype {arr.dtype}"
        )
    if arr.dtype.kind == "u" and arr.dtype.itemsize >= 2:  # torch lacks most uint16+ kernels
        if arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise InputError(f"{name} must lie in [0, 2**63 - 1], found {int(arr.max())}")
        arr = arr.astype(np.int64)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(np.ascontiguousarray(arr))


def check_positive(value: float, name: str) -> float:
    """Check a finite, strictly positive number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    return v
