"""OpenOOD's AUPR_IN / AUPR_OUT (trapezoidal areas) in ood_metrics and the OpenOOD CSV (issue 12.3).

OpenOOD v1.5 (and pytorch-ood) report ``auc(recall, precision)`` of the precision-recall curve,
a trapezoidal area; isomax's own ``aupr_in`` / ``aupr_out`` stay average precision. The formula
is written out below from its definition, independently of isomax's sweep.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from isomax.engine.evaluation import Evaluation
from isomax.interop import to_openood_csv
from isomax.metrics import ood_metrics


def trapezoid_aupr(positive: list[float], negative: list[float]) -> float:
    """Area under the precision-recall curve by trapezoids, positives scoring higher.

    Operating points: one per distinct score t (descending), predicting positive when
    score >= t, plus the curve's start (recall 0, precision 1).
    """
    points = [(0.0, 1.0)]
    for t in sorted(set(positive) | set(negative), reverse=True):
        tp = sum(1 for s in positive if s >= t)
        fp = sum(1 for s in negative if s >= t)
        points.append((tp / len(positive), tp / (tp + fp)))
    area = 0.0
    for (r0, p0), (r1, p1) in itertools.pairwise(points):
        area += (r1 - r0) * (p0 + p1) / 2
    return area


def average_precision(positive: list[float], negative: list[float]) -> float:
    """Step-wise average precision: sum over thresholds of (R_k - R_{k-1}) P_k."""
    area, r_prev = 0.0, 0.0
    for t in sorted(set(positive) | set(negative), reverse=True):
        tp = sum(1 for s in positive if s >= t)
        fp = sum(1 for s in negative if s >= t)
        area += (tp / len(positive) - r_prev) * tp / (tp + fp)
        r_prev = tp / len(positive)
    return area


def _openood(ids: np.ndarray, ood: np.ndarray) -> tuple[float, float]:
    ids_l, ood_l = [float(v) for v in ids], [float(v) for v in ood]
    return trapezoid_aupr(ids_l, ood_l), trapezoid_aupr([-v for v in ood_l], [-v for v in ids_l])


def test_hand_computed_case() -> None:
    # ID {3, 2}, OOD {2, 1}. ID positive, thresholds 3, 2, 1: (R, P) = (1/2, 1), (1, 2/3),
    # (1, 1/2): area 1/2 * (1 + 1) / 2 + 1/2 * (1 + 2/3) / 2 = 11/12; AP = 1/2 + 1/3 = 5/6.
    # OOD positive on -score, thresholds -1, -2, -3: (R, P) = (1/2, 1), (1, 2/3), (1, 1/2).
    m = ood_metrics(np.array([3.0, 2.0]), np.array([2.0, 1.0]))
    assert m["aupr_in_trapezoid"] == pytest.approx(11 / 12, abs=1e-15)
    assert m["aupr_out_trapezoid"] == pytest.approx(11 / 12, abs=1e-15)
    assert m["aupr_in"] == pytest.approx(5 / 6, abs=1e-15)
    assert m["aupr_out"] == pytest.approx(5 / 6, abs=1e-15)


@pytest.mark.parametrize("kind", ["continuous", "tied", "float32", "ood_on_top"])
def test_trapezoids_against_the_formula(kind: str) -> None:
    rng = np.random.default_rng(3)
    ids, ood = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 200)
    if kind == "tied":
        ids, ood = np.round(ids), np.round(ood)
    elif kind == "float32":
        ids, ood = ids.astype(np.float32), ood.astype(np.float32)
    elif kind == "ood_on_top":
        ood = np.concatenate([ood, [9.0, 9.0, 10.0]])
    m = ood_metrics(ids, ood)
    tin, tout = _openood(ids, ood)
    assert m["aupr_in_trapezoid"] == pytest.approx(tin, abs=1e-12)
    assert m["aupr_out_trapezoid"] == pytest.approx(tout, abs=1e-12)
    ids_l, ood_l = ids.tolist(), ood.tolist()
    assert m["aupr_in"] == pytest.approx(average_precision(ids_l, ood_l), abs=1e-12)


def test_trapezoids_equal_openoods_sklearn_call() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    ids, ood = np.round(rng.normal(1.0, 1.0, 2000), 1), np.round(rng.normal(0.0, 1.0, 1500), 1)
    conf = np.concatenate([ids, ood])
    is_ood = np.concatenate([np.zeros(len(ids)), np.ones(len(ood))])
    # OpenOOD v1.5's evaluator: precision_recall_curve, then auc(recall, precision)
    p_in, r_in, _ = metrics.precision_recall_curve(1 - is_ood, conf)
    p_out, r_out, _ = metrics.precision_recall_curve(is_ood, -conf)
    m = ood_metrics(ids, ood)
    assert m["aupr_in_trapezoid"] == pytest.approx(metrics.auc(r_in, p_in), abs=1e-12)
    assert m["aupr_out_trapezoid"] == pytest.approx(metrics.auc(r_out, p_out), abs=1e-12)
    # with ties the two definitions are points apart: the CSV must not hold average precision
    assert abs(m["aupr_in"] - m["aupr_in_trapezoid"]) > 1e-3


def test_csv_holds_openoods_aupr(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    ids = np.round(rng.normal(1.0, 1.0, 400), 0)
    sets = {"near": np.round(rng.normal(0.5, 1.0, 300), 0), "far": rng.normal(-2, 1.0, 300)}
    ood = {name: {"mds": ood_metrics(ids, values)} for name, values in sets.items()}
    evaluation = Evaluation({"accuracy": 0.9}, ood, {})
    path = to_openood_csv(evaluation, tmp_path / "ood.csv", "mds", near=["near"])
    rows = {r["dataset"]: r for r in csv.DictReader(path.read_text().splitlines())}
    for name, values in sets.items():
        tin, tout = _openood(ids, values)
        assert rows[name]["AUPR_IN"] == f"{100 * tin:.2f}"
        assert rows[name]["AUPR_OUT"] == f"{100 * tout:.2f}"
    m = ood["near"]["mds"]
    assert rows["near"]["AUPR_IN"] != f"{100 * m['aupr_in']:.2f}"  # ties: AP differs


def test_csv_refuses_an_evaluation_without_the_trapezoids(tmp_path: Path) -> None:
    m = ood_metrics(np.array([2.0, 3.0]), np.array([1.0, 2.5]))
    del m["aupr_in_trapezoid"], m["aupr_out_trapezoid"]
    evaluation = {"id": {"accuracy": 0.5}, "ood": {"x": {"mds": m}}}
    with pytest.raises(ValueError, match="lacks aupr_in_trapezoid, aupr_out_trapezoid"):
        to_openood_csv(evaluation, tmp_path / "ood.csv", "mds")
    assert not (tmp_path / "ood.csv").exists()
