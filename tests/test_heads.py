"""Heads against float64 formulas written here, gradients, invariances and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import isomax
from isomax import DisMaxHead, IsoMaxHead, IsoMaxLoss, IsoMaxPlusHead
from isomax.models import create_model

HEADS = [IsoMaxHead, IsoMaxPlusHead, DisMaxHead]


def ref_logits(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Direct float64 formulas of SPEC section 2, one sample and one class at a time."""
    x = x.double()
    p = head.prototypes.detach().double()
    t = float(head.temperature)
    n, c = x.shape[0], p.shape[0]
    out = torch.empty(n, c, dtype=torch.float64)
    for i in range(n):
        for j in range(c):
            if isinstance(head, IsoMaxPlusHead):
                s = abs(head.distance_scale.item())
                xi = x[i] / max(x[i].norm().item(), 1e-12)
                pj = p[j] / max(p[j].norm().item(), 1e-12)
                out[i, j] = s * (xi - pj).norm()
            else:
                out[i, j] = (x[i] - p[j]).norm()
    if isinstance(head, DisMaxHead):
        d = out / math.sqrt(2.0)
        return -(d + d.mean(dim=1, keepdim=True)) / t
    return -out / t


@pytest.mark.parametrize("cls", HEADS)
def test_logits_match_float64_reference(cls):
    torch.manual_seed(0)
    head = cls(64, 7)
    with torch.no_grad():
        head.prototypes.normal_()  # IsoMax starts at zero: move the prototypes away
        if hasattr(head, "distance_scale"):
            head.distance_scale.fill_(-3.5)  # the absolute value is used
        head.temperature.fill_(1.7)
    x = torch.randn(9, 64) * 3
    got = head(x)
    assert got.dtype == torch.float32 and got.shape == (9, 7)
    want = ref_logits(head, x)
    rel = ((got.double() - want).abs() / want.abs().clamp_min(1e-12)).max().item()
    assert rel < 1e-5, rel


def test_initialisation_follows_spec():
    torch.manual_seed(0)
    iso = IsoMaxHead(128, 100)
    assert torch.equal(iso.prototypes, torch.zeros(100, 128))
    assert not hasattr(iso, "distance_scale")
    for cls in (IsoMaxPlusHead, DisMaxHead):
        h = cls(128, 100)
        assert h.distance_scale.shape == (1,) and h.distance_scale.item() == 1.0
        p = h.prototypes.detach()
        assert abs(p.mean().item()) < 0.02 and abs(p.std().item() - 1.0) < 0.02
        assert float(h.temperature) == 1.0
    assert isinstance(iso.prototypes, nn.Parameter) and isinstance(h.prototypes, nn.Parameter)


@pytest.mark.parametrize("cls", HEADS)
def test_gradcheck_float64(cls):
    torch.manual_seed(1)
    head = cls(5, 3).double()
    with torch.no_grad():
        head.prototypes.normal_()
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: head(a), (x,))
    params = list(head.parameters())
    assert torch.autograd.gradcheck(
        lambda *ps: torch.func.functional_call(
            head, dict(zip(["prototypes", "distance_scale"], ps)), (x,)
        ),
        tuple(p.detach().requires_grad_() for p in params),
    )


@pytest.mark.parametrize("cls", HEADS)
def test_finite_gradients_at_prototype_and_zero_feature(cls):
    head = cls(6, 3)
    with torch.no_grad():
        head.prototypes.normal_()
    x = torch.stack([head.prototypes[1].detach().clone(), torch.zeros(6)]).requires_grad_()
    loss = IsoMaxLoss()(head(x), torch.tensor([1, 0]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(x.grad).all()
    for p in head.parameters():
        assert torch.isfinite(p.grad).all()
    # IsoMax at initialisation: all prototypes are zero, so a zero feature sits on all of them.
    iso = IsoMaxHead(6, 3)
    z = torch.zeros(2, 6, requires_grad=True)
    IsoMaxLoss()(iso(z), torch.tensor([0, 2])).backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(iso.prototypes.grad).all()


def test_isomaxplus_invariant_to_positive_feature_rescaling():
    torch.manual_seed(2)
    head = IsoMaxPlusHead(32, 5)
    x = torch.randn(8, 32)
    for c in (1e-3, 0.5, 7.0, 1e3):
        torch.testing.assert_close(head(c * x), head(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(IsoMaxHead(32, 5)(x), IsoMaxHead(32, 5)(3 * x))


def test_dismax_mean_term_leaves_loss_and_gradients_unchanged():
    torch.manual_seed(3)
    head = DisMaxHead(16, 6)
    x = torch.randn(10, 16)
    y = torch.randint(0, 6, (10,))
    loss_fn = IsoMaxLoss()

    def grads(logits_fn):
        head.zero_grad()
        loss = loss_fn(logits_fn(x), y)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in head.parameters()]

    loss_full, g_full = grads(head)
    loss_plain, g_plain = grads(lambda a: -head.distances(a) / head.temperature)
    torch.testing.assert_close(loss_full, loss_plain)
    for a, b in zip(g_full, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # ... but it does change the logits themselves (and so MMLS-type scores).
    assert not torch.allclose(head(x), -head.distances(x))


def test_temperature_divides_logits():
    torch.manual_seed(4)
    for cls in HEADS:
        head = cls(8, 3)
        x = torch.randn(4, 8)
        base = head(x)
        head.temperature.fill_(4.0)
        torch.testing.assert_close(head(x), base / 4.0)
    with pytest.raises(ValueError, match="temperature"):
        IsoMaxHead(8, 3, temperature=0.0)


@pytest.mark.parametrize("cls", HEADS)
def test_batch_of_one_and_state_dict(cls):
    head = cls(8, 3)
    out = head(torch.randn(1, 8))
    assert out.shape == (1, 3)
    sd = head.state_dict()
    assert "temperature" in sd and "prototypes" in sd
    other = cls(8, 3)
    other.load_state_dict(sd)
    x = torch.randn(3, 8)
    torch.testing.assert_close(other(x), head(x))


@pytest.mark.parametrize("cls", HEADS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_computes_distances_in_float32(cls, dtype):
    torch.manual_seed(5)
    head = cls(64, 10)
    with torch.no_grad():
        head.prototypes.normal_()
    x = torch.randn(16, 64)
    ref = head(x)
    with torch.autocast("cpu", dtype=dtype):
        lin = nn.Linear(64, 64)
        feats = lin(x)  # low precision, as a backbone under autocast would produce
        assert feats.dtype == dtype
        out = head(feats)
        assert out.dtype == torch.float32
    torch.testing.assert_close(out, head(feats.float()), rtol=1e-5, atol=1e-5)
    assert ref.dtype == torch.float32


def test_isomax_loss_scale_one_equals_cross_entropy_on_linear_head():
    torch.manual_seed(6)
    lin = nn.Linear(20, 5)
    x = torch.randn(12, 20)
    y = torch.randint(0, 5, (12,))
    y[3] = -100
    for reduction in ("mean", "sum", "none"):
        a = IsoMaxLoss(entropic_scale=1.0, reduction=reduction)(lin(x), y)
        b = nn.CrossEntropyLoss(reduction=reduction)(lin(x), y)
        torch.testing.assert_close(a, b)


def test_isomax_loss_against_float64_formula_and_stability():
    torch.manual_seed(7)
    z = torch.randn(6, 4, dtype=torch.float64) * 5
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    want = torch.stack(
        [-(10 * z[i, y[i]] - torch.log(torch.exp(10 * z[i]).sum())) for i in range(6)]
    )
    torch.testing.assert_close(IsoMaxLoss()(z, y), want.mean())
    huge = torch.tensor([[-1e4, 0.0, -5e3]])
    val = IsoMaxLoss()(huge, torch.tensor([0]))
    assert torch.isfinite(val) and val.item() == pytest.approx(1e5, rel=1e-6)


def test_isomax_loss_under_low_precision_logits():
    z = torch.randn(5, 3).to(torch.bfloat16)
    val = IsoMaxLoss()(z, torch.tensor([0, 1, 2, 0, 1]))
    assert val.dtype == torch.float32 and torch.isfinite(val)


@pytest.mark.parametrize("cls", HEADS)
def test_bad_features_raise_clear_errors(cls):
    head = cls(8, 3)
    with pytest.raises(ValueError, match=r"features has shape \(4, 5\), expected \(N, 8\)"):
        head(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"features must be 2-D with shape \(N, 8\), got 1-D"):
        head(torch.randn(8))
    with pytest.raises(TypeError, match=r"features must have a floating dtype.*torch.int64"):
        head(torch.ones(2, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="features must be a torch.Tensor"):
        head([[0.0] * 8])
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        cls(8, 0)


def test_bad_labels_raise_clear_errors():
    loss = IsoMaxLoss()
    z = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\].*found 4"):
        loss(z, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\].*found -1"):
        loss(z, torch.tensor([0, -1, 1]))
    with pytest.raises(TypeError, match="targets must hold integer class indices.*float32"):
        loss(z, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"targets must have shape \(3,\).*got \(2,\)"):
        loss(z, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        IsoMaxLoss(reduction="avg")
    with pytest.raises(ValueError, match="entropic_scale must be a finite number > 0"):
        IsoMaxLoss(entropic_scale=-1)


def test_build_head_by_name():
    assert isinstance(isomax.build_head("isomax+", 4, 2), IsoMaxPlusHead)
    assert isinstance(isomax.build_head("DisMax", 4, 2), DisMaxHead)
    assert isinstance(isomax.build_head("softmax", 4, 2), nn.Linear)
    with pytest.raises(ValueError, match="unknown head 'cosine'; valid names: dismax, isomax"):
        isomax.build_head("cosine", 4, 2)


@pytest.mark.slow  # compiling takes seconds
@pytest.mark.parametrize("cls", HEADS)
def test_torch_compile(cls):
    torch.manual_seed(8)
    head = cls(16, 4)
    x = torch.randn(5, 16)
    y = torch.randint(0, 4, (5,))
    compiled = torch.compile(head, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), head(x))
    loss = IsoMaxLoss()(compiled(x), y)
    loss.backward()
    assert torch.isfinite(head.prototypes.grad).all()


def test_drop_in_training_reduces_loss():
    torch.manual_seed(9)
    y = torch.arange(256) // 128
    centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0]])
    x = torch.randn(256, 2) * 0.5 + centres[y]
    for cls in HEADS:
        model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), cls(16, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        loss_fn = IsoMaxLoss()
        first = loss_fn(model(x), y).item()
        for _ in range(60):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
        assert loss.item() < 0.5 * first, cls
        assert (model(x).argmax(1) == y).float().mean() > 0.9


# -------------------------------------------------------------------------------- bad input (listed in docs/errors.md)


NAN = float("nan")
INF = float("inf")

HEAD_ERRORS = [
    pytest.param(
        lambda: isomax.IsoMaxPlusHead(4, 3)(torch.ones(4)),
        ValueError,
        r"features must be 2-D with shape \(N, 4\), got 1-D shape \(4,\)",
        id="head-1d-features",
    ),
    pytest.param(
        lambda: isomax.IsoMaxHead(4, 3)(torch.ones(2, 5)),
        ValueError,
        r"features has shape \(2, 5\), expected \(N, 4\)",
        id="head-wrong-width",
    ),
    pytest.param(
        lambda: isomax.DisMaxHead(4, 3)(torch.ones(2, 4, dtype=torch.long)),
        TypeError,
        r"features must have a floating dtype .*got torch.int64",
        id="head-integer-features",
    ),
    pytest.param(
        lambda: isomax.IsoMaxPlusHead(4, 3)(np.ones((2, 4), dtype=np.float32)),
        TypeError,
        r"features must be a torch.Tensor, got ndarray",
        id="head-numpy-features",
    ),
    pytest.param(
        lambda: isomax.IsoMaxHead(0, 3),
        ValueError,
        r"in_features must be a positive integer, got 0",
        id="head-zero-in-features",
    ),
    pytest.param(
        lambda: isomax.IsoMaxPlusHead(4, 3, temperature=-1.0),
        ValueError,
        r"temperature must be a finite number > 0, got -1",
        id="head-negative-temperature",
    ),
    pytest.param(
        lambda: isomax.build_head("cosine", 4, 3),
        ValueError,
        r"unknown head 'cosine'; valid names: dismax, isomax, isomaxplus, linear",
        id="head-unknown-name",
    ),
    pytest.param(
        lambda: create_model("digits_mlp", 10, head="cosine"),
        ValueError,
        r"unknown head 'cosine'; valid names:",
        id="model-unknown-head",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), HEAD_ERRORS)
def test_heads_reject(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize(
    "head",
    [
        isomax.IsoMaxHead(4, 3),
        isomax.IsoMaxPlusHead(4, 3),
        isomax.DisMaxHead(4, 3),
        torch.nn.Linear(4, 3),
    ],
    ids=["isomax", "isomaxplus", "dismax", "linear"],
)
@pytest.mark.parametrize("bad", [NAN, INF], ids=["nan", "inf"])
def test_heads_non_finite_features_give_nan_rows(head, bad):
    """Documented: no check (it would sync the device); the bad row is NaN, the others exact."""
    x = torch.tensor([[bad, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    with torch.no_grad():
        out = head(x)
        clean = head(x[1:])
    assert not torch.isfinite(out[0]).any()
    torch.testing.assert_close(out[1:], clean)
