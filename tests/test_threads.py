"""One torch thread per core that other processes leave free (OMP_NUM_THREADS wins)."""

from __future__ import annotations

import pytest
import torch

from isomax import threads


@pytest.mark.parametrize(
    ("cores", "load", "expected"), [(2, 0.0, 2), (2, 0.6, 1), (2, 6.5, 1), (8, 3.2, 5)]
)
def test_threads_follow_the_free_cores(monkeypatch, cores, load, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(
        threads.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False
    )
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    assert threads.free_cores() == expected
    before = torch.get_num_threads()
    try:
        assert threads.size_threads() == expected
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)


def test_omp_num_threads_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert threads.free_cores() == 3
