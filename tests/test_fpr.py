"""Fractional Probability Regularization: mosaics pixel by pixel, targets, loss formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import isomax
from isomax import FPRLoss, FPRTargets, FractionalProbabilityRegularization


def _no_perm(monkeypatch):
    monkeypatch.setattr(torch, "randperm", lambda n, generator=None: torch.arange(n))


def test_mosaics_pixel_by_pixel_on_hand_made_batch(monkeypatch):
    _no_perm(monkeypatch)
    n, h, w = 8, 5, 7  # odd image size: top/left quadrants take rows 0-1 and columns 0-2
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 2, h, w).clone()
    labels = torch.tensor([0, 1, 2, 3, 4, 4, 1, 2])
    out, t = FractionalProbabilityRegularization(5)(images, labels)
    assert t.num_plain == 4
    assert torch.equal(out[:4], images[:4])
    # second half = images 4..7 (values 4..7); rolled by k along the half: (i - k) mod 4
    for i in range(4):
        src = [4 + i, 4 + (i - 1) % 4, 4 + (i - 2) % 4, 4 + (i - 3) % 4]
        m = out[4 + i]
        assert (m[:, :2, :3] == src[0]).all()  # top-left: the image itself
        assert (m[:, :2, 3:] == src[1]).all()  # top-right: rolled by 1
        assert (m[:, 2:, :3] == src[2]).all()  # bottom-left: rolled by 2
        assert (m[:, 2:, 3:] == src[3]).all()  # bottom-right: rolled by 3
    # targets: one-hot for the plain half, 0.25 per source label, adding up on repeats
    assert torch.equal(t.probs[:4], F.one_hot(labels[:4], 5).float())
    # mosaic 0 has sources 4,7,6,5 -> labels 4,2,1,4 -> {4: 0.5, 2: 0.25, 1: 0.25}
    torch.testing.assert_close(t.probs[4], torch.tensor([0.0, 0.25, 0.25, 0.0, 0.5]))
    # mosaic 1 has sources 5,4,7,6 -> labels 4,4,2,1
    torch.testing.assert_close(t.probs[5], torch.tensor([0.0, 0.25, 0.25, 0.0, 0.5]))
    # mosaic 2 has sources 6,5,4,7 -> labels 1,4,4,2
    torch.testing.assert_close(t.probs[6], torch.tensor([0.0, 0.25, 0.25, 0.0, 0.5]))
    assert torch.allclose(t.probs.sum(1), torch.ones(n))
    assert torch.equal(t.labels, labels)


def test_same_generator_seed_same_batch_and_permutation_applied():
    x = torch.randn(10, 3, 6, 6)
    y = torch.randint(0, 3, (10,))
    a = FractionalProbabilityRegularization(3, torch.Generator().manual_seed(1))(x, y)
    b = FractionalProbabilityRegularization(3, torch.Generator().manual_seed(1))(x, y)
    c = FractionalProbabilityRegularization(3, torch.Generator().manual_seed(2))(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1].probs, b[1].probs)
    assert not torch.equal(a[0], c[0])
    # the plain half is a permutation of input images
    plain = a[0][: a[1].num_plain]
    for img, lab in zip(plain, a[1].labels[: a[1].num_plain]):
        idx = [i for i in range(10) if torch.equal(x[i], img)]
        assert len(idx) == 1 and y[idx[0]] == lab


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_tiny_and_odd_batches(n):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 3, 3)
    y = torch.zeros(n, dtype=torch.long)
    out, t = FractionalProbabilityRegularization(2, gen)(x, y)
    assert out.shape == x.shape and t.probs.shape == (n, 2) and t.num_plain == n - n // 2
    logits = torch.randn(n, 2, requires_grad=True)
    loss = FPRLoss()(logits, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_loss_formula_float64():
    torch.manual_seed(0)
    z = torch.randn(6, 4, dtype=torch.float64)
    probs = torch.tensor(
        [
            [1, 0, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0.5, 0.25, 0, 0.25],
            [0, 0, 0, 1.0],
            [0.25, 0.25, 0.25, 0.25],
        ],
        dtype=torch.float64,
    )
    labels = torch.tensor([0, 1, 2, 0, 3, 1])
    t = FPRTargets(probs, labels, 3)
    for alpha in (1.0, 0.5, 0.25):
        got = FPRLoss(10.0, alpha)(z, t)
        q = torch.softmax(10 * z, 1)
        ce = -sum(torch.log(q[i, labels[i]]) for i in range(3)) / 3
        kl = 0.0
        for i in range(3, 6):
            for j in range(4):
                if probs[i, j] > 0:
                    kl = kl + probs[i, j] * (torch.log(probs[i, j]) - torch.log(q[i, j]))
        want = 0.5 * (ce + alpha * kl / 3)
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-7)
    # with plain labels the criterion is the IsoMax loss
    torch.testing.assert_close(
        FPRLoss()(z, labels).double(), isomax.IsoMaxLoss()(z, labels).double(), rtol=1e-6, atol=1e-6
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"alpha must be one of \(1.0, 0.5, 0.25\)"):
        FPRLoss(alpha=0.3)
    fpr = FractionalProbabilityRegularization(3)
    with pytest.raises(ValueError, match="images must be a 4-D tensor"):
        fpr(torch.randn(4, 3, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        fpr(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="empty batch"):
        fpr(torch.randn(0, 3, 8, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets.probs has shape \(2, 3\), expected"):
        FPRLoss()(
            torch.randn(2, 4), FPRTargets(torch.ones(2, 3) / 3, torch.zeros(2, dtype=torch.long), 1)
        )


def test_two_line_training_loop_with_dismax():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(48, 16), isomax.DisMaxHead(16, 3)
    )
    fpr = FractionalProbabilityRegularization(3, torch.Generator().manual_seed(0))
    criterion = FPRLoss(alpha=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(9, 3, 4, 4)
    y = torch.randint(0, 3, (9,))
    inputs, targets = fpr(x, y)
    loss = criterion(model(inputs), targets)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
