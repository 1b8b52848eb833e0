"""A saved checkpoint evaluated or calibrated as a library call (what ``isomax evaluate`` and
``isomax calibrate`` run), and the rule that names its ID dataset."""

from __future__ import annotations

import json

import pytest

from isomax.checkpoint_eval import (
    calibrate_checkpoint,
    dataset_of,
    evaluate_checkpoint,
    load_for_evaluation,
)
from isomax.errors import InputError


def test_dataset_of_takes_the_given_name_or_a_registry_name_never_a_location() -> None:
    assert dataset_of("c.safetensors", {"dataset": "folder:/proc"}, "digits") == "digits"
    assert dataset_of("c.safetensors", {"dataset": "Digits"}, None) == "Digits"
    with pytest.raises(InputError, match=r"a data location: .* pass --dataset folder:/proc"):
        dataset_of("c.safetensors", {"dataset": "folder:/proc"}, None)


def test_load_for_evaluation_refuses_a_dataset_with_other_classes(ckpt) -> None:
    loaded = load_for_evaluation(ckpt, "cpu")
    assert loaded.bundle.num_classes == loaded.meta["num_classes"] == 10
    with pytest.raises(InputError, match="has 5 classes but the checkpoint was trained on 10"):
        load_for_evaluation(ckpt, "cpu", dataset="digits-0to4")


def test_evaluate_checkpoint_writes_what_it_returns(ckpt, tmp_path) -> None:
    result = evaluate_checkpoint(
        ckpt, ["gaussian"], output_dir=tmp_path / "ev", save_scores=True, device="cpu"
    )
    assert result.recommended_score == "mds"  # IsoMax+
    assert result.files == [
        "evaluation.json",
        "evaluation.csv",
        "evaluation.md",
        "scores.safetensors",
    ]
    assert all((tmp_path / "ev" / f).exists() for f in result.files)
    saved = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert saved == json.loads(json.dumps(result.evaluation.to_dict()))
    assert set(result.scores) == set(saved["mean"]) and result.skipped == {}
    assert result.replaced == []


def test_evaluating_again_replaces_the_earlier_evaluation_whole_and_says_so(
    ckpt, tmp_path, caplog
) -> None:
    out = tmp_path / "ev"
    evaluate_checkpoint(ckpt, ["gaussian"], output_dir=out, save_scores=True, device="cpu")
    with caplog.at_level("WARNING", logger="isomax.checkpoint_eval"):
        again = evaluate_checkpoint(ckpt, ["uniform"], output_dir=out, device="cpu")
    assert again.replaced == [
        "evaluation.json",
        "evaluation.csv",
        "evaluation.md",
        "scores.safetensors",
    ]
    assert "replaced an earlier evaluation" in caplog.text
    # the scores of the first evaluation do not stay next to the second one's tables
    assert sorted(p.name for p in out.iterdir()) == sorted(again.files)
    assert list(json.loads((out / "evaluation.json").read_text())["ood"]) == ["uniform"]


def test_evaluate_checkpoint_checks_score_names_before_writing(ckpt, tmp_path) -> None:
    with pytest.raises(InputError, match="unknown score 'nope'"):
        evaluate_checkpoint(ckpt, ["gaussian"], output_dir=tmp_path / "ev", scores=["nope"])
    assert not (tmp_path / "ev").exists()


def test_calibrate_checkpoint_returns_a_detector_that_loads_without_the_model(ckpt) -> None:
    detector = calibrate_checkpoint(ckpt, objective=None, tpr=0.9, device="cpu")
    assert detector.temperature == 1.0
    assert detector.metadata["num_classes"] == 10 and "config" in detector.metadata
    assert tuple(detector.metadata["input_shape"]) == (1, 8, 8)


def test_evaluate_never_writes_into_a_training_run_folder(ckpt, tmp_path) -> None:
    run = ckpt.parent  # holds checkpoint.safetensors
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(InputError, match=r"holds a training run .* choose another output_dir"):
        evaluate_checkpoint(ckpt, ["gaussian"], output_dir=run, device="cpu")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_failed_write_leaves_no_earlier_table_behind(ckpt, tmp_path) -> None:
    out = tmp_path / "ev"
    evaluate_checkpoint(ckpt, ["gaussian"], output_dir=out, device="cpu")
    (out / "evaluation.md").unlink()
    (out / "evaluation.md").mkdir()  # the markdown write will fail
    with pytest.raises(OSError):
        evaluate_checkpoint(ckpt, ["uniform"], output_dir=out, device="cpu")
    assert not (out / "evaluation.json").exists()  # no complete evaluation claimed
