"""CLI: fine-tune a SoftMax checkpoint into an isomax head; OpenOOD CSV from evaluate."""

from __future__ import annotations

import csv

import pytest
import torch

from isomax.cli import main
from isomax.engine import load_model
from isomax.heads import IsoMaxPlusHead


@pytest.fixture(scope="module")
def softmax_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "softmax"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--model",
                "digits_mlp",
                "--loss",
                "softmax",
                "--epochs",
                "2",
                "--device",
                "cpu",
                "--output-dir",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    return out / "checkpoint.safetensors"


def test_finetune_checkpoint_gives_a_loadable_isomax_checkpoint(softmax_ckpt, tmp_path, capsys):
    out = tmp_path / "iso"
    assert (
        main(
            [
                "finetune",
                "--checkpoint",
                str(softmax_ckpt),
                "--loss",
                "isomaxplus",
                "--epochs",
                "2",
                "--ood",
                "gaussian",
                "--device",
                "cpu",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "isomaxplus epoch 2/2" in printed and "gaussian" in printed
    model, meta = load_model(out / "checkpoint.safetensors")
    assert isinstance(model.head, IsoMaxPlusHead)
    assert meta["config"]["loss"] == "isomaxplus"
    assert meta["config"]["pretrained"] == str(softmax_ckpt)
    assert meta["config"]["dataset"] == "digits" and meta["complete"]
    assert main(["calibrate", str(out / "checkpoint.safetensors"), "--device", "cpu"]) == 0


def test_finetune_needs_exactly_one_source(capsys):
    assert main(["finetune", "--dataset", "digits"]) == 2
    assert "give exactly one source" in capsys.readouterr().err
    assert main(["finetune", "--pretrained", "torchvision:resnet18", "--dataset", "digits"]) == 2
    assert "--pretrained takes a weights file" in capsys.readouterr().err


def test_evaluate_writes_openood_csv(softmax_ckpt, tmp_path):
    path = tmp_path / "ood.csv"
    assert (
        main(
            [
                "evaluate",
                str(softmax_ckpt),
                "--ood",
                "gaussian,uniform,digits-0to4",
                "--near",
                "gaussian",
                "--openood-csv",
                str(path),
                "--device",
                "cpu",
                "--output-dir",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["dataset", "FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC"]
    assert [r[0] for r in rows[1:]] == ["gaussian", "nearood", "uniform", "digits-0to4", "farood"]
    far = [float(rows[3][2]), float(rows[4][2])]
    assert float(rows[5][2]) == pytest.approx(sum(far) / 2, abs=0.011)


def test_finetune_from_a_distance_head_checkpoint(tmp_path, capsys):
    """An isomax checkpoint with a distance head: another loss starts from class means (the
    old weights are no linear classifier); the same loss keeps its head."""
    from isomax.engine import TrainConfig, train
    from isomax.heads import IsoMaxHead

    common = {"dataset": "digits", "model": "digits_mlp", "epochs": 1, "device": "cpu"}
    src = train(TrainConfig(**common, loss="isomaxplus", output_dir=str(tmp_path / "src")))
    with pytest.raises(ValueError, match="head_init='weights' needs a linear classifier"):
        train(
            TrainConfig(
                **common,
                loss="isomax",
                pretrained=str(src.checkpoint),
                head_init="weights",
                output_dir=str(tmp_path / "a"),
            )
        )
    moved = train(
        TrainConfig(
            **common, loss="isomax", pretrained=str(src.checkpoint), output_dir=str(tmp_path / "b")
        )
    )
    assert isinstance(moved.model.head, IsoMaxHead)
    kept = train(
        TrainConfig(
            **common,
            loss="isomaxplus",
            pretrained=str(src.checkpoint),
            output_dir=str(tmp_path / "c"),
            lr=1e-12,
        )
    )
    torch.testing.assert_close(
        kept.model.head.prototypes, src.model.head.prototypes, rtol=1e-6, atol=1e-6
    )
