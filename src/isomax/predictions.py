"""Predictions for image files as a CSV table: class, probability, score and OOD flag per file.

Class names come from the detector file, which anyone may have written: a cell a spreadsheet
would run as a formula is quoted (:func:`csv_cell`).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError

__all__ = ["CSV_FIELDS", "FilePredictions", "csv_cell", "predict_files"]

CSV_FIELDS = ("path", "class", "class_name", "probability", "score", "is_ood")


def csv_cell(text: str) -> str:
    """A text cell that spreadsheets will not run as a formula (=, +, -, @ lead: quote it)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@dataclass
class FilePredictions:
    """The CSV text (header and one row per readable image) and what it counts."""

    csv: str
    images: int
    ood: int
    skipped: int


def predict_files(
    detector: Any,
    paths: Sequence[str | os.PathLike[str]],
    on_error: str = "skip",
    batch_size: int = 256,
    source: str = "the detector",
) -> FilePredictions:
    """Classify the image files (folders searched recursively) with a calibrated
    :class:`~isomax.OODDetector`, one batch of images in memory at a time.

    ``on_error``: ``"skip"`` leaves out unreadable files (counted), ``"raise"`` fails at the
    first one. Raises :class:`InputError` when no file could be read or the detector does not
    record its input shape (``source`` names the detector in that message).
    """
    from .data.inputs import iter_image_batches

    meta = detector.metadata
    if "input_shape" not in meta:
        raise InputError(
            f"{source} does not record the input shape; make it with `isomax calibrate`"
        )
    names = meta.get("class_names") or []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS))
    writer.writeheader()
    n_images = n_ood = n_skipped = 0
    batches = iter_image_batches(
        paths,
        meta["input_shape"],
        meta["mean"],
        meta["std"],
        on_error=on_error,
        batch_size=batch_size,
    )
    for x, found, skipped in batches:
        n_skipped += len(skipped)
        if not found:
            continue
        pred = detector.predict(x)
        for i, path in enumerate(found):
            c = int(pred.classes[i])
            n_ood += bool(pred.is_ood[i])
            writer.writerow(
                {
                    "path": path,
                    "class": c,
                    "class_name": csv_cell(names[c] if c < len(names) else str(c)),
                    "probability": f"{float(pred.probs[i, c]):.6f}",
                    "score": f"{float(pred.scores[i]):.6g}",
                    "is_ood": bool(pred.is_ood[i]),
                }
            )
        n_images += len(found)
    if n_images == 0:
        raise InputError(f"none of the {n_skipped} image files could be read")
    return FilePredictions(buf.getvalue(), n_images, n_ood, n_skipped)
