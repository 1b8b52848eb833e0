"""Fine-tuned runs from one set of weights: the chosen loss and, as a baseline, SoftMax on the
same weights, each an ordinary checkpoint, evaluated against the same OOD sets in one table."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FinetuneRuns", "finetune_runs", "finetune_scores"]

log = logging.getLogger(__name__)


def finetune_scores(loss: str) -> list[str]:
    """The scores a fine-tuned run is evaluated with: the loss's own, and for SoftMax also the
    logit scores (energy, max_logit) a SoftMax baseline is usually reported with."""
    from .methods import get_method

    names = list(get_method(loss).scores)
    if get_method(loss).name == "softmax":
        names += [s for s in ("energy", "max_logit") if s not in names]
    return names


@dataclass
class FinetuneRuns:
    """Each run's checkpoint and evaluation (by loss), the table and the files written."""

    checkpoints: dict[str, Path] = field(default_factory=dict)
    evaluations: dict[str, Any] = field(default_factory=dict)
    table: str | None = None
    files: list[Path] = field(default_factory=list)


def finetune_runs(
    cfg: Any,
    baseline: bool = False,
    ood: Sequence[str] = (),
    max_ood_samples: int | None = None,
    posthoc: Sequence[str] = (),
    overwrite: bool = False,
    source: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[str], Callable[[dict[str, float]], None]] | None = None,
    on_run: Callable[[str, Path, float], None] | None = None,
) -> FinetuneRuns:
    """Fine-tune ``cfg`` (a :class:`~isomax.engine.TrainConfig` with ``pretrained`` set) into
    ``cfg.output_dir``; with ``baseline`` (and a loss other than SoftMax) also SoftMax on the
    same weights into ``output_dir/baseline-softmax``. The data is decoded once for every run.

    With ``ood``, each run is evaluated (scores: :func:`finetune_scores`, ``posthoc``
    detectors fitted on the training split) and ``evaluation.json``, ``finetune.md`` and
    ``finetune.json`` are written. ``on_epoch(loss)`` gives each run's per-epoch callback;
    ``on_run(loss, checkpoint, seconds)`` is called after each run's training.
    """
    from .engine import evaluate, resolve_device, train
    from .engine.trainer import TrainData, load_bundle
    from .ood_sets import evaluation_datasets
    from .outputs import ensure_writable
    from .posthoc_fit import check_posthoc_names, fit_posthoc
    from .report import finetune_table, write_json

    posthoc = check_posthoc_names(posthoc)  # before any training: a typo costs nothing
    out = ensure_writable(cfg.output_dir)
    device = resolve_device(cfg.device)
    bundle = load_bundle(cfg)
    data = TrainData.from_bundle(bundle)  # decoded once for every run
    runs = [(cfg.loss, out)]
    if baseline and cfg.loss != "softmax":
        runs.append(("softmax", out / "baseline-softmax"))
    elif overwrite and (out / "baseline-softmax" / "checkpoint.safetensors").is_file():
        # the folder is being replaced: a baseline of an earlier run would read as this one's
        shutil.rmtree(out / "baseline-softmax")
        log.info("removed %s (a baseline of the run this one replaces)", out / "baseline-softmax")
    ood_sets = None
    if ood:
        ood_sets = evaluation_datasets(bundle, ood, cfg.data_root, max_samples=max_ood_samples)
    done = FinetuneRuns()
    for loss, folder in runs:
        run_cfg = cfg.replace(loss=loss, output_dir=str(ensure_writable(folder)))
        t0 = time.perf_counter()
        try:
            result = train(
                run_cfg,
                bundle=bundle,
                data=data,
                on_epoch=on_epoch(loss) if on_epoch else None,
                overwrite=overwrite,
            )
        except FileExistsError:  # the trainer's wording names train's resume
            raise FileExistsError(
                f"{folder} already holds a run: replace it with overwrite=True, or choose "
                "another output_dir"
            ) from None
        done.checkpoints[loss] = Path(result.checkpoint)
        if on_run:
            on_run(loss, Path(result.checkpoint), time.perf_counter() - t0)
        if ood_sets is None:
            continue
        detectors = fit_posthoc(result.model, posthoc, bundle.train, 512) if posthoc else {}
        evaluation = evaluate(
            result.model,
            bundle.test,
            ood_sets,
            finetune_scores(loss),
            device=device,
            detectors=detectors,
        )
        write_json(folder / "evaluation.json", evaluation.to_dict())
        done.evaluations[loss] = evaluation
    if done.evaluations:
        done.table = finetune_table(done.evaluations, cfg.model, str(source or cfg.pretrained))
        (out / "finetune.md").write_text(done.table + "\n")
        write_json(out / "finetune.json", {k: v.to_dict() for k, v in done.evaluations.items()})
        done.files = [out / "finetune.md", out / "finetune.json"]
    return done
