"""Several post-hoc detectors of one model fitted and scored on one backbone pass."""

from __future__ import annotations

import pytest
import torch

from isomax.engine import evaluate
from isomax.models import create_model
from isomax.posthoc import fit_detectors, get_detector, score_detectors

NAMES = ("knn", "vim", "react", "mahalanobis", "energy")
KWARGS = {"knn": {"k": 5}, "vim": {"dim": 8}}


class _Counting(torch.nn.Module):
    """A classifier that counts its backbone passes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = create_model("resnet8", num_classes=10)
        self.head = self.net.head
        self.calls = 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _data(n: int = 120, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.arange(n) % 10
    return [(x[i : i + 40], y[i : i + 40]) for i in range(0, n, 40)]


def _build(model: torch.nn.Module) -> dict:
    return {n: get_detector(n, model, **KWARGS.get(n, {})) for n in NAMES}


def test_fit_and_score_together_equal_one_by_one() -> None:
    model = _Counting()
    alone = {n: d.fit(_data()) for n, d in _build(model).items()}
    together = _build(model)
    fit_detectors(list(together.values()), _data())
    x = torch.randn(17, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    shared = score_detectors(together, x)
    assert list(shared) == list(NAMES)
    for name in NAMES:
        assert torch.equal(shared[name], alone[name].score(x)), name
        assert together[name].is_fitted
        assert together[name].num_features == alone[name].num_features


def test_one_backbone_pass_per_batch() -> None:
    model = _Counting()
    detectors = _build(model)
    fit_detectors(list(detectors.values()), _data())
    assert model.calls == 3  # 3 batches, 4 detectors that read data: one pass each batch
    model.calls = 0
    score_detectors(detectors, torch.randn(4, 3, 32, 32))
    assert model.calls == 1


def test_evaluate_scores_detectors_in_one_pass() -> None:
    model = _Counting()
    detectors = _build(model)
    fit_detectors(list(detectors.values()), _data())
    model.calls = 0
    ev = evaluate(
        model,
        _data(80, seed=2),
        {"noise": _data(40, seed=3)},
        ["mps"],
        detectors=detectors,
        batch_size=40,
    )
    # 2 ID batches + 1 OOD batch: native scores call forward (1 pass) and the detectors share 1
    assert model.calls == 2 * 3
    assert set(ev.ood["noise"]) == {"mps", *NAMES}


def test_detectors_of_two_models_each_get_their_own_features() -> None:
    a, b = _Counting(), _Counting()
    torch.manual_seed(3)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.1 * torch.randn_like(p))
    knn_a, knn_b = get_detector("knn", a, k=3), get_detector("knn", b, k=3)
    fit_detectors([knn_a, knn_b], _data())
    x = torch.randn(6, 3, 32, 32)
    out = score_detectors({"a": knn_a, "b": knn_b}, x)
    assert torch.equal(out["a"], get_detector("knn", a, k=3).fit(_data()).score(x))
    assert torch.equal(out["b"], get_detector("knn", b, k=3).fit(_data()).score(x))


def test_errors_are_the_single_detector_ones() -> None:
    model = _Counting()
    with pytest.raises(ValueError, match="MahalanobisDetector needs class labels"):
        fit_detectors(list(_build(model).values()), [x for x, _ in _data()])
    with pytest.raises(ValueError, match="id_loader yielded no samples"):
        fit_detectors([get_detector("knn", model)], [])
    with pytest.raises(TypeError, match="single tensor"):
        fit_detectors([get_detector("knn", model)], torch.randn(3, 3, 32, 32))
    with pytest.raises(RuntimeError, match="not fitted"):
        score_detectors({"knn": get_detector("knn", model)}, torch.randn(2, 3, 32, 32))
    with pytest.raises(TypeError, match="expected post-hoc detectors"):
        fit_detectors([object()], _data())
