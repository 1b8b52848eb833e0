"""Images of another size than the model's input are resized, and one warning says how many."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from isomax.data.inputs import load_images


def _png(path, h, w):
    Image.fromarray(np.full((h, w, 3), 120, dtype=np.uint8)).save(path)


def test_resized_images_are_counted_in_one_warning(tmp_path, caplog):
    _png(tmp_path / "a.png", 8, 8)
    _png(tmp_path / "b.png", 20, 10)
    _png(tmp_path / "c.png", 20, 10)
    with caplog.at_level(logging.WARNING, logger="isomax.data.inputs"):
        x, kept, skipped = load_images([tmp_path], (3, 8, 8), (0.5,) * 3, (0.25,) * 3, batch_size=2)
    assert x.shape == (3, 3, 8, 8) and len(kept) == 3 and not skipped
    lines = [r.getMessage() for r in caplog.records if "resized" in r.getMessage()]
    assert lines == ["2 of 3 images were resized to the model's input size 8x8 (2 of 20x10)"]


def test_images_of_the_input_size_are_not_reported(tmp_path, caplog):
    _png(tmp_path / "a.png", 8, 8)
    with caplog.at_level(logging.WARNING, logger="isomax.data.inputs"):
        load_images([tmp_path], (3, 8, 8), (0.5,) * 3, (0.25,) * 3)
    assert "resized" not in caplog.text
