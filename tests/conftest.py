"""Test session settings: one intra-op thread per worker.

The suite runs under pytest-xdist with one worker per core; letting every worker also spawn one
OpenMP thread per core oversubscribes the machine and makes small tensor ops orders of
magnitude slower (measured here: a 100k-element copy took 7.7 ms with 2 threads under load and
0.03 ms with 1).
"""

import socket

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def free_port() -> int:
    """A TCP port free on the loopback interface right now (for torchrun rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
