"""Training on an image folder with a corrupt file: fatal by default, skipped and counted on request."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from isomax.cli import main


def _folder(root):
    rng = np.random.default_rng(0)
    for cls, shade in (("cats", 40), ("dogs", 200)):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            img = np.clip(rng.normal(shade, 20, (12, 12, 3)), 0, 255).astype("uint8")
            Image.fromarray(img).save(root / cls / f"{i:02d}.png")
    (root / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def test_corrupt_image_is_fatal_by_default_and_skipped_with_a_count(tmp_path, capsys, caplog):
    data = _folder(tmp_path / "imgs")
    args = [
        "train",
        "--dataset",
        f"folder:{data}",
        "--model",
        "digits_mlp",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "-q",
        "--data-root",
        str(tmp_path / "cache"),
    ]
    assert main([*args, "--output-dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and len(err.strip().splitlines()) == 1
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--on-error", "skip", "--output-dir", str(tmp_path / "b")]) == 0
    assert "1 unreadable images were skipped" in caplog.text
    assert (tmp_path / "b" / "checkpoint.safetensors").exists()
