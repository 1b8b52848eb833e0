"""A small timm-style model registry: :func:`register_model`, :func:`create_model`,
:func:`list_models`.

A registered builder is called as ``builder(num_classes=..., head=..., **kwargs)`` (with
``in_channels=...`` among the keyword arguments when the caller gives it) and must return a
:class:`~isomax.models.base.Classifier`. Names of the form
``"timm:NAME"`` are not registered: :func:`create_model` hands them to
:func:`isomax.models.timm_adapter.create_timm_model`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from .._names import add_name, find_name, registry_key, unknown_name
from ..errors import InputError
from .base import Classifier, HeadSpec

__all__ = ["TIMM_PREFIX", "create_model", "list_models", "register_model"]

TIMM_PREFIX = "timm:"

_Builder = TypeVar("_Builder", bound=Callable[..., Classifier])

_MODELS: dict[str, Callable[..., Classifier]] = {}


def register_model(name: str, *, overwrite: bool = False) -> Callable[[_Builder], _Builder]:
    """Decorator registering a model builder under ``name``, looked up by :mod:`isomax._names`'
    rule (case, ``-`` / ``_`` do not matter: ``"tiny-net"`` finds ``"tiny_net"``).

    Example::

        @register_model("tiny_net")
        def tiny_net(num_classes: int, head: HeadSpec = "linear", in_channels: int = 3):
            return TinyNet(num_classes, head, in_channels)

    Raises:
        ValueError: empty name, a name starting with ``"timm:"``, or a name already taken, in
            any spelling (unless ``overwrite=True``).
    """
    if registry_key("model", name).startswith(TIMM_PREFIX):
        raise InputError(f"names starting with {TIMM_PREFIX!r} are reserved for timm models")

    def decorator(builder: _Builder) -> _Builder:
        if not callable(builder):
            raise TypeError(f"register_model({name!r}) must decorate a callable")
        add_name("model", _MODELS, name, builder, overwrite)
        return builder

    return decorator


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a shell-style ``pattern`` (``"resnet*"``).

    timm models are not listed; any ``"timm:NAME"`` that timm knows is accepted by
    :func:`create_model`.
    """
    names = sorted(_MODELS)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern.lower())]
    return names


def create_model(
    name: str,
    num_classes: int,
    head: HeadSpec = "linear",
    in_channels: int | None = None,
    **kwargs: Any,
) -> Classifier:
    """Build a registered model (or ``"timm:NAME"``) with the given head.

    Args:
        name: a name from :func:`list_models`, or ``"timm:NAME"`` for a timm model (needs
            ``pip install 'isomax[timm]'``; accepts ``pretrained=True``).
        num_classes: number of classes.
        head: head name for :func:`isomax.heads.build_head` (``"linear"``, ``"isomax"``,
            ``"isomaxplus"``, ``"dismax"``), an ``nn.Module`` or a callable
            ``(in_features, num_classes) -> nn.Module``.
        in_channels: image channels; None keeps the model's default (3 for the CIFAR networks
            and timm, 1 for ``digits_*`` and ``mnist_cnn``); ignored by ``"mlp"``.
        **kwargs: passed to the builder (e.g. ``dropout`` for ``"wrn28_10"``, ``input_dim`` for
            ``"mlp"``).

    Raises:
        ValueError: unknown name (the message lists the valid ones) or invalid sizes.
        ImportError: a ``"timm:"`` name without timm installed.
    """
    if isinstance(name, str) and name.strip().lower().startswith(TIMM_PREFIX):
        from .timm_adapter import create_timm_model

        return create_timm_model(
            name.strip()[len(TIMM_PREFIX) :],
            num_classes,
            head=head,
            in_channels=in_channels,
            **kwargs,
        )
    key = find_name(name, _MODELS)
    if key is None:
        raise unknown_name(
            "model", name, list_models(), also=f"'{TIMM_PREFIX}NAME' for a timm model"
        )
    if in_channels is not None:
        kwargs["in_channels"] = in_channels
    model = _MODELS[key](num_classes=num_classes, head=head, **kwargs)
    if not isinstance(model, Classifier):
        raise TypeError(
            f"the builder of {key!r} returned {type(model).__name__}, expected a Classifier"
        )
    return model
