"""Reference-code aliases, the method table and weight-decay parameter groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import isomax


def test_aliases_are_heads_and_losses_with_reference_arguments():
    torch.manual_seed(0)
    for first, second, head_cls in (
        (isomax.IsoMaxLossFirstPart, isomax.IsoMaxLossSecondPart, isomax.IsoMaxHead),
        (isomax.IsoMaxPlusLossFirstPart, isomax.IsoMaxPlusLossSecondPart, isomax.IsoMaxPlusHead),
    ):
        head = first(num_features=8, num_classes=3, temperature=1.0)
        assert isinstance(head, head_cls)
        loss = second(entropic_scale=10.0)
        z = head(torch.randn(4, 8))
        y = torch.tensor([0, 1, 2, 0])
        torch.testing.assert_close(loss(z, y), isomax.IsoMaxLoss(10.0)(z, y))
    head = isomax.DisMaxLossFirstPart(8, 3)
    criterion = isomax.DisMaxLossSecondPart(head, regularization="fpr")
    _inputs, t = criterion.preprocess(torch.randn(6, 3, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert t.shape == (6,)  # the reference returns the shuffled labels
    z = head(torch.randn(6, 8))
    assert torch.isfinite(criterion(z, t))
    with pytest.raises(TypeError, match="FPR needs a head with an integer num_classes"):
        isomax.DisMaxLossSecondPart(nn.ReLU(), "fpr")


def test_methods_table():
    assert isomax.get_method("IsoMax+").score == "mds"
    assert isomax.get_method("softmax").build_loss().entropic_scale == 1.0
    assert isinstance(isomax.get_method("dismax").build_loss(fpr_alpha=0.5), isomax.FPRLoss)
    with pytest.raises(ValueError, match="FPR is a DisMax option"):
        isomax.get_method("isomax").build_loss(fpr_alpha=1.0)
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        isomax.get_method("focal")
    for m in isomax.METHODS.values():
        assert m.score in m.scores
        assert isomax.scores.get(m.score)


def _model():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), isomax.IsoMaxPlusHead(8, 3))


def test_param_groups_default_decays_everything():
    model = _model()
    groups = isomax.param_groups(model, 1e-4)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 1e-4
    assert len(groups[0]["params"]) == len(list(model.parameters()))


def test_param_groups_exclusions():
    model = _model()
    head = model[2]
    groups = isomax.param_groups(model, 5e-4, exclude_prototypes=True, exclude_scales=True)
    no_decay = {id(p) for p in groups[1]["params"]}
    assert no_decay == {id(head.prototypes), id(head.distance_scale)}
    assert groups[1]["weight_decay"] == 0.0
    groups = isomax.param_groups(model, 5e-4, exclude_norm_and_bias=True)
    no_decay = {id(p) for p in groups[1]["params"]}
    assert no_decay == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    opt = torch.optim.SGD(groups, lr=0.1)
    assert len(opt.param_groups) == 2
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        isomax.param_groups(model, -1.0)


def test_unknown_loss_rejected():
    with pytest.raises(
        ValueError,
        match=r"unknown loss 'isomaxx'; valid names: softmax, isomax, isomaxplus, dismax",
    ):
        isomax.get_method("isomaxx")
