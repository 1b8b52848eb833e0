"""The command line speaks command-line words, refuses `folder:` without a path, prints one
line per epoch without a terminal (thread sizing: tests/test_threads.py)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from isomax import cli
from isomax.cli import main, training


def test_missing_dataset_names_the_download_option_not_a_python_argument(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(
        [
            "train",
            "--dataset",
            "cifar10",
            "--data-root",
            str(empty),
            "--output-dir",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("isomax train: error: cifar10")
    assert "--download" in err and "--data-root" in err
    assert "download=True" not in err and "root=" not in err


def test_cli_words_translate_library_phrasing():
    msg = (
        "x.safetensors does not record its model configuration: pass the model, "
        "OODDetector.load(path, model)"
    )
    out = cli._cli_words(msg)
    assert "OODDetector" not in out and "isomax calibrate" in out


@pytest.mark.parametrize("command", ["compare", "evaluate"])
def test_empty_folder_path_is_an_error_not_the_current_folder(command, tmp_path, capsys):
    args = ["--ood", "folder:", "--output-dir", str(tmp_path / "o")]
    if command == "evaluate":
        args = [str(tmp_path / "missing.safetensors"), *args]
    else:
        args += ["--epochs", "1"]
    # the OOD sets are checked before any training
    code = main([command, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert "folder: needs a path" in err or "missing.safetensors" in err


def test_empty_folder_path_in_the_library():
    from isomax.data import get_dataset, get_ood_dataset

    bundle = get_dataset("digits")
    for name in ("folder:", "folder:  "):
        with pytest.raises(ValueError, match="folder: needs a path"):
            get_ood_dataset(name, like=bundle)
        with pytest.raises(ValueError, match="folder: needs a path"):
            get_dataset(name)


@pytest.mark.slow
def test_one_line_per_epoch_without_a_terminal(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "isomax",
            "train",
            "--epochs",
            "2",
            "--model",
            "digits_mlp",
            "--device",
            "cpu",
            "--output-dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )  # stderr is a pipe here, as in CI logs or under nohup
    lines = [ln for ln in proc.stderr.splitlines() if ", epoch " in ln]
    assert [ln.split(":")[0] for ln in lines] == [
        f"isomaxplus seed 0, epoch {i}/2" for i in (1, 2)
    ], proc.stderr
    assert all("train acc" in ln and "%" in ln and "val acc" in ln for ln in lines)


def test_quiet_and_terminal_runs_print_no_epoch_lines(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "_epoch_lines", lambda terminal, verbose=False: seen.append(terminal))
    monkeypatch.setattr(training, "cmd_train", lambda args: 0)
    assert main(["train", "-q"]) == 0 and seen == []
    assert main(["train"]) == 0 and seen == [False]  # pytest's stderr is not a terminal


def test_epoch_lines_handler_keeps_warnings_and_goes_away_on_a_terminal(capsys):
    log = logging.getLogger("isomax.engine.trainer")
    try:
        cli._epoch_lines(terminal=False)
        log.info("%s seed %d, epoch %d/%d: x", "softmax", 0, 1, 2)
        log.info("resumed from somewhere")  # other info stays quiet
        log.warning("careful")
        err = capsys.readouterr().err
        assert "softmax seed 0, epoch 1/2: x" in err and "resumed" not in err
        assert "WARNING isomax.engine.trainer: careful" in err
        cli._epoch_lines(terminal=True)
        assert not any(isinstance(h.formatter, cli._EpochFormatter) for h in log.handlers)
        assert log.propagate
    finally:
        cli._epoch_lines(terminal=True)
        log.setLevel(logging.NOTSET)
