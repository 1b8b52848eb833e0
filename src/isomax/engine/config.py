"""Training configuration, named presets and TOML files with command-line overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["NORMALIZATIONS", "PRESETS", "TrainConfig", "load_config", "normalization"]

#: Named input normalisations (per-channel mean and std on the [0, 1] scale) for weights trained
#: elsewhere: ``imagenet`` is what torchvision, timm and many CIFAR model zoos use.
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}

_HEAD_INITS = ("auto", "weights", "class_means", "default")


def normalization(spec: str, channels: int | None = None) -> tuple[tuple[float, ...], ...] | None:
    """``(mean, std)`` of a normalisation setting, or None for ``"dataset"`` (its own statistics).

    ``spec`` is ``dataset``, a name of :data:`NORMALIZATIONS` or ``"M1,M2,M3/S1,S2,S3"`` (values
    on the [0, 1] scale; one value per channel, or one for all). ``none`` is the identity.
    """
    if spec == "dataset":
        return None
    if spec in NORMALIZATIONS:
        mean, std = NORMALIZATIONS[spec]
        if channels is not None and channels != len(mean) and spec != "none":
            raise ValueError(
                f"normalize={spec!r} is for {len(mean)}-channel images, the data has {channels}"
            )
        if spec == "none" and channels is not None:
            mean, std = (0.0,) * channels, (1.0,) * channels
        return mean, std
    expected = (
        "dataset, imagenet, cifar10, none or 'MEAN,.../STD,...' (e.g. "
        "'0.485,0.456,0.406/0.229,0.224,0.225')"
    )
    parts = spec.split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        mean = tuple(float(v) for v in parts[0].split(","))
        std = tuple(float(v) for v in parts[1].split(","))
    except ValueError:
        raise ValueError(f"normalize must be {expected}, got {spec!r}") from None
    if len(mean) != len(std) or not all(v > 0 and v < float("inf") for v in std):
        raise ValueError(
            f"normalize {spec!r}: needs as many means as stds, every std > 0 and finite"
        )
    if channels is not None and len(mean) not in (1, channels):
        raise ValueError(f"normalize {spec!r} gives {len(mean)} values for {channels} channels")
    if channels is not None and len(mean) == 1:
        mean, std = mean * channels, std * channels
    return mean, std


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
    # Fine-tuning: start from a weights file (a He et al. CIFAR ResNet, a registered model's or
    # timm model's state dict, or an isomax checkpoint); the classifier is replaced by the
    # loss's head, initialised as head_init says; the head trains at lr * head_lr_scale.
    pretrained: str | None = None
    head_init: str = "auto"  # auto | weights | class_means | default
    head_lr_scale: float = 1.0
    freeze_backbone: bool = False
    # input normalisation: the dataset's own statistics, or those the weights were trained with
    normalize: str = "dataset"  # dataset | imagenet | cifar10 | none | "M,M,M/S,S,S"
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
        if not self.lr > 0:
            raise bad("lr", "a number > 0")
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
        if self.head_init not in _HEAD_INITS:
            raise bad("head_init", f"one of {', '.join(_HEAD_INITS)}")
        if not 0 < self.head_lr_scale < float("inf"):
            raise bad("head_lr_scale", "a finite number > 0")
        if self.pretrained is not None and not self.pretrained.strip():
            raise bad("pretrained", "the path of a weights file")
        normalization(self.normalize)


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
    # Fine-tuning a trained classifier: a few epochs, a small learning rate with cosine decay,
    # the new head at 10x (BENCHMARKS.md section "Bring your own model").
    "finetune": dict(
        epochs=2,
        batch_size=128,
        lr=0.01,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        schedule="cosine",
        head_lr_scale=10.0,
        augment="auto",
        amp="none",
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
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    values.update(PRESETS[name])
    values["preset"] = name
    values.update(file_values)
    values.update(overrides)
    return TrainConfig.from_dict(values)
