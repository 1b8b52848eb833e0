"""Predictions for image files as CSV: one row per readable file, formulas quoted."""

from __future__ import annotations

import csv
import io

import pytest

from isomax.detector import OODDetector
from isomax.errors import InputError
from isomax.predictions import CSV_FIELDS, csv_cell, predict_files


def test_csv_cells_that_look_like_formulas_are_quoted() -> None:
    assert csv_cell("=cmd|calc!A1") == "'=cmd|calc!A1"
    assert csv_cell("+1") == "'+1" and csv_cell("@x") == "'@x" and csv_cell("-2") == "'-2"
    assert csv_cell("airplane") == "airplane"


def test_predict_files_rows_match_the_detector_and_count_skipped(
    tmp_path, detector_file, png_bytes
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(png_bytes(8))
    (folder / "broken.png").write_bytes(b"not an image")
    detector = OODDetector.load(detector_file, device="cpu")
    detector.metadata["class_names"] = ["=SUM(A1)", *[str(c) for c in range(1, 10)]]
    table = predict_files(detector, [folder], on_error="skip", batch_size=2)
    rows = list(csv.DictReader(io.StringIO(table.csv)))
    assert (table.images, table.skipped) == (3, 1) and len(rows) == 3
    assert tuple(rows[0]) == CSV_FIELDS
    assert table.ood == sum(r["is_ood"] == "True" for r in rows)
    for r in rows:
        assert 0.0 <= float(r["probability"]) <= 1.0
        assert not r["class_name"].startswith("=")  # quoted when it is class 0's name
    with pytest.raises(InputError, match="none of the 1 image files could be read"):
        predict_files(detector, [folder / "broken.png"])


def test_predict_files_refuses_a_detector_without_input_shape(detector_file) -> None:
    detector = OODDetector.load(detector_file, device="cpu")
    detector.metadata.pop("input_shape")
    with pytest.raises(InputError, match="DET does not record the input shape"):
        predict_files(detector, ["x.png"], source="DET")
