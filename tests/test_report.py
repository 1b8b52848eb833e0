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


def test_finetune_table_has_a_row_per_run_and_score_with_hand_computed_cells():
    from isomax.engine.evaluation import Evaluation
    from isomax.report import finetune_table

    def ev(tnr: float, auroc: float) -> Evaluation:
        per = {"mps": {"tnr_at_tpr95": tnr, "auroc": auroc}}
        return Evaluation({"accuracy": 0.9234}, {"svhn": per}, per)

    table = finetune_table({"isomax": ev(0.5, 0.91), "softmax": ev(0.25, 0.8)}, "resnet20", "w.th")
    lines = table.splitlines()
    assert lines[0].startswith("Fine-tuned from w.th (resnet20). Values in %.")
    assert lines[2] == "| run | score | accuracy | svhn TNR@95 / AUROC | mean TNR@95 / AUROC |"
    assert lines[4] == "| isomax | mps | 92.3 | 50.0 / 91.0 | 50.0 / 91.0 |"
    assert lines[5] == "| softmax | mps | 92.3 | 25.0 / 80.0 | 25.0 / 80.0 |"
