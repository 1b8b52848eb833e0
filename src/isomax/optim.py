"""Optimizer parameter groups with optional weight-decay exclusions."""

from __future__ import annotations

from typing import Any

from torch import nn

from .errors import InputError
from .heads import _DistanceHead

__all__ = ["param_groups"]


def param_groups(
    model: nn.Module,
    weight_decay: float = 1e-4,
    exclude_prototypes: bool = False,
    exclude_scales: bool = False,
    exclude_norm_and_bias: bool = False,
) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into a decayed and a non-decayed group.

    The default decays everything, prototypes and distance scales included, as the authors did
    (SPEC section 2). Pass the result to any ``torch.optim`` optimizer::

        opt = torch.optim.SGD(param_groups(model, 1e-4, exclude_prototypes=True), lr=0.1)

    Args:
        model: any module; heads of this package are recognised wherever they sit.
        weight_decay: decay of the decayed group.
        exclude_prototypes: no decay on the heads' ``prototypes``.
        exclude_scales: no decay on the heads' ``distance_scale``.
        exclude_norm_and_bias: no decay on biases and on normalisation layers' parameters.

    Returns:
        A list of one or two groups (an empty group is left out).
    """
    if weight_decay < 0:
        raise InputError(f"weight_decay must be >= 0, got {weight_decay!r}")
    excluded: set[int] = set()
    for module in model.modules():
        if isinstance(module, _DistanceHead):
            if exclude_prototypes:
                excluded.add(id(module.prototypes))
            scale = getattr(module, "distance_scale", None)
            if exclude_scales and scale is not None:
                excluded.add(id(scale))
        if exclude_norm_and_bias:
            is_norm = isinstance(
                module, nn.modules.batchnorm._NormBase | nn.LayerNorm | nn.GroupNorm
            )
            for name, p in module.named_parameters(recurse=False):
                if is_norm or name == "bias":
                    excluded.add(id(p))
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if id(p) in excluded else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
