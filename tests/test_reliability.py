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


@pytest.mark.slow
def test_compare_killed_mid_way_resumes_without_redoing_finished_runs(
    tmp_path, capsys, isomax_killed_at
):
    """SIGKILL compare inside its second run (half-way through writing the checkpoint of that
    run's second epoch), then run it again."""
    out = tmp_path / "cmp"
    argv = ["compare", "--dataset", "digits", "--model", "digits_mlp"]
    argv += ["--losses", "softmax,isomax,isomaxplus", "--epochs", "3", "--ood", "gaussian"]
    argv += ["--device", "cpu", "--no-figures", "--output-dir", str(out)]
    isomax_killed_at("write:checkpoint.safetensors:5", *argv)  # 3 epochs a run
    first = out / "runs" / "softmax-seed0" / "evaluation.json"
    second = out / "runs" / "isomax-seed0"
    assert first.exists() and not (second / "evaluation.json").exists()
    assert list(second.glob(".checkpoint.safetensors.*.tmp"))  # the cut write
    assert not (out / "runs" / "isomaxplus-seed0").exists()
    assert not (out / "report.md").exists()  # nothing reported before every run is complete
    json.loads(first.read_text())  # whole (written atomically)
    finished_before = first.stat().st_mtime_ns

    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{'softmax':<11} seed 0: reused" in printed
    assert printed.count("reused") == 1 and printed.count("trained") == 2
    assert first.stat().st_mtime_ns == finished_before
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


@pytest.mark.slow
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
