"""Scores against float64 formulas written here, extreme inputs and the registry."""

from __future__ import annotations

import math

import pytest
import torch

from isomax import scores


def ref(name: str, logits: torch.Tensor, t: float) -> torch.Tensor:
    out = []
    for row in logits.double().tolist():
        z = [v / t for v in row]
        m = max(z)
        e = [math.exp(v - m) for v in z]
        s = sum(e)
        p = [v / s for v in e]
        neg_entropy = sum(pi * math.log(pi) for pi in p if pi > 0)
        mean = sum(z) / len(z)
        value = {
            "mps": max(p),
            "es": neg_entropy,
            "mds": m,
            "max_logit": m,
            "energy": t * (m + math.log(s)),
            "mmls": m + mean,
            "mmles": m + mean + neg_entropy,
            "mmleps": m + mean + neg_entropy + max(p),
        }[name]
        out.append(value)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("name", scores.names())
@pytest.mark.parametrize("t", [1.0, 0.3, 4.0])
def test_scores_match_float64_reference(name, t):
    torch.manual_seed(0)
    logits = torch.randn(11, 7) * 3
    got = scores.get(name)(logits, temperature=t)
    assert got.shape == (11,) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref(name, logits, t), rtol=2e-5, atol=2e-5)
    got64 = scores.get(name)(logits.double(), temperature=t)
    assert got64.dtype == torch.float64
    torch.testing.assert_close(got64, ref(name, logits, t), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", scores.names())
def test_no_nan_or_inf_for_huge_or_half_logits(name):
    fn = scores.get(name)
    huge = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])
    assert torch.isfinite(fn(huge)).all()
    assert torch.isfinite(fn(huge.half())).all()
    assert torch.isfinite(fn(huge.bfloat16())).all()
    assert torch.isfinite(fn(torch.randn(5, 10).half() * 100, temperature=0.01)).all()


def test_higher_is_more_in_distribution():
    confident = torch.tensor([[10.0, 0.0, 0.0]])
    flat = torch.tensor([[0.0, 0.0, 0.0]])
    for name in ("mps", "es"):
        assert scores.get(name)(confident) > scores.get(name)(flat)
    # distance logits: nearer to a prototype (less negative) is more in-distribution
    assert scores.mds(torch.tensor([[-0.1, -2.0]])) > scores.mds(torch.tensor([[-1.0, -2.0]]))


def test_get_unknown_and_bad_input():
    with pytest.raises(ValueError, match="unknown score 'odin'; valid names: mps, es, mds"):
        scores.get("odin")
    assert scores.get("MMLES") is scores.mmles
    with pytest.raises(ValueError, match="logits must be 2-D"):
        scores.mps(torch.randn(5))
    with pytest.raises(TypeError, match="logits must have a floating dtype"):
        scores.es(torch.ones(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        scores.energy(torch.randn(2, 3), temperature=0.0)


def test_batch_of_one_and_empty_batch():
    for name in scores.names():
        assert scores.get(name)(torch.randn(1, 4)).shape == (1,)
        assert scores.get(name)(torch.randn(0, 4)).shape == (0,)


# -------------------------------------------------------------------------------- bad input (listed in docs/errors.md)


NAN = float("nan")
INF = float("inf")

SCORE_ERRORS = [
    pytest.param(
        lambda: scores.mps(torch.ones(3)),
        ValueError,
        r"logits must be 2-D with shape \(N, C\), got 1-D shape \(3,\)",
        id="score-1d-logits",
    ),
    pytest.param(
        lambda: scores.es(torch.ones(2, 3, dtype=torch.int32)),
        TypeError,
        r"logits must have a floating dtype .*got torch.int32",
        id="score-integer-logits",
    ),
    pytest.param(
        lambda: scores.mds(torch.ones(2, 3), temperature=0),
        ValueError,
        r"temperature must be a finite number > 0, got 0",
        id="score-zero-temperature",
    ),
    pytest.param(
        lambda: scores.mmles(torch.ones(2, 0)),
        ValueError,
        r"logits must have at least one class column, got shape \(N, 0\)",
        id="score-no-classes",
    ),
    pytest.param(
        lambda: scores.get("entropy"),
        ValueError,
        r"unknown score 'entropy'; valid names: mps, es, mds",
        id="score-unknown-name",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), SCORE_ERRORS)
def test_scores_reject(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize("name", scores.names())
def test_scores_non_finite_logits_stay_in_their_row(name):
    """Documented: scores do not raise on NaN/+inf logits; that row's score is non-finite
    (NaN, or +inf for the max-logit family), the other rows are unaffected."""
    fn = scores.get(name)
    z = torch.tensor([[NAN, 0.0, 1.0], [INF, 0.0, 1.0], [1.0, 2.0, 3.0]])
    out = fn(z)
    assert not torch.isfinite(out[:2]).any()
    torch.testing.assert_close(out[2:], fn(z[2:]))


def test_scores_of_an_empty_batch_are_empty():
    """Documented: an empty batch (0, C) is not an error for scores: it gives (0,)."""
    for name in scores.names():
        assert scores.get(name)(torch.zeros(0, 3)).shape == (0,)
