"""Weights trained elsewhere: read a weights file safely and fit it to a registered model.

The models people bring are weight files, not code. :func:`read_state_dict` reads one without
running code: safetensors, or a PyTorch pickle through ``torch.load(weights_only=True)`` (the
restricted unpickler, which builds tensors and plain containers only). :func:`load_weights`
then recognises the layout and returns the state dict of a model this package can build:

* He et al.'s CIFAR ResNets as commonly published (e.g. the files of
  ``akamaster/pytorch_resnet_cifar10``): ``conv1``, ``bn1``, ``layer{1,2,3}.{i}.{conv1,bn1,conv2,
  bn2}``, ``linear``, option-A shortcuts, any depth ``6n + 2`` that is registered (``resnet20``,
  ``32``, ``44``, ``56``, ``110``...), read from the file; the ``module.`` prefix of
  ``nn.DataParallel`` and ``_orig_mod.`` of ``torch.compile`` are dropped;
* the state dict of a registered model (``--model NAME``), or an isomax checkpoint;
* ``timm:NAME`` state dicts of timm's own architectures (timm builds the architecture;
  nothing is downloaded).

The classifier of the file always comes back as ``head.weight`` / ``head.bias`` of a linear head
(or the head of an isomax checkpoint), ready for :func:`isomax.finetune.replace_classifier`.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["PretrainedWeights", "build_pretrained", "load_weights", "read_state_dict"]

_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "weights")
_PREFIXES = ("module.", "_orig_mod.")
_HE_KEY = re.compile(r"^layer([123])\.(\d+)\.(.+)$")


@dataclass
class PretrainedWeights:
    """A state dict that fits ``create_model(model, num_classes, head=head)``."""

    model: str
    state_dict: dict[str, Tensor]
    num_classes: int
    in_channels: int | None  # None: the file does not tell (no convolution)
    layout: str
    head: str = "linear"
    info: dict[str, Any] = field(default_factory=dict)


def _strip(state: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors of a weights file and what else it says, read without running code.

    Accepts safetensors files (a plain state dict, or an isomax checkpoint: then the second
    value is its metadata) and PyTorch files read with ``torch.load(weights_only=True)`` holding
    a state dict, possibly wrapped as ``{"state_dict": ...}`` (also ``model_state_dict``,
    ``model``, ``net``, ``weights``; other plain entries such as ``best_prec1`` are returned as
    the second value). Prefixes ``module.`` and ``_orig_mod.`` are removed.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, an empty or truncated file, a pickle holding anything but tensors
            and plain containers, or a file without a state dict; the message names the file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"weights file {p} does not exist")
    if not p.is_file():
        raise InputError(f"weights file {p} is not a regular file")
    with open(p, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise InputError(f"weights file {p} is empty")
    if _looks_like_safetensors(head, p.stat().st_size):
        return _read_safetensors(p)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        return _read_safetensors(p)  # neither torch's zip format nor a pickle: say what it is
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{p} holds objects other than tensors and plain containers, which are never "
            f"unpickled here (torch.load weights_only=True refused it: {first[:200]}); save the "
            "state dict alone (torch.save(model.state_dict(), path)) or as safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"{p} is not a readable PyTorch weights file (truncated or corrupt?): "
            f"{' '.join(str(exc).split())[:200]}"
        ) from None
    info: dict[str, Any] = {}
    state = obj
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in _WRAPPERS:
            if _is_state_dict(obj.get(key)):
                state = obj[key]
                info = {
                    k: v for k, v in obj.items() if k != key and isinstance(v, int | float | str)
                }
                break
    if not _is_state_dict(state):
        raise InputError(
            f"{p} holds no state dict: expected a dict of tensors, or one under "
            f"{', '.join(repr(k) for k in _WRAPPERS)}; found {type(obj).__name__}"
            + (f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) else "")
        )
    return _strip(dict(state)), info


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """A little-endian header length that fits the file, then the JSON header's ``{``.

    (Its first byte may be 0x80, like a pickle's protocol opcode: the length decides.)
    """
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return 0 < length <= size - 8 and head[8:9] == b"{"


def _read_safetensors(p: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(
            f"{p} is neither a PyTorch weights file nor a safetensors file "
            f"({' '.join(str(exc).split())[:160]})"
        ) from None
    if "isomax" in meta or "kind" in meta:  # written by isomax (checkpoint, detector, ...)
        from ..engine.checkpoint import load_checkpoint

        model_state, _, info, _ = load_checkpoint(p)
        if not model_state:
            raise InputError(f"{p} is an isomax file but holds no model weights")
        return model_state, {**info, "isomax_checkpoint": True}
    from safetensors.torch import load_file

    return _strip(load_file(str(p))), {}


# ----------------------------------------------------------------------------- layouts
def _he_resnet(state: dict[str, Tensor]) -> PretrainedWeights | None:
    """He et al.'s CIFAR ResNet layout, converted to :class:`~isomax.models.ThinResNet` keys."""
    if "conv1.weight" not in state or "linear.weight" not in state:
        return None
    if any(k.startswith("layer4.") for k in state) or not any(
        k.startswith("layer3.") for k in state
    ):
        return None
    blocks: dict[int, set[int]] = {1: set(), 2: set(), 3: set()}
    for key in state:
        m = _HE_KEY.match(key)
        if m:
            blocks[int(m.group(1))].add(int(m.group(2)))
    n = len(blocks[1])
    if n == 0 or any(blocks[s] != set(range(n)) for s in (1, 2, 3)):
        raise InputError(
            "the weights look like a CIFAR ResNet (conv1, layer1-3, linear) but the stages hold "
            f"blocks {[sorted(blocks[s]) for s in (1, 2, 3)]}: expected the same n blocks "
            "numbered 0..n-1 in each of the three stages"
        )
    if any(".shortcut." in k for k in state):
        raise InputError(
            "the CIFAR ResNet weights have parameters in their shortcuts (option B, 1x1 "
            "projections); only He et al.'s parameter-free option-A shortcuts are supported"
        )
    widths = (
        state["layer1.0.conv1.weight"].shape[0],
        state["layer2.0.conv1.weight"].shape[0],
        state["layer3.0.conv1.weight"].shape[0],
    )
    if widths != (16, 32, 64) or state["conv1.weight"].shape[0] != 16:
        raise InputError(
            f"CIFAR ResNet with stage widths {widths}: only He et al.'s 16-32-64 is supported"
        )
    converted: dict[str, Tensor] = {}
    for key, value in state.items():
        m = _HE_KEY.match(key)
        if m:
            index = (int(m.group(1)) - 1) * n + int(m.group(2))
            converted[f"layers.{index}.{m.group(3)}"] = value
        elif key.startswith("linear."):
            converted["head." + key[len("linear.") :]] = value
        else:
            converted[key] = value
    depth = 6 * n + 2
    return PretrainedWeights(
        model=f"resnet{depth}",
        state_dict=converted,
        num_classes=int(state["linear.weight"].shape[0]),
        in_channels=int(state["conv1.weight"].shape[1]),
        layout=f"He et al. CIFAR ResNet-{depth} (option A)",
    )


def _fill_untracked(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Add the ``num_batches_tracked`` buffers that older files leave out (they are counters)."""
    own = model.state_dict()
    extra = {
        k: v.clone() for k, v in own.items() if k.endswith("num_batches_tracked") and k not in state
    }
    return {**state, **extra}


def _load_strict(model: nn.Module, state: dict[str, Tensor], what: str, path: Path) -> None:
    state = _fill_untracked(model, state)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"shape mismatches ({'; '.join(shapes[:3])})")
        raise InputError(f"{path} does not fit {what}: {'; '.join(parts)}")
    model.load_state_dict(state)


def load_weights(path: str | os.PathLike[str], model: str | None = None) -> PretrainedWeights:
    """Recognise the weights in ``path`` and map them onto a model this package builds.

    Args:
        path: a weights file (see :func:`read_state_dict`).
        model: the model name when it cannot be read from the file: a registered name
            (``isomax list``) or ``timm:NAME``. He et al.'s CIFAR ResNets
            and isomax checkpoints name their model themselves (a different ``model`` is an
            error).

    Raises:
        ValueError: the weights match no known layout, or not the model asked for.
    """
    p = Path(path)
    state, info = read_state_dict(p)
    if info.pop("isomax_checkpoint", False):
        cfg = info.get("config") or {}
        name = cfg.get("model")
        if not isinstance(name, str) or "num_classes" not in info:
            raise InputError(f"{p}: isomax checkpoint metadata lacks its model or num_classes")
        if model is not None and model != name:
            raise InputError(f"{p} holds a {name!r} model, not {model!r}")
        from ..methods import get_method

        shape = info.get("input_shape") or [3]
        return PretrainedWeights(
            model=name,
            state_dict=state,
            num_classes=int(info["num_classes"]),
            in_channels=int(shape[0]),
            layout="isomax checkpoint",
            head=get_method(cfg.get("loss", "softmax")).head,
            info={"source_config": cfg},
        )
    he = _he_resnet(state)
    if he is not None:
        if model is not None and model.lower() != he.model:
            raise InputError(f"{p} holds a {he.layout}, not the model {model!r} asked for")
        he.info = info
        return he
    if model is None:
        keys = ", ".join(list(state)[:4])
        raise InputError(
            f"{p} matches no known layout (keys start {keys}, ...): expected He et al.'s CIFAR "
            "ResNet (conv1, layer1-3, linear) or an isomax checkpoint; for any other "
            "architecture name it with --model (a registered name or timm:NAME)"
        )
    for key in ("head.weight", "fc.weight", "classifier.weight", "linear.weight"):
        if key in state and state[key].dim() == 2:
            num_classes = int(state[key].shape[0])
            break
    else:
        linear = [k for k, v in state.items() if k.endswith(".weight") and v.dim() == 2]
        if not linear:
            raise InputError(f"{p} holds no 2-D classifier weight to read the class count from")
        num_classes = int(state[linear[-1]].shape[0])
    first_conv = next((v for v in state.values() if v.dim() == 4), None)
    in_channels = int(first_conv.shape[1]) if first_conv is not None else None
    return PretrainedWeights(
        model=model,
        state_dict=state,
        num_classes=num_classes,
        in_channels=in_channels,
        layout=f"state dict of {model}",
        info=info,
    )


def build_pretrained(
    weights: PretrainedWeights, path: str | os.PathLike[str], in_channels: int | None = None
) -> nn.Module:
    """The model of ``weights`` with its weights loaded (strictly), classifier included.

    The result is a :class:`~isomax.models.Classifier` whose ``head`` is the file's classifier.
    ``in_channels`` is used when the file does not tell (default 3).
    """
    from .registry import create_model

    channels = weights.in_channels or in_channels or 3
    model = create_model(
        weights.model, weights.num_classes, head=weights.head, in_channels=channels
    )
    _load_strict(model, _adapt_external(model, weights), repr(weights.model), Path(path))
    return model


def _adapt_external(model: nn.Module, weights: PretrainedWeights) -> dict[str, Tensor]:
    """Keys of a timm state dict as :class:`~isomax.models.TimmBackbone` names them.

    The backbone's own keys go under ``backbone.``; the classifier (the weight and bias the
    backbone no longer has after ``reset_classifier(0)``) becomes ``head.weight`` /
    ``head.bias``.
    """
    backbone = getattr(model, "backbone", None)
    if backbone is None or not weights.model.startswith("timm:"):
        return weights.state_dict
    own = set(backbone.state_dict())
    out = {f"backbone.{k}": v for k, v in weights.state_dict.items() if k in own}
    rest = {k: v for k, v in weights.state_dict.items() if k not in own}
    weight = [k for k, v in rest.items() if k.endswith("weight") and v.dim() == 2]
    if len(weight) == 1:
        out["head.weight"] = rest.pop(weight[0])
        bias = weight[0][: -len("weight")] + "bias"
        if bias in rest:
            out["head.bias"] = rest.pop(bias)
    out.update(rest)  # anything left is reported as unexpected by _load_strict
    return out
