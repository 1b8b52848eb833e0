"""Optional dependencies never break ``import isomax``; the pytorch-ood adapter (issue 12.4).

pytorch-ood is imported only when the adapter is first looked up. A pytorch-ood whose import
raises anything (seen: a torchvision that does not match torch) leaves ``import isomax`` working
and turns into a clear ImportError at the adapter. The adapter follows pytorch-ood 0.4's
``LogitsDetector`` API: ``fit_logits`` / ``predict_logits`` on logits, ``predict_features`` on
penultimate features (through the head).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from abc import ABC, abstractmethod
from pathlib import Path

import pytest
import torch

import isomax.interop
from isomax import scores
from isomax.models import create_model


def _broken_package(root: Path, exc: str = "RuntimeError") -> Path:
    """A ``pytorch_ood`` package on disk whose import raises ``exc``."""
    pkg = root / "pytorch_ood"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"raise {exc}('torchvision does not match torch')\n")
    (pkg / "api.py").write_text("class Detector: ...\n")
    return root


def _run(code: str, extra_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow  # a fresh interpreter importing torch
def test_import_isomax_survives_a_broken_pytorch_ood(tmp_path: Path) -> None:
    exc = "RuntimeError"
    root = _broken_package(tmp_path, exc)
    done = _run(
        """
        import sys
        import isomax, isomax.interop
        from isomax.interop import to_openood_csv
        assert "pytorch_ood" not in sys.modules, "imported eagerly"
        try:
            from isomax.interop import PytorchOODDetector
        except ImportError as err:
            print("ADAPTER:", err)
            print("CAUSE:", type(err.__cause__).__name__)
        """,
        root,
    )
    assert done.returncode == 0, done.stderr
    assert "ADAPTER: pytorch-ood is installed but importing it failed" in done.stdout
    assert "torchvision does not match torch" in done.stdout
    assert f"CAUSE: {exc}" in done.stdout


@pytest.mark.slow  # a fresh interpreter importing torch
def test_import_isomax_does_not_import_pytorch_ood(tmp_path: Path) -> None:
    pkg = tmp_path / "pytorch_ood"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "api.py").write_text(
        "from abc import ABC, abstractmethod\n"
        "class ModelNotSetException(ValueError): ...\n"
        "class Detector(ABC):\n"
        "    @abstractmethod\n"
        "    def predict(self, x): ...\n"
        "class LogitsDetector(Detector): ...\n"
    )
    done = _run(
        """
        import sys
        import isomax
        assert "pytorch_ood" not in sys.modules
        det = isomax.interop.PytorchOODDetector(None)
        import pytorch_ood.api as api
        assert isinstance(det, api.LogitsDetector)
        print("OK")
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OK"


@pytest.mark.parametrize("exc", [RuntimeError, AttributeError, OSError, ImportError])
def test_adapter_lookup_raises_a_clear_error_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: type[Exception]
) -> None:
    monkeypatch.syspath_prepend(str(_broken_package(tmp_path, exc.__name__)))
    for name in ("pytorch_ood", "pytorch_ood.api"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    message = f"{exc.__name__}: torchvision does not match torch"
    with pytest.raises(ImportError, match=message) as e:
        isomax.interop._adapter_class()
    assert type(e.value.__cause__) is exc
    assert "installed but importing it failed" in str(e.value)


def test_missing_dependency_of_pytorch_ood_is_not_taken_for_absence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "pytorch_ood"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import torchvision_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("pytorch_ood", "pytorch_ood.api"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImportError, match="installed but importing it failed"):
        isomax.interop._adapter_class()


def _stand_in_0_4(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """pytorch-ood 0.4's api as far as the adapter relies on it (LogitsDetector is abstract
    in predict; fit_logits / predict_logits are its logits API)."""

    class ModelNotSetException(ValueError):
        pass

    class Detector(ABC):
        def __call__(self, *args, **kwargs):
            return self.predict(*args, **kwargs)

        @abstractmethod
        def predict(self, x): ...

    class LogitsDetector(Detector):
        def predict_logits(self, logits):
            raise NotImplementedError

        def fit_logits(self, logits, y):
            raise NotImplementedError

    package = types.ModuleType("pytorch_ood")
    api = types.ModuleType("pytorch_ood.api")
    api.Detector = Detector  # type: ignore[attr-defined]
    api.LogitsDetector = LogitsDetector  # type: ignore[attr-defined]
    api.ModelNotSetException = ModelNotSetException  # type: ignore[attr-defined]
    package.api = api  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pytorch_ood", package)
    monkeypatch.setitem(sys.modules, "pytorch_ood.api", api)
    return api


def test_logits_detector_api_of_pytorch_ood_0_4(monkeypatch: pytest.MonkeyPatch) -> None:
    api = _stand_in_0_4(monkeypatch)
    cls = isomax.interop._adapter_class()
    assert issubclass(cls, api.LogitsDetector)
    torch.manual_seed(0)
    model = create_model("digits_mlp", 10, head="isomaxplus").eval()
    x = torch.randn(6, 64)
    det = cls(model, "mds", temperature=2.0)
    with torch.no_grad():
        logits = model(x)
        expected = -scores.mds(logits, temperature=2.0)
        assert torch.equal(det(x), expected)
        assert torch.equal(det.predict(x), expected)
        assert torch.equal(det.predict_logits(logits), expected)
        # predict_features: penultimate features (N, D), as in pytorch-ood 0.4
        features = model.features(x)
        assert features.shape == (6, model.head.in_features)
        assert torch.equal(det.predict_features(features), expected)
    assert det.fit_logits(logits, torch.zeros(6)) is det
    assert det.fit_features(features, torch.zeros(6)) is det
    assert det.fit(None) is det
    # an explicit head, without a model
    head_only = cls(None, "mds", temperature=2.0, head=model.head)
    with torch.no_grad():
        assert torch.equal(head_only.predict_features(features), expected)
    with pytest.raises(api.ModelNotSetException, match="needs a model"):
        head_only.predict(x)
    with pytest.raises(api.ModelNotSetException, match=r"needs the head .* predict_logits"):
        cls(None).predict_features(features)
    with pytest.raises(TypeError, match="head must be an nn.Module"):
        cls(model, head="linear")
