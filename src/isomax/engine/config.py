"""Training configuration, named presets and TOML files with command-line overrides."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["PRESETS", "TrainConfig", "load_config"]


MAX_LR = 3.4028234663852886e38  # the largest float32: torch optimisers apply lr in float32
MAX_SEED = 2**24 - 1  # per-epoch generators derive 64-bit seeds from (seed, epoch, stream)
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in every checkpoint."""

    dataset: str = "digits"
    model: str = "digits_cnn"
    loss: str = "isomaxplus"
    preset: str = "cpu"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    decay_prototypes: bool = True
    schedule: str = "multistep"  # multistep | onecycle | cosine | constant
    milestones: tuple[float, ...] = (0.5, 2 / 3, 5 / 6)  # fractions of the epochs
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    fpr_alpha: float | None = None  # DisMax Fractional Probability Regularization
    # auto: random crop (padding 4) + horizontal flip for RGB images of 16 px or more (CIFAR,
    # SVHN, folders), none for grey digits and small images; or crop_flip | none
    augment: str = "auto"
    amp: str = "none"  # none | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    data_on_device: str = "auto"  # auto | yes | no
    val_split: float = 0.1
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    download: bool = False
    on_error: str = "raise"  # unreadable images in folder datasets: raise | skip
    output_dir: str = "runs/train"
    checkpoint_every: int = 1
    progress: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown configuration keys {unknown}; valid keys: {', '.join(sorted(known))}"
            )
        d = dict(d)
        if "milestones" in d:
            m = d["milestones"]
            if not isinstance(m, list | tuple) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in m
            ):
                raise ValueError(f"milestones must be a list of numbers, got {m!r}")
            d["milestones"] = tuple(float(v) for v in m)
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        def bad(name: str, expected: str) -> ValueError:
            return ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")

        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), f.type)
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise bad("epochs", "a positive integer")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise bad("batch_size", "a positive integer")
        if not (math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            raise bad("lr", f"a number at most {MAX_LR:.3g} (the largest float32) and > 0")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise bad("momentum", "a number in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise bad("weight_decay", "a finite number >= 0")
        if not (math.isfinite(self.gamma) and 0 < self.gamma <= 1):
            raise bad("gamma", "a number in (0, 1] (the factor the learning rate is multiplied by)")
        if not (math.isfinite(self.warmup_epochs) and 0 <= self.warmup_epochs <= self.epochs):
            raise bad("warmup_epochs", f"a number in [0, epochs={self.epochs}]")
        if self.checkpoint_every < 1:
            raise bad("checkpoint_every", "a positive integer (write a checkpoint every N epochs)")
        if not 0 <= self.seed <= MAX_SEED:
            raise bad("seed", f"an integer in [0, {MAX_SEED}]")
        if not _DEVICE.fullmatch(self.device):
            raise ValueError(
                f"unknown device {self.device!r}; expected auto, cpu, cuda, cuda:N or mps"
            )
        if self.schedule not in ("multistep", "onecycle", "cosine", "constant"):
            raise bad("schedule", "one of multistep, onecycle, cosine, constant")
        if self.amp not in ("none", "bf16", "fp16"):
            raise bad("amp", "one of none, bf16, fp16")
        if self.augment not in ("auto", "crop_flip", "none"):
            raise bad("augment", "one of auto, crop_flip, none")
        if self.on_error not in ("raise", "skip"):
            raise bad("on_error", "one of raise, skip")
        if self.data_on_device not in ("auto", "yes", "no"):
            raise bad("data_on_device", "one of auto, yes, no")
        if not all(0.0 < m <= 1.0 for m in self.milestones):
            raise bad("milestones", "fractions of the epochs in (0, 1] (e.g. 0.5 for 150 of 300)")
        if not 0.0 <= self.val_split < 1.0:
            raise bad("val_split", "in [0, 1)")
        if self.fpr_alpha is not None and self.fpr_alpha not in (1.0, 0.5, 0.25):
            raise bad("fpr_alpha", "one of 1, 0.5, 0.25 (or unset)")


def _check_type(name: str, value: Any, annotation: Any) -> None:
    """Check a configuration value against its annotation (as written in TrainConfig)."""
    text = str(annotation)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if value is None and "None" in text:
        return
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": number,
        "float | None": number,
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "str | None": isinstance(value, str),
        "tuple[float, ...]": isinstance(value, tuple)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value),
    }.get(text, True)
    if not ok:
        raise ValueError(f"{name} must be of type {text}, got {value!r}")


# The authors' recipe (SPEC section 5) and a fast recipe for GPUs; "cpu" for the embedded data.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        epochs=300,
        batch_size=64,
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        schedule="multistep",
        milestones=(0.5, 2 / 3, 5 / 6),
        gamma=0.1,
        augment="auto",
        amp="none",
        channels_last=False,
        data_on_device="no",
    ),
    "fast": dict(
        epochs=30,
        batch_size=512,
        lr=0.2,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        schedule="onecycle",
        warmup_epochs=2.0,
        augment="auto",
        amp="bf16",
        channels_last=True,
        data_on_device="auto",
    ),
    "cpu": dict(
        epochs=10,
        batch_size=64,
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        schedule="cosine",
        augment="none",
        amp="none",
        data_on_device="yes",
    ),
}


def load_config(
    path: str | os.PathLike[str] | None = None,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Build a configuration: defaults < preset < TOML file < overrides (e.g. the CLI)."""
    values: dict[str, Any] = {}
    file_values: dict[str, Any] = {}
    if path is not None:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]

        try:
            with open(path, "rb") as fh:
                file_values = tomllib.load(fh)
        except FileNotFoundError:
            raise FileNotFoundError(f"configuration file {path} does not exist") from None
        except OSError as exc:
            raise ValueError(
                f"cannot read configuration file {path}: {exc.strerror}; expected a TOML file"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"configuration file {path} is not valid TOML: {exc}") from None
        file_values = file_values.get("train", file_values)
        if not isinstance(file_values, dict):
            raise ValueError(f"configuration file {path}: [train] must be a table of settings")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    name = overrides.get("preset") or file_values.get("preset") or preset or "cpu"
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    values.update(PRESETS[name])
    values["preset"] = name
    values.update(file_values)
    values.update(overrides)
    return TrainConfig.from_dict(values)
