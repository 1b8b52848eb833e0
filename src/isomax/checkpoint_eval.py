"""A saved checkpoint evaluated against OOD sets, or calibrated into a detector, with its data.

What ``isomax evaluate`` and ``isomax calibrate`` do, as functions: the checkpoint's ID dataset
is loaded the way it was trained (never downloaded), checked against the checkpoint, and the
results are written atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

logger = logging.getLogger(__name__)
EVALUATION_FILES = ("evaluation.json", "evaluation.csv", "evaluation.md", "scores.safetensors")

__all__ = [
    "CheckpointEvaluation",
    "LoadedCheckpoint",
    "calibrate_checkpoint",
    "dataset_of",
    "evaluate_checkpoint",
    "load_for_evaluation",
]


def dataset_of(path: str | os.PathLike[str], cfg: dict[str, Any], dataset: str | None) -> str:
    """The ID dataset: ``dataset``, else the file's own if it is a registry name.

    A data location (a folder or an archive) is never taken from a file's metadata: a file
    could point anywhere (``folder:/proc``); the user names it with ``dataset``.
    """
    from .data import list_datasets

    if dataset:
        return dataset
    name = str(cfg.get("dataset", ""))
    if name.lower() in {d.lower() for d in list_datasets()}:
        return name
    raise InputError(
        f"{path} was trained on {name!r}, a data location: isomax does not read data locations "
        f"from a file; pass --dataset {name} to use it"
    )


@dataclass
class LoadedCheckpoint:
    """A checkpoint's model and metadata, its ID data bundle and the device it runs on."""

    model: Any
    meta: dict[str, Any]
    bundle: Any
    device: Any


def load_for_evaluation(
    checkpoint: str | os.PathLike[str],
    device: str | None = None,
    data_root: str | None = None,
    dataset: str | None = None,
) -> LoadedCheckpoint:
    """Load a checkpoint and its ID dataset (``dataset`` or the one it was trained on),
    refusing a dataset whose classes or input shape differ from the checkpoint's."""
    from .engine import TrainConfig, load_model, resolve_device
    from .engine.trainer import load_bundle

    dev = resolve_device(device or "auto")
    model, meta = load_model(checkpoint, dev)
    cfg = meta["config"]
    bundle = load_bundle(
        TrainConfig.from_dict(
            {
                **cfg,
                "dataset": dataset_of(checkpoint, cfg, dataset),
                "data_root": data_root,
                "download": False,  # a file never triggers a download
            }
        )
    )
    if bundle.num_classes != meta["num_classes"]:
        raise InputError(
            f"dataset {bundle.name!r} has {bundle.num_classes} classes but the "
            f"checkpoint was trained on {meta['num_classes']}"
        )
    if tuple(bundle.input_shape) != tuple(meta["input_shape"]):
        raise InputError(
            f"dataset {bundle.name!r} has input shape {tuple(bundle.input_shape)}, "
            f"the checkpoint expects {tuple(meta['input_shape'])}"
        )
    return LoadedCheckpoint(model, meta, bundle, dev)


@dataclass
class CheckpointEvaluation:
    """The evaluation, the scores and detectors it reports, and where it was written."""

    evaluation: Any
    scores: list[str]  # native scores, then post-hoc detectors
    recommended_score: str  # the loss's recommended score
    output_dir: Path
    files: list[str]
    skipped: dict[str, int] = field(default_factory=dict)  # undecodable files per OOD set
    replaced: list[str] = field(default_factory=list)  # files of an earlier evaluation


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    ood: Sequence[str],
    output_dir: str | os.PathLike[str] | None = None,
    scores: Sequence[str] | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    temperature: float = 1.0,
    batch_size: int = 512,
    max_ood_samples: int | None = None,
    on_error: str = "raise",
    save_scores: bool = False,
    posthoc: Sequence[str] = (),
    device: str | None = None,
) -> CheckpointEvaluation:
    """Evaluate a checkpoint on its ID test split against the OOD sets ``ood`` and write
    ``evaluation.json``, ``evaluation.csv``, ``evaluation.md`` (and ``scores.safetensors``
    with ``save_scores``) to ``output_dir`` (default: ``<checkpoint folder>/evaluation``).

    ``scores`` defaults to the scores that suit the checkpoint's loss; ``posthoc`` detectors
    are fitted on the ID training split. ``on_error`` applies to folder and archive OOD sets.
    An earlier evaluation in ``output_dir`` is replaced as a whole once the new one is
    computed (its ``scores.safetensors`` too, when this one saves none), with a warning; the
    result lists the replaced files in ``replaced``. A folder holding a training run
    (``checkpoint.safetensors``) is refused as ``output_dir``.
    """
    from . import scores as score_mod
    from .data.errors import CorruptImageError
    from .engine import evaluate
    from .io import atomic_write_bytes, save_file
    from .methods import get_method
    from .ood_sets import evaluation_datasets, skipped_files
    from .outputs import ensure_writable
    from .posthoc_fit import check_posthoc_names, fit_posthoc
    from .report import evaluation_markdown, write_csv, write_json

    posthoc = check_posthoc_names(posthoc)  # names first: a typo costs no work
    for s in scores or ():
        score_mod.resolve(s)
    out = Path(output_dir or Path(checkpoint).parent / "evaluation")
    if (out / "checkpoint.safetensors").exists():  # before any work, like the names
        raise InputError(
            f"{out} holds a training run (checkpoint.safetensors): its evaluation.json and "
            "scores belong to that run and are not replaced; choose another output_dir (the "
            "default is the checkpoint's evaluation/ subfolder)"
        )
    loaded = load_for_evaluation(checkpoint, device, data_root, dataset)
    method = get_method(loaded.meta["config"]["loss"])
    names = [score_mod.resolve(s) for s in scores or method.scores]
    out = ensure_writable(out)
    bundle = loaded.bundle
    ood_sets = evaluation_datasets(
        bundle, ood, data_root, max_samples=max_ood_samples, on_error=on_error
    )
    detectors = fit_posthoc(loaded.model, posthoc, bundle.train, batch_size)
    try:
        evaluation = evaluate(
            loaded.model,
            bundle.test,
            ood_sets,
            names,
            temperature=temperature,
            device=loaded.device,
            batch_size=batch_size,
            keep_scores=save_scores,
            detectors=detectors,
        )
    except CorruptImageError as exc:
        raise CorruptImageError(
            f"{exc}; pass on_error='skip' to leave out undecodable files"
        ) from None
    files = ["evaluation.json", "evaluation.csv", "evaluation.md"]
    earlier = [name for name in EVALUATION_FILES if (out / name).is_file()]
    # the earlier evaluation goes first: a failed write leaves no old table next to new files
    # (evaluation.json, written last, marks a complete evaluation)
    for name in ("evaluation.json", *([] if save_scores else ["scores.safetensors"])):
        if name in earlier:
            (out / name).unlink()
    if save_scores:
        tensors = {f"{g}/{s}": v for g, per in evaluation.scores.items() for s, v in per.items()}
        save_file(out / "scores.safetensors", tensors, {"checkpoint": str(checkpoint)}, "scores")
        files.append("scores.safetensors")
    write_csv(out / "evaluation.csv", evaluation.rows())
    atomic_write_bytes(out / "evaluation.md", evaluation_markdown(evaluation).encode())
    write_json(out / "evaluation.json", evaluation.to_dict())
    if earlier:
        logger.warning("replaced an earlier evaluation in %s: %s", out, ", ".join(earlier))
    skipped = {name: skipped_files(ds) for name, ds in ood_sets.items()}
    return CheckpointEvaluation(
        evaluation,
        [*names, *detectors],
        method.score,
        out,
        files,
        {k: v for k, v in skipped.items() if v},
        earlier,
    )


def calibrate_checkpoint(
    checkpoint: str | os.PathLike[str],
    score: str | None = None,
    objective: str | None = "nll",
    tpr: float = 0.95,
    dataset: str | None = None,
    data_root: str | None = None,
    batch_size: int = 512,
    device: str | None = None,
) -> Any:
    """An :class:`~isomax.OODDetector` for a checkpoint: temperature (``objective``: ``"nll"``,
    ``"ece"`` or ``None`` to keep T = 1) and threshold (keeping the share ``tpr`` of ID inputs)
    fitted on the validation split, post-hoc statistics on the training split; never the test
    split. ``score`` defaults to the loss's recommended score. The detector's metadata records
    the model configuration, so that it loads without the model."""
    import torch

    from .detector import OODDetector
    from .methods import get_method

    loaded = load_for_evaluation(checkpoint, device, data_root, dataset)
    bundle, meta = loaded.bundle, loaded.meta
    if bundle.val is None or len(bundle.val) == 0:
        raise InputError(
            "the dataset has no validation split (val_split=0): nothing to "
            "calibrate on; the test split is never used for calibration"
        )
    loader = torch.utils.data.DataLoader(bundle.val, batch_size=batch_size)
    detector = OODDetector(
        loaded.model, score=score or get_method(meta["config"]["loss"]).score, device=loaded.device
    )
    fit_loader = torch.utils.data.DataLoader(bundle.train, batch_size=batch_size)
    detector.fit(loader, tpr=tpr, calibrate=objective, scorer_id_loader=fit_loader)
    detector.metadata = {
        k: meta[k]
        for k in ("config", "num_classes", "input_shape", "mean", "std", "class_names")
        if k in meta
    }
    return detector
