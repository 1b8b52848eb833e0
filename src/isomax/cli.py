"""Command line: ``isomax demo | compare | train | evaluate | calibrate | detect | list``.

A user mistake (unknown name, missing file, bad value, unwritable folder) ends with exit status
2 and one line on stderr; ``--debug`` (or ``ISOMAX_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["build_parser", "main"]

from .errors import is_user_error


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
    from .engine.config import PRESETS

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
    import dataclasses

    from .engine.config import TrainConfig

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
    from .engine.config import PRESETS, TrainConfig

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
    import dataclasses

    from .engine.config import TrainConfig

    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "output_dir"]
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def _ensure_writable(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermissionError(f"cannot create output folder {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise PermissionError(f"output folder {path} is not writable")
    return path


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}"


def _print_eval(evaluation: Any, scores: Sequence[str]) -> None:
    idm = evaluation.id_metrics
    print(
        f"ID: accuracy {_pct(idm['accuracy']).strip()}%  ECE {100 * idm['ece']:.2f}%  "
        f"NLL {idm['nll']:.4f} nats"
    )
    print(f"{'OOD set':<24}{'score':<10}{'TNR@95 %':>9}{'FPR@95(OOD+) %':>16}{'AUROC %':>9}")
    for name, per_score in [*evaluation.ood.items(), ("mean", evaluation.mean)]:
        for s in scores:
            v = per_score[s]
            print(
                f"{name:<24}{s:<10}{_pct(v['tnr_at_tpr95']):>9}{_pct(v['fpr_at_tpr95']):>16}"
                f"{_pct(v['auroc']):>9}"
            )


# ----------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    from .engine import load_config, train

    overrides = _overrides(args)
    if args.output_dir:
        overrides["output_dir"] = str(_ensure_writable(Path(args.output_dir)))
    if args.progress is None:
        overrides["progress"] = not args.quiet and sys.stderr.isatty()
    cfg = load_config(args.config, overrides=overrides)
    if args.resume and args.overwrite:
        raise InputError("--resume and --overwrite exclude each other: choose one")
    ckpt = Path(cfg.output_dir) / "checkpoint.safetensors"
    if args.resume and not ckpt.exists():
        raise FileNotFoundError(
            f"--resume: there is no checkpoint to continue from at {ckpt}; leave out --resume "
            "to start a new run (with --overwrite if the folder holds logs of an earlier one)"
        )
    result = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, rank 0 reports
    if result.history:
        last = result.history[-1]
        print(
            f"epoch {last['epoch']}/{cfg.epochs}: train loss {last['train_loss']:.4f}, "
            f"train acc {_pct(last['train_acc'])}%, val acc {_pct(last['val_acc'])}%, "
            f"{last['images_per_s']:.0f} images/s"
        )
    print(f"checkpoint: {result.checkpoint}")
    return 0


def _dataset_of(path: str, cfg: dict[str, Any], dataset: str | None) -> str:
    """The ID dataset: ``--dataset``, else the file's own if it is a registry name.

    A data location (a folder or an archive) is never taken from a file's metadata: a file
    could point anywhere (``folder:/proc``); the user names it with ``--dataset``.
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


def _csv_cell(text: str) -> str:
    """A text cell that spreadsheets will not run as a formula (=, +, -, @ lead: quote it)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _refuse_onto(output: str | os.PathLike[str], inputs: Sequence[Any], option: str) -> None:
    """Refuse an output path that is one of the command's input files."""
    out = Path(output)
    for src in inputs:
        src = Path(src)
        same = out.resolve() == src.resolve()
        if not same and out.exists() and src.exists():
            same = os.path.samefile(out, src)
        if same:
            raise InputError(
                f"{option} {output} is the input {src}: writing there would overwrite it; "
                "choose another path"
            )


def _load_for_eval(
    checkpoint: str, device_name: str | None, data_root: str | None, dataset: str | None = None
) -> tuple[Any, dict[str, Any], Any, Any]:
    from .engine import TrainConfig, load_model, resolve_device
    from .engine.trainer import load_bundle

    device = resolve_device(device_name or "auto")
    model, meta = load_model(checkpoint, device)
    cfg = meta["config"]
    bundle = load_bundle(
        TrainConfig.from_dict(
            {
                **cfg,
                "dataset": _dataset_of(checkpoint, cfg, dataset),
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
    return model, meta, bundle, device


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import scores as score_mod
    from .compare import evaluation_datasets
    from .engine import evaluate
    from .io import atomic_write_bytes, save_file
    from .methods import get_method
    from .report import evaluation_markdown, write_csv, write_json

    model, meta, bundle, device = _load_for_eval(
        args.checkpoint, args.device, args.data_root, args.dataset
    )
    cfg = meta["config"]
    names = args.scores or list(get_method(cfg["loss"]).scores)
    for s in names:
        score_mod.get(s)
    out = _ensure_writable(Path(args.output_dir or Path(args.checkpoint).parent / "evaluation"))
    ood = evaluation_datasets(
        bundle,
        args.ood,
        args.data_root,
        max_samples=args.max_ood,
        on_error=args.on_error,
    )

    from .compare import fit_posthoc, skipped_files
    from .data.errors import CorruptImageError

    detectors = fit_posthoc(model, args.posthoc or (), bundle.train, args.batch_size)
    try:
        evaluation = evaluate(
            model,
            bundle.test,
            ood,
            names,
            temperature=args.temperature,
            device=device,
            batch_size=args.batch_size,
            keep_scores=args.save_scores,
            detectors=detectors,
        )
    except CorruptImageError as exc:
        raise _corrupt_hint(exc) from None
    if args.save_scores:
        tensors = {f"{g}/{s}": v for g, per in evaluation.scores.items() for s, v in per.items()}
        save_file(
            out / "scores.safetensors", tensors, {"checkpoint": str(args.checkpoint)}, "scores"
        )
    write_csv(out / "evaluation.csv", evaluation.rows())
    atomic_write_bytes(out / "evaluation.md", evaluation_markdown(evaluation).encode())
    write_json(out / "evaluation.json", evaluation.to_dict())
    _print_eval(evaluation, [*names, *detectors])
    for name, ds in ood.items():
        if skipped_files(ds):
            print(f"OOD set {name}: {skipped_files(ds)} undecodable file(s) skipped")
    if args.openood_csv:
        from .interop import to_openood_csv

        _ensure_writable(Path(args.openood_csv).parent)
        to_openood_csv(evaluation, args.openood_csv, get_method(cfg["loss"]).score, near=args.near)
        print(f"written: {args.openood_csv} (OpenOOD layout)")

    print(
        f"written: {out}/evaluation.json, evaluation.csv, evaluation.md"
        + (", scores.safetensors" if args.save_scores else "")
    )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import torch

    from .detector import OODDetector
    from .methods import get_method

    model, meta, bundle, device = _load_for_eval(
        args.checkpoint, args.device, args.data_root, args.dataset
    )
    if bundle.val is None or len(bundle.val) == 0:
        raise InputError(
            "the dataset has no validation split (val_split=0): nothing to "
            "calibrate on; the test split is never used for calibration"
        )
    loader = torch.utils.data.DataLoader(bundle.val, batch_size=args.batch_size)
    score = args.score or get_method(meta["config"]["loss"]).score
    detector = OODDetector(model, score=score, device=device)
    objective = None if args.objective == "none" else args.objective
    fit_loader = torch.utils.data.DataLoader(bundle.train, batch_size=args.batch_size)
    detector.fit(loader, tpr=args.tpr, calibrate=objective, scorer_id_loader=fit_loader)

    detector.metadata = {
        k: meta[k]
        for k in ("config", "num_classes", "input_shape", "mean", "std", "class_names")
        if k in meta
    }
    out = Path(args.output or Path(args.checkpoint).parent / "detector.safetensors")
    _refuse_onto(out, [args.checkpoint], "--output")
    _ensure_writable(out.parent)
    detector.save(out)
    print(
        f"score {score}, temperature {detector.temperature:.4g}, threshold "
        f"{detector.threshold:.6g} (keeps {100 * args.tpr:.1f}% of ID validation inputs)"
    )
    print(f"detector: {out}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    import csv
    import io

    from .data.inputs import iter_image_batches
    from .detector import OODDetector
    from .io import atomic_write_bytes

    if args.output:
        from .data.images import find_images

        files = [p for p in args.paths if Path(p).is_file()]
        out = Path(args.output).resolve()
        for folder in (Path(p) for p in args.paths if Path(p).is_dir()):
            if out.is_relative_to(folder.resolve()):  # an image of the folder, read below
                files += [f for f in find_images(folder) if Path(f).resolve() == out]
        _refuse_onto(args.output, [args.detector, *files], "--output")
    detector = OODDetector.load(args.detector, device=args.device)
    meta = detector.metadata
    if "input_shape" not in meta:
        raise InputError(
            f"{args.detector} does not record the input shape; make it with `isomax calibrate`"
        )
    names = meta.get("class_names") or []
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=["path", "class", "class_name", "probability", "score", "is_ood"]
    )
    writer.writeheader()
    n_images = n_ood = n_skipped = 0
    batches = iter_image_batches(
        args.paths,
        meta["input_shape"],
        meta["mean"],
        meta["std"],
        on_error=args.on_error,
        batch_size=args.batch_size,
    )
    for x, paths, skipped in batches:  # one batch of images in memory at a time
        n_skipped += len(skipped)
        if not paths:
            continue
        pred = detector.predict(x)
        for i, path in enumerate(paths):
            c = int(pred.classes[i])
            n_ood += bool(pred.is_ood[i])
            writer.writerow(
                {
                    "path": path,
                    "class": c,
                    "class_name": _csv_cell(names[c] if c < len(names) else str(c)),
                    "probability": f"{float(pred.probs[i, c]):.6f}",
                    "score": f"{float(pred.scores[i]):.6g}",
                    "is_ood": bool(pred.is_ood[i]),
                }
            )
        n_images += len(paths)
    if n_images == 0:
        raise InputError(f"none of the {n_skipped} image files could be read")
    if args.output:
        _ensure_writable(Path(args.output).parent)
        atomic_write_bytes(args.output, buf.getvalue().encode())
    else:
        sys.stdout.write(buf.getvalue())
    print(
        f"{n_images} images, {n_ood} flagged OOD, {n_skipped} skipped (unreadable)",
        file=sys.stderr,
    )
    return 0


def _run_compare(
    args: argparse.Namespace,
    dataset: str,
    model: str,
    losses: Sequence[str],
    seeds: Any,
    ood: Sequence[str],
    out: Path,
    overrides: dict[str, Any],
) -> int:
    from .compare import compare
    from .report import markdown_table, verdict

    _ensure_writable(out)
    t0 = time.perf_counter()
    c0 = time.process_time()
    import torch

    threads = torch.get_num_threads()

    def on_run(loss: str, seed: int, status: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {loss:<11} seed {seed}: {status}", flush=True)

    preset = overrides.pop("preset", None) or "cpu"
    overrides.setdefault("progress", sys.stderr.isatty())  # else one line per epoch
    from .data.errors import CorruptImageError

    try:
        result = compare(
            dataset=dataset,
            model=model,
            losses=losses,
            seeds=seeds,
            ood=ood,
            output_dir=out,
            preset=preset,
            config_file=getattr(args, "config", None),
            overrides=overrides,
            figures=not args.no_figures,
            on_run=on_run,
            max_ood_samples=getattr(args, "max_ood", None),
            posthoc=getattr(args, "posthoc", None) or (),
            on_error=overrides.get("on_error", "raise"),
        )
    except CorruptImageError as exc:
        raise _corrupt_hint(exc) from None
    for name, n in result.skipped.items():
        print(f"OOD set {name}: {n} undecodable file(s) skipped")
    print()
    print("All values in %, mean ± std over seeds.")
    print(markdown_table(result.aggregate))
    print()
    print("Which method won (each with its recommended score):")
    for line in verdict(result.aggregate):
        print(line.replace("**", ""))
    print()
    print(
        f"report: {result.report} ({time.perf_counter() - t0:.0f} s wall, "
        f"{time.process_time() - c0:.0f} s CPU, {threads} torch thread(s))"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    dataset = overrides.pop("dataset", None) or "digits"
    model = overrides.pop("model", None) or "digits_cnn"
    seeds: Any = args.seeds
    if args.seed_list:
        try:
            seeds = [int(v) for v in args.seed_list]
        except ValueError:
            raise InputError(f"--seed-list must hold integers, got {args.seed_list}") from None
    return _run_compare(
        args, dataset, model, args.losses, seeds, args.ood, Path(args.output_dir), overrides
    )


DEMO: dict[str, Any] = dict(
    dataset="fashion-mnist-small",
    model="digits_cnn",
    ood=["digits", "photos", "gaussian", "uniform"],
    epochs=6,
    seeds=3,
)


def free_cores() -> int:
    """Cores not busy with other work now: the cores this process may use minus the load
    average of the last minute (at least 1). OMP_NUM_THREADS, when set, wins."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not on Unix
        load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


def _size_threads() -> int:
    """One torch thread per free core: more threads than free cores spin against the other
    processes (on a busy 2-core machine the demo took five times the CPU time)."""
    import torch

    n = free_cores()
    torch.set_num_threads(n)
    return n


def cmd_demo(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"epochs": DEMO["epochs"], "preset": "cpu"}
    if args.device:
        overrides["device"] = args.device
    print(
        "isomax demo: SoftMax against IsoMax, IsoMax+ and DisMax on a 2,000-image subset of "
        "Fashion-MNIST (14x14, shipped with isomax) as in-distribution data; OOD: "
        f"{', '.join(DEMO['ood'])} (handwritten digits, photo patches, noise); "
        f"{DEMO['seeds']} seeds, {DEMO['epochs']} epochs each.",
        flush=True,
    )
    return _run_compare(
        args,
        DEMO["dataset"],
        DEMO["model"],
        ["softmax", "isomax", "isomaxplus", "dismax"],
        DEMO["seeds"],
        DEMO["ood"],
        Path(args.output_dir),
        overrides,
    )


def cmd_finetune(args: argparse.Namespace) -> int:
    from .engine import evaluate, load_config, resolve_device, train
    from .engine.trainer import TrainData, load_bundle
    from .methods import get_method
    from .models.pretrained import load_weights
    from .report import write_json

    if bool(args.checkpoint) == bool(args.pretrained):
        raise InputError("give exactly one source: --pretrained FILE or --checkpoint PATH")
    source = args.pretrained or args.checkpoint
    if args.pretrained and args.pretrained.startswith(("timm:", "torchvision:")):
        if not Path(args.pretrained).exists():
            raise InputError(
                f"--pretrained takes a weights file, got {args.pretrained!r}; for a timm "
                "architecture give its state dict: --pretrained FILE --model timm:NAME"
            )
    weights = load_weights(source, args.model)
    overrides = _overrides(args)
    overrides.update(pretrained=str(source), model=weights.model)
    source_cfg = weights.info.get("source_config") or {}
    if "dataset" not in overrides:
        if not source_cfg:
            raise InputError("--dataset is required with --pretrained")
        overrides["dataset"] = _dataset_of(source, source_cfg, None)
    overrides.setdefault("loss", "isomaxplus")
    cfg = load_config(args.config, preset="finetune", overrides=overrides)
    out = _ensure_writable(Path(args.output_dir))
    device = resolve_device(cfg.device)
    bundle = load_bundle(cfg)
    data = TrainData.from_bundle(bundle)  # decoded once for every run
    runs = [(cfg.loss, out)]
    if args.baseline and cfg.loss != "softmax":
        runs.append(("softmax", out / "baseline-softmax"))
    ood = None
    if args.ood:
        from .compare import evaluation_datasets

        ood = evaluation_datasets(bundle, args.ood, cfg.data_root, max_samples=args.max_ood)
    results: dict[str, Any] = {}
    for loss, folder in runs:
        run_cfg = cfg.replace(loss=loss, output_dir=str(_ensure_writable(folder)))
        t0 = time.perf_counter()
        try:
            result = train(
                run_cfg,
                bundle=bundle,
                data=data,
                on_epoch=_epoch_printer(loss, cfg),
                overwrite=args.overwrite,
            )
        except FileExistsError:  # the trainer's wording names train's --resume
            raise FileExistsError(
                f"{folder} already holds a run: replace it with --overwrite, or choose another "
                "--output-dir"
            ) from None
        print(f"{loss}: checkpoint {result.checkpoint} ({time.perf_counter() - t0:.0f}s)")
        if ood is None:
            continue
        names = list(get_method(loss).scores)
        if loss == "softmax":
            names += [s for s in ("energy", "max_logit") if s not in names]
        detectors = {}
        if args.posthoc:
            from .compare import fit_posthoc

            detectors = fit_posthoc(result.model, args.posthoc, bundle.train, 512)
        evaluation = evaluate(
            result.model, bundle.test, ood, names, device=device, detectors=detectors
        )
        write_json(folder / "evaluation.json", evaluation.to_dict())
        results[loss] = evaluation
    if results:
        table = _finetune_table(results, weights.model, str(source))
        (out / "finetune.md").write_text(table + "\n")
        write_json(out / "finetune.json", {k: v.to_dict() for k, v in results.items()})
        print()
        print(table)
        print(f"\nwritten: {out / 'finetune.md'}, {out / 'finetune.json'}")
    return 0


def _epoch_printer(loss: str, cfg: Any) -> Any:
    def show(row: dict[str, float]) -> None:
        print(
            f"{loss} epoch {int(row['epoch'])}/{cfg.epochs}: loss {row['train_loss']:.4f}, "
            f"train acc {_pct(row['train_acc'])}%, val acc {_pct(row['val_acc'])}%, "
            f"{row['seconds']:.0f}s",
            flush=True,
        )

    return show


def _finetune_table(results: dict[str, Any], model: str, source: str) -> str:
    """One Markdown table: every run and score, accuracy and TNR@TPR95 / AUROC per OOD set."""
    first = next(iter(results.values()))
    sets = [*first.ood, "mean"]
    lines = [
        f"Fine-tuned from {source} ({model}). Values in %. TNR@TPR95: ID positive (IsoMax "
        "papers); AUROC: ID positive.",
        "",
        "| run | score | accuracy | " + " | ".join(f"{n} TNR@95 / AUROC" for n in sets) + " |",
        "|---|---|---|" + "---|" * len(sets),
    ]
    for loss, ev in results.items():
        for score in ev.mean:
            cells = []
            for name in sets:
                v = ev.mean[score] if name == "mean" else ev.ood[name][score]
                cells.append(f"{_pct(v['tnr_at_tpr95']).strip()} / {_pct(v['auroc']).strip()}")
            acc = _pct(ev.id_metrics["accuracy"]).strip()
            lines.append(f"| {loss} | {score} | {acc} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    from . import scores
    from .compare import posthoc_detector_names
    from .data import list_datasets, list_ood_datasets
    from .engine.config import PRESETS
    from .methods import METHODS
    from .models import list_models

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


# ----------------------------------------------------------------------------- parser


EXAMPLES: dict[str, tuple[str, ...]] = {
    "demo": ("isomax demo", "isomax demo --output-dir /tmp/demo --no-figures"),
    "compare": (
        "isomax compare --seeds 3 --ood digits-5to9,photos --dataset digits-0to4",
        "isomax compare --dataset cifar10 --model resnet18 --preset fast --seeds 3 "
        "--ood svhn,folder:/data/my_ood --data-root ~/data --download --output-dir runs/c10",
    ),
    "train": (
        "isomax train --loss isomaxplus --epochs 20 --output-dir runs/digits",
        "isomax train --dataset cifar10 --model resnet34 --loss isomaxplus --preset paper "
        "--data-root ~/data --download",
    ),
    "evaluate": (
        "isomax evaluate runs/train/checkpoint.safetensors --ood gaussian,photos",
        "isomax evaluate CKPT --ood svhn,folder:/data/my_ood --on-error skip --save-scores",
    ),
    "calibrate": (
        "isomax calibrate runs/train/checkpoint.safetensors",
        "isomax calibrate CKPT --objective ece --tpr 0.99 --output detector.safetensors",
    ),
    "detect": (
        "isomax detect runs/train/detector.safetensors photos/ --output predictions.csv",
        "isomax detect DETECTOR a.png b.jpg --on-error fail",
    ),
    "finetune": (
        "isomax finetune --checkpoint softmax-run/checkpoint.safetensors --loss isomaxplus",
        "isomax finetune --pretrained timm:resnet18 --dataset cifar10 --ood svhn --epochs 3",
    ),
    "list": ("isomax list",),
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and appends ``(default: X)`` to help texts that do not
    name their default already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or not action.option_strings
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or isinstance(action, argparse._HelpAction | argparse._VersionAction)
        ):
            return text
        if isinstance(default, list | tuple):
            shown = ",".join(map(str, default)) if default else "none"
        elif default == "raise" and "--on-error" in action.option_strings:
            shown = "fail"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="isomax", description="IsoMax-family losses for out-of-distribution detection."
    )
    parser.add_argument("--version", action="version", version=f"isomax {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="compare the four losses on data shipped with isomax (Fashion-MNIST subset "
        "against handwritten digits, photos and noise; under a minute on a CPU)",
        description="SoftMax against IsoMax, IsoMax+ and DisMax, 3 seeds each, on a 2,000-image "
        "Fashion-MNIST subset shipped with isomax; OOD: scikit-learn's handwritten digits, "
        "photo patches and noise. Prints the table and which method won; writes a report with "
        "figures.",
    )
    p.add_argument(
        "--output-dir", default="isomax-demo", help="report folder (default: %(default)s)"
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "compare", help="train and evaluate several losses and seeds; write a report"
    )
    p.add_argument(
        "--losses",
        type=_csv_list,
        default=["softmax", "isomax", "isomaxplus", "dismax"],
        help="losses to compare, comma-separated",
    )
    p.add_argument("--seeds", type=_positive_int, default=1, help="seeds 0 .. N-1 per loss")
    p.add_argument(
        "--seed-list",
        type=_csv_list,
        help="explicit seeds instead of --seeds, e.g. 2,3 (runs in the same output "
        "folder are shared between invocations) (default: none)",
    )
    p.add_argument(
        "--ood",
        type=_csv_list,
        default=["gaussian", "uniform", "photos"],
        help="OOD sets: names (see `isomax list`), folder:PATH or archives, comma-separated",
    )
    p.add_argument(
        "--max-ood",
        type=_positive_int,
        help="evaluate on at most N inputs of each OOD set (default: all)",
    )
    p.add_argument("--output-dir", default="runs/compare", help="report folder")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--posthoc", type=_csv_list, help=POSTHOC_HELP)
    _add_train_options(p, skip=("loss", "seed"))
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", help="train one model")
    _add_train_options(p)
    p.add_argument("--output-dir", help="where the checkpoint and logs go (default: runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint there")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run already in --output-dir (its checkpoint, logs, detector and "
        "evaluation are removed); without it such a folder is refused (default: off)",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no per-epoch lines"
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint against OOD sets")
    p.add_argument(
        "checkpoint", help="a checkpoint.safetensors written by `isomax train` or `compare`"
    )
    p.add_argument(
        "--ood",
        type=_csv_list,
        required=True,
        help="OOD sets (required): names (see `isomax list`), folder:PATH or archives, "
        "comma-separated",
    )
    p.add_argument(
        "--scores",
        type=_csv_list,
        help="scores to report, comma-separated (default: the scores that suit the loss)",
    )
    p.add_argument(
        "--max-ood",
        type=_positive_int,
        help="evaluate on at most N inputs of each OOD set (default: all)",
    )
    p.add_argument("--dataset", help="ID dataset (default: the one it was trained on)")
    p.add_argument("--data-root", help="folder holding the dataset files (default: the cache)")
    p.add_argument(
        "--temperature", type=float, default=1.0, help="divide the logits by T before scoring"
    )
    p.add_argument("--batch-size", type=_positive_int, default=512, help="inference batch size")
    p.add_argument(
        "--on-error", type=_on_error, default="raise", metavar="{skip,fail}", help=ON_ERROR_HELP
    )
    p.add_argument("--save-scores", action="store_true", help="also write scores.safetensors")
    p.add_argument("--posthoc", type=_csv_list, help=POSTHOC_HELP)
    p.add_argument(
        "--openood-csv",
        help="also write OpenOOD v1.5's ood.csv layout here, for the loss's recommended "
        "score (default: not written)",
    )
    p.add_argument(
        "--near",
        type=_csv_list,
        default=[],
        help="OOD sets of the near-OOD group in the OpenOOD CSV (the rest are far) (default: none)",
    )
    p.add_argument("--output-dir", help="result folder (default: <checkpoint folder>/evaluation)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "calibrate",
        help="fit temperature and threshold on the validation split and save a detector",
    )
    p.add_argument(
        "checkpoint", help="a checkpoint.safetensors written by `isomax train` or `compare`"
    )
    p.add_argument(
        "--score", help="OOD score (see `isomax list`) (default: the loss's recommended score)"
    )
    p.add_argument(
        "--objective",
        choices=["nll", "ece", "none"],
        default="nll",
        help="what the temperature minimises on the validation split (none: keep T = 1)",
    )
    p.add_argument(
        "--tpr",
        type=_rate,
        default=0.95,
        help="share of ID validation inputs the threshold keeps, in (0, 1]",
    )
    p.add_argument(
        "--dataset",
        help="ID dataset (default: the one it was trained on, when that is a registry name)",
    )
    p.add_argument("--data-root", help="folder holding the dataset files (default: the cache)")
    p.add_argument("--batch-size", type=_positive_int, default=512, help="inference batch size")
    p.add_argument(
        "--output", help="detector file (default: <checkpoint folder>/detector.safetensors)"
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("detect", help="classify image files and flag OOD ones (CSV)")
    p.add_argument("detector", help="a detector.safetensors written by `isomax calibrate`")
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--output", help="CSV file (default: standard output)")
    p.add_argument(
        "--on-error", type=_on_error, default="skip", metavar="{skip,fail}", help=ON_ERROR_HELP
    )
    p.add_argument("--batch-size", type=_positive_int, default=256, help="images per batch")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser(
        "finetune",
        help="start from trained weights, swap the classifier for an isomax head, fine-tune",
        description="Fine-tune a trained classifier (a weights file, or an isomax checkpoint) "
        "with an IsoMax-family head through the training engine; with --baseline the same "
        "weights are also fine-tuned with SoftMax, and --ood evaluates both in one table.",
        epilog="example: isomax finetune --pretrained resnet20-12fca82f.th --normalize imagenet "
        "--dataset cifar10_jpg.tar.xz --loss isomax --epochs 2 --baseline "
        "--ood tinyimagenet_val10k.tar.xz,mnist --output-dir runs/ft",
    )
    p.add_argument(
        "--checkpoint",
        help="start from an isomax checkpoint, e.g. a SoftMax run, instead of --pretrained "
        "(default: none)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also fine-tune the same weights with SoftMax, in OUTPUT_DIR/baseline-softmax "
        "(default: off)",
    )
    p.add_argument(
        "--ood",
        type=_csv_list,
        help="evaluate against these OOD sets afterwards (default: no evaluation)",
    )
    p.add_argument(
        "--max-ood",
        type=_positive_int,
        help="evaluate on at most N inputs of each OOD set (default: all)",
    )
    p.add_argument("--posthoc", type=_csv_list, help=POSTHOC_HELP)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace runs already in --output-dir (default: off; such a folder is refused)",
    )
    _add_train_options(
        p,
        defaults={
            "preset": "finetune",
            "model": "read from the weights file",
            "dataset": "the --checkpoint's own, when it is a registry name",
            "loss": "isomaxplus",
        },
    )
    p.add_argument(
        "--output-dir",
        default="runs/finetune",
        help="checkpoints and evaluation (default: %(default)s)",
    )
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "list",
        help="list datasets, OOD sets, models, losses, scores, post-hoc detectors and presets",
    )

    p.set_defaults(func=cmd_list)
    for name, command in sub.choices.items():
        command.formatter_class = _HelpFormatter
        if name in EXAMPLES:
            command.epilog = "examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES[name])
    return parser


class _EpochFormatter(logging.Formatter):
    """The per-epoch record bare, anything else as the root logger prints it."""

    def format(self, record: logging.LogRecord) -> str:
        if _is_epoch_record(record):
            return record.getMessage()
        return f"{record.levelname} {record.name}: {record.getMessage()}"


def _is_epoch_record(record: logging.LogRecord) -> bool:
    return record.levelno == logging.INFO and "epoch %d/%d" in str(record.msg)


def _epoch_lines(terminal: bool, verbose: bool = False) -> None:
    """One line per epoch on stderr when it is not a terminal (CI logs, nohup): the trainer's
    per-epoch log record, printed bare. On a terminal the progress bars show the epochs."""
    trainer_log = logging.getLogger("isomax.engine.trainer")
    for h in list(trainer_log.handlers):
        if isinstance(h.formatter, _EpochFormatter):
            trainer_log.removeHandler(h)
    trainer_log.propagate = True
    if terminal:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EpochFormatter())
    handler.addFilter(lambda r: verbose or r.levelno >= logging.WARNING or _is_epoch_record(r))
    trainer_log.addHandler(handler)
    trainer_log.setLevel(logging.INFO)
    trainer_log.propagate = False


# Library messages name Python arguments; on the command line the options say the same.
CLI_WORDS = (
    ("Pass download=True", "Pass --download"),
    ("pass download=True", "pass --download"),
    ("point root= at", "point --data-root at"),
    ("pass root= pointing at", "pass --data-root pointing at"),
    ("(val_split=0)", "(trained with val_split = 0)"),
    (
        "does not record its model configuration: pass the model, OODDetector.load(path, model)",
        "does not record its model configuration; make the detector with `isomax calibrate`",
    ),
    ("on_error='skip'", "--on-error skip"),
)


def _cli_words(message: str) -> str:
    for library, cli in CLI_WORDS:
        message = message.replace(library, cli)
    return message


def _resume_hint(argv: Sequence[str]) -> str:
    """What to run to continue an interrupted ``train`` (same options, --resume)."""
    import shlex

    kept = [a for a in argv if a not in ("--overwrite", "--resume")]
    return "continue it with: isomax " + " ".join(map(shlex.quote, [*kept, "--resume"]))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``isomax`` command; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    debug = args.debug or os.environ.get("ISOMAX_DEBUG") == "1"
    if args.command in ("train", "compare", "demo") and not getattr(args, "quiet", False):
        _epoch_lines(sys.stderr.isatty(), args.verbose)
    if args.command != "list":
        _size_threads()
    try:
        return int(args.func(args))
    except Exception as exc:  # KeyboardInterrupt is not an Exception: handled below
        if debug:
            raise
        if not is_user_error(exc):  # a defect in isomax: show where, ask for a report
            import traceback

            traceback.print_exc()
            print(
                f"isomax {args.command}: internal error ({type(exc).__name__}): this is a "
                "defect in isomax, not a mistake in your input; please report it with the "
                "traceback above",
                file=sys.stderr,
            )
            return 1
        message = _cli_words(" ".join(str(exc).split()) or type(exc).__name__)
        print(f"isomax {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = ""
        if args.command == "train":
            from .engine import load_config

            try:
                out = Path(load_config(args.config, overrides=_overrides(args)).output_dir)
                if args.output_dir:
                    out = Path(args.output_dir)
            except Exception:  # the hint is a courtesy: never hide the interruption
                out = Path(args.output_dir or "runs/train")
            if (out / "checkpoint.safetensors").exists():
                hint = f"; the last checkpoint is kept, {_resume_hint(argv)}"
            else:
                hint = "; no checkpoint was written yet (start again with --overwrite)"
        print(f"isomax {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
