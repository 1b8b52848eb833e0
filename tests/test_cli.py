"""The command line end to end on the embedded digits data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from isomax import metrics
from isomax.cli import main
from isomax.io import load_file

COMMANDS = ["demo", "compare", "train", "evaluate", "calibrate", "detect", "list"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--model",
                "digits_mlp",
                "--loss",
                "isomax",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--output-dir",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    return out


def test_help_everywhere_and_python_dash_m(capsys):
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert "usage: isomax" in capsys.readouterr().out
    proc = subprocess.run(
        [sys.executable, "-m", "isomax", "list"], capture_output=True, text=True, check=True
    )
    assert "digits" in proc.stdout and "resnet18" in proc.stdout and "mmles" in proc.stdout


def test_train_evaluate_calibrate_detect(trained, tmp_path, capsys):
    ckpt = trained / "checkpoint.safetensors"
    assert ckpt.exists() and (trained / "log.csv").exists()
    evdir = tmp_path / "ev"
    assert (
        main(
            [
                "evaluate",
                str(ckpt),
                "--ood",
                "gaussian,uniform",
                "--save-scores",
                "--output-dir",
                str(evdir),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    result = json.loads((evdir / "evaluation.json").read_text())
    tensors, _ = load_file(evdir / "scores.safetensors", "scores")
    for ood in ("gaussian", "uniform"):
        for score in ("es", "mps"):
            want = metrics.ood_metrics(tensors[f"id/{score}"], tensors[f"{ood}/{score}"])
            assert result["ood"][ood][score] == pytest.approx(want, abs=1e-12)
    rows = list(csv.DictReader(open(evdir / "evaluation.csv")))
    assert {r["ood"] for r in rows} == {"gaussian", "uniform", "mean"}
    assert "TNR@TPR95" in (evdir / "evaluation.md").read_text()

    det = tmp_path / "det.safetensors"
    assert (
        main(["calibrate", str(ckpt), "--output", str(det), "--tpr", "0.9", "--device", "cpu"]) == 0
    )
    assert "threshold" in capsys.readouterr().out
    from PIL import Image

    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((8, 8)) * 255).astype("uint8")).save(imgs / "a.png")
    Image.fromarray((rng.random((30, 20, 3)) * 255).astype("uint8")).save(imgs / "sub" / "b.jpg")
    (imgs / "broken.png").write_bytes(b"\x89PNG truncated")
    out_csv = tmp_path / "pred.csv"
    assert main(["detect", str(det), str(imgs), "--output", str(out_csv)]) == 0
    preds = list(csv.DictReader(open(out_csv)))
    assert [p["path"].rsplit("/", 1)[-1] for p in preds] == ["a.png", "b.jpg"]
    assert "1 skipped" in capsys.readouterr().err
    for p in preds:
        assert 0 <= int(p["class"]) < 10 and p["is_ood"] in ("True", "False")
        assert 0 < float(p["probability"]) <= 1
    assert main(["detect", str(det), str(imgs), "--on-error", "raise"]) == 2
    assert "broken.png" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dataset", "nope", "--epochs", "1"], "unknown dataset 'nope'"),
        (["train", "--model", "resnet999", "--epochs", "1"], "unknown model 'resnet999'"),
        (["train", "--loss", "focal", "--epochs", "1"], "unknown loss 'focal'"),
        (["train", "--preset", "turbo"], "unknown preset 'turbo'"),
        (["train", "--config", "/nonexistent/c.toml"], "does not exist"),
        (["evaluate", "/nonexistent/ckpt.safetensors", "--ood", "gaussian"], "no checkpoint file"),
        (["train", "--epochs", "1", "--output-dir", "/proc/isomax-x"], "output folder"),
        (["detect", "/nonexistent/d.safetensors", "x.png"], "no detector file"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_option_values_exit_2(capsys):
    for argv in (
        ["train", "--epochs", "zero"],
        ["compare", "--seeds", "0"],
        ["calibrate", "c.safetensors", "--tpr", "1.5"],
        ["frobnicate"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    capsys.readouterr()


def test_evaluate_refuses_mismatched_dataset(trained, capsys):
    ckpt = trained / "checkpoint.safetensors"
    assert main(["evaluate", str(ckpt), "--ood", "gaussian", "--dataset", "digits-0to4"]) == 2
    assert "5 classes but the checkpoint was trained on 10" in capsys.readouterr().err


def test_compare_two_losses_two_seeds_resumes_and_matches_metrics(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = [
        "compare",
        "--dataset",
        "digits",
        "--model",
        "digits_mlp",
        "--losses",
        "softmax,isomaxplus",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--ood",
        "gaussian,photos",
        "--device",
        "cpu",
        "--output-dir",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "trained" in printed and "report:" in printed and "| IsoMax+ | MDS |" in printed
    for name in ("report.md", "results.json", "summary.csv", "full.csv"):
        assert (out / name).exists(), name
    for fig in ("histograms", "roc", "reliability", "training"):
        assert (out / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    for line in report.splitlines():  # every Markdown table row has as many cells as its header
        if line.startswith("| method"):
            width = line.count("|")
        elif line.startswith("|"):
            assert line.count("|") == width, line
    assert "figures/roc.png" in report and "FPR@TPR95 (OOD+)" in report
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 4
    # every number of the report equals isomax.metrics on the saved raw scores
    for run in results["runs"]:
        tensors, _ = load_file(
            out / "runs" / f"{run['loss']}-seed{run['seed']}" / "scores.safetensors", "scores"
        )
        for ood in ("gaussian", "photos"):
            for score, values in run["evaluation"]["ood"][ood].items():
                want = metrics.ood_metrics(tensors[f"id/{score}"], tensors[f"{ood}/{score}"])
                assert values == pytest.approx(want, abs=1e-12)
    agg = results["aggregate"]["ood"]["isomaxplus"]["mds"]["photos"]["auroc"]
    per_seed = [
        r["evaluation"]["ood"]["photos"]["mds"]["auroc"]
        for r in results["runs"]
        if r["loss"] == "isomaxplus"
    ]
    assert agg[0] == pytest.approx(np.mean(per_seed)) and agg[1] == pytest.approx(
        np.std(per_seed, ddof=1)
    )
    # interrupted comparison: drop one finished result and make another half-written
    (out / "runs" / "softmax-seed1" / "evaluation.json").unlink()
    (out / "runs" / "isomaxplus-seed0" / "evaluation.json").write_text('{"loss": "isomaxpl')
    before = (out / "runs" / "isomaxplus-seed1" / "evaluation.json").read_text()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("reused") == 2 and printed.count("trained") == 2
    assert (out / "runs" / "isomaxplus-seed1" / "evaluation.json").read_text() == before
    assert json.loads((out / "runs" / "isomaxplus-seed0" / "evaluation.json").read_text())
