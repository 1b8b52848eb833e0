"""Engine parts: configuration, schedules, augmentation, loader, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from isomax.engine import (
    PRESETS,
    TensorLoader,
    TrainConfig,
    load_config,
    load_model,
    lr_at,
    resolve_device,
)
from isomax.engine.augment import crop_flip
from isomax.engine.checkpoint import load_checkpoint, save_checkpoint
from isomax.io import UnsafeFileError


def test_config_precedence_toml_and_errors(tmp_path):
    cfg = load_config(preset="paper")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay) == (300, 64, 0.1, 1e-4)
    assert cfg.nesterov and cfg.schedule == "multistep" and cfg.amp == "none"
    # milestones of the paper: epochs 150, 200 and 250
    assert [round(m * 300) for m in cfg.milestones] == [150, 200, 250]
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\npreset = "fast"\nepochs = 7\nlr = 0.3\n')
    cfg = load_config(toml, overrides={"lr": 0.5, "epochs": None})
    assert cfg.preset == "fast" and cfg.epochs == 7 and cfg.lr == 0.5 and cfg.amp == "bf16"
    toml.write_text("epochs = 3\nbogus = 1\n")
    with pytest.raises(ValueError, match=r"unknown configuration keys \['bogus'\]"):
        load_config(toml)
    toml.write_text("epochs = [")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_config(toml)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="unknown preset 'slow'"):
        load_config(preset="slow")
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        load_config(overrides={"epochs": 0})
    with pytest.raises(ValueError, match="amp must be one of"):
        load_config(overrides={"amp": "fp8"})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert set(PRESETS) == {"paper", "fast", "cpu", "finetune"}


def test_learning_rate_schedules():
    cfg = TrainConfig(epochs=300, lr=0.1, schedule="multistep")
    steps = 10
    assert lr_at(cfg, 0, steps) == pytest.approx(0.1)
    assert lr_at(cfg, 149 * steps + 9, steps) == pytest.approx(0.1)
    assert lr_at(cfg, 150 * steps, steps) == pytest.approx(0.01)
    assert lr_at(cfg, 200 * steps, steps) == pytest.approx(0.001)
    assert lr_at(cfg, 250 * steps, steps) == pytest.approx(0.0001)
    cos = TrainConfig(epochs=10, lr=1.0, schedule="cosine")
    assert lr_at(cos, 50, 10) == pytest.approx(0.5)
    assert lr_at(cos, 0, 10) == pytest.approx(1.0)
    one = TrainConfig(epochs=10, lr=1.0, schedule="onecycle", warmup_epochs=2)
    assert lr_at(one, 0, 10) == pytest.approx(0.1)
    assert lr_at(one, 20, 10) == pytest.approx(1.0)
    assert lr_at(one, 60, 10) == pytest.approx(0.5)
    assert lr_at(one, 100, 10) == pytest.approx(0.0)


def test_crop_flip_matches_per_image_reference():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 7, 9)
    out = crop_flip(x, torch.Generator().manual_seed(5), padding=2)
    g = torch.Generator().manual_seed(5)  # replay the same draws, in the same order
    flips = torch.rand(6, generator=g) < 0.5
    dy = torch.randint(0, 5, (6,), generator=g)
    dx = torch.randint(0, 5, (6,), generator=g)
    for i in range(6):
        padded = F.pad(x[i], (2, 2, 2, 2))
        want = padded[:, dy[i] : dy[i] + 7, dx[i] : dx[i] + 9]
        if flips[i]:
            want = want.flip(2)
        assert torch.equal(out[i], want)
    assert flips.any() and not flips.all()


def test_loader_order_sharding_and_normalisation():
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    y = torch.arange(10)
    loader = TensorLoader(x, y, 4, mean=[0.0], std=[1 / 255], shuffle=True, seed=3)
    loader.set_epoch(1)
    first = torch.cat([b[1] for b in loader])
    loader.set_epoch(1)
    again = torch.cat([b[1] for b in loader])
    loader.set_epoch(2)
    other = torch.cat([b[1] for b in loader])
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert sorted(first.tolist()) == list(range(10))
    xb, yb = next(iter(loader))
    assert torch.equal(xb[:, 0, 0, 0], yb.float())  # (v / 255 - 0) / (1 / 255) == v
    shards = []
    for rank in range(3):
        sl = TensorLoader(x, y, 2, [0.0], [1.0], shuffle=True, seed=3, rank=rank, world_size=3)
        sl.set_epoch(1)
        shards.append(torch.cat([b[1] for b in sl]).tolist())
    assert all(len(s) == 4 for s in shards)  # 10 padded to 12, 4 per rank
    assert {v for shard in shards for v in shard} == set(range(10))
    ev = [
        TensorLoader(x, y, 4, [0.0], [1.0], rank=r, world_size=3, even_shards=False)
        for r in range(3)
    ]
    got = [v for e in ev for v in torch.cat([b[1] for b in e]).tolist()]
    assert sorted(got) == list(range(10))
    with pytest.raises(ValueError, match="3 labels"):
        TensorLoader(x, y[:3], 2, [0.0], [1.0])


def test_checkpoint_round_trip_with_optimizer_state(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 3)).sum().backward()
        opt.step()
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, {"epoch": 2, "config": {}})
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    model_state, opt_state, meta, rng = load_checkpoint(path)
    assert meta["epoch"] == 2 and "torch" in rng
    for k, v in model.state_dict().items():
        assert torch.equal(model_state[k], v)
    want = opt.state_dict()
    assert opt_state["param_groups"] == want["param_groups"]
    for idx, entry in want["state"].items():
        assert torch.equal(opt_state["state"][idx]["momentum_buffer"], entry["momentum_buffer"])
    fresh = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    fresh.load_state_dict(opt_state)
    torch.save({"a": 1}, tmp_path / "evil.safetensors")
    with pytest.raises(UnsafeFileError, match="holds a pickle"):
        load_checkpoint(tmp_path / "evil.safetensors")
    assert math.isfinite(float(model_state["0.weight"].sum()))


def test_augmentation_rule():
    from isomax.engine.trainer import use_augmentation

    assert use_augmentation("auto", (3, 32, 32))  # CIFAR, SVHN
    assert not use_augmentation("auto", (1, 28, 28))  # MNIST: no flips of digits
    assert not use_augmentation("auto", (3, 8, 8))
    assert not use_augmentation("auto", (64,))  # feature vectors
    assert use_augmentation("crop_flip", (1, 8, 8)) and not use_augmentation("none", (3, 32, 32))
    assert load_config(preset="fast").augment == "auto" == load_config(preset="paper").augment


# -------------------------------------------------------------------------------- bad checkpoint files (listed in docs/errors.md)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint file at .*missing.safetensors"):
        load_model(tmp_path / "missing.safetensors")


def test_unreadable_checkpoint(unreadable_checkpoint):
    path, pattern = unreadable_checkpoint
    with pytest.raises((FileNotFoundError, PermissionError), match=pattern):
        load_model(path)


def test_bad_checkpoint_file(bad_checkpoint):
    path, pattern = bad_checkpoint
    with pytest.raises(ValueError, match=pattern):
        load_model(path)


def test_detector_file_given_as_checkpoint(detector_file):
    with pytest.raises(ValueError, match=r"holds an isomax 'detector', expected a 'checkpoint'"):
        load_model(detector_file)


# -------------------------------------------------------------------------------- bad settings (listed in docs/errors.md)


CONFIG_ERRORS = [
    pytest.param(
        lambda: load_config(preset="turbo"),
        ValueError,
        r"unknown preset 'turbo'; valid names: paper, fast, cpu",
        id="unknown-preset",
    ),
    pytest.param(
        lambda: TrainConfig.from_dict({"epoch": 3}),
        ValueError,
        r"unknown configuration keys \['epoch'\]; valid keys: .*epochs",
        id="unknown-config-key",
    ),
    pytest.param(
        lambda: resolve_device("gpu"),
        ValueError,
        r"unknown device 'gpu'; expected auto, cpu, cuda, cuda:N or mps",
        id="unknown-device",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), CONFIG_ERRORS)
def test_unknown_config_names_rejected(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_config_value_of_wrong_type_rejected():
    """A TOML ``lr = "fast"`` must give a ValueError naming ``lr``, not a TypeError from ``>``."""
    with pytest.raises(ValueError, match=r"lr must be .*got 'fast'"):
        TrainConfig.from_dict({"lr": "fast"})


def test_milestones_must_be_fractions_and_toml_types_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"milestones .*fractions"):
        load_config(preset="paper", overrides={"milestones": [150, 200, 250]})
    toml = tmp_path / "c.toml"
    toml.write_text("milestones = 5\n")
    with pytest.raises(ValueError, match="milestones"):
        load_config(toml)
    toml.write_text("train = 3\n")
    with pytest.raises(ValueError, match=r"\[train\]"):
        load_config(toml)
