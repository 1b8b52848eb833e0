"""A threshold fitted on few in-distribution scores is named in a warning."""

from __future__ import annotations

import logging

import torch
from torch import nn

from isomax.detector import MIN_ID_SCORES, OODDetector


def _loader(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    return [(x[i : i + 16], torch.arange(i, min(i + 16, n)) % 3) for i in range(0, n, 16)]


def test_few_id_scores_warn_with_the_count(caplog):
    torch.manual_seed(0)
    det = OODDetector(nn.Linear(6, 3), score="mps")
    with caplog.at_level(logging.WARNING, logger="isomax.detector"):
        det.fit(_loader(40), tpr=0.95)
    # 40 scores, k = ceil(0.95 * 40) = 38: the 2 lowest decide the threshold
    assert "set from only 40 in-distribution scores (the lowest 2 decide it)" in caplog.text
    assert det.threshold is not None


def test_enough_id_scores_do_not_warn(caplog):
    torch.manual_seed(0)
    det = OODDetector(nn.Linear(6, 3), score="mps")
    with caplog.at_level(logging.WARNING, logger="isomax.detector"):
        det.fit(_loader(MIN_ID_SCORES), tpr=0.95)
    assert "in-distribution scores" not in caplog.text
