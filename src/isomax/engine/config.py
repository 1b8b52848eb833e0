"""Training configuration, named presets and TOML files with command-line overrides."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from .._names import find_name, resolve_name
from ..errors import InputError

__all__ = [
    "NORMALIZATIONS",
    "PRESETS",
    "ROLES",
    "TrainConfig",
    "load_config",
    "normalization",
    "setting",
    "settings_with_role",
]

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
            raise InputError(
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
        raise InputError(f"normalize must be {expected}, got {spec!r}") from None
    finite = all(math.isfinite(v) for v in (*mean, *std))
    if len(mean) != len(std) or not finite or not all(v > 0 for v in std):
        raise InputError(
            f"normalize {spec!r}: needs as many means as stds, finite values, every std > 0"
        )
    if channels is not None and len(mean) not in (1, channels):
        raise InputError(f"normalize {spec!r} gives {len(mean)} values for {channels} channels")
    if channels is not None and len(mean) == 1:
        mean, std = mean * channels, std * channels
    return mean, std


#: What a setting means for an existing run. ``run``: it defines the run (a resumed run must
#: keep it; a finished comparison run is reused only with the same value). ``tuning``: it changes
#: the numbers but a resumed run may change it (with a warning); reuse needs the same value.
#: ``environment``: where and how the run executes; free everywhere.
ROLES = ("run", "tuning", "environment")


def setting(default: Any, help: str, role: str, choices: tuple[str, ...] | None = None) -> Any:
    """Declare a :class:`TrainConfig` setting: its default, help text, role and choices.

    Everything else is derived from this declaration: the command-line option ``--NAME``
    (:func:`isomax.cli`), TOML checking, resume and reuse rules (:func:`settings_with_role`).
    """
    if role not in ROLES:
        raise InputError(f"role must be one of {ROLES}, got {role!r}")
    return dataclasses.field(
        default=default, metadata={"help": help, "role": role, "choices": choices}
    )


MAX_LR = 3.4028234663852886e38  # the largest float32: torch optimisers apply lr in float32
MAX_SEED = 2**24 - 1  # per-epoch generators derive 64-bit seeds from (seed, epoch, stream)
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in every checkpoint.

    Each field is declared once with :func:`setting`; ``dataclasses.fields(TrainConfig)`` gives
    the help text, the role (resume and reuse rules) and the choices of every setting.
    """

    dataset: str = setting("digits", "dataset name, folder:PATH or an archive", "run")
    model: str = setting("digits_cnn", "model name (see `isomax list`)", "run")
    loss: str = setting("isomaxplus", "softmax, isomax, isomaxplus or dismax", "run")
    preset: str = setting(
        "cpu", "recipe the other settings start from: paper, fast, cpu or finetune", "tuning"
    )
    epochs: int = setting(10, "training epochs", "run")
    batch_size: int = setting(64, "batch size (all processes together)", "run")
    lr: float = setting(0.1, "learning rate", "tuning")
    momentum: float = setting(0.9, "SGD momentum", "tuning")
    nesterov: bool = setting(True, "Nesterov momentum", "tuning")
    weight_decay: float = setting(1e-4, "weight decay", "tuning")
    decay_prototypes: bool = setting(
        True, "weight decay on the heads' prototypes (the authors decay every parameter)", "tuning"
    )
    schedule: str = setting(
        "multistep",
        "learning-rate schedule",
        "tuning",
        ("multistep", "onecycle", "cosine", "constant"),
    )
    milestones: tuple[float, ...] = setting(
        (0.5, 2 / 3, 5 / 6), "multistep: fractions of the epochs where lr x gamma", "tuning"
    )
    gamma: float = setting(0.1, "multistep: factor at each milestone", "tuning")
    warmup_epochs: float = setting(0.0, "linear warm-up length in epochs", "tuning")
    fpr_alpha: float | None = setting(
        None, "DisMax Fractional Probability Regularization weight: 1, 0.5 or 0.25", "run"
    )
    augment: str = setting(
        "auto",
        "auto: random crop (padding 4) + flip for RGB images of 16 px or more, none otherwise",
        "run",
        ("auto", "crop_flip", "none"),
    )
    amp: str = setting("none", "mixed precision", "tuning", ("none", "bf16", "fp16"))
    channels_last: bool = setting(False, "channels-last memory format", "tuning")
    compile: bool = setting(False, "torch.compile the model", "environment")
    data_on_device: str = setting(
        "auto",
        "keep the training data on the device (auto: on GPUs)",
        "environment",
        ("auto", "yes", "no"),
    )
    val_split: float = setting(0.1, "share of the training data held out for validation", "run")
    seed: int = setting(0, "seed of the initialisation, batch order and augmentation", "run")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps", "environment")
    data_root: str | None = setting(
        None, "folder holding (or to receive) dataset files", "environment"
    )
    download: bool = setting(
        False, "download missing dataset files (checksums verified)", "environment"
    )
    on_error: str = setting(
        "raise",
        "undecodable image files in folders and archives: skip them (counted) or fail at the first one",
        "environment",
        ("raise", "skip"),
    )
    output_dir: str = setting("runs/train", "where the checkpoint and logs go", "environment")
    pretrained: str | None = setting(
        None,
        "start from a weights file (He et al. CIFAR ResNet, a registered or timm model's state "
        "dict, an isomax checkpoint); its classifier is replaced by the loss's head",
        "run",
    )
    head_init: str = setting(
        "auto",
        "with pretrained: start of the new head (old classifier rows, class means of the "
        "features, or the head's own init)",
        "run",
        ("auto", "weights", "class_means", "default"),
    )
    head_lr_scale: float = setting(1.0, "the head's learning rate = lr x this", "tuning")
    freeze_backbone: bool = setting(
        False, "train the head only (batch-norm statistics frozen)", "run"
    )
    normalize: str = setting(
        "dataset",
        "input normalisation: dataset (its own statistics), imagenet, cifar10, none or "
        "'M,M,M/S,S,S' (what pretrained weights expect)",
        "run",
    )
    checkpoint_every: int = setting(1, "write a checkpoint every N epochs", "environment")
    progress: bool = setting(False, "show a progress bar", "environment")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(
                f"unknown configuration keys {unknown}; valid keys: {', '.join(sorted(known))}"
            )
        d = dict(d)
        if "milestones" in d:
            m = d["milestones"]
            if not isinstance(m, list | tuple) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in m
            ):
                raise InputError(f"milestones must be a list of numbers, got {m!r}")
            d["milestones"] = tuple(float(v) for v in m)
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        def bad(name: str, expected: str) -> ValueError:
            return InputError(f"{name} must be {expected}, got {getattr(self, name)!r}")

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
            raise InputError(
                f"unknown device {self.device!r}; expected auto, cpu, cuda, cuda:N or mps"
            )
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise bad(f.name, f"one of {', '.join(choices)}")
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
        raise InputError(f"{name} must be of type {text}, got {value!r}")


# The authors' recipe (SPEC section 5); a fast recipe for GPUs; "cpu" for the embedded data;
# "finetune" for a trained classifier: a few epochs, a small learning rate with cosine decay, the
# new head at 10x (BENCHMARKS.md section "Bring your own model"). One column per preset, one row
# per setting; None: the preset leaves the setting at its TrainConfig default.
_PRESET_NAMES = ("paper", "fast", "cpu", "finetune")
# fmt: off
_PRESET_TABLE: dict[str, tuple[Any, ...]] = {
    #                  paper                 fast         cpu        finetune
    "epochs":         (300,                  30,          10,        2),
    "batch_size":     (64,                   512,         64,        128),
    "lr":             (0.1,                  0.2,         0.05,      0.01),
    "momentum":       (0.9,                  0.9,         0.9,       0.9),
    "nesterov":       (True,                 True,        True,      True),
    "weight_decay":   (1e-4,                 5e-4,        1e-4,      1e-4),
    "schedule":       ("multistep",          "onecycle",  "cosine",  "cosine"),
    "milestones":     ((0.5, 2 / 3, 5 / 6),  None,        None,      None),
    "gamma":          (0.1,                  None,        None,      None),
    "warmup_epochs":  (None,                 2.0,         None,      None),
    "head_lr_scale":  (None,                 None,        None,      10.0),
    "augment":        ("auto",               "auto",      "none",    "auto"),
    "amp":            ("none",               "bf16",      "none",    "none"),
    "channels_last":  (False,                True,        None,      None),
    "data_on_device": ("no",                 "auto",      "yes",     "auto"),
}
# fmt: on
#: Each preset's settings, ``{preset: {setting: value}}`` (from the table above).
PRESETS: dict[str, dict[str, Any]] = {
    preset: {key: row[i] for key, row in _PRESET_TABLE.items() if row[i] is not None}
    for i, preset in enumerate(_PRESET_NAMES)
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
            raise InputError(
                f"cannot read configuration file {path}: {exc.strerror}; expected a TOML file"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"configuration file {path} is not valid TOML: {exc}") from None
        file_values = file_values.get("train", file_values)
        if not isinstance(file_values, dict):
            raise InputError(f"configuration file {path}: [train] must be a table of settings")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    name = overrides.get("preset") or file_values.get("preset") or preset or "cpu"
    name = resolve_name("preset", name, PRESETS)
    values.update(PRESETS[name])
    values["preset"] = name
    values.update(file_values)
    values.update(overrides)
    values["preset"] = name
    _canonical_names(values)
    return TrainConfig.from_dict(values)


def _canonical_names(values: dict[str, Any]) -> None:
    """Loss and model under their registered names (``IsoMax+`` -> ``isomaxplus``), so that a
    checkpoint, a resumed run and a reused comparison compare names, not spellings."""
    from ..methods import get_method
    from ..models import list_models

    if isinstance(values.get("loss"), str):
        values["loss"] = get_method(values["loss"]).name
    if isinstance(values.get("model"), str):
        values["model"] = find_name(values["model"], list_models()) or values["model"]


def settings_with_role(role: str) -> tuple[str, ...]:
    """Names of the :class:`TrainConfig` settings declared with ``role`` (see :data:`ROLES`)."""
    if role not in ROLES:
        raise InputError(f"role must be one of {ROLES}, got {role!r}")
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["role"] == role)
