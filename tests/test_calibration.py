"""Tests for isomax.calibration: temperature fitting, head calibration, thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from isomax.calibration import calibrate_head, fit_temperature, threshold_for_tpr
from isomax.metrics import expected_calibration_error, nll, tnr_at_tpr


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def synthetic(
    t_true: float, n: int = 12_000, c: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits z ~ N(0, 4^2) and labels drawn from softmax(z / t_true): the true T is t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 4.0, (n, c))
    p = _softmax(z / t_true)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z, labels


@pytest.mark.parametrize("t_true", [0.5, 2.0, 5.0])
@pytest.mark.parametrize(("objective", "rel"), [("nll", 0.05), ("ece", 0.15)])
def test_recovers_known_temperature(t_true: float, objective: str, rel: float) -> None:
    z, labels = synthetic(t_true, seed=int(10 * t_true))
    t = fit_temperature(z, labels, objective=objective)
    assert isinstance(t, float)
    assert t == pytest.approx(t_true, rel=rel)


def test_nll_fit_is_a_minimum_and_matches_brute_force() -> None:
    z, labels = synthetic(2.0, n=2_000, seed=1)
    t = fit_temperature(z, labels)

    def loss(temp: float) -> float:
        return nll(_softmax(z / temp), labels)

    assert loss(t) <= loss(t * 1.001)
    assert loss(t) <= loss(t / 1.001)
    # brute force: float64 NLL of softmax(z / T) on a fine grid around T = 2 (spacing 0.16%)
    grid = np.exp(np.linspace(np.log(1.6), np.log(2.6), 301))
    zs = z[None] / grid[:, None, None]
    top = zs.max(axis=2, keepdims=True)
    log_norm = np.log(np.exp(zs - top).sum(axis=2)) + top[..., 0]
    losses = (log_norm - zs[:, np.arange(z.shape[0]), labels]).mean(axis=1)
    assert t == pytest.approx(grid[int(np.argmin(losses))], rel=2e-3)


def test_ece_fit_does_not_exceed_grid_and_t1() -> None:
    z, labels = synthetic(3.0, n=5_000, seed=2)
    t = fit_temperature(z, labels, objective="ece", n_bins=15)
    ece_fit = expected_calibration_error(_softmax(z / t), labels)
    for other in (1.0, 2.0, 3.0, 4.0):
        assert ece_fit <= expected_calibration_error(_softmax(z / other), labels) + 1e-12


def test_torch_float32_and_numpy_float64_agree() -> None:
    z, labels = synthetic(2.0, n=4_000, seed=3)
    t_np = fit_temperature(z, labels)
    t_torch = fit_temperature(torch.from_numpy(z).float(), torch.from_numpy(labels))
    assert t_torch == pytest.approx(t_np, rel=1e-4)


def test_result_stays_in_bounds() -> None:
    z, labels = synthetic(5.0, n=2_000, seed=4)
    assert fit_temperature(z, labels, bounds=(0.01, 1.0)) == pytest.approx(1.0, rel=1e-6)
    assert fit_temperature(z, labels, bounds=(10.0, 20.0)) == pytest.approx(10.0, rel=1e-6)


def test_extreme_logits_stay_finite() -> None:
    z = np.array([[1e4, -1e4, 0.0], [0.0, 3e3, -5.0], [-1.0, -1.0, -1.0]])
    labels = np.array([1, 1, 2])
    t = fit_temperature(z, labels)
    assert 0.001 <= t <= 100.0
    assert np.isfinite(t)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"objective": "brier"}, ValueError, r"objective must be one of \('nll', 'ece'\)"),
        ({"bounds": (0.0, 1.0)}, ValueError, "bounds must satisfy 0 < low < high"),
        ({"bounds": (2.0, 1.0)}, ValueError, "bounds must satisfy 0 < low < high"),
        ({"bounds": (1.0, float("inf"))}, ValueError, "bounds must satisfy"),
        ({"bounds": 5.0}, TypeError, "bounds must be a pair of numbers"),
        ({"bounds": (1.0, 2.0, 3.0)}, TypeError, "bounds must be a pair of numbers"),
        ({"n_bins": 0}, ValueError, "n_bins must be >= 1"),
    ],
)
def test_fit_temperature_rejects_bad_options(
    kwargs: dict, error: type[Exception], match: str
) -> None:
    z, labels = synthetic(1.0, n=50)
    with pytest.raises(error, match=match):
        fit_temperature(z, labels, **kwargs)


def test_fit_temperature_rejects_bad_arrays() -> None:
    z, labels = synthetic(1.0, n=50)
    with pytest.raises(ValueError, match=r"logits must be 2-D \[N, C\]"):
        fit_temperature(z[0], labels[:1])
    with pytest.raises(
        ValueError, match=r"labels must have shape \(50,\) to match the predictions, got \(49,\)"
    ):
        fit_temperature(z, labels[:49])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\], found 10"):
        fit_temperature(z, np.full(50, 10))
    with pytest.raises(TypeError, match="labels must hold integer class indices"):
        fit_temperature(z, labels.astype(np.float32))
    z_bad = z.copy()
    z_bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"logits must be finite.*\(3, 1\)"):
        fit_temperature(z_bad, labels)


class BufferHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("temperature", torch.ones(()))


class FloatHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.temperature = 1.0


def test_calibrate_head_fills_buffer_in_place() -> None:
    z, labels = synthetic(2.0, n=3_000, seed=5)
    head = BufferHead()
    buffer = head.temperature
    t = calibrate_head(head, torch.from_numpy(z), torch.from_numpy(labels))
    assert head.temperature is buffer  # same tensor, still a registered buffer
    assert "temperature" in dict(head.named_buffers())
    assert head.temperature.item() == pytest.approx(t, rel=1e-6)
    assert t == pytest.approx(fit_temperature(z, labels))
    assert head.state_dict()["temperature"].item() == pytest.approx(t, rel=1e-6)


def test_calibrate_head_sets_float_attribute() -> None:
    z, labels = synthetic(0.5, n=3_000, seed=6)
    head = FloatHead()
    t = calibrate_head(head, z, labels, objective="ece")
    assert isinstance(head.temperature, float)
    assert head.temperature == t == fit_temperature(z, labels, objective="ece")


def test_calibrate_head_passes_the_fit_options_on() -> None:
    z, labels = synthetic(0.5, n=2_000, seed=7)
    head = FloatHead()
    options = {"bounds": (0.8, 5.0), "n_bins": 10}
    with pytest.warns(RuntimeWarning, match="bound"):
        expected = fit_temperature(z, labels, "ece", **options)
    with pytest.warns(RuntimeWarning, match="bound"):
        assert calibrate_head(head, z, labels, "ece", **options) == expected
    assert head.temperature == expected == pytest.approx(0.8)  # the bound, not T = 0.5
    with pytest.raises(TypeError, match="n_bin"):
        calibrate_head(head, z, labels, n_bin=10)


def test_calibrate_head_rejects_heads_without_temperature() -> None:
    z, labels = synthetic(1.0, n=50)
    with pytest.raises(AttributeError, match="Linear.*no 'temperature' attribute"):
        calibrate_head(nn.Linear(2, 2), z, labels)

    class Bad:
        temperature = "hot"

    with pytest.raises(TypeError, match="head.temperature must be a float or a tensor, got str"):
        calibrate_head(Bad(), z, labels)

    class IntTensor:
        temperature = torch.ones(1, dtype=torch.long)

    with pytest.raises(TypeError, match="floating-point tensor"):
        calibrate_head(IntTensor(), z, labels)


def test_threshold_for_tpr_hand_computed() -> None:
    scores = np.arange(1.0, 21.0)  # 1 ... 20
    # k = ceil(0.95 * 20) = 19 -> 19th largest = 2.0; scores >= 2 are 19 of 20 = 95%.
    assert threshold_for_tpr(scores) == 2.0
    # k = ceil(0.5 * 20) = 10 -> 10th largest = 11.0.
    assert threshold_for_tpr(torch.from_numpy(scores), tpr=0.5) == 11.0
    assert threshold_for_tpr(scores, tpr=1.0) == 1.0
    # 0.55 * 100 is 55.00000000000001 in floating point; the rule still gives k = 55.
    assert threshold_for_tpr(np.arange(100.0), tpr=0.55) == 45.0


@pytest.mark.parametrize("tpr", [0.95, 0.9, 0.5, 0.01])
def test_threshold_for_tpr_rule_and_consistency(tpr: float) -> None:
    rng = np.random.default_rng(8)
    ids = rng.integers(0, 50, 777).astype(np.float32)  # plenty of ties
    ood = rng.integers(-10, 40, 500).astype(np.float32)
    thr = threshold_for_tpr(ids, tpr)
    k = int(np.ceil(tpr * ids.size - 1e-9))
    assert np.count_nonzero(ids >= thr) >= k  # keeps at least tpr of the ID scores
    assert np.count_nonzero(ids > thr) < k  # and is the highest such score
    assert tnr_at_tpr(ids, ood, tpr) == np.count_nonzero(ood < thr) / ood.size


def test_threshold_for_tpr_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="id_val_scores must not be empty"):
        threshold_for_tpr(np.array([]))
    with pytest.raises(ValueError, match=r"tpr must be in \(0, 1\]"):
        threshold_for_tpr(np.array([1.0]), tpr=0.0)
    with pytest.raises(ValueError, match="id_val_scores must be 1-D"):
        threshold_for_tpr(np.ones((2, 2)))


# -------------------------------------------------------------------------------- bad input (listed in docs/errors.md)


NAN = float("nan")

LOGITS = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
CALIBRATION_ERRORS = [
    pytest.param(
        lambda: fit_temperature(np.ones(3), np.array([0, 1, 2])),
        ValueError,
        r"logits must be 2-D \[N, C\], got shape \(3,\)",
        id="fit-1d-logits",
    ),
    pytest.param(
        lambda: fit_temperature(np.array([[NAN, 1.0]]), np.array([0])),
        ValueError,
        r"logits must be finite, found 1 NaN/inf",
        id="fit-nan-logits",
    ),
    pytest.param(
        lambda: fit_temperature(LOGITS, np.array([0, 5])),
        ValueError,
        r"labels must lie in \[0, 2\], found 5",
        id="fit-label-out-of-range",
    ),
    pytest.param(
        lambda: fit_temperature(LOGITS, torch.tensor([0.0, 1.0])),
        TypeError,
        r"labels must hold integer class indices \(torch.long\), got dtype torch.float32",
        id="fit-float-labels",
    ),
    pytest.param(
        lambda: fit_temperature(LOGITS, np.array([0, 1]), objective="mse"),
        ValueError,
        r"objective must be one of \('nll', 'ece'\), got 'mse'",
        id="fit-unknown-objective",
    ),
    pytest.param(
        lambda: fit_temperature(LOGITS, np.array([0, 1]), bounds=(5.0, 1.0)),
        ValueError,
        r"bounds must satisfy 0 < low < high < inf, got \(5.0, 1.0\)",
        id="fit-bounds-reversed",
    ),
    pytest.param(
        lambda: fit_temperature(LOGITS, np.array([0, 1]), bounds=5.0),
        TypeError,
        r"bounds must be a pair of numbers \(low, high\), got 5.0",
        id="fit-bounds-not-a-pair",
    ),
    pytest.param(
        lambda: threshold_for_tpr(np.array([], dtype=np.float32)),
        ValueError,
        r"id_val_scores must not be empty",
        id="threshold-empty",
    ),
    pytest.param(
        lambda: threshold_for_tpr(torch.tensor([0.1, NAN])),
        ValueError,
        r"id_val_scores must be finite",
        id="threshold-nan",
    ),
    pytest.param(
        lambda: threshold_for_tpr(np.array([0.1, 0.2]), tpr=1.5),
        ValueError,
        r"tpr must be in \(0, 1\], got 1.5",
        id="threshold-tpr-above-1",
    ),
    pytest.param(
        lambda: calibrate_head(torch.nn.Linear(2, 3), LOGITS, np.array([0, 1])),
        AttributeError,
        r"head \(Linear\) has no 'temperature' attribute; expected a float attribute or a "
        r"registered buffer",
        id="calibrate-head-without-temperature",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), CALIBRATION_ERRORS)
def test_calibration_rejects(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_calibration_works_with_one_sample():
    t = fit_temperature(np.array([[2.0, 1.0]]), np.array([0]))
    assert 0.001 <= t <= 100.0
    assert threshold_for_tpr(np.array([0.3])) == pytest.approx(0.3)
