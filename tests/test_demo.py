"""The demo: data shipped with the package, at least three seeds, and a report that says in
words which method won. The slow test re-measures the claim the demo makes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import isomax
from isomax import cli
from isomax.cli.comparison import DEMO
from isomax.data import get_dataset, get_ood_dataset
from isomax.data.embedded import FASHION_FILE

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

FILES = Path(isomax.__file__).parent / "data" / "files"


def test_demo_design_uses_shipped_data_four_losses_and_three_seeds():
    assert DEMO["dataset"] == "fashion-mnist-small"
    assert DEMO["seeds"] >= 3
    assert "digits" in DEMO["ood"]


def test_shipped_subset_is_small_balanced_licensed_and_packaged():
    path = FILES / FASHION_FILE
    assert path.stat().st_size < 1_000_000
    with np.load(path, allow_pickle=False) as d:
        assert d["x_train"].shape == (2000, 1, 14, 14) and d["x_train"].dtype == np.uint8
        assert d["x_test"].shape == (1000, 1, 14, 14)
        assert np.bincount(d["y_train"]).tolist() == [200] * 10
        assert np.bincount(d["y_test"]).tolist() == [100] * 10
        assert list(d["class_names"])[:2] == ["T-shirt/top", "Trouser"]
    licence = (FILES / "LICENSE-fashion-mnist.txt").read_text()
    assert "MIT License" in licence and "Zalando SE" in licence
    pyproject = tomllib.loads((Path(isomax.__file__).parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["isomax.data"]
    assert "files/*.npz" in patterns and "files/*.txt" in patterns


def test_bundle_splits_and_the_digits_ood_set():
    a, b = get_dataset("fashion-mnist-small", seed=0), get_dataset("fashion-mnist-small", seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == (1800, 200, 1000)
    assert a.input_shape == (1, 14, 14) and a.num_classes == 10
    xa, ya = a.raw("test")
    xb, yb = b.raw("test")
    assert (xa == xb).all() and (ya == yb).all()  # the test split never depends on the seed
    digits = get_ood_dataset("digits", like=a)
    assert digits.shape == (1, 14, 14) and len(digits) == 539


@pytest.mark.slow
def test_demo_prints_the_table_and_the_verdict(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(DEMO, "epochs", 1)
    monkeypatch.setitem(DEMO, "seeds", 2)
    monkeypatch.setitem(DEMO, "ood", ["digits", "gaussian"])
    assert cli.main(["demo", "--output-dir", str(tmp_path), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "Fashion-MNIST" in out and "All values in %" in out
    assert "Which method won" in out and "- Mean over the OOD sets: TNR@TPR95:" in out
    assert "s CPU" in out and "torch thread" in out
    text = (tmp_path / "report.md").read_text()
    assert "## Which method won" in text and "OOD set `digits`" in text


@pytest.mark.slow
def test_isomax_is_ahead_of_softmax_on_the_demo_data(tmp_path):
    """The demo's claim, measured again: over 3 seeds IsoMax (ES) rejects far more of the
    handwritten digits than SoftMax (MPS) at TPR 95%, by more than the spread over seeds."""
    from isomax.comparison import compare

    result = compare(
        dataset=DEMO["dataset"],
        model=DEMO["model"],
        losses=["softmax", "isomax"],
        seeds=3,
        ood=["digits"],
        output_dir=tmp_path,
        overrides={"epochs": DEMO["epochs"], "device": "cpu"},
        figures=False,
    )
    ood = result.aggregate["ood"]
    soft = ood["softmax"]["mps"]["digits"]["tnr_at_tpr95"]
    iso = ood["isomax"]["es"]["digits"]["tnr_at_tpr95"]
    assert iso[0] - soft[0] > iso[1] + soft[1]
