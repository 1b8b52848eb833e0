"""Workers stop when their torchrun launcher is killed (issue 16, item 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from isomax.engine.distributed import PARENT_POLL_S, TERM_GRACE_S

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids: list[int], limit_s: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s and any(map(_alive, pids)):
        time.sleep(0.02)
    return time.monotonic() - t0


PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
    print(child.pid, flush=True)
    time.sleep(600)
    """
)
CHILD = textwrap.dedent(
    """
    import time
    from isomax.engine.distributed import watch_parent
    watch_parent(interval_s=0.1)
    print("watching", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_worker_stops_when_its_parent_is_sigkilled():
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD], env=ENV, stdout=subprocess.PIPE, text=True
    )
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "watching"  # the child's line, same pipe
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        took = _wait_gone([child], 10)
        assert not _alive(child), "the orphaned worker kept running"
        assert took < 0.1 + TERM_GRACE_S + 2
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_sigkill_of_torchrun_stops_both_workers_in_bounded_time(tmp_path, free_port):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port}",
        "-m",
        "isomax",
        "train",
        "--dataset",
        "digits",
        "--model",
        "digits_mlp",
        "--epochs",
        "300",
        "--device",
        "cpu",
        "-q",
        "--output-dir",
        str(run),
    ]
    launcher = subprocess.Popen(
        cmd,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "log.jsonl").exists():
            time.sleep(0.1)  # both ranks are training once rank 0 logged an epoch
        assert (run / "log.jsonl").exists(), "training did not start"
        workers = _children(launcher.pid)
        assert len(workers) == 2
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        took = _wait_gone(workers, 60)
        assert not any(map(_alive, workers)), "workers trained on after the launcher died"
        # the stated bound: one poll (PARENT_POLL_S) + SIGTERM, with slack for a busy machine
        assert took < PARENT_POLL_S + TERM_GRACE_S + 5, took
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
