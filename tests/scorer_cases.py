"""A small trained classifier and ID / OOD data shared by the scorer interface tests."""

from __future__ import annotations

import copy
import functools

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import isomax
from isomax.posthoc import posthoc_names

#: every native score and every post-hoc detector, as (kind, name)
NATIVE = tuple(isomax.scores.names())
POSTHOC = tuple(posthoc_names())
CASES = [("native", n) for n in NATIVE] + [("posthoc", n) for n in POSTHOC]
IDS = [f"{kind}-{name}" for kind, name in CASES]


class Net(nn.Module):
    """features(x) -> (N, 8); head: an IsoMax+ distance head over 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 8))
        self.head = isomax.IsoMaxPlusHead(8, 3)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def sample(n: int, seed: int, ood: bool = False) -> tuple[Tensor, Tensor]:
    """ID: three clusters at 4 e_0, 4 e_1, 4 e_2 in R^5; OOD: clusters at 4 e_3 and 4 e_4."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % (2 if ood else 3)
    centres = 4.0 * torch.eye(5)[3:] if ood else 4.0 * torch.eye(5)[:3]
    return centres[y] + 0.7 * torch.randn(n, 5, generator=g), y


@functools.lru_cache(maxsize=1)
def _trained() -> Net:
    torch.manual_seed(0)
    model = Net()
    x, y = sample(300, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    loss_fn = isomax.IsoMaxLoss()
    for _ in range(60):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return model.eval()


def trained() -> Net:
    """A fresh copy of the trained model (tests may change its temperature)."""
    return copy.deepcopy(_trained())


def loader(n: int, seed: int, ood: bool = False, batch_size: int = 64) -> DataLoader:
    return DataLoader(TensorDataset(*sample(n, seed, ood)), batch_size=batch_size)


def make(kind: str, name: str, model: nn.Module) -> isomax.scoring.Scorer:
    """The scorer of a case: get_scorer for native names, the post-hoc class otherwise."""
    if kind == "native":
        return isomax.scoring.get_scorer(name, model)
    kwargs = {"knn": {"k": 5}, "vim": {"dim": 4}}.get(name, {})
    return isomax.posthoc.get_detector(name, model, **kwargs)
