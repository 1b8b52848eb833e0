"""Reports a person reads: percent everywhere (fractions in JSON, named as such), a verdict in
words with the spread over seeds, and figures drawn from every seed in the table's order."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from isomax import plots, report
from isomax.engine.evaluation import Evaluation
from isomax.io import save_file

pytest.importorskip("matplotlib")


def _metrics(tnr, auroc, fpr):
    return {
        "tnr_at_tpr95": tnr,
        "fpr_at_tpr95": fpr,
        "auroc": auroc,
        "aupr_in": 0.5,
        "aupr_out": 0.5,
        "detection_accuracy": 0.5,
    }


def _evaluation(tnr=0.5, ece=0.1234):
    idm = {"accuracy": 0.9, "ece": ece, "mce": 0.3, "nll": 0.4, "brier": 0.2, "n": 100.0}
    ood = {"far": {"mps": _metrics(tnr, 0.8, 0.3)}}
    return Evaluation(idm, ood, {"mps": _metrics(tnr, 0.8, 0.3)})


def test_evaluation_markdown_gives_ece_and_mce_in_percent():
    text = report.evaluation_markdown(_evaluation(ece=0.1234))
    assert "ECE 12.34%" in text and "MCE 30.00%" in text and "accuracy 90.00%" in text
    assert "ECE 0.1234" not in text
    assert "Values in %" in text


def test_json_says_its_numbers_are_fractions():
    d = _evaluation().to_dict()
    assert "fraction" in d["units"] and d["id"]["ece"] == 0.1234


def _agg(values, seeds=3, oods=("near", "far")):
    """values: loss -> (tnr mean, tnr std); other metrics derived from them."""
    agg = {"id": {}, "ood": {}, "seeds": {}}
    score = {"softmax": "mps", "isomax": "es", "isomaxplus": "mds"}
    for loss, (m, s) in values.items():
        agg["seeds"][loss] = seeds
        agg["id"][loss] = {
            "accuracy": [0.9, 0.01],
            "ece": [0.5, 0.01],
            "ece_calibrated": [0.02, 0.0],
        }
        per = {
            o: {"tnr_at_tpr95": [m, s], "auroc": [m, s], "fpr_at_tpr95": [1 - m, s]}
            for o in (*oods, "mean")
        }
        agg["ood"][loss] = {score[loss]: per}
    return agg


def test_verdict_names_the_winner_per_score_with_the_spread():
    lines = report.verdict(
        _agg({"softmax": (0.20, 0.03), "isomax": (0.80, 0.05), "isomaxplus": (0.30, 0.20)})
    )
    mean = lines[0]
    assert mean.startswith("- Mean over the OOD sets:")
    assert "TNR@TPR95: **IsoMax** 80.0 ± 5.0% against SoftMax 20.0 ± 3.0% (+60.0 points" in mean
    assert "a lead to the runner-up IsoMax+ larger than the spread over seeds" in mean
    assert "FPR@TPR95 (OOD+): **IsoMax** 20.0 ± 5.0%" in mean  # lower is better
    assert any(line.startswith("- OOD set `near`:") for line in lines)
    assert any(line.startswith("- OOD set `far`:") for line in lines)

    close = report.verdict(_agg({"softmax": (0.50, 0.10), "isomax": (0.55, 0.10)}))[0]
    assert "**IsoMax** 55.0 ± 10.0% against SoftMax 50.0 ± 10.0% (+5.0 points" in close
    assert "within the spread over seeds: not a clear win" in close

    softmax_wins = report.verdict(_agg({"softmax": (0.7, 0.01), "isomax": (0.4, 0.01)}))[0]
    assert "**SoftMax** 70.0 ± 1.0% against next best IsoMax 40.0 ± 1.0% (+30.0 points" in (
        softmax_wins
    )
    one = report.verdict(_agg({"softmax": (0.7, 0.0), "isomax": (0.4, 0.0)}, seeds=1))[0]
    assert "one seed, so no spread measured" in one


def test_summary_table_headers_carry_the_unit():
    table = report.markdown_table(_agg({"softmax": (0.2, 0.0), "isomax": (0.8, 0.0)}))
    assert "accuracy % ↑" in table and "ECE % ↓" in table and "ECE %, T fitted on val ↓" in table


def test_pooled_reliability_diagram_weights_bins_by_counts():
    a = {"edges": [0, 0.5, 1], "confidence": [0.3, 0.9], "accuracy": [0.2, 1.0], "counts": [1, 3]}
    b = {"edges": [0, 0.5, 1], "confidence": [0.4, None], "accuracy": [0.5, None], "counts": [3, 0]}
    pooled = report._pool_diagrams([a, b])
    assert pooled["counts"] == [4, 3]
    assert pooled["confidence"][0] == pytest.approx((0.3 + 3 * 0.4) / 4)
    assert pooled["accuracy"][0] == pytest.approx((0.2 + 3 * 0.5) / 4)
    assert pooled["confidence"][1] == pytest.approx(0.9)
    empty = report._pool_diagrams([b, b])
    assert math.isnan(empty["accuracy"][1])


def test_mean_history_averages_the_seeds():
    h1 = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_acc": 0.4}]
    h2 = [{"epoch": 1, "train_loss": 3.0, "train_acc": 0.7, "val_acc": float("nan")}]
    (row,) = report._mean_history([h1, h2])
    assert row["train_loss"] == 2.0 and row["train_acc"] == pytest.approx(0.6)
    assert row["val_acc"] == 0.4


def _fake_runs(out, losses=("softmax", "isomax"), seeds=(0, 1), oods=("zeta", "alpha")):
    runs = []
    rel = {
        "edges": [0.0, 0.5, 1.0],
        "confidence": [0.4, 0.8],
        "accuracy": [0.3, 0.9],
        "counts": [10, 20],
    }
    for loss in losses:
        score = {"softmax": "mps", "isomax": "es"}[loss]
        for seed in seeds:
            rng = np.random.default_rng(seed)
            tensors = {f"id/{score}": torch.from_numpy(rng.normal(1, 1, 50))}
            for o in oods:
                tensors[f"{o}/{score}"] = torch.from_numpy(rng.normal(0, 1, 40))
            run_dir = out / "runs" / f"{loss}-seed{seed}"
            run_dir.mkdir(parents=True)
            save_file(run_dir / "scores.safetensors", tensors, {}, "scores")
            ood = {o: {score: _metrics(0.5, 0.7, 0.4)} for o in oods}
            runs.append(
                {
                    "loss": loss,
                    "seed": seed,
                    "score": score,
                    "evaluation": {
                        "id": {"accuracy": 0.9, "ece": 0.1, "n": 50.0},
                        "ood": ood,
                        "mean": {score: _metrics(0.5, 0.7, 0.4)},
                        "reliability": rel,
                    },
                    "history": [
                        {"epoch": 1, "train_loss": 1.0 + seed, "train_acc": 0.5, "val_acc": 0.5}
                    ],
                    "config": {"dataset": "d", "model": "m", "preset": "cpu", "epochs": 1},
                }
            )
    return runs


def test_figures_use_every_seed_in_table_order(tmp_path, monkeypatch):
    calls = {}

    def capture(name):
        def fn(*args, **kw):
            calls[name] = args
            return args[-1] if not kw.get("score_names") else args[2]

        return fn

    for name in (
        "plot_score_histograms",
        "plot_roc_curves",
        "plot_reliability",
        "plot_training_curves",
    ):
        monkeypatch.setattr(plots, name, capture(name))
    made = report._figures(tmp_path, _fake_runs(tmp_path))
    ids, oods = calls["plot_roc_curves"][:2]
    assert list(oods["softmax"]) == ["zeta", "alpha"]  # the table's order, not sorted
    assert len(ids["softmax"]) == 2 and len(oods["isomax"]["alpha"]) == 2  # both seeds
    captions = [c for c, _ in made]
    assert any("one curve per seed" in c and "seeds 0, 1" in c for c in captions)
    assert any("pooled" in c for c in captions)
    (reliability,) = calls["plot_reliability"][:1]
    assert reliability["softmax"]["counts"] == [20.0, 40.0]
    (histories,) = calls["plot_training_curves"][:1]
    assert histories["isomax"][0]["train_loss"] == 1.5


def _captured_figure(monkeypatch):
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or path)
    return figs


def test_roc_grid_has_no_empty_cells_and_one_curve_per_seed(tmp_path, monkeypatch):
    figs = _captured_figure(monkeypatch)
    rng = np.random.default_rng(0)
    oods = ["a", "b", "c", "d"]
    ids = {"softmax": [rng.normal(1, 1, 30) for _ in range(3)]}
    ood = {"softmax": {o: [rng.normal(0, 1, 20) for _ in range(3)] for o in oods}}
    plots.plot_roc_curves(ids, ood, tmp_path / "roc.png")
    (fig,) = figs
    axes = fig.axes
    assert len(axes) == 4
    rows_cols = {ax.get_subplotspec().get_geometry()[:2] for ax in axes}
    assert rows_cols == {(1, 4)}  # four panels in one row: no empty cell
    assert [ax.get_title() for ax in axes] == [f"ID vs {o}" for o in oods]
    curves = [ln for ln in axes[0].get_lines() if ln.get_color() == "#1f77b4"]
    assert len(curves) == 3
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert any("± " in t and ", 3 seeds" in t for t in legend)
    assert plots._grid(6, 4) == (2, 3) and plots._grid(8, 4) == (2, 4)


def test_reliability_gap_overlay_does_not_cover_the_bars(tmp_path, monkeypatch):
    figs = _captured_figure(monkeypatch)
    d = {
        "edges": [0.0, 0.5, 1.0],
        "confidence": [0.3, 0.7],
        "accuracy": [0.45, 0.9],
        "counts": [5, 5],
    }  # accuracy above confidence: the gap overlaps the bar
    plots.plot_reliability({"softmax": d}, tmp_path / "r.png")
    (ax,) = figs[0].axes
    gap = [p for p in ax.patches if p.get_hatch() == "//"]
    assert len(gap) == 2
    assert all(not p.get_fill() and p.get_facecolor()[3] == 0 for p in gap)


def test_write_report_has_the_verdict_and_units(tmp_path):
    runs = _fake_runs(tmp_path)
    path = report.write_report(tmp_path, runs, figures=False)
    text = path.read_text()
    assert "## Which method won" in text and "- Mean over the OOD sets:" in text
    data = json.loads((tmp_path / "results.json").read_text())
    assert "fractions in [0, 1]" in data["units"]
