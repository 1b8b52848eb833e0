"""Datasets backed by image files on disk (decoded with Pillow, no torchvision).

* :class:`ImageFolderDataset`: the ImageFolder layout ``root/<class>/**/<image>``; class
  folders sorted alphabetically give the label order.
* :class:`ImageFilesDataset`: every image under a folder (flat or nested), label ``-1``.

Images are decoded lazily, converted to RGB or greyscale and brought to a fixed ``image_size``
with :func:`isomax.data.core.fit_image`. Undecodable files are handled by ``on_error``:

* ``"raise"`` (default): :class:`~isomax.data.errors.CorruptImageError` naming the file.
* ``"skip"``: a warning is logged once per file, its path is appended to ``.skipped``, and
  ``dataset[i]`` returns the next decodable sample instead (the length does not change, since
  decoding is lazy). :meth:`load_into_memory` and :func:`~isomax.data.core.to_tensors` drop such
  files altogether. (With a multi-process ``DataLoader`` each worker keeps its own ``.skipped``.)

For training at speed, :meth:`load_into_memory` decodes everything once with several threads
into a ``uint8`` :class:`~isomax.data.core.TensorImageDataset`.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from .core import (
    FIT_MODES,
    ImageDataset,
    TensorImageDataset,
    default_num_workers,
    fit_image,
    optional_module,
)
from .errors import CorruptImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFilesDataset",
    "ImageFolderDataset",
    "decode_image",
    "find_images",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)
ON_ERROR = ("raise", "skip")


def _special_kind(mode: int) -> str | None:
    """What a non-regular file is (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _open_regular(path: str | os.PathLike[str]) -> Any:
    """Open an image file for reading, refusing FIFOs, sockets and devices before reading them.

    The type is checked with ``stat`` before opening and again on the open descriptor (opened
    non-blocking, so even a FIFO swapped in between cannot hang the caller).
    """
    try:
        kind = _special_kind(os.stat(path).st_mode)
        if kind is None:
            nonblock = getattr(os, "O_NONBLOCK", 0)
            fh = open(path, "rb", opener=lambda p, flags: os.open(p, flags | nonblock))
            kind = _special_kind(os.fstat(fh.fileno()).st_mode)
            if kind is None:
                return fh
            fh.close()
    except OSError as exc:
        raise CorruptImageError(f"cannot decode image file {path}: {exc.strerror or exc}") from exc
    raise CorruptImageError(f"{path} is {kind}, not an image file; it was not read")


def _to_array(im: Any, channels: int, path: str | os.PathLike[str]) -> np.ndarray:
    """The pixels as uint8 (H, W[, 3]), scaling 16-bit and float images to 0..255.

    16-bit integer images (mode ``I;16*``, or ``I`` with values in 0..65535) are divided by 257;
    float images (mode ``F``) must hold values in [0, 1] and are multiplied by 255. Anything
    else a faithful 8-bit conversion cannot handle is refused.
    """
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(im).astype(np.float64)
        finite = np.isfinite(values).all()
        if mode == "F":
            if not finite or values.min() < 0 or values.max() > 1:
                raise CorruptImageError(
                    f"cannot decode image file {path}: a floating-point image must hold values "
                    f"in [0, 1], found {values.min():g} to {values.max():g}"
                )
            grey = values * 255.0
        else:
            if values.min() < 0 or values.max() > 65535:
                raise CorruptImageError(
                    f"cannot decode image file {path}: a 32-bit integer image must hold 16-bit "
                    f"values (0..65535), found {values.min():g} to {values.max():g}"
                )
            grey = values / 257.0
        arr = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2) if channels == 3 else arr
    im = im.convert("RGB" if channels == 3 else "L")
    return np.array(im, dtype=np.uint8, copy=True)


def decode_image(path: str | os.PathLike[str], channels: int = 3) -> Tensor:
    """Decode an image file to a ``uint8`` tensor ``[channels, H, W]`` (RGB or greyscale).

    16-bit and floating-point images are scaled to 0..255 (see :func:`_to_array`). FIFOs,
    sockets and devices are refused without being read. Raises :class:`CorruptImageError`
    naming the file when it cannot be decoded.
    """
    if channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, got {channels}")
    image_mod = optional_module("PIL.Image", "reading image files needs Pillow")
    fh = _open_regular(path)
    try:
        with fh, image_mod.open(fh) as im:
            arr = _to_array(im, channels, path)
    except CorruptImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, image_mod.DecompressionBombError) as exc:
        raise CorruptImageError(f"cannot decode image file {path}: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def find_images(root: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files under ``root``, sorted by relative path; hidden files/folders are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    found: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink cycle, or the same folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if not recursive:
            dirnames[:] = []
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath) / f)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    return found


def _size_tuple(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = tuple(int(s) for s in image_size)  # type: ignore[assignment]
    if len(size) != 2 or min(size) <= 0:
        raise InputError(f"image_size must be a positive int or (height, width), got {image_size}")
    return size  # type: ignore[return-value]


class _FileImageDataset(ImageDataset):
    """Shared machinery: lazy decoding, fitting, error policy, in-memory loading."""

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int],
        class_names: Sequence[str] | None = None,
        *,
        image_size: int | Sequence[int] = 32,
        channels: int = 3,
        mode: str = "resize",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        on_error: str = "raise",
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        """The options of both public classes (documented in :class:`ImageFolderDataset`)."""
        if on_error not in ON_ERROR:
            raise InputError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if mode not in FIT_MODES:
            raise InputError(f"mode must be one of {FIT_MODES}, got {mode!r}")
        if channels not in (1, 3):
            raise InputError(f"channels must be 1 or 3, got {channels}")
        size = _size_tuple(image_size)
        super().__init__((channels, *size), mean, std, transform)
        self.files = [Path(f) for f in files]
        self.labels = [int(y) for y in labels]
        self.mode = mode
        self.on_error = on_error
        self.class_names = tuple(class_names) if class_names is not None else None
        self.skipped: list[str] = []
        self._bad: set[int] = set()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def targets(self) -> Tensor:
        """Labels as an int64 tensor (no decoding needed)."""
        return torch.tensor(self.labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, index: int) -> Tensor:
        x = decode_image(self.files[index], self.shape[0])
        return fit_image(x, self.shape[1:], self.shape[0], self.mode)

    def _mark_bad(self, index: int, exc: CorruptImageError) -> None:
        with self._lock:
            if index in self._bad:
                return
            self._bad.add(index)
            self.skipped.append(str(self.files[index]))
        logger.warning("skipping undecodable image (%s)", exc)

    def _try(self, index: int) -> Tensor | None:
        if index in self._bad:
            return None
        try:
            return self._decode(index)
        except CorruptImageError as exc:
            if self.on_error == "raise":
                raise
            self._mark_bad(index, exc)
            return None

    def get_raw(self, index: int) -> tuple[Tensor, int]:
        n = len(self)
        for step in range(n):
            j = (index + step) % n
            x = self._try(j)
            if x is not None:
                return x, self.labels[j]
        raise CorruptImageError(f"none of the {n} image files under this dataset can be decoded")

    def raw_batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for i in indices:
            x = self._try(int(i))
            if x is not None:
                xs.append(x)
                ys.append(self.labels[int(i)])
        if not xs:
            return self._empty_batch()
        return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)

    def load_into_memory(self, num_workers: int | None = None) -> TensorImageDataset:
        """Decode every file once (``num_workers`` threads) into a ``uint8`` in-memory dataset.

        Keeps ``mean``, ``std``, ``transform`` and ``class_names``. With ``on_error="skip"``
        undecodable files are left out (and listed in ``.skipped``).
        """
        n = len(self)
        workers = default_num_workers() if num_workers is None else max(1, int(num_workers))
        out = torch.empty((n, *self.shape), dtype=torch.uint8)
        ok = torch.zeros(n, dtype=torch.bool)

        def work(chunk: range) -> None:
            for i in chunk:
                x = self._try(i)
                if x is not None:
                    out[i] = x
                    ok[i] = True

        step = max(1, min(512, -(-n // (workers * 4)))) if n else 1
        chunks = [range(i, min(i + step, n)) for i in range(0, n, step)]
        if workers == 1 or len(chunks) <= 1:
            for c in chunks:
                work(c)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(work, chunks))
        y = torch.tensor(self.labels, dtype=torch.int64)
        if not bool(ok.all()):
            out, y = out[ok], y[ok]
            logger.warning("left out %d undecodable image(s)", n - int(ok.sum()))
        return TensorImageDataset(out, y, self.mean, self.std, self.class_names, self.transform)


class ImageFolderDataset(_FileImageDataset):
    """Labelled images in the ImageFolder layout ``root/<class>/**/<image>``.

    Args:
        root: folder whose subfolders are the classes.
        classes: class folder names in label order; default: all non-hidden subfolders sorted
            alphabetically. Pass the training split's classes for a test split.
        **options: keyword options, shared with :class:`ImageFilesDataset`:

            * ``image_size``: output ``(H, W)`` (an int for square), default 32.
            * ``channels``: 3 (RGB, the default) or 1 (greyscale).
            * ``mode``: how images are brought to ``image_size``: ``"resize"`` (default),
              ``"crop"`` or ``"pad"``.
            * ``mean``, ``std``: normalisation statistics (default 0 and 1, i.e. plain [0, 1]
              scaling).
            * ``on_error``: ``"raise"`` (default) or ``"skip"`` for undecodable files (see the
              module docs).
            * ``transform``: optional callable on the normalised tensor.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, classes: Sequence[str] | None = None, **options: Any
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
        if classes is None:
            classes = sorted(
                d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
            )
            if not classes:
                if find_images(root, recursive=False):
                    raise InputError(
                        f"{root} holds images directly but no class subfolders: a labelled "
                        "image folder needs one subfolder per class, root/<class>/<image>, and "
                        f"at least 2 classes (if {root.name!r} is your only class, it is one "
                        "class too few; use ImageFilesDataset for unlabelled images)"
                    )
                raise InputError(
                    f"{root} has no class subfolders; expected the layout root/<class>/<image> "
                    "(use ImageFilesDataset for unlabelled images)"
                )
            if len(classes) == 1:
                raise InputError(
                    f"{root} has only one class folder, {classes[0]!r}: a classifier needs at "
                    "least 2 classes (root/<class>/<image>, one subfolder per class)"
                )
        files: list[Path] = []
        labels: list[int] = []
        for label, cls in enumerate(classes):
            cdir = root / cls
            class_files = find_images(cdir) if cdir.is_dir() else []
            if not class_files:
                logger.warning("class folder %s has no images", cdir)
            files.extend(class_files)
            labels.extend([label] * len(class_files))
        extra = sorted(
            d.name
            for d in root.iterdir()
            if d.is_dir() and not d.name.startswith(".") and d.name not in set(classes)
        )
        if extra:
            raise InputError(
                f"{root} has class folders {extra} that are not among the expected classes "
                f"{list(classes)}"
            )
        if not files:
            raise InputError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
        super().__init__(files, labels, classes, **options)
        self.root = root

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name to label."""
        return {c: i for i, c in enumerate(self.class_names or ())}


class ImageFilesDataset(_FileImageDataset):
    """Every image file under ``root`` (flat or nested), label ``-1`` (for OOD sets).

    ``options`` are those of :class:`ImageFolderDataset`; the order is the sorted relative path.
    """

    def __init__(self, root: str | os.PathLike[str], **options: Any) -> None:
        files = find_images(root)
        if not files:
            raise InputError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
        super().__init__(files, [-1] * len(files), **options)
        self.root = Path(root)
