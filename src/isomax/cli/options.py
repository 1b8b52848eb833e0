"""Option types, shared help texts and the training-setting options of every command."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from ..errors import InputError


def _csv_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return items


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _on_error(text: str) -> str:
    """``--on-error skip|fail`` (``raise`` is accepted as another word for ``fail``)."""
    value = text.strip().lower()
    if value in ("fail", "raise"):
        return "raise"
    if value == "skip":
        return "skip"
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from 'skip', 'fail')")


ON_ERROR_HELP = (
    "undecodable image files in folders and archives: skip them (and print how many) or fail "
    "at the first one"
)


def _corrupt_hint(exc: Exception) -> ValueError:
    return InputError(f"{exc}; pass --on-error skip to leave out undecodable files")


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


POSTHOC_HELP = (
    "post-hoc detectors fitted on the ID training split, reported next to the native scores: "
    "mahalanobis, knn, vim, react (comma-separated; default: none)"
)


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in _csv_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


_SETTING_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "float | None": float,
    "str": str,
    "str | None": str,
    "tuple[float, ...]": _float_list,
}


def _defaults_text(name: str, default: Any) -> str:
    """`` (default: X)``, or every preset's value for a setting the presets set."""
    from ..engine.config import PRESETS

    if any(name in values for values in PRESETS.values()):
        return " " + _by_preset(name).replace("%", "%%")
    if isinstance(default, tuple):
        default = ",".join(f"{v:g}" for v in default)
    elif isinstance(default, bool):
        default = "on" if default else "off"
    return f" (default: {'none' if default is None else default})".replace("%", "%%")


# Command-line words that differ from the setting's values.
_SETTING_PARSERS: dict[str, tuple[Any, str, str]] = {"on_error": (_on_error, "{skip,fail}", "fail")}


def _add_train_options(
    p: argparse.ArgumentParser, skip: Sequence[str] = (), defaults: dict[str, str] | None = None
) -> None:
    """One option ``--NAME`` per :class:`~isomax.engine.TrainConfig` setting, from its declaration.

    ``output_dir`` is left to each command (its own default); ``skip`` leaves out more;
    ``defaults`` replaces the default shown in the help where the command decides it otherwise.
    """
    from ..engine.config import TrainConfig

    g = p.add_argument_group("training settings (override the preset and the --config file)")
    g.add_argument(
        "--config",
        metavar="TOML",
        help="TOML file with training settings ([train] table or top level) (default: none)",
    )
    for f in dataclasses.fields(TrainConfig):
        if f.name == "output_dir" or f.name in skip:
            continue
        shown = _SETTING_PARSERS[f.name][2] if f.name in _SETTING_PARSERS else f.default
        text = _defaults_text(f.name, shown)
        if defaults and f.name in defaults:
            text = f" (default: {defaults[f.name]})".replace("%", "%%")
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": None,
            "help": f.metadata["help"].replace("%", "%%") + text,
        }
        if str(f.type) == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name in _SETTING_PARSERS:
            kwargs["type"], kwargs["metavar"], _ = _SETTING_PARSERS[f.name]
        else:
            kwargs["type"] = _SETTING_TYPES[str(f.type)]
            if f.metadata["choices"]:
                kwargs["choices"] = f.metadata["choices"]
        g.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def _by_preset(key: str) -> str:
    """``(default: from the preset: paper 300, fast 30, cpu 10)`` for a preset setting."""
    from ..engine.config import PRESETS, TrainConfig

    def show(v: Any) -> str:
        if isinstance(v, bool):
            return "on" if v else "off"
        if isinstance(v, tuple):
            return ",".join(f"{x:.4g}" for x in v)
        return str(v)

    fallback = getattr(TrainConfig(), key)
    values = ", ".join(f"{n} {show(p.get(key, fallback))}" for n, p in PRESETS.items())
    return f"(default: from the preset: {values})"


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (None: not given)."""
    from ..engine.config import TrainConfig

    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "output_dir"]
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}"
