"""Checkpoints and detectors that lie (issue 16): one schema checked on load, exit 2, one line.

Every case names the file and the field; small files cannot ask for huge resources, and a
file's metadata never chooses where data is read from or triggers a download.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from isomax.cli import main
from isomax.detector import OODDetector
from isomax.engine import load_config, load_model, train
from isomax.io import load_file, save_file


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile") / "run"
    args = ["--model", "digits_mlp", "--epochs", "1", "--device", "cpu", "-q"]
    assert main(["train", "--dataset", "digits", *args, "--output-dir", str(out)]) == 0
    assert main(["calibrate", str(out / "checkpoint.safetensors"), "--device", "cpu"]) == 0
    return out


@pytest.fixture(scope="module")
def ckpt(run_dir):
    return run_dir / "checkpoint.safetensors"


@pytest.fixture(scope="module")
def det(run_dir):
    return run_dir / "detector.safetensors"


def _edited(src: Path, dst: Path, kind: str, edit=None, tensors_edit=None) -> Path:
    tensors, meta = load_file(src, kind)
    meta = json.loads(json.dumps(meta))
    meta.pop("kind"), meta.pop("format_version")
    if edit is not None:
        edit(meta)
    if tensors_edit is not None:
        tensors_edit(tensors)
    save_file(dst, tensors, meta, kind)
    return dst


def _set(path: str, value):
    def edit(meta):
        *parents, last = path.split(".")
        d = meta
        for p in parents:
            d = d[p]
        if value is _DELETE:
            del d[last]
        else:
            d[last] = value

    return edit


_DELETE = object()

CHECKPOINT_CASES = {
    "input-shape-empty": (_set("input_shape", []), "input_shape"),
    "input-shape-int": (_set("input_shape", 5), "input_shape"),
    "num-classes-null": (_set("num_classes", None), "num_classes"),
    "num-classes-string": (_set("num_classes", "10"), "num_classes"),
    "class-names-int": (_set("class_names", 5), "class_names"),
    "optimizer-string": (_set("optimizer", "sgd"), "optimizer"),
    "epoch-null": (_set("epoch", None), "epoch"),
    "epoch-negative": (_set("epoch", -100), "epoch"),
    "history-string": (_set("history", "all good"), "history"),
    "mean-short": (_set("mean", []), "mean"),
    "std-zero": (_set("std", [0.0]), "std"),
    "config-int": (_set("config", 5), "config"),
    "config-bad-value": (_set("config.epochs", "many"), "config"),
    "no-input-shape": (_set("input_shape", _DELETE), "input_shape"),
    "huge-num-classes": (_set("num_classes", 5_000_000), "num_classes"),
    "absurd-num-classes": (_set("num_classes", 10**9), "num_classes"),
    "huge-input": (_set("input_shape", [1, 30000, 30000]), "input_shape"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_hostile_checkpoint_metadata_is_one_line_naming_file_and_field(
    case, ckpt, tmp_path, capsys
):
    edit, field = CHECKPOINT_CASES[case]
    bad = _edited(ckpt, tmp_path / f"{case}.safetensors", "checkpoint", edit)
    with pytest.raises(ValueError, match=rf"{case}.safetensors.*'{field}'"):
        load_model(bad)
    code = main(["evaluate", str(bad), "--ood", "gaussian", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("isomax evaluate: error: ")
    assert f"{case}.safetensors" in err and f"'{field}'" in err


def _rng(size: int):
    def edit(tensors):
        tensors["rng/torch"] = torch.zeros(size, dtype=torch.uint8)

    return edit


@pytest.mark.parametrize(
    ("case", "tensors_edit", "pattern"),
    [
        ("rng-small", _rng(10), r"'rng/torch' is not a random-generator state"),
        ("rng-float", lambda t: t.update({"rng/torch": t["rng/torch"].float()}), "rng/torch"),
        ("optim-name", lambda t: t.update({"optimizer/x": torch.zeros(2)}), "optimizer/x"),
        ("no-weights", lambda t: [t.pop(k) for k in list(t) if k.startswith("model/")], "model"),
    ],
)
def test_hostile_checkpoint_tensors_on_resume(case, tensors_edit, pattern, ckpt, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    _edited(ckpt, out / "checkpoint.safetensors", "checkpoint", tensors_edit=tensors_edit)
    cfg = load_config(
        preset="cpu",
        overrides=dict(dataset="digits", model="digits_mlp", epochs=1, output_dir=str(out)),
    )
    with pytest.raises(ValueError, match=rf"checkpoint.safetensors.*{pattern}"):
        train(cfg.replace(epochs=2, device="cpu"), resume=True)


def test_optimizer_state_that_does_not_fit_names_the_file(ckpt, tmp_path):
    out = tmp_path / "run"
    out.mkdir()

    def edit(meta):
        meta["optimizer"]["param_groups"] = meta["optimizer"]["param_groups"][:1] * 5

    _edited(ckpt, out / "checkpoint.safetensors", "checkpoint", edit)
    cfg = load_config(
        preset="cpu",
        overrides=dict(dataset="digits", model="digits_mlp", epochs=2, output_dir=str(out)),
    )
    with pytest.raises(ValueError, match=r"cannot resume from .*checkpoint.safetensors"):
        train(cfg.replace(device="cpu"), resume=True)


DETECTOR_CASES = {
    "no-score": (_set("score", _DELETE), "score"),
    "no-threshold": (_set("threshold", _DELETE), "threshold"),
    "score-unknown": (_set("score", "magic"), "score"),
    "temperature-hot": (_set("temperature", "hot"), "temperature"),
    "temperature-negative": (_set("temperature", -1), "temperature"),
    "threshold-string": (_set("threshold", "high"), "threshold"),
    "tpr-big": (_set("tpr", 7), "tpr"),
    "metadata-list": (_set("metadata", [1]), "metadata"),
    "huge-input": (_set("metadata.input_shape", [1, 30000, 30000]), "input_shape"),
    "shape-short": (_set("metadata.input_shape", [1, 8]), "input_shape"),
    "num-classes-huge": (_set("metadata.num_classes", 5_000_000), "num_classes"),
    "class-names-int": (_set("metadata.class_names", 5), "class_names"),
    "config-no-classes": (_set("metadata.num_classes", _DELETE), "num_classes"),
}


@pytest.mark.parametrize("case", sorted(DETECTOR_CASES))
def test_hostile_detector_metadata_is_one_line_naming_file_and_field(case, det, tmp_path, capsys):
    edit, field = DETECTOR_CASES[case]
    bad = _edited(det, tmp_path / f"{case}.safetensors", "detector", edit)
    with pytest.raises(ValueError, match=rf"{case}.safetensors.*'{field}'"):
        OODDetector.load(bad)
    img = tmp_path / "x.png"
    pytest.importorskip("PIL.Image").new("L", (8, 8), 128).save(img)
    code = main(["detect", str(bad), str(img), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and f"{case}.safetensors" in err and f"'{field}'" in err


@pytest.mark.parametrize("threshold", [math.inf, -math.inf])
def test_infinite_threshold_survives_save_and_load(det, tmp_path, threshold):
    d = OODDetector.load(det)
    d.threshold = threshold
    d.save(tmp_path / "d.safetensors")
    back = OODDetector.load(tmp_path / "d.safetensors")
    assert back.threshold == threshold
    pred = back.predict(torch.rand(3, 1, 8, 8))
    assert bool(pred.is_ood.all()) == (threshold == math.inf)


def test_truncated_checkpoint_whose_header_length_starts_with_0x80(ckpt, tmp_path):
    tensors, meta = load_file(ckpt, "checkpoint")
    meta.pop("kind"), meta.pop("format_version")
    for pad in range(600):
        data = st_save(tensors, metadata={"isomax": json.dumps({**meta, "pad": "x" * pad})})
        if data[0] == 0x80:
            break
    assert data[0] == 0x80 and struct.unpack("<Q", data[:8])[0] > 200
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:200])
    with pytest.raises(ValueError, match=r"cut.safetensors .*truncated") as err:
        load_model(cut)
    assert "pickle" not in str(err.value)


def test_file_metadata_never_chooses_a_data_location(ckpt, tmp_path, capsys):
    bad = _edited(
        ckpt, tmp_path / "proc.safetensors", "checkpoint", _set("config.dataset", "folder:/proc")
    )
    code = main(["evaluate", str(bad), "--ood", "gaussian", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "does not read data locations from a file" in err and "--dataset folder:/proc" in err
    code = main(["calibrate", str(bad), "--device", "cpu", "--output", str(tmp_path / "d.st")])
    assert code == 2 and "does not read data locations" in capsys.readouterr().err


def test_file_metadata_never_triggers_a_download(ckpt, tmp_path, capsys, monkeypatch):
    import isomax.data.downloads as dl

    def no_network(*a, **k):
        raise AssertionError("a file's metadata triggered a download")

    monkeypatch.setattr(dl, "urlopen", no_network)
    monkeypatch.setenv("ISOMAX_CACHE", str(tmp_path / "cache"))

    def edit(meta):
        meta["config"].update(dataset="mnist", download=True, data_root=str(tmp_path / "nowhere"))

    bad = _edited(ckpt, tmp_path / "dl.safetensors", "checkpoint", edit)
    code = main(["evaluate", str(bad), "--ood", "gaussian", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "mnist" in err.lower() and "nowhere" not in err


@pytest.mark.parametrize("command", ["calibrate", "detect"])
def test_outputs_onto_inputs_are_refused(command, ckpt, det, tmp_path, capsys):
    copy = tmp_path / "input.safetensors"
    src = ckpt if command == "calibrate" else det
    copy.write_bytes(src.read_bytes())
    before = copy.read_bytes()
    if command == "calibrate":
        argv = ["calibrate", str(copy), "--output", str(copy), "--device", "cpu"]
    else:
        img = tmp_path / "x.png"
        pytest.importorskip("PIL.Image").new("L", (8, 8), 128).save(img)
        argv = ["detect", str(copy), str(img), "--output", str(tmp_path / "." / copy.name)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "would overwrite it" in err, err
    assert copy.read_bytes() == before
    if command == "detect":  # an image given as input is protected too
        code = main(["detect", str(copy), str(img), "--output", str(img)])
        assert code == 2 and "would overwrite it" in capsys.readouterr().err
