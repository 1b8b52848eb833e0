"""A validation split too small for a stable threshold is named in a warning."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from isomax.engine import TrainConfig
from isomax.engine.trainer import MIN_VAL_IMAGES, load_bundle


def _folder(root, per_class: int):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / cls / f"{i:03d}.png")
    return root


def test_tiny_validation_split_warns_with_its_size(tmp_path, caplog):
    data = _folder(tmp_path / "imgs", per_class=20)
    cfg = TrainConfig(dataset=f"folder:{data}", data_root=str(tmp_path / "c"), val_split=0.1)
    with caplog.at_level(logging.WARNING, logger="isomax.engine.trainer"):
        bundle = load_bundle(cfg)
    n = len(bundle.val)
    assert 0 < n < MIN_VAL_IMAGES
    text = caplog.text
    assert f"holds only {n} images" in text and "--val-split" in text


def test_enough_validation_images_no_warning(tmp_path, caplog):
    data = _folder(tmp_path / "imgs", per_class=160)
    cfg = TrainConfig(dataset=f"folder:{data}", data_root=str(tmp_path / "c"), val_split=0.5)
    with caplog.at_level(logging.WARNING, logger="isomax.engine.trainer"):
        bundle = load_bundle(cfg)
    assert len(bundle.val) >= MIN_VAL_IMAGES
    assert "validation split holds only" not in caplog.text
