"""Fine-tune a pretrained classifier with an IsoMax-family loss.

Three steps, each usable on its own::

    model = torchvision.models.resnet18(weights="DEFAULT")
    replace_classifier(model, "isomaxplus", num_classes=10, data=train_loader)  # model.fc -> head
    result = finetune(model, train_loader, "isomaxplus", epochs=3, lr=0.01)

or, in one call for a torchvision or timm model, ``load_pretrained("torchvision:resnet18", 10)``.

:func:`find_last_linear` locates the classifier layer of torchvision/timm-style models (``fc``,
``classifier``, ``head``, ``heads``...), :func:`replace_classifier` swaps it for the method's head
(prototypes initialised from the old weights or from class means of the penultimate features) and
:func:`finetune` trains it with the training engine (:func:`isomax.engine.train`): SGD
(Nesterov), a cosine schedule and a larger learning rate for the new head. From a weights file,
``isomax finetune --pretrained FILE`` (or ``TrainConfig(pretrained=FILE)``) does all three.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputError
from .heads import _DistanceHead
from .methods import get_method
from .scoring import batches

__all__ = [
    "FinetuneResult",
    "find_last_linear",
    "finetune",
    "load_pretrained",
    "replace_classifier",
]

log = logging.getLogger(__name__)

#: Top-level attributes that hold the classifier in torchvision and timm models, in order of
#: preference. A container is searched for its last ``nn.Linear`` (``classifier.1`` of
#: EfficientNet/MobileNetV2, ``classifier.6`` of VGG/AlexNet, ``classifier.3`` of MobileNetV3,
#: ``heads.head`` of torchvision ViT, ``head.fc`` of timm ConvNeXt...).
CLASSIFIER_NAMES: tuple[str, ...] = ("fc", "classifier", "head", "heads", "last_linear", "logits")

_INITS = ("auto", "weights", "class_means", "default")


# --------------------------------------------------------------------------------------------
# Locating and replacing the classifier
# --------------------------------------------------------------------------------------------


def _last_linear_in(module: nn.Module, prefix: str) -> tuple[str, nn.Linear] | None:
    found = None
    for name, sub in module.named_modules(prefix=prefix):
        if isinstance(sub, nn.Linear):
            found = (name, sub)
    return found


def find_last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The dotted name and module of the classifier layer of a torchvision/timm-style model.

    Looks at the attributes of :data:`CLASSIFIER_NAMES` first (the last ``nn.Linear`` inside the
    first one that holds any); a model with none of them falls back to the last ``nn.Linear``
    registered anywhere.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: no linear classifier: the model has none, or its classifier attribute holds
            no ``nn.Linear`` (e.g. ``nn.Identity`` after ``reset_classifier(0)``, or a distance
            head already), in which case a hidden layer is never picked instead.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    children = dict(model.named_children())
    present = []
    for attr in CLASSIFIER_NAMES:
        sub = children.get(attr)
        if sub is None:
            continue
        present.append(f"{attr}={type(sub).__name__}")
        found = _last_linear_in(sub, attr)
        if found is not None:
            return found
    if present:
        raise InputError(
            f"{type(model).__name__} has no linear classifier to replace: its classifier "
            f"attribute(s) {', '.join(present)} hold no nn.Linear"
        )
    found = _last_linear_in(model, "")
    if found is None:
        raise InputError(f"{type(model).__name__} has no nn.Linear layer to use as classifier")
    return found


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


@torch.no_grad()
def _class_means(
    model: nn.Module, layer: nn.Module, data: Any, num_classes: int
) -> tuple[Tensor, Tensor]:
    """Per-class mean of the inputs of ``layer`` over ``data`` (float64) and the class counts."""
    captured: list[Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[Any, ...]) -> None:
        captured.append(inputs[0])

    ref = next(layer.parameters())
    sums: Tensor | None = None
    counts = torch.zeros(num_classes, dtype=torch.float64)
    was_training = model.training
    handle = layer.register_forward_pre_hook(hook)
    model.eval()
    try:
        for x, y in batches(data, "data", labels=True, num_classes=num_classes):
            assert y is not None
            captured.clear()
            model(x.to(ref.device))
            if not captured:
                raise InputError("data: the model never called its classifier layer")
            f = captured[-1]
            if f.dim() != 2 or f.shape[0] != len(y):
                raise InputError(
                    f"the classifier layer received inputs of shape {tuple(f.shape)}; class-mean "
                    f"initialisation needs (N, D) features with N = {len(y)} labels per batch"
                )
            y = y.cpu()
            f = f.detach().double().cpu()
            if sums is None:
                sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64)
            sums.index_add_(0, y, f)
            counts += torch.bincount(y, minlength=num_classes).double()
    finally:
        handle.remove()
        model.train(was_training)
    if sums is None:
        raise InputError("data is empty: no batch to compute class means from")
    return sums / counts.clamp_min(1).unsqueeze(1), counts


def replace_classifier(
    model: nn.Module,
    method: str = "isomaxplus",
    num_classes: int | None = None,
    init: str = "auto",
    data: Any = None,
) -> nn.Module:
    """Replace the classifier layer of ``model`` (in place) by the head of ``method``.

    The layer is found by :func:`find_last_linear`; the new head takes its ``in_features`` and
    lands on the layer's device and dtype.

    Initialisation (``init``):

    * ``"class_means"``: each prototype is the mean penultimate feature (the input of the old
      layer, captured with a forward hook, model in eval mode) of its class over ``data``; the
      natural start for distance heads, at the right scale for IsoMax's unnormalised
      distances. For ``softmax`` the linear layer gets the nearest-class-mean classifier
      ``w_j = mu_j``, ``b_j = -||mu_j||^2 / 2``. A class absent from ``data`` keeps the default
      row (logged as a warning).
    * ``"weights"`` (needs ``num_classes`` equal to the old ``out_features``): prototypes are the
      old weight rows (``softmax`` keeps weight and bias). For IsoMax+ and DisMax only their
      direction matters; for IsoMax (unnormalised distances) they are used at the scale of the
      pretrained layer and the bias is dropped, so the start only approximates the old
      decisions: pass ``data`` for IsoMax.
    * ``"default"``: the head's own initialisation.
    * ``"auto"``: ``isomax`` uses class means when ``data`` is given (its distances are not
      normalised, so the prototypes must sit at the features' scale), else the old weights when
      the class count matches, else the default; ``softmax``, ``isomaxplus`` and ``dismax`` keep
      the old weight rows when the class count matches (IsoMax+ and DisMax use only their
      directions: measured on a pretrained CIFAR ResNet-20, starting from them gained 8 points
      of TNR@TPR95 over class means, BENCHMARKS.md), else class means when ``data`` is given,
      else the default.

    Args:
        model: a model with a linear classifier (see :func:`find_last_linear`).
        method: ``softmax``, ``isomax``, ``isomaxplus`` or ``dismax``.
        num_classes: number of classes; defaults to the old layer's ``out_features``.
        init: ``"auto"``, ``"weights"``, ``"class_means"`` or ``"default"``.
        data: a loader (or Dataset) of ``(inputs, labels)`` batches for class means.

    Returns:
        ``model`` itself.
    """
    spec = get_method(method)
    if init not in _INITS:
        raise InputError(f"init must be one of {', '.join(_INITS)}, got {init!r}")
    name, old = find_last_linear(model)
    n = old.out_features if num_classes is None else num_classes
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"num_classes must be a positive integer, got {num_classes!r}")
    same = n == old.out_features
    if init == "weights" and not same:
        raise InputError(
            f"init='weights' needs num_classes equal to the old layer's out_features "
            f"({old.out_features}), got {n}"
        )
    if init == "class_means" and data is None:
        raise InputError("init='class_means' needs data: a loader of (inputs, labels)")
    if init == "auto":
        if spec.head == "isomax":  # unnormalised distances: prototypes at the features' scale
            init = "class_means" if data is not None else "weights" if same else "default"
        else:  # linear, IsoMax+ and DisMax: the old rows (only their direction matters)
            init = "weights" if same else "class_means" if data is not None else "default"

    head = spec.build_head(old.in_features, n)
    with torch.no_grad():
        if init == "weights":
            if isinstance(head, nn.Linear):
                head.weight.copy_(old.weight)
                if old.bias is not None:
                    head.bias.copy_(old.bias)
                else:
                    head.bias.zero_()
            else:
                head.prototypes.copy_(old.weight)
        elif init == "class_means":
            means, counts = _class_means(model, old, data, n)
            present = counts > 0
            if not bool(present.all()):
                missing = torch.nonzero(~present).flatten().tolist()
                log.warning("no samples of classes %s in data: default init kept", missing)
            if isinstance(head, nn.Linear):
                head.weight[present] = means[present].to(head.weight.dtype)
                head.bias[present] = (-0.5 * means[present].pow(2).sum(1)).to(head.bias.dtype)
            else:
                head.prototypes[present] = means[present].to(head.prototypes.dtype)
    head = head.to(device=old.weight.device, dtype=old.weight.dtype)
    _set_submodule(model, name, head)
    log.info("replaced %s (%s) by %s, init=%s", name, old, type(head).__name__, init)
    return model


# --------------------------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------------------------


@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune`: the model and the engine's log row of every epoch.

    Each history entry holds ``epoch``, ``lr`` (backbone, at the epoch's last step),
    ``train_loss`` (mean per sample), ``train_acc``, ``val_loss`` and ``val_acc`` (NaN without
    validation data), ``images_per_s`` and ``seconds``.
    """

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Any = None


def _find_head(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The last distance head of ``model``, else its linear classifier, else None."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, _DistanceHead):
            found = (name, module)
    if found is not None:
        return found
    try:
        return find_last_linear(model)
    except ValueError:
        return None


def _check_number(value: Any, name: str, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise InputError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


def _materialise(data: Any, what: str) -> tuple[Tensor, Tensor, int]:
    """All ``(inputs, labels)`` of a loader (or Dataset) as two CPU tensors, and the batch size."""
    xs, ys = [], []
    for x, y in batches(data, what, labels=True):
        assert y is not None
        xs.append(x.detach().cpu())
        ys.append(y.detach().cpu())
    if not xs:
        raise InputError(f"{what} is empty")
    shapes = {tuple(x.shape[1:]) for x in xs}
    if len(shapes) != 1:
        raise InputError(f"{what} yields inputs of several shapes: {sorted(shapes)}")
    return torch.cat(xs), torch.cat(ys), len(xs[0])


def finetune(
    model: nn.Module,
    train_loader: Any,
    method: str = "isomaxplus",
    epochs: int = 3,
    lr: float = 0.01,
    head_lr: float | None = None,
    weight_decay: float = 1e-4,
    device: str | torch.device = "cpu",
    val_loader: Any = None,
    freeze_backbone: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    seed: int = 0,
    output_dir: str | None = None,
    **settings: Any,
) -> FinetuneResult:
    """Fine-tune ``model`` (any module returning logits) with the loss of ``method``.

    This is :func:`isomax.engine.train` started from the given model: everything the engine
    does (mixed precision with ``amp=``, FPR with ``fpr_alpha=``, the non-finite-loss stop,
    checkpoints and logs when ``output_dir`` is given, exact resume) applies. The loader is read
    once into memory (its random transforms are drawn once); batches are reshuffled every epoch
    with ``seed``, at the loader's batch size.

    A model that still has a linear classifier and no distance head gets the method's head
    first (:func:`replace_classifier`, default ``init="auto"``: the old weight rows when the
    class count matches); call :func:`replace_classifier` yourself to pass ``data`` or
    ``num_classes``. Optimisation: SGD, momentum 0.9, Nesterov, ``weight_decay`` on every
    parameter, cosine decay over all steps; the head (the distance head, or the linear
    classifier) trains at ``head_lr`` (default ``10 * lr``), the rest at ``lr``.

    Args:
        model: the model, trained in place.
        train_loader: an iterable of ``(inputs, labels)`` batches (or a Dataset, batched by 256).
        method: ``softmax``, ``isomax``, ``isomaxplus`` or ``dismax``.
        epochs: passes over the training data.
        lr: learning rate of the backbone.
        head_lr: learning rate of the head; default ``10 * lr``.
        weight_decay: L2 penalty of SGD.
        device: where to train; the model is moved there.
        val_loader: labelled data for the validation loss and accuracy after every epoch.
        freeze_backbone: train the head only; the backbone also stays in eval mode (batch-norm
            statistics and dropout frozen). Its ``requires_grad`` flags are restored at the end.
        progress: called with each epoch's history entry.
        seed: seed of the batch order (and of anything random in the loss).
        output_dir: keep the checkpoint and logs there (default: a temporary folder).
        **settings: any other :class:`isomax.engine.TrainConfig` setting (``amp``,
            ``fpr_alpha``, ``schedule``, ``momentum``...).

    Returns:
        A :class:`FinetuneResult`; the model is left in eval mode.
    """
    import tempfile

    from .engine import TrainConfig, train
    from .engine.trainer import TrainData

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs must be a positive integer, got {epochs!r}")
    lr = _check_number(lr, "lr", 0.0, strict=True)
    head_lr = 10.0 * lr if head_lr is None else _check_number(head_lr, "head_lr", 0.0, True)
    weight_decay = _check_number(weight_decay, "weight_decay", 0.0, strict=False)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, got {type(progress).__name__}")
    spec = get_method(method)

    has_distance_head = any(isinstance(m, _DistanceHead) for m in model.modules())
    if spec.head != "linear" and not has_distance_head:
        try:
            find_last_linear(model)
        except ValueError as error:
            raise InputError(
                f"method {spec.name!r} needs a distance head and the model has none to put "
                f"in place: {error}; attach one yourself (e.g. isomax.build_head)"
            ) from None
        replace_classifier(model, spec.name)
    if _find_head(model) is None:
        raise InputError(
            "the model has no classifier head to train (no distance head, no nn.Linear)"
            + ("; freeze_backbone=True needs one" if freeze_backbone else "")
        )
    x, y, batch_size = _materialise(train_loader, "train_loader")
    x_val = y_val = None
    if val_loader is not None:
        x_val, y_val, _ = _materialise(val_loader, "val_loader")
    found = _find_head(model)
    head_size = getattr(found[1], "num_classes", None) or getattr(found[1], "out_features", None)
    num_classes = int(head_size or int(y.max()) + 1)
    channels = x.shape[1] if x.dim() > 1 else 1
    data = TrainData(
        x, y, x_val, y_val, num_classes, tuple(x.shape[1:]), (0.0,) * channels, (1.0,) * channels
    )
    saved_flags = [p.requires_grad for p in model.parameters()]
    with tempfile.TemporaryDirectory(prefix="isomax-finetune-") as tmp:
        cfg = TrainConfig.from_dict(
            {
                "dataset": "(in-memory loader)",
                "model": type(model).__name__,
                "loss": spec.name,
                "preset": "finetune",
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "weight_decay": weight_decay,
                "schedule": "cosine",
                "head_lr_scale": head_lr / lr,
                "freeze_backbone": freeze_backbone,
                "augment": "none",
                "val_split": 0.0,
                "seed": seed,
                "device": str(device),
                "output_dir": output_dir or tmp,
                **settings,
            }
        )
        try:
            result = train(cfg, model=model, data=data, on_epoch=progress)
        finally:
            for p, flag in zip(model.parameters(), saved_flags):
                p.requires_grad_(flag)
            model.eval()
    checkpoint = result.checkpoint if output_dir else None
    return FinetuneResult(model, result.history, checkpoint)


# --------------------------------------------------------------------------------------------
# Pretrained models
# --------------------------------------------------------------------------------------------


def _import(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"loading a pretrained {package} model needs {package}: pip install {package}"
        ) from error


def load_pretrained(
    name: str,
    num_classes: int | None = None,
    method: str = "isomaxplus",
    init: str = "auto",
    data: Any = None,
) -> nn.Module:
    """A pretrained torchvision or timm model with its classifier replaced by ``method``'s head.

    ``"torchvision:NAME"`` calls ``torchvision.models.get_model(NAME, weights="DEFAULT")``,
    ``"timm:NAME"`` calls ``timm.create_model(NAME, pretrained=True)`` (both download weights
    on first use); then :func:`replace_classifier` with ``method``, ``num_classes``, ``init``
    and ``data``.

    Raises:
        ImportError: torchvision or timm is not installed (the message names the pip package).
        ValueError: ``name`` has no ``torchvision:`` or ``timm:`` prefix.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    source, _, arch = name.partition(":")
    if source not in ("torchvision", "timm") or not arch:
        raise InputError(
            f"name must be 'torchvision:ARCH' or 'timm:ARCH' (e.g. 'torchvision:resnet18'), "
            f"got {name!r}"
        )
    get_method(method)  # fail on a bad method before any download
    if source == "torchvision":
        models = _import("torchvision.models", "torchvision")
        model = models.get_model(arch, weights="DEFAULT")
    else:
        timm = _import("timm", "timm")
        model = timm.create_model(arch, pretrained=True)
    return replace_classifier(model, method, num_classes=num_classes, init=init, data=data)
