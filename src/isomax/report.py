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

from .errors import InputError
from .io import atomic_write_bytes, json_safe
from .methods import get_method

__all__ = [
    "RunResult",
    "aggregate",
    "evaluation_markdown",
    "finetune_table",
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

WON_NOTE = (
    "Against the SoftMax baseline when it is in the comparison (else the next best); a lead is "
    "called larger than the spread when it exceeds the sum of the two methods' standard "
    "deviations."
)
UNITS = (
    "fractions in [0, 1]: accuracy, ece, mce, brier and every OOD metric (tables print them "
    "in %); nll in nats; temperature unitless"
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
        header = ["method", "score", "accuracy % ↑", "ECE % ↓"]
        if calibrated:
            header.append("ECE %, T fitted on val ↓")
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


VERDICT_METRICS = (
    ("tnr_at_tpr95", "TNR@TPR95", True),
    ("auroc", "AUROC", True),
    ("fpr_at_tpr95", "FPR@TPR95 (OOD+)", False),
)


def _pct_pair(pair: Sequence[float], n: int) -> str:
    return _fmt(pair, n) + "%"


def _winner_text(
    entries: Sequence[tuple[str, Sequence[float], int]], higher: bool, label: str
) -> str:
    """``entries``: (loss, [mean, std], seeds). Names the best, the baseline or runner-up, and
    whether the lead is larger than the spread over seeds."""
    ranked = sorted(entries, key=lambda e: -e[1][0] if higher else e[1][0])
    best, rest = ranked[0], ranked[1:]
    text = f"{label}: **{DISPLAY.get(best[0], best[0])}** {_pct_pair(best[1], best[2])}"
    if not rest:
        return text
    other = next((e for e in rest if e[0] == "softmax"), rest[0])
    name = DISPLAY.get(other[0], other[0])
    role = "" if other[0] == "softmax" else "next best "
    diff = 100 * (best[1][0] - other[1][0])
    text += f" against {role}{name} {_pct_pair(other[1], other[2])} ({diff:+.1f} points"
    runner = rest[0]
    margin = abs(best[1][0] - runner[1][0])
    if best[2] == 1 or runner[2] == 1:
        text += "; one seed, so no spread measured"
    else:
        clear = margin > best[1][1] + runner[1][1]
        against = (
            "" if runner is other else f" to the runner-up {DISPLAY.get(runner[0], runner[0])}"
        )
        text += (
            f", a lead{against} larger than the spread over seeds"
            if clear
            else f", a lead{against} within the spread over seeds: not a clear win"
        )
    return text + ")"


def verdict(agg: Mapping[str, Any]) -> list[str]:
    """In words: which method won on which score, with the spread over seeds.

    One Markdown bullet per OOD set and for their mean (each method with its recommended
    score), plus accuracy and the calibrated ECE; values in %.
    """
    losses = list(agg["ood"])
    oods = [o for o in next(iter(agg["ood"][losses[0]].values())) if o != "mean"]
    seeds = {loss: int(agg["seeds"][loss]) for loss in losses}
    lines = []
    for ood in ["mean", *oods] if len(oods) > 1 else oods:
        parts = []
        for key, label, higher in VERDICT_METRICS:
            entries = [
                (loss, agg["ood"][loss][get_method(loss).score][ood][key], seeds[loss])
                for loss in losses
            ]
            parts.append(_winner_text(entries, higher, label))
        where = "Mean over the OOD sets" if ood == "mean" else f"OOD set `{ood}`"
        lines.append(f"- {where}: " + "; ".join(parts) + ".")
    acc = [(loss, agg["id"][loss]["accuracy"], seeds[loss]) for loss in losses]
    lines.append(f"- In-distribution {_winner_text(acc, True, 'accuracy')}.")
    if all("ece_calibrated" in agg["id"][loss] for loss in losses):
        ece = [(loss, agg["id"][loss]["ece_calibrated"], seeds[loss]) for loss in losses]
        lines.append(f"- {_winner_text(ece, False, 'ECE with T fitted on val')}.")
    return lines


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


def _pool_diagrams(diagrams: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """One reliability diagram from several seeds: counts summed, confidence and accuracy
    averaged with the counts as weights (the diagram of all seeds' test predictions)."""
    edges = diagrams[0]["edges"]
    n_bins = len(edges) - 1
    counts = [sum(float(d["counts"][b] or 0) for d in diagrams) for b in range(n_bins)]

    def pooled(key: str, b: int) -> float:
        if counts[b] == 0:
            return float("nan")
        total = sum(float(d["counts"][b] or 0) * float(d[key][b] or 0) for d in diagrams)
        return total / counts[b]

    return {
        "edges": [float(e) for e in edges],
        "confidence": [pooled("confidence", b) for b in range(n_bins)],
        "accuracy": [pooled("accuracy", b) for b in range(n_bins)],
        "counts": counts,
    }


def _mean_history(histories: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, float]]:
    """Per-epoch mean over seeds of the training curves (epochs every seed reached)."""
    keys = ("train_loss", "train_acc", "val_acc")
    n = min(len(h) for h in histories)
    rows = []
    for i in range(n):
        row = {"epoch": float(histories[0][i]["epoch"])}
        for k in keys:
            vals = [h[i].get(k) for h in histories]
            finite = [float(v) for v in vals if v is not None and v == v]
            row[k] = sum(finite) / len(finite) if finite else float("nan")
        rows.append(row)
    return rows


def _figures(out: Path, runs: Sequence[RunResult]) -> list[tuple[str, Path]]:
    """Draw the figures from every seed of every loss; returns (caption, path) pairs.

    Score histograms pool the seeds' scores, ROC curves draw one curve per seed (legends give
    the AUROC as mean ± std over seeds, as the tables), reliability diagrams pool the seeds'
    test predictions and training curves average the seeds. OOD sets are in table order.
    """
    from . import plots
    from .io import load_file

    by_loss: dict[str, list[RunResult]] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        by_loss.setdefault(run["loss"], []).append(run)
    table_order = list(runs[0]["evaluation"]["ood"])
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    made = []
    id_scores: dict[str, list[Any]] = {}
    ood_scores: dict[str, dict[str, list[Any]]] = {}
    names: dict[str, str] = {}
    seeds_used: dict[str, list[int]] = {}
    for loss, loss_runs in by_loss.items():
        score = loss_runs[0]["score"]
        for run in loss_runs:
            path = out / "runs" / f"{loss}-seed{run['seed']}" / "scores.safetensors"
            if not path.exists():
                continue
            tensors, _ = load_file(path, "scores")
            if any(f"{ood}/{score}" not in tensors for ood in table_order):
                continue
            names[loss] = score
            seeds_used.setdefault(loss, []).append(int(run["seed"]))
            id_scores.setdefault(loss, []).append(tensors[f"id/{score}"].numpy())
            per_set = ood_scores.setdefault(loss, {})
            for ood in table_order:
                per_set.setdefault(ood, []).append(tensors[f"{ood}/{score}"].numpy())
    seed_text = "; ".join(
        f"{DISPLAY.get(loss, loss)} seeds {', '.join(map(str, s))}"
        for loss, s in seeds_used.items()
    )
    if id_scores:
        made.append(
            (
                "Score histograms, ID against each OOD set (each method's recommended score; "
                f"the scores of all seeds pooled: {seed_text})",
                plots.plot_score_histograms(
                    id_scores, ood_scores, fig_dir / "histograms.png", score_names=names
                ),
            )
        )
        made.append(
            (
                f"ROC curves (ID positive), one curve per seed ({seed_text})",
                plots.plot_roc_curves(id_scores, ood_scores, fig_dir / "roc.png"),
            )
        )
    diagrams = {
        loss: _pool_diagrams([r["evaluation"]["reliability"] for r in loss_runs])
        for loss, loss_runs in by_loss.items()
        if all(r["evaluation"].get("reliability") for r in loss_runs)
    }
    if diagrams:
        n = {loss: len(by_loss[loss]) for loss in diagrams}
        made.append(
            (
                "Reliability diagrams (ID test set, 15 bins, T = 1; the test predictions of "
                + ", ".join(f"{DISPLAY.get(k, k)} {v} seed(s)" for k, v in n.items())
                + " pooled)",
                plots.plot_reliability(diagrams, fig_dir / "reliability.png"),
            )
        )
    histories = {
        loss: _mean_history([r["history"] for r in loss_runs])
        for loss, loss_runs in by_loss.items()
        if all(r.get("history") for r in loss_runs)
    }
    if histories:
        made.append(
            (
                "Training curves (mean over seeds)",
                plots.plot_training_curves(histories, fig_dir / "training.png"),
            )
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
        raise InputError("no runs to report")
    agg = aggregate(runs) if agg is None else agg
    write_json(out / "results.json", {"units": UNITS, "aggregate": agg, "runs": list(runs)})
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
        "## Which method won",
        "",
        f"Each method with its recommended score; mean ± std over seeds, in %. {WON_NOTE}",
        "",
        *verdict(agg),
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
            f"In-distribution test set ({int(idm['n'])} inputs): accuracy "
            f"{100 * idm['accuracy']:.2f}%, ECE {100 * idm['ece']:.2f}%, "
            f"MCE {100 * idm['mce']:.2f}%, NLL {idm['nll']:.4f} nats, Brier {idm['brier']:.4f}.",
            "",
            CONVENTIONS,
            "",
            _table(header, rows),
            "",
        ]
    )


def finetune_table(results: Mapping[str, Any], model: str, source: str) -> str:
    """One Markdown table of fine-tuned runs (``{loss: Evaluation}``, all on the same OOD
    sets): every run and score, accuracy and TNR@TPR95 / AUROC per OOD set and their mean."""

    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

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
                cells.append(f"{pct(v['tnr_at_tpr95'])} / {pct(v['auroc'])}")
            acc = pct(ev.id_metrics["accuracy"])
            lines.append(f"| {loss} | {score} | {acc} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
