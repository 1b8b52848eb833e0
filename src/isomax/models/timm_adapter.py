"""Use any timm model as a :class:`~isomax.models.base.Classifier` with an IsoMax-family head.

timm (Wightman, "PyTorch Image Models", https://github.com/huggingface/pytorch-image-models) is
optional: ``pip install 'isomax[timm]'``. It is imported only when a ``"timm:NAME"`` model is
created. :class:`TimmBackbone` itself needs only timm's model API (``num_features``,
``forward_features``, ``forward_head(x, pre_logits=True)``, ``reset_classifier``), so it also
wraps any module that offers it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from ..errors import InputError
from .base import Classifier, HeadSpec

__all__ = ["TimmBackbone", "create_timm_model"]

_REQUIRED = ("num_features", "forward_features", "forward_head", "reset_classifier")


def _import_timm() -> ModuleType:
    try:
        return importlib.import_module("timm")
    except ImportError as error:
        raise ImportError(
            "timm models need the optional dependency timm: pip install 'isomax[timm]'"
        ) from error


class TimmBackbone(Classifier):
    """A timm model (without its classifier) followed by our ``head``.

    ``features(x) = backbone.forward_head(backbone.forward_features(x), pre_logits=True)``: the
    pooled pre-logit features, of size ``backbone.head_hidden_size`` when the model defines it
    (models with a hidden layer in their head, e.g. MobileNetV3), else ``num_features``.

    Args:
        backbone: a timm model, or any module with timm's API; its classifier is removed with
            ``reset_classifier(0)``.
        num_classes: number of classes.
        head: the last layer (see :func:`isomax.models.base.make_head`).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, head: HeadSpec = "linear") -> None:
        super().__init__()
        missing = [name for name in _REQUIRED if not hasattr(backbone, name)]
        if not isinstance(backbone, nn.Module) or missing:
            raise TypeError(
                "backbone must be an nn.Module with timm's model API "
                f"({', '.join(_REQUIRED)}); {type(backbone).__name__} lacks "
                f"{', '.join(missing) if missing else 'nn.Module'}"
            )
        backbone.reset_classifier(0)
        self.backbone = backbone
        size = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        self._attach_head(head, int(size), num_classes)

    def features(self, x: Tensor) -> Tensor:
        out = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        if out.dim() != 2:
            raise InputError(
                f"the timm model returned pre-logit features of shape {tuple(out.shape)}; "
                "expected (N, D): create it with global pooling (global_pool='avg')"
            )
        return out


def create_timm_model(
    name: str,
    num_classes: int,
    head: HeadSpec = "linear",
    in_channels: int | None = None,
    pretrained: bool = False,
    **kwargs: Any,
) -> TimmBackbone:
    """``timm.create_model(name, pretrained=..., num_classes=0, in_chans=...)`` with our head.

    Extra keyword arguments go to ``timm.create_model`` (e.g. ``drop_rate``).

    Raises:
        ImportError: timm is not installed (``pip install 'isomax[timm]'``).
    """
    timm = _import_timm()
    if in_channels is not None:
        kwargs["in_chans"] = in_channels
    backbone = timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    return TimmBackbone(backbone, num_classes, head=head)
