"""The authors' names behave as the authors' code does (issue 12, item 2).

Each alias is built with the signatures of the authors' 2021 repository (first version
``SecondPart(model_classifier)``, later ``SecondPart(entropic_scale=10.0)``) and of their 2022
DisMax repository (``DisMaxLossSecondPart(model_classifier, regularization=None, alpha=1.0,
batches_to_accumulate=32)``), positionally and by keyword, and compared with float64 formulas
written here in the reference's two-step form (softmax, then log).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from isomax import (
    DisMaxLossFirstPart,
    DisMaxLossSecondPart,
    IsoMaxLossFirstPart,
    IsoMaxLossSecondPart,
    IsoMaxPlusLossFirstPart,
    IsoMaxPlusLossSecondPart,
)
from isomax.compat import THRESHOLD_PERCENTILES


def _ce64(logits: torch.Tensor, y: torch.Tensor, scale: float) -> float:
    """-mean log softmax(scale * z)[y], softmax and log taken separately, in float64."""
    z = scale * logits.detach().double()
    p = torch.exp(z - z.max(1, keepdim=True).values)
    p = p / p.sum(1, keepdim=True)
    return float(-torch.log(p[torch.arange(len(y)), y]).mean())


def _fpr64(logits: torch.Tensor, y: torch.Tensor, alpha: float) -> float:
    """[CE(first N // 2) + alpha * KL(t || softmax(10 z))(rest)] / 2; t = 0.25 per rolled label."""
    n, c = logits.shape
    half = n // 2
    z = 10.0 * logits.detach().double()
    p = torch.softmax(z, dim=1)
    ce = float(-torch.log(p[torch.arange(half), y[:half]]).mean())
    rest = y[half:]
    t = torch.zeros(n - half, c, dtype=torch.float64)
    for k in range(4):
        for i in range(n - half):
            t[i, rest[(i - k) % (n - half)]] += 0.25
    q = p[half:]
    kl = float((torch.where(t > 0, t * (torch.log(t) - torch.log(q)), 0.0)).sum() / (n - half))
    return (ce + alpha * kl) / 2


def _data(n: int = 7, d: int = 8, c: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


# ------------------------------------------------------------------ IsoMax / IsoMax+ losses


@pytest.mark.parametrize("second", [IsoMaxLossSecondPart, IsoMaxPlusLossSecondPart])
def test_isomax_second_part_signatures(second) -> None:
    first = IsoMaxLossFirstPart if second is IsoMaxLossSecondPart else IsoMaxPlusLossFirstPart
    torch.manual_seed(1)
    head = first(8, 3)
    x, y = _data()
    with torch.no_grad():
        head.prototypes.normal_()
    z = head(x)
    built = {
        "2021 default": (second(), 10.0),
        "2021 positional": (second(5.0), 5.0),
        "2021 keyword": (second(entropic_scale=5.0), 5.0),
        "2021 first version": (second(head), 10.0),
        "2022 positional": (second(head, 5.0), 5.0),
        "2022 keyword": (second(model_classifier=head, entropic_scale=5.0), 5.0),
    }
    for name, (loss, scale) in built.items():
        assert loss(z, y).item() == pytest.approx(_ce64(z, y, scale), abs=1e-6), name
    with pytest.raises(TypeError, match="two entropic scales"):
        second(5.0, entropic_scale=3.0)
    with pytest.raises(TypeError, match="model_classifier must be the head"):
        second("head")


@pytest.mark.parametrize("second", [IsoMaxLossSecondPart, IsoMaxPlusLossSecondPart])
def test_isomax_second_part_debug(second) -> None:
    first = IsoMaxLossFirstPart if second is IsoMaxLossSecondPart else IsoMaxPlusLossFirstPart
    head = first(8, 3)
    if hasattr(head, "distance_scale"):
        with torch.no_grad():
            head.distance_scale.fill_(-2.5)
    x, y = _data()
    z = head(x)
    at = torch.nn.functional.one_hot(y, 3).bool()
    # 2021 signature: (loss, 1.0, intra_distances, inter_distances), tensors of -logits
    loss, scale, intra, inter = second(10.0)(z, y, debug=True)
    assert loss.item() == pytest.approx(_ce64(z, y, 10.0), abs=1e-6) and scale == 1.0
    assert torch.equal(intra, -z.detach()[at]) and torch.equal(inter, -z.detach()[~at])
    # with a model classifier (2022): (loss, scale, inter_logits, intra_logits), NumPy
    loss, scale, inter, intra = second(head)(z, y, debug=True)
    assert scale == (-2.5 if hasattr(head, "distance_scale") else 1.0)
    assert isinstance(inter, np.ndarray) and isinstance(intra, np.ndarray)
    np.testing.assert_array_equal(intra, z.detach()[at].numpy())
    np.testing.assert_array_equal(inter, z.detach()[~at].numpy())


# ------------------------------------------------------------------ DisMax loss


def _dismax(seed: int = 2) -> DisMaxLossFirstPart:
    torch.manual_seed(seed)
    return DisMaxLossFirstPart(8, 3)


def test_dismax_positional_and_keyword_build_the_same_loss() -> None:
    head = _dismax()
    positional = DisMaxLossSecondPart(head, "fpr", 0.5, 16)
    keyword = DisMaxLossSecondPart(
        model_classifier=head, regularization="fpr", alpha=0.5, batches_to_accumulate=16
    )
    for c in (positional, keyword):
        assert (c.regularization, c.alpha, c.batches_to_accumulate) == ("fpr", 0.5, 16)
    x, y = _data(n=7)  # odd: the first 3 plain, the last 4 regularised (as the reference)
    z = head(x)
    expected = _fpr64(z, y, 0.5)
    assert positional(z, y).item() == pytest.approx(expected, abs=1e-6)
    assert keyword(z, y).item() == pytest.approx(expected, abs=1e-6)
    assert DisMaxLossSecondPart(head, "FPR").regularization == "fpr"  # documented spelling
    assert DisMaxLossSecondPart(head, "fractional_probability").regularization == "fpr"


def test_dismax_default_has_no_fpr_and_only_shuffles() -> None:
    head = _dismax()
    criterion = DisMaxLossSecondPart(head)
    assert criterion.regularization is None and criterion.alpha == 1.0
    images = torch.arange(5 * 3 * 4 * 4, dtype=torch.float32).reshape(5, 3, 4, 4)
    labels = torch.tensor([0, 1, 2, 0, 1])
    out, out_labels = criterion.preprocess(images, labels)
    assert isinstance(out_labels, torch.Tensor)
    # every output image is an input image, whole, with its own label
    for img, lab in zip(out, out_labels):
        (i,) = [k for k in range(5) if torch.equal(images[k], img)]
        assert labels[i] == lab
    x, y = _data(n=5)
    z = head(x)
    assert criterion(z, y).item() == pytest.approx(_ce64(z, y, 10.0), abs=1e-6)


def test_dismax_fpr_preprocess_splits_odd_batches_as_the_reference() -> None:
    head = _dismax()
    criterion = DisMaxLossSecondPart(head, regularization="fpr")
    images = torch.arange(5 * 1 * 4 * 4, dtype=torch.float32).reshape(5, 1, 4, 4)
    labels = torch.tensor([0, 1, 2, 0, 1])
    torch.manual_seed(3)
    out, out_labels = criterion.preprocess(images.clone(), labels)
    torch.manual_seed(3)
    perm = torch.randperm(5)
    shuffled = images[perm]
    assert torch.equal(out_labels, labels[perm])
    assert torch.equal(out[:2], shuffled[:2])  # N // 2 = 2 plain images
    rest = shuffled[2:]
    for i in range(3):  # the other 3 are mosaics: quadrants from rest rolled by 0, 1, 2, 3
        assert torch.equal(out[2 + i, :, :2, :2], rest[i, :, :2, :2])
        assert torch.equal(out[2 + i, :, :2, 2:], rest[(i - 1) % 3, :, :2, 2:])
        assert torch.equal(out[2 + i, :, 2:, :2], rest[(i - 2) % 3, :, 2:, :2])
        assert torch.equal(out[2 + i, :, 2:, 2:], rest[(i - 3) % 3, :, 2:, 2:])


def test_dismax_eval_mode_is_the_unscaled_validation_loss() -> None:
    head = _dismax()
    criterion = DisMaxLossSecondPart(head, "fpr")
    x, y = _data(n=6)
    head.eval()
    z = head(x)
    assert not bool(head.validationset_available)
    assert criterion(z, y).item() == pytest.approx(_ce64(z, y, 1.0), abs=1e-6)
    assert bool(head.validationset_available)


def test_dismax_debug_and_bad_arguments() -> None:
    head = _dismax()
    with torch.no_grad():
        head.distance_scale.fill_(3.0)
    x, y = _data(n=6)
    z = head(x)
    loss, scale, inter, intra = DisMaxLossSecondPart(head)(z, y, debug=True)
    at = torch.nn.functional.one_hot(y, 3).bool()
    assert scale == 3.0
    np.testing.assert_array_equal(intra, z.detach()[at].numpy())
    np.testing.assert_array_equal(inter, z.detach()[~at].numpy())
    assert loss.item() == pytest.approx(_ce64(z, y, 10.0), abs=1e-6)
    with pytest.raises(ValueError, match="regularization must be None or 'fpr'"):
        DisMaxLossSecondPart(head, "mixup")
    with pytest.raises(ValueError, match="pass that by keyword"):
        DisMaxLossSecondPart(head, "fpr", 32)  # May 2022 order: batches_to_accumulate third
    with pytest.raises(TypeError, match="model_classifier must be the DisMax head"):
        DisMaxLossSecondPart("head")
    with pytest.raises(TypeError, match="FPR needs a head with an integer num_classes"):
        DisMaxLossSecondPart(torch.nn.ReLU(), "fpr")
    with pytest.raises(TypeError):
        DisMaxLossSecondPart(head, debug="fpr")  # an argument the reference never had


def test_dismax_precomputes_thresholds_as_the_reference() -> None:
    head = _dismax()
    criterion = DisMaxLossSecondPart(head, batches_to_accumulate=2)
    assert torch.isnan(head.precomputed_thresholds).all()
    batches = [_data(n=10, seed=s)[0] for s in (4, 5)]
    y = torch.zeros(10, dtype=torch.long)
    scores = []
    for x in batches:
        z = head(x)
        scores.append(head.scores(z).detach().double())
        criterion(z, y, precompute_thresholds=True)
    expected = np.percentile(torch.cat(scores).numpy(), THRESHOLD_PERCENTILES)
    np.testing.assert_allclose(head.precomputed_thresholds[0].numpy(), expected, rtol=1e-6)
    assert torch.isnan(head.precomputed_thresholds[1]).all()  # validation row untouched
    assert criterion.accumulated_batches == 0


# ------------------------------------------------------------------ heads


def test_first_parts_positional_and_keyword_against_float64() -> None:
    x, _ = _data()
    for cls in (IsoMaxLossFirstPart, IsoMaxPlusLossFirstPart, DisMaxLossFirstPart):
        torch.manual_seed(6)
        a = cls(8, 3, 2.0)
        torch.manual_seed(6)
        b = cls(num_features=8, num_classes=3, temperature=2.0)
        assert a.num_features == b.num_features == 8 and a.num_classes == 3
        with torch.no_grad():
            a.prototypes.normal_()
            b.prototypes.copy_(a.prototypes)
        p = a.prototypes.detach().double()
        x64 = x.double()
        if cls is IsoMaxLossFirstPart:
            expected = -(x64[:, None] - p[None]).norm(dim=2) / 2.0
        else:
            d = (x64 / x64.norm(dim=1, keepdim=True))[:, None] - (p / p.norm(dim=1, keepdim=True))[
                None
            ]
            d = d.norm(dim=2)
            if cls is DisMaxLossFirstPart:
                d = d / math.sqrt(2.0)
                expected = -(d + d.mean(1, keepdim=True)) / 2.0
            else:
                expected = -d / 2.0
        for head in (a, b):
            torch.testing.assert_close(head(x).double(), expected, rtol=1e-5, atol=1e-6)


def test_dismax_scores_by_score_type() -> None:
    head = _dismax()
    z = head(_data()[0]).detach()
    z64 = z.double()
    p = torch.exp(z64) / torch.exp(z64).sum(1, keepdim=True)
    neg_entropy = (p * torch.log(p)).sum(1)
    mml = z64.max(1).values + z64.mean(1)
    expected = {
        "MPS": p.max(1).values,
        "ES": neg_entropy,
        "MDS": z64.max(1).values,
        "MMLS": mml,
        "MMLES": mml + neg_entropy,
        "MMLEPS": mml + neg_entropy + p.max(1).values,
    }
    assert head.score_type == "MMLES"
    for name, value in expected.items():
        head.score_type = name
        torch.testing.assert_close(head.scores(z).double(), value, rtol=1e-5, atol=1e-6)
    head.score_type = "ODIN"
    with pytest.raises(ValueError, match="score_type must be one of"):
        head.scores(z)


def test_heads_load_the_authors_state_dicts() -> None:
    torch.manual_seed(7)
    prototypes = torch.randn(3, 8)
    # 2021 / 2022 IsoMax: the temperature is a plain attribute, not in the state dict
    iso = IsoMaxLossFirstPart(8, 3, temperature=1.5)
    iso.load_state_dict({"prototypes": prototypes})
    assert torch.equal(iso.prototypes, prototypes) and float(iso.temperature) == 1.5
    plus = IsoMaxPlusLossFirstPart(8, 3)
    plus.load_state_dict({"prototypes": prototypes, "distance_scale": torch.tensor([2.0])})
    assert plus.distance_scale.item() == 2.0
    # 2022 DisMax: temperature, validationset_available and precomputed_thresholds parameters
    thresholds = torch.randn(2, 25)
    state = {
        "distance_scale": torch.tensor([1.5]),
        "prototypes": prototypes,
        "temperature": torch.tensor([0.5]),
        "validationset_available": torch.tensor([True]),
        "precomputed_thresholds": thresholds,
    }
    dis = DisMaxLossFirstPart(8, 3)
    dis.load_state_dict(state)
    assert float(dis.temperature) == 0.5 and dis.temperature.shape == ()
    assert bool(dis.validationset_available)
    assert torch.equal(dis.precomputed_thresholds, thresholds)
    x = _data()[0].double()
    p = prototypes.double()
    d = (x / x.norm(dim=1, keepdim=True))[:, None] - (p / p.norm(dim=1, keepdim=True))[None]
    d = 1.5 * d.norm(dim=2) / math.sqrt(2.0)
    expected = -(d + d.mean(1, keepdim=True)) / 0.5
    torch.testing.assert_close(dis(x.float()).double(), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        dis.load_state_dict({**state, "bogus": torch.zeros(1)})
