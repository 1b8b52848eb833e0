"""Dataset registry: named in-distribution bundles and OOD sets shaped like them.

* :func:`get_dataset` returns a :class:`DatasetBundle` (train/val/test splits plus metadata).
  Names are registry names (:func:`list_datasets`), ``"folder:PATH"``, a folder path or an
  archive path (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.zip``).
* :func:`get_ood_dataset` returns an OOD dataset (labels ``-1``) with the input shape and
  normalisation of an in-distribution bundle. Names are OOD registry names
  (:func:`list_ood_datasets`), in-distribution registry names (their test split),
  ``"folder:PATH"``, a folder path or an archive path.

The validation split is always carved from the training data with a seeded permutation
(``split_val`` of it, ``seed``); it never comes from the test split. Normalisation statistics
are computed on the training split (after the validation split was removed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from torch import Tensor

from .._names import add_name, find_name, registry_key, unknown_name
from ..errors import InputError
from .archive import extract_to_cache, is_archive
from .core import (
    AdaptedDataset,
    ImageDataset,
    Shape,
    SubsetDataset,
    compute_mean_std,
    limit_samples,
    normalize,
    split_indices,
    to_tensors,
)
from .downloads import default_cache_dir, writable_dir
from .images import ImageFilesDataset, ImageFolderDataset, find_images

__all__ = [
    "DatasetBundle",
    "get_dataset",
    "get_ood_dataset",
    "list_datasets",
    "list_ood_datasets",
    "make_bundle",
    "register_dataset",
    "register_ood_dataset",
    "resolve_cache_dir",
]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_DATASETS: dict[str, Callable[..., DatasetBundle]] = {}
_OOD_DATASETS: dict[str, Callable[..., ImageDataset]] = {}
#: Other names of registered sets (spellings such as ``cifar-10`` or ``fashion_mnist`` need no
#: alias: names are matched by :func:`isomax._names.fold`).
_ALIASES = {
    "tinyimagenet-resize": "tinyimagenet",
    "imagenet-resize": "tinyimagenet",
    "lsun-resize": "lsun",
    "noise": "gaussian",
}
DEFAULT_OOD = ("gaussian", "uniform", "photos")


@dataclass
class DatasetBundle:
    """An in-distribution dataset: its three splits and what a model needs to know about it.

    ``train``, ``val`` and ``test`` return ``(normalised float32 [C, H, W], label)``. Their raw
    images (uint8, or float in [0, 1]) are available with :meth:`raw` /
    :func:`~isomax.data.core.to_tensors`; normalise them with :meth:`normalize`.
    """

    name: str
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    num_classes: int
    input_shape: Shape
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    ood_names: tuple[str, ...] = field(default=DEFAULT_OOD)

    def split(self, name: str) -> ImageDataset:
        """The split called ``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise InputError(f"unknown split {name!r}; expected 'train', 'val' or 'test'")
        return getattr(self, name)

    def raw(self, split: str = "train", num_workers: int | None = None) -> tuple[Tensor, Tensor]:
        """Raw images ``[N, C, H, W]`` (uint8, or float in [0, 1]) and int64 labels of a split.

        For GPU training: ``x, y = bundle.raw("train")``, move both to the device once, then
        feed ``bundle.normalize(x[idx])`` (augment before normalising if needed).
        """
        return to_tensors(self.split(split), num_workers=num_workers)

    def normalize(self, x: Tensor) -> Tensor:
        """Normalise raw images (any device) with this bundle's ``mean``/``std``."""
        return normalize(x, self.mean, self.std)


# --------------------------------------------------------------------------- registration
def register_dataset(name: str, *, overwrite: bool = False) -> Callable[[F], F]:
    """Decorator registering an in-distribution factory under ``name``.

    The factory is called as ``factory(root=..., split_val=..., seed=..., download=..., **kw)``
    and must return a :class:`DatasetBundle` (see :func:`make_bundle`).
    """
    registry_key("dataset", name)

    def decorator(factory: F) -> F:
        add_name("dataset", _DATASETS, name, factory, overwrite)
        return factory

    return decorator


def register_ood_dataset(name: str, *, overwrite: bool = False) -> Callable[[F], F]:
    """Decorator registering an OOD factory under ``name``.

    The factory is called as ``factory(like=bundle, root=..., download=..., max_samples=...,
    seed=..., **kw)`` and returns an :class:`ImageDataset`; :func:`as_ood` brings any dataset to
    the bundle's shape and statistics. ``max_samples`` may be ignored by the factory: the
    registry subsamples afterwards.
    """
    registry_key("OOD dataset", name)

    def decorator(factory: F) -> F:
        add_name("OOD dataset", _OOD_DATASETS, name, factory, overwrite)
        return factory

    return decorator


def list_datasets() -> list[str]:
    """Registered in-distribution dataset names."""
    return sorted(_DATASETS)


def list_ood_datasets() -> list[str]:
    """Registered OOD dataset names (in-distribution names also work as OOD sets)."""
    return sorted(_OOD_DATASETS)


def resolve_cache_dir(root: str | os.PathLike[str] | None) -> Path:
    """Where archives are unpacked: ``root`` if given and writable, else the default cache."""
    if root is not None:
        r = Path(root).expanduser()
        if r.is_dir() and writable_dir(r):
            return r
        if not r.exists() and writable_dir(r):
            return r
        logger.info("%s is not a writable folder; unpacking into the default cache instead", r)
    return default_cache_dir()


# --------------------------------------------------------------------------- bundles
def make_bundle(
    name: str,
    train_full: ImageDataset,
    test: ImageDataset,
    split_val: float,
    seed: int,
    num_classes: int,
    class_names: Sequence[str],
    ood_names: Sequence[str] = DEFAULT_OOD,
    stats_samples: int | None = None,
    val: ImageDataset | None = None,
) -> DatasetBundle:
    """Carve ``val`` from ``train_full`` (unless given), compute stats on train, build a bundle.

    Args:
        split_val: fraction of ``train_full`` held out for validation (seeded by ``seed``).
        stats_samples: compute mean/std on at most this many training samples (``None``: all).
    """
    if val is None:
        kept, held = split_indices(len(train_full), split_val, seed)
        train: ImageDataset = SubsetDataset(train_full, kept)
        val = SubsetDataset(train_full, held)
    else:
        logger.info("%s: using the dataset's own validation folder", name)
        train = train_full
    if train_full.shape != test.shape or val.shape != test.shape:
        raise InputError(
            f"train/val/test shapes differ: {train_full.shape}, {val.shape}, {test.shape}"
        )
    mean, std = compute_mean_std(train, max_samples=stats_samples, seed=seed)
    for ds in (train, val, test):
        ds.set_stats(mean, std)
    return DatasetBundle(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=int(num_classes),
        input_shape=train.shape,
        mean=mean,
        std=std,
        class_names=tuple(class_names),
        ood_names=tuple(ood_names),
    )


def _unknown(name: str, ood: bool) -> ValueError:
    names = list_ood_datasets() + list_datasets() if ood else list_datasets()
    return unknown_name(
        "dataset",
        name,
        sorted(set(names)),
        _ALIASES,
        also="'folder:PATH', a folder path, or an archive path "
        "(.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, .zip)",
    )


def _local_path(name: str) -> Path | None:
    """The path named by ``folder:PATH``, or ``name`` itself when it is an existing path."""
    if name.startswith("folder:"):
        if not name[len("folder:") :].strip():
            raise InputError(
                "folder: needs a path after the colon, e.g. folder:/data/my_images "
                "(an empty path would read the current folder)"
            )
        return Path(name[len("folder:") :]).expanduser()
    p = Path(name).expanduser()
    if p.exists() and (p.is_dir() or is_archive(p)):
        return p
    if is_archive(name) or os.sep in name:
        return p  # looks like a path: report it as missing rather than as an unknown name
    return None


def _materialise(path: Path, root: str | os.PathLike[str] | None) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected a folder or an archive)")
    if path.is_file():
        if not is_archive(path):
            raise InputError(f"{path} is a file but not a supported archive")
        return extract_to_cache(path, resolve_cache_dir(root))
    return path


def _image_subdirs(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def _dataset_root(path: Path) -> Path:
    """Descend through single wrapper folders (e.g. ``archive/cifar10/train``)."""
    while True:
        if (path / "train").is_dir():
            return path
        subdirs = _image_subdirs(path)
        has_files = any(f.is_file() and not f.name.startswith(".") for f in path.iterdir())
        if len(subdirs) == 1 and not has_files:
            path = subdirs[0]
            continue
        return path


def _hold_out_test(
    dataset: ImageDataset, fraction: float, why: str
) -> tuple[ImageDataset, ImageDataset]:
    """``dataset`` split into train and a held-out test share ``fraction`` (seed 0), logged."""
    logger.info("%s folder; holding out %.0f%% of the images (seed 0) as test", why, 100 * fraction)
    kept, held = split_indices(len(dataset), fraction, 0)
    return SubsetDataset(dataset, kept), SubsetDataset(dataset, held)


def _folder_bundle(
    path: Path,
    name: str,
    root: str | os.PathLike[str] | None,
    split_val: float,
    seed: int,
    image_size: int | Sequence[int] = 32,
    channels: int = 3,
    mode: str = "resize",
    test_fraction: float = 0.2,
    in_memory: bool = False,
    on_error: str = "raise",
    stats_samples: int | None = 2000,
    num_workers: int | None = None,
    ood_names: Sequence[str] = DEFAULT_OOD,
) -> DatasetBundle:
    base = _dataset_root(_materialise(path, root))
    opts: dict[str, Any] = {
        "image_size": image_size,
        "channels": channels,
        "mode": mode,
        "on_error": on_error,
    }
    val: ImageDataset | None = None
    if (base / "train").is_dir():
        train_full: ImageDataset = ImageFolderDataset(base / "train", **opts)
        classes = train_full.class_names  # type: ignore[attr-defined]
        if (base / "test").is_dir():
            test: ImageDataset = ImageFolderDataset(base / "test", classes=classes, **opts)
        else:
            train_full, test = _hold_out_test(train_full, test_fraction, f"{base} has no test/")
        val_dir = base / "val"
        if (
            val_dir.is_dir()
            and _image_subdirs(val_dir)
            and {d.name for d in _image_subdirs(val_dir)} <= set(classes)
        ):
            val = ImageFolderDataset(val_dir, classes=classes, **opts)
    else:
        whole = ImageFolderDataset(base, **opts)
        classes = whole.class_names  # type: ignore[assignment]
        train_full, test = _hold_out_test(whole, test_fraction, f"{base} has no train/")
    if in_memory:
        train_full = _in_memory(train_full, num_workers)
        test = _in_memory(test, num_workers)
        val = _in_memory(val, num_workers) if val is not None else None
        stats_samples = None
    classes = tuple(classes or ())
    return make_bundle(
        name,
        train_full,
        test,
        split_val,
        seed,
        len(classes),
        classes,
        ood_names=ood_names,
        stats_samples=stats_samples,
        val=val,
    )


def _in_memory(ds: ImageDataset, num_workers: int | None) -> ImageDataset:
    from .core import TensorImageDataset

    if isinstance(ds, TensorImageDataset):
        return ds
    loader = getattr(ds, "load_into_memory", None)
    if loader is not None:
        return loader(num_workers=num_workers)
    x, y = to_tensors(ds, num_workers=num_workers)
    return TensorImageDataset(x, y, ds.mean, ds.std, getattr(ds, "class_names", None))


def get_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split_val: float = 0.1,
    seed: int = 0,
    download: bool = False,
    **kw: Any,
) -> DatasetBundle:
    """Load an in-distribution dataset as a :class:`DatasetBundle`.

    Args:
        name: a registry name (:func:`list_datasets`), ``"folder:PATH"``, a folder path or an
            archive path. Folders use the ImageFolder layout, either with ``train/`` (and
            optionally ``test/`` and ``val/``) subfolders or with class folders directly (then
            20% is held out as test with seed 0, see ``test_fraction``). Archives are unpacked
            once into the cache (``root`` if writable, else ``$ISOMAX_CACHE`` or
            ``~/.cache/isomax``).
        root: where the dataset's files are (or go); ``None``: the default cache.
        split_val: fraction of the training data held out as the validation split.
        seed: seed of the validation split (the test split never depends on it).
        download: fetch missing files from their published URLs (checksums verified).
        **kw: dataset-specific options. Folders/archives accept ``image_size`` (default 32),
            ``channels`` (3), ``mode`` ("resize"), ``test_fraction`` (0.2), ``in_memory``
            (False: decode lazily; True: decode everything once into uint8 tensors),
            ``on_error`` ("raise" or "skip"), ``stats_samples`` (2000: images used for mean/std
            unless in memory) and ``num_workers``.

    Raises:
        ValueError: unknown name (the message lists the valid names).
    """
    if not 0.0 <= split_val < 1.0:
        raise InputError(f"split_val must be in [0, 1), got {split_val}")
    key = find_name(name, _DATASETS, _ALIASES)
    if key is not None:
        return _DATASETS[key](root=root, split_val=split_val, seed=seed, download=download, **kw)
    path = _local_path(name)
    if path is None:
        raise _unknown(name, ood=False)
    label = name if name.startswith("folder:") else f"folder:{path}"
    return _folder_bundle(path, label, root, split_val, seed, **kw)


# --------------------------------------------------------------------------- OOD sets
def as_ood(dataset: ImageDataset, like: DatasetBundle, mode: str = "resize") -> ImageDataset:
    """``dataset`` with ``like``'s input shape and normalisation, labels ``-1``."""
    return AdaptedDataset(dataset, like.input_shape, like.mean, like.std, mode=mode, label=-1)


def ood_files_dataset(
    folder: str | os.PathLike[str], like: DatasetBundle, mode: str = "resize", **kw: Any
) -> ImageFilesDataset:
    """All images under ``folder`` decoded straight to ``like``'s shape and statistics."""
    c, h, w = like.input_shape
    return ImageFilesDataset(
        folder, image_size=(h, w), channels=c, mode=mode, mean=like.mean, std=like.std, **kw
    )


def canonical_ood_name(name: str) -> str | None:
    """The registered name an OOD set ``name`` spells (an OOD set or an ID dataset), or None."""
    return find_name(name, _OOD_DATASETS, _ALIASES) or find_name(name, _DATASETS, _ALIASES)


def get_ood_dataset(
    name: str,
    like: DatasetBundle,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    max_samples: int | None = None,
    seed: int = 0,
    **kw: Any,
) -> ImageDataset:
    """An OOD dataset (labels ``-1``) with the input shape and normalisation of ``like``.

    Args:
        name: an OOD registry name (:func:`list_ood_datasets`), an in-distribution registry
            name (its test split is used), ``"folder:PATH"``, a folder path or an archive path
            (every image inside, any layout).
        like: the in-distribution bundle whose shape (C, H, W), mean and std are adopted.
        root: where the dataset's files are; for archives, where to unpack them.
        download: fetch missing files from their published URLs.
        max_samples: keep a seeded random subset of at most this many samples.
        seed: seed of that subset and of synthetic sets.
        **kw: dataset-specific options; folders accept ``mode`` ("resize", "crop" or "pad")
            and ``on_error``.
    """
    key = find_name(name, _OOD_DATASETS, _ALIASES)
    id_key = find_name(name, _DATASETS, _ALIASES)
    if key is not None:
        ds = _OOD_DATASETS[key](
            like=like, root=root, download=download, max_samples=max_samples, seed=seed, **kw
        )
    elif id_key is not None:
        other = _DATASETS[id_key](root=root, split_val=0.0, seed=seed, download=download, **kw)
        ds = as_ood(other.test, like)
    else:
        path = _local_path(name)
        if path is None:
            raise _unknown(name, ood=True)
        folder = _materialise(path, root)
        if not find_images(folder):
            raise InputError(f"no image files found under {folder} (from {name!r})")
        ds = ood_files_dataset(folder, like, **kw)
    if ds.shape != like.input_shape:
        ds = as_ood(ds, like)
    ds = limit_samples(ds, max_samples, seed)
    ds.set_stats(like.mean, like.std)
    return ds
