"""Image files given on the command line, brought to a model's input shape and normalisation."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError
from .core import fit_image, normalize
from .errors import CorruptImageError
from .images import IMAGE_EXTENSIONS, decode_image, find_images

__all__ = ["image_files", "iter_image_batches", "load_images"]

log = logging.getLogger(__name__)


def image_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The image files named in ``paths`` (files, or folders searched recursively), in order."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(find_images(p))
        elif p.exists():
            files.append(p)  # FIFOs, sockets and devices are refused by decode_image unread
        else:
            raise FileNotFoundError(f"no image file or folder at {p}")
    if not files:
        raise InputError(
            f"no images found in {', '.join(map(str, paths))} "
            f"(looked for files ending in {', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def iter_image_batches(
    paths: Sequence[str | os.PathLike[str]],
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    on_error: str = "skip",
    batch_size: int = 256,
) -> Iterator[tuple[Tensor, list[str], list[str]]]:
    """Decode image files in batches of ``batch_size`` files: one batch in memory at a time.

    Every image is converted to the channel count of ``input_shape`` (C, H, W), resized to
    (H, W) and normalised with ``mean`` / ``std``.

    Args:
        paths: image files or folders.
        on_error: ``"skip"`` leaves unreadable images out (they are returned and logged) or
            ``"raise"`` stops with :class:`CorruptImageError` naming the file.

    Yields:
        (images (n, C, H, W) float32 — possibly n = 0, the n paths, the skipped paths).
    """
    if on_error not in ("skip", "raise"):
        raise InputError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    channels, h, w = (int(v) for v in input_shape)
    files = image_files(paths)
    resized: dict[tuple[int, int], int] = {}
    for start in range(0, len(files), batch_size):
        images, kept, skipped = [], [], []
        for f in files[start : start + batch_size]:
            try:
                raw = decode_image(f, channels=3 if channels == 3 else 1)
            except CorruptImageError:
                if on_error == "raise":
                    raise
                log.warning("skipping unreadable image %s", f)
                skipped.append(str(f))
                continue
            size = (int(raw.shape[-2]), int(raw.shape[-1]))
            if size != (h, w):
                resized[size] = resized.get(size, 0) + 1
            images.append(normalize(fit_image(raw, (h, w), channels), mean, std))
            kept.append(str(f))
        x = torch.stack(images) if images else torch.empty(0, channels, h, w)
        yield x, kept, skipped
    if resized:
        sizes = ", ".join(f"{n} of {a}x{b}" for (a, b), n in sorted(resized.items()))
        log.warning(
            "%d of %d images were resized to the model's input size %dx%d (%s)",
            sum(resized.values()),
            len(files),
            h,
            w,
            sizes,
        )


def load_images(
    paths: Sequence[str | os.PathLike[str]],
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    **options: Any,
) -> tuple[Tensor, list[str], list[str]]:
    """All images of ``paths`` at once; ``options`` (``on_error``) as for
    :func:`iter_image_batches`.

    Returns:
        (images (N, C, H, W) float32, the N paths in order, the skipped paths).
    """
    parts = list(iter_image_batches(paths, input_shape, mean, std, **options))
    kept = [p for part in parts for p in part[1]]
    skipped = [p for part in parts for p in part[2]]
    if not kept:
        raise InputError(f"none of the {len(skipped)} image files could be read")
    return torch.cat([part[0] for part in parts]), kept, skipped
