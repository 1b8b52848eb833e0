"""Help that answers the question: every option explained with its default, examples at the
end of every subcommand's help, and `isomax list` naming everything a command accepts."""

from __future__ import annotations

import argparse
import re

import pytest

from isomax.cli import build_parser, main


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = sorted(_subcommands())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_shows_its_default(command):
    p = _subcommands()[command]
    text = " ".join(p.format_help().split())
    for action in p._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
        takes_value = action.nargs != 0  # flags (store_true) take none
        if action.option_strings and takes_value:
            rendered = " ".join(p._get_formatter()._expand_help(action).split())
            assert "default" in rendered or "required" in rendered, (
                f"{command} {action.option_strings[0]}: help does not show the default: "
                f"{rendered!r}"
            )
    assert "examples:" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_help_ends_with_runnable_looking_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    tail = out.rstrip().split("examples:")[-1].strip().splitlines()
    assert 1 <= len(tail) <= 2
    assert all(line.strip().startswith(f"isomax {command}") for line in tail)


def test_preset_settings_show_every_preset_default():
    p = _subcommands()["train"]
    text = " ".join(p.format_help().split())
    assert re.search(
        r"--epochs EPOCHS training epochs \(default: from the preset: paper 300, "
        r"fast 30, cpu 10, finetune 2\)",
        text,
    )
    assert (
        "--lr LR learning rate (default: from the preset: paper 0.1, fast 0.2, cpu 0.05, "
        "finetune 0.01)" in text
    )
    assert "--loss LOSS softmax, isomax, isomaxplus or dismax (default: isomaxplus)" in text
    compare = " ".join(_subcommands()["compare"].format_help().split())
    assert "(default: softmax,isomax,isomaxplus,dismax)" in compare
    assert "(default: gaussian,uniform,photos)" in compare
    calibrate = " ".join(_subcommands()["calibrate"].format_help().split())
    assert "(default: 0.95)" in calibrate and "(default: nll)" in calibrate


def test_positionals_say_what_they_take():
    cmds = _subcommands()
    for command, dest in (
        ("evaluate", "checkpoint"),
        ("calibrate", "checkpoint"),
        ("detect", "detector"),
        ("detect", "paths"),
    ):
        action = next(a for a in cmds[command]._actions if a.dest == dest)
        assert action.help and len(action.help) > 15


def test_list_names_ood_sets_posthoc_detectors_presets_and_scores(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split(":")[0].strip(): line for line in out.splitlines()}
    for key in ("datasets", "OOD sets", "models", "losses", "scores", "post-hoc", "presets"):
        assert key in lines, out
    assert "photos" in lines["OOD sets"] and "gaussian" in lines["OOD sets"]
    assert "fashion-mnist-small" in lines["datasets"]
    for name in ("mahalanobis", "knn", "vim", "react"):
        assert name in lines["post-hoc"]
    assert "energy" not in lines["post-hoc"]  # a logit score, listed under scores
    assert all(name in lines["presets"] for name in ("paper", "fast", "cpu"))
    assert "mds" in lines["scores"]


@pytest.mark.parametrize("value", ["skip", "fail"])
def test_on_error_accepts_skip_and_fail(value):
    for command in ("evaluate", "compare"):
        args = ["--ood", "gaussian"] if command == "compare" else ["x.safetensors", "--ood", "g"]
        ns = build_parser().parse_args([command, *args, "--on-error", value])
        assert ns.on_error == ("skip" if value == "skip" else "raise")


def test_on_error_rejects_other_words(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["evaluate", "x", "--ood", "g", "--on-error", "ignore"])
    assert exc.value.code == 2
    assert "argument --on-error: invalid choice: 'ignore' (choose from 'skip', 'fail')" in (
        capsys.readouterr().err
    )


def test_finetune_help_shows_its_own_defaults():
    text = " ".join(_subcommands()["finetune"].format_help().split())
    assert "(default: finetune)" in text and "(default: read from the weights file)" in text
    assert "(default: digits_cnn)" not in text and "(default: cpu)" not in text
