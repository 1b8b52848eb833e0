"""``isomax evaluate``, ``calibrate`` and ``detect``: use a trained checkpoint."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..outputs import ensure_writable, refuse_onto, refuse_onto_images
from .options import _pct


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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..checkpoint_eval import evaluate_checkpoint
    from ..interop import match_ood_sets
    from ..ood_sets import ood_label

    if args.near:  # checked before any work: a typo must not cost an evaluation
        match_ood_sets(args.near, [ood_label(n) for n in args.ood], "near")
    result = evaluate_checkpoint(
        args.checkpoint,
        args.ood,
        output_dir=args.output_dir,
        scores=args.scores,
        dataset=args.dataset,
        data_root=args.data_root,
        temperature=args.temperature,
        batch_size=args.batch_size,
        max_ood_samples=args.max_ood,
        on_error=args.on_error,
        save_scores=args.save_scores,
        posthoc=args.posthoc or (),
        device=args.device,
    )
    evaluation = result.evaluation
    _print_eval(evaluation, result.scores)
    for name, n in result.skipped.items():
        print(f"OOD set {name}: {n} undecodable file(s) skipped")
    if args.openood_csv:
        from ..interop import to_openood_csv

        ensure_writable(Path(args.openood_csv).parent)
        to_openood_csv(evaluation, args.openood_csv, result.recommended_score, near=args.near)
        print(f"written: {args.openood_csv} (OpenOOD layout)")
    print(f"written: {result.output_dir}/" + ", ".join(result.files))
    if result.replaced:
        print("replaced the earlier evaluation there (" + ", ".join(result.replaced) + ")")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..checkpoint_eval import calibrate_checkpoint
    from ..methods import get_method

    detector = calibrate_checkpoint(
        args.checkpoint,
        score=args.score,
        objective=None if args.objective == "none" else args.objective,
        tpr=args.tpr,
        dataset=args.dataset,
        data_root=args.data_root,
        batch_size=args.batch_size,
        device=args.device,
    )
    out = Path(args.output or Path(args.checkpoint).parent / "detector.safetensors")
    refuse_onto(out, [args.checkpoint], "--output")
    ensure_writable(out.parent)
    detector.save(out)
    score = args.score or get_method(detector.metadata["config"]["loss"]).score
    print(
        f"score {score}, temperature {detector.temperature:.4g}, threshold "
        f"{detector.threshold:.6g} (keeps {100 * args.tpr:.1f}% of ID validation inputs)"
    )
    print(f"detector: {out}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from ..detector import OODDetector
    from ..io import atomic_write_bytes
    from ..predictions import predict_files

    if args.output:
        refuse_onto_images(args.output, args.paths, [args.detector], "--output")
    detector = OODDetector.load(args.detector, device=args.device)
    table = predict_files(
        detector, args.paths, args.on_error, args.batch_size, source=str(args.detector)
    )
    if args.output:
        ensure_writable(Path(args.output).parent)
        atomic_write_bytes(args.output, table.csv.encode())
    else:
        sys.stdout.write(table.csv)
    print(
        f"{table.images} images, {table.ood} flagged OOD, {table.skipped} skipped (unreadable)",
        file=sys.stderr,
    )
    return 0
