"""The epoch fitting of benchmarks/cifar_quality.py: every run fits the GPU call's budget."""

from __future__ import annotations

import argparse

import pytest
from bench_scripts import load_script


@pytest.fixture(scope="module")
def cq():
    yield from load_script("cifar_quality")


def _args(**kw: float) -> argparse.Namespace:
    return argparse.Namespace(**{"epochs": 30, "parallel": 4, "time_budget": 600.0, **kw})


def test_fit_epochs_by_hand(cq) -> None:
    # 12 runs of 45,000 images in 3 waves: 600 - 10 spent - reserve - 3 waves of overhead
    usable = 600 - 10 - cq.FINAL_RESERVE_S - 3 * cq.RUN_OVERHEAD_S
    rate = cq.SHARING * 30000  # images/s of all runs together
    expected = int(usable * rate / (12 * 45000))
    assert 1 <= expected < 30
    assert cq.fit_epochs(_args(fit_epochs=30000.0), 12, 45000, 10.0) == expected
    # the training time of the chosen count fits; one epoch more would not
    assert 12 * expected * 45000 / rate <= usable < 12 * (expected + 1) * 45000 / rate


def test_fit_epochs_never_exceeds_the_requested_count(cq) -> None:
    assert cq.fit_epochs(_args(fit_epochs=1e9), 12, 45000, 0.0) == 30


def test_fit_epochs_refuses_what_cannot_fit(cq) -> None:
    with pytest.raises(SystemExit, match="12 runs do not fit in 600s at 100 images/s"):
        cq.fit_epochs(_args(fit_epochs=100.0), 12, 45000, 0.0)
    with pytest.raises(SystemExit, match="needs --time-budget"):
        cq.fit_epochs(_args(fit_epochs=100.0, time_budget=0.0), 12, 45000, 0.0)


def test_train_speed_merges_repeated_configurations() -> None:
    module = next(load_script("train_speed"))
    rows = [
        {"preset": "fast", "loss": "softmax", "per_epoch": [10.0, 12.0], "images_per_s": 11.0},
        {"preset": "fast", "loss": "isomaxplus", "per_epoch": [9.0], "images_per_s": 9.0},
        {"preset": "fast", "loss": "softmax", "per_epoch": [20.0], "images_per_s": 20.0},
    ]
    merged = module.merge_repeats(rows)
    assert [(r["loss"], r["runs"]) for r in merged] == [("softmax", 2), ("isomaxplus", 1)]
    assert merged[0]["per_epoch"] == [10.0, 12.0, 20.0]
    assert merged[0]["images_per_s"] == 12.0  # the median over all epochs of both runs
