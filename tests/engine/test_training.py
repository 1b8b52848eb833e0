"""Training end to end on the embedded digits: logs, checkpoints, exact resume, NaN stop, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from isomax.cli import main
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


@pytest.mark.slow
def test_resume_after_sigkill_gives_identical_weights(tmp_path, isomax_killed_at):
    """SIGKILL the CLI at chosen points (half-way through a checkpoint write, just before its
    rename, between an epoch's log row and its checkpoint, mid-epoch), resume after each, and
    end with the weights of an uninterrupted run, bit for bit."""
    args = ["train", "--dataset", "digits", "--model", "digits_cnn", "--loss", "isomax"]
    args += ["--epochs", "5", "--device", "cpu", "-q"]
    ref = tmp_path / "ref"
    assert main([*args, "--output-dir", str(ref)]) == 0
    run = tmp_path / "killed"
    ckpt = run / "checkpoint.safetensors"
    resume = [*args, "--output-dir", str(run), "--resume"]

    def state() -> tuple[int, list[int], list[str]]:
        """(checkpoint epoch, epochs in the log, temporary files left)."""
        rows = [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()]
        tmps = sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp"))
        return load_checkpoint(ckpt)[2]["epoch"], rows, tmps

    isomax_killed_at("write:checkpoint.safetensors:2", *args, "--output-dir", run)
    epoch, rows, cut = state()
    assert (epoch, rows, len(cut)) == (1, [1, 2], 1)  # epoch 2's write stopped half-way
    assert (run / cut[0]).stat().st_size < ckpt.stat().st_size
    isomax_killed_at("rename:checkpoint.safetensors:1", *resume)  # epoch 2 again, whole
    epoch, rows, unrenamed = state()
    assert (epoch, rows, len(unrenamed)) == (1, [1, 2], 1) and unrenamed != cut
    isomax_killed_at("log:3", *resume)  # epoch 2 checkpointed, epoch 3 logged only
    assert state() == (2, [1, 2, 3], [])
    isomax_killed_at("step:30", *resume)  # epoch 3 done, then mid-way through epoch 4
    assert state() == (3, [1, 2, 3], [])
    assert main(resume) == 0

    a, b = _weights(ref / "checkpoint.safetensors"), _weights(ckpt)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert state() == (5, [1, 2, 3, 4, 5], [])
    assert len((run / "log.csv").read_text().splitlines()) == 1 + 5  # header + one row an epoch


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


@pytest.mark.slow
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


@pytest.mark.slow  # 1100 fp16 steps: seconds
def test_fp16_resume_is_exact_because_the_loss_scale_is_saved(tmp_path):
    kw = dict(amp="fp16", batch_size=8, model="digits_mlp", loss="isomax")
    straight = train(_cfg(tmp_path, "a", **kw))
    train(_cfg(tmp_path, "b", **kw), max_epochs_this_run=2)
    meta = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")[2]
    assert meta["scaler"]["scale"] != 65536.0  # it moved, so restarting it would show
    resumed = train(_cfg(tmp_path, "b", **kw), resume=True)

    a = load_checkpoint(straight.checkpoint)[0]
    b = load_checkpoint(resumed.checkpoint)[0]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_nan_stop_before_any_checkpoint_says_so(tmp_path):
    with pytest.raises(NonFiniteLossError, match="No checkpoint had been written"):
        train(_cfg(tmp_path, "nan", loss="isomax", epochs=2, lr=1e30))
