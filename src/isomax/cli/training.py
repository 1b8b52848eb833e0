"""``isomax train`` and ``isomax finetune``: one run from scratch, or runs from given weights."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..outputs import ensure_writable
from .options import _overrides, _pct


def cmd_train(args: argparse.Namespace) -> int:
    import sys

    from ..engine import load_config, train

    overrides = _overrides(args)
    if args.output_dir:
        overrides["output_dir"] = str(ensure_writable(args.output_dir))
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


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..checkpoint_eval import dataset_of
    from ..engine import evaluate, load_config, resolve_device, train
    from ..engine.trainer import TrainData, load_bundle
    from ..methods import get_method
    from ..models.pretrained import load_weights
    from ..report import finetune_table, write_json

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
        overrides["dataset"] = dataset_of(source, source_cfg, None)
    overrides.setdefault("loss", "isomaxplus")
    cfg = load_config(args.config, preset="finetune", overrides=overrides)
    out = ensure_writable(args.output_dir)
    device = resolve_device(cfg.device)
    bundle = load_bundle(cfg)
    data = TrainData.from_bundle(bundle)  # decoded once for every run
    runs = [(cfg.loss, out)]
    if args.baseline and cfg.loss != "softmax":
        runs.append(("softmax", out / "baseline-softmax"))
    ood = None
    if args.ood:
        from ..ood_sets import evaluation_datasets

        ood = evaluation_datasets(bundle, args.ood, cfg.data_root, max_samples=args.max_ood)
    results: dict[str, Any] = {}
    for loss, folder in runs:
        run_cfg = cfg.replace(loss=loss, output_dir=str(ensure_writable(folder)))
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
            from ..posthoc_fit import fit_posthoc

            detectors = fit_posthoc(result.model, args.posthoc, bundle.train, 512)
        evaluation = evaluate(
            result.model, bundle.test, ood, names, device=device, detectors=detectors
        )
        write_json(folder / "evaluation.json", evaluation.to_dict())
        results[loss] = evaluation
    if results:
        table = finetune_table(results, weights.model, str(source))
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
