"""``isomax train`` and ``isomax finetune``: one run from scratch, or runs from given weights."""

from __future__ import annotations

import argparse
import os
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
    from ..engine import load_config
    from ..finetune_runs import finetune_runs
    from ..models.pretrained import load_weights

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

    def on_run(loss: str, checkpoint: Path, seconds: float) -> None:
        print(f"{loss}: checkpoint {checkpoint} ({seconds:.0f}s)")

    done = finetune_runs(
        cfg.replace(output_dir=str(args.output_dir)),
        baseline=args.baseline,
        ood=args.ood or (),
        max_ood_samples=args.max_ood,
        posthoc=args.posthoc or (),
        overwrite=args.overwrite,
        source=str(source),
        on_epoch=lambda loss: _epoch_printer(loss, cfg),
        on_run=on_run,
    )
    if done.table is not None:
        print()
        print(done.table)
        print(f"\nwritten: {done.files[0]}, {done.files[1]}")
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
