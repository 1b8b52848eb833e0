"""Crash safety and resources: compare killed mid-way, a dead torchrun rank, a full disk."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from isomax import io as isomax_io
from isomax.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_compare_killed_mid_way_resumes_without_redoing_finished_runs(tmp_path):
    out = tmp_path / "cmp"
    argv = [
        sys.executable,
        "-m",
        "isomax",
        "compare",
        "--dataset",
        "digits",
        "--model",
        "digits_mlp",
        "--losses",
        "softmax,isomax,isomaxplus",
        "--epochs",
        "3",
        "--ood",
        "gaussian",
        "--device",
        "cpu",
        "--no-figures",
        "--output-dir",
        str(out),
    ]
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "runs" / "softmax-seed0" / "evaluation.json"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.2)  # somewhere inside the second run: training, a checkpoint or evaluation
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists()
    finished_before = {
        p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/evaluation.json")
    }
    assert not (out / "report.md").exists()  # nothing reported before every run is complete
    for p in (out / "runs").glob("*/evaluation.json"):
        json.loads(p.read_text())  # whatever exists is whole (written atomically)
    done = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for name, mtime in finished_before.items():
        assert f"{name.split('-seed')[0]:<11} seed 0: reused" in done.stdout
        assert (out / "runs" / name / "evaluation.json").stat().st_mtime_ns == mtime
    results = json.loads((out / "results.json").read_text())
    assert sorted(r["loss"] for r in results["runs"]) == ["isomax", "isomaxplus", "softmax"]
    assert not list(out.rglob("*.tmp"))


def test_full_disk_gives_a_clear_error_and_no_partial_file(tmp_path, monkeypatch, capsys):
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd: int, mode: str) -> None:
            self.fh = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(isomax_io.os, "fdopen", FullDisk)
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--model",
            "digits_mlp",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--output-dir",
            str(out),
            "-q",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "No space left on device" in err and len(err.splitlines()) == 1
    assert not (out / "checkpoint.safetensors").exists()
    assert not list(out.glob(".*.tmp"))


def test_a_dead_rank_stops_the_others_within_bounded_time(tmp_path, free_port):
    """Rank 1 dies after joining the job; rank 0, blocked in a collective, must not hang."""
    worker = tmp_path / "worker.py"
    worker.write_text(
        textwrap.dedent(f"""
        import os, time
        import torch
        from isomax.engine import load_config, train
        from isomax.engine import distributed
        if os.environ["RANK"] == "1":
            distributed.setup(torch.device("cpu"), timeout_s=30)
            time.sleep(0.5)
            os._exit(3)  # a crash: no clean-up, no message to the peers
        cfg = load_config(overrides=dict(dataset="digits", model="digits_mlp", epochs=50,
                                         device="cpu", output_dir=r"{tmp_path / "run"}"))
        train(cfg)
    """)
    )
    t0 = time.time()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={free_port}",
            str(worker),
        ],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the job hung after one rank died")
    elapsed = time.time() - t0
    assert proc.returncode != 0
    assert (
        "exitcode  : 3" in err or "exit code 3" in err or "exitcode: 3" in err.replace("  ", " ")
    ), err[-2000:]
    assert elapsed < 120
