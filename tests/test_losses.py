"""Losses: bad input gives a clear error, NaN logits a NaN loss, any integer labels work."""

from __future__ import annotations

import pytest
import torch

import isomax

NAN = float("nan")


LOSS_ERRORS = [
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3), torch.tensor([0.0, 1.0])),
        TypeError,
        r"targets must hold integer class indices \(torch.long\), got dtype torch.float32",
        id="loss-float-targets",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3), torch.tensor([0, 3])),
        ValueError,
        r"targets must lie in \[0, 2\] .*found 3",
        id="loss-target-too-large",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3), torch.tensor([0, -1])),
        ValueError,
        r"targets must lie in \[0, 2\] .*found -1",
        id="loss-negative-target",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3), torch.tensor([0, 1, 2])),
        ValueError,
        r"targets must have shape \(2,\) to match the logits, got \(3,\)",
        id="loss-target-length",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3, 1), torch.tensor([0, 1])),
        ValueError,
        r"logits must be 2-D with shape \(N, C\), got 3-D shape \(2, 3, 1\)",
        id="loss-3d-logits",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1])),
        TypeError,
        r"logits must have a floating dtype .*got torch.int64",
        id="loss-integer-logits",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss(reduction="avg"),
        ValueError,
        r"reduction must be one of \('mean', 'sum', 'none'\), got 'avg'",
        id="loss-unknown-reduction",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss(entropic_scale=0),
        ValueError,
        r"entropic_scale must be a finite number > 0, got 0",
        id="loss-zero-entropic-scale",
    ),
    pytest.param(
        lambda: isomax.FPRLoss(10.0, 0.3),
        ValueError,
        r"alpha must be one of \(1.0, 0.5, 0.25\), got 0.3",
        id="loss-fpr-alpha",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), LOSS_ERRORS)
def test_losses_reject(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_loss_nan_logits_return_nan():
    """Documented: the loss does not check values; NaN logits give a NaN loss, which
    :func:`isomax.engine.train` turns into ``NonFiniteLossError``."""
    loss = isomax.IsoMaxLoss()(torch.tensor([[NAN, 0.0, 1.0]]), torch.tensor([1]))
    assert torch.isnan(loss)


def test_int32_labels_are_accepted_by_the_losses():
    z = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 1])
    torch.testing.assert_close(isomax.IsoMaxLoss()(z, y.int()), isomax.IsoMaxLoss()(z, y))
    fpr = isomax.FractionalProbabilityRegularization(3, torch.Generator().manual_seed(0))
    _, t = fpr(torch.randn(4, 1, 4, 4), y.int())
    assert torch.isfinite(isomax.FPRLoss()(z, t))
