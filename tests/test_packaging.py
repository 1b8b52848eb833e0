"""Packaging a user can trust (issue 12, item 7): licence, one version, declared imports, pinned
linters. Read from the repository's own files."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import isomax

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "isomax"
PYPROJECT = ROOT / "pyproject.toml"

# import name -> distribution name, where they differ
DISTRIBUTIONS = {
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "faiss": "faiss-cpu",
    "pytorch_ood": "pytorch-ood",
}

if not PYPROJECT.exists():  # an installed copy without its repository
    pytest.skip("needs the repository's pyproject.toml", allow_module_level=True)


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


def _requirement_name(spec: str) -> str:
    return re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower().replace("_", "-")


def _imported_modules() -> set[str]:
    """Top-level modules imported anywhere in src/isomax, static or via import_module("...")."""
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None))
                in ("import_module", "_import", "_import_timm", "optional_module")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"isomax"}


def test_license_file_matches_the_declared_licence() -> None:
    project = _project()["project"]
    assert project["license"] == "MIT"  # an SPDX expression
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text


def test_version_is_defined_once() -> None:
    data = _project()
    assert "version" not in data["project"]
    assert "version" in data["project"]["dynamic"]
    assert data["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "isomax.__version__"}
    definitions = [
        path
        for path in SRC.rglob("*.py")
        for line in path.read_text().splitlines()
        if re.match(r"\s*__version__\s*=", line)
    ]
    assert definitions == [SRC / "__init__.py"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", isomax.__version__)


def test_every_third_party_import_is_declared() -> None:
    project = _project()["project"]
    declared = {_requirement_name(r) for r in project["dependencies"]}
    for requirements in project["optional-dependencies"].values():
        declared |= {_requirement_name(r) for r in requirements}
    modules = _imported_modules()
    assert {"torch", "numpy", "scipy", "torchvision", "pytorch_ood"} <= modules  # the scan works
    missing = sorted(
        m for m in modules if DISTRIBUTIONS.get(m, m).lower().replace("_", "-") not in declared
    )
    assert missing == [], f"imported but declared in no dependency list: {missing}"


def test_ruff_is_pinned_in_ci_and_in_the_test_extra() -> None:
    test_extra = _project()["project"]["optional-dependencies"]["test"]
    pins = [r for r in test_extra if _requirement_name(r) == "ruff"]
    assert len(pins) == 1 and re.fullmatch(r"ruff==\d+\.\d+\.\d+", pins[0].split("#")[0].strip())
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"'{pins[0]}'" in ci
