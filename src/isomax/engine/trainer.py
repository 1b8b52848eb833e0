"""The training loop: any backbone, any head, one CPU, one GPU or many (``torchrun``).

Short and readable on purpose (airbench-style): data resident on the device with augmentation
there, bf16 autocast and channels-last when asked, a learning rate computed from the step
number (so resuming needs no scheduler state), a checkpoint after every epoch, CSV and JSON-lines
logs, and a stop with a clear error when the loss stops being finite.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..fpr import FractionalProbabilityRegularization
from ..io import atomic_write_bytes, remove_stale_temporaries
from ..methods import get_method
from ..optim import param_groups
from . import distributed as dist_utils
from .checkpoint import load_checkpoint, lock_run_folder, restore_rng, save_checkpoint
from .config import TrainConfig, normalization, settings_with_role
from .loader import TensorLoader, epoch_generator

__all__ = [
    "NonFiniteLossError",
    "TrainData",
    "TrainResult",
    "build_model",
    "load_model",
    "lr_at",
    "resolve_device",
    "train",
]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.safetensors"
_LOG_FIELDS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "images_per_s",
    "seconds",
)


class NonFiniteLossError(InputError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: nn.Module
    config: TrainConfig
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None


# Settings a resumed run must share with the checkpoint (they decide the data, the model and
# the order of the batches); the "tuning" settings may change, with a warning.
RESUME_KEYS = settings_with_role("run")


def _kept(ckpt_path: Path) -> str:
    if not ckpt_path.exists():
        return "No checkpoint had been written yet."
    try:
        epoch = load_checkpoint(ckpt_path)[2].get("epoch")
    except ValueError:
        epoch = "?"
    return f"The last good checkpoint ({ckpt_path}, epoch {epoch}) was kept."


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; anything else is passed to torch."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(
            f"unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} was asked for but CUDA is not available here")
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise InputError(
                f"device {name!r} was asked for but there are {torch.cuda.device_count()} GPUs"
            )
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError(f"device {name!r} was asked for but Apple MPS is not available here")
    return device


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at a global optimisation step (pure function of the step)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    t = step / total
    warm = cfg.warmup_epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        # linear warm-up from lr/10 to lr, then linear decay to 0 (airbench-style triangle)
        warm = max(warm, 1)
        if step < warm:
            return cfg.lr * (0.1 + 0.9 * step / warm)
        return cfg.lr * max(0.0, (total - step) / max(1, total - warm))
    factor = 1.0 if step >= warm else (step + 1) / warm
    if cfg.schedule == "multistep":
        epoch = step / steps_per_epoch
        drops = sum(epoch >= m * cfg.epochs for m in cfg.milestones)
        return cfg.lr * factor * cfg.gamma**drops
    if cfg.schedule == "cosine":
        return cfg.lr * factor * 0.5 * (1 + math.cos(math.pi * t))
    return cfg.lr * factor


def load_bundle(cfg: TrainConfig) -> Any:
    """The dataset bundle of a configuration (fixed validation split, seed 0)."""
    from ..data import get_dataset

    extra = {}
    if cfg.dataset.startswith("folder:") or Path(cfg.dataset).exists():
        extra["on_error"] = cfg.on_error  # image folders and archives only
    bundle = get_dataset(
        cfg.dataset,
        root=cfg.data_root,
        split_val=cfg.val_split,
        seed=0,  # the split is fixed: the same validation set for every training seed
        download=cfg.download,
        **extra,
    )
    return apply_normalization(bundle, cfg.normalize)


def apply_normalization(bundle: Any, spec: str) -> Any:
    """``bundle`` with the input normalisation ``spec`` (see :func:`normalization`) on all splits.

    ``"dataset"`` keeps the bundle's own statistics; anything else (``imagenet``, values) is
    what weights trained elsewhere expect, and every split, OOD set and saved detector follows it.
    """
    stats = normalization(spec, bundle.input_shape[0])
    if stats is None:
        return bundle
    mean, std = stats
    for ds in (bundle.train, bundle.val, bundle.test):
        if ds is not None:
            ds.set_stats(mean, std)
    return dataclasses.replace(bundle, mean=tuple(mean), std=tuple(std))


@dataclass
class TrainData:
    """The in-memory tensors :func:`train` learns from, and what a checkpoint records of them.

    ``x_*`` hold raw inputs (uint8 images, or floats that ``mean``/``std`` normalise).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    skipped: int = 0

    @classmethod
    def from_bundle(cls, bundle: Any) -> TrainData:
        """Decode a dataset bundle's training and validation splits once."""
        from ..data import to_tensors

        x_train, y_train = to_tensors(bundle.train)
        x_val, y_val = (
            to_tensors(bundle.val) if bundle.val is not None and len(bundle.val) else (None, None)
        )
        skipped = (
            len(bundle.train)
            - len(y_train)
            + (len(bundle.val) - len(y_val) if y_val is not None else 0)
        )
        return cls(
            x_train,
            y_train,
            x_val,
            y_val,
            int(bundle.num_classes),
            tuple(bundle.input_shape),
            tuple(bundle.mean),
            tuple(bundle.std),
            tuple(getattr(bundle, "class_names", ()) or ()),
            skipped,
        )


def use_augmentation(setting: str, input_shape: tuple[int, ...]) -> bool:
    """Random crop + flip? ``auto``: for RGB images of at least 16 x 16 pixels only."""
    if setting == "auto":
        return len(input_shape) == 3 and input_shape[0] == 3 and min(input_shape[1:]) >= 16
    return setting == "crop_flip"


def build_model(cfg: TrainConfig, num_classes: int, in_channels: int) -> nn.Module:
    """The model of a configuration with the head of its loss."""
    from ..models import create_model

    method = get_method(cfg.loss)
    return create_model(cfg.model, num_classes, head=method.head, in_channels=in_channels)


def _autocast(device: torch.device, amp: str) -> Any:
    if amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _write_logs(out: Path, row: dict[str, float]) -> None:
    with open(out / "log.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    csv_path = out / "log.csv"
    new = not csv_path.exists()
    with open(csv_path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in _LOG_FIELDS})


def _rewrite_logs(out: Path, rows: list[dict[str, float]]) -> None:
    """Replace both logs with ``rows``, each written aside and renamed (never half-written)."""
    atomic_write_bytes(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=_LOG_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in _LOG_FIELDS})
    atomic_write_bytes(out / "log.csv", buf.getvalue().encode())


# What a finished or interrupted run leaves in its folder (removed by overwrite=True).
RUN_OUTPUTS = (
    CHECKPOINT_NAME,
    "log.jsonl",
    "log.csv",
    "detector.safetensors",
    "evaluation",
    "tensorboard",
)


def _prepare_output(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to reuse a folder holding a run unless asked; drop stale temporary files."""
    found = [name for name in RUN_OUTPUTS if (out / name).exists()]
    if resume and overwrite:
        raise InputError("resume and overwrite exclude each other: choose one")
    # resume=True without a checkpoint starts afresh (compare relies on it; the command line
    # refuses --resume without a checkpoint before calling train)
    if found and not overwrite and not resume:
        raise FileExistsError(
            f"{out} already holds a run ({', '.join(found)}): continue it with --resume "
            "(resume=True) or replace it with --overwrite (overwrite=True), or choose another "
            "--output-dir"
        )
    if overwrite:
        for name in found:
            log.warning("--overwrite: removing %s", out / name)
            if (out / name).is_dir() and not (out / name).is_symlink():
                shutil.rmtree(out / name)
            else:
                (out / name).unlink()
    for name in (CHECKPOINT_NAME, "log.jsonl", "log.csv"):
        for stale in remove_stale_temporaries(out, name):
            log.info("removed %s, left by an interrupted write", stale)


def _locked_output(fn: Any) -> Any:
    """Hold the output folder's lock while ``train`` runs (rank 0 only under torchrun)."""

    @functools.wraps(fn)
    def wrapper(cfg: TrainConfig, *args: Any, **kwargs: Any) -> Any:
        if os.environ.get("RANK", "0") != "0":
            return fn(cfg, *args, **kwargs)
        with lock_run_folder(cfg.output_dir):
            return fn(cfg, *args, **kwargs)

    return wrapper


def _tensorboard(out: Path) -> Any:
    """A TensorBoard writer under ``out/tensorboard`` when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(out / "tensorboard"))
    except ImportError:
        return None
    except Exception as exc:  # a broken tensorboard install must not stop training
        log.warning("TensorBoard logging disabled: %s: %s", type(exc).__name__, exc)
        return None


def _truncate_logs(
    out: Path, epochs_done: int, saved: list[dict[str, float]] | None = None
) -> list[dict[str, float]]:
    """On resume, drop log rows written after the checkpoint (an epoch that was cut short).

    The checkpoint's own history (``saved``) is used when it covers every epoch done, else the
    rows of ``log.jsonl``; both logs are then rewritten atomically, so a crash at any moment of
    a resume loses no row.
    """
    history: list[dict[str, float]] = []
    if saved is not None and [r.get("epoch") for r in saved[:epochs_done]] == list(
        range(1, epochs_done + 1)
    ):
        # the checkpoint stores NaN (no validation split) as null
        history = [
            {k: float("nan") if v is None and k in _LOG_FIELDS else v for k, v in r.items()}
            for r in saved[:epochs_done]
        ]
    else:
        path = out / "log.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by a crash
                if row.get("epoch", 0) <= epochs_done:
                    history.append(row)
    _rewrite_logs(out, history)
    return history


def _head_of(model: nn.Module) -> nn.Module | None:
    """The classifier head: ``model.head`` of a Classifier, else the last distance or linear."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
        return head
    from ..finetune import _find_head

    found = _find_head(model)
    return found[1] if found is not None else None


def _scaled_groups(
    groups: list[dict[str, Any]], head: nn.Module | None, scale: float
) -> list[dict[str, Any]]:
    """Split each group into body and head parameters; the head's learning rate x ``scale``."""
    if head is None or scale == 1.0:
        return groups
    ids = {id(p) for p in head.parameters()}
    out = []
    for group in groups:
        body = [p for p in group["params"] if id(p) not in ids]
        own = [p for p in group["params"] if id(p) in ids]
        for params, factor in ((body, 1.0), (own, scale)):
            if params:
                out.append({**group, "params": params, "lr_scale": factor})
    return out


def _pretrained_model(cfg: TrainConfig, data: TrainData) -> nn.Module:
    """``cfg.model`` with the weights of ``cfg.pretrained`` and a new head for ``cfg.loss``.

    The file's classifier is replaced by the loss's head (:func:`isomax.finetune.
    replace_classifier`), initialised as ``cfg.head_init`` says; class means are taken over the
    training split without augmentation.
    """
    from ..finetune import replace_classifier
    from ..models.pretrained import build_pretrained, load_weights

    weights = load_weights(cfg.pretrained, cfg.model)  # type: ignore[arg-type]
    if weights.in_channels not in (None, data.input_shape[0]):
        raise InputError(
            f"{cfg.pretrained} expects {weights.in_channels}-channel inputs, dataset "
            f"{cfg.dataset!r} has {data.input_shape[0]} channels"
        )
    model = build_pretrained(weights, cfg.pretrained, data.input_shape[0])  # type: ignore[arg-type]
    method = get_method(cfg.loss)
    if weights.head == method.head and weights.num_classes == data.num_classes:
        log.info("%s: keeping its %s head (same loss family)", cfg.pretrained, weights.head)
        return model
    if weights.head != "linear":  # an isomax checkpoint of another head: start a linear one
        model.replace_head("linear", weights.num_classes)
    batches = TensorLoader(data.x_train, data.y_train, 512, data.mean, data.std)
    init = cfg.head_init
    if init == "weights" and weights.head != "linear":
        raise InputError(
            f"head_init='weights' needs a linear classifier in {cfg.pretrained}; it holds a "
            f"{weights.head} head: use class_means"
        )
    replace_classifier(model, method.name, data.num_classes, init=init, data=batches)
    return model


@torch.no_grad()
def _evaluate_loader(
    model: nn.Module,
    loader: TensorLoader,
    criterion: nn.Module,
    device: torch.device,
    amp: str,
    info: dist_utils.DistInfo,
) -> tuple[float, float]:
    model.eval()
    loss_sum, correct, count = 0.0, 0.0, 0.0
    for x, y in loader:
        # the loader's data may stay on the CPU (data_on_device="no") while the model is not
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
        loss_sum += float(criterion(logits.float(), y)) * len(y)
        correct += float((logits.argmax(1) == y).sum())
        count += len(y)
    loss_sum, correct, count = dist_utils.all_reduce_sum([loss_sum, correct, count], device, info)
    return loss_sum / max(count, 1), correct / max(count, 1)


@_locked_output
def train(
    cfg: TrainConfig,
    resume: bool = False,
    max_epochs_this_run: int | None = None,
    bundle: Any = None,
    overwrite: bool = False,
    *,
    model: nn.Module | None = None,
    data: TrainData | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` with the loss ``cfg.loss`` on ``cfg.dataset``.

    Args:
        cfg: the configuration (see :class:`TrainConfig` and the presets).
        resume: continue from ``output_dir/checkpoint.safetensors`` when it exists.
        max_epochs_this_run: stop after this many epochs in this call (the schedule still
            spans ``cfg.epochs``); a later ``resume=True`` call continues.
        bundle: an already built dataset bundle (default: ``get_dataset(cfg.dataset, ...)``).
        overwrite: replace a run already in ``output_dir`` (its checkpoint, logs, detector and
            evaluation are removed); without it (or ``resume``) such a folder is refused.
        model: train this module instead of building ``cfg.model`` (``cfg.pretrained`` is then
            not read; the checkpoint still records ``cfg.model``).
        data: the tensors to train on, instead of decoding ``bundle``.
        on_epoch: called with each epoch's log row (rank 0).

    Returns:
        The trained model, the configuration, the per-epoch history and the checkpoint path.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite (the last good checkpoint stays).
        FileExistsError: ``output_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        RunFolderLockedError: another process is training into ``output_dir``.
    """
    device = resolve_device(cfg.device)
    info = dist_utils.setup(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    out = Path(cfg.output_dir)
    ckpt_path = out / CHECKPOINT_NAME
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _prepare_output(out, resume, overwrite)

    if data is None:
        data = TrainData.from_bundle(bundle if bundle is not None else load_bundle(cfg))
    x_train, y_train, x_val, y_val = data.x_train, data.y_train, data.x_val, data.y_val
    if data.skipped and info.is_main:
        log.warning("%d unreadable images were skipped (on_error='skip')", data.skipped)

    resuming = resume and ckpt_path.exists()
    torch.manual_seed(cfg.seed)
    if model is None and cfg.pretrained is not None and not resuming:
        model = _pretrained_model(cfg, data)
    elif model is None:
        model = build_model(cfg, data.num_classes, data.input_shape[0])
    model = model.to(device)
    head = _head_of(model)
    if cfg.freeze_backbone:
        if head is None:
            raise InputError("freeze_backbone needs a model with a head to train")
        keep = {id(p) for p in head.parameters()}
        for p in model.parameters():
            if id(p) not in keep:
                p.requires_grad_(False)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    method = get_method(cfg.loss)
    criterion = method.build_loss(cfg.fpr_alpha)
    eval_criterion = method.build_loss()
    optimizer = torch.optim.SGD(
        _scaled_groups(
            param_groups(model, cfg.weight_decay, exclude_prototypes=not cfg.decay_prototypes),
            head,
            cfg.head_lr_scale,
        ),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )

    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    start_epoch = 0
    history: list[dict[str, float]] = []
    if resuming:
        model_state, opt_state, meta, rng = load_checkpoint(ckpt_path, device)
        if not isinstance(meta.get("config"), dict) or "epoch" not in meta:
            raise InputError(
                f"{ckpt_path}: checkpoint metadata lacks its configuration or epoch (corrupt, or "
                "not written by isomax train)"
            )
        saved = TrainConfig.from_dict(meta["config"])
        for key in RESUME_KEYS:
            if getattr(saved, key) != getattr(cfg, key):
                raise InputError(
                    f"cannot resume from {ckpt_path}: it was trained with {key}="
                    f"{getattr(saved, key)!r}, this run asks for {getattr(cfg, key)!r}"
                )
        changed = [k for k in settings_with_role("tuning") if getattr(saved, k) != getattr(cfg, k)]
        if changed:
            log.warning(
                "resuming with changed %s: the run will differ from an uninterrupted one",
                ", ".join(changed),
            )
        try:
            model.load_state_dict(model_state)
            if opt_state is not None:
                optimizer.load_state_dict(opt_state)
            if meta.get("scaler") and scaler.is_enabled():
                scaler.load_state_dict(meta["scaler"])
            restore_rng(rng)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"cannot resume from {ckpt_path}: its saved state does not fit this run: "
                f"{' '.join(str(exc).split())[:300]}"
            ) from None
        start_epoch = int(meta["epoch"])
        if info.is_main:
            saved = meta.get("history")
            history = _truncate_logs(out, start_epoch, saved if isinstance(saved, list) else None)
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    elif info.is_main:
        for name in ("log.jsonl", "log.csv"):
            (out / name).unlink(missing_ok=True)

    on_device = cfg.data_on_device == "yes" or (
        cfg.data_on_device == "auto" and device.type != "cpu"
    )
    data_device = device if on_device else torch.device("cpu")
    augment = use_augmentation(cfg.augment, tuple(x_train.shape[1:]))

    if cfg.batch_size % info.world_size:
        raise InputError(
            f"batch_size {cfg.batch_size} is not divisible by the {info.world_size} processes: "
            "each rank trains on batch_size / world_size inputs"
        )
    per_rank_batch = cfg.batch_size // info.world_size
    train_loader = TensorLoader(
        x_train,
        y_train,
        per_rank_batch,
        data.mean,
        data.std,
        data_device,
        shuffle=True,
        drop_last=len(y_train) >= 2 * cfg.batch_size,
        augment=augment,
        seed=cfg.seed,
        rank=info.rank,
        world_size=info.world_size,
        channels_last=cfg.channels_last,
    )
    val_loader = None
    if x_val is not None:
        val_loader = TensorLoader(
            x_val,
            y_val,
            max(per_rank_batch, 256),
            data.mean,
            data.std,
            data_device,
            rank=info.rank,
            world_size=info.world_size,
            channels_last=cfg.channels_last,
            even_shards=False,
        )

    net: nn.Module = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    step_model = torch.compile(net) if cfg.compile else net
    fpr = (
        FractionalProbabilityRegularization(data.num_classes) if cfg.fpr_alpha is not None else None
    )
    steps_per_epoch = len(train_loader)
    last_epoch = cfg.epochs
    if max_epochs_this_run is not None:
        last_epoch = min(cfg.epochs, start_epoch + max_epochs_this_run)

    progress = None
    board = _tensorboard(out) if info.is_main else None
    for epoch in range(start_epoch, last_epoch):
        step_model.train()
        if cfg.freeze_backbone and head is not None:  # batch-norm statistics stay as loaded
            model.eval()
            head.train()
        train_loader.set_epoch(epoch)
        if fpr is not None:
            fpr.generator = epoch_generator(cfg.seed, epoch, stream=10_000 + info.rank)
        if cfg.progress and info.is_main:
            from tqdm.auto import tqdm

            progress = tqdm(
                total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False
            )
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.float64)
        seen = 0
        for i, (x, y) in enumerate(train_loader):
            step = epoch * steps_per_epoch + i
            lr = lr_at(cfg, step, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            targets: Any = y
            if fpr is not None:
                x, targets = fpr(x, y)
                y = targets.labels
            with _autocast(device, cfg.amp):
                logits = step_model(x)
            loss = criterion(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if (i % 25 == 24 or i == steps_per_epoch - 1) and not torch.isfinite(loss_sum):
                raise NonFiniteLossError(
                    f"the training loss became {float(loss.detach())} at epoch {epoch + 1}, step {i + 1}; "
                    f"training stopped. {_kept(ckpt_path)} Lower the learning rate (now {lr:g}) "
                    "or use amp='none'."
                )
            if progress is not None:
                elapsed = time.perf_counter() - t0
                progress.set_postfix(
                    loss=f"{float(loss.detach()):.3f}",
                    acc=f"{float(correct) / max(seen, 1):.3f}",
                    img_s=f"{seen / elapsed:.0f}",
                )

                progress.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        totals = dist_utils.all_reduce_sum(
            [float(loss_sum), float(correct), float(seen)], device, info
        )
        if progress is not None:
            progress.close()
        row = {
            "epoch": epoch + 1,
            "lr": lr_at(cfg, (epoch + 1) * steps_per_epoch - 1, steps_per_epoch),
            "train_loss": totals[0] / max(totals[2], 1),
            "train_acc": totals[1] / max(totals[2], 1),
            "val_loss": float("nan"),
            "val_acc": float("nan"),
            "images_per_s": totals[2] / seconds,
            "seconds": seconds,
        }
        if val_loader is not None:
            dist_utils.broadcast_buffers(model, info)  # the same BatchNorm statistics everywhere
            row["val_loss"], row["val_acc"] = _evaluate_loader(
                model, val_loader, eval_criterion, device, cfg.amp, info
            )
        history.append(row)
        done = epoch + 1
        if on_epoch is not None and info.is_main:
            on_epoch(dict(row))
        if info.is_main:
            _write_logs(out, row)
            if board is not None:
                for key, value in row.items():
                    if key != "epoch":
                        board.add_scalar(key, value, done)
                board.flush()
            if done % cfg.checkpoint_every == 0 or done == last_epoch:
                meta = {
                    "config": cfg.to_dict(),
                    "epoch": done,
                    "complete": done == cfg.epochs,
                    "history": history,
                    "num_classes": data.num_classes,
                    "input_shape": list(data.input_shape),
                    "mean": list(data.mean),
                    "std": list(data.std),
                    "class_names": list(data.class_names),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                }
                save_checkpoint(ckpt_path, model, optimizer, meta)
        dist_utils.barrier(info)
        if info.is_main:
            log.info(
                "%s seed %d, epoch %d/%d: train loss %.4f, train acc %.1f%%, val acc %.1f%%, "
                "%.0f images/s",
                cfg.loss,
                cfg.seed,
                done,
                cfg.epochs,
                row["train_loss"],
                100 * row["train_acc"],
                100 * row["val_acc"],
                row["images_per_s"],
            )
    if board is not None:
        board.close()
    dist_utils.cleanup(info)
    return TrainResult(model, cfg, history, ckpt_path if ckpt_path.exists() else None)


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint written by :func:`train` and load its weights.

    Returns:
        (the model in eval mode, the checkpoint metadata: config, epoch, history, ...).
    """
    model_state, _, meta, _ = load_checkpoint(path, device)
    missing = [k for k in ("config", "num_classes", "input_shape") if k not in meta]
    if missing:
        raise InputError(
            f"{path}: checkpoint metadata lacks {missing} (corrupt, or not written by isomax train)"
        )

    cfg = TrainConfig.from_dict(meta["config"])
    model = build_model(cfg, int(meta["num_classes"]), int(meta["input_shape"][0]))
    try:
        model.load_state_dict(model_state)
    except RuntimeError as exc:
        raise InputError(
            f"{path}: the weights do not fit model {cfg.model!r} with loss {cfg.loss!r}: "
            f"{' '.join(str(exc).split())[:300]}"
        ) from None
    return model.to(device).eval(), meta
