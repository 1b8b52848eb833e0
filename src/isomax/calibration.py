"""Temperature calibration and deployment thresholds.

* :func:`fit_temperature` finds the ``T`` minimising the NLL or the 15-bin ECE of
  ``softmax(logits / T)`` on held-out in-distribution data (Guo et al., "On Calibration of Modern
  Neural Networks", ICML 2017; Macêdo et al., "Distinction Maximization Loss", arXiv 2205.05874).
  Fit it on a validation split, never on the test split.
* :func:`calibrate_head` stores that ``T`` on a head's ``temperature``.
* :func:`threshold_for_tpr` turns ID validation scores into a score threshold that keeps a given
  share of in-distribution inputs, with the same rule as :func:`isomax.metrics.tnr_at_tpr`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from isomax.metrics import (
    ArrayLike,
    _calibration_bins,
    _check_labels,
    _check_matrix,
    _check_n_bins,
    _check_rate,
    _check_scores,
    _kth_largest,
    _rank_for_rate,
)

from .errors import InputError

__all__ = ["calibrate_head", "fit_temperature", "threshold_for_tpr"]

_OBJECTIVES = ("nll", "ece")
#: Coarse grid density of the temperature search, in points per decade of the bounds.
_GRID_PER_DECADE = 12
#: Golden-section stopping width in log(T) (a relative precision of about 1e-7 on T).
_LOG_TOL = 1e-7
_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def _check_bounds(bounds: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise TypeError(f"bounds must be a pair of numbers (low, high), got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo < hi):
        raise InputError(f"bounds must satisfy 0 < low < high < inf, got {bounds!r}")
    return lo, hi


def _objective(
    logits: np.ndarray, labels: np.ndarray, objective: str, n_bins: int
) -> Callable[[float], float]:
    """Return ``T -> NLL or ECE of softmax(logits / T)``, computed in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)  # max(z / T) = 0 for every T > 0: stable logsumexp
    rows = np.arange(z.shape[0])
    z_true = z[rows, labels]
    if objective == "nll":
        mean_z_true = float(z_true.mean())

        def nll_at(t: float) -> float:
            log_norm = np.log(np.exp(z / t).sum(axis=1))
            return float(log_norm.mean()) - mean_z_true / t

        return nll_at

    # The prediction argmax(z) does not depend on T; the confidence is 1 / sum(exp(z / T)).
    correct = z.argmax(axis=1) == labels
    n = z.shape[0]

    def ece_at(t: float) -> float:
        conf = 1.0 / np.exp(z / t).sum(axis=1)
        _, _, sum_conf, sum_correct = _calibration_bins(conf, correct, n_bins)
        return float(np.abs(sum_correct - sum_conf).sum() / n)

    return ece_at


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    objective: str = "nll",
    bounds: tuple[float, float] = (0.001, 100.0),
    n_bins: int = 15,
) -> float:
    """Temperature ``T`` in ``bounds`` minimising the NLL or ECE of ``softmax(logits / T)``.

    The search runs in log(T): a coarse log-spaced grid over ``bounds`` (12 points per decade),
    then golden-section search between the neighbours of the best grid point, down to a relative
    width of about 1e-7. The best value ever evaluated is returned, so the result is never worse
    than the grid. The ECE objective is piecewise smooth and noisier; the NLL one is the MLE.

    Args:
        logits: ``[N, C]`` uncalibrated logits (torch or NumPy; computed in float64).
        labels: ``[N]`` integer labels in ``[0, C)``.
        objective: ``"nll"`` (mean negative log-likelihood) or ``"ece"`` (``n_bins``-bin ECE).
        bounds: ``(low, high)`` with ``0 < low < high``.
        n_bins: number of equal-width confidence bins for ``objective="ece"``.

    Warns (RuntimeWarning) when the result lies at a bound of the range.
    """
    z = _check_matrix(logits, "logits")
    y = _check_labels(labels, z.shape[0], z.shape[1])
    if objective not in _OBJECTIVES:
        raise InputError(f"objective must be one of {_OBJECTIVES}, got {objective!r}")
    lo, hi = _check_bounds(bounds)
    bins = _check_n_bins(n_bins)
    f = _objective(z, y, objective, bins)

    u_lo, u_hi = math.log(lo), math.log(hi)
    n_grid = max(3, math.ceil(_GRID_PER_DECADE * (u_hi - u_lo) / math.log(10.0)) + 1)
    grid = np.linspace(u_lo, u_hi, n_grid)
    values = [f(math.exp(u)) for u in grid]
    i = int(np.argmin(values))
    best_u, best_f = float(grid[i]), values[i]

    a, b = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, n_grid - 1)])
    c, d = b - _INV_PHI * (b - a), a + _INV_PHI * (b - a)
    fc, fd = f(math.exp(c)), f(math.exp(d))
    for _ in range(200):
        if b - a <= _LOG_TOL:
            break
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _INV_PHI * (b - a)
            fc = f(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + _INV_PHI * (b - a)
            fd = f(math.exp(d))
    for u, fu in ((c, fc), (d, fd)):
        if fu < best_f:
            best_u, best_f = u, fu
    t = float(min(max(math.exp(best_u), lo), hi))
    if min(best_u - u_lo, u_hi - best_u) <= 2 * _LOG_TOL:
        warnings.warn(
            f"fit_temperature stopped at a bound of its search range: T = {t:.6g} with bounds "
            f"{(lo, hi)}; the {objective} optimum may lie outside, widen bounds",
            RuntimeWarning,
            stacklevel=2,
        )
    return t


def calibrate_head(
    head: Any,
    logits: ArrayLike,
    labels: ArrayLike,
    objective: str = "nll",
    **options: Any,
) -> float:
    """Fit a temperature on held-out ID data and store it on ``head.temperature``.

    ``logits`` must be the head's outputs *at temperature 1* (before any calibration): the
    fitted ``T`` replaces the current value, it is not multiplied into it. A tensor attribute
    (buffer or parameter) is filled in place; a plain number is replaced by a float.
    ``objective`` and the keyword ``options`` (``bounds``, ``n_bins``) are those of
    :func:`fit_temperature`.

    Returns:
        The fitted temperature (see :func:`fit_temperature`).
    """
    if not hasattr(head, "temperature"):
        raise AttributeError(
            f"head ({type(head).__name__}) has no 'temperature' attribute; expected a float "
            "attribute or a registered buffer"
        )
    current = head.temperature
    is_number = isinstance(current, (int, float)) and not isinstance(current, bool)
    if isinstance(current, torch.Tensor):
        if current.numel() == 0 or not current.is_floating_point():
            raise TypeError(
                f"head.temperature must be a non-empty floating-point tensor, got dtype "
                f"{current.dtype} and shape {tuple(current.shape)}"
            )
    elif not is_number:
        raise TypeError(
            f"head.temperature must be a float or a tensor, got {type(current).__name__}"
        )
    t = fit_temperature(logits, labels, objective, **options)
    if isinstance(current, torch.Tensor):
        with torch.no_grad():
            current.fill_(t)
    else:
        head.temperature = t
    return t


def threshold_for_tpr(id_val_scores: ArrayLike, tpr: float = 0.95) -> float:
    """Score threshold that accepts (score >= threshold) at least ``tpr`` of ID validation scores.

    It is the k-th largest score with ``k = ceil(tpr * n)``, the rule of
    :func:`isomax.metrics.tnr_at_tpr`: "keep 95%" is the 5th-percentile rule of the IsoMax
    papers, taken as an actual score (no interpolation). Higher scores are more in-distribution.
    """
    scores, _ = _check_scores(id_val_scores, "id_val_scores")
    rate = _check_rate(tpr, "tpr")
    return float(_kth_largest(scores, _rank_for_rate(rate, scores.shape[0])))
