"""The one label check: every entry point words a bad label the same way."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

import isomax
from isomax._checks import check_labels
from isomax.calibration import fit_temperature
from isomax.posthoc import MahalanobisDetector
from isomax.scoring import batches


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(4, 5)
        self.head = torch.nn.Linear(5, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _message(call) -> str:
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return str(info.value)


def test_every_entry_point_words_an_out_of_range_label_the_same() -> None:
    z, bad = torch.zeros(2, 3), torch.tensor([0, 3])
    x = torch.zeros(2, 4)
    messages = [
        _message(lambda: isomax.IsoMaxLoss()(z, bad)),
        _message(lambda: isomax.metrics.accuracy(z.numpy(), bad.numpy())),
        _message(lambda: fit_temperature(z.numpy(), bad.numpy())),
        _message(lambda: list(batches([(x, bad)], labels=True, num_classes=3))),
        _message(lambda: isomax.finetune.replace_classifier(_Net(), "isomax", data=[(x, bad)])),
    ]
    for message in messages:
        assert re.search(
            r"\bmust lie in \[0, 2\]( \(or equal ignore_index=-?\d+\))?, found 3$", message
        ), message


def test_every_entry_point_words_float_labels_the_same() -> None:
    z, bad = torch.zeros(2, 3), torch.tensor([0.0, 1.0])
    messages = [
        _message(lambda: isomax.IsoMaxLoss()(z, bad)),
        _message(lambda: isomax.metrics.accuracy(z, bad)),
        _message(lambda: MahalanobisDetector(_Net()).fit([(torch.zeros(2, 4), bad)])),
    ]
    for message in messages:
        assert re.search(
            r"must hold integer class indices \(torch.long\), got dtype torch.float32$", message
        ), message


def test_numpy_labels_of_every_integer_dtype_and_read_only_arrays() -> None:
    for dtype in (np.int8, np.int32, np.int64, np.uint8, np.uint16, np.uint64):
        out = check_labels(np.array([0, 2], dtype=dtype), "labels", 2, 3)
        assert out.tolist() == [0, 2]
    frozen = np.array([1, 0])
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_labels(frozen, "labels", 2, 2).tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\], found 7"):
        check_labels(np.array([0, 7], dtype=np.uint64), "labels", 2, 3)
    with pytest.raises(TypeError, match="labels must hold integer class indices .*got dtype bool"):
        check_labels(np.array([True, False]), "labels", 2, 3)
    with pytest.raises(
        TypeError, match="labels must be a tensor of integer class indices, got list"
    ):
        check_labels([0, 1], "labels", 2, 3)
    with pytest.raises(ValueError, match="labels must be >= 0, found -2"):
        check_labels(torch.tensor([0, -2]), "labels", 2)


def test_one_energy() -> None:
    """ViM and ReAct use isomax.scores.energy; the energy detector equals the native score."""
    model = _Net()
    x = torch.randn(6, 4)
    with torch.no_grad():
        expected = 2.0 * torch.logsumexp(model(x).double() / 2.0, dim=1)
    got = isomax.posthoc.EnergyDetector(model, temperature=2.0).score(x)
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)
    assert isomax.posthoc._energy is isomax.scores.energy
