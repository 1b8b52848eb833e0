"""The worked examples run and reach their advertised results with small settings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_feature_vectors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    example = _load("feature_vectors", monkeypatch)
    result = example.main(["--classes", "4", "--per-class", "60", "--epochs", "6", "--seed", "1"])
    assert result["accuracy"] > 0.9
    assert result["auroc"] > 0.9
    out = capsys.readouterr().out
    assert "ID accuracy" in out and "AUROC" in out
