"""compare reuses a finished run only while its OOD folders hold the same files, says
"re-evaluated" when it only evaluated again, and skips or fails on undecodable OOD files."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from isomax.comparison import compare
from isomax.data import get_dataset
from isomax.data.errors import CorruptImageError
from isomax.ood_sets import data_fingerprint, evaluation_datasets, ood_fingerprint

Image = pytest.importorskip("PIL.Image")


def _images(folder, n, seed, size=16):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 256, (size, size), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:02d}.png")


def _run(tmp_path, folder, statuses, **kw):
    return compare(
        dataset="digits",
        model="digits_mlp",
        losses=["softmax"],
        seeds=1,
        ood=[f"folder:{folder}"],
        output_dir=tmp_path / "cmp",
        overrides={"epochs": 1, "device": "cpu"},
        figures=False,
        on_run=lambda loss, seed, status: statuses.append(status),
        **kw,
    )


@pytest.mark.slow
def test_reuse_follows_the_folder_content(tmp_path):
    folder = tmp_path / "ood"
    _images(folder, 12, seed=0)
    statuses: list[str] = []
    first = _run(tmp_path, folder, statuses)
    _run(tmp_path, folder, statuses)
    assert statuses == ["trained", "reused"]

    # other images under the same names: sizes or modification times change
    _images(folder, 12, seed=1)
    os.utime(folder / "img00.png", ns=(1, 1))
    third = _run(tmp_path, folder, statuses)
    assert statuses[-1] == "re-evaluated"
    key = next(iter(first.runs[0]["evaluation"]["ood"]))
    auroc = [r.runs[0]["evaluation"]["ood"][key]["mps"]["auroc"] for r in (first, third)]
    assert auroc[0] != auroc[1]  # the new images were scored, not the old results reused
    # the re-evaluated run kept its trained weights: same ID accuracy
    assert (
        first.runs[0]["evaluation"]["id"]["accuracy"]
        == third.runs[0]["evaluation"]["id"]["accuracy"]
    )

    _run(tmp_path, folder, statuses)
    assert statuses[-1] == "reused"
    (folder / "img00.png").unlink()  # one file fewer
    _run(tmp_path, folder, statuses)
    assert statuses[-1] == "re-evaluated"


def test_fingerprint_sees_names_sizes_and_times(tmp_path):
    folder = tmp_path / "f"
    _images(folder, 3, seed=0)
    a = ood_fingerprint(f"folder:{folder}")
    assert a == ood_fingerprint(str(folder)) and len(a) == 64
    os.utime(folder / "img01.png", ns=(10**18, 10**18))
    b = ood_fingerprint(f"folder:{folder}")
    (folder / "img01.png").rename(folder / "renamed.png")
    c = ood_fingerprint(f"folder:{folder}")
    assert len({a, b, c}) == 3
    assert ood_fingerprint("gaussian") is None


def test_undecodable_ood_files_skip_with_a_count_or_fail(tmp_path):
    folder = tmp_path / "ood"
    _images(folder, 6, seed=0)
    (folder / "broken.png").write_bytes(b"not an image")
    statuses: list[str] = []
    with pytest.raises(CorruptImageError):
        _run(tmp_path, folder, statuses)
    result = _run(tmp_path, folder, statuses, on_error="skip")
    assert result.skipped == {"folder:ood": 1}


def test_resized_ood_set_is_logged_once_with_the_sizes(tmp_path, caplog):
    folder = tmp_path / "big"
    _images(folder, 4, seed=0, size=20)
    bundle = get_dataset("digits")
    with caplog.at_level(logging.WARNING, logger="isomax.ood_sets"):
        evaluation_datasets(bundle, [f"folder:{folder}", "digits-5to9", "photos"])
    msgs = [r.getMessage() for r in caplog.records if "resized" in r.getMessage()]
    assert msgs == ["OOD set folder:big: images of 20x20 pixels (first 4 files) are resized to 8x8"]
    caplog.clear()
    fashion = get_dataset("fashion-mnist-small")
    with caplog.at_level(logging.WARNING, logger="isomax.ood_sets"):
        evaluation_datasets(fashion, ["digits", "gaussian"])
    msgs = [r.getMessage() for r in caplog.records if "resized" in r.getMessage()]
    assert msgs == ["OOD set digits: its 8x8 images are resized to 14x14"]


@pytest.mark.slow
def test_evaluate_on_error_skip_counts_and_fail_names_the_option(tmp_path, capsys):
    from isomax.cli import main

    run = tmp_path / "run"
    args = ["train", "--model", "digits_mlp", "--epochs", "1", "--device", "cpu", "-q"]
    assert main([*args, "--output-dir", str(run)]) == 0
    folder = tmp_path / "ood"
    _images(folder, 5, seed=0, size=8)
    (folder / "broken.png").write_bytes(b"not an image")
    ckpt = str(run / "checkpoint.safetensors")
    capsys.readouterr()
    assert main(["evaluate", ckpt, "--ood", f"folder:{folder}", "--on-error", "fail"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("isomax evaluate: error:") and "--on-error skip" in err
    assert main(["evaluate", ckpt, "--ood", f"folder:{folder}", "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert "OOD set folder:ood: 1 undecodable file(s) skipped" in out
    assert "ECE" in out and "%  NLL" in out  # ECE printed in percent like the accuracy


def _id_folder(root, seed=0):
    """Two classes of 30 noisy 8x8 RGB PNGs in the ImageFolder layout."""
    rng = np.random.default_rng(seed)
    for cls, shade in (("a", 40), ("b", 200)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(30):
            img = np.clip(rng.normal(shade, 30, (8, 8, 3)), 0, 255).astype("uint8")
            Image.fromarray(img).save(root / cls / f"{i}.png")


def test_a_run_is_not_reused_once_its_training_files_changed(tmp_path):
    from isomax.errors import InputError

    folder = tmp_path / "id"
    _id_folder(folder)
    statuses: list[str] = []

    def run():
        return compare(
            dataset=f"folder:{folder}",
            model="digits_mlp",
            losses=["softmax"],
            ood=["gaussian"],
            output_dir=tmp_path / "cmp",
            overrides={"epochs": 1, "device": "cpu", "data_root": str(tmp_path / "cache")},
            figures=False,
            on_run=lambda loss, seed, status: statuses.append(status),
        )

    first = run()
    assert first.runs[0]["id_content"] == data_fingerprint(f"folder:{folder}") is not None
    run()
    assert statuses == ["trained", "reused"]  # reading the folder does not change it
    _id_folder(folder, seed=1)  # the same names, other images
    os.utime(folder / "a" / "0.png", ns=(1, 1))
    with pytest.raises(
        InputError, match=r"trained on other files of folder:.*choose another output_dir"
    ):
        run()
    assert statuses == ["trained", "reused"]


def test_fingerprint_counts_the_files_the_loader_reads(tmp_path):
    data = tmp_path / "data"
    _id_folder(data)
    linked = tmp_path / "linked"
    linked.mkdir()
    for cls in ("a", "b"):
        (linked / cls).symlink_to(data / cls, target_is_directory=True)
    a, b = data_fingerprint(f"folder:{data}"), data_fingerprint(f"folder:{linked}")
    # what a file manager or a notebook leaves behind is not read, so it does not count
    (data / ".DS_Store").write_bytes(b"x")
    (data / "a" / ".ipynb_checkpoints").mkdir()
    (data / "a" / ".ipynb_checkpoints" / "0.png").write_bytes(b"x")
    (data / "README.txt").write_text("notes")
    assert data_fingerprint(f"folder:{data}") == a
    # images behind linked class folders do count
    (data / "a" / "0.png").unlink()
    assert data_fingerprint(f"folder:{data}") != a
    assert data_fingerprint(f"folder:{linked}") != b


def test_compare_refuses_before_any_training_and_checks_started_runs(tmp_path, caplog):
    from isomax.errors import InputError

    folder = tmp_path / "id"
    _id_folder(folder)
    statuses: list[str] = []

    def run(losses):
        return compare(
            dataset=f"folder:{folder}",
            model="digits_mlp",
            losses=losses,
            ood=["gaussian"],
            output_dir=tmp_path / "cmp",
            overrides={"epochs": 1, "device": "cpu", "data_root": str(tmp_path / "cache")},
            figures=False,
            on_run=lambda loss, seed, status: statuses.append(status),
        )

    run(["isomax"])
    # a record that is not compare's (e.g. evaluate wrote there): the run is done again
    done = tmp_path / "cmp" / "runs" / "isomax-seed0" / "evaluation.json"
    done.write_text('{"units": "fractions"}')
    with caplog.at_level("WARNING", logger="isomax.comparison"):
        run(["isomax"])
    assert statuses == ["trained", "trained"] and "not a finished compare record" in caplog.text
    # a checkpoint without its record (an interrupted evaluation) on changed files: refused,
    # and before the softmax run (listed first, not trained yet) costs any work
    done.unlink()
    (folder / "b" / "0.png").unlink()
    with pytest.raises(InputError, match="trained on other files"):
        run(["softmax", "isomax"])
    assert statuses == ["trained", "trained"]
    assert not (tmp_path / "cmp" / "runs" / "softmax-seed0").exists()
