"""Train the same backbone with several losses and seeds, evaluate, and write a report.

``compare`` is resumable: each run writes its checkpoint after every epoch and its
``evaluation.json`` last (atomically), so a run with that file is finished and reused, a run with
only a checkpoint continues training, and nothing half-written is ever counted as a result.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import scores as _scores
from .decoded import decode_splits_once
from .engine.config import load_config, settings_with_role
from .engine.evaluation import evaluate
from .engine.trainer import load_bundle, resolve_device, train
from .errors import InputError
from .io import save_file
from .methods import get_method
from .ood_sets import (
    check_ood_names,
    data_fingerprint,
    evaluation_datasets,
    ood_label,
    skipped_files,
)
from .posthoc_fit import check_posthoc_names, fit_posthoc
from .report import aggregate, write_json

__all__ = ["CompareResult", "compare"]

log = logging.getLogger(__name__)

EVAL_NAME = "evaluation.json"
SCORES_NAME = "scores.safetensors"


@dataclass
class CompareResult:
    """Where the report is and what it says."""

    output_dir: Path
    runs: list[dict[str, Any]]
    aggregate: dict[str, Any]
    report: Path | None
    skipped: dict[str, int] = field(default_factory=dict)  # undecodable files per OOD set


# Settings that do not change what a finished run means (declared in TrainConfig).
_FREE_SETTINGS = set(settings_with_role("environment"))


def _check_same_settings(path: Path, saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """A finished run is reused only when it was trained with the settings asked for now."""
    for key, value in wanted.items():
        if key in _FREE_SETTINGS or key not in saved:
            continue
        old = saved[key]
        if isinstance(old, list) and isinstance(value, tuple | list):
            old, value = list(old), list(value)
        if old != value:
            raise InputError(
                f"{path.parent} was trained with {key}={saved[key]!r}, this comparison asks for "
                f"{value!r}: use another --output-dir, or delete that run folder to redo it"
            )


def _check_same_id_files(path: Path, saved: Any, now: str | None, dataset: str) -> None:
    """A finished run is reused only while its training files are the same (runs written
    before the ID files were recorded, and registry datasets, are not checked)."""
    if saved is not None and now is not None and saved != now:
        raise InputError(
            f"{path.parent} was trained on other files of {dataset} (files were added, removed "
            "or changed since): choose another output_dir, or delete that run folder to train "
            "it again on the files there now"
        )


ID_NAME = "id_content.json"  # the training files' fingerprint, written before training


def _read_record(done: Path, warn: bool = True) -> dict[str, Any] | None:
    """A finished run's record, or None (missing, unreadable or not a compare record)."""
    if not done.exists():
        return None
    try:
        record = json.loads(done.read_text())
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or "evaluation" not in record:
        if warn:
            log.warning("%s is not a finished compare record; its run is done again", done)
        return None
    return record


def _trained_on(run_dir: Path) -> str | None:
    """The training files' fingerprint a run folder's checkpoint was trained on, if recorded."""
    try:
        value = json.loads((run_dir / ID_NAME).read_text()).get("id_content")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _run_cfg(base: Any, out: Path, loss: str, seed: int) -> Any:
    return base.replace(
        loss=loss,
        seed=seed,
        output_dir=str(out / "runs" / f"{loss}-seed{seed}"),
        # FPR is a DisMax option: the other losses train without it
        fpr_alpha=base.fpr_alpha if loss == "dismax" else None,
    )


def _run_one(
    cfg: Any,
    bundle: Any,
    ood_sets: dict[str, Any],
    run_dir: Path,
    device: torch.device,
    save_scores: bool,
    posthoc: Sequence[str] = (),
    max_ood_samples: int | None = None,
    ood_content: dict[str, str | None] | None = None,
    id_content: str | None = None,
) -> dict[str, Any]:
    if id_content is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / ID_NAME, {"id_content": id_content, "dataset": cfg.dataset})
    result = train(cfg, resume=True, bundle=bundle)
    model = result.model.to(device)
    detectors = fit_posthoc(model, posthoc, bundle.train)
    evaluation = evaluate(
        model,
        bundle.test,
        ood_sets,
        _scores.names(),
        device=device,
        keep_scores=True,
        id_val_data=bundle.val if bundle.val is not None and len(bundle.val) else None,
        detectors=detectors,
    )
    if save_scores:
        tensors = {
            f"{group}/{score}": values
            for group, per_score in evaluation.scores.items()
            for score, values in per_score.items()
        }
        save_file(run_dir / SCORES_NAME, tensors, {"loss": cfg.loss, "seed": cfg.seed}, "scores")
    record = {
        "loss": cfg.loss,
        "seed": cfg.seed,
        "score": get_method(cfg.loss).score,
        "evaluation": evaluation.to_dict(),
        "history": result.history,
        "config": cfg.to_dict(),
        "max_ood_samples": max_ood_samples,
        "ood_content": ood_content or {},
        "id_content": id_content,
    }
    write_json(run_dir / EVAL_NAME, record)  # last: its presence marks the run finished
    return record


def compare(
    dataset: str = "digits",
    model: str = "digits_cnn",
    losses: Sequence[str] = ("softmax", "isomax", "isomaxplus", "dismax"),
    seeds: int | Sequence[int] = 1,
    ood: Sequence[str] = ("gaussian", "uniform", "photos"),
    output_dir: str | os.PathLike[str] = "runs/compare",
    preset: str = "cpu",
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    max_ood_samples: int | None = None,
    posthoc: Sequence[str] = (),
    save_scores: bool = True,
    figures: bool = True,
    on_run: Callable[[str, int, str], None] | None = None,
    on_error: str = "raise",
) -> CompareResult:
    """Train and evaluate every (loss, seed) pair and write the report folder.

    Args:
        dataset, model: registry names (or a folder / archive path for the dataset).
        losses: method names (``softmax``, ``isomax``, ``isomaxplus``, ``dismax``).
        seeds: number of seeds (0 .. seeds-1) per loss, or an explicit list of seeds (e.g. to
            spread seeds over several invocations sharing ``output_dir``).
        ood: OOD set names (registry names, ``folder:PATH`` or archive paths).
        output_dir: the report folder; runs go to ``output_dir/runs/<loss>-seed<k>``.
        preset, config_file, overrides: the training configuration (see
            :func:`isomax.engine.load_config`); ``overrides`` wins.
        max_ood_samples: evaluate on at most this many inputs of each OOD set (seeded).
        posthoc: post-hoc detectors (:mod:`isomax.posthoc` names: ``mahalanobis``, ``knn``,
            ``vim``, ``react``) fitted on the ID training split of each trained model and
            reported next to the native scores.
        save_scores: keep every run's raw scores (``scores.safetensors``).

        figures: draw the PNG figures (needs matplotlib).
        on_run: called as ``on_run(loss, seed, status)`` with status ``"reused"`` (finished
            earlier with the same settings and OOD data), ``"re-evaluated"`` (trained earlier,
            evaluated again because the OOD sets, their content or the detectors changed) or
            ``"trained"``, e.g. to print progress.
        on_error: undecodable files in folder or archive OOD sets: ``"raise"`` or ``"skip"``
            (counted in ``CompareResult.skipped``). A finished run is reused only when every
            folder or archive OOD set still holds the same files (names, sizes and modification
            times).
    """

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError(
            "compare runs in one process; under torchrun use `isomax train` for each run, then "
            "`isomax compare` (it reuses finished runs) in a single process"
        )
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]

    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise InputError(f"seeds must be a positive count or distinct seeds, got {seeds!r}")
    methods = [get_method(name).name for name in losses]
    if len(set(methods)) != len(methods):
        raise InputError(f"losses has repeated entries: {list(losses)}")
    if not ood:
        raise InputError("ood is empty: name at least one OOD set")
    check_ood_names(ood)  # a malformed path fails before any data is loaded
    posthoc = check_posthoc_names(posthoc)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise PermissionError(f"output folder {out} is not writable")
    base = load_config(
        config_file,
        preset=preset,
        overrides={**(overrides or {}), "dataset": dataset, "model": model},
    )
    device = resolve_device(base.device)
    # every finished or started run is checked before any work: a refusal costs nothing
    id_content = data_fingerprint(base.dataset)
    for loss in methods:
        for seed in seed_list:
            cfg = _run_cfg(base, out, loss, seed)
            run_dir = Path(cfg.output_dir)
            record = _read_record(run_dir / EVAL_NAME, warn=False)
            if record is not None:
                _check_same_settings(run_dir / EVAL_NAME, record.get("config", {}), cfg.to_dict())
                _check_same_id_files(
                    run_dir / EVAL_NAME, record.get("id_content"), id_content, cfg.dataset
                )
            elif (run_dir / "checkpoint.safetensors").exists():
                _check_same_id_files(
                    run_dir / ID_NAME, _trained_on(run_dir), id_content, cfg.dataset
                )
    bundle = decode_splits_once(load_bundle(base))

    ood_sets = evaluation_datasets(
        bundle, ood, base.data_root, base.download, max_ood_samples, on_error=on_error
    )
    content = {ood_label(name): data_fingerprint(name) for name in ood}
    runs = []
    for loss in methods:
        for seed in seed_list:
            cfg = _run_cfg(base, out, loss, seed)
            run_dir = Path(cfg.output_dir)
            record = _read_record(run_dir / EVAL_NAME)
            status = "trained"
            if record is not None:
                ev = record["evaluation"]
                same_eval = record.get("max_ood_samples") == max_ood_samples
                same_content = all(
                    record.get("ood_content", {}).get(label) == digest
                    for label, digest in content.items()
                )
                if (
                    same_eval
                    and same_content
                    and set(ev["ood"]) == set(ood_sets)
                    and set(posthoc) <= set(ev["mean"])
                ):
                    runs.append(record)
                    if on_run:
                        on_run(loss, seed, "reused")
                    continue
                log.info(
                    "%s seed %d: OOD sets, their files or the detectors changed; evaluating again",
                    loss,
                    seed,
                )
                status = "re-evaluated"

            run_dir.mkdir(parents=True, exist_ok=True)
            runs.append(
                _run_one(
                    cfg,
                    bundle,
                    ood_sets,
                    run_dir,
                    device,
                    save_scores,
                    posthoc,
                    max_ood_samples,
                    content,
                    id_content,
                )
            )
            if on_run:
                on_run(loss, seed, status)
    agg = aggregate(runs)
    from .report import write_report

    report = write_report(out, runs, agg, figures=figures)
    skipped = {name: skipped_files(ds) for name, ds in ood_sets.items()}
    return CompareResult(out, runs, agg, report, {k: v for k, v in skipped.items() if v})
