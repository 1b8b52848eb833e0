"""The package root re-exports one public API, importable without the optional extras."""

import subprocess
import sys

import pytest

import isomax


def test_every_name_in_all_exists():
    for name in isomax.__all__:
        assert getattr(isomax, name) is not None, name
    for name in ("OODDetector", "IsoMaxPlusHead", "IsoMaxLoss", "compare", "metrics", "engine"):
        assert name in isomax.__all__


@pytest.mark.slow  # a fresh interpreter imports torch: seconds
def test_import_does_not_load_the_optional_extras():
    code = (
        "import sys, isomax; "
        "print(sorted(m for m in ('sklearn', 'matplotlib', 'PIL', 'scipy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
