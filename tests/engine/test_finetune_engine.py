"""Fine-tuning is training: from a weights file through the engine, the CLI and back.

A tiny network in the published layout of He et al.'s CIFAR ResNets (``module.`` prefix,
``layerK.i``, ``linear``, a ``{"state_dict": ...}`` pickle) is fine-tuned end to end on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from isomax.cli import main
from isomax.engine import TrainConfig, load_model, train
from isomax.engine.trainer import _scaled_groups
from isomax.heads import IsoMaxHead, IsoMaxPlusHead
from isomax.models.pretrained import build_pretrained, load_weights

IMAGENET_MEAN = [0.485, 0.456, 0.406]


def _folder(root: Path, per_class: int = 24) -> Path:
    """Three classes of 16x16 RGB PNGs (red, green, blue dominated), train/ and test/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", per_class // 2)):
        for c, name in enumerate(("r", "g", "b")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 90, (16, 16, 3))
                img[..., c] += 150
                Image.fromarray(img.astype("uint8")).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory, make_he_state_dict) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("byom")
    weights = tmp / "resnet8-published.th"
    torch.save({"best_prec1": 50.0, "state_dict": make_he_state_dict(1, num_classes=3)}, weights)
    return weights, _folder(tmp / "imgs")


def _cfg(files, tmp_path: Path, **kw) -> TrainConfig:
    weights, folder = files
    return TrainConfig.from_dict(
        {
            "dataset": f"folder:{folder}",
            "data_root": str(tmp_path / "cache"),
            "model": "resnet8",
            "preset": "finetune",
            "epochs": 2,
            "batch_size": 16,
            "lr": 0.01,
            "schedule": "cosine",
            "head_lr_scale": 10.0,
            "pretrained": str(weights),
            "normalize": "imagenet",
            "device": "cpu",
            "output_dir": str(tmp_path / "run"),
            **kw,
        }
    )


def test_train_starts_from_the_file_and_records_its_normalisation(files, tmp_path) -> None:
    cfg = _cfg(files, tmp_path, loss="isomaxplus", freeze_backbone=True)
    result = train(cfg)
    # the backbone kept the file's weights (frozen); the head is new and trained
    published = build_pretrained(load_weights(files[0]), files[0]).state_dict()
    for key, value in result.model.state_dict().items():
        if not key.startswith("head."):
            torch.testing.assert_close(value, published[key], msg=key)
    assert isinstance(result.model.head, IsoMaxPlusHead)
    model, meta = load_model(result.checkpoint)
    assert meta["mean"] == IMAGENET_MEAN and meta["config"]["pretrained"] == str(files[0])
    assert isinstance(model.head, IsoMaxPlusHead)


def test_head_init_from_the_old_weights_and_class_means(files, tmp_path) -> None:
    weights = load_weights(files[0])
    old = weights.state_dict["head.weight"]
    result = train(_cfg(files, tmp_path, loss="isomax", head_init="weights", epochs=1, lr=1e-9))
    # lr ~ 0: the prototypes are still the old classifier rows
    torch.testing.assert_close(result.model.head.prototypes, old, rtol=1e-5, atol=1e-6)
    assert isinstance(result.model.head, IsoMaxHead)


def test_the_head_learns_at_its_own_rate() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    groups = _scaled_groups(
        [{"params": list(model.parameters()), "weight_decay": 0.1}], model[1], 10.0
    )
    assert [g["lr_scale"] for g in groups] == [1.0, 10.0]
    assert [len(g["params"]) for g in groups] == [2, 2]
    assert all(g["weight_decay"] == 0.1 for g in groups)


def test_resume_of_a_finetune_is_exact(files, tmp_path) -> None:
    full = train(_cfg(files, tmp_path / "a", loss="dismax"))
    cut = _cfg(files, tmp_path / "b", loss="dismax")
    train(cut, max_epochs_this_run=1)
    resumed = train(cut, resume=True)
    for key, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.slow
def test_cli_finetune_with_baseline_then_calibrate_and_detect(files, tmp_path, capsys) -> None:
    weights, folder = files
    out = tmp_path / "ft"
    args = [
        "finetune",
        "--pretrained",
        str(weights),
        "--normalize",
        "imagenet",
        "--dataset",
        f"folder:{folder}",
        "--data-root",
        str(tmp_path / "cache"),
        "--loss",
        "isomax",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--baseline",
        "--ood",
        "gaussian,uniform",
        "--device",
        "cpu",
        "--output-dir",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "isomax epoch 2/2" in printed and "softmax epoch 2/2" in printed
    assert main(args) == 2  # the same folder again: refused, nothing overwritten
    err = capsys.readouterr().err
    assert "already holds a run: replace it with --overwrite" in err and "--resume" not in err
    table = (out / "finetune.md").read_text()
    assert "| isomax | es |" in table and "| softmax | mps |" in table
    assert "| softmax | energy |" in table
    results = json.loads((out / "finetune.json").read_text())
    assert set(results) == {"isomax", "softmax"}
    _, meta = load_model(out / "checkpoint.safetensors")
    assert meta["config"]["model"] == "resnet8" and meta["mean"] == IMAGENET_MEAN
    _, base_meta = load_model(out / "baseline-softmax" / "checkpoint.safetensors")
    assert base_meta["config"]["loss"] == "softmax"
    # an ordinary checkpoint: evaluate, calibrate and detect accept it
    ckpt = str(out / "checkpoint.safetensors")
    data = ["--dataset", f"folder:{folder}", "--data-root", str(tmp_path / "cache")]
    assert main(["evaluate", ckpt, "--ood", "gaussian", *data, "--device", "cpu"]) == 0
    assert main(["calibrate", ckpt, *data, "--device", "cpu"]) == 0
    det = out / "detector.safetensors"
    assert (
        main(["detect", str(det), str(folder / "test" / "r"), "--output", str(tmp_path / "p.csv")])
        == 0
    )
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert len(rows) == 1 + 12


def test_cli_finetune_mistakes_are_one_line(files, tmp_path, capsys) -> None:
    weights, folder = files
    base = ["finetune", "--dataset", f"folder:{folder}", "--output-dir", str(tmp_path / "x")]
    assert main([*base, "--pretrained", str(weights), "--model", "resnet20"]) == 2
    assert "not the model 'resnet20'" in capsys.readouterr().err
    assert main([*base, "--pretrained", str(tmp_path / "nope.th")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*base, "--pretrained", str(weights), "--normalize", "0.5/0"]) == 2
    assert "normalize" in capsys.readouterr().err
