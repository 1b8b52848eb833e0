"""Found by a new user's review of a fresh clone (2026-12-02): detect's output inside an input
folder, a temperature fit that runs to its bound, NaN means (CSV formulas: test_predictions.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from isomax.cli import main
from isomax.detector import OODDetector
from isomax.engine.config import normalization


def test_detect_refuses_an_output_that_is_an_image_inside_an_input_folder(
    tmp_path, detector_file, capsys
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    img = folder / "noise.png"
    Image.fromarray(np.zeros((8, 8), dtype="uint8")).save(img)
    before = img.read_bytes()
    code = main(["detect", str(detector_file), str(folder), "--output", str(img)])
    assert code == 2 and "would overwrite it" in capsys.readouterr().err
    assert img.read_bytes() == before
    # a new file in the folder is fine
    assert main(["detect", str(detector_file), str(folder), "--output", str(folder / "p.csv")]) == 0


def test_a_temperature_fit_at_its_bound_keeps_the_temperature(caplog) -> None:
    """Perfectly classified validation data: NLL wants T -> 0, which would tie every score."""
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[5.0, 0.0], [0.0, 5.0]]))
        model.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0], [1.5, 0.1], [0.1, 1.5]])
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    with caplog.at_level(logging.WARNING, logger="isomax.detector"):
        det = OODDetector(model, score="mps").fit([(x, y)], calibrate="nll")
    assert det.temperature == pytest.approx(1.0)
    assert "ran to the bound" in caplog.text
    scores = det.predict(x).scores
    assert len(torch.unique(scores)) > 1  # not collapsed to one tied value


@pytest.mark.parametrize("spec", ["nan,0,0/1,1,1", "inf,0,0/1,1,1", "0,0,0/1,nan,1"])
def test_normalization_values_must_be_finite(spec: str) -> None:
    with pytest.raises(ValueError, match="finite values"):
        normalization(spec, 3)
