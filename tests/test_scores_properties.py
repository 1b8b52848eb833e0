"""Property-based tests of the scores: any finite logits give finite values in range."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from isomax import scores

finite32 = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)
logit_arrays = st.integers(1, 12).flatmap(
    lambda c: arrays(np.float32, st.tuples(st.integers(1, 6), st.just(c)), elements=finite32)
)
temperatures = st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(logit_arrays, temperatures)
def test_every_score_is_finite_for_finite_logits(z, t):
    logits = torch.from_numpy(z)
    for name in scores.names():
        for x in (logits, logits.half(), logits.double()):
            value = scores.get(name)(x, temperature=t)
            assert value.shape == (z.shape[0],)
            assert torch.isfinite(value).all(), (name, x.dtype)


@settings(max_examples=150, deadline=None)
@given(logit_arrays, temperatures)
def test_probability_scores_lie_in_their_ranges(z, t):
    logits = torch.from_numpy(z).double()
    c = z.shape[1]
    mps = scores.mps(logits, t)
    es = scores.es(logits, t)
    assert ((mps >= 1 / c - 1e-9) & (mps <= 1 + 1e-12)).all()
    assert ((es >= -math.log(c) - 1e-9) & (es <= 1e-12)).all()
    # energy >= max logit (logsumexp bound), and MDS equals the max logit over T
    assert (scores.energy(logits, t) >= logits.amax(1) - 1e-6 * logits.abs().amax(1) - 1e-9).all()
    torch.testing.assert_close(scores.mds(logits, t), logits.amax(1) / t)


@settings(max_examples=100, deadline=None)
@given(logit_arrays, st.floats(-100, 100, allow_nan=False))
def test_softmax_scores_ignore_a_constant_shift(z, shift):
    logits = torch.from_numpy(z).double()
    for fn in (scores.mps, scores.es):
        torch.testing.assert_close(fn(logits + shift), fn(logits), rtol=1e-6, atol=1e-9)
