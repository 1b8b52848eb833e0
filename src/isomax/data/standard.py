"""Standard benchmark sets read from their official files (no torchvision, no pickle).

In-distribution (also usable as OOD sets, through their test split):

* ``cifar10`` / ``cifar100``: the official *binary* archives (``cifar-10-binary.tar.gz``:
  records of 1 label byte + 3,072 pixel bytes; ``cifar-100-binary.tar.gz``: coarse and fine
  label bytes + 3,072 pixel bytes; ``label="fine"`` (default) or ``"coarse"``).
* ``mnist`` / ``fashion-mnist``: IDX files, gzipped or not (as in torchvision's ``raw/``).
  As OOD sets for larger inputs they are centred on a black canvas ("pad"), e.g. 28 -> 32.
* ``svhn``: the cropped-digit ``train_32x32.mat`` / ``test_32x32.mat`` files (label 10 -> 0).

OOD only (folders of images, from ``root`` or the public ODIN archives):
``tinyimagenet`` (resize), ``tinyimagenet-crop``, ``lsun`` (resize), ``lsun-crop``. ``root`` may
also be an archive or a folder of images, e.g. a TinyImageNet ``tiny-imagenet-200`` copy
(its ``val/images`` are used).

Where files are looked for (first hit wins): ``root``, ``root/<name>`` (plus the usual
sub-folders such as ``cifar-10-batches-bin`` or ``MNIST/raw``), then ``$ISOMAX_CACHE/<name>``
(default ``~/.cache/isomax/<name>``). Archives found there are checked against their published
checksum and unpacked once into the cache. With ``download=True`` missing files are fetched
into ``root/<name>`` (if writable) or the cache; otherwise a
:class:`~isomax.data.errors.DatasetNotFoundError` lists every path looked at and the URLs.

:data:`RESOURCES` holds the URLs and checksums; it may be edited (e.g. to add a mirror, or in
tests to accept a fixture archive). MD5 is used where that is what the publishers list.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .archive import cached_extraction_dir, extract_to_cache, is_archive
from .core import ImageDataset, TensorImageDataset, optional_module
from .downloads import (
    RemoteFile,
    default_cache_dir,
    fetch_file,
    verify_checksum,
    writable_dir,
)
from .errors import DatasetNotFoundError
from .images import find_images
from .registry import (
    DatasetBundle,
    as_ood,
    make_bundle,
    ood_files_dataset,
    register_dataset,
    register_ood_dataset,
    resolve_cache_dir,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_COARSE_CLASSES",
    "CIFAR100_FINE_CLASSES",
    "RESOURCES",
    "load_split",
    "read_cifar_binary",
    "read_idx",
    "read_svhn_mat",
]

logger = logging.getLogger(__name__)

_TORONTO = "https://www.cs.toronto.edu/~kriz/"
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_SVHN = "http://ufldl.stanford.edu/housenumbers/"
_DROPBOX = "https://www.dropbox.com/s/raw/"


def _archive(url: str, md5: str) -> dict[str, RemoteFile]:
    """The resources of a set published as one archive at ``url``."""
    return {"archive": RemoteFile(url.rsplit("/", 1)[1], (url,), md5=md5)}


def _mnist_files(mirrors: tuple[str, ...], md5s: dict[str, str]) -> dict[str, RemoteFile]:
    return {
        key: RemoteFile(fname, tuple(m + fname for m in mirrors), md5=md5)
        for key, (fname, md5) in {
            "train-images": ("train-images-idx3-ubyte.gz", md5s["train-images"]),
            "train-labels": ("train-labels-idx1-ubyte.gz", md5s["train-labels"]),
            "test-images": ("t10k-images-idx3-ubyte.gz", md5s["test-images"]),
            "test-labels": ("t10k-labels-idx1-ubyte.gz", md5s["test-labels"]),
        }.items()
    }


RESOURCES: dict[str, dict[str, RemoteFile]] = {
    "cifar10": _archive(_TORONTO + "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),
    "cifar100": _archive(_TORONTO + "cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"),
    "mnist": _mnist_files(
        _MNIST_MIRRORS,
        {
            "train-images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels": "d53e105ee54ea40749a09fcbcd1e9432",
            "test-images": "9fb629c4189551a2d022fa330f9573f3",
            "test-labels": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": _mnist_files(
        (_FASHION,),
        {
            "train-images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels": "25c81989df183df01b3e8a0aad5dffbe",
            "test-images": "bef4ecab320f06d8554ea6380940ec79",
            "test-labels": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "svhn": {
        "train": RemoteFile(
            "train_32x32.mat", (_SVHN + "train_32x32.mat",), md5="e26dedcc434d2e4c54c9b2d4a06d8373"
        ),
        "test": RemoteFile(
            "test_32x32.mat", (_SVHN + "test_32x32.mat",), md5="eb5a983be6a315427106f1b164d9cef3"
        ),
    },
    # The ODIN OOD archives (facebookresearch/odin). Their authors publish no checksum; these
    # MD5s are the ones used by several public OOD code bases for the same files.
    "tinyimagenet": _archive(
        _DROPBOX + "kp3my3412u5k9rl/Imagenet_resize.tar.gz", "0f9ff11d45babf2eff5fe12281d1ac31"
    ),
    "tinyimagenet-crop": _archive(
        _DROPBOX + "avgm2u562itwpkl/Imagenet.tar.gz", "7c0827e4246c3718a5ee076e999e52e5"
    ),
    "lsun": _archive(
        _DROPBOX + "moqh2wh8696c3yl/LSUN_resize.tar.gz", "278b7b31c8cb7e804a1465a8ce03a2dc"
    ),
    "lsun-crop": _archive(
        _DROPBOX + "fhtsw1m3qxlwj6h/LSUN.tar.gz", "458a0a0ab8e5f1cb4516d7400568e460"
    ),
}

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)  # fmt: skip
CIFAR100_FINE_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
)  # fmt: skip
DIGIT_CLASSES = tuple(str(i) for i in range(10))

_OOD_SUGGESTIONS = {
    "cifar10": ("svhn", "tinyimagenet", "lsun", "cifar100"),
    "cifar100": ("svhn", "tinyimagenet", "lsun", "cifar10"),
    "svhn": ("cifar10", "tinyimagenet", "lsun"),
    "mnist": ("fashion-mnist", "gaussian", "uniform"),
    "fashion-mnist": ("mnist", "gaussian", "uniform"),
}


# --------------------------------------------------------------------------- readers
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzipped or not: detected from its first bytes) into a NumPy array.

    The header (two zero bytes, a type code, the number of dimensions, then each dimension as
    a big-endian uint32) is validated against the file size.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: corrupt gzip data ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise InputError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise InputError(f"{path}: unknown IDX data type code 0x{code:02x}")
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise InputError(f"{path}: truncated IDX header ({ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = _IDX_DTYPES[code]
    payload = memoryview(data)[4 + 4 * ndim :]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(payload) != expected:
        raise InputError(
            f"{path}: IDX header announces dims {dims} ({expected} bytes of {dtype}) but the "
            f"file holds {len(payload)} bytes of data"
        )
    arr = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_cifar_binary(
    path: str | os.PathLike[str], label_bytes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR binary batch: ``(images uint8 [N, 3, 32, 32], labels uint8 [N, label_bytes])``.

    Each record is ``label_bytes`` label bytes followed by 1,024 red, 1,024 green and 1,024
    blue pixel bytes (row-major).
    """
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + 3072
    if raw.size == 0 or raw.size % record:
        raise InputError(
            f"{path}: {raw.size} bytes is not a positive multiple of the {record}-byte CIFAR "
            f"record ({label_bytes} label byte(s) + 3072 pixel bytes)"
        )
    rows = raw.reshape(-1, record)
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32).copy(), rows[:, :label_bytes].copy()


def read_svhn_mat(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN cropped-digits ``.mat``: ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    SVHN stores the digit 0 as label 10; it is mapped to 0.
    """
    scipy_io = optional_module("scipy.io", "reading SVHN .mat files needs SciPy")
    try:
        mat = scipy_io.loadmat(path)
    except (ValueError, OSError, NotImplementedError) as exc:
        raise InputError(f"{path}: cannot read the MATLAB file ({exc})") from exc
    if "X" not in mat or "y" not in mat:
        raise InputError(f"{path}: expected variables 'X' and 'y', found {sorted(mat)}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).ravel()
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.shape[0]:
        raise InputError(f"{path}: expected X [32, 32, 3, N] and y [N], got {x.shape}, {y.shape}")
    y = np.where(y == 10, 0, y)
    if y.size and (y.min() < 0 or y.max() > 9):
        raise InputError(f"{path}: labels outside 0..10")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), y


# --------------------------------------------------------------------------- locating files
def _unique(paths: list[Path]) -> list[Path]:
    seen: set[Path] = set()
    out = []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _base_dirs(name: str, root: str | os.PathLike[str] | None, *extra: str) -> list[Path]:
    dirs: list[Path] = []
    if root is not None:
        r = Path(root).expanduser()
        dirs += [r, r / name, *(r / e for e in extra)]
    cache = default_cache_dir()
    dirs += [cache / name, *(cache / e for e in extra)]
    return _unique(dirs)


def _download_dir(name: str, root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        r = Path(root).expanduser()
        if r.is_dir() and writable_dir(r):
            return r / name
    return default_cache_dir() / name


def _not_found(name: str, looked: list[Path], urls: list[str]) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name}: dataset files not found; looked at:\n  "
        + "\n  ".join(str(p) for p in looked)
        + "\nPass download=True to fetch them, or download manually from:\n  "
        + "\n  ".join(urls)
        + "\nand point root= at the folder that holds them."
    )


@dataclass(frozen=True)
class _CifarSpec:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_bytes: int


_CIFAR = {
    "cifar10": _CifarSpec(
        "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        ("test_batch.bin",),
        1,
    ),
    "cifar100": _CifarSpec("cifar-100-binary", ("train.bin",), ("test.bin",), 2),
}


def _locate_archive_dir(
    name: str,
    root: str | os.PathLike[str] | None,
    download: bool,
    is_ready: Any,
    subfolders: tuple[str, ...],
) -> Path:
    """A folder for which ``is_ready(folder)`` holds: found, unpacked from an archive, or fetched."""
    remote = RESOURCES[name]["archive"]
    bases = _base_dirs(name, root)
    looked: list[Path] = []
    for b in bases:
        for d in (b, *(b / s for s in subfolders)):
            looked.append(d)
            if d.is_dir() and is_ready(d):
                return d
    archive: Path | None = None
    if root is not None and Path(root).is_file() and is_archive(root):
        archive = Path(root)
    for b in bases:
        looked.append(b / remote.filename)
        if archive is None and (b / remote.filename).is_file():
            archive = b / remote.filename
    cache = resolve_cache_dir(root if root is not None and Path(root).is_dir() else None)
    if archive is None:
        if not download:
            raise _not_found(name, looked, list(remote.urls))
        archive = fetch_file(remote, [], _download_dir(name, root), True, name)
    elif not cached_extraction_dir(archive, cache).is_dir():
        verify_checksum(archive, sha256=remote.sha256, md5=remote.md5)
    unpacked = extract_to_cache(archive, cache)
    for d in (unpacked, *(unpacked / s for s in subfolders)):
        if d.is_dir() and is_ready(d):
            return d
    raise DatasetNotFoundError(
        f"{name}: {archive} was unpacked to {unpacked} but the expected files are not there"
    )


def _read_names(path: Path, fallback: tuple[str, ...]) -> tuple[str, ...]:
    if path.is_file():
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        if len(names) == len(fallback):
            return names
    return fallback


def _cifar_split(
    name: str, split: str, root: Any, download: bool, label: str = "fine"
) -> TensorImageDataset:
    spec = _CIFAR[name]
    files = spec.train_files if split == "train" else spec.test_files
    folder = _locate_archive_dir(
        name, root, download, lambda d: all((d / f).is_file() for f in files), (spec.folder,)
    )
    xs, ys = [], []
    for f in files:
        x, labels = read_cifar_binary(folder / f, spec.label_bytes)
        xs.append(x)
        ys.append(labels)
    x_all, labels_all = np.concatenate(xs), np.concatenate(ys)
    if name == "cifar10":
        y, names = labels_all[:, 0], _read_names(folder / "batches.meta.txt", CIFAR10_CLASSES)
    else:
        if label not in ("fine", "coarse"):
            raise InputError(f"label must be 'fine' or 'coarse', got {label!r}")
        fine = label == "fine"
        y = labels_all[:, 1] if fine else labels_all[:, 0]
        names = (
            _read_names(folder / "fine_label_names.txt", CIFAR100_FINE_CLASSES)
            if fine
            else _read_names(folder / "coarse_label_names.txt", CIFAR100_COARSE_CLASSES)
        )
    if y.size and int(y.max()) >= len(names):
        raise InputError(f"{name}: label {int(y.max())} out of range for {len(names)} classes")
    return TensorImageDataset(
        torch.from_numpy(x_all), torch.from_numpy(y.astype(np.int64)), class_names=names
    )


def _find_idx(dirs: list[Path], remote: RemoteFile) -> Path | None:
    plain = remote.filename[:-3] if remote.filename.endswith(".gz") else remote.filename
    for d in dirs:
        for fname in (remote.filename, plain):
            if (d / fname).is_file():
                return d / fname
    return None


def _mnist_split(name: str, split: str, root: Any, download: bool) -> TensorImageDataset:
    extra = ("MNIST/raw", "MNIST") if name == "mnist" else ("FashionMNIST/raw", "fashion_mnist")
    dirs = _base_dirs(name, root, *extra)
    if name == "fashion-mnist":
        dirs.append(Path("/usr/share/datasets/fashion-mnist"))
    arrays = []
    for kind in ("images", "labels"):
        remote = RESOURCES[name][f"{split}-{kind}"]
        path = _find_idx(dirs, remote)
        if path is None:
            if not download:
                raise _not_found(name, [d / remote.filename for d in dirs], list(remote.urls))
            path = fetch_file(remote, [], _download_dir(name, root), True, name)
        arrays.append((path, read_idx(path)))
    (ipath, images), (lpath, labels) = arrays
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise InputError(
            f"{name}: {ipath} has shape {images.shape} and {lpath} has shape {labels.shape}; "
            "expected images [N, H, W] and labels [N]"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise InputError(f"{name}: {lpath} has labels outside 0..9")
    names = DIGIT_CLASSES if name == "mnist" else FASHION_MNIST_CLASSES
    x = torch.from_numpy(images.astype(np.uint8)[:, None])
    return TensorImageDataset(x, torch.from_numpy(labels.astype(np.int64)), class_names=names)


def _svhn_split(name: str, split: str, root: Any, download: bool) -> TensorImageDataset:
    remote = RESOURCES["svhn"][split]
    path = fetch_file(remote, _base_dirs("svhn", root), _download_dir("svhn", root), download, name)
    x, y = read_svhn_mat(path)
    return TensorImageDataset(torch.from_numpy(x), torch.from_numpy(y), class_names=DIGIT_CLASSES)


_LOADERS = {
    "cifar10": _cifar_split,
    "cifar100": _cifar_split,
    "mnist": _mnist_split,
    "fashion-mnist": _mnist_split,
    "svhn": _svhn_split,
}
_OOD_MODES = {"mnist": "pad", "fashion-mnist": "pad"}


def load_split(
    name: str,
    split: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    **kw: Any,
) -> TensorImageDataset:
    """One split (``"train"`` or ``"test"``) of a standard set, raw and in memory (uint8)."""
    if name not in _LOADERS:
        raise InputError(f"unknown standard dataset {name!r}; expected one of {sorted(_LOADERS)}")
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    return _LOADERS[name](name, split, root, download, **kw)


def _standard_bundle(
    name: str,
    root: Any = None,
    split_val: float = 0.1,
    seed: int = 0,
    download: bool = False,
    **kw: Any,
) -> DatasetBundle:
    train = load_split(name, "train", root, download, **kw)
    test = load_split(name, "test", root, download, **kw)
    names = train.class_names or ()
    return make_bundle(
        name, train, test, split_val, seed, len(names), names, _OOD_SUGGESTIONS[name]
    )


def _standard_ood(
    name: str,
    like: DatasetBundle,
    root: Any = None,
    download: bool = False,
    max_samples: int | None = None,
    seed: int = 0,
    mode: str | None = None,
    **kw: Any,
) -> ImageDataset:
    test = load_split(name, "test", root, download, **kw)
    return as_ood(test, like, mode or _OOD_MODES.get(name, "resize"))


for _name in _LOADERS:
    register_dataset(_name)(functools.partial(_standard_bundle, _name))
    register_ood_dataset(_name)(functools.partial(_standard_ood, _name))


# --------------------------------------------------------------------------- image-folder OOD
_IMAGE_OOD = {
    # name: (fit mode, preferred sub-folders inside a found/unpacked folder)
    "tinyimagenet": (
        "resize",
        ("Imagenet_resize", "tiny-imagenet-200/val/images", "tiny-imagenet-200"),
    ),
    "tinyimagenet-crop": ("crop", ("Imagenet/test", "Imagenet")),
    "lsun": ("resize", ("LSUN_resize",)),
    "lsun-crop": ("crop", ("LSUN/test", "LSUN")),
}


def _pick(folder: Path, subfolders: tuple[str, ...]) -> Path:
    for s in subfolders:
        if (folder / s).is_dir():
            return folder / s
    return folder


def _image_ood_folder(name: str, root: Any, download: bool) -> Path:
    _, subfolders = _IMAGE_OOD[name]
    if root is not None:
        r = Path(root).expanduser()
        if r.is_file() and is_archive(r):
            return _pick(extract_to_cache(r, default_cache_dir()), subfolders)
        if r.is_dir():
            for base in (r, r / name):
                for s in subfolders:
                    if (base / s).is_dir():
                        return base / s
            remote = RESOURCES[name]["archive"]
            if not (r / remote.filename).is_file() and not (r / name / remote.filename).is_file():
                if find_images(r):
                    return r
    return _pick(
        _locate_archive_dir(name, root, download, lambda d: bool(find_images(d)), subfolders),
        subfolders,
    )


def _image_ood(
    name: str,
    like: DatasetBundle,
    root: Any = None,
    download: bool = False,
    max_samples: int | None = None,
    seed: int = 0,
    mode: str | None = None,
    on_error: str = "raise",
) -> ImageDataset:
    folder = _image_ood_folder(name, root, download)
    logger.info("%s: reading images from %s", name, folder)
    return ood_files_dataset(folder, like, mode or _IMAGE_OOD[name][0], on_error=on_error)


for _name in _IMAGE_OOD:
    register_ood_dataset(_name)(functools.partial(_image_ood, _name))
