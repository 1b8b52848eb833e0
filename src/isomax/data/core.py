"""Core dataset types, image conversions and tensor materialisation.

Conventions used throughout :mod:`isomax.data`:

* Every dataset is a :class:`ImageDataset` (a ``torch.utils.data.Dataset``) whose
  ``__getitem__`` returns ``(image, label)``: a float32 tensor ``[C, H, W]`` normalised with the
  dataset's per-channel ``mean``/``std``, and a Python ``int`` label (``-1`` for OOD sets).
* Each dataset also exposes its *raw* images through :meth:`ImageDataset.get_raw` and
  :meth:`ImageDataset.raw_batch`: either ``uint8`` tensors (0..255 meaning 0..1) or float32
  tensors with values in ``[0, 1]``. ``mean``/``std`` are expressed on the ``[0, 1]`` scale, so
  :func:`normalize` turns raw images into model inputs on any device.
* :func:`to_tensors` materialises a whole dataset as ``(x_raw, y)`` so a trainer can keep it on
  the GPU and normalise there with :func:`normalize`.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import InputError

__all__ = [
    "FIT_MODES",
    "AdaptedDataset",
    "ImageDataset",
    "Shape",
    "SubsetDataset",
    "TensorImageDataset",
    "compute_mean_std",
    "convert_channels",
    "fit_image",
    "limit_samples",
    "normalize",
    "split_indices",
    "to_tensors",
    "to_unit_float",
]

logger = logging.getLogger(__name__)

Shape = tuple[int, int, int]
"""An image shape ``(channels, height, width)``."""

FIT_MODES = ("resize", "crop", "pad")
"""How :func:`fit_image` brings an image to a new spatial size."""

_GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's "L" conversion


def optional_module(module: str, needed_by: str) -> Any:
    """Import ``module`` (an optional dependency); if it is missing, an ImportError that says
    ``needed_by`` (e.g. ``"reading image files needs Pillow"``) and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{needed_by}; install it with: pip install 'isomax[full]'") from exc


def default_num_workers() -> int:
    """Threads used for decoding when the caller does not say: ``min(8, cpu_count)``."""
    return max(1, min(8, os.cpu_count() or 1))


# --------------------------------------------------------------------------- conversions
def to_unit_float(x: Tensor) -> Tensor:
    """Raw images (``uint8`` 0..255 or float in [0, 1]) as float32 in [0, 1] (new tensor)."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    if not torch.is_floating_point(x):
        raise TypeError(f"raw images must be uint8 or floating point, got dtype {x.dtype}")
    return x.to(torch.float32, copy=True)


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Normalise raw images ``[C, H, W]`` or ``[N, C, H, W]`` channel-wise: ``(x - mean) / std``.

    ``uint8`` input is first scaled to ``[0, 1]``; float input is assumed to be in ``[0, 1]``.
    Works on any device; returns a new float32 tensor.
    """
    if x.dim() not in (3, 4):
        raise InputError(f"expected images [C, H, W] or [N, C, H, W], got shape {tuple(x.shape)}")
    channels = x.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise InputError(
            f"mean/std have {len(mean)}/{len(std)} entries but the images have {channels} channels"
        )
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    return (to_unit_float(x) - m) / s


def convert_channels(x: Tensor, channels: int) -> Tensor:
    """Convert ``[..., C, H, W]`` images to ``channels`` (1 or 3); keeps the dtype.

    Grey to RGB repeats the channel; RGB to grey uses ITU-R 601-2 luma weights; an alpha
    channel (2 or 4 channels) is dropped.
    """
    c = x.shape[-3]
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, got {channels}")
    if c == channels:
        return x
    if c in (2, 4):  # grey+alpha or RGBA: drop alpha
        x = x[..., : c - 1, :, :]
        c -= 1
        if c == channels:
            return x
    if c == 1 and channels == 3:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor(_GREY_WEIGHTS, dtype=torch.float32, device=x.device).view(-1, 1, 1)
        grey = (x.to(torch.float32) * w).sum(dim=-3, keepdim=True)
        return _restore_dtype(grey, x.dtype)
    raise InputError(f"cannot convert images with {c} channels to {channels} channels")


def _restore_dtype(x: Tensor, dtype: torch.dtype) -> Tensor:
    if dtype == torch.uint8:
        return x.round_().clamp_(0, 255).to(torch.uint8)
    return x.clamp_(0.0, 1.0).to(dtype)


def _interpolate(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``[N, C, H, W]`` keeping the dtype; antialiased when shrinking."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    shrink = size[0] < h or size[1] < w
    y = F.interpolate(
        x.to(torch.float32), size=size, mode="bilinear", align_corners=False, antialias=shrink
    )
    return _restore_dtype(y, x.dtype)


def _center_crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]]


def fit_image(x: Tensor, size: tuple[int, int], channels: int, mode: str = "resize") -> Tensor:
    """Bring raw images ``[C, H, W]`` or ``[N, C, H, W]`` to ``channels`` x ``size``.

    Modes (the ``dtype`` is kept; ``uint8`` results are rounded):

    * ``"resize"``: bilinear resize to exactly ``size`` (aspect ratio not kept), antialiased
      when shrinking (the "(resize)" convention of the OOD literature).
    * ``"crop"``: centre crop; an image smaller than ``size`` is first scaled up, keeping its
      aspect ratio, until it covers ``size``.
    * ``"pad"``: centre the image on a black canvas; an image larger than ``size`` is first
      scaled down, keeping its aspect ratio, to fit (e.g. MNIST 28x28 to 32x32).
    """
    if mode not in FIT_MODES:
        raise InputError(f"unknown fit mode {mode!r}; expected one of {FIT_MODES}")
    single = x.dim() == 3
    if single:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise InputError(f"expected images [C, H, W] or [N, C, H, W], got shape {tuple(x.shape)}")
    x = convert_channels(x, channels)
    th, tw = int(size[0]), int(size[1])
    h, w = x.shape[-2:]
    if (h, w) != (th, tw):
        if mode == "resize":
            x = _interpolate(x, (th, tw))
        elif mode == "crop":
            scale = max(th / h, tw / w)
            if scale > 1.0:
                x = _interpolate(x, (max(th, math.ceil(h * scale)), max(tw, math.ceil(w * scale))))
            x = _center_crop(x, (th, tw))
        else:  # pad
            scale = min(th / h, tw / w)
            if scale < 1.0:
                x = _interpolate(x, (max(1, round(h * scale)), max(1, round(w * scale))))
            h, w = x.shape[-2:]
            top, left = (th - h) // 2, (tw - w) // 2
            x = F.pad(x, (left, tw - w - left, top, th - h - top), value=0)
    x = x.contiguous()
    return x[0] if single else x


# --------------------------------------------------------------------------- datasets
def _check_index(index: int, length: int) -> int:
    index = int(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length} samples")
    return index


class ImageDataset(Dataset[tuple[Tensor, int]]):
    """Base class: ``dataset[i] -> (normalised float32 [C, H, W], int label)``.

    Subclasses implement ``__len__`` and :meth:`get_raw`; they may override :meth:`raw_batch`
    (vectorised access) and :meth:`raw_tensors` (in-memory data).

    Attributes:
        shape: ``(C, H, W)`` of every sample.
        mean, std: per-channel normalisation statistics on the ``[0, 1]`` scale.
        transform: optional callable applied to the normalised tensor in ``__getitem__``
            (e.g. augmentation); never applied by :func:`to_tensors`.
    """

    def __init__(
        self,
        shape: Shape,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if len(shape) != 3 or any(int(s) <= 0 for s in shape):
            raise InputError(f"shape must be (C, H, W) with positive sizes, got {shape}")
        self.shape: Shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.transform = transform
        self.set_stats(mean, std)

    def set_stats(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        """Set the normalisation statistics (``None``: 0 and 1, i.e. plain ``[0, 1]`` scaling)."""
        c = self.shape[0]
        mean_t = tuple(float(v) for v in mean) if mean is not None else (0.0,) * c
        std_t = tuple(float(v) for v in std) if std is not None else (1.0,) * c
        if len(mean_t) != c or len(std_t) != c:
            raise InputError(f"mean/std must have {c} entries (one per channel)")
        if any(not s > 0 for s in std_t):
            raise InputError(f"std entries must be positive, got {std_t}")
        self.mean: tuple[float, ...] = mean_t
        self.std: tuple[float, ...] = std_t

    def __len__(self) -> int:
        raise NotImplementedError

    def get_raw(self, index: int) -> tuple[Tensor, int]:
        """Raw image (``uint8`` or float in [0, 1], ``[C, H, W]``) and label of sample ``index``."""
        raise NotImplementedError

    def raw_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Raw images ``[n, C, H, W]`` and int64 labels ``[n]`` for ``indices``.

        Datasets that skip undecodable files may return fewer than ``len(indices)`` samples.
        """
        xs, ys = [], []
        for i in indices:
            x, y = self.get_raw(int(i))
            xs.append(x)
            ys.append(y)
        if not xs:
            return self._empty_batch()
        return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)

    def raw_tensors(self) -> tuple[Tensor, Tensor] | None:
        """All raw images and labels when held in memory, else ``None``."""
        return None

    def _empty_batch(self) -> tuple[Tensor, Tensor]:
        return torch.empty((0, *self.shape), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x, y = self.get_raw(_check_index(index, len(self)))
        x = normalize(x, self.mean, self.std)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, shape={self.shape})"


class TensorImageDataset(ImageDataset):
    """Images held in memory: ``x`` raw ``[N, C, H, W]`` (uint8 or float in [0, 1]), ``y`` [N]."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor | Sequence[int],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise InputError(f"x must be a tensor [N, C, H, W], got {getattr(x, 'shape', type(x))}")
        if x.dtype != torch.uint8 and not torch.is_floating_point(x):
            raise TypeError(f"x must be uint8 or floating point, got {x.dtype}")
        y_t = torch.as_tensor(y, dtype=torch.int64)
        if y_t.dim() != 1 or y_t.shape[0] != x.shape[0]:
            raise InputError(f"y must have shape [{x.shape[0]}], got {tuple(y_t.shape)}")
        super().__init__(tuple(x.shape[1:]), mean, std, transform)  # type: ignore[arg-type]
        self.x = x
        self.y = y_t
        self.class_names = tuple(class_names) if class_names is not None else None

    @property
    def targets(self) -> Tensor:
        """Labels as an int64 tensor."""
        return self.y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def get_raw(self, index: int) -> tuple[Tensor, int]:
        return self.x[index], int(self.y[index])

    def raw_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(list(indices), dtype=torch.int64)
        return self.x[idx], self.y[idx]

    def raw_tensors(self) -> tuple[Tensor, Tensor]:
        return self.x, self.y

    def _empty_batch(self) -> tuple[Tensor, Tensor]:
        return self.x[:0], self.y[:0]


class SubsetDataset(ImageDataset):
    """A view on ``indices`` of ``base`` (raw access delegates to ``base``)."""

    def __init__(
        self,
        base: ImageDataset,
        indices: Sequence[int] | Tensor | np.ndarray,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(
            base.shape,
            base.mean if mean is None else mean,
            base.std if std is None else std,
            transform,
        )
        self.base = base
        self.indices = [int(i) for i in np.asarray(indices, dtype=np.int64).ravel()]
        n = len(base)
        bad = [i for i in self.indices if not 0 <= i < n]
        if bad:
            raise IndexError(f"subset indices out of range for {n} samples: {bad[:5]}")

    def __len__(self) -> int:
        return len(self.indices)

    def get_raw(self, index: int) -> tuple[Tensor, int]:
        return self.base.get_raw(self.indices[index])

    def raw_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        return self.base.raw_batch([self.indices[int(i)] for i in indices])

    def raw_tensors(self) -> tuple[Tensor, Tensor] | None:
        full = self.base.raw_tensors()
        if full is None:
            return None
        idx = torch.as_tensor(self.indices, dtype=torch.int64)
        return full[0][idx], full[1][idx]

    @property
    def targets(self) -> Tensor | None:
        """Labels of the subset when the base dataset knows its labels cheaply, else ``None``."""
        base_targets = getattr(self.base, "targets", None)
        if base_targets is None:
            return None
        return torch.as_tensor(base_targets)[torch.as_tensor(self.indices, dtype=torch.int64)]

    def _empty_batch(self) -> tuple[Tensor, Tensor]:
        return self.base._empty_batch()


class AdaptedDataset(ImageDataset):
    """``base`` brought to ``shape`` with :func:`fit_image`, optionally relabelled (OOD: -1)."""

    def __init__(
        self,
        base: ImageDataset,
        shape: Shape,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        mode: str = "resize",
        label: int | None = -1,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if mode not in FIT_MODES:
            raise InputError(f"unknown fit mode {mode!r}; expected one of {FIT_MODES}")
        super().__init__(shape, mean, std, transform)
        self.base = base
        self.mode = mode
        self.label = label

    def __len__(self) -> int:
        return len(self.base)

    def _fit(self, x: Tensor) -> Tensor:
        return fit_image(x, self.shape[1:], self.shape[0], self.mode)

    def get_raw(self, index: int) -> tuple[Tensor, int]:
        x, y = self.base.get_raw(index)
        return self._fit(x), (y if self.label is None else self.label)

    def raw_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        x, y = self.base.raw_batch(indices)
        if x.shape[0] == 0:
            return torch.empty((0, *self.shape), dtype=x.dtype), y
        if self.label is not None:
            y = torch.full_like(y, self.label)
        return self._fit(x), y

    @property
    def skipped(self) -> list[str]:
        """Files skipped by the base dataset (empty when it skips nothing)."""
        return list(getattr(self.base, "skipped", []))


# --------------------------------------------------------------------------- helpers
def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` with a seeded permutation: ``(kept, held_out)``, both sorted.

    ``held_out`` has ``round(n * fraction)`` indices. The permutation is NumPy's PCG64 seeded
    with ``seed``, so splits are reproducible across runs and machines.
    """
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"split fraction must be in [0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_out = round(n * fraction)
    held = sorted(int(i) for i in perm[:n_out])
    kept = sorted(int(i) for i in perm[n_out:])
    return kept, held


def limit_samples(dataset: ImageDataset, max_samples: int | None, seed: int = 0) -> ImageDataset:
    """A seeded random subset of at most ``max_samples`` samples (the dataset itself if smaller)."""
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    if max_samples <= 0:
        raise InputError(f"max_samples must be positive, got {max_samples}")
    chosen = np.random.default_rng(seed).choice(len(dataset), size=max_samples, replace=False)
    return SubsetDataset(dataset, np.sort(chosen))


def _iter_raw_batches(
    dataset: ImageDataset, indices: Sequence[int], num_workers: int | None, batch_size: int
) -> list[tuple[Tensor, Tensor]]:
    groups = [list(indices[i : i + batch_size]) for i in range(0, len(indices), batch_size)]
    workers = default_num_workers() if num_workers is None else max(1, int(num_workers))
    if workers == 1 or len(groups) <= 1:
        return [dataset.raw_batch(g) for g in groups]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(dataset.raw_batch, groups))


def stream_raw_batches(
    dataset: ImageDataset, batch_size: int = 512, num_workers: int | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Raw batches ``(x, y)`` of ``dataset`` in order, one batch in memory at a time.

    Each batch is decoded by ``num_workers`` threads (default ``min(8, cpu_count)``), so image
    files stream as fast as :func:`to_tensors` decodes them without holding them all.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    workers = default_num_workers() if num_workers is None else max(1, int(num_workers))
    n = len(dataset)
    full = dataset.raw_tensors()
    if full is not None:  # held in memory (or built once, e.g. the photo patches): slice it
        for start in range(0, n, batch_size):
            yield full[0][start : start + batch_size], full[1][start : start + batch_size]
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            step = -(-(stop - start) // workers)
            groups = [range(i, min(i + step, stop)) for i in range(start, stop, step)]
            parts = list(pool.map(dataset.raw_batch, groups))
            yield torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def to_tensors(
    dataset: Dataset,
    num_workers: int | None = None,
    batch_size: int = 256,
    raw: bool = True,
) -> tuple[Tensor, Tensor]:
    """Materialise a dataset as ``(x [N, C, H, W], y int64 [N])``.

    With ``raw=True`` (the default) ``x`` holds the raw images of an :class:`ImageDataset`:
    ``uint8`` (0..255) when the source is 8-bit, otherwise float32 in ``[0, 1]``; normalise with
    ``normalize(x, dataset.mean, dataset.std)`` (or the bundle's ``mean``/``std``), e.g. on the
    GPU. In-memory datasets are returned without copying where possible. Files are decoded by
    ``num_workers`` threads (default ``min(8, cpu_count)``). Datasets that skip corrupt files
    drop them, so ``N`` may be smaller than ``len(dataset)``.

    With ``raw=False`` ``x`` is the normalised float32 input (no ``transform`` applied); this
    also works for any map-style dataset returning ``(tensor, label)``.
    """
    if isinstance(dataset, ImageDataset):
        full = dataset.raw_tensors()
        if full is None:
            parts = _iter_raw_batches(dataset, range(len(dataset)), num_workers, batch_size)
            if parts:
                full = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
            else:
                full = dataset._empty_batch()
        x, y = full
        return (x, y) if raw else (normalize(x, dataset.mean, dataset.std), y)
    if raw:
        raise TypeError(
            f"{type(dataset).__name__} has no raw image access (not an isomax ImageDataset); "
            "call to_tensors(dataset, raw=False) to stack its (tensor, label) samples"
        )
    xs, ys = [], []
    for i in range(len(dataset)):  # type: ignore[arg-type]
        x, y = dataset[i]
        xs.append(torch.as_tensor(x))
        ys.append(int(y))
    if not xs:
        raise InputError("cannot materialise an empty dataset without a known sample shape")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


def compute_mean_std(
    dataset: ImageDataset,
    max_samples: int | None = None,
    seed: int = 0,
    num_workers: int | None = None,
    batch_size: int = 256,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the raw images on the ``[0, 1]`` scale.

    Uses all samples, or a seeded random subset of ``max_samples`` of them (to bound the cost
    on large file-backed datasets). A channel with zero variance gets std 1.
    """
    n = len(dataset)
    if n == 0:
        raise InputError("cannot compute mean/std of an empty dataset")
    indices: Sequence[int] = range(n)
    if max_samples is not None and max_samples < n:
        rng = np.random.default_rng(seed)
        indices = sorted(int(i) for i in rng.choice(n, size=max_samples, replace=False))
    c = dataset.shape[0]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    lock = threading.Lock()

    def accumulate(x: Tensor) -> None:
        nonlocal count
        xf = to_unit_float(x).to(torch.float64)
        s = xf.sum(dim=(0, 2, 3))
        sq = (xf * xf).sum(dim=(0, 2, 3))
        with lock:
            total.add_(s)
            total_sq.add_(sq)
            count += xf.shape[0] * xf.shape[2] * xf.shape[3]

    full = dataset.raw_tensors()
    if full is not None:
        idx = torch.as_tensor(list(indices), dtype=torch.int64)
        for i in range(0, len(idx), 4096):
            accumulate(full[0][idx[i : i + 4096]])
    else:
        for x, _ in _iter_raw_batches(dataset, indices, num_workers, batch_size):
            if x.shape[0]:
                accumulate(x)
    if count == 0:
        raise InputError("no decodable samples to compute mean/std from")
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    if bool((std < 1e-8).any()):
        logger.warning("a channel has zero variance; using std 1 for it")
        std = torch.where(std < 1e-8, torch.ones_like(std), std)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
