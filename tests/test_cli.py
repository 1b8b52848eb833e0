"""The command line end to end on the embedded digits data."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

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


def test_help_everywhere(capsys):
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert "usage: isomax" in capsys.readouterr().out


@pytest.mark.slow  # a fresh interpreter imports torch: seconds
def test_python_dash_m_lists_the_registries():
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
    capsys.readouterr()
    again = ["evaluate", str(ckpt), "--ood", "gaussian", "--output-dir", str(evdir)]
    assert main([*again, "--device", "cpu"]) == 0  # replaces the first evaluation, says so
    assert (
        "replaced the earlier evaluation there (evaluation.json, evaluation.csv, evaluation.md, "
        "scores.safetensors)" in capsys.readouterr().out
    )
    assert not (evdir / "scores.safetensors").exists()  # the first one's scores went with it

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


@pytest.mark.slow  # 4 runs, figures, then a rerun: seconds
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


# ---------------------------------------------------------------------- user mistakes (docs/errors.md)
#
# Each case asserts exit status 2 and exactly one line on stderr, ``isomax COMMAND: error: ...``
# (no traceback), whose message docs/errors.md promises; argparse cases end with the usage lines.


@pytest.fixture
def cli(monkeypatch, tmp_path, capsys):
    """``cli(*argv)``: run ``isomax ARGV`` in-process: (exit status, stderr). A traceback fails
    the test. No traceback mode; archives unpack into the test's folder, never ~/.cache."""
    monkeypatch.delenv("ISOMAX_DEBUG", raising=False)
    monkeypatch.setenv("ISOMAX_CACHE", str(tmp_path / "cache"))

    def run(*argv: object) -> tuple[int, str]:
        capsys.readouterr()
        args = [str(a) for a in argv]
        try:
            code = main(args)
        except SystemExit as exc:  # argparse errors
            code = exc.code
        except Exception as exc:
            pytest.fail(
                f"`isomax {' '.join(args)}` ended in a traceback ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:300]}) instead of exit status 2 and one stderr line"
            )
        return code, capsys.readouterr().err

    return run


def assert_user_error(result: tuple[int, str], command: str, pattern: str) -> None:
    """Exit status 2, exactly one stderr line ``isomax COMMAND: error: ...`` matching pattern."""
    code, err = result
    lines = err.strip().splitlines()
    assert code == 2, f"exit status {code}, expected 2; stderr:\n{err}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    assert lines[0].startswith(f"isomax {command}: error: "), lines[0]
    assert re.search(pattern, lines[0]), f"{pattern!r} not found in {lines[0]!r}"


def assert_argparse_error(result: tuple[int, str], pattern: str) -> None:
    """argparse: exit status 2, usage lines, then one error line matching pattern."""
    code, err = result
    assert code == 2, f"exit status {code}, expected 2; stderr:\n{err}"
    last = err.strip().splitlines()[-1]
    assert re.search(pattern, last), f"{pattern!r} not found in {last!r}"


@pytest.mark.slow  # a fresh interpreter imports torch: seconds
def test_cli_entry_point_prints_one_line(tmp_path):
    """The real ``python -m isomax``: status 2 and one stderr line, no logging noise."""
    env = {k: v for k, v in os.environ.items() if k != "ISOMAX_DEBUG"}
    missing = tmp_path / "nope.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "isomax", "evaluate", str(missing), "--ood", "gaussian"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"isomax evaluate: error: no checkpoint file at {missing}"
    ]


TRAIN = ["--model", "digits_mlp", "--epochs", "1", "--device", "cpu", "-q"]


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--dataset", "cifar11"], r"unknown dataset 'cifar11'; valid names: .*\bdigits\b"),
        (["--dataset", "digits", "--model", "resnet19"], r"unknown model 'resnet19'; valid names"),
        (["--loss", "isomaxx"], r"unknown loss 'isomaxx'; valid names: softmax"),
        (["--preset", "turbo"], r"unknown preset 'turbo'; valid names: paper, fast, cpu"),
        (["--device", "gpu"], r"unknown device 'gpu'; expected auto, cpu, cuda"),
        (["--lr", "-1"], r"lr must be .*> 0, got -1.0"),
        (["--loss", "dismax", "--fpr-alpha", "0.3"], r"fpr_alpha must be one of 1, 0.5, 0.25"),
    ],
    ids=["dataset", "model", "loss", "preset", "device", "negative-lr", "fpr-alpha"],
)
def test_cli_train_bad_value(cli, tmp_path, extra, pattern):
    args = ["train", *TRAIN, "--output-dir", tmp_path / "out", *extra]
    assert_user_error(cli(*args), "train", pattern)


def test_cli_train_config_missing(cli, tmp_path):
    result = cli("train", *TRAIN, "--config", tmp_path / "nope.toml")
    assert_user_error(result, "train", r"configuration file .*nope.toml does not exist")


def test_cli_train_config_not_toml(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs: 3\n")
    result = cli("train", *TRAIN, "--config", bad)
    assert_user_error(result, "train", r"configuration file .*bad.toml is not valid TOML")


def test_cli_train_config_wrong_value_type(cli, tmp_path):
    cfg = tmp_path / "lr.toml"
    cfg.write_text('[train]\nlr = "fast"\n')
    result = cli("train", *TRAIN, "--config", cfg, "--output-dir", tmp_path / "o")
    assert_user_error(result, "train", r"lr must be .*got 'fast'")


def test_cli_train_config_unreadable(cli, tmp_path):
    """A folder (root) or a chmod-000 file where the TOML file is expected."""
    path = tmp_path / "settings.toml"
    if os.geteuid() == 0:  # chmod 000 does not stop root
        path.mkdir()
    else:
        path.write_text("epochs = 1\n")
        path.chmod(0)
    result = cli("train", *TRAIN, "--config", path)
    assert_user_error(result, "train", r"configuration file .*settings.toml")


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_cli_train_unwritable_output_dir(cli, tmp_path, where):
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "sub" if where == "under-a-file" else Path("/proc/isomax-test-out")
    result = cli("train", *TRAIN, "--output-dir", out)
    assert_user_error(result, "train", rf"cannot create output folder {re.escape(str(out))}: ")


CPU = ("--device", "cpu")
EVAL = ("--ood", "gaussian", *CPU)


def test_cli_evaluate_missing_checkpoint(cli, tmp_path):
    result = cli("evaluate", tmp_path / "none.safetensors", *EVAL)
    assert_user_error(result, "evaluate", r"no checkpoint file at .*none.safetensors")


def test_cli_evaluate_unreadable_checkpoint(cli, unreadable_checkpoint):
    path, pattern = unreadable_checkpoint
    assert_user_error(cli("evaluate", path, *EVAL), "evaluate", pattern)


def test_cli_evaluate_bad_checkpoint_file(cli, tmp_path, bad_checkpoint):
    path, pattern = bad_checkpoint
    result = cli("evaluate", path, *EVAL, "--output-dir", tmp_path / "ev")
    assert_user_error(result, "evaluate", pattern)


@pytest.mark.parametrize("command", ["evaluate", "calibrate", "detect"])
def test_cli_refuses_pickles(cli, tmp_path, pickles, command):
    for kind, path in pickles.files.items():
        if command == "evaluate":
            args = [path, *EVAL, "--output-dir", tmp_path / "ev"]
        elif command == "calibrate":
            args = [path, "--device", "cpu", "--output", tmp_path / "det.safetensors"]
        else:
            args = [path, tmp_path, "--device", "cpu"]
        result = cli(command, *args)
        assert_user_error(result, command, pickles.refusal)
        assert not pickles.marker.exists(), f"{kind} was executed by isomax {command}"


def test_cli_evaluate_checkpoint_and_detector_swapped(cli, tmp_path, ckpt, detector_file):
    result = cli("evaluate", detector_file, *EVAL, "--output-dir", tmp_path / "ev")
    assert_user_error(result, "evaluate", r"holds an isomax 'detector', expected a 'checkpoint'")
    result = cli("detect", ckpt, tmp_path, "--device", "cpu")
    assert_user_error(result, "detect", r"holds an isomax 'checkpoint', expected a 'detector'")


def test_cli_evaluate_dataset_classes_disagree(cli, tmp_path, ckpt):
    result = cli("evaluate", ckpt, "--dataset", "digits-0to4", *EVAL, "--output-dir", tmp_path)
    assert_user_error(
        result,
        "evaluate",
        r"dataset 'digits-0to4' has 5 classes but the checkpoint was trained on 10",
    )


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--dataset", "cifar11"], r"unknown dataset 'cifar11'; valid names:"),
        (["--ood", "placesx"], r"unknown dataset 'placesx'; valid names: .*\bgaussian\b"),
        (["--scores", "mps,entropy"], r"unknown score 'entropy'; valid names: mps, es"),
        (["--temperature", "0"], r"temperature must be a finite number > 0, got 0.0"),
        (
            ["--ood", "{tmp}/nowhere/"],
            r"nowhere does not exist \(expected a folder or an archive\)",
        ),
    ],
    ids=["dataset", "ood-set", "score", "temperature", "missing-ood-folder"],
)
def test_cli_evaluate_bad_value(cli, tmp_path, ckpt, extra, pattern):
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    args = ["evaluate", ckpt, *EVAL, "--output-dir", tmp_path / "ev", *extra]
    assert_user_error(cli(*args), "evaluate", pattern)


def test_cli_evaluate_ood_folder_without_images(cli, tmp_path, ckpt):
    (tmp_path / "empty").mkdir()
    ood = f"folder:{tmp_path / 'empty'}"
    result = cli("evaluate", ckpt, "--ood", ood, *CPU, "--output-dir", tmp_path / "ev")
    assert_user_error(result, "evaluate", r"no image files found under .*empty")


@pytest.mark.parametrize("name", ["truncated_tgz", "truncated_zip"])
def test_cli_evaluate_corrupt_ood_archive(cli, tmp_path, ckpt, archives, name):
    out = tmp_path / "ev"
    result = cli("evaluate", ckpt, "--ood", archives[name], *CPU, "--output-dir", out)
    assert_user_error(result, "evaluate", rf"{archives[name].name} .*(corrupt|truncated)")


def test_cli_evaluate_unwritable_output_dir(cli, tmp_path, ckpt):
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "sub"
    result = cli("evaluate", ckpt, *EVAL, "--output-dir", out)
    assert_user_error(result, "evaluate", r"cannot create output folder .*a_file/sub: ")


def test_cli_calibrate_bad_score(cli, tmp_path, ckpt):
    out = tmp_path / "det.safetensors"
    result = cli("calibrate", ckpt, "--score", "entropy", *CPU, "--output", out)
    assert_user_error(result, "calibrate", r"unknown score 'entropy'; valid names:")


def test_cli_calibrate_unwritable_output(cli, tmp_path, ckpt):
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "sub" / "det.safetensors"
    result = cli("calibrate", ckpt, "--device", "cpu", "--output", out)
    assert_user_error(result, "calibrate", r"cannot create output folder .*a_file/sub: ")


@pytest.fixture
def detect_inputs(tmp_path, png_bytes):
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "good.png").write_bytes(png_bytes())
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    big = png_bytes(64, "RGB")
    (folder / "cut.png").write_bytes(big[: len(big) // 2])
    return folder


@pytest.mark.parametrize(
    ("name", "pattern"),
    [("bad.png", r"cannot identify image file"), ("cut.png", r"image file is truncated")],
    ids=["corrupt", "truncated"],
)
def test_cli_detect_bad_image_on_error_raise(cli, detector_file, detect_inputs, name, pattern):
    image = detect_inputs / name
    result = cli("detect", detector_file, image, "--on-error", "raise", *CPU)
    assert_user_error(result, "detect", rf"cannot decode image file .*{name}: {pattern}")


def test_cli_detect_skips_bad_images(capsys, detector_file, detect_inputs):
    code = main(["detect", str(detector_file), str(detect_inputs), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0
    assert len(out.strip().splitlines()) == 2  # header + good.png
    assert "1 images, " in err and "2 skipped (unreadable)" in err


def test_cli_detect_only_bad_images(cli, detector_file, detect_inputs):
    images = [detect_inputs / "bad.png", detect_inputs / "cut.png"]
    result = cli("detect", detector_file, *images, *CPU)
    assert_user_error(result, "detect", r"none of the 2 image files could be read")


def test_cli_detect_missing_path(cli, tmp_path, detector_file):
    result = cli("detect", detector_file, tmp_path / "nope.png", "--device", "cpu")
    assert_user_error(result, "detect", r"no image file or folder at .*nope.png")


def test_cli_detect_folder_without_images(cli, tmp_path, detector_file):
    (tmp_path / "empty").mkdir()
    result = cli("detect", detector_file, tmp_path / "empty", "--device", "cpu")
    assert_user_error(result, "detect", r"no images found in .*empty \(looked for files ending")


def test_cli_detect_unknown_device(cli, detector_file, detect_inputs):
    result = cli("detect", detector_file, detect_inputs, "--device", "gpu0")
    assert_user_error(result, "detect", r"device 'gpu0'.*expected")


def test_cli_detect_unwritable_output(cli, tmp_path, detector_file, detect_inputs):
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "sub" / "out.csv"
    result = cli("detect", detector_file, detect_inputs, "--device", "cpu", "--output", out)
    assert_user_error(result, "detect", r"cannot create output folder .*a_file/sub: ")


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["train", "--epochs", "0"], r"epochs must be a positive integer, got 0"),
        (["train", "--lr", "fast"], r"argument --lr: invalid float value: 'fast'"),
        (["train", "--amp", "fp8"], r"argument --amp: invalid choice: 'fp8'"),
        (["calibrate", "c.safetensors", "--tpr", "95"], r"argument --tpr: expected a number in"),
        (["evaluate", "c.safetensors", "--ood", ","], r"argument --ood: expected a comma-sep"),
        (["evaluate", "c.safetensors"], r"the following arguments are required: --ood"),
        (["detect", "d.safetensors", "x", "--on-error", "ignore"], r"argument --on-error: inv"),
        (["detect", "d.safetensors", "x", "--batch-size", "0"], r"argument --batch-size: exp"),
        (["fit"], r"argument COMMAND: invalid choice: 'fit'"),
    ],
    ids=[
        "epochs-0",
        "lr-not-a-number",
        "amp-choice",
        "tpr-percent",
        "ood-empty-list",
        "ood-missing",
        "on-error-choice",
        "batch-size-0",
        "unknown-command",
    ],
)
def test_cli_bad_option_values(cli, argv, pattern):
    assert_argparse_error(cli(*argv), pattern)


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
