"""``isomax.comparison`` is the module, ``isomax.compare`` the function; each part of a
comparison (OOD sets, decoded data, post-hoc fitting, orchestration) lives in its own module."""

from __future__ import annotations

import importlib
import types

import pytest

import isomax


def test_module_and_function_have_different_names() -> None:
    module = importlib.import_module("isomax.comparison")
    assert isinstance(module, types.ModuleType)
    assert callable(isomax.compare) and not isinstance(isomax.compare, types.ModuleType)
    assert isomax.compare is module.compare
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("isomax.compare")


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("isomax.ood_sets", ["evaluation_datasets", "ood_fingerprint", "skipped_files"]),
        ("isomax.decoded", ["decode_splits_once", "fit_batches"]),
        ("isomax.posthoc_fit", ["fit_posthoc", "posthoc_detector_names"]),
        ("isomax.comparison", ["compare", "CompareResult"]),
    ],
)
def test_each_part_is_public_in_its_own_module(module: str, names: list[str]) -> None:
    mod = importlib.import_module(module)
    assert set(names) <= set(mod.__all__)
    assert all(callable(getattr(mod, n)) for n in names)


def test_ood_labels_are_short() -> None:
    from isomax.ood_sets import ood_label

    assert ood_label("svhn") == "svhn"
    assert ood_label("folder:/data/my_ood/") == "folder:my_ood"
    assert ood_label("/data/tinyimagenet_val10k.tar.xz") == "tinyimagenet_val10k"
