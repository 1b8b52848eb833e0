"""Test session settings: one intra-op thread per worker.

The suite runs under pytest-xdist with one worker per core; letting every worker also spawn one
OpenMP thread per core oversubscribes the machine and makes small tensor ops orders of
magnitude slower (measured here: a 100k-element copy took 7.7 ms with 2 threads under load and
0.03 ms with 1).
"""

import socket

import pytest
import torch
from torch import Tensor

torch.set_num_threads(1)


@pytest.fixture
def free_port() -> int:
    """A TCP port free on the loopback interface right now (for torchrun rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _he_state_dict(n: int, num_classes: int = 10, seed: int = 0) -> dict[str, Tensor]:
    """A random state dict in the published layout (module. prefix, no num_batches_tracked)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, Tensor] = {}

    def conv(name: str, cout: int, cin: int) -> None:
        sd[name] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5

    def bn(name: str, c: int) -> None:
        sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_var"] = 1 + 0.1 * torch.rand(c, generator=g)

    conv("conv1.weight", 16, 3)
    bn("bn1", 16)
    cin = 16
    for s, width in enumerate((16, 32, 64), start=1):
        for i in range(n):
            conv(f"layer{s}.{i}.conv1.weight", width, cin)
            bn(f"layer{s}.{i}.bn1", width)
            conv(f"layer{s}.{i}.conv2.weight", width, width)
            bn(f"layer{s}.{i}.bn2", width)
            cin = width
    sd["linear.weight"] = torch.randn(num_classes, 64, generator=g) * 0.1
    sd["linear.bias"] = torch.randn(num_classes, generator=g) * 0.1
    return {f"module.{k}": v for k, v in sd.items()}


@pytest.fixture(scope="session")
def make_he_state_dict():
    """Builds random weights in the published layout of He et al.'s CIFAR ResNets."""
    return _he_state_dict
