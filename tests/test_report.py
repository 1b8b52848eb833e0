"""The comparison report: aggregation of the runs' evaluations."""

from __future__ import annotations

import pytest

from isomax.report import aggregate


def test_aggregate_keeps_the_scores_every_run_has():
    def run(seed, scores):
        per = {s: {"auroc": 0.5 + seed / 10} for s in scores}
        return {
            "loss": "isomax",
            "seed": seed,
            "evaluation": {"id": {"accuracy": 0.9, "n": 10.0}, "ood": {"g": per}, "mean": per},
        }

    agg = aggregate([run(0, ["es", "knn"]), run(1, ["es"])])
    assert set(agg["ood"]["isomax"]) == {"es"}
    assert agg["ood"]["isomax"]["es"]["g"]["auroc"][0] == pytest.approx(0.55)
