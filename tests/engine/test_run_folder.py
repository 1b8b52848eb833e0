"""One run per output folder: lock, refusal to overwrite, stale temporaries, atomic logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from isomax.engine import load_config, train
from isomax.engine.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ARGS = ["--dataset", "digits", "--model", "digits_mlp", "--device", "cpu", "-q"]


def _cfg(out: Path, **kw):
    base = dict(dataset="digits", model="digits_mlp", epochs=2, output_dir=str(out), device="cpu")
    return load_config(preset="cpu", overrides={**base, **kw})


def _cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "isomax", *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)


def _epochs(path: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()]


def test_second_run_in_a_locked_folder_fails_at_once(tmp_path):
    from isomax.engine.checkpoint import RunFolderLockedError, lock_run_folder

    out = tmp_path / "run"
    with lock_run_folder(out):
        with pytest.raises(RunFolderLockedError, match=f"in use .*pid {os.getpid()}"):
            train(_cfg(out))
        proc = _cli("train", *ARGS, "--epochs", "1", "--output-dir", str(out))
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {os.getpid()} on" in lines[0], proc.stderr
        assert "in use by another isomax train" in lines[0]
        assert not (out / "checkpoint.safetensors").exists()
    # released at the end of the block, and after a train that raised
    with pytest.raises(FileNotFoundError):
        train(_cfg(out, dataset="folder:" + str(tmp_path / "missing")))
    assert train(_cfg(out, epochs=1)).checkpoint is not None


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live_tmp = out / f".checkpoint.safetensors.{alive.pid}.abc123.tmp"
        dead_tmp = out / f".checkpoint.safetensors.{dead.pid}.def456.tmp"
        dead_log = out / f".log.jsonl.{dead.pid}.x1.tmp"
        for p in (live_tmp, dead_tmp, dead_log):
            p.write_bytes(b"partial")
        train(_cfg(out, epochs=1))
        assert live_tmp.exists(), "a live writer's temporary file was deleted"
        assert not dead_tmp.exists() and not dead_log.exists()
    finally:
        alive.kill()
        alive.wait()


def test_temporary_files_carry_the_writer_pid(tmp_path, monkeypatch):
    import isomax.io as io_mod

    seen = []
    real = io_mod.os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        return real(src, dst)

    monkeypatch.setattr(io_mod.os, "replace", spy)
    io_mod.atomic_write_bytes(tmp_path / "f.bin", b"x")
    assert seen and seen[0].startswith(f".f.bin.{os.getpid()}.") and seen[0].endswith(".tmp")


KILL_IN_RESUME = textwrap.dedent(
    """
    import os, sys
    import isomax.engine.trainer as t
    real_logs, real_write = t._write_logs, t.atomic_write_bytes
    mode = os.environ["KILL_MODE"]
    def die_on_log_row(*a, **k):  # the first row appended during the resume
        os._exit(9)
    def die_between_renames(path, data):
        real_write(path, data)
        if str(path).endswith("log.jsonl"):
            os._exit(9)  # log.jsonl rewritten, log.csv not yet
    if mode == "row":
        t._write_logs = die_on_log_row
    else:
        t.atomic_write_bytes = die_between_renames
    from isomax.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["row", "rename"])
def test_kill_during_resume_loses_no_history(tmp_path, mode):
    out = tmp_path / "run"
    train(_cfg(out, epochs=6), max_epochs_this_run=4)
    assert _epochs(out / "log.jsonl") == [1, 2, 3, 4]
    env_args = ["train", *ARGS, "--epochs", "6", "--output-dir", str(out), "--resume"]
    proc = subprocess.run(
        [sys.executable, "-c", KILL_IN_RESUME, *env_args],
        env={**ENV, "KILL_MODE": mode},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 9, proc.stderr
    assert _epochs(out / "log.jsonl") == [1, 2, 3, 4]
    assert len((out / "log.csv").read_text().splitlines()) >= 5  # header + 4 rows at least
    assert [r["epoch"] for r in load_checkpoint(out / "checkpoint.safetensors")[2]["history"]] == [
        1,
        2,
        3,
        4,
    ]
    result = train(_cfg(out, epochs=6), resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5, 6]
    assert _epochs(out / "log.jsonl") == [1, 2, 3, 4, 5, 6]
    assert len((out / "log.csv").read_text().splitlines()) == 7
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_library_refuses_a_folder_holding_a_run(tmp_path):
    out = tmp_path / "run"
    train(_cfg(out, epochs=1))
    (out / "detector.safetensors").write_bytes(b"stale")
    (out / "evaluation").mkdir()
    (out / "evaluation" / "evaluation.json").write_text("{}")
    before = (out / "checkpoint.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="--resume .* --overwrite"):
        train(_cfg(out, epochs=1))
    assert (out / "checkpoint.safetensors").read_bytes() == before
    with pytest.raises(ValueError, match="exclude each other"):
        train(_cfg(out, epochs=1), resume=True, overwrite=True)
    train(_cfg(out, epochs=1), overwrite=True)
    assert not (out / "detector.safetensors").exists() and not (out / "evaluation").exists()
    assert _epochs(out / "log.jsonl") == [1]


INTERRUPT_AFTER_FIRST_CHECKPOINT = textwrap.dedent(
    """
    import sys
    import isomax.engine.trainer as t
    real = t.save_checkpoint
    def save_then_ctrl_c(*a, **k):
        path = real(*a, **k)
        raise KeyboardInterrupt
    t.save_checkpoint = save_then_ctrl_c
    from isomax.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_cli_run_folder_refusals_and_interrupt_hint(tmp_path):
    out = tmp_path / "run"
    args = ["train", *ARGS, "--epochs", "3", "--output-dir", str(out)]
    proc = _cli(*args, "--resume")  # nothing to resume: an error, not a fresh start
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--resume: there is no checkpoint" in proc.stderr
    assert not (out / "log.jsonl").exists()

    proc = _cli(*args, code=INTERRUPT_AFTER_FIRST_CHECKPOINT)
    assert proc.returncode == 130, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("isomax train: interrupted; the last checkpoint is kept")
    assert line.endswith(f"--epochs 3 --output-dir {out} --resume")

    proc = _cli(*args)  # rerun without --resume: refused, the epoch-1 run is intact
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--resume" in proc.stderr and "--overwrite" in proc.stderr
    assert _epochs(out / "log.jsonl") == [1]

    proc = _cli(*args, "--resume", "--overwrite")
    assert proc.returncode == 2 and "exclude each other" in proc.stderr

    proc = _cli(*args, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert _epochs(out / "log.jsonl") == [1, 2, 3]
    (out / "detector.safetensors").write_bytes(b"stale")
    (out / "evaluation").mkdir()
    proc = _cli(*args, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "detector.safetensors").exists() and not (out / "evaluation").exists()


def test_library_resume_without_a_checkpoint_starts_afresh(tmp_path):
    """compare calls train(resume=True) for every run; one killed before its first checkpoint
    (logs written, no checkpoint yet) starts again rather than being refused."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text('{"epoch": 1}\n')
    result = train(_cfg(out, epochs=1), resume=True)
    assert [r["epoch"] for r in result.history] == [1]
    assert _epochs(out / "log.jsonl") == [1]
