"""``isomax list``: the names every option accepts."""

from __future__ import annotations

import argparse


def cmd_list(args: argparse.Namespace) -> int:
    from .. import scores
    from ..data import list_datasets, list_ood_datasets
    from ..engine.config import PRESETS
    from ..methods import METHODS
    from ..models import list_models
    from ..posthoc_fit import posthoc_detector_names

    print("datasets:  ", ", ".join(list_datasets()), "(or folder:PATH, or an archive)")
    print(
        "OOD sets:  ",
        ", ".join(list_ood_datasets()),
        "(also any dataset above, folder:PATH or an archive)",
    )
    print("models:    ", ", ".join(list_models()))
    print("losses:    ", ", ".join(f"{m} (score {METHODS[m].score})" for m in METHODS))
    print("scores:    ", ", ".join(scores.names()))
    print("post-hoc:  ", ", ".join(posthoc_detector_names()))
    print("presets:   ", ", ".join(PRESETS))
    return 0
