"""isomax.metrics.roc_curve against scikit-learn, and the plots drawing it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from isomax import plots
from isomax.metrics import auroc, roc_curve


def _sklearn(ids: np.ndarray, ood: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.r_[np.ones(ids.size), np.zeros(ood.size)]
    return sk_roc_curve(labels, np.r_[ids, ood], drop_intermediate=False)


CASES = {
    "continuous": lambda rng: (rng.normal(1, 1, 300), rng.normal(0, 1, 200)),
    "ties": lambda rng: (rng.integers(0, 5, 120).astype(float), rng.integers(0, 5, 80) / 1.0),
    "separated": lambda rng: (rng.uniform(2, 3, 50), rng.uniform(0, 1, 40)),
    "reversed": lambda rng: (rng.uniform(0, 1, 50), rng.uniform(2, 3, 40)),
    "all-equal": lambda rng: (np.full(7, 0.5), np.full(3, 0.5)),
    "one-each": lambda rng: (np.array([0.2]), np.array([0.7])),
}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", list(CASES))
def test_roc_curve_matches_sklearn(case: str, seed: int) -> None:
    ids, ood = CASES[case](np.random.default_rng(seed))
    fpr, tpr, thresholds = roc_curve(ids, ood)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(thresholds) < 0)
    ref_fpr, ref_tpr, ref_thr = _sklearn(ids, ood)
    np.testing.assert_array_equal(fpr, ref_fpr)
    np.testing.assert_array_equal(tpr, ref_tpr)
    assert thresholds[0] == np.inf
    np.testing.assert_array_equal(thresholds[1:], ref_thr[1:])
    assert fpr.dtype == tpr.dtype == thresholds.dtype == np.float64
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(auroc(ids, ood), abs=1e-12)
    assert area == pytest.approx(
        roc_auc_score(np.r_[np.ones(ids.size), np.zeros(ood.size)], np.r_[ids, ood]), abs=1e-12
    )


def test_auroc_of_separated_sets() -> None:
    assert auroc(np.array([2.0, 3.0]), np.array([1.0, 0.0])) == 1.0
    assert auroc(np.array([0.0]), np.array([1.0])) == 0.0


def test_roc_curve_takes_tensors_and_integers() -> None:
    ids, ood = torch.tensor([3, 1, 2, 2]), torch.tensor([0, 2, 1])
    fpr, tpr, thresholds = roc_curve(ids, ood)
    ref_fpr, ref_tpr, _ = _sklearn(ids.numpy(), ood.numpy())
    np.testing.assert_array_equal(fpr, ref_fpr)
    np.testing.assert_array_equal(tpr, ref_tpr)
    np.testing.assert_array_equal(thresholds, [np.inf, 3, 2, 1, 0])


def test_roc_curve_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="id_scores must be finite"):
        roc_curve(np.array([0.1, np.nan]), np.array([0.2]))
    with pytest.raises(ValueError, match="ood_scores must not be empty"):
        roc_curve(np.array([0.1]), np.array([]))


def test_plots_draw_the_metrics_curve(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    pytest.importorskip("matplotlib")

    class Drawn(Exception):
        pass

    def spy(ids: np.ndarray, ood: np.ndarray) -> None:
        raise Drawn(ids.size, ood.size)  # stop here: the curve is what this test is about

    monkeypatch.setattr(plots, "roc_curve", spy)
    rng = np.random.default_rng(1)
    with pytest.raises(Drawn) as info:
        plots.plot_roc_curves(
            {"isomax": rng.normal(size=20)},
            {"isomax": {"gaussian": rng.normal(size=10)}},
            tmp_path / "roc.png",
        )
    assert info.value.args == (20, 10)
