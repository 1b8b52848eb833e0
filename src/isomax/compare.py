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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import scores as _scores
from .engine.config import load_config, settings_with_role
from .engine.evaluation import evaluate
from .engine.trainer import load_bundle, resolve_device, train
from .errors import InputError
from .io import save_file
from .methods import get_method
from .report import aggregate, write_json

__all__ = ["CompareResult", "compare", "evaluation_datasets"]

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


def evaluation_datasets(
    bundle: Any,
    ood: Sequence[str],
    root: str | None = None,
    download: bool = False,
    max_samples: int | None = None,
    on_error: str = "raise",
) -> dict[str, Any]:
    """The OOD sets named in ``ood``, brought to the ID bundle's shape and normalisation.

    ``max_samples`` keeps a seeded random subset of each larger set. ``on_error`` (``"raise"``
    or ``"skip"``) applies to undecodable files of folders and archives; count the skipped
    ones after evaluating with :func:`skipped_files`. A set whose images have another size than
    the ID inputs is logged once, with both sizes.
    """
    from .data import get_ood_dataset
    from .data.registry import _local_path

    sets = {}
    for name in ood:
        kw = {"on_error": on_error} if _local_path(name) is not None else {}
        ds = get_ood_dataset(
            name, like=bundle, root=root, download=download, max_samples=max_samples, **kw
        )
        _log_resize(_label(name), ds, tuple(bundle.input_shape))
        sets[_label(name)] = ds
    if len(sets) != len(ood):
        raise InputError(f"ood names two sets with the same label: {list(ood)}")
    return sets


def _base_chain(ds: Any) -> list[Any]:
    chain = [ds]
    while getattr(chain[-1], "base", None) is not None and len(chain) < 10:
        chain.append(chain[-1].base)
    return chain


def _log_resize(label: str, ds: Any, shape: tuple[int, ...]) -> None:
    """Say once per OOD set when its images are resized to the ID input size."""
    from .data.core import AdaptedDataset
    from .data.images import ImageFilesDataset

    want = "x".join(str(v) for v in shape[1:])
    for part in _base_chain(ds):
        if isinstance(part, AdaptedDataset):
            got = "x".join(str(v) for v in part.base.shape[1:])
            if got != want:
                log.warning("OOD set %s: its %s images are resized to %s", label, got, want)
            return
        if isinstance(part, ImageFilesDataset):
            sizes = _file_sizes(part.files[:20])
            other = sorted(s for s in sizes if s != want)
            if other:
                shown = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
                log.warning(
                    "OOD set %s: images of %s pixels (first %d files) are resized to %s",
                    label,
                    shown,
                    min(20, len(part.files)),
                    want,
                )
            return


def _file_sizes(files: Sequence[Path]) -> set[str]:
    """Image sizes as ``HxW``, read from the file headers (unreadable files left out)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is needed to decode folders anyway
        return set()
    sizes = set()
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.add(f"{im.size[1]}x{im.size[0]}")
        except OSError:
            continue
    return sizes


def skipped_files(ds: Any) -> int:
    """How many distinct undecodable files an OOD set skipped (``on_error="skip"``)."""
    for part in _base_chain(ds):
        skipped = getattr(part, "skipped", None)
        if isinstance(skipped, list) and skipped:
            return len(set(skipped))
    return 0


def ood_fingerprint(name: str) -> str | None:
    """What identifies the content of a folder or archive OOD set: a digest of every file's
    relative name, size and modification time (``None`` for registry names)."""
    import hashlib

    from .data.registry import _local_path

    path = _local_path(name)
    if path is None or not path.exists():
        return None
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        rel = f.name if f == path else f.relative_to(path).as_posix()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _label(name: str) -> str:
    """A short table label for an OOD set: the registry name, or a path's last component."""
    prefix, path = ("folder:", name[7:]) if name.startswith("folder:") else ("", name)
    if "/" not in path and "\\" not in path:
        return name
    base = Path(path.rstrip("/\\")).name
    for suffix in (".tar.gz", ".tar.xz", ".tar.bz2", ".tgz", ".tar", ".zip"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return prefix + base


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


def fit_posthoc(model: Any, names: Sequence[str], fit_data: Any, batch_size: int = 512) -> dict:
    """Post-hoc detectors fitted on ID data (the training split; never the test split)."""
    from .posthoc import fit_detectors, get_detector

    check_posthoc_names(names)
    if not names:
        return {}
    detectors = {name: get_detector(name, model) for name in names}
    fit_detectors(list(detectors.values()), _fit_batches(fit_data, batch_size))
    return detectors


class _NormalizedBatches:
    """Re-iterable normalised batches of raw images held in memory."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: Any, std: Any, size: int) -> None:
        self.x, self.y, self.mean, self.std, self.size = x, y, mean, std, size

    def __iter__(self) -> Any:
        from .data import normalize

        for i in range(0, len(self.y), self.size):
            yield (
                normalize(self.x[i : i + self.size], self.mean, self.std),
                self.y[i : i + self.size],
            )


def _decode_train_once(bundle: Any) -> Any:
    """The bundle with its training and validation splits decoded into memory once for every
    run: training, calibration and the post-hoc detectors of each run then read them instead of
    the image files (training holds both in memory anyway, so this costs no more memory)."""
    from .data import ImageDataset, TensorImageDataset, to_tensors

    def in_memory(split: Any) -> Any:
        if not isinstance(split, ImageDataset) or split.transform is not None:
            return split
        if split.raw_tensors() is not None:  # already in memory
            return split
        x, y = to_tensors(split)
        if len(y) < len(split):
            log.warning("%d unreadable images were skipped (on_error='skip')", len(split) - len(y))
        names = getattr(split, "class_names", None)
        return TensorImageDataset(x, y, mean=split.mean, std=split.std, class_names=names)

    val = bundle.val
    if val is not None and len(val):
        val = in_memory(val)
    return replace(bundle, train=in_memory(bundle.train), val=val)


def _fit_batches(fit_data: Any, batch_size: int) -> Any:
    """Batches to fit detectors on: image files are decoded once (by threads) for them all."""
    from .data import ImageDataset, to_tensors

    if isinstance(fit_data, ImageDataset) and fit_data.transform is None:
        x, y = to_tensors(fit_data)
        return _NormalizedBatches(x, y, fit_data.mean, fit_data.std, batch_size)
    return torch.utils.data.DataLoader(fit_data, batch_size=batch_size, shuffle=False)


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
) -> dict[str, Any]:
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
    from .data.registry import _local_path

    for name in ood:  # a malformed path fails before any data is loaded
        _local_path(name)
    check_posthoc_names(posthoc)
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
    bundle = _decode_train_once(load_bundle(base))

    ood_sets = evaluation_datasets(
        bundle, ood, base.data_root, base.download, max_ood_samples, on_error=on_error
    )
    content = {_label(name): ood_fingerprint(name) for name in ood}
    runs = []
    for loss in methods:
        for seed in seed_list:
            run_dir = out / "runs" / f"{loss}-seed{seed}"
            done = run_dir / EVAL_NAME
            cfg = base.replace(
                loss=loss,
                seed=seed,
                output_dir=str(run_dir),
                # FPR is a DisMax option: the other losses train without it
                fpr_alpha=base.fpr_alpha if loss == "dismax" else None,
            )

            status = "trained"
            if done.exists():
                try:
                    record = json.loads(done.read_text())
                except json.JSONDecodeError:
                    log.warning("%s is unreadable; running %s seed %d again", done, loss, seed)
                else:
                    _check_same_settings(done, record.get("config", {}), cfg.to_dict())
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
                        "%s seed %d: OOD sets, their files or the detectors changed; evaluating "
                        "again",
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
                )
            )
            if on_run:
                on_run(loss, seed, status)
    agg = aggregate(runs)
    from .report import write_report

    report = write_report(out, runs, agg, figures=figures)
    skipped = {name: skipped_files(ds) for name, ds in ood_sets.items()}
    return CompareResult(out, runs, agg, report, {k: v for k, v in skipped.items() if v})
