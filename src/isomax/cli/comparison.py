"""``isomax compare`` and ``isomax demo``: several losses and seeds, then the report."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..outputs import ensure_writable
from .options import _corrupt_hint, _overrides

DEMO: dict[str, Any] = dict(
    dataset="fashion-mnist-small",
    model="digits_cnn",
    ood=["digits", "photos", "gaussian", "uniform"],
    epochs=6,
    seeds=3,
)


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
    import torch

    from ..comparison import compare
    from ..data.errors import CorruptImageError
    from ..report import markdown_table, verdict

    ensure_writable(out)
    t0 = time.perf_counter()
    c0 = time.process_time()
    threads = torch.get_num_threads()

    def on_run(loss: str, seed: int, status: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {loss:<11} seed {seed}: {status}", flush=True)

    preset = overrides.pop("preset", None) or "cpu"
    overrides.setdefault("progress", sys.stderr.isatty())  # else one line per epoch
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
