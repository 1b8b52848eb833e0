"""Every training setting is declared once (TrainConfig) and reachable everywhere from there."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from isomax.cli import build_parser
from isomax.cli.options import _overrides
from isomax.comparison import _FREE_SETTINGS
from isomax.engine.config import ROLES, TrainConfig, load_config, settings_with_role
from isomax.engine.trainer import RESUME_KEYS

# A valid value different from the default for every setting (a new setting must add one here,
# which is the point: the test fails until it is reachable from the command line and TOML).
OTHER: dict[str, object] = {
    "dataset": "digits-0to4",
    "model": "digits_mlp",
    "loss": "dismax",
    "preset": "paper",
    "epochs": 7,
    "batch_size": 32,
    "lr": 0.25,
    "momentum": 0.5,
    "nesterov": False,
    "weight_decay": 0.001,
    "decay_prototypes": False,
    "schedule": "constant",
    "milestones": (0.25, 0.75),
    "gamma": 0.5,
    "warmup_epochs": 1.5,
    "fpr_alpha": 0.5,
    "augment": "crop_flip",
    "amp": "bf16",
    "channels_last": True,
    "compile": True,
    "data_on_device": "no",
    "val_split": 0.2,
    "seed": 3,
    "device": "cpu",
    "data_root": "/tmp/somewhere",
    "download": True,
    "on_error": "skip",
    "output_dir": "runs/elsewhere",
    "pretrained": "weights.th",
    "head_init": "class_means",
    "head_lr_scale": 10.0,
    "freeze_backbone": True,
    "normalize": "imagenet",
    "checkpoint_every": 2,
    "progress": True,
}


def _cli(value: object) -> list[str]:
    if isinstance(value, tuple):
        return [",".join(str(v) for v in value)]
    return [str(value)]


def test_every_setting_has_a_role_help_and_a_test_value() -> None:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(names) == sorted(OTHER)
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["role"] in ROLES and f.metadata["help"], f.name
        assert OTHER[f.name] != f.default, f.name
    assert set(RESUME_KEYS) == set(settings_with_role("run"))
    assert _FREE_SETTINGS == set(settings_with_role("environment"))
    together = [*settings_with_role("run"), *settings_with_role("tuning"), *_FREE_SETTINGS]
    assert sorted(together) == sorted(names)


@pytest.mark.parametrize("name", list(OTHER))
def test_every_setting_is_reachable_from_the_command_line(name: str) -> None:
    value = OTHER[name]
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        argv = [flag if value else f"--no-{name.replace('_', '-')}"]
    else:
        argv = [flag, *_cli(value)]
    args = build_parser().parse_args(["train", *argv])
    if name == "output_dir":
        assert args.output_dir == value  # each command declares its own --output-dir
        return
    assert _overrides(args) == {name: value}


@pytest.mark.parametrize("name", list(OTHER))
def test_every_setting_is_reachable_from_toml(tmp_path: Path, name: str) -> None:
    value = OTHER[name]
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = f'"{value}"'
    elif isinstance(value, tuple):
        text = "[" + ", ".join(str(v) for v in value) + "]"
    else:
        text = str(value)
    path = tmp_path / "c.toml"
    path.write_text(f"[train]\n{name} = {text}\n")
    cfg = load_config(path)
    assert getattr(cfg, name) == value


def test_a_declared_choice_is_checked_once_for_every_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="schedule must be one of multistep"):
        TrainConfig(schedule="linear").validate()
    path = tmp_path / "c.toml"
    path.write_text('head_init = "zeros"\n')
    with pytest.raises(ValueError, match="head_init must be one of auto, weights"):
        load_config(path)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--head-init", "zeros"])


def test_help_shows_the_default_and_each_presets_value(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "training epochs (default: from the preset: paper 300, fast 30, cpu 10, finetune 2)" in text
    )
