"""Image files given on the command line, brought to a model's input shape and normalisation."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from .core import fit_image, normalize
from .errors import CorruptImageError
from .images import IMAGE_EXTENSIONS, decode_image, find_images

__all__ = ["load_images"]

log = logging.getLogger(__name__)


def load_images(
    paths: Sequence[str | os.PathLike[str]],
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    on_error: str = "skip",
) -> tuple[Tensor, list[str], list[str]]:
    """Decode image files (and the images inside folders, recursively) into one model batch.

    Every image is converted to the channel count of ``input_shape`` (C, H, W), resized to
    (H, W) and normalised with ``mean`` / ``std``.

    Args:
        paths: image files or folders.
        on_error: ``"skip"`` leaves unreadable images out (they are returned and logged) or
            ``"raise"`` stops with :class:`CorruptImageError` naming the file.

    Returns:
        (images (N, C, H, W) float32, the N paths in order, the skipped paths).
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    channels, h, w = (int(v) for v in input_shape)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(find_images(p))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no image file or folder at {p}")
    if not files:
        raise ValueError(
            f"no images found in {', '.join(map(str, paths))} "
            f"(looked for files ending in {', '.join(IMAGE_EXTENSIONS)})"
        )
    images, kept, skipped = [], [], []
    for f in files:
        try:
            raw = decode_image(f, channels=3 if channels == 3 else 1)
        except CorruptImageError:
            if on_error == "raise":
                raise
            log.warning("skipping unreadable image %s", f)
            skipped.append(str(f))
            continue
        images.append(normalize(fit_image(raw, (h, w), channels), mean, std))
        kept.append(str(f))
    if not images:
        raise ValueError(f"none of the {len(files)} image files could be read")
    return torch.stack(images), kept, skipped
