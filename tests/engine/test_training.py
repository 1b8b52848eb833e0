"""Training end to end on the embedded digits: logs, checkpoints, exact resume, NaN stop, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from isomax.engine import NonFiniteLossError, load_config, load_model, train
from isomax.engine.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cfg(tmp_path: Path, name: str, **kw):
    base = dict(
        dataset="digits",
        model="digits_mlp",
        loss="isomaxplus",
        epochs=4,
        output_dir=str(tmp_path / name),
        device="cpu",
    )
    return load_config(preset="cpu", overrides={**base, **kw})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[0]


def test_train_writes_logs_and_checkpoint(tmp_path):
    result = train(_cfg(tmp_path, "a", epochs=2, model="digits_cnn"))
    out = tmp_path / "a"
    assert result.checkpoint == out / "checkpoint.safetensors"
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert (out / "log.csv").read_text().splitlines()[0].startswith("epoch,lr,train_loss")
    assert rows[-1]["val_acc"] > 0.5 and rows[-1]["images_per_s"] > 0
    model, meta = load_model(result.checkpoint)
    assert meta["complete"] and meta["epoch"] == 2 and meta["num_classes"] == 10
    x = torch.randn(3, 1, 8, 8)
    result.model.eval()
    torch.testing.assert_close(model(x), result.model(x))


def test_resume_in_process_is_exact(tmp_path):
    straight = train(_cfg(tmp_path, "straight", loss="dismax", fpr_alpha=0.5))
    train(_cfg(tmp_path, "split", loss="dismax", fpr_alpha=0.5), max_epochs_this_run=2)
    meta = load_checkpoint(tmp_path / "split" / "checkpoint.safetensors")[2]
    assert meta["epoch"] == 2 and not meta["complete"]
    resumed = train(_cfg(tmp_path, "split", loss="dismax", fpr_alpha=0.5), resume=True)
    a = _weights(straight.checkpoint)
    b = _weights(resumed.checkpoint)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    with pytest.raises(
        ValueError, match="cannot resume .* loss='dismax', this run asks for 'isomax'"
    ):
        train(_cfg(tmp_path, "split", loss="isomax"), resume=True)


def test_resume_after_sigkill_gives_identical_weights(tmp_path):
    """Kill the training process at several moments (at worst during a checkpoint write)."""
    args = [
        "--dataset",
        "digits",
        "--model",
        "digits_cnn",
        "--loss",
        "isomax",
        "--epochs",
        "6",
        "--device",
        "cpu",
        "-q",
    ]
    ref = tmp_path / "ref"
    subprocess.run(
        [sys.executable, "-m", "isomax", "train", *args, "--output-dir", str(ref)],
        check=True,
        env=ENV,
        capture_output=True,
    )
    run = tmp_path / "killed"
    ckpt = run / "checkpoint.safetensors"
    for delay in (0.0, 0.3, 0.7):
        resume = ["--resume"] if ckpt.exists() else []  # --resume needs a checkpoint
        proc = subprocess.Popen(
            [sys.executable, "-m", "isomax", "train", *args, "--output-dir", str(run), *resume],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # wait for a new checkpoint (or the end), then kill at a pseudo-random later moment
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if ckpt.exists() and ckpt.stat().st_mtime_ns != before:
                break
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run(
        [sys.executable, "-m", "isomax", "train", *args, "--output-dir", str(run), "--resume"],
        check=True,
        env=ENV,
        capture_output=True,
    )
    a, b = _weights(ref / "checkpoint.safetensors"), _weights(ckpt)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    train(_cfg(tmp_path, "nan", epochs=3), max_epochs_this_run=1)
    ckpt = tmp_path / "nan" / "checkpoint.safetensors"
    good = _weights(ckpt)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint .* epoch 1"):
        train(_cfg(tmp_path, "nan", epochs=3, lr=1e30), resume=True)
    after = _weights(ckpt)
    for k in good:
        assert torch.equal(good[k], after[k])
    assert load_checkpoint(ckpt)[2]["epoch"] == 1


def test_torchrun_two_processes_match_one_process(tmp_path, free_port):
    """DDP on the CPU with gloo: 2 ranks x batch 32 = 1 process x batch 64 (no batch norm)."""
    args = [
        "train",
        "--dataset",
        "digits",
        "--model",
        "digits_mlp",
        "--loss",
        "isomaxplus",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "-q",
    ]
    one = tmp_path / "one"
    subprocess.run(
        [sys.executable, "-m", "isomax", *args, "--output-dir", str(one)],
        check=True,
        env=ENV,
        capture_output=True,
    )
    two = tmp_path / "two"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port}",
        "-m",
        "isomax",
        *args,
        "--output-dir",
        str(two),
    ]
    proc = subprocess.Popen(
        cmd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
        raise
    assert proc.returncode == 0, err[-3000:]
    h1 = [json.loads(x) for x in (one / "log.jsonl").read_text().splitlines()]
    h2 = [json.loads(x) for x in (two / "log.jsonl").read_text().splitlines()]
    # Stated tolerance: the same batches and averaged gradients; only the float summation
    # order differs, so the metrics agree to 1e-4 and the weights to 1e-4 relative.
    for r1, r2 in zip(h1, h2, strict=True):
        assert r1["val_acc"] == pytest.approx(r2["val_acc"], abs=1e-4)
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-4)
    a = _weights(one / "checkpoint.safetensors")
    b = _weights(two / "checkpoint.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_progress_bar_shows_loss_accuracy_and_throughput(tmp_path, capsys):
    train(_cfg(tmp_path, "pb", epochs=1, progress=True))
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err and "acc=" in err and "img_s=" in err


def test_a_checkpoint_write_cut_by_a_crash_is_ignored_and_cleaned(tmp_path):
    """SIGKILL during a write leaves a partial temporary file; the checkpoint itself is whole."""
    train(_cfg(tmp_path, "w", epochs=3), max_epochs_this_run=1)
    ckpt = tmp_path / "w" / "checkpoint.safetensors"
    partial = tmp_path / "w" / ".checkpoint.safetensors.999999999.abc123.tmp"
    partial.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # a cut write
    resumed = train(_cfg(tmp_path, "w", epochs=3), resume=True)
    straight = train(_cfg(tmp_path, "s", epochs=3))
    a, b = _weights(resumed.checkpoint), _weights(straight.checkpoint)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not partial.exists()


class _OnlyAfterTo:
    """A batch tensor that must be moved with ``.to(device)`` before use (like CPU data for a
    CUDA model); using it directly fails, as a CPU tensor does on a GPU."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value
        self.moved_to: list[torch.device] = []

    def to(self, device, non_blocking: bool = False):
        self.moved_to.append(torch.device(device))
        return self.value

    def __len__(self) -> int:
        return len(self.value)


def test_validation_moves_each_batch_to_the_model_device():
    """Regression: with data_on_device="no" the validation batches stayed on the CPU while the
    model was on the GPU."""
    from isomax.engine import distributed
    from isomax.engine.trainer import _evaluate_loader

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    bx, by = _OnlyAfterTo(x), _OnlyAfterTo(y)
    loss, acc = _evaluate_loader(
        model,
        [(bx, by)],
        torch.nn.CrossEntropyLoss(),
        torch.device("cpu"),
        "none",
        distributed.DistInfo(),
    )
    assert bx.moved_to == [torch.device("cpu")] and by.moved_to == [torch.device("cpu")]
    with torch.no_grad():
        logits = model(x)
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-6)
    assert acc == pytest.approx(float((logits.argmax(1) == y).float().mean()))


def test_a_broken_tensorboard_install_only_disables_tensorboard(tmp_path, monkeypatch, caplog):
    import logging
    import types

    from isomax.engine.trainer import _tensorboard

    fake = types.ModuleType("torch.utils.tensorboard")

    def broken_writer(**kwargs):
        raise AttributeError("module 'google.protobuf' has no attribute 'x'")

    fake.SummaryWriter = broken_writer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    with caplog.at_level(logging.WARNING):
        assert _tensorboard(tmp_path) is None
    assert "TensorBoard logging disabled: AttributeError" in caplog.text
