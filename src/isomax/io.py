"""Safe files: safetensors plus JSON metadata, written atomically, never a pickle.

Every file this package writes (checkpoints, detectors) is one ``.safetensors`` file whose header
carries the JSON metadata under the key ``"isomax"``, with a ``kind`` and a ``format_version``.
Loading never unpickles: a file holding a pickle (``torch.save`` output, a raw pickle) is refused
before anything in it is interpreted.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import InputError

__all__ = [
    "FORMAT_VERSION",
    "MAX_INPUT_SIDE",
    "MetadataError",
    "UnsafeFileError",
    "atomic_write_bytes",
    "check_model_facts",
    "load_file",
    "remove_stale_temporaries",
    "save_file",
]

FORMAT_VERSION = 1
_META_KEY = "isomax"


class UnsafeFileError(InputError):
    """A file that would need unpickling (and could run code) was refused."""


class MetadataError(InputError):
    """A file's isomax metadata is missing a field or holds a value of the wrong kind."""


MAX_INPUT_SIDE = 4096  #: largest input height or width a file may ask for
MAX_CLASSES = 1_000_000


def field_error(
    path: str | os.PathLike[str], name: str, expected: str, value: Any
) -> MetadataError:
    """The one-line error for a bad metadata field: the file, the field, what was expected."""
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return MetadataError(f"{path}: metadata field {name!r} must be {expected}, got {shown}")


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def require(path: str | os.PathLike[str], meta: dict[str, Any], names: tuple[str, ...]) -> None:
    """Refuse metadata lacking any of ``names``."""
    missing = [n for n in names if n not in meta]
    if missing:
        raise MetadataError(
            f"{path}: metadata lacks the field(s) {', '.join(map(repr, missing))} (corrupt, or "
            "not written by isomax)"
        )


def check_model_facts(
    path: str | os.PathLike[str], meta: dict[str, Any], weights: dict[str, Tensor]
) -> None:
    """Check the fields that describe a model and its inputs, where present.

    ``config`` must be a valid training configuration, ``num_classes`` a positive integer that
    is a dimension of one of the ``weights`` actually in the file (so a small file cannot ask
    for a huge model), ``input_shape`` (C, H, W) with C in {1, 3} and H, W at most
    :data:`MAX_INPUT_SIDE`, ``mean`` / ``std`` C finite numbers (std > 0) and ``class_names`` a
    list of strings. Raises :class:`MetadataError` naming the file and the field.
    """
    if "config" in meta:
        from .engine.config import TrainConfig

        if not isinstance(meta["config"], dict):
            raise field_error(path, "config", "a table of training settings", meta["config"])
        try:
            TrainConfig.from_dict(meta["config"])
        except (ValueError, TypeError) as exc:
            raise MetadataError(f"{path}: metadata field 'config': {exc}") from None
    if "num_classes" in meta:
        n = meta["num_classes"]
        if not is_int(n) or not 1 <= n <= MAX_CLASSES:
            raise field_error(path, "num_classes", f"an integer in [1, {MAX_CLASSES}]", n)
        if weights and not any(n in t.shape for t in weights.values()):
            raise MetadataError(
                f"{path}: metadata field 'num_classes' is {n} but no weight in the file has "
                "that many rows (the metadata does not match the weights)"
            )
    channels = None
    if "input_shape" in meta:
        shape = meta["input_shape"]
        if (
            not isinstance(shape, list)
            or len(shape) != 3
            or not all(is_int(v) for v in shape)
            or shape[0] not in (1, 3)
            or not all(1 <= v <= MAX_INPUT_SIDE for v in shape[1:])
        ):
            raise field_error(
                path,
                "input_shape",
                f"[channels, height, width] with 1 or 3 channels and sides in [1, "
                f"{MAX_INPUT_SIDE}]",
                shape,
            )
        channels = shape[0]
    for name in ("mean", "std"):
        if name in meta:
            v = meta[name]
            n_expected = channels if channels is not None else len(v) if isinstance(v, list) else 0
            if (
                not isinstance(v, list)
                or len(v) != n_expected
                or not all(is_number(x) for x in v)
                or (name == "std" and not all(x > 0 for x in v))
            ):
                what = "positive numbers" if name == "std" else "finite numbers"
                raise field_error(path, name, f"a list of {channels or 'C'} {what}", v)
    if "class_names" in meta:
        names = meta["class_names"]
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise field_error(path, "class_names", "a list of strings", names)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_safe(x: Any) -> Any:
    """A copy of ``x`` with NaN and infinities as None (JSON has no such numbers)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename.

    A crash leaves either the old file or the new one, never a half-written file. The temporary
    file is named ``.<name>.<pid>.<random>.tmp`` so that :func:`remove_stale_temporaries` can tell
    whether its writer is still alive.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

    return path


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return False
    return True


def remove_stale_temporaries(
    folder: str | os.PathLike[str], name: str, unknown_after_s: float = 600.0
) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write_bytes` for ``name`` whose writer is gone.

    A file whose writer process is still alive (on this machine) is left alone. A file without
    a writer id (written by an older isomax) is removed only when untouched for
    ``unknown_after_s`` seconds. Returns the removed paths.
    """
    import time

    removed = []
    prefix = f".{name}."
    for tmp in Path(folder).glob(f".{name}.*.tmp"):
        fields = tmp.name[len(prefix) :].split(".")
        try:
            if len(fields) >= 3 and fields[0].isdigit():
                if _pid_alive(int(fields[0])):
                    continue
            elif time.time() - tmp.stat().st_mtime < unknown_after_s:
                continue
            tmp.unlink()
        except FileNotFoundError:
            continue
        removed.append(tmp)
    return removed


def save_file(
    path: str | os.PathLike[str], tensors: dict[str, Tensor], meta: dict[str, Any], kind: str
) -> Path:
    """Save ``tensors`` and JSON-serialisable ``meta`` to a safetensors file, atomically."""
    from safetensors.torch import save

    header = {"kind": kind, "format_version": FORMAT_VERSION, **meta}
    try:
        text = json.dumps(json_safe(header), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata of a {kind} must be JSON-serialisable: {exc}") from None
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return atomic_write_bytes(path, save(clean, metadata={_META_KEY: text}))


def _looks_like_safetensors(data: bytes) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON object."""
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 8 + n <= len(data) and data[8:9] == b"{"


def _refuse_truncated(path: Path, data: bytes) -> None:
    """A safetensors header cut short: say so (its length may start with the pickle byte 0x80)."""
    if len(data) >= 9 and data[8:9] == b"{":
        (n,) = struct.unpack("<Q", data[:8])
        if 8 + n > len(data):
            raise InputError(
                f"{path} is not a valid safetensors file (corrupt or truncated?): it is "
                f"truncated, its header needs {8 + n} bytes and the file has {len(data)}"
            )


def _refuse_pickles(path: Path, data: bytes) -> None:
    # torch.save writes a zip archive holding a pickle; older formats and pickle.dump start with
    # the pickle protocol opcode 0x80. Neither is ever unpickled here. A safetensors header
    # length may itself start with the byte 0x80, so a valid safetensors layout is never refused.
    if _looks_like_safetensors(data):
        return
    if data.startswith(b"PK\x03\x04") or data[:1] == b"\x80":
        raise UnsafeFileError(
            f"{path} holds a pickle (torch.save or pickle output); isomax refuses to load it "
            "because unpickling can execute code. Expected a .safetensors file written by isomax."
        )


def load_file(
    path: str | os.PathLike[str], kind: str, device: str | torch.device = "cpu"
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load a file written by :func:`save_file`, checking its kind and format version."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {kind} file at {path}")
    data = path.read_bytes()
    _refuse_truncated(path, data)
    _refuse_pickles(path, data)

    try:
        tensors = load(data)
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
    except (SafetensorError, OSError, ValueError, struct.error) as exc:
        raise InputError(
            f"{path} is not a valid safetensors file (corrupt or truncated?): {exc}"
        ) from None
    raw = (header.get("__metadata__") or {}).get(_META_KEY)
    if raw is None:
        raise InputError(f"{path} is a safetensors file but not an isomax {kind} (no metadata)")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise InputError(f"{path}: the isomax metadata is not valid JSON (corrupt file?)") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: the isomax metadata is not a JSON object (corrupt file?)")

    if meta.get("kind") != kind:
        raise InputError(f"{path} holds an isomax {meta.get('kind')!r}, expected a {kind!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(
            f"{path} has format version {version!r}; this isomax reads versions up to "
            f"{FORMAT_VERSION}: upgrade isomax"
        )
    return {k: v.to(device) for k, v in tensors.items()}, meta
