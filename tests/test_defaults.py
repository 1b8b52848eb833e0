"""Defaults that fit the model (issue 12, item 5)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import isomax
from isomax import scores
from isomax.calibration import fit_temperature
from isomax.detector import OODDetector
from isomax.metrics import ood_metrics
from isomax.models import create_model
from isomax.posthoc import ViMDetector


def _mlp(head: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", num_classes=3, input_dim=5, head=head, hidden_sizes=(16,))


def _data(n: int = 60, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return [(x[i : i + 20], y[i : i + 20]) for i in range(0, n, 20)]


# ------------------------------------------------------------------ OODDetector


@pytest.mark.parametrize(
    ("head", "score"),
    [("isomax", "es"), ("isomaxplus", "mds"), ("dismax", "mmles"), ("linear", "mps")],
)
def test_default_score_comes_from_the_head(head: str, score: str) -> None:
    assert OODDetector(_mlp(head)).score_name == score
    bare = nn.Sequential(nn.Linear(5, 8), isomax.build_head(head, 8, 3))
    assert OODDetector(bare).score_name == score


def test_model_mode_and_device_are_left_as_found() -> None:
    model = _mlp("isomaxplus")
    model.train()
    frozen = next(m for m in model.modules() if m is not model and len(list(m.children())) == 0)
    frozen.eval()  # a mixed state: one submodule in eval, the rest training
    moved = []
    original_to = model.to

    def spy(*args, **kwargs):
        moved.append(args)
        return original_to(*args, **kwargs)

    model.to = spy  # type: ignore[method-assign]
    det = OODDetector(model).fit(_data())
    x = torch.randn(7, 5)
    det.predict(x)
    det.score(x)
    det.logits(x)
    assert moved == []  # no device given: the model is not moved
    assert model.training and not frozen.training
    assert all(m.training for m in model.modules() if m is not frozen)


@pytest.mark.parametrize("name", ["mahalanobis", "knn"])
def test_posthoc_predict_runs_the_backbone_once(name: str) -> None:
    model = _mlp("linear")
    det = OODDetector(model, score=name).fit(_data(), scorer_id_loader=_data(seed=2))
    calls = []
    features = model.features

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return features(x)

    model.features = counting  # type: ignore[method-assign]
    x = torch.randn(9, 5)
    out = det.predict(x)
    assert calls == [9]
    with torch.no_grad():
        logits = model.head(features(x))
    torch.testing.assert_close(out.probs, torch.softmax(logits, dim=1))
    calls.clear()
    det.fit(_data())  # the threshold pass: one backbone pass per batch too
    assert calls == [20, 20, 20]


def test_one_temperature_for_a_distance_head() -> None:
    model = _mlp("isomaxplus")
    with torch.no_grad():
        model.head.temperature.fill_(3.0)  # e.g. calibrated by calibrate_head
    det = OODDetector(model)
    assert det.temperature == 3.0  # the head's, not a second one on top
    det.temperature = 2.0
    assert float(model.head.temperature) == 2.0
    x = torch.randn(5, 5)
    with torch.no_grad():
        raw = model.head(model.features(x)) * 2.0  # undo the head's division
    det.threshold = -1e9
    out = det.predict(x)
    torch.testing.assert_close(out.probs, torch.softmax(raw / 2.0, dim=1))
    torch.testing.assert_close(out.scores, scores.mds(raw, temperature=2.0))
    # calibration sets that same single temperature
    det = OODDetector(_mlp("isomaxplus")).fit(_data(), calibrate="nll")
    assert float(det.model.head.temperature) == det.temperature


def test_one_temperature_for_a_linear_head() -> None:
    model = _mlp("linear")
    det = OODDetector(model, temperature=2.5)
    x = torch.randn(5, 5)
    with torch.no_grad():
        logits = model(x)
    det.threshold = -1e9
    out = det.predict(x)
    torch.testing.assert_close(out.probs, torch.softmax(logits / 2.5, dim=1))
    torch.testing.assert_close(out.scores, scores.mps(logits, temperature=2.5))


def test_msp_is_the_maximum_softmax_probability() -> None:
    assert scores.get("msp") is scores.mps
    assert scores.get("MSP") is scores.mps
    assert OODDetector(_mlp("linear"), score="msp").fit(_data()).threshold is not None


# ------------------------------------------------------------------ calibration, metrics, FPR


def test_fit_temperature_warns_at_a_bound() -> None:
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 3, (200,), generator=g)
    separable = 50.0 * F.one_hot(y, 3).double()  # NLL keeps falling as T -> 0
    with pytest.warns(RuntimeWarning, match="stopped at a bound of its search range"):
        t = fit_temperature(separable, y, bounds=(0.5, 10.0))
    assert t == pytest.approx(0.5)
    noisy = torch.randn(200, 3, generator=g, dtype=torch.float64) + F.one_hot(y, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = fit_temperature(noisy, y)
    assert 0.001 < t < 100


def test_ood_metrics_accepts_float32_with_float64() -> None:
    rng = np.random.default_rng(4)
    ids = rng.normal(1, 1, 300).astype(np.float32)
    ood = rng.normal(0, 1, 200)
    ood[:10] = ids[:10]  # ties across the two inputs survive the exact widening
    mixed = ood_metrics(ids, ood)
    assert mixed == ood_metrics(ids.astype(np.float64), ood)
    assert ood_metrics(torch.from_numpy(ood), torch.from_numpy(ids)) == ood_metrics(
        ood, ids.astype(np.float64)
    )
    with pytest.raises(TypeError, match="same dtype, got int64 and float64"):
        ood_metrics(np.arange(3), ood)


def test_fpr_loss_is_computed_in_float64_for_float64_logits() -> None:
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(8, 4, generator=g, dtype=torch.float64) * 3
    images = torch.randn(8, 1, 4, 4, generator=g)
    labels = torch.randint(0, 4, (8,), generator=g)
    _, targets = isomax.FractionalProbabilityRegularization(4, generator=g)(images, labels)
    loss = isomax.FPRLoss(alpha=0.5)(logits, targets)
    assert loss.dtype == torch.float64
    k = targets.num_plain
    log_q = torch.log(torch.softmax(10 * logits, dim=1))
    ce = -log_q[torch.arange(k), targets.labels[:k]].mean()
    p = targets.probs[k:].double()
    kl = (torch.where(p > 0, p * torch.log(p), 0.0) - p * log_q[k:]).sum() / (8 - k)
    assert float(loss) == pytest.approx(float((ce + 0.5 * kl) / 2), abs=1e-13)


def test_vim_signed_alpha_is_the_papers_form() -> None:
    model = _mlp("isomaxplus").eval()
    loader = [x for x, _ in _data(n=200)]
    magnitude = ViMDetector(model, dim=8).fit(loader)
    signed = ViMDetector(model, dim=8, signed_alpha=True).fit(loader)
    assert magnitude.alpha > 0 and signed.alpha < 0  # negative logits: a negative paper alpha
    assert math.isclose(signed.alpha, -magnitude.alpha, rel_tol=1e-12)
    with pytest.raises(TypeError, match="signed_alpha must be True or False"):
        ViMDetector(model, signed_alpha="yes")  # type: ignore[arg-type]
