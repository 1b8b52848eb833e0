"""Configuration values, devices and torchrun environments refused before training (issue 16)."""

from __future__ import annotations

import pytest

from isomax.cli import main
from isomax.engine import load_config

TRAIN = ["train", "--dataset", "digits", "--model", "digits_mlp", "--epochs", "1", "-q"]

CONFIG_CASES = {
    "preset-list": ('preset = ["fast"]', r"unknown preset \['fast'\]"),
    "lr-huge": (
        "lr = 1e300",
        r"lr must be a number at most 3.4e\+38 \(the largest float32\) and > 0",
    ),
    "lr-inf": ("lr = inf", r"lr must be a number at most 3.4e\+38"),
    "checkpoint-every-zero": ("checkpoint_every = 0", r"checkpoint_every must be a positive"),
    "gamma-negative": ("gamma = -5", r"gamma must be a number in \(0, 1\]"),
    "momentum-one": ("momentum = 1.5", r"momentum must be a number in \[0, 1\)"),
    "weight-decay-negative": ("weight_decay = -1e-4", r"weight_decay must be a finite number"),
    "warmup-nan": ("warmup_epochs = nan", r"warmup_epochs must be a number"),
    "seed-64-bit": ("seed = 18446744073709551615", r"seed must be an integer in \[0, 16777215\]"),
    "seed-negative": ("seed = -1", r"seed must be an integer in \[0, 16777215\]"),
    "device-xpu": ('device = "xpu"', r"unknown device 'xpu'; expected auto, cpu, cuda, cuda:N"),
    "device-meta": ('device = "meta"', r"unknown device 'meta'; expected auto, cpu, cuda"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_exits_2_with_one_line_before_training(case, tmp_path, capsys):
    line, pattern = CONFIG_CASES[case]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[train]\n{line}\n")
    out = tmp_path / "out"
    code = main([*TRAIN, "--config", str(cfg), "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("isomax train: error: ")
    assert pytest.importorskip("re").search(pattern, err), err
    assert not (out / "log.jsonl").exists()


def test_seed_bound_is_the_largest_that_works():
    from isomax.engine.config import MAX_SEED
    from isomax.engine.loader import epoch_generator

    cfg = load_config(overrides={"seed": MAX_SEED})
    epoch_generator(cfg.seed, 10**6, stream=10_000 + 1023)  # no overflow at the bound


@pytest.mark.parametrize("device", ["mps", "cuda:99", "xpu", "meta"])
def test_unavailable_or_unsupported_device_is_one_line(device, tmp_path, capsys):
    import torch

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("MPS is available here")
    code = main([*TRAIN, "--device", device, "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert device in err


@pytest.mark.parametrize(
    ("env", "pattern"),
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
        ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two' is not an integer"),
        ({"WORLD_SIZE": "2", "RANK": "5"}, r"RANK=5 must be in \[0, WORLD_SIZE=2\)"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 must be >= 1"),
    ],
)
def test_torchrun_environment_is_checked(env, pattern, monkeypatch, tmp_path, capsys):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from isomax.engine.distributed import read_env

    with pytest.raises(ValueError, match=pattern):
        read_env()
    code = main([*TRAIN, "--device", "cpu", "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
