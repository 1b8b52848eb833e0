"""Post-hoc detectors fitted next to a model's native scores, by name (``--posthoc``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import scores as _scores
from ._names import find_name, unknown_name
from .decoded import fit_batches

__all__ = ["check_posthoc_names", "fit_posthoc", "posthoc_detector_names"]


def posthoc_detector_names() -> list[str]:
    """The post-hoc detectors ``--posthoc`` accepts (``energy`` is already a logit score)."""
    from .posthoc import posthoc_names

    return [n for n in posthoc_names() if n not in _scores.names()]


def check_posthoc_names(names: Sequence[str]) -> list[str]:
    """The registered names of post-hoc detectors given in any spelling (``KNN`` = ``knn``);
    ``energy`` is refused here because it is already a logit score."""
    valid = posthoc_detector_names()
    out = []
    for name in names:
        found = find_name(name, valid)
        if found is None:
            raise unknown_name("post-hoc detector", name, valid)
        out.append(found)
    return out


def fit_posthoc(
    model: Any, names: Sequence[str], fit_data: Any, batch_size: int = 512
) -> dict[str, Any]:
    """Post-hoc detectors fitted on ID data (the training split; never the test split)."""
    from .posthoc import fit_detectors, get_detector

    names = check_posthoc_names(names)
    if not names:
        return {}
    detectors = {name: get_detector(name, model) for name in names}
    fit_detectors(list(detectors.values()), fit_batches(fit_data, batch_size))  # one pass
    return detectors
