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

__all__ = ["build_parser", "main"]

USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    NotADirectoryError,
    IsADirectoryError,
    ImportError,
    OSError,  # a full disk, a read-only folder: the message names the path
)


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
    "mahalanobis, knn, vim, react (comma-separated)"
)


def _add_train_options(p: argparse.ArgumentParser, with_loss: bool = True) -> None:
    g = p.add_argument_group("training (override the preset and the --config file)")
    g.add_argument("--config", help="TOML file with training settings ([train] table or top level)")
    g.add_argument("--preset", help="paper (the authors' recipe), fast (GPU) or cpu (default)")
    g.add_argument("--dataset", help="dataset name, folder:PATH or an archive (default: digits)")
    g.add_argument("--model", help="model name (see `isomax list`)")
    if with_loss:
        g.add_argument("--loss", help="softmax, isomax, isomaxplus or dismax")
    g.add_argument("--epochs", type=_positive_int)
    g.add_argument("--batch-size", type=_positive_int)
    g.add_argument("--lr", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--schedule", choices=["multistep", "onecycle", "cosine", "constant"])
    g.add_argument("--amp", choices=["none", "bf16", "fp16"])
    g.add_argument(
        "--augment",
        choices=["auto", "crop_flip", "none"],
        help="auto: crop + flip for RGB images of 16 px or more, none otherwise",
    )
    g.add_argument("--compile", action="store_true", default=None, help="use torch.compile")
    g.add_argument("--channels-last", action="store_true", default=None)
    g.add_argument("--fpr-alpha", type=float, help="DisMax FPR weight: 1, 0.5 or 0.25")
    g.add_argument("--data-root", help="folder holding (or to receive) dataset files")
    g.add_argument(
        "--download",
        action="store_true",
        default=None,
        help="download missing dataset files (checksums verified)",
    )
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    g.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        help="unreadable images in a folder dataset: stop (default) or skip them",
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "preset",
        "dataset",
        "model",
        "loss",
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "schedule",
        "amp",
        "augment",
        "compile",
        "channels_last",
        "fpr_alpha",
        "data_root",
        "download",
        "device",
        "seed",
        "on_error",
    )
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


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
    print(f"ID: accuracy {_pct(idm['accuracy'])}%  ECE {idm['ece']:.4f}  NLL {idm['nll']:.4f}")
    print(f"{'OOD set':<24}{'score':<10}{'TNR@95':>8}{'FPR@95(OOD+)':>14}{'AUROC':>8}")
    for name, per_score in [*evaluation.ood.items(), ("mean", evaluation.mean)]:
        for s in scores:
            v = per_score[s]
            print(
                f"{name:<24}{s:<10}{_pct(v['tnr_at_tpr95']):>8}{_pct(v['fpr_at_tpr95']):>14}"
                f"{_pct(v['auroc']):>8}"
            )


# ----------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    from .engine import load_config, train

    overrides = _overrides(args)
    if args.output_dir:
        overrides["output_dir"] = str(_ensure_writable(Path(args.output_dir)))
    overrides["progress"] = not args.quiet and sys.stderr.isatty()
    cfg = load_config(args.config, overrides=overrides)
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other: choose one")
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
    raise ValueError(
        f"{path} was trained on {name!r}, a data location: isomax does not read data locations "
        f"from a file; pass --dataset {name} to use it"
    )


def _refuse_onto(output: str | os.PathLike[str], inputs: Sequence[Any], option: str) -> None:
    """Refuse an output path that is one of the command's input files."""
    out = Path(output)
    for src in inputs:
        src = Path(src)
        same = out.resolve() == src.resolve()
        if not same and out.exists() and src.exists():
            same = os.path.samefile(out, src)
        if same:
            raise ValueError(
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
        raise ValueError(
            f"dataset {bundle.name!r} has {bundle.num_classes} classes but the "
            f"checkpoint was trained on {meta['num_classes']}"
        )
    if tuple(bundle.input_shape) != tuple(meta["input_shape"]):
        raise ValueError(
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
    ood = evaluation_datasets(bundle, args.ood, args.data_root, max_samples=args.max_ood)

    from .compare import fit_posthoc

    detectors = fit_posthoc(model, args.posthoc or (), bundle.train, args.batch_size)
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
    if args.save_scores:
        tensors = {f"{g}/{s}": v for g, per in evaluation.scores.items() for s, v in per.items()}
        save_file(
            out / "scores.safetensors", tensors, {"checkpoint": str(args.checkpoint)}, "scores"
        )
    write_csv(out / "evaluation.csv", evaluation.rows())
    atomic_write_bytes(out / "evaluation.md", evaluation_markdown(evaluation).encode())
    write_json(out / "evaluation.json", evaluation.to_dict())
    _print_eval(evaluation, [*names, *detectors])
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
        raise ValueError(
            "the dataset has no validation split (val_split=0): nothing to "
            "calibrate on; the test split is never used for calibration"
        )
    loader = torch.utils.data.DataLoader(bundle.val, batch_size=args.batch_size)
    score = args.score or get_method(meta["config"]["loss"]).score
    detector = OODDetector(model, score=score, device=device)
    objective = None if args.objective == "none" else args.objective
    fit_loader = torch.utils.data.DataLoader(bundle.train, batch_size=args.batch_size)
    detector.fit(loader, tpr=args.tpr, calibrate=objective, posthoc_fit_loader=fit_loader)

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
        files = [p for p in args.paths if Path(p).is_file()]
        _refuse_onto(args.output, [args.detector, *files], "--output")
    detector = OODDetector.load(args.detector, device=args.device)
    meta = detector.metadata
    if "input_shape" not in meta:
        raise ValueError(
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
                    "class_name": names[c] if c < len(names) else str(c),
                    "probability": f"{float(pred.probs[i, c]):.6f}",
                    "score": f"{float(pred.scores[i]):.6g}",
                    "is_ood": bool(pred.is_ood[i]),
                }
            )
        n_images += len(paths)
    if n_images == 0:
        raise ValueError(f"none of the {n_skipped} image files could be read")
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
    from .report import markdown_table

    _ensure_writable(out)
    t0 = time.perf_counter()

    def on_run(loss: str, seed: int, status: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {loss:<11} seed {seed}: {status}", flush=True)

    preset = overrides.pop("preset", None) or "cpu"
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
    )
    print()
    print(markdown_table(result.aggregate))
    print()
    print(f"report: {result.report} ({time.perf_counter() - t0:.0f}s)")
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
            raise ValueError(f"--seed-list must hold integers, got {args.seed_list}") from None
    return _run_compare(
        args, dataset, model, args.losses, seeds, args.ood, Path(args.output_dir), overrides
    )


DEMO: dict[str, Any] = dict(
    dataset="digits-0to4",
    model="digits_cnn",
    ood=["digits-5to9", "photos", "gaussian", "uniform"],
    epochs=30,
    seeds=3,
)


def cmd_demo(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"epochs": DEMO["epochs"], "preset": "cpu"}
    if args.device:
        overrides["device"] = args.device
    print(
        "isomax demo: SoftMax against IsoMax, IsoMax+ and DisMax on scikit-learn's digits "
        f"(classes 0-4 in-distribution; OOD: {', '.join(DEMO['ood'])}), "
        f"{DEMO['seeds']} seeds, {DEMO['epochs']} epochs.",
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
    import torch

    from . import finetune as ft
    from .data import get_dataset
    from .engine import evaluate, load_model, resolve_device
    from .engine.checkpoint import save_checkpoint
    from .methods import get_method

    if bool(args.checkpoint) == bool(args.pretrained):
        raise ValueError(
            "give exactly one source: --checkpoint PATH or --pretrained timm:NAME / "
            "torchvision:NAME"
        )
    device = resolve_device(args.device or "auto")
    method = get_method(args.loss)
    meta: dict[str, Any] = {}
    if args.checkpoint:
        model, meta = load_model(args.checkpoint, "cpu")
        dataset = _dataset_of(args.checkpoint, meta["config"], args.dataset)
        data_root = args.data_root
    else:
        if not args.dataset:
            raise ValueError("--dataset is required with --pretrained")
        dataset, data_root = args.dataset, args.data_root
    bundle = get_dataset(dataset, root=data_root, seed=0)
    gen = torch.Generator().manual_seed(args.seed)
    train_loader = torch.utils.data.DataLoader(
        bundle.train, batch_size=args.batch_size, shuffle=True, generator=gen
    )
    val_loader = (
        torch.utils.data.DataLoader(bundle.val, batch_size=512) if len(bundle.val) else None
    )
    init_loader = torch.utils.data.DataLoader(bundle.train, batch_size=512)
    torch.manual_seed(args.seed)
    if args.pretrained:
        model = ft.load_pretrained(
            args.pretrained, bundle.num_classes, method.name, data=init_loader
        )
    else:
        model = ft.replace_classifier(model, method.name, bundle.num_classes, data=init_loader)
    result = ft.finetune(
        model,
        train_loader,
        method.name,
        epochs=args.epochs,
        lr=args.lr,
        device=device,
        val_loader=val_loader,
        freeze_backbone=args.freeze_backbone,
    )
    out = _ensure_writable(Path(args.output_dir))
    last = result.history[-1]
    val = "n/a" if last["val_acc"] is None else f"{_pct(last['val_acc'])}%"
    print(
        f"fine-tuned {args.epochs} epochs with {method.name}: train acc "
        f"{_pct(last['train_acc'])}%, val acc {val}"
    )
    if args.checkpoint:  # a regular isomax checkpoint: evaluate / calibrate work on it
        cfg = {**meta["config"], "loss": method.name, "dataset": dataset, "output_dir": str(out)}
        meta = {
            **meta,
            "config": cfg,
            "history": result.history,
            "finetuned_from": str(args.checkpoint),
            "complete": True,
        }
        path = save_checkpoint(out / "checkpoint.safetensors", result.model, None, meta)
    else:
        from .io import save_file

        path = save_file(
            out / "finetuned.safetensors",
            result.model.state_dict(),
            {
                "source": args.pretrained,
                "loss": method.name,
                "num_classes": bundle.num_classes,
                "history": result.history,
            },
            "finetuned",
        )
    print(f"weights: {path}")
    if args.ood:
        from .compare import evaluation_datasets

        ood = evaluation_datasets(bundle, args.ood, data_root)
        evaluation = evaluate(
            result.model.to(device), bundle.test, ood, list(method.scores), device=device
        )
        _print_eval(evaluation, list(method.scores))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from . import scores
    from .data import list_datasets
    from .methods import METHODS
    from .models import list_models

    print("datasets:", ", ".join(list_datasets()))
    print("models:  ", ", ".join(list_models()))
    print("losses:  ", ", ".join(f"{m} (score {METHODS[m].score})" for m in METHODS))
    print("scores:  ", ", ".join(scores.names()))
    return 0


# ----------------------------------------------------------------------------- parser


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
        help="compare the four losses on the embedded digits data "
        "(no download, a few minutes on a CPU)",
    )
    p.add_argument(
        "--output-dir", default="isomax-demo", help="report folder (default: %(default)s)"
    )
    p.add_argument("--device", help="auto (default), cpu, cuda, ...")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "compare", help="train and evaluate several losses and seeds; write a report"
    )
    p.add_argument(
        "--losses", type=_csv_list, default=["softmax", "isomax", "isomaxplus", "dismax"]
    )
    p.add_argument("--seeds", type=_positive_int, default=1, help="seeds 0 .. N-1 per loss")
    p.add_argument(
        "--seed-list",
        type=_csv_list,
        help="explicit seeds instead of --seeds, e.g. 2,3 (runs in the same output "
        "folder are shared between invocations)",
    )
    p.add_argument(
        "--ood",
        type=_csv_list,
        default=["gaussian", "uniform", "photos"],
        help="OOD sets: names, folder:PATH or archives (comma-separated)",
    )
    p.add_argument(
        "--max-ood", type=_positive_int, help="evaluate on at most N inputs of each OOD set"
    )
    p.add_argument("--output-dir", default="runs/compare")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--posthoc", type=_csv_list, help=POSTHOC_HELP)
    _add_train_options(p, with_loss=False)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", help="train one model")
    _add_train_options(p)
    p.add_argument("--seed", type=int)
    p.add_argument("--output-dir", help="where the checkpoint and logs go (default: runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint there")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run already in --output-dir (its checkpoint, logs, detector and "
        "evaluation are removed); without it such a folder is refused",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint against OOD sets")
    p.add_argument("checkpoint")
    p.add_argument(
        "--ood",
        type=_csv_list,
        required=True,
        help="OOD sets: names, folder:PATH or archives (comma-separated)",
    )
    p.add_argument("--scores", type=_csv_list, help="default: the scores that suit the loss")
    p.add_argument(
        "--max-ood", type=_positive_int, help="evaluate on at most N inputs of each OOD set"
    )
    p.add_argument("--dataset", help="ID dataset (default: the one it was trained on)")
    p.add_argument("--data-root")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--batch-size", type=_positive_int, default=512)
    p.add_argument("--save-scores", action="store_true", help="also write scores.safetensors")
    p.add_argument("--posthoc", type=_csv_list, help=POSTHOC_HELP)
    p.add_argument(
        "--openood-csv",
        help="also write OpenOOD v1.5's ood.csv layout here (for the loss's recommended score)",
    )
    p.add_argument(
        "--near",
        type=_csv_list,
        default=[],
        help="OOD sets of the near-OOD group in the OpenOOD CSV (the rest are far)",
    )
    p.add_argument("--output-dir", help="default: <checkpoint folder>/evaluation")
    p.add_argument("--device")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "calibrate",
        help="fit temperature and threshold on the validation split and save a detector",
    )
    p.add_argument("checkpoint")
    p.add_argument("--score", help="default: the loss's recommended score")
    p.add_argument("--objective", choices=["nll", "ece", "none"], default="nll")
    p.add_argument("--tpr", type=_rate, default=0.95, help="share of ID inputs to keep")
    p.add_argument("--dataset", help="ID dataset (default: the one it was trained on)")
    p.add_argument("--data-root")
    p.add_argument("--batch-size", type=_positive_int, default=512)
    p.add_argument("--output", help="default: <checkpoint folder>/detector.safetensors")
    p.add_argument("--device")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("detect", help="classify image files and flag OOD ones (CSV)")
    p.add_argument("detector")
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.add_argument("--output", help="CSV file (default: standard output)")
    p.add_argument(
        "--on-error",
        choices=["skip", "raise"],
        default="skip",
        help="unreadable images: skip them (reported) or stop",
    )
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--device")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser(
        "finetune",
        help="swap a trained classifier's last layer for an isomax head and fine-tune it",
    )
    p.add_argument("--checkpoint", help="an isomax checkpoint (e.g. a SoftMax model)")
    p.add_argument("--pretrained", help="timm:NAME or torchvision:NAME (downloads weights)")
    p.add_argument("--loss", default="isomaxplus", help="isomax, isomaxplus or dismax")
    p.add_argument("--dataset", help="default: the checkpoint's dataset")
    p.add_argument("--data-root")
    p.add_argument("--epochs", type=_positive_int, default=3)
    p.add_argument("--lr", type=float, default=0.01, help="backbone lr (the head gets 10x)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--freeze-backbone", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ood", type=_csv_list, help="evaluate against these OOD sets afterwards")
    p.add_argument("--output-dir", default="runs/finetune")
    p.add_argument("--device")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("list", help="list datasets, models, losses and scores")

    p.set_defaults(func=cmd_list)
    return parser


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
    try:
        return int(args.func(args))
    except USER_ERRORS as exc:
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
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
