"""The measurements of benchmarks/finetune_analysis.py against independent references: CKA by
its HSIC definition, KNN by brute force, weight drift by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bench_scripts import load_script


@pytest.fixture(scope="module")
def fa():
    yield from load_script("finetune_analysis")


def _hsic_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA as HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with Gram matrices and H."""
    n = len(a)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ (a @ a.T) @ h, h @ (b @ b.T) @ h
    return float((k * l_).sum() / np.sqrt((k * k).sum() * (l_ * l_).sum()))


def test_linear_cka_matches_its_hsic_definition_and_invariances(fa) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(60, 5, generator=g, dtype=torch.float64)
    b = a @ torch.randn(5, 7, generator=g, dtype=torch.float64) + 0.3 * torch.randn(
        60, 7, generator=g, dtype=torch.float64
    )
    assert fa.linear_cka(a, b) == pytest.approx(_hsic_cka(a.numpy(), b.numpy()), rel=1e-10)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    assert fa.linear_cka(a, 3.0 * a @ q + 2.0) == pytest.approx(1.0, abs=1e-12)  # rotation, scale
    assert fa.linear_cka(a, torch.randn(60, 5, generator=g, dtype=torch.float64)) < 0.5


def test_knn_score_by_brute_force(fa) -> None:
    """-(Euclidean distance between unit vectors to the k-th nearest), in float64 by hand."""
    g = torch.Generator().manual_seed(1)
    bank, query = torch.randn(300, 8, generator=g), torch.randn(40, 8, generator=g)
    b = bank.double() / bank.double().norm(dim=1, keepdim=True)
    q = query.double() / query.double().norm(dim=1, keepdim=True)
    kth = torch.cdist(q, b).sort(dim=1).values[:, 6]
    torch.testing.assert_close(fa.knn_score(bank, query, k=7).double(), -kth, rtol=0, atol=1e-5)


def test_drift_by_hand(fa) -> None:
    start = {
        "conv1.weight": torch.tensor([3.0, 4.0]),  # stem
        "layers.0.conv1.weight": torch.tensor([1.0, 0.0]),  # stage 1 (n = 1 for depth 8)
        "layers.2.bn1.running_mean": torch.tensor([5.0]),  # statistics: not a learned weight
        "head.weight": torch.tensor([9.0]),  # the head is not the backbone
    }
    end = {k: v.clone() for k, v in start.items()}
    end["conv1.weight"] = torch.tensor([3.0, 4.5])
    end["layers.0.conv1.weight"] = torch.tensor([1.0, 1.0])
    end["layers.2.bn1.running_mean"] = torch.tensor([50.0])
    end["head.weight"] = torch.tensor([0.0])
    d = fa.drift(start, end, depth=8)
    assert d["stem"] == pytest.approx(0.5 / 5.0)
    assert d["stage1"] == pytest.approx(1.0)
    assert d["all"] == pytest.approx(np.sqrt((0.25 + 1.0) / (25.0 + 1.0)))
    assert set(d) == {"stem", "stage1", "all"}
