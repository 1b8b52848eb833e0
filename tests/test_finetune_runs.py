"""Fine-tuned runs as a library call: the loss and a SoftMax baseline from the same weights,
evaluated against the same OOD sets in one table (what ``isomax finetune`` runs)."""

from __future__ import annotations

import json

import pytest

from isomax.engine import TrainConfig, load_model
from isomax.finetune_runs import finetune_runs, finetune_scores


def test_softmax_runs_are_also_scored_with_the_logit_scores() -> None:
    names = finetune_scores("softmax")
    assert {"mps", "energy", "max_logit"} <= set(names) and len(set(names)) == len(names)
    assert finetune_scores("isomax") == ["mps", "es", "mds", "energy"]  # the loss's own


def test_finetune_runs_with_baseline_write_checkpoints_and_one_table(ckpt, tmp_path) -> None:
    cfg = TrainConfig.from_dict(
        {
            "dataset": "digits",
            "model": "digits_mlp",
            "preset": "finetune",
            "loss": "isomax",
            "epochs": 1,
            "pretrained": str(ckpt),
            "device": "cpu",
            "progress": False,
            "output_dir": str(tmp_path / "ft"),
        }
    )
    seen = []
    done = finetune_runs(
        cfg,
        baseline=True,
        ood=["gaussian"],
        on_run=lambda loss, path, seconds: seen.append((loss, path.name)),
    )
    assert seen == [("isomax", "checkpoint.safetensors"), ("softmax", "checkpoint.safetensors")]
    assert done.checkpoints["softmax"].parent == tmp_path / "ft" / "baseline-softmax"
    _, meta = load_model(done.checkpoints["softmax"])
    assert meta["config"]["loss"] == "softmax" and meta["config"]["pretrained"] == str(ckpt)
    assert done.files == [tmp_path / "ft" / "finetune.md", tmp_path / "ft" / "finetune.json"]
    assert (tmp_path / "ft" / "finetune.md").read_text() == done.table + "\n"
    assert "| softmax | energy |" in done.table and "| isomax | es |" in done.table
    saved = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert set(saved) == {"isomax", "softmax"} and set(saved["softmax"]["ood"]) == {"gaussian"}
    with pytest.raises(FileExistsError, match="already holds a run: replace it with overwrite"):
        finetune_runs(cfg)
    # posthoc names are checked before training: a typo costs no run
    with pytest.raises(ValueError, match="unknown post-hoc detector 'knnn'"):
        finetune_runs(cfg.replace(output_dir=str(tmp_path / "typo")), posthoc=["knnn"])
    assert not (tmp_path / "typo").exists()
    # overwriting without a baseline removes the earlier run's baseline, not leaving it as ours
    finetune_runs(cfg, overwrite=True)
    assert not (tmp_path / "ft" / "baseline-softmax").exists()
    assert (tmp_path / "ft" / "checkpoint.safetensors").is_file()
