"""Out-of-distribution detection, classification and calibration metrics.

Conventions (see SPEC section 4):

* Scores are "higher = more in-distribution". Every OOD metric takes 1-D ``id_scores`` and
  ``ood_scores`` (``torch.Tensor`` on any device, or ``numpy.ndarray``) of the same dtype, or of
  two floating dtypes (the narrower is widened exactly), and returns a Python ``float`` that is
  a fraction in [0, 1].
* ID-positive metrics (the IsoMax papers, ODIN, Mahalanobis): AUROC, AUPR-In, TNR@TPR, DTACC.
* OOD-positive metrics (OpenOOD v1.5, pytorch-ood): AUPR-Out (negated scores) and FPR@TPR.
  ``tnr_at_tpr`` and ``fpr_at_tpr`` are *different numbers*; 1 - ``tnr_at_tpr`` is the
  ID-positive "FPR@TPR95" of the papers, ``fpr_at_tpr`` is OpenOOD's "FPR@95".
* Threshold rule (no interpolation): the first operating point that reaches the target rate,
  i.e. the k-th largest ID score (resp. k-th smallest OOD score) with ``k = ceil(tpr * n)``.
* Ties: equal scores form one threshold, as in scikit-learn's ``roc_curve``; for AUROC a tied
  ID/OOD pair counts 1/2 (Mann-Whitney U).

References: Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and Out-of-Distribution
Examples", ICLR 2017; Liang et al., "ODIN", ICLR 2018; Macêdo et al., "Entropic
Out-of-Distribution Detection", IJCNN 2021; Yang et al., "OpenOOD v1.5", 2023; Guo et al., "On
Calibration of Modern Neural Networks", ICML 2017 (ECE/MCE); Brier, Monthly Weather Review 1950.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ._checks import check_labels
from .errors import InputError

__all__ = [
    "NLL_EPS",
    "accuracy",
    "aupr_in",
    "aupr_out",
    "auroc",
    "brier",
    "detection_accuracy",
    "expected_calibration_error",
    "fpr_at_tpr",
    "maximum_calibration_error",
    "nll",
    "ood_metrics",
    "reliability_diagram",
    "roc_curve",
    "tnr_at_tpr",
]

ArrayLike = torch.Tensor | np.ndarray

#: Probabilities are clamped to at least this value before the log in :func:`nll`.
NLL_EPS = 1e-12

#: Tolerance on row sums when checking that ``probs`` holds probabilities.
_ROW_SUM_ATOL = 1e-3

#: Number of sorted elements processed at once after the sort (bounds the temporaries).
_CHUNK = 1 << 17


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _to_numpy(x: Any, name: str) -> tuple[np.ndarray, str]:
    """Return ``x`` as a NumPy array (no copy for CPU tensors) and its source dtype name."""
    if isinstance(x, torch.Tensor):
        dtype_name = str(x.dtype).removeprefix("torch.")
        if x.dtype == torch.bool:
            raise TypeError(f"{name} must be numeric, got a tensor of dtype torch.bool")
        if x.is_complex():
            raise TypeError(f"{name} must be real, got a tensor of dtype {x.dtype}")
        t = x.detach()
        if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
            t = t.float()  # bfloat16 and float8 widen to float32 exactly
        return t.cpu().numpy(), dtype_name
    if isinstance(x, np.ndarray):
        return x, x.dtype.name
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def _check_numeric(x: np.ndarray, name: str) -> None:
    if x.dtype.kind == "b":
        raise TypeError(f"{name} must be numeric, got dtype bool")
    if x.dtype.kind not in "iuf":
        raise TypeError(f"{name} must have a real integer or floating dtype, got {x.dtype}")


def _check_finite(x: np.ndarray, name: str) -> None:
    if x.dtype.kind != "f":
        return
    # min/max propagate NaN and expose +-inf without an n-sized temporary.
    if np.isfinite(x.min()) and np.isfinite(x.max()):
        return
    bad = np.flatnonzero(~np.isfinite(x.reshape(-1)))
    first = np.unravel_index(int(bad[0]), x.shape)
    where = int(first[0]) if x.ndim == 1 else tuple(int(i) for i in first)
    raise InputError(
        f"{name} must be finite, found {bad.size} NaN/inf value(s) "
        f"(first at index {where}: {x.reshape(-1)[bad[0]]})"
    )


def _check_scores(x: Any, name: str) -> tuple[np.ndarray, str]:
    """Validate a 1-D, non-empty, finite, real score vector; return it and its dtype name."""
    arr, dtype_name = _to_numpy(x, name)
    _check_numeric(arr, name)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise InputError(f"{name} must not be empty")
    _check_finite(arr, name)
    return arr, dtype_name


def _check_pair(id_scores: Any, ood_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    ids, id_dtype = _check_scores(id_scores, "id_scores")
    ood, ood_dtype = _check_scores(ood_scores, "ood_scores")
    if id_dtype != ood_dtype:
        if ids.dtype.kind == "f" and ood.dtype.kind == "f":
            # float32 and float64 (or float16, bfloat16): widening is exact, ties survive
            common = np.result_type(ids.dtype, ood.dtype)
            return ids.astype(common, copy=False), ood.astype(common, copy=False)
        raise TypeError(
            f"id_scores and ood_scores must have the same dtype, got {id_dtype} and {ood_dtype}; "
            "cast both to one dtype first (rounding to a different precision changes ties); "
            "floating dtypes may be mixed"
        )
    return ids, ood


def _check_rate(rate: Any, name: str) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number in (0, 1], got {type(rate).__name__}")
    value = float(rate)
    if not 0.0 < value <= 1.0:  # also rejects NaN
        raise InputError(f"{name} must be in (0, 1], got {rate!r}")
    return value


def _check_n_bins(n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)):
        raise TypeError(f"n_bins must be an int, got {type(n_bins).__name__}")
    if n_bins < 1:
        raise InputError(f"n_bins must be >= 1, got {n_bins}")
    return int(n_bins)


def _check_matrix(x: Any, name: str) -> np.ndarray:
    """Validate a non-empty, finite, real 2-D ``[N, C]`` array (returned in its own dtype)."""
    arr, _ = _to_numpy(x, name)
    _check_numeric(arr, name)
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D [N, C], got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name} must have at least one row and one column, got {arr.shape}")
    _check_finite(arr, name)
    return arr


def _check_labels(labels: Any, n: int, num_classes: int, name: str = "labels") -> np.ndarray:
    """Validate 1-D integer class labels of length ``n`` in ``[0, num_classes)`` (as int64)."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu()
    checked = check_labels(labels, name, n, num_classes, rows="predictions")
    return checked.numpy().astype(np.int64, copy=False)


def _check_probs(probs: Any, name: str = "probs") -> np.ndarray:
    """Validate an ``[N, C]`` matrix of probabilities; return it as float64."""
    p = _check_matrix(probs, name).astype(np.float64, copy=False)
    if p.min() < 0.0 or p.max() > 1.0:
        raise InputError(
            f"{name} must hold probabilities in [0, 1], got values in [{p.min()}, {p.max()}] "
            "(pass softmax outputs, not logits)"
        )
    sums = p.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_ATOL)
    if off.size:
        raise InputError(
            f"{name} rows must sum to 1 (tolerance {_ROW_SUM_ATOL}), row {int(off[0])} sums to "
            f"{sums[off[0]]} (pass softmax outputs, not logits)"
        )
    return p


# --------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------


def _rank_for_rate(rate: float, n: int) -> int:
    """Smallest count ``k`` in ``[1, n]`` with ``k / n >= rate``: ``k = ceil(rate * n)``.

    A relative slack of 1e-12 absorbs floating-point error in ``rate * n`` (``0.95 * 100``
    must give 95, not 96).
    """
    x = rate * n
    k = math.ceil(x - max(1e-9, 1e-12 * x))
    return min(max(k, 1), n)


def _kth_largest(x: np.ndarray, k: int) -> Any:
    """The k-th largest element of a 1-D array (``k = 1`` is the maximum), in O(n)."""
    j = x.shape[0] - k
    return np.partition(x, j)[j]


def _kth_smallest(x: np.ndarray, k: int) -> Any:
    """The k-th smallest element of a 1-D array (``k = 1`` is the minimum), in O(n)."""
    return np.partition(x, k - 1)[k - 1]


def _rate_tag(rate: float) -> str:
    """Percentage used in result keys: 0.95 -> "95", 0.999 -> "99.9"."""
    pct = rate * 100.0
    if abs(pct - round(pct)) < 1e-9:
        return str(round(pct))
    return format(pct, ".10g")


# --------------------------------------------------------------------------------------------
# One sort, every OOD metric
# --------------------------------------------------------------------------------------------


def _fill_keys32(x: np.ndarray, out: np.ndarray, label: int) -> None:
    """Write ``(order_key(x) << 1) | label`` into the uint64 array ``out``.

    ``order_key`` maps values of at most 32 bits to uint32 so that integer order equals value
    order and equal values (``-0.0 == 0.0`` included) get equal keys. The label rides in the
    lowest bit, so one plain (SIMD) sort of the keys sorts scores and labels together.
    """
    kind = x.dtype.kind
    for lo in range(0, x.shape[0], _CHUNK):
        hi = min(lo + _CHUNK, x.shape[0])
        dst = out[lo:hi]
        if kind == "f":
            c = x[lo:hi].astype(np.float32) + np.float32(0.0)  # copy; -0.0 becomes +0.0
            bits = c.view(np.uint32)
            # Negative floats: flip all bits; non-negative: flip the sign bit.
            bits ^= ((bits >> np.uint32(31)) * np.uint32(0x7FFFFFFF)) | np.uint32(0x80000000)
            dst[...] = bits
        elif kind == "i":
            dst[...] = x[lo:hi].astype(np.int64) + (1 << 31)
        else:
            dst[...] = x[lo:hi]
        dst <<= np.uint64(1)
        if label:
            dst |= np.uint64(1)


def _fits_32_bits(x: np.ndarray) -> bool:
    """Whether every value of ``x`` has an exact 32-bit encoding for :func:`_fill_keys32`.

    True for dtypes of at most 32 bits, for 64-bit integers within the 32-bit range and for
    float64 values that are exactly float32 (e.g. float32 scores upcast with ``.double()``).
    """
    if x.dtype.itemsize <= 4:
        return True
    if x.dtype.kind == "i":
        return int(x.min()) >= -(1 << 31) and int(x.max()) < (1 << 31)
    if x.dtype.kind == "u":
        return int(x.max()) < (1 << 32)
    if x.dtype != np.float64:
        return False
    for lo in range(0, x.shape[0], _CHUNK):
        chunk = x[lo : lo + _CHUNK]
        with np.errstate(over="ignore"):
            if not np.array_equal(chunk.astype(np.float32), chunk):
                return False
    return True


def _sorted_chunks(ids: np.ndarray, ood: np.ndarray) -> Iterator[tuple[int, np.ndarray, Any]]:
    """Sort ID and OOD scores together once; yield ``(start, values, is_id)`` chunks.

    ``values`` holds one element more than ``is_id`` (the first element of the next chunk)
    except in the last chunk, so that group ends can be detected across chunk boundaries.
    Values are only compared for equality, so any order-preserving encoding works.
    """
    n_id, n = ids.shape[0], ids.shape[0] + ood.shape[0]
    if _fits_32_bits(ids) and _fits_32_bits(ood):
        keys = np.empty(n, dtype=np.uint64)
        _fill_keys32(ids, keys[:n_id], 1)
        _fill_keys32(ood, keys[n_id:], 0)
        keys.sort()
        one = np.uint64(1)
        for lo in range(0, n, _CHUNK):
            hi = min(lo + _CHUNK, n)
            yield lo, keys[lo : hi + 1] >> one, (keys[lo:hi] & one).view(np.int64)
    else:  # genuinely 64-bit (or wider) values: argsort, labels from the permutation
        scores = np.concatenate([ids, ood])
        order = np.argsort(scores)
        for lo in range(0, n, _CHUNK):
            hi = min(lo + _CHUNK, n)
            idx = order[lo : hi + 1]
            yield lo, scores[idx], idx[: hi - lo] < n_id


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.einsum("i,i->", x, y))


def _ood_stats(ids: np.ndarray, ood: np.ndarray, tpr: float) -> dict[str, float]:
    """All OOD metrics from one ascending sweep over the sorted scores.

    For distinct score values ``v_1 < ... < v_m`` let ``A_g`` / ``B_g`` be the number of ID / OOD
    scores ``<= v_g`` (``A_0 = B_0 = 0``) and ``a_g``, ``b_g`` the counts equal to ``v_g``. With
    "accept score >= v_g" (ID positive) TP = n_id - A_{g-1} and FP = n_ood - B_{g-1}; with
    "flag score <= v_g" (OOD positive) TP = B_g and FP = A_g. Then

    * AUROC = sum_g a_g (B_{g-1} + b_g / 2) / (n_id n_ood)            (exact, integer numerator)
    * AUPR-In = sum_g a_g / n_id * TP / (TP + FP)                      (sklearn's step-wise AP)
    * AUPR-Out = sum_g b_g / n_ood * B_g / (A_g + B_g)
    * the trapezoidal areas (OpenOOD, pytorch-ood): the same sums with the mean of the precision
      at g and at the neighbouring threshold (the next one for AUPR-In, the previous one for
      AUPR-Out; precision 1 past the end, the curve's (recall 0, precision 1) point)
    * DTACC = 1/2 + 1/2 max_g (B_g / n_ood - A_g / n_id)               (g = 0 and m give 1/2)
    * TNR@TPR: largest g with n_id - A_g >= k (k = ceil(tpr n_id)): B_g / n_ood
    * FPR@TPR (OOD positive): smallest g with B_g >= k (k = ceil(tpr n_ood)): A_g / n_id
    """
    n_id, n_ood = ids.shape[0], ood.shape[0]
    n = n_id + n_ood
    tnr_limit = n_id - _rank_for_rate(tpr, n_id)  # TNR point: last g with A_g <= this
    fpr_rank = _rank_for_rate(tpr, n_ood)  # FPR point: first g with B_g >= this

    id_before = 0  # ID count before the current chunk
    prev_a = prev_b = 0  # A, B at the last group end seen
    auc2 = 0  # 2 * Mann-Whitney U, exact Python int
    ap_in = ap_out = trap_in = trap_out = 0.0
    best_gap = 0  # max_g B_g n_id - A_g n_ood, g = 0 gives 0
    tnr_b = 0
    fpr_a = -1

    for lo, values, is_id in _sorted_chunks(ids, ood):
        m = is_id.shape[0]
        end = np.empty(m, dtype=bool)
        np.not_equal(values[1:m], values[: m - 1], out=end[: m - 1])
        end[m - 1] = values.shape[0] == m or bool(values[m] != values[m - 1])
        cum = np.cumsum(is_id)
        ends = np.flatnonzero(end)
        k = ends.shape[0]
        if k:
            # Counts as float64 (exact below 2**53); index 0 holds the previous group end.
            a_ext = np.empty(k + 1)
            p_ext = np.empty(k + 1)
            a_ext[0], p_ext[0] = prev_a, prev_a + prev_b
            np.add(cum[ends], id_before, out=a_ext[1:], casting="unsafe")
            np.add(ends, lo + 1, out=p_ext[1:], casting="unsafe")
            b_ext = p_ext - a_ext
            a_cum, b_cum, p_cum = a_ext[1:], b_ext[1:], p_ext[1:]
            a_prev, b_prev, p_prev = a_ext[:-1], b_ext[:-1], p_ext[:-1]
            a = np.diff(a_ext)
            b = np.diff(b_ext)
            # Per chunk these dot products are integers below 2**53, hence exact. (einsum, not
            # np.dot: BLAS threading costs more than it saves on vectors of this size.)
            auc2 += round(2.0 * _dot(a, b_prev)) + round(_dot(a, b))
            tp_in = n_id - a_prev
            tp_in /= n - p_prev  # precision (ID positive) at v_g
            ap_in += _dot(a, tp_in)
            precision_out = b_cum / p_cum  # precision (OOD positive) at v_g
            ap_out += _dot(b, precision_out)
            # Trapezoids: precision at the next group (ID) / the previous one (OOD), 1 past
            # either end, as the (recall 0, precision 1) point of precision_recall_curve.
            rest = n - p_cum
            next_in = np.divide(n_id - a_cum, rest, out=np.ones(k), where=rest > 0)
            prev_out = np.divide(b_prev, p_prev, out=np.ones(k), where=p_prev > 0)
            trap_in += _dot(a, tp_in + next_in) / 2
            trap_out += _dot(b, precision_out + prev_out) / 2
            gap = b_cum * n_id
            gap -= a_cum * n_ood
            best_gap = max(best_gap, round(float(gap.max())))
            j = int(np.searchsorted(a_cum, tnr_limit, side="right"))
            if j:
                tnr_b = round(float(b_cum[j - 1]))
            if fpr_a < 0:
                j = int(np.searchsorted(b_cum, fpr_rank, side="left"))
                if j < k:
                    fpr_a = round(float(a_cum[j]))
            prev_a, prev_b = round(float(a_cum[-1])), round(float(b_cum[-1]))
        id_before += int(cum[-1])

    pairs = n_id * n_ood
    tag = _rate_tag(tpr)
    return {
        "auroc": auc2 / (2 * pairs),
        "aupr_in": min(ap_in / n_id, 1.0),
        "aupr_out": min(ap_out / n_ood, 1.0),
        f"tnr_at_tpr{tag}": tnr_b / n_ood,
        f"fpr_at_tpr{tag}": fpr_a / n_id,
        "detection_accuracy": (pairs + best_gap) / (2 * pairs),
        "aupr_in_trapezoid": min(trap_in / n_id, 1.0),
        "aupr_out_trapezoid": min(trap_out / n_ood, 1.0),
    }


def ood_metrics(id_scores: ArrayLike, ood_scores: ArrayLike, tpr: float = 0.95) -> dict[str, float]:
    """Every OOD-detection metric from one sort of the concatenated scores.

    Args:
        id_scores: 1-D in-distribution scores (higher = more in-distribution).
        ood_scores: 1-D out-of-distribution scores, same dtype as ``id_scores``.
        tpr: target true-positive rate for the two threshold metrics, in (0, 1].

    Returns:
        ``{"auroc", "aupr_in", "aupr_out", "tnr_at_tpr{P}", "fpr_at_tpr{P}",
        "detection_accuracy", "aupr_in_trapezoid", "aupr_out_trapezoid"}`` with
        ``P = 100 * tpr`` (``0.95 -> "95"``, ``0.999 -> "99.9"``), each a float in [0, 1].
        ``tnr_at_tpr{P}`` is ID-positive (the IsoMax papers), ``fpr_at_tpr{P}`` is OOD-positive
        (OpenOOD); see the module docstring. ``aupr_in`` / ``aupr_out`` are average precision
        (scikit-learn's ``average_precision_score``, isomax's reports); the ``_trapezoid`` pair
        is the trapezoidal area under the precision-recall curve that OpenOOD v1.5 and
        pytorch-ood report as AUPR_IN / AUPR_OUT (``sklearn.metrics.auc(recall, precision)``),
        which differs from average precision, by points where scores tie.

    Cost: one O(n log n) sort (a SIMD sort of packed 64-bit keys when the values fit 32 bits,
    e.g. float32, or float64 holding float32 values; an argsort otherwise) and vectorised counts
    over distinct thresholds in chunks, so memory beyond the sort buffer stays bounded. Tied scores are one threshold, as in scikit-learn.
    GPU tensors are copied to the CPU.
    """
    ids, ood = _check_pair(id_scores, ood_scores)
    rate = _check_rate(tpr, "tpr")
    return _ood_stats(ids, ood, rate)


def auroc(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Area under the ROC curve, ID positive; tied ID/OOD pairs count 1/2.

    Equals ``sklearn.metrics.roc_auc_score`` with ID labelled 1 (all-equal scores give 0.5).
    """
    ids, ood = _check_pair(id_scores, ood_scores)
    return _ood_stats(ids, ood, 1.0)["auroc"]


def aupr_in(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Average precision with ID positive and scores as they are.

    Step-wise, no interpolation: ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds, exactly
    as ``sklearn.metrics.average_precision_score``.
    """
    ids, ood = _check_pair(id_scores, ood_scores)
    return _ood_stats(ids, ood, 1.0)["aupr_in"]


def aupr_out(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Average precision with OOD positive on the negated scores (see :func:`aupr_in`)."""
    ids, ood = _check_pair(id_scores, ood_scores)
    return _ood_stats(ids, ood, 1.0)["aupr_out"]


def detection_accuracy(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """DTACC: ``max_t 0.5 * (TPR(t) + TNR(t))`` over every threshold, accept-all and
    reject-all included (so the result is at least 0.5). ID positive, accepted = score >= t.
    """
    ids, ood = _check_pair(id_scores, ood_scores)
    return _ood_stats(ids, ood, 1.0)["detection_accuracy"]


def tnr_at_tpr(id_scores: ArrayLike, ood_scores: ArrayLike, tpr: float = 0.95) -> float:
    """TNR at a target TPR, ID positive (the IsoMax / ODIN / Mahalanobis convention).

    Threshold = k-th largest ID score with ``k = ceil(tpr * n_id)``, the first operating point
    that accepts (score >= threshold) at least ``tpr`` of the ID scores; returns the share of OOD
    scores strictly below it. The papers' "FPR at 95% TPR" is ``1 - tnr_at_tpr(...)``; this is
    NOT :func:`fpr_at_tpr`. O(n) (a partition, no sort).
    """
    ids, ood = _check_pair(id_scores, ood_scores)
    rate = _check_rate(tpr, "tpr")
    threshold = _kth_largest(ids, _rank_for_rate(rate, ids.shape[0]))
    return int(np.count_nonzero(ood < threshold)) / ood.shape[0]


def fpr_at_tpr(id_scores: ArrayLike, ood_scores: ArrayLike, tpr: float = 0.95) -> float:
    """FPR at a target TPR, OOD positive (the OpenOOD v1.5 / pytorch-ood "FPR@95").

    Threshold = k-th smallest OOD score with ``k = ceil(tpr * n_ood)``, the first operating
    point that flags (score <= threshold) at least ``tpr`` of the OOD scores; returns the share
    of ID scores flagged. O(n) (a partition, no sort).
    """
    ids, ood = _check_pair(id_scores, ood_scores)
    rate = _check_rate(tpr, "tpr")
    threshold = _kth_smallest(ood, _rank_for_rate(rate, ood.shape[0]))
    return int(np.count_nonzero(ids <= threshold)) / ids.shape[0]


# --------------------------------------------------------------------------------------------
# Classification and calibration
# --------------------------------------------------------------------------------------------


def accuracy(logits: ArrayLike, labels: ArrayLike) -> float:
    """Top-1 accuracy of ``argmax`` over ``[N, C]`` logits (or probabilities) against labels."""
    z = _check_matrix(logits, "logits")
    y = _check_labels(labels, z.shape[0], z.shape[1])
    return int(np.count_nonzero(z.argmax(axis=1) == y)) / z.shape[0]


def _calibration_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width bins ``(lo, hi]`` on [0, 1] (a confidence of 0 goes to the first bin).

    Returns ``edges`` (n_bins + 1), and per bin the count, the sum of confidences and the
    number of correct predictions.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.searchsorted(edges, confidence, side="left") - 1
    np.clip(idx, 0, n_bins - 1, out=idx)
    counts = np.bincount(idx, minlength=n_bins)
    sum_conf = np.bincount(idx, weights=confidence, minlength=n_bins)
    sum_correct = np.bincount(idx, weights=correct.astype(np.float64), minlength=n_bins)
    return edges, counts, sum_conf, sum_correct


def _confidence_correct(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _check_probs(probs)
    y = _check_labels(labels, p.shape[0], p.shape[1])
    return p.max(axis=1), p.argmax(axis=1) == y


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """ECE: ``sum_b (n_b / N) |acc_b - conf_b|`` over equal-width bins of the max probability.

    Bins are ``(i / n_bins, (i + 1) / n_bins]`` (Guo et al., ICML 2017; Naeini et al., AAAI
    2015). ``probs`` is ``[N, C]`` (softmax outputs), ``labels`` integer ``[N]``.
    """
    bins = _check_n_bins(n_bins)
    conf, correct = _confidence_correct(probs, labels)
    _, _, sum_conf, sum_correct = _calibration_bins(conf, correct, bins)
    return float(np.abs(sum_correct - sum_conf).sum() / conf.shape[0])


def maximum_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """MCE: ``max_b |acc_b - conf_b|`` over the non-empty bins of
    :func:`expected_calibration_error` (Naeini et al., AAAI 2015)."""
    bins = _check_n_bins(n_bins)
    conf, correct = _confidence_correct(probs, labels)
    _, counts, sum_conf, sum_correct = _calibration_bins(conf, correct, bins)
    full = counts > 0
    return float(np.max(np.abs(sum_correct[full] - sum_conf[full]) / counts[full]))


def nll(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean negative log-likelihood ``-mean_i log p_i[y_i]``, in nats, computed in float64.

    The probability of the true class is clamped to at least :data:`NLL_EPS` (1e-12) before the
    log, so one confidently wrong sample costs at most ``-log(1e-12) ~= 27.6``.
    """
    p = _check_probs(probs)
    y = _check_labels(labels, p.shape[0], p.shape[1])
    p_true = np.maximum(p[np.arange(p.shape[0]), y], NLL_EPS)
    return float(-np.log(p_true).mean())


def brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Multi-class Brier score: ``mean_i sum_c (p_ic - [y_i = c])^2`` (Brier, 1950), in [0, 2]."""
    p = _check_probs(probs)
    y = _check_labels(labels, p.shape[0], p.shape[1])
    diff = p.copy()
    diff[np.arange(p.shape[0]), y] -= 1.0
    return float(np.einsum("ij,ij->", diff, diff) / p.shape[0])


def reliability_diagram(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = 15
) -> dict[str, np.ndarray | float]:
    """Data for a reliability diagram over equal-width bins of the max probability (no plot).

    Returns a dict with ``"edges"`` (float64, n_bins + 1), and per bin ``"confidence"`` (mean
    max probability) and ``"accuracy"`` (share correct), both float64 with NaN for empty bins,
    ``"counts"`` (int64); plus the scalars ``"ece"`` and ``"mce"`` of the same bins.
    """
    bins = _check_n_bins(n_bins)
    conf, correct = _confidence_correct(probs, labels)
    edges, counts, sum_conf, sum_correct = _calibration_bins(conf, correct, bins)
    full = counts > 0
    mean_conf = np.full(bins, np.nan)
    mean_acc = np.full(bins, np.nan)
    mean_conf[full] = sum_conf[full] / counts[full]
    mean_acc[full] = sum_correct[full] / counts[full]
    return {
        "edges": edges,
        "confidence": mean_conf,
        "accuracy": mean_acc,
        "counts": counts.astype(np.int64),
        "ece": float(np.abs(sum_correct - sum_conf).sum() / conf.shape[0]),
        "mce": float(np.max(np.abs(mean_acc[full] - mean_conf[full]))),
    }


def roc_curve(
    id_scores: ArrayLike, ood_scores: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve, ID positive: ``score >= t`` is accepted, for every distinct score ``t``.

    Returns:
        ``(fpr, tpr, thresholds)``, float64 arrays of one length (the number of distinct scores
        plus one), thresholds falling from ``+inf`` (the point (0, 0)) to the lowest score (the
        point (1, 1)). ``fpr`` is the share of OOD scores accepted, ``tpr`` the share of ID ones.
        As ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)`` with ID
        labelled 1; the area under it is :func:`auroc`.
    """
    ids, ood = _check_pair(id_scores, ood_scores)
    scores = np.concatenate([ids, ood])
    is_id = np.zeros(scores.shape[0], dtype=np.int64)
    is_id[: ids.shape[0]] = 1
    order = np.argsort(scores, kind="stable")[::-1]
    s = scores[order]
    tp = np.cumsum(is_id[order])
    fp = np.arange(1, s.shape[0] + 1) - tp
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.shape[0] - 1]  # each tie group's end
    fpr = np.r_[0.0, fp[last] / ood.shape[0]]
    tpr = np.r_[0.0, tp[last] / ids.shape[0]]
    return fpr, tpr, np.r_[np.inf, s[last].astype(np.float64)]
