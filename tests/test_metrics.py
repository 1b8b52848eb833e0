"""Tests for isomax.metrics: agreement with scikit-learn, hand-computed cases, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from isomax import metrics
from isomax.metrics import (
    NLL_EPS,
    accuracy,
    aupr_in,
    aupr_out,
    auroc,
    brier,
    detection_accuracy,
    expected_calibration_error,
    fpr_at_tpr,
    maximum_calibration_error,
    nll,
    ood_metrics,
    reliability_diagram,
    tnr_at_tpr,
)

KEYS95 = [
    "auroc",
    "aupr_in",
    "aupr_out",
    "tnr_at_tpr95",
    "fpr_at_tpr95",
    "detection_accuracy",
    "aupr_in_trapezoid",
    "aupr_out_trapezoid",
]


# ------------------------------------------------------------------------------------------
# scikit-learn references
# ------------------------------------------------------------------------------------------


def _labelled(ids: np.ndarray, ood: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.r_[np.ones(ids.size), np.zeros(ood.size)]
    return y, np.r_[ids, ood].astype(np.float64)  # float32 -> float64 is exact: ties survive


def reference(ids: np.ndarray, ood: np.ndarray, tpr: float) -> dict[str, float]:
    """Every metric from scikit-learn, no code shared with the implementation.

    roc_curve(drop_intermediate=False) yields one point per distinct score, from the highest
    threshold down (plus the origin), with "accepted = score >= threshold". The first point whose
    TPR reaches the target is the highest threshold accepting at least ceil(tpr * n_id) ID scores,
    which is exactly the k-th largest ID score: that is the TNR@TPR rule (TNR = 1 - FPR there).
    For the OpenOOD rule the same is done with OOD labelled 1 and the scores negated: accepted =
    -score >= -t, i.e. flagged = score <= t, and the first point reaching the target is the k-th
    smallest OOD score. The 1e-12 slack only absorbs rounding in sklearn's tps / n division; the
    test rates (0.5, 0.9, 0.95, 1) never put a real count/n within 1e-12 of the target.
    """
    y, s = _labelled(ids, ood)
    fpr_id, tpr_id, _ = roc_curve(y, s, drop_intermediate=False)
    fpr_ood, tpr_ood, _ = roc_curve(1 - y, -s, drop_intermediate=False)
    j_id = int(np.argmax(tpr_id >= tpr - 1e-12))
    j_ood = int(np.argmax(tpr_ood >= tpr - 1e-12))
    tag = metrics._rate_tag(tpr)
    return {
        "auroc": roc_auc_score(y, s),
        "aupr_in": average_precision_score(y, s),
        "aupr_out": average_precision_score(1 - y, -s),
        f"tnr_at_tpr{tag}": 1.0 - fpr_id[j_id],
        f"fpr_at_tpr{tag}": fpr_ood[j_ood],
        # roc_curve includes the reject-all (0, 0) and accept-all (1, 1) points.
        "detection_accuracy": 0.5 * (1.0 + np.max(tpr_id - fpr_id)),
        # OpenOOD v1.5's AUPRs: trapezoids under precision_recall_curve
        "aupr_in_trapezoid": auc(*precision_recall_curve(y, s)[1::-1]),
        "aupr_out_trapezoid": auc(*precision_recall_curve(1 - y, -s)[1::-1]),
    }


def _dataset(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.normal(1.0, 1.0, 500), rng.normal(0.0, 1.0, 400)
    if kind == "ties":  # integers in a small range: most scores tied
        return rng.integers(0, 6, 300).astype(float), rng.integers(-2, 4, 250).astype(float)
    if kind == "tiny":
        return rng.normal(size=1), rng.normal(size=1)
    if kind == "lopsided":
        return rng.normal(0.5, 1.0, 1000), rng.normal(0.0, 1.0, 3)
    if kind == "lopsided_ood":
        return rng.normal(0.5, 1.0, 3), rng.normal(0.0, 1.0, 1000)
    raise AssertionError(kind)


def _convert(x: np.ndarray, backend: str, dtype: str) -> np.ndarray | torch.Tensor:
    arr = x.astype(dtype)
    return torch.from_numpy(arr) if backend == "torch" else arr


DATASETS = ["random", "ties", "tiny", "lopsided", "lopsided_ood"]


@pytest.mark.parametrize("kind", DATASETS)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tpr", [0.95, 0.9, 0.5, 1.0])
def test_matches_sklearn(kind: str, backend: str, dtype: str, tpr: float) -> None:
    ids, ood = _dataset(kind, seed=len(kind))
    ids, ood = ids.astype(dtype), ood.astype(dtype)  # the reference sees the rounded values
    got = ood_metrics(_convert(ids, backend, dtype), _convert(ood, backend, dtype), tpr=tpr)
    ref = reference(ids, ood, tpr)
    assert list(got) == list(ref)
    for key, value in got.items():
        assert isinstance(value, float), key
        assert 0.0 <= value <= 1.0, key
        assert value == pytest.approx(ref[key], abs=1e-12), key


@pytest.mark.parametrize("kind", DATASETS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int16", "uint8", "float16"])
def test_single_metric_functions_match_ood_metrics(kind: str, dtype: str) -> None:
    ids, ood = _dataset(kind, seed=7)
    if np.dtype(dtype).kind in "iu":
        ids, ood = np.abs(np.round(ids * 3)), np.abs(np.round(ood * 3))
    ids, ood = ids.astype(dtype), ood.astype(dtype)
    for tpr in (0.95, 0.8, 1.0, 1e-9):
        tag = metrics._rate_tag(tpr)
        got = ood_metrics(ids, ood, tpr=tpr)
        ref = reference(ids, ood, tpr)
        assert got == pytest.approx(ref, abs=1e-12)
        # the O(n) partition path and the sort path agree exactly
        assert tnr_at_tpr(ids, ood, tpr=tpr) == got[f"tnr_at_tpr{tag}"]
        assert fpr_at_tpr(ids, ood, tpr=tpr) == got[f"fpr_at_tpr{tag}"]
    assert auroc(ids, ood) == got["auroc"]
    assert aupr_in(ids, ood) == got["aupr_in"]
    assert aupr_out(ids, ood) == got["aupr_out"]
    assert detection_accuracy(ids, ood) == got["detection_accuracy"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 64])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunked_sweep_handles_ties_across_chunk_boundaries(
    monkeypatch: pytest.MonkeyPatch, chunk: int, dtype: str
) -> None:
    ids, ood = _dataset("ties", seed=3)
    ids, ood = ids.astype(dtype), ood.astype(dtype)
    expected = ood_metrics(ids, ood, tpr=0.9)
    monkeypatch.setattr(metrics, "_CHUNK", chunk)
    assert ood_metrics(ids, ood, tpr=0.9) == pytest.approx(expected, abs=1e-12)
    assert ood_metrics(ids, ood, tpr=0.9) == pytest.approx(reference(ids, ood, 0.9), abs=1e-12)


@pytest.mark.parametrize("kind", DATASETS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_packed_and_argsort_paths_agree(
    monkeypatch: pytest.MonkeyPatch, kind: str, dtype: str
) -> None:
    ids, ood = _dataset(kind, seed=11)
    ids, ood = (ids * 4).astype(dtype), (ood * 4).astype(dtype)
    packed = ood_metrics(ids, ood)
    monkeypatch.setattr(metrics, "_fits_32_bits", lambda x: False)
    assert ood_metrics(ids, ood) == pytest.approx(packed, abs=1e-12)
    assert packed == pytest.approx(reference(ids, ood, 0.95), abs=1e-12)


def test_sort_path_selection() -> None:
    f32 = np.array([0.1, -2.5, 3e38], dtype=np.float32)
    assert metrics._fits_32_bits(f32.astype(np.float64))  # float32 values upcast: exact
    assert not metrics._fits_32_bits(np.array([0.1, 0.2]))  # genuine float64
    assert not metrics._fits_32_bits(np.array([1e300]))  # would overflow float32
    assert metrics._fits_32_bits(np.array([-(2**31), 2**31 - 1], dtype=np.int64))
    assert not metrics._fits_32_bits(np.array([2**31], dtype=np.int64))
    assert not metrics._fits_32_bits(np.array([2**32], dtype=np.uint64))
    big = np.array([2**40, -(2**40), 5], dtype=np.int64)  # argsort path
    small = np.array([2**40 - 1, 0], dtype=np.int64)
    assert ood_metrics(big, small) == pytest.approx(reference(big, small, 0.95), abs=1e-12)
    # float64 holding float32 values gives exactly the float32 result
    ids, ood = _dataset("random", seed=5)
    ids32, ood32 = ids.astype(np.float32), ood.astype(np.float32)
    assert ood_metrics(ids32.astype(np.float64), ood32.astype(np.float64)) == ood_metrics(
        ids32, ood32
    )


def test_negative_zero_ties_with_zero() -> None:
    ids = np.array([0.0, 1.0], dtype=np.float32)
    ood = np.array([-0.0, -1.0], dtype=np.float32)
    # pairs: (0, -0) tie = 1/2, (0, -1) = 1, (1, -0) = 1, (1, -1) = 1 -> 3.5 / 4
    assert auroc(ids, ood) == 0.875
    assert ood_metrics(ids, ood)["auroc"] == 0.875


def test_bfloat16_and_large_float32_run() -> None:
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.normal(1, 1, 2000)).to(torch.bfloat16)
    ood = torch.from_numpy(rng.normal(0, 1, 1500)).to(torch.bfloat16)
    ref = reference(ids.float().numpy(), ood.float().numpy(), 0.95)
    assert ood_metrics(ids, ood) == pytest.approx(ref, abs=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors() -> None:
    ids, ood = _dataset("random", seed=1)
    got = ood_metrics(torch.from_numpy(ids).cuda(), torch.from_numpy(ood).cuda())
    assert got == pytest.approx(reference(ids, ood, 0.95), abs=1e-12)


# ------------------------------------------------------------------------------------------
# Hand-computed cases
# ------------------------------------------------------------------------------------------

HAND_ID = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
HAND_OOD = np.array([0.85, 0.45, 0.35, 0.15, 0.05])


def test_hand_computed_both_fpr95_conventions() -> None:
    ids, ood = HAND_ID, HAND_OOD
    # ID positive, tpr = 0.95: k = ceil(0.95 * 10) = 10 -> threshold = 10th largest ID = 0.1.
    # Accepted: score >= 0.1, i.e. all 10 ID (TPR = 1.0). OOD strictly below 0.1: {0.05}
    # -> TNR = 1/5 = 0.2 (the papers' "FPR@TPR95" would be 0.8).
    assert tnr_at_tpr(ids, ood, 0.95) == pytest.approx(0.2)
    # tpr = 0.8: k = 8 -> threshold = 0.3; OOD below 0.3: {0.15, 0.05} -> TNR = 0.4.
    assert tnr_at_tpr(ids, ood, 0.8) == pytest.approx(0.4)
    # OOD positive (OpenOOD), tpr = 0.95: k = ceil(0.95 * 5) = ceil(4.75) = 5 -> threshold =
    # 5th smallest OOD = 0.85. Flagged: score <= 0.85 -> ID 0.8 ... 0.1 = 8 of 10 -> FPR = 0.8.
    assert fpr_at_tpr(ids, ood, 0.95) == pytest.approx(0.8)
    # tpr = 0.8: k = 4 -> threshold = 0.45; ID <= 0.45: {0.4, 0.3, 0.2, 0.1} -> FPR = 0.4.
    assert fpr_at_tpr(ids, ood, 0.8) == pytest.approx(0.4)
    # AUROC: ID scores above each OOD score: 0.85 -> 2, 0.45 -> 6, 0.35 -> 7, 0.15 -> 9,
    # 0.05 -> 10; total 34 of 50 pairs.
    assert auroc(ids, ood) == pytest.approx(34 / 50)
    # DTACC: best at threshold 0.5: TPR = 6/10 (1.0 ... 0.5), TNR = 4/5 (only 0.85 accepted)
    # -> 0.5 * (0.6 + 0.8) = 0.7; e.g. threshold 0.4 gives 0.5 * (0.7 + 0.6) = 0.65.
    assert detection_accuracy(ids, ood) == pytest.approx(0.7)
    got = ood_metrics(ids, ood, tpr=0.95)
    assert got["tnr_at_tpr95"] == pytest.approx(0.2)
    assert got["fpr_at_tpr95"] == pytest.approx(0.8)


def test_hand_computed_aupr() -> None:
    ids, ood = np.array([3.0, 1.0]), np.array([2.0, 0.0])
    # ID positive, thresholds 3, 2, 1, 0: (recall, precision) = (1/2, 1), (1/2, 1/2), (1, 2/3),
    # (1, 1/2). AP = 1/2 * 1 + 0 + 1/2 * 2/3 + 0 = 5/6.
    assert aupr_in(ids, ood) == pytest.approx(5 / 6)
    # OOD positive on -score, thresholds -0, -1, -2, -3: (1/2, 1), (1/2, 1/2), (1, 2/3), (1, 1/2).
    assert aupr_out(ids, ood) == pytest.approx(5 / 6)


def test_hand_computed_ties() -> None:
    ids, ood = np.array([1.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])
    # AUROC pairs: each ID 1 vs OOD 1 ties (1/2 + 1/2), each ID 1 beats both OOD 0 (4),
    # ID 0 vs OOD 0 ties twice (1/2 + 1/2): 6 / 9.
    assert auroc(ids, ood) == pytest.approx(6 / 9)
    # tpr 0.95: k = 3 -> threshold = 0; no OOD strictly below 0 -> TNR = 0.
    assert tnr_at_tpr(ids, ood, 0.95) == 0.0
    # tpr 0.6: k = ceil(1.8) = 2 -> threshold = 1; OOD below 1: two zeros -> TNR = 2/3.
    assert tnr_at_tpr(ids, ood, 0.6) == pytest.approx(2 / 3)
    # OpenOOD, tpr 0.95: k = 3 -> threshold = 1 (3rd smallest OOD); ID <= 1: all -> FPR = 1.
    assert fpr_at_tpr(ids, ood, 0.95) == 1.0
    # tpr 0.6: k = 2 -> threshold = 0; ID <= 0: one of three -> FPR = 1/3.
    assert fpr_at_tpr(ids, ood, 0.6) == pytest.approx(1 / 3)


def test_rate_rounding_guard() -> None:
    # 0.55 * 100 == 55.00000000000001 in floating point; k must be 55, not 56.
    ids = np.arange(100.0)  # the 55th largest is 45.0
    ood = np.array([44.5, 45.0, 45.5])
    assert metrics._rank_for_rate(0.55, 100) == 55
    assert metrics._rank_for_rate(0.07, 100) == 7  # 7.000000000000001
    assert metrics._rank_for_rate(0.95, 100) == 95
    assert metrics._rank_for_rate(0.95, 21) == 20  # 19.95 -> 20
    assert metrics._rank_for_rate(1e-9, 5) == 1
    assert tnr_at_tpr(ids, ood, 0.55) == pytest.approx(1 / 3)  # only 44.5 < 45.0
    assert ood_metrics(ids, ood, 0.55)["tnr_at_tpr55"] == pytest.approx(1 / 3)
    # OpenOOD side: 0.56 * 100 == 56.00000000000001; k = 56 -> 56th smallest OOD = 55.0
    assert fpr_at_tpr(np.array([54.5, 55.0, 55.5]), np.arange(100.0), 0.56) == pytest.approx(2 / 3)


def test_all_equal_scores() -> None:
    ids, ood = np.full(4, 0.3), np.full(6, 0.3)
    got = ood_metrics(ids, ood)
    assert got["auroc"] == 0.5
    assert got["detection_accuracy"] == 0.5
    assert got["aupr_in"] == pytest.approx(0.4)  # one threshold: precision 4 / 10
    assert got["aupr_out"] == pytest.approx(0.6)
    assert got["tnr_at_tpr95"] == 0.0  # nothing strictly below the threshold
    assert got["fpr_at_tpr95"] == 1.0  # every ID score is flagged


def test_perfect_separation() -> None:
    got = ood_metrics(np.array([2.0, 3.0, 4.0]), np.array([-1.0, 0.0]))
    assert got == {key: 1.0 for key in KEYS95} | {"fpr_at_tpr95": 0.0}


def test_key_names_follow_tpr() -> None:
    ids, ood = _dataset("random", 0)
    assert list(ood_metrics(ids, ood, tpr=0.9)) == [
        "auroc",
        "aupr_in",
        "aupr_out",
        "tnr_at_tpr90",
        "fpr_at_tpr90",
        "detection_accuracy",
        "aupr_in_trapezoid",
        "aupr_out_trapezoid",
    ]
    assert "tnr_at_tpr99.9" in ood_metrics(ids, ood, tpr=0.999)
    assert "fpr_at_tpr100" in ood_metrics(ids, ood, tpr=1.0)
    assert list(ood_metrics(ids, ood)) == KEYS95


def test_inputs_are_not_modified() -> None:
    ids = np.array([0.3, -0.0, 0.1], dtype=np.float32)
    ood = torch.tensor([0.2, 0.0, -0.5])
    ids_copy, ood_copy = ids.copy(), ood.clone()
    ood_metrics(ids, ood)
    tnr_at_tpr(ids, ood)
    fpr_at_tpr(ids, ood)
    np.testing.assert_array_equal(ids, ids_copy)
    assert np.signbit(ids[1])
    assert torch.equal(ood, ood_copy)


# ------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------

finite64 = st.floats(allow_nan=False, allow_infinity=False)
finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
tied = st.integers(-3, 3).map(float)
score_arrays = st.one_of(
    arrays(np.float64, st.integers(1, 30), elements=finite64),
    arrays(np.float64, st.integers(1, 30), elements=tied),
)
PROPS = settings(max_examples=60, deadline=None)


@PROPS
@given(score_arrays, score_arrays, st.floats(1e-6, 1.0))
def test_property_fractions_and_no_nan(ids: np.ndarray, ood: np.ndarray, tpr: float) -> None:
    got = ood_metrics(ids, ood, tpr=tpr)
    for key, value in got.items():
        assert isinstance(value, float)
        assert math.isfinite(value), key
        assert 0.0 <= value <= 1.0, key
    assert got["detection_accuracy"] >= 0.5


@PROPS
@given(
    arrays(np.float32, st.integers(1, 30), elements=finite32),
    arrays(np.float32, st.integers(1, 30), elements=finite32),
)
def test_property_float32_matches_sklearn(ids: np.ndarray, ood: np.ndarray) -> None:
    assert ood_metrics(ids, ood) == pytest.approx(reference(ids, ood, 0.95), abs=1e-12)


@PROPS
@given(score_arrays, score_arrays)
def test_property_swapping_sets(ids: np.ndarray, ood: np.ndarray) -> None:
    assert auroc(ood, ids) == pytest.approx(1.0 - auroc(ids, ood), abs=1e-12)
    # AUPR-Out is AUPR-In with the roles of the sets and the sign of the scores swapped.
    assert aupr_out(ids, ood) == pytest.approx(aupr_in(-ood, -ids), abs=1e-12)
    # OpenOOD FPR@TPR is 1 - the papers' TNR@TPR on the mirrored problem.
    assert fpr_at_tpr(ids, ood) == pytest.approx(1.0 - tnr_at_tpr(-ood, -ids), abs=1e-12)
    assert detection_accuracy(ids, ood) == pytest.approx(detection_accuracy(-ood, -ids))


# Scores k / 8 with small integers k: exp, 3x + 1 and x ** 3 are exact or strictly increasing
# on them in floating point, so the transforms keep every order and every tie.
grid_scores = arrays(
    np.float64, st.integers(1, 30), elements=st.integers(-40, 40).map(lambda k: k / 8)
)


@PROPS
@given(grid_scores, grid_scores, st.sampled_from([0.95, 0.9, 0.5]))
def test_property_invariant_under_increasing_transforms(
    ids: np.ndarray, ood: np.ndarray, tpr: float
) -> None:
    base = ood_metrics(ids, ood, tpr=tpr)
    for transform in (np.exp, lambda x: 3.0 * x + 1.0, lambda x: x**3):
        assert ood_metrics(transform(ids), transform(ood), tpr=tpr) == base


# ------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------

GOOD = np.array([0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("ids", "ood", "error", "match"),
    [
        (np.array([]), GOOD, ValueError, "id_scores must not be empty"),
        (GOOD, np.array([]), ValueError, "ood_scores must not be empty"),
        (np.array([0.1, np.nan]), GOOD, ValueError, r"id_scores must be finite.*index 1"),
        (GOOD, np.array([np.inf, 0.0]), ValueError, "ood_scores must be finite"),
        (GOOD.astype(np.int64), GOOD, TypeError, "same dtype, got int64 and float64"),
        (torch.tensor([1]), GOOD, TypeError, "same dtype, got int64 and float64"),
        (GOOD.reshape(3, 1), GOOD, ValueError, r"id_scores must be 1-D, got shape \(3, 1\)"),
        (GOOD, np.array(0.5), ValueError, r"ood_scores must be 1-D, got shape \(\)"),
        (np.array([True, False]), GOOD, TypeError, "id_scores must be numeric, got dtype bool"),
        (GOOD, torch.tensor([True]), TypeError, "ood_scores must be numeric"),
        (np.array(["a", "b"]), GOOD, TypeError, "id_scores must have a real integer or floating"),
        (GOOD + 1j, GOOD, TypeError, "id_scores must have a real"),
        ([0.1, 0.2], GOOD, TypeError, "must be a torch.Tensor or numpy.ndarray, got list"),
    ],
)
def test_bad_scores(ids: object, ood: object, error: type[Exception], match: str) -> None:
    for fn in (ood_metrics, auroc, aupr_in, aupr_out, tnr_at_tpr, fpr_at_tpr, detection_accuracy):
        with pytest.raises(error, match=match):
            fn(ids, ood)


@pytest.mark.parametrize(
    ("tpr", "error", "match"),
    [
        (0.0, ValueError, r"tpr must be in \(0, 1\], got 0.0"),
        (1.5, ValueError, r"tpr must be in \(0, 1\]"),
        (-0.1, ValueError, r"tpr must be in \(0, 1\]"),
        (float("nan"), ValueError, r"tpr must be in \(0, 1\]"),
        ("0.95", TypeError, "tpr must be a real number"),
        (True, TypeError, "tpr must be a real number"),
    ],
)
def test_bad_tpr(tpr: object, error: type[Exception], match: str) -> None:
    for fn in (ood_metrics, tnr_at_tpr, fpr_at_tpr):
        with pytest.raises(error, match=match):
            fn(GOOD, GOOD, tpr=tpr)


# ------------------------------------------------------------------------------------------
# Classification and calibration metrics
# ------------------------------------------------------------------------------------------


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _random_probs(seed: int, n: int = 500, c: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _softmax(rng.normal(0.0, 2.0, (n, c))), rng.integers(0, c, n)


def ref_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> list[tuple[int, float, float]]:
    """(count, accuracy, confidence) per bin (lo, hi], written with explicit comparisons."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    out = []
    for b in range(n_bins):
        inside = (conf > edges[b]) & (conf <= edges[b + 1])
        if b == 0:
            inside |= conf == 0.0
        count = int(inside.sum())
        acc = float(correct[inside].mean()) if count else float("nan")
        avg = float(conf[inside].mean()) if count else float("nan")
        out.append((count, acc, avg))
    return out


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_calibration_metrics_match_formulas(backend: str, n_bins: int) -> None:
    probs, labels = _random_probs(seed=n_bins)
    p_in = torch.from_numpy(probs.astype(np.float32)) if backend == "torch" else probs
    y_in = torch.from_numpy(labels) if backend == "torch" else labels
    p = probs.astype(np.float32).astype(np.float64) if backend == "torch" else probs
    n = p.shape[0]
    bins = ref_bins(p, labels, n_bins)
    ece = sum(count / n * abs(acc - avg) for count, acc, avg in bins if count)
    mce = max(abs(acc - avg) for count, acc, avg in bins if count)
    nll_ref = -np.mean(np.log(np.maximum(p[np.arange(n), labels], 1e-12)))
    brier_ref = np.mean(np.sum((p - np.eye(p.shape[1])[labels]) ** 2, axis=1))
    assert expected_calibration_error(p_in, y_in, n_bins=n_bins) == pytest.approx(ece, abs=1e-12)
    assert maximum_calibration_error(p_in, y_in, n_bins=n_bins) == pytest.approx(mce, abs=1e-12)
    assert nll(p_in, y_in) == pytest.approx(nll_ref, rel=1e-12)
    assert brier(p_in, y_in) == pytest.approx(brier_ref, rel=1e-12)
    assert accuracy(p_in, y_in) == pytest.approx(np.mean(p.argmax(axis=1) == labels))

    diagram = reliability_diagram(p_in, y_in, n_bins=n_bins)
    np.testing.assert_array_equal(diagram["edges"], np.linspace(0.0, 1.0, n_bins + 1))
    np.testing.assert_array_equal(diagram["counts"], [c for c, _, _ in bins])
    np.testing.assert_allclose(diagram["accuracy"], [a for _, a, _ in bins], atol=1e-12)
    np.testing.assert_allclose(diagram["confidence"], [v for _, _, v in bins], atol=1e-12)
    assert diagram["ece"] == pytest.approx(ece, abs=1e-12)
    assert diagram["mce"] == pytest.approx(mce, abs=1e-12)


def test_calibration_hand_computed() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 1])
    # 5 bins (0,.2], (.2,.4], (.4,.6], (.6,.8], (.8,1]:
    #   bin 5: conf .9, .9, one correct -> |0.5 - 0.9| = 0.4, weight 2/4
    #   bin 4: conf .7, correct          -> |1 - 0.7| = 0.3, weight 1/4
    #   bin 3: conf .55, wrong           -> |0 - 0.55| = 0.55, weight 1/4
    # ECE = (2 * 0.4 + 0.3 + 0.55) / 4 = 0.4125; MCE = 0.55.
    assert expected_calibration_error(probs, labels, n_bins=5) == pytest.approx(0.4125)
    assert maximum_calibration_error(probs, labels, n_bins=5) == pytest.approx(0.55)
    # accuracy 2/4; NLL = -(log .9 + log .1 + log .7 + log .45) / 4
    assert accuracy(probs, labels) == 0.5
    assert nll(probs, labels) == pytest.approx(-np.log([0.9, 0.1, 0.7, 0.45]).mean())
    # Brier: (0.01 + 0.01) + (0.81 + 0.81) + (0.09 + 0.09) + (0.3025 + 0.3025) -> / 4
    assert brier(probs, labels) == pytest.approx((0.02 + 1.62 + 0.18 + 0.605) / 4)
    diagram = reliability_diagram(probs, labels, n_bins=5)
    np.testing.assert_array_equal(diagram["counts"], [0, 0, 1, 1, 2])
    assert np.isnan(diagram["accuracy"][:2]).all()
    assert np.isnan(diagram["confidence"][:2]).all()


def test_ece_bin_edges_are_upper_inclusive() -> None:
    # Confidence exactly 1/2 belongs to the bin (0, 0.5] with 2 bins.
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    labels = np.array([1, 0])  # argmax picks class 0 for the tie: wrong
    diagram = reliability_diagram(probs, labels, n_bins=2)
    np.testing.assert_array_equal(diagram["counts"], [1, 1])
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.25)


def test_nll_clamps_zero_probability() -> None:
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    labels = np.array([1, 0])
    expected = (-math.log(NLL_EPS) - math.log(0.5)) / 2
    assert nll(probs, labels) == pytest.approx(expected)
    assert math.isfinite(nll(probs, labels))


def test_accuracy_on_logits() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.0, 5.0, 1.0], [3.0, 3.5, -2.0]])
    assert accuracy(logits, torch.tensor([0, 1, 0])) == pytest.approx(2 / 3)


P_OK = np.array([[0.2, 0.8], [0.6, 0.4]])
Y_OK = np.array([1, 0])


@pytest.mark.parametrize(
    ("probs", "labels", "error", "match"),
    [
        (np.array([0.2, 0.8]), Y_OK, ValueError, r"probs must be 2-D \[N, C\], got shape \(2,\)"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), ValueError, "at least one row"),
        (np.array([[1.5, -0.5], [0.6, 0.4]]), Y_OK, ValueError, "probabilities in"),
        (np.array([[0.2, 0.2], [0.6, 0.4]]), Y_OK, ValueError, "row 0 sums to 0.4"),
        (np.array([[np.nan, 0.8], [0.6, 0.4]]), Y_OK, ValueError, "probs must be finite"),
        (
            P_OK,
            Y_OK.astype(float),
            TypeError,
            "labels must hold integer class indices .*got dtype float64",
        ),
        (P_OK, np.array([True, False]), TypeError, "labels must hold integer class indices"),
        (P_OK, np.array([1, 2]), ValueError, r"labels must lie in \[0, 1\], found 2"),
        (P_OK, np.array([-1, 0]), ValueError, r"labels must lie in \[0, 1\], found -1"),
        (
            P_OK,
            np.array([1]),
            ValueError,
            r"labels must have shape \(2,\) to match the predictions, got \(1,\)",
        ),
        (
            P_OK,
            np.array([[1, 0]]),
            ValueError,
            r"labels must have shape \(2,\) to match the predictions, got \(1, 2\)",
        ),
        (P_OK.astype(bool), Y_OK, TypeError, "probs must be numeric"),
    ],
)
def test_bad_calibration_inputs(
    probs: np.ndarray, labels: np.ndarray, error: type[Exception], match: str
) -> None:
    for fn in (expected_calibration_error, maximum_calibration_error, nll, brier):
        with pytest.raises(error, match=match):
            fn(probs, labels)
    with pytest.raises(error, match=match):
        reliability_diagram(probs, labels)


def test_bad_n_bins_and_logits() -> None:
    with pytest.raises(ValueError, match="n_bins must be >= 1, got 0"):
        expected_calibration_error(P_OK, Y_OK, n_bins=0)
    with pytest.raises(TypeError, match="n_bins must be an int, got float"):
        reliability_diagram(P_OK, Y_OK, n_bins=2.5)
    with pytest.raises(ValueError, match="logits must be 2-D"):
        accuracy(np.array([1.0, 2.0]), Y_OK)
    with pytest.raises(ValueError, match="logits must be finite"):
        accuracy(np.array([[1.0, np.inf], [0.0, 1.0]]), Y_OK)


# -------------------------------------------------------------------------------- bad input (listed in docs/errors.md)


NAN = float("nan")
INF = float("inf")

ONE = np.array([0.5])
METRIC_ERRORS = [
    pytest.param(
        lambda: metrics.auroc(np.array([0.1, NAN]), np.array([0.2])),
        ValueError,
        r"id_scores must be finite, found 1 NaN/inf value\(s\) \(first at index 1: nan\)",
        id="metric-nan-id-scores",
    ),
    pytest.param(
        lambda: metrics.ood_metrics(torch.tensor([0.1, 0.3]), torch.tensor([0.2, -INF])),
        ValueError,
        r"ood_scores must be finite, found 1 NaN/inf value\(s\) \(first at index 1: -inf\)",
        id="metric-inf-ood-scores",
    ),
    pytest.param(
        lambda: metrics.auroc(np.array([], dtype=np.float64), ONE),
        ValueError,
        r"id_scores must not be empty",
        id="metric-empty-id",
    ),
    pytest.param(
        lambda: metrics.ood_metrics(ONE, np.array([], dtype=np.float64)),
        ValueError,
        r"ood_scores must not be empty",
        id="metric-empty-ood",
    ),
    pytest.param(
        lambda: metrics.aupr_in(np.ones((2, 2)), np.ones(2)),
        ValueError,
        r"id_scores must be 1-D, got shape \(2, 2\)",
        id="metric-2d-scores",
    ),
    pytest.param(
        lambda: metrics.auroc(np.ones(2, dtype=np.int32), np.ones(2)),
        TypeError,
        r"id_scores and ood_scores must have the same dtype, got int32 and float64",
        id="metric-dtype-mismatch",
    ),
    pytest.param(
        lambda: metrics.auroc([0.9], [0.1]),
        TypeError,
        r"id_scores must be a torch.Tensor or numpy.ndarray, got list",
        id="metric-list-input",
    ),
    pytest.param(
        lambda: metrics.auroc(torch.ones(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)),
        TypeError,
        r"id_scores must be numeric, got a tensor of dtype torch.bool",
        id="metric-bool-scores",
    ),
    pytest.param(
        lambda: metrics.tnr_at_tpr(np.ones(3), np.ones(3), tpr=95),
        ValueError,
        r"tpr must be in \(0, 1\], got 95",
        id="metric-tpr-as-percent",
    ),
    pytest.param(
        lambda: metrics.accuracy(np.ones((2, 3)), np.array([0.0, 1.0])),
        TypeError,
        r"labels must hold integer class indices .*got dtype float64",
        id="accuracy-float-labels",
    ),
    pytest.param(
        lambda: metrics.accuracy(np.ones((2, 3)), np.array([0, 3])),
        ValueError,
        r"labels must lie in \[0, 2\], found 3",
        id="accuracy-label-out-of-range",
    ),
    pytest.param(
        lambda: metrics.accuracy(np.ones((2, 3)), np.array([0, 1, 2])),
        ValueError,
        r"labels must have shape \(2,\) to match the predictions, got \(3,\)",
        id="accuracy-label-count",
    ),
    pytest.param(
        lambda: metrics.accuracy(np.ones(3), np.array([0, 1, 2])),
        ValueError,
        r"logits must be 2-D \[N, C\], got shape \(3,\)",
        id="accuracy-1d-logits",
    ),
    pytest.param(
        lambda: metrics.expected_calibration_error(np.array([[2.0, -1.0]]), np.array([0])),
        ValueError,
        r"probs must hold probabilities in \[0, 1\].*pass softmax outputs, not logits",
        id="ece-logits-not-probs",
    ),
    pytest.param(
        lambda: metrics.brier(np.array([[0.2, 0.2]]), np.array([0])),
        ValueError,
        r"probs rows must sum to 1 \(tolerance 0.001\), row 0 sums to 0.4",
        id="brier-rows-not-summing-to-1",
    ),
    pytest.param(
        lambda: metrics.maximum_calibration_error(np.array([[0.5, 0.5]]), np.array([0]), 0),
        ValueError,
        r"n_bins must be >= 1, got 0",
        id="mce-zero-bins",
    ),
    pytest.param(
        lambda: metrics.nll(torch.tensor([[NAN, 0.5]]), torch.tensor([0])),
        ValueError,
        r"probs must be finite, found 1 NaN/inf value\(s\) \(first at index \(0, 0\): nan\)",
        id="nll-nan-probs",
    ),
    pytest.param(
        lambda: metrics.nll(np.zeros((0, 2)), np.zeros(0, dtype=np.int64)),
        ValueError,
        r"probs must have at least one row and one column, got \(0, 2\)",
        id="nll-empty",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), METRIC_ERRORS)
def test_metrics_reject(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_metrics_work_with_one_id_and_one_ood_score():
    separated = metrics.ood_metrics(np.array([0.9]), np.array([0.1]))
    assert separated == {
        "auroc": 1.0,
        "aupr_in": 1.0,
        "aupr_out": 1.0,
        "tnr_at_tpr95": 1.0,
        "fpr_at_tpr95": 0.0,
        "detection_accuracy": 1.0,
        "aupr_in_trapezoid": 1.0,
        "aupr_out_trapezoid": 1.0,
    }
    tied = metrics.ood_metrics(torch.tensor([0.5]), torch.tensor([0.5]))
    assert tied["auroc"] == 0.5 and tied["detection_accuracy"] == 0.5
    assert metrics.accuracy(np.array([[0.2, 0.8]]), np.array([1])) == 1.0
    assert metrics.brier(np.array([[1.0, 0.0]]), np.array([0])) == 0.0
