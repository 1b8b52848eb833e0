"""Training checkpoints: safetensors weights plus JSON state, written atomically, no pickle.

A checkpoint holds the model weights, the optimizer state (tensors in safetensors, the rest in
JSON), the epoch, the configuration, the metric history and the random-generator states, so
that :func:`isomax.engine.train` with ``resume=True`` continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..io import (
    MetadataError,
    check_model_facts,
    field_error,
    is_int,
    load_file,
    require,
    save_file,
)

__all__ = ["RunFolderLockedError", "load_checkpoint", "lock_run_folder", "save_checkpoint"]

KIND = "checkpoint"
LOCK_NAME = ".isomax-train.lock"


class RunFolderLockedError(BlockingIOError):
    """Another live process is training into the same output folder."""


@contextlib.contextmanager
def lock_run_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on a training output folder for the duration of the block.

    The lock is ``fcntl.flock`` on ``folder/.isomax-train.lock``, which records the holder's pid
    and host; the kernel releases it when the holder dies, so a lock is never stale. A second
    holder fails at once with :class:`RunFolderLockedError` naming the first. (Where ``fcntl``
    does not exist, e.g. on Windows, no lock is taken.)
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield folder
        return
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"
            raise RunFolderLockedError(
                f"output folder {folder} is in use by another isomax train ({holder}); wait for "
                "it to finish or choose another --output-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, entry in state["state"].items():
        plain_entry = {}
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{idx}/{key}"] = value
            else:
                plain_entry[key] = value
        plain["state"][str(idx)] = plain_entry
    return tensors, plain


def _join_optimizer(tensors: dict[str, Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in plain["state"].items()}
    for name, value in tensors.items():
        _, idx, key = name.split("/", 2)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    meta: dict[str, Any],
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename)."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    plain_opt = None
    if optimizer is not None:
        opt_tensors, plain_opt = _split_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # the generator of this process's device only (under DDP each rank owns one device)
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    return save_file(path, tensors, {**meta, "optimizer": plain_opt}, KIND)


def _check_optimizer(path: str | os.PathLike[str], plain: Any, names: list[str]) -> None:
    expected = "null or {'param_groups': [...], 'state': {...}} as written by isomax"
    if plain is None:
        if names:
            raise MetadataError(f"{path}: optimizer tensors {names[:3]} but no optimizer state")
        return
    groups = plain.get("param_groups") if isinstance(plain, dict) else None
    state = plain.get("state") if isinstance(plain, dict) else None
    if (
        not isinstance(groups, list)
        or not all(
            isinstance(g, dict)
            and isinstance(g.get("params"), list)
            and all(is_int(i) for i in g["params"])
            for g in groups
        )
        or not isinstance(state, dict)
        or not all(k.lstrip("-").isdigit() and isinstance(v, dict) for k, v in state.items())
    ):
        raise field_error(path, "optimizer", expected, plain)
    for name in names:
        parts = name.split("/")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2]:
            raise MetadataError(
                f"{path}: tensor {name!r} is not named optimizer/<index>/<key> (corrupt file)"
            )


def check_checkpoint(
    path: str | os.PathLike[str], meta: dict[str, Any], tensors: dict[str, Tensor]
) -> None:
    """Validate a checkpoint's metadata and tensor layout (one schema, checked on every load).

    Raises :class:`~isomax.io.MetadataError` (a ``ValueError``) naming the file and the field.
    """
    require(path, meta, ("config", "epoch"))
    model = {k: v for k, v in tensors.items() if k.startswith("model/")}
    if not model:
        raise MetadataError(f"{path}: the file holds no model weights (model/...)")
    check_model_facts(path, meta, model)
    epochs = meta["config"].get("epochs", 10)
    epoch = meta["epoch"]
    if not is_int(epoch) or not 0 <= epoch <= epochs:
        raise field_error(path, "epoch", f"an integer in [0, {epochs}] (config.epochs)", epoch)
    if "complete" in meta and not isinstance(meta["complete"], bool):
        raise field_error(path, "complete", "true or false", meta["complete"])
    history = meta.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(r, dict) and is_int(r.get("epoch")) for r in history
    ):
        raise field_error(
            path, "history", "a list of per-epoch rows with an integer epoch", history
        )
    if meta.get("scaler") is not None and not isinstance(meta["scaler"], dict):
        raise field_error(path, "scaler", "null or a table", meta["scaler"])
    _check_optimizer(
        path, meta.get("optimizer"), [k for k in tensors if k.startswith("optimizer/")]
    )
    expected_rng = torch.get_rng_state()
    for key, value in tensors.items():
        if not key.startswith("rng/"):
            continue
        ok_shape = value.dim() == 1 and value.dtype == torch.uint8
        if key == "rng/torch" and value.shape != expected_rng.shape:
            ok_shape = False
        if key not in ("rng/torch", "rng/cuda") or not ok_shape:
            raise MetadataError(
                f"{path}: tensor {key!r} is not a random-generator state of this torch (expected "
                f"rng/torch: uint8 of {expected_rng.numel()} bytes, rng/cuda: uint8), got "
                f"{value.dtype} of shape {tuple(value.shape)}"
            )


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[dict[str, Tensor], dict[str, Any] | None, dict[str, Any], dict[str, Tensor]]:
    """Read a checkpoint: (model state, optimizer state or None, metadata, rng states).

    The metadata is validated first (:func:`check_checkpoint`): a wrong-typed or missing field
    raises :class:`~isomax.io.MetadataError` naming the file and the field.
    """
    tensors, meta = load_file(path, KIND, device="cpu")
    check_checkpoint(path, meta, tensors)
    model_state = {k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("model/")}
    opt_tensors = {k: v.to(device) for k, v in tensors.items() if k.startswith("optimizer/")}
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng/")}
    plain_opt = meta.pop("optimizer", None)
    opt_state = None if plain_opt is None else _join_optimizer(opt_tensors, plain_opt)
    return model_state, opt_state, meta, rng


def restore_rng(rng: dict[str, Tensor]) -> None:
    """Put back the random-generator states saved in a checkpoint."""
    if "torch" in rng:
        torch.set_rng_state(rng["torch"].to(torch.uint8))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"].to(torch.uint8))
