"""Post-hoc detectors fitted next to a model's native scores, by name (``--posthoc``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import scores as _scores
from .decoded import fit_batches
from .errors import InputError

__all__ = ["check_posthoc_names", "fit_posthoc", "posthoc_detector_names"]


def posthoc_detector_names() -> list[str]:
    """The post-hoc detectors ``--posthoc`` accepts (``energy`` is already a logit score)."""
    from .posthoc import posthoc_names

    return [n for n in posthoc_names() if n not in _scores.names()]


def check_posthoc_names(names: Sequence[str]) -> None:
    """Validate post-hoc detector names (``energy`` is already a logit score)."""
    valid = posthoc_detector_names()
    for name in names:
        if name not in valid:
            raise InputError(f"unknown post-hoc detector {name!r}; valid: {', '.join(valid)}")


def fit_posthoc(
    model: Any, names: Sequence[str], fit_data: Any, batch_size: int = 512
) -> dict[str, Any]:
    """Post-hoc detectors fitted on ID data (the training split; never the test split)."""
    from .posthoc import fit_detectors, get_detector

    check_posthoc_names(names)
    if not names:
        return {}
    detectors = {name: get_detector(name, model) for name in names}
    fit_detectors(list(detectors.values()), fit_batches(fit_data, batch_size))  # one pass
    return detectors
