"""Regression tests for defects found in review (fp16 resume, stale reuse, permissions, ...)."""

from __future__ import annotations

import os
import stat

import pytest
import torch

import isomax
import isomax.engine
from isomax.compare import compare
from isomax.engine import load_config, train
from isomax.engine.checkpoint import load_checkpoint
from isomax.io import save_file
from isomax.report import aggregate


def _cfg(tmp_path, name, **kw):
    base = dict(
        dataset="digits",
        model="digits_cnn",
        loss="isomax",
        epochs=4,
        device="cpu",
        output_dir=str(tmp_path / name),
    )
    return load_config(preset="cpu", overrides={**base, **kw})


def test_fp16_resume_is_exact_because_the_loss_scale_is_saved(tmp_path):
    kw = dict(amp="fp16", batch_size=8, model="digits_mlp")
    straight = train(_cfg(tmp_path, "a", **kw))
    train(_cfg(tmp_path, "b", **kw), max_epochs_this_run=2)
    meta = load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")[2]
    assert meta["scaler"]["scale"] != 65536.0  # it moved, so restarting it would show
    resumed = train(_cfg(tmp_path, "b", **kw), resume=True)

    a = load_checkpoint(straight.checkpoint)[0]
    b = load_checkpoint(resumed.checkpoint)[0]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_compare_refuses_to_reuse_runs_made_with_other_settings(tmp_path):
    kw = dict(
        dataset="digits",
        model="digits_mlp",
        losses=["isomax"],
        ood=["gaussian"],
        output_dir=tmp_path / "c",
        figures=False,
    )
    compare(**kw, overrides={"epochs": 1, "device": "cpu"})
    with pytest.raises(ValueError, match="trained with epochs=1, this comparison asks for 2"):
        compare(**kw, overrides={"epochs": 2, "device": "cpu"})
    # an evaluation-only change (max_ood_samples) re-evaluates without retraining
    again = compare(**kw, overrides={"epochs": 1, "device": "cpu"}, max_ood_samples=50)
    assert again.runs[0]["max_ood_samples"] == 50


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


def test_written_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_file(tmp_path / "x.safetensors", {"a": torch.zeros(1)}, {}, "scores")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_int32_labels_are_accepted_by_the_losses():
    z = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 1])
    torch.testing.assert_close(isomax.IsoMaxLoss()(z, y.int()), isomax.IsoMaxLoss()(z, y))
    fpr = isomax.FractionalProbabilityRegularization(3, torch.Generator().manual_seed(0))
    _, t = fpr(torch.randn(4, 1, 4, 4), y.int())
    assert torch.isfinite(isomax.FPRLoss()(z, t))


def test_milestones_must_be_fractions_and_toml_types_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"milestones must be fractions of the epochs"):
        load_config(preset="paper", overrides={"milestones": [150, 200, 250]})
    toml = tmp_path / "c.toml"
    toml.write_text("milestones = 5\n")
    with pytest.raises(ValueError, match="milestones must be a list of numbers"):
        load_config(toml)
    toml.write_text("train = 3\n")
    with pytest.raises(ValueError, match=r"\[train\] must be a table"):
        load_config(toml)


def test_nan_stop_before_any_checkpoint_says_so(tmp_path):
    with pytest.raises(isomax.engine.NonFiniteLossError, match="No checkpoint had been written"):
        train(_cfg(tmp_path, "nan", model="digits_mlp", epochs=2, lr=1e30))


def test_detect_streams_batches_and_matches_one_big_batch(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from isomax.cli import main

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--model",
                "digits_mlp",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "-q",
                "--output-dir",
                str(run),
            ]
        )
        == 0
    )
    det = tmp_path / "det.safetensors"
    assert (
        main(
            [
                "calibrate",
                str(run / "checkpoint.safetensors"),
                "--output",
                str(det),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray((rng.random((8, 8)) * 255).astype("uint8")).save(imgs / f"{i}.png")
    (imgs / "3b.png").write_bytes(b"broken")
    outs = []
    for bs in ("1", "256"):
        out = tmp_path / f"p{bs}.csv"
        assert main(["detect", str(det), str(imgs), "--batch-size", bs, "--output", str(out)]) == 0
        outs.append(out.read_text())
    rows = [[line.split(",") for line in text.strip().splitlines()] for text in outs]
    assert len(rows[0]) == len(rows[1]) == 6  # header + 5 readable images
    for a, b in zip(rows[0][1:], rows[1][1:], strict=True):
        assert (a[0], a[1], a[5]) == (b[0], b[1], b[5])  # path, class, OOD flag
        assert float(a[3]) == pytest.approx(float(b[3]), abs=1e-5)  # batch-size rounding only

    assert "5 images" in capsys.readouterr().err


def test_compare_refuses_to_run_under_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="compare runs in one process"):
        compare(dataset="digits", losses=["isomax"], ood=["gaussian"])


def test_compare_applies_fpr_to_dismax_only(tmp_path):
    result = compare(
        dataset="digits",
        model="digits_mlp",
        losses=["softmax", "dismax"],
        ood=["gaussian"],
        output_dir=tmp_path / "f",
        figures=False,
        overrides={"epochs": 1, "device": "cpu", "fpr_alpha": 0.5},
    )
    alphas = {r["loss"]: r["config"]["fpr_alpha"] for r in result.runs}
    assert alphas == {"softmax": None, "dismax": 0.5}
