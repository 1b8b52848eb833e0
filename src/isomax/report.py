"""Tables and the Markdown report of a comparison (mean +- std over seeds)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .io import atomic_write_bytes, json_safe
from .methods import get_method

__all__ = [
    "RunResult",
    "aggregate",
    "evaluation_markdown",
    "flat_rows",
    "markdown_table",
    "write_csv",
    "write_json",
    "write_report",
]

DISPLAY = {"softmax": "SoftMax", "isomax": "IsoMax", "isomaxplus": "IsoMax+", "dismax": "DisMax"}
OOD_COLUMNS = (
    ("tnr_at_tpr95", "TNR@TPR95 ↑"),
    ("fpr_at_tpr95", "FPR@TPR95 (OOD+) ↓"),
    ("auroc", "AUROC ↑"),
)
ALL_OOD_COLUMNS = {
    "tnr_at_tpr95": "TNR@TPR95 ↑",
    "fpr_at_tpr95": "FPR@TPR95 (OOD+) ↓",
    "auroc": "AUROC ↑",
    "aupr_in": "AUPR-In ↑",
    "aupr_out": "AUPR-Out ↑",
    "detection_accuracy": "DTACC ↑",
}
CONVENTIONS = (
    "Values in %. TNR@TPR95: share of OOD inputs rejected when 95% of ID inputs are kept "
    "(ID positive, the IsoMax papers' convention). FPR@TPR95 (OOD+): share of ID inputs "
    "flagged when 95% of OOD inputs are caught (OOD positive, OpenOOD's convention); the two "
    "are different numbers. AUPR-In takes ID as positive, AUPR-Out OOD as positive."
)

RunResult = Mapping[str, Any]  # {"loss", "seed", "evaluation": Evaluation.to_dict(), ...}


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write JSON atomically (NaN written as null)."""
    text = json.dumps(json_safe(data), indent=2, sort_keys=False, allow_nan=False)
    return atomic_write_bytes(path, (text + "\n").encode())


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write rows (dicts sharing keys) as CSV, atomically."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_bytes(path, buf.getvalue().encode())


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def aggregate(runs: Sequence[RunResult]) -> dict[str, Any]:
    """Mean and std over seeds of every number of every (loss, score, OOD set).

    Returns ``{"id": {loss: {metric: [mean, std]}}, "ood": {loss: {score: {ood: {metric:
    [mean, std]}}}}, "seeds": {loss: n}}`` where OOD names include ``"mean"``.
    """
    by_loss: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        by_loss.setdefault(run["loss"], []).append(run["evaluation"])
    out: dict[str, Any] = {"id": {}, "ood": {}, "seeds": {}}
    for loss, evals in by_loss.items():
        out["seeds"][loss] = len(evals)
        # keys every run has (runs reused from an earlier call may lack a newer detector)
        id_keys = [k for k in evals[0]["id"] if k != "n" and all(k in e["id"] for e in evals)]
        out["id"][loss] = {k: list(_mean_std([e["id"][k] for e in evals])) for k in id_keys}
        per_score: dict[str, dict[str, dict[str, list[float]]]] = {}
        for score in [s for s in evals[0]["mean"] if all(s in e["mean"] for e in evals)]:
            per_score[score] = {}
            for ood in [*evals[0]["ood"], "mean"]:

                def pick(e: Mapping[str, Any], ood: str = ood, score: str = score) -> Any:
                    return e["mean"][score] if ood == "mean" else e["ood"][ood][score]

                per_score[score][ood] = {
                    k: list(_mean_std([pick(e)[k] for e in evals])) for k in pick(evals[0])
                }
        out["ood"][loss] = per_score
    return out


def _fmt(pair: Sequence[float], seeds: int, scale: float = 100.0, digits: int = 1) -> str:
    mean, std = pair
    if seeds > 1:
        return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    for row in rows:
        if len(row) != len(header):
            raise RuntimeError(f"table row has {len(row)} cells for {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_table(agg: Mapping[str, Any], full: bool = False) -> str:
    """The summary table (each method with its recommended score) or the full table."""
    losses = list(agg["ood"])
    oods = [o for o in next(iter(next(iter(agg["ood"].values())).values())) if o != "mean"]
    if not full:
        calibrated = all("ece_calibrated" in agg["id"][loss] for loss in losses)
        header = ["method", "score", "accuracy ↑", "ECE ↓"]
        if calibrated:
            header.append("ECE, T fitted on val ↓")
        for ood in [*oods, "mean"]:
            header += [f"{ood}: {label}" for _, label in OOD_COLUMNS]
        rows = []
        for loss in losses:
            n = agg["seeds"][loss]
            score = get_method(loss).score
            row = [
                DISPLAY.get(loss, loss),
                score.upper(),
                _fmt(agg["id"][loss]["accuracy"], n),
                _fmt(agg["id"][loss]["ece"], n, digits=2),
            ]
            if calibrated:
                row.append(_fmt(agg["id"][loss]["ece_calibrated"], n, digits=2))
            for ood in [*oods, "mean"]:
                values = agg["ood"][loss][score][ood]
                row += [_fmt(values[key], n) for key, _ in OOD_COLUMNS]
            rows.append(row)
        return _table(header, rows)
    header = ["method", "score", "OOD set", *ALL_OOD_COLUMNS.values()]
    keys = tuple(ALL_OOD_COLUMNS)
    rows = []
    for loss in losses:
        n = agg["seeds"][loss]
        for score, per_ood in agg["ood"][loss].items():
            for ood, values in per_ood.items():
                rows.append(
                    [
                        DISPLAY.get(loss, loss),
                        score.upper(),
                        ood,
                        *(_fmt(values[k], n) for k in keys),
                    ]
                )
    return _table(header, rows)


def flat_rows(runs: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One row per (loss, seed, score, OOD set), the means over OOD sets included."""
    rows = []
    for run in runs:
        ev = run["evaluation"]
        id_values = {k: v for k, v in ev["id"].items() if k != "n"}
        for ood_name, per_score in [*ev["ood"].items(), ("mean", ev["mean"])]:
            for score, values in per_score.items():
                rows.append(
                    {
                        "loss": run["loss"],
                        "seed": run["seed"],
                        "score": score,
                        "ood": ood_name,
                        **id_values,
                        **values,
                    }
                )
    return rows


def _figures(out: Path, runs: Sequence[RunResult]) -> list[tuple[str, Path]]:
    """Draw the figures from the first seed of every loss; returns (caption, path) pairs."""
    from . import plots
    from .io import load_file

    first: dict[str, RunResult] = {}
    for run in runs:
        if run["loss"] not in first or run["seed"] < first[run["loss"]]["seed"]:
            first[run["loss"]] = run
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    made = []
    id_scores, ood_scores, names = {}, {}, {}
    for loss, run in first.items():
        path = out / "runs" / f"{loss}-seed{run['seed']}" / "scores.safetensors"
        if not path.exists():
            continue
        tensors, _ = load_file(path, "scores")
        score = run["score"]
        names[loss] = score
        id_scores[loss] = tensors[f"id/{score}"].numpy()
        ood_scores[loss] = {
            k.rsplit("/", 1)[0]: v.numpy()
            for k, v in tensors.items()
            if k.endswith(f"/{score}") and not k.startswith("id/")
        }
    if id_scores:
        made.append(
            (
                "Score histograms, ID against each OOD set (each method's recommended score)",
                plots.plot_score_histograms(
                    id_scores, ood_scores, fig_dir / "histograms.png", score_names=names
                ),
            )
        )
        made.append(
            (
                "ROC curves (ID positive)",
                plots.plot_roc_curves(id_scores, ood_scores, fig_dir / "roc.png"),
            )
        )
    diagrams = {
        loss: {
            k: [float("nan") if v is None else v for v in vals]
            for k, vals in run["evaluation"]["reliability"].items()
        }
        for loss, run in first.items()
        if run["evaluation"].get("reliability")
    }
    if diagrams:
        made.append(
            (
                "Reliability diagrams (ID test set, 15 bins)",
                plots.plot_reliability(diagrams, fig_dir / "reliability.png"),
            )
        )
    histories = {loss: run["history"] for loss, run in first.items() if run.get("history")}
    if histories:
        made.append(
            ("Training curves", plots.plot_training_curves(histories, fig_dir / "training.png"))
        )
    return made


def write_report(
    out: str | os.PathLike[str],
    runs: Sequence[RunResult],
    agg: Mapping[str, Any] | None = None,
    figures: bool = True,
) -> Path:
    """Write ``results.json``, ``summary.csv``, ``full.csv``, the figures and ``report.md``."""
    out = Path(out)
    if not runs:
        raise ValueError("no runs to report")
    agg = aggregate(runs) if agg is None else agg
    write_json(out / "results.json", {"aggregate": agg, "runs": list(runs)})
    rows = flat_rows(runs)
    write_csv(out / "full.csv", rows)
    summary = [r for r in rows if r["score"] == get_method(r["loss"]).score]
    write_csv(out / "summary.csv", summary)
    made = _figures(out, runs) if figures else []
    first = runs[0]
    cfg = first.get("config", {})
    oods = list(first["evaluation"]["ood"])
    lines = [
        "# isomax comparison",
        "",
        f"Dataset `{cfg.get('dataset')}`, model `{cfg.get('model')}`, preset "
        f"`{cfg.get('preset')}`, {cfg.get('epochs')} epochs; seeds per loss: "
        + ", ".join(f"{DISPLAY.get(k, k)} {v}" for k, v in agg["seeds"].items())
        + f". OOD sets: {', '.join(oods)}. Mean ± std over seeds.",
        "",
        "## Summary: each method with its recommended score",
        "",
        CONVENTIONS,
        "",
        markdown_table(agg),
        "",
    ]
    for caption, path in made:
        lines += [f"### {caption}", "", f"![{caption}]({path.relative_to(out).as_posix()})", ""]
    lines += [
        "## Every score",
        "",
        markdown_table(agg, full=True),
        "",
        "Raw numbers: `results.json`, `summary.csv`, `full.csv`; raw scores per run: "
        "`runs/<loss>-seed<k>/scores.safetensors`.",
        "",
    ]
    return atomic_write_bytes(out / "report.md", "\n".join(lines).encode())


def evaluation_markdown(evaluation: Any) -> str:
    """Markdown of one :class:`isomax.engine.Evaluation` (``isomax evaluate``)."""
    idm = evaluation.id_metrics
    header = ["OOD set", "score", *ALL_OOD_COLUMNS.values()]
    keys = tuple(ALL_OOD_COLUMNS)
    rows = [
        [name, score.upper(), *(f"{100 * values[k]:.1f}" for k in keys)]
        for name, per_score in [*evaluation.ood.items(), ("mean", evaluation.mean)]
        for score, values in per_score.items()
    ]
    return "\n".join(
        [
            "# isomax evaluation",
            "",
            f"In-distribution test set ({int(idm['n'])} inputs): accuracy {100 * idm['accuracy']:.2f}%, "
            f"ECE {idm['ece']:.4f}, MCE {idm['mce']:.4f}, NLL {idm['nll']:.4f}, "
            f"Brier {idm['brier']:.4f}.",
            "",
            CONVENTIONS,
            "",
            _table(header, rows),
            "",
        ]
    )
