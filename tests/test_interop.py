"""Interop: the pytorch-ood detector adapter and OpenOOD's ood.csv."""

from __future__ import annotations

import importlib.util
import sys
import types
from abc import ABC, abstractmethod
from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

import isomax.interop
from isomax import IsoMaxHead, scores
from isomax.engine.evaluation import Evaluation
from isomax.interop import PytorchOODDetector, to_openood_csv
from isomax.metrics import auroc, ood_metrics
from isomax.scoring import get_scorer
from scorer_cases import CASES, IDS, loader, make, sample, trained

# ------------------------------------------------------------------ PytorchOODDetector


def _model_and_data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An IsoMax head whose prototypes sit on three ID clusters; OOD inputs around the origin."""
    g = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.eye(3, 4)
    model = IsoMaxHead(4, 3)
    with torch.no_grad():
        model.prototypes.copy_(centres)
    x_id = centres[torch.arange(60) % 3] + torch.randn(60, 4, generator=g)
    x_ood = torch.randn(40, 4, generator=g)
    return model.eval(), x_id, x_ood


@pytest.mark.parametrize("score", ["mds", "es", "mps", "mmles", "energy"])
def test_predict_is_minus_the_isomax_score(score: str) -> None:
    model, x_id, _ = _model_and_data()
    det = PytorchOODDetector(model, score=score, temperature=2.0)
    with torch.no_grad():
        expected = -scores.get(score)(model(x_id), temperature=2.0)
        assert torch.equal(det.predict(x_id), expected)
        assert torch.equal(det(x_id), expected)  # __call__ = predict
        assert torch.equal(det.predict_logits(model(x_id)), expected)


def test_auroc_ood_positive_equals_isomax_auroc() -> None:
    model, x_id, x_ood = _model_and_data()
    det = PytorchOODDetector(model, "mds").fit(None).fit_features(None, None)
    with torch.no_grad():
        out_id, out_ood = det(x_id), det(x_ood)
        s_id, s_ood = scores.mds(model(x_id)), scores.mds(model(x_ood))
    labels = [0] * len(out_id) + [1] * len(out_ood)  # pytorch-ood: OOD positive
    sk = roc_auc_score(labels, torch.cat([out_id, out_ood]).numpy())
    assert sk == pytest.approx(auroc(s_id, s_ood), abs=1e-12)
    assert 0.5 < sk < 1.0


def test_detector_fit_and_errors() -> None:
    model, _, _ = _model_and_data()
    det = PytorchOODDetector(model)
    assert det.fit(object(), device="cpu") is det
    assert det.fit_features(torch.zeros(2, 3), torch.zeros(2)) is det
    assert "score='mds'" in repr(det)
    no_model = PytorchOODDetector(None)
    assert no_model.predict_logits(torch.zeros(2, 3)).shape == (2,)
    with pytest.raises(ValueError, match="model"):
        no_model.predict(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="unknown score"):
        PytorchOODDetector(model, score="odin")
    with pytest.raises(TypeError, match="model"):
        PytorchOODDetector("resnet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature"):
        PytorchOODDetector(model, temperature=0.0)
    custom = PytorchOODDetector(None, score=lambda z, temperature: z[:, 0] / temperature)
    assert torch.equal(custom.predict_logits(torch.tensor([[3.0, 0.0]])), torch.tensor([-3.0]))


def test_subclasses_pytorch_ood_detector_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a (stand-in) pytorch_ood installed, the adapter is one of its Detectors."""

    class Detector(ABC):
        def __call__(self, *args, **kwargs):
            return self.predict(*args, **kwargs)

        @abstractmethod
        def fit(self, data_loader, device=None): ...

        @abstractmethod
        def predict(self, x): ...

    class ModelNotSetException(ValueError):
        pass

    api = types.ModuleType("pytorch_ood.api")
    api.Detector = Detector  # type: ignore[attr-defined]
    api.ModelNotSetException = ModelNotSetException  # type: ignore[attr-defined]
    package = types.ModuleType("pytorch_ood")
    package.api = api  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pytorch_ood", package)
    monkeypatch.setitem(sys.modules, "pytorch_ood.api", api)
    name = "isomax._interop_with_pytorch_ood"
    spec = importlib.util.spec_from_file_location(name, isomax.interop.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)

    model, x_id, _ = _model_and_data()
    det = module.PytorchOODDetector(model, "es")
    assert isinstance(det, Detector)
    with torch.no_grad():
        assert torch.equal(det(x_id), -scores.es(model(x_id)))
    with pytest.raises(ModelNotSetException):
        module.PytorchOODDetector(None).predict(x_id)


def test_plain_class_without_pytorch_ood() -> None:
    if importlib.util.find_spec("pytorch_ood") is not None:
        pytest.skip("pytorch-ood is installed")
    assert PytorchOODDetector.__mro__[1:] == (isomax.interop._Adapter, object)


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_adapter_wraps_every_scorer(kind: str, name: str) -> None:
    model = trained()
    scorer = make(kind, name, model)
    det = PytorchOODDetector(None, scorer)
    assert det.fit(loader(200, seed=2), device="cpu") is det and scorer.is_fitted
    assert det.model is model and det.scorer is scorer
    x = sample(30, seed=5)[0]
    expected = -scorer.score(x)
    assert torch.equal(det.predict(x), expected) and torch.equal(det(x), expected)
    with torch.no_grad():
        torch.testing.assert_close(det.predict_features(model.features(x)), expected)
        if kind == "native":
            torch.testing.assert_close(det.predict_logits(model(x)), expected)
            assert det.fit_features() is det and det.fit_logits() is det
        else:
            with pytest.raises(ValueError, match="not logits"):
                det.predict_logits(model(x))
            with pytest.raises(ValueError, match="fit it on inputs with fit"):
                det.fit_features(model.features(x), None)


def test_adapter_fit_takes_pytorch_oods_keyword_and_refuses_another_model() -> None:
    model = trained()
    det = PytorchOODDetector(model, get_scorer("knn", model, k=3))
    det.fit(data_loader=loader(50, seed=2))
    assert det.scorer.is_fitted
    with pytest.raises(ValueError, match="another model"):
        PytorchOODDetector(trained(), get_scorer("mds", model))


# ------------------------------------------------------------------ to_openood_csv


def _metrics(fpr: float, auc: float, ain: float, aout: float) -> dict[str, float]:
    return {
        "tnr_at_tpr95": 0.5,
        "fpr_at_tpr95": fpr,
        "auroc": auc,
        "aupr_in": ain,
        "aupr_out": aout,
        "detection_accuracy": 0.7,
        "aupr_in_trapezoid": ain,
        "aupr_out_trapezoid": aout,
    }


def _evaluation_dict() -> dict:
    return {
        "id": {"accuracy": 0.95123, "ece": 0.1},
        "ood": {
            "cifar100": {"mds": _metrics(0.5, 0.9, 0.91, 0.88), "es": _metrics(1, 1, 1, 1)},
            "tin": {"mds": _metrics(0.3, 0.8, 0.815, 0.7), "es": _metrics(1, 1, 1, 1)},
            "svhn": {"mds": _metrics(0.1, 0.99, 0.995, 0.97), "es": _metrics(1, 1, 1, 1)},
            "places": {"mds": _metrics(0.2, 0.95, 0.96, 0.93), "es": _metrics(1, 1, 1, 1)},
        },
        "mean": {},
        "reliability": {},
    }


def test_openood_csv_exact_content(tmp_path: Path) -> None:
    path = to_openood_csv(_evaluation_dict(), tmp_path / "ood.csv", "mds", near=["cifar100", "tin"])
    assert path == tmp_path / "ood.csv"
    expected = (
        "dataset,FPR@95,AUROC,AUPR_IN,AUPR_OUT,ACC\r\n"
        "cifar100,50.00,90.00,91.00,88.00,95.12\r\n"
        "tin,30.00,80.00,81.50,70.00,95.12\r\n"
        "nearood,40.00,85.00,86.25,79.00,95.12\r\n"
        "svhn,10.00,99.00,99.50,97.00,95.12\r\n"
        "places,20.00,95.00,96.00,93.00,95.12\r\n"
        "farood,15.00,97.00,97.75,95.00,95.12\r\n"
    )
    assert path.read_bytes().decode() == expected


def test_openood_csv_groups(tmp_path: Path) -> None:
    d = _evaluation_dict()
    # no near group: no nearood row; far defaults to every set, in evaluation order
    text = to_openood_csv(d, tmp_path / "a.csv", "es", accuracy=0.5).read_text()
    rows = [line.split(",")[0] for line in text.splitlines()]
    assert rows == ["dataset", "cifar100", "tin", "svhn", "places", "farood"]
    assert text.splitlines()[-1] == "farood,100.00,100.00,100.00,100.00,50.00"
    # explicit far: only the named sets; no far: no farood row
    text = to_openood_csv(d, tmp_path / "b.csv", "mds", near="tin", far=["svhn"]).read_text()
    assert [line.split(",")[0] for line in text.splitlines()] == [
        "dataset", "tin", "nearood", "svhn", "farood",
    ]  # fmt: skip
    text = to_openood_csv(d, tmp_path / "c.csv", "mds", near=["svhn"], far=[]).read_text()
    assert [line.split(",")[0] for line in text.splitlines()] == ["dataset", "svhn", "nearood"]


def test_openood_csv_from_evaluation_object(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randn(200, generator=g, dtype=torch.float64) + 1.0
    near = torch.randn(100, generator=g, dtype=torch.float64)
    far = torch.randn(100, generator=g, dtype=torch.float64) - 2.0
    ood = {"near": {"mds": ood_metrics(ids, near)}, "far": {"mds": ood_metrics(ids, far)}}
    evaluation = Evaluation({"accuracy": 0.875}, ood, {})
    text = to_openood_csv(evaluation, tmp_path / "ood.csv", "mds", near=["near"]).read_text()
    lines = text.splitlines()
    m = ood["near"]["mds"]
    assert lines[1] == (
        f"near,{100 * m['fpr_at_tpr95']:.2f},{100 * m['auroc']:.2f},"
        f"{100 * m['aupr_in_trapezoid']:.2f},{100 * m['aupr_out_trapezoid']:.2f},87.50"
    )
    assert [line.split(",")[0] for line in lines] == ["dataset", "near", "nearood", "far", "farood"]
    assert (
        to_openood_csv(evaluation.to_dict(), tmp_path / "d.csv", "mds", ["near"]).read_text()
        == text
    )


def test_openood_csv_errors(tmp_path: Path) -> None:
    d = _evaluation_dict()
    out = tmp_path / "ood.csv"
    with pytest.raises(ValueError, match=r"near: unknown OOD set\(s\) 'mnist'"):
        to_openood_csv(d, out, "mds", near=["cifar100", "mnist"])
    with pytest.raises(ValueError, match="far: unknown"):
        to_openood_csv(d, out, "mds", far=["lsun"])
    with pytest.raises(ValueError, match="both in near and far"):
        to_openood_csv(d, out, "mds", near=["tin"], far=["tin"])
    with pytest.raises(ValueError, match="near and far are both empty"):
        to_openood_csv(d, out, "mds", far=[])
    with pytest.raises(ValueError, match="score 'energy' not in"):
        to_openood_csv(d, out, "energy")
    with pytest.raises(ValueError, match="accuracy"):
        to_openood_csv({"ood": d["ood"]}, out, "mds")
    with pytest.raises(ValueError, match="accuracy"):
        to_openood_csv(d, out, "mds", accuracy=95.0)
    del d["ood"]["tin"]["mds"]["fpr_at_tpr95"]
    with pytest.raises(ValueError, match="tpr=0.95"):
        to_openood_csv(d, out, "mds")
    with pytest.raises(ValueError, match="no OOD results"):
        to_openood_csv({"id": {"accuracy": 1.0}, "ood": {}}, out, "mds")
    with pytest.raises(TypeError, match="evaluation"):
        to_openood_csv([1, 2], out, "mds")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        to_openood_csv(_evaluation_dict(), tmp_path / "missing" / "ood.csv", "mds")
    assert not out.exists()
