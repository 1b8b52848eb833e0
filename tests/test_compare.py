"""compare: which finished runs it reuses, where it refuses to run, which losses get FPR."""

from __future__ import annotations

import pytest

from isomax.comparison import compare


def test_compare_refuses_to_reuse_runs_made_with_other_settings(tmp_path):
    kw = dict(
        dataset="digits",
        model="digits_mlp",
        losses=["isomax"],
        ood=["gaussian"],
        output_dir=tmp_path / "c",
        figures=False,
    )
    compare(**kw, overrides={"epochs": 1, "device": "cpu"})
    with pytest.raises(ValueError, match=r"epochs=1\b.*\b2\b"):
        compare(**kw, overrides={"epochs": 2, "device": "cpu"})
    # an evaluation-only change (max_ood_samples) re-evaluates without retraining
    again = compare(**kw, overrides={"epochs": 1, "device": "cpu"}, max_ood_samples=50)
    assert again.runs[0]["max_ood_samples"] == 50


def test_compare_refuses_to_run_under_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="one process"):
        compare(dataset="digits", losses=["isomax"], ood=["gaussian"])


def test_compare_applies_fpr_to_dismax_only(tmp_path):
    result = compare(
        dataset="digits",
        model="digits_mlp",
        losses=["softmax", "dismax"],
        ood=["gaussian"],
        output_dir=tmp_path / "f",
        figures=False,
        overrides={"epochs": 1, "device": "cpu", "fpr_alpha": 0.5},
    )
    alphas = {r["loss"]: r["config"]["fpr_alpha"] for r in result.runs}
    assert alphas == {"softmax": None, "dismax": 0.5}
