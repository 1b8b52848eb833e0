"""Bad-input suite: every user mistake ends in a clear exception (API) or exit status 2 (CLI).

Each case asserts the exception type and that the message says what was wrong and what was
expected (``pytest.raises(..., match=...)``); CLI cases assert exit status 2 and exactly one
line on stderr (no traceback). Where the library deliberately does not raise (NaN through
heads, scores and losses; one-element sets) the test pins the documented behaviour instead.
The cases are listed in docs/errors.md.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save as st_save
from safetensors.torch import save_file as st_save_file

import isomax
from isomax import calibration, metrics, scores
from isomax.cli import main
from isomax.data import (
    CorruptImageError,
    ImageFolderDataset,
    get_dataset,
    get_ood_dataset,
    load_images,
    safe_extract,
)
from isomax.detector import OODDetector
from isomax.engine import TrainConfig, load_config, load_model, resolve_device
from isomax.engine.evaluation import evaluate
from isomax.io import UnsafeFileError, load_file, save_file
from isomax.models import create_model

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NAN = float("nan")
INF = float("inf")


# ------------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No traceback mode, and archives unpack into the test's folder, never ~/.cache."""
    monkeypatch.delenv("ISOMAX_DEBUG", raising=False)
    monkeypatch.setenv("ISOMAX_CACHE", str(tmp_path / "cache"))


def cli(capsys, *argv: object) -> tuple[int, str]:
    """Run ``isomax ARGV`` in-process: (exit status, stderr). A traceback fails the test."""
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


def png_bytes(size: int = 8, mode: str = "L") -> bytes:
    rng = np.random.default_rng(0)
    shape = (size, size) if mode == "L" else (size, size, 3)
    buf = io.BytesIO()
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class _Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def pickles(tmp_path):
    """Malicious files: a raw pickle (protocol 4 and 0) and a torch.save archive."""
    marker = tmp_path / "PWNED"
    payload = _Payload(marker)
    for protocol in (4, 0):
        pickle.loads(pickle.dumps(payload, protocol=protocol))  # the payload runs code ...
        assert marker.exists()
        marker.unlink()  # ... so its absence below proves nothing was unpickled
    files = {
        "pickle4": tmp_path / "model.pkl",
        "pickle0": tmp_path / "model0.safetensors",
        "torch_save": tmp_path / "model.pt",
    }
    files["pickle4"].write_bytes(pickle.dumps(payload, protocol=4))
    files["pickle0"].write_bytes(pickle.dumps(payload, protocol=0))
    torch.save({"state": payload}, files["torch_save"])
    return files, marker


# ------------------------------------------------------------------------------- trained files


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 1-epoch digits_mlp (IsoMax+) checkpoint and its detector, made with the CLI."""
    out = tmp_path_factory.mktemp("bad_input") / "run"
    args = ["--model", "digits_mlp", "--epochs", "1", "--device", "cpu"]
    assert main(["train", "--dataset", "digits", *args, "--output-dir", str(out), "-q"]) == 0
    ckpt = out / "checkpoint.safetensors"
    assert main(["calibrate", str(ckpt), "--device", "cpu"]) == 0
    assert (out / "detector.safetensors").exists()
    return out


@pytest.fixture(scope="module")
def ckpt(run_dir):
    return run_dir / "checkpoint.safetensors"


@pytest.fixture(scope="module")
def detector_file(run_dir):
    return run_dir / "detector.safetensors"


def _rewrite_checkpoint(src: Path, dst: Path, edit) -> Path:
    """Copy a checkpoint with its metadata changed by ``edit(meta) -> meta``."""
    tensors, meta = load_file(src, "checkpoint")
    save_file(dst, tensors, edit(json.loads(json.dumps(meta))), "checkpoint")
    return dst


def _raw_metadata_file(src: Path, dst: Path, text: str) -> Path:
    """Copy a checkpoint's tensors with the isomax metadata replaced by ``text``."""
    tensors, _ = load_file(src, "checkpoint")
    dst.write_bytes(st_save(tensors, metadata={"isomax": text}))
    return dst


@pytest.fixture
def bad_files(tmp_path, ckpt):
    """Corrupt, truncated and foreign versions of the checkpoint."""
    data = ckpt.read_bytes()
    files = {
        "truncated_header": tmp_path / "head.safetensors",
        "truncated_tail": tmp_path / "tail.safetensors",
        "junk": tmp_path / "junk.safetensors",
        "plain": tmp_path / "plain.safetensors",
    }
    files["truncated_header"].write_bytes(data[:200])
    files["truncated_tail"].write_bytes(data[:-100])
    files["junk"].write_bytes(b"this is not a safetensors file at all")
    st_save_file({"w": torch.zeros(2)}, str(files["plain"]))
    files["future"] = _rewrite_checkpoint(
        ckpt, tmp_path / "future.safetensors", lambda m: {**m, "format_version": 99}
    )
    files["bad_json"] = _raw_metadata_file(ckpt, tmp_path / "badjson.safetensors", "{not json")

    def drop_config(m):
        del m["config"]
        return m

    files["no_config"] = _rewrite_checkpoint(ckpt, tmp_path / "nocfg.safetensors", drop_config)

    def other_model(m):
        m["config"]["model"] = "digits_cnn"
        return m

    files["other_model"] = _rewrite_checkpoint(ckpt, tmp_path / "other.safetensors", other_model)
    return files


def unreadable_file(tmp_path: Path, like: Path) -> tuple[Path, str]:
    """A path that cannot be read as a file, and the message pattern expected for it.

    chmod 000 does not stop root, so as root the path is a folder where a file is expected.
    """
    path = tmp_path / "unreadable.safetensors"
    if IS_ROOT:
        path.mkdir()
        return path, rf"no checkpoint file at .*{path.name}"
    path.write_bytes(like.read_bytes())
    path.chmod(0)
    return path, rf"(Permission denied|cannot read).*{path.name}"


# ------------------------------------------------------------------------------- heads


HEADS = [
    pytest.param(
        lambda: isomax.IsoMaxPlusHead(4, 3)(torch.ones(4)),
        ValueError,
        r"features must be 2-D with shape \(N, 4\), got 1-D shape \(4,\)",
        id="head-1d-features",
    ),
    pytest.param(
        lambda: isomax.IsoMaxHead(4, 3)(torch.ones(2, 5)),
        ValueError,
        r"features has shape \(2, 5\), expected \(N, 4\)",
        id="head-wrong-width",
    ),
    pytest.param(
        lambda: isomax.DisMaxHead(4, 3)(torch.ones(2, 4, dtype=torch.long)),
        TypeError,
        r"features must have a floating dtype .*got torch.int64",
        id="head-integer-features",
    ),
    pytest.param(
        lambda: isomax.IsoMaxPlusHead(4, 3)(np.ones((2, 4), dtype=np.float32)),
        TypeError,
        r"features must be a torch.Tensor, got ndarray",
        id="head-numpy-features",
    ),
    pytest.param(
        lambda: isomax.IsoMaxHead(0, 3),
        ValueError,
        r"in_features must be a positive integer, got 0",
        id="head-zero-in-features",
    ),
    pytest.param(
        lambda: isomax.IsoMaxPlusHead(4, 3, temperature=-1.0),
        ValueError,
        r"temperature must be a finite number > 0, got -1",
        id="head-negative-temperature",
    ),
    pytest.param(
        lambda: isomax.build_head("cosine", 4, 3),
        ValueError,
        r"unknown head 'cosine'; valid names: dismax, isomax, isomaxplus, linear",
        id="head-unknown-name",
    ),
    pytest.param(
        lambda: create_model("digits_mlp", 10, head="cosine"),
        ValueError,
        r"unknown head 'cosine'; valid names:",
        id="model-unknown-head",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), HEADS)
def test_heads_reject(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize(
    "head",
    [
        isomax.IsoMaxHead(4, 3),
        isomax.IsoMaxPlusHead(4, 3),
        isomax.DisMaxHead(4, 3),
        torch.nn.Linear(4, 3),
    ],
    ids=["isomax", "isomaxplus", "dismax", "linear"],
)
@pytest.mark.parametrize("bad", [NAN, INF], ids=["nan", "inf"])
def test_heads_non_finite_features_give_nan_rows(head, bad):
    """Documented: no check (it would sync the device); the bad row is NaN, the others exact."""
    x = torch.tensor([[bad, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    with torch.no_grad():
        out = head(x)
        clean = head(x[1:])
    assert not torch.isfinite(out[0]).any()
    torch.testing.assert_close(out[1:], clean)


# ------------------------------------------------------------------------------- losses


LOSSES = [
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3), torch.tensor([0.0, 1.0])),
        TypeError,
        r"targets must hold integer class indices \(torch.long\), got dtype torch.float32",
        id="loss-float-targets",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3), torch.tensor([0, 3])),
        ValueError,
        r"targets must lie in \[0, 2\] .*found 3",
        id="loss-target-too-large",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3), torch.tensor([0, -1])),
        ValueError,
        r"targets must lie in \[0, 2\] .*found -1",
        id="loss-negative-target",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3), torch.tensor([0, 1, 2])),
        ValueError,
        r"targets must have shape \(2,\) to match the logits, got \(3,\)",
        id="loss-target-length",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3, 1), torch.tensor([0, 1])),
        ValueError,
        r"logits must be 2-D with shape \(N, C\), got 3-D shape \(2, 3, 1\)",
        id="loss-3d-logits",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss()(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1])),
        TypeError,
        r"logits must have a floating dtype .*got torch.int64",
        id="loss-integer-logits",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss(reduction="avg"),
        ValueError,
        r"reduction must be one of \('mean', 'sum', 'none'\), got 'avg'",
        id="loss-unknown-reduction",
    ),
    pytest.param(
        lambda: isomax.IsoMaxLoss(entropic_scale=0),
        ValueError,
        r"entropic_scale must be a finite number > 0, got 0",
        id="loss-zero-entropic-scale",
    ),
    pytest.param(
        lambda: isomax.FPRLoss(10.0, 0.3),
        ValueError,
        r"alpha must be one of \(1.0, 0.5, 0.25\), got 0.3",
        id="loss-fpr-alpha",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), LOSSES)
def test_losses_reject(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_loss_nan_logits_return_nan():
    """Documented: the loss does not check values; NaN logits give a NaN loss, which
    :func:`isomax.engine.train` turns into ``NonFiniteLossError``."""
    loss = isomax.IsoMaxLoss()(torch.tensor([[NAN, 0.0, 1.0]]), torch.tensor([1]))
    assert torch.isnan(loss)


# ------------------------------------------------------------------------------- scores


SCORES = [
    pytest.param(
        lambda: scores.mps(torch.ones(3)),
        ValueError,
        r"logits must be 2-D with shape \(N, C\), got 1-D shape \(3,\)",
        id="score-1d-logits",
    ),
    pytest.param(
        lambda: scores.es(torch.ones(2, 3, dtype=torch.int32)),
        TypeError,
        r"logits must have a floating dtype .*got torch.int32",
        id="score-integer-logits",
    ),
    pytest.param(
        lambda: scores.mds(torch.ones(2, 3), temperature=0),
        ValueError,
        r"temperature must be a finite number > 0, got 0",
        id="score-zero-temperature",
    ),
    pytest.param(
        lambda: scores.mmles(torch.ones(2, 0)),
        ValueError,
        r"logits must have at least one class column, got shape \(N, 0\)",
        id="score-no-classes",
    ),
    pytest.param(
        lambda: scores.get("entropy"),
        ValueError,
        r"unknown score 'entropy'; valid scores: mps, es, mds",
        id="score-unknown-name",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), SCORES)
def test_scores_reject(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize("name", scores.names())
def test_scores_non_finite_logits_stay_in_their_row(name):
    """Documented: scores do not raise on NaN/+inf logits; that row's score is non-finite
    (NaN, or +inf for the max-logit family), the other rows are unaffected."""
    fn = scores.get(name)
    z = torch.tensor([[NAN, 0.0, 1.0], [INF, 0.0, 1.0], [1.0, 2.0, 3.0]])
    out = fn(z)
    assert not torch.isfinite(out[:2]).any()
    torch.testing.assert_close(out[2:], fn(z[2:]))


def test_scores_of_an_empty_batch_are_empty():
    """Documented: an empty batch (0, C) is not an error for scores: it gives (0,)."""
    for name in scores.names():
        assert scores.get(name)(torch.zeros(0, 3)).shape == (0,)


# ------------------------------------------------------------------------------- metrics


ONE = np.array([0.5])
METRICS = [
    pytest.param(
        lambda: metrics.auroc(np.array([0.1, NAN]), np.array([0.2])),
        ValueError,
        r"id_scores must be finite, found 1 NaN/inf value\(s\) \(first at index 1: nan\)",
        id="metric-nan-id-scores",
    ),
    pytest.param(
        lambda: metrics.ood_metrics(torch.tensor([0.1, 0.3]), torch.tensor([0.2, -INF])),
        ValueError,
        r"ood_scores must be finite, found 1 NaN/inf value\(s\) \(first at index 1: -inf\)",
        id="metric-inf-ood-scores",
    ),
    pytest.param(
        lambda: metrics.auroc(np.array([], dtype=np.float64), ONE),
        ValueError,
        r"id_scores must not be empty",
        id="metric-empty-id",
    ),
    pytest.param(
        lambda: metrics.ood_metrics(ONE, np.array([], dtype=np.float64)),
        ValueError,
        r"ood_scores must not be empty",
        id="metric-empty-ood",
    ),
    pytest.param(
        lambda: metrics.aupr_in(np.ones((2, 2)), np.ones(2)),
        ValueError,
        r"id_scores must be 1-D, got shape \(2, 2\)",
        id="metric-2d-scores",
    ),
    pytest.param(
        lambda: metrics.auroc(np.ones(2, dtype=np.int32), np.ones(2)),
        TypeError,
        r"id_scores and ood_scores must have the same dtype, got int32 and float64",
        id="metric-dtype-mismatch",
    ),
    pytest.param(
        lambda: metrics.auroc([0.9], [0.1]),
        TypeError,
        r"id_scores must be a torch.Tensor or numpy.ndarray, got list",
        id="metric-list-input",
    ),
    pytest.param(
        lambda: metrics.auroc(torch.ones(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)),
        TypeError,
        r"id_scores must be numeric, got a tensor of dtype torch.bool",
        id="metric-bool-scores",
    ),
    pytest.param(
        lambda: metrics.tnr_at_tpr(np.ones(3), np.ones(3), tpr=95),
        ValueError,
        r"tpr must be in \(0, 1\], got 95",
        id="metric-tpr-as-percent",
    ),
    pytest.param(
        lambda: metrics.accuracy(np.ones((2, 3)), np.array([0.0, 1.0])),
        TypeError,
        r"labels must have an integer dtype, got float64",
        id="accuracy-float-labels",
    ),
    pytest.param(
        lambda: metrics.accuracy(np.ones((2, 3)), np.array([0, 3])),
        ValueError,
        r"labels must be in \[0, 3\), found 3",
        id="accuracy-label-out-of-range",
    ),
    pytest.param(
        lambda: metrics.accuracy(np.ones((2, 3)), np.array([0, 1, 2])),
        ValueError,
        r"labels has length 3, expected 2 \(one per row\)",
        id="accuracy-label-count",
    ),
    pytest.param(
        lambda: metrics.accuracy(np.ones(3), np.array([0, 1, 2])),
        ValueError,
        r"logits must be 2-D \[N, C\], got shape \(3,\)",
        id="accuracy-1d-logits",
    ),
    pytest.param(
        lambda: metrics.expected_calibration_error(np.array([[2.0, -1.0]]), np.array([0])),
        ValueError,
        r"probs must hold probabilities in \[0, 1\].*pass softmax outputs, not logits",
        id="ece-logits-not-probs",
    ),
    pytest.param(
        lambda: metrics.brier(np.array([[0.2, 0.2]]), np.array([0])),
        ValueError,
        r"probs rows must sum to 1 \(tolerance 0.001\), row 0 sums to 0.4",
        id="brier-rows-not-summing-to-1",
    ),
    pytest.param(
        lambda: metrics.maximum_calibration_error(np.array([[0.5, 0.5]]), np.array([0]), 0),
        ValueError,
        r"n_bins must be >= 1, got 0",
        id="mce-zero-bins",
    ),
    pytest.param(
        lambda: metrics.nll(torch.tensor([[NAN, 0.5]]), torch.tensor([0])),
        ValueError,
        r"probs must be finite, found 1 NaN/inf value\(s\) \(first at index \(0, 0\): nan\)",
        id="nll-nan-probs",
    ),
    pytest.param(
        lambda: metrics.nll(np.zeros((0, 2)), np.zeros(0, dtype=np.int64)),
        ValueError,
        r"probs must have at least one row and one column, got \(0, 2\)",
        id="nll-empty",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), METRICS)
def test_metrics_reject(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_metrics_work_with_one_id_and_one_ood_score():
    separated = metrics.ood_metrics(np.array([0.9]), np.array([0.1]))
    assert separated == {
        "auroc": 1.0,
        "aupr_in": 1.0,
        "aupr_out": 1.0,
        "tnr_at_tpr95": 1.0,
        "fpr_at_tpr95": 0.0,
        "detection_accuracy": 1.0,
        "aupr_in_trapezoid": 1.0,
        "aupr_out_trapezoid": 1.0,
    }
    tied = metrics.ood_metrics(torch.tensor([0.5]), torch.tensor([0.5]))
    assert tied["auroc"] == 0.5 and tied["detection_accuracy"] == 0.5
    assert metrics.accuracy(np.array([[0.2, 0.8]]), np.array([1])) == 1.0
    assert metrics.brier(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


# ------------------------------------------------------------------------------- calibration


LOGITS = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
CALIBRATION = [
    pytest.param(
        lambda: calibration.fit_temperature(np.ones(3), np.array([0, 1, 2])),
        ValueError,
        r"logits must be 2-D \[N, C\], got shape \(3,\)",
        id="fit-1d-logits",
    ),
    pytest.param(
        lambda: calibration.fit_temperature(np.array([[NAN, 1.0]]), np.array([0])),
        ValueError,
        r"logits must be finite, found 1 NaN/inf",
        id="fit-nan-logits",
    ),
    pytest.param(
        lambda: calibration.fit_temperature(LOGITS, np.array([0, 5])),
        ValueError,
        r"labels must be in \[0, 3\), found 5",
        id="fit-label-out-of-range",
    ),
    pytest.param(
        lambda: calibration.fit_temperature(LOGITS, torch.tensor([0.0, 1.0])),
        TypeError,
        r"labels must have an integer dtype, got float32",
        id="fit-float-labels",
    ),
    pytest.param(
        lambda: calibration.fit_temperature(LOGITS, np.array([0, 1]), objective="mse"),
        ValueError,
        r"objective must be one of \('nll', 'ece'\), got 'mse'",
        id="fit-unknown-objective",
    ),
    pytest.param(
        lambda: calibration.fit_temperature(LOGITS, np.array([0, 1]), bounds=(5.0, 1.0)),
        ValueError,
        r"bounds must satisfy 0 < low < high < inf, got \(5.0, 1.0\)",
        id="fit-bounds-reversed",
    ),
    pytest.param(
        lambda: calibration.fit_temperature(LOGITS, np.array([0, 1]), bounds=5.0),
        TypeError,
        r"bounds must be a pair of numbers \(low, high\), got 5.0",
        id="fit-bounds-not-a-pair",
    ),
    pytest.param(
        lambda: calibration.threshold_for_tpr(np.array([], dtype=np.float32)),
        ValueError,
        r"id_val_scores must not be empty",
        id="threshold-empty",
    ),
    pytest.param(
        lambda: calibration.threshold_for_tpr(torch.tensor([0.1, NAN])),
        ValueError,
        r"id_val_scores must be finite",
        id="threshold-nan",
    ),
    pytest.param(
        lambda: calibration.threshold_for_tpr(np.array([0.1, 0.2]), tpr=1.5),
        ValueError,
        r"tpr must be in \(0, 1\], got 1.5",
        id="threshold-tpr-above-1",
    ),
    pytest.param(
        lambda: calibration.calibrate_head(torch.nn.Linear(2, 3), LOGITS, np.array([0, 1])),
        AttributeError,
        r"head \(Linear\) has no 'temperature' attribute; expected a float attribute or a "
        r"registered buffer",
        id="calibrate-head-without-temperature",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), CALIBRATION)
def test_calibration_rejects(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_calibration_works_with_one_sample():
    t = calibration.fit_temperature(np.array([[2.0, 1.0]]), np.array([0]))
    assert 0.001 <= t <= 100.0
    assert calibration.threshold_for_tpr(np.array([0.3])) == pytest.approx(0.3)


# ------------------------------------------------------------------------------- unknown names


NAMES = [
    pytest.param(
        lambda: get_dataset("cifar11"),
        ValueError,
        r"unknown dataset 'cifar11'; valid names are \[.*'digits'.*\], 'folder:PATH'",
        id="unknown-dataset",
    ),
    pytest.param(
        lambda: get_ood_dataset("placesx", like=get_dataset("digits")),
        ValueError,
        r"unknown dataset 'placesx'; valid names are \[.*'gaussian'.*\]",
        id="unknown-ood-set",
    ),
    pytest.param(
        lambda: create_model("resnet19", 10),
        ValueError,
        r"unknown model 'resnet19'; valid names: .*resnet18",
        id="unknown-model",
    ),
    pytest.param(
        lambda: isomax.get_method("isomaxx"),
        ValueError,
        r"unknown loss 'isomaxx'; valid losses: softmax, isomax, isomaxplus, dismax",
        id="unknown-loss",
    ),
    pytest.param(
        lambda: load_config(preset="turbo"),
        ValueError,
        r"unknown preset 'turbo'; valid presets: paper, fast, cpu",
        id="unknown-preset",
    ),
    pytest.param(
        lambda: TrainConfig.from_dict({"epoch": 3}),
        ValueError,
        r"unknown configuration keys \['epoch'\]; valid keys: .*epochs",
        id="unknown-config-key",
    ),
    pytest.param(
        lambda: resolve_device("gpu"),
        ValueError,
        r"unknown device 'gpu'; expected auto, cpu, cuda, cuda:N or mps",
        id="unknown-device",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), NAMES)
def test_unknown_names_rejected(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_config_value_of_wrong_type_rejected():
    """A TOML ``lr = "fast"`` must give a ValueError naming ``lr``, not a TypeError from ``>``."""
    with pytest.raises(ValueError, match=r"lr must be .*got 'fast'"):
        TrainConfig.from_dict({"lr": "fast"})


# ------------------------------------------------------------------------------- detector


def _linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(2, 3)


DETECTOR = [
    pytest.param(
        lambda: OODDetector(_linear(), score="entropy"),
        ValueError,
        r"unknown score 'entropy'; valid scores:",
        id="detector-unknown-score",
    ),
    pytest.param(
        lambda: OODDetector(_linear(), score=3),
        (TypeError, ValueError),
        r"unknown score 3",
        id="detector-score-not-a-name",
    ),
    pytest.param(
        lambda: OODDetector("model.safetensors"),
        TypeError,
        r"model must be an nn.Module, got str",
        id="detector-model-not-a-module",
    ),
    pytest.param(
        lambda: OODDetector(_linear(), temperature=0.0),
        ValueError,
        r"temperature must be a finite number > 0, got 0.0",
        id="detector-zero-temperature",
    ),
    pytest.param(
        lambda: OODDetector(_linear(), device="gpu0"),
        ValueError,
        r"device 'gpu0'.*expected",
        id="detector-unknown-device",
    ),
    pytest.param(
        lambda: OODDetector(_linear()).predict(torch.ones(1, 2)),
        RuntimeError,
        r"the detector has no threshold: call fit\(\) or pass threshold=",
        id="detector-predict-before-fit",
    ),
    pytest.param(
        lambda: OODDetector(_linear()).fit([]),
        ValueError,
        r"the validation loader is empty: no in-distribution data to fit on",
        id="detector-fit-empty-loader",
    ),
    pytest.param(
        lambda: OODDetector(_linear()).fit([torch.ones(2, 2)], calibrate="nll"),
        ValueError,
        r"calibrate needs labelled batches \(inputs, labels\)",
        id="detector-calibrate-without-labels",
    ),
    pytest.param(
        lambda: evaluate(_linear(), [(torch.ones(2, 2), torch.tensor([0, 1]))], {}),
        ValueError,
        r"ood_data is empty: name at least one OOD set",
        id="evaluate-no-ood-sets",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), DETECTOR)
def test_detector_rejects(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_detector_flags_nan_inputs_as_ood():
    """Fail-safe: an input whose score is NaN cannot be called in-distribution."""
    det = OODDetector(_linear(), score="mps", threshold=0.0)
    pred = det.predict(torch.tensor([[NAN, 0.0], [1.0, 2.0]]))
    assert torch.isnan(pred.scores[0])
    assert bool(pred.is_ood[0]), "a NaN score was accepted as in-distribution"
    assert not bool(pred.is_ood[1])


# ------------------------------------------------------------------------------- files (API)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint file at .*missing.safetensors"):
        load_model(tmp_path / "missing.safetensors")


def test_unreadable_checkpoint(tmp_path, ckpt):
    path, pattern = unreadable_file(tmp_path, ckpt)
    with pytest.raises((FileNotFoundError, PermissionError), match=pattern):
        load_model(path)


FILE_CASES = [
    ("truncated_header", r"is not a valid safetensors file \(corrupt or truncated\?\)"),
    ("truncated_tail", r"is not a valid safetensors file \(corrupt or truncated\?\)"),
    ("junk", r"is not a valid safetensors file \(corrupt or truncated\?\)"),
    ("plain", r"is a safetensors file but not an isomax checkpoint \(no metadata\)"),
    ("future", r"has format version 99; this isomax reads versions up to 1: upgrade isomax"),
    ("bad_json", r"badjson.safetensors.*(metadata|JSON)"),
    ("no_config", r"nocfg.safetensors.*config"),
    ("other_model", r"the weights do not fit model 'digits_cnn' with loss 'isomaxplus'"),
]


@pytest.mark.parametrize(("name", "pattern"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_checkpoint_file(bad_files, name, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_model(bad_files[name])


def test_detector_file_given_as_checkpoint(detector_file):
    with pytest.raises(ValueError, match=r"holds an isomax 'detector', expected a 'checkpoint'"):
        load_model(detector_file)


def test_checkpoint_loaded_into_another_model(detector_file):
    other = create_model("digits_cnn", 10, head="isomaxplus", in_channels=1)
    with pytest.raises(
        ValueError, match=r"was saved from a DigitsMLP whose weights do not fit the given DigitsCNN"
    ):
        OODDetector.load(detector_file, model=other)


PICKLE_PATTERN = (
    r"(holds a pickle .*isomax refuses to load it because unpickling can execute code"
    r"|is not a valid safetensors file)"
)


@pytest.mark.parametrize("kind", ["pickle4", "pickle0", "torch_save"])
@pytest.mark.parametrize("loader", ["load_model", "OODDetector.load"])
def test_pickle_refused_without_running_it(pickles, kind, loader):
    files, marker = pickles
    with pytest.raises(ValueError, match=PICKLE_PATTERN) as info:
        if loader == "load_model":
            load_model(files[kind])
        else:
            OODDetector.load(files[kind], model=_linear())
    if kind != "pickle0":  # protocol 0 has no magic bytes; it is refused as not-safetensors
        assert isinstance(info.value, UnsafeFileError)
    assert not marker.exists(), "the pickle was executed"


# ------------------------------------------------------------------------------- images, archives


@pytest.fixture
def image_tree(tmp_path):
    """root/a: good.png, bad.png (not an image); root/b: good.png, cut.png (truncated)."""
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "good.png").write_bytes(png_bytes())
    (root / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    (root / "b" / "good.png").write_bytes(png_bytes())
    big = png_bytes(64, "RGB")
    (root / "b" / "cut.png").write_bytes(big[: len(big) // 2])
    return root


def _index(ds: ImageFolderDataset, name: str) -> int:
    return next(i for i, f in enumerate(ds.files) if f.as_posix().endswith(name))


@pytest.mark.parametrize(
    ("name", "pattern"),
    [("a/bad.png", r"cannot identify image file"), ("b/cut.png", r"image file is truncated")],
    ids=["corrupt", "truncated"],
)
def test_image_folder_on_error_raise(image_tree, name, pattern):
    ds = ImageFolderDataset(image_tree, image_size=8, channels=1, on_error="raise")
    with pytest.raises(CorruptImageError, match=rf"cannot decode image file .*{name}: {pattern}"):
        ds[_index(ds, name)]


def test_image_folder_on_error_skip(image_tree, caplog):
    ds = ImageFolderDataset(image_tree, image_size=8, channels=1, on_error="skip")
    assert len(ds) == 4
    for i in range(len(ds)):
        x, _ = ds[i]  # the undecodable ones return the next good sample
        assert x.shape == (1, 8, 8)
    assert sorted(Path(p).name for p in ds.skipped) == ["bad.png", "cut.png"]
    assert len(ds.load_into_memory(num_workers=1)) == 2
    assert "skipping undecodable image" in caplog.text


def test_image_folder_bad_on_error_value(image_tree):
    with pytest.raises(
        ValueError, match=r"on_error must be one of \('raise', 'skip'\), got 'warn'"
    ):
        ImageFolderDataset(image_tree, on_error="warn")


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image folder .*nowhere does not exist"):
        ImageFolderDataset(tmp_path / "nowhere")


def test_load_images_unreadable_file_raises(tmp_path):
    """A dangling link stands for a file that cannot be opened (chmod does not stop root)."""
    link = tmp_path / "ghost.png"
    link.symlink_to(tmp_path / "does-not-exist.png")
    with pytest.raises(CorruptImageError, match=r"cannot decode image file .*ghost.png"):
        load_images([tmp_path], (1, 8, 8), [0.0], [1.0], on_error="raise")
    with pytest.raises(ValueError, match=r"none of the 1 image files could be read"):
        load_images([tmp_path], (1, 8, 8), [0.0], [1.0], on_error="skip")


@pytest.fixture
def archives(tmp_path):
    """Corrupt and truncated archives, plus a file with an archive suffix that is none."""
    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    for i in range(4):
        (src / "x" / f"{i}.png").write_bytes(png_bytes(64, "RGB"))
    tgz = tmp_path / "good.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(src, arcname="set")
    zpath = tmp_path / "good.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted((src / "x").iterdir()):
            zf.write(f, f"set/x/{f.name}")
    files = {
        "garbage_tgz": tmp_path / "garbage.tar.gz",
        "truncated_tgz": tmp_path / "cut.tar.gz",
        "truncated_zip": tmp_path / "cut.zip",
        "not_an_archive": tmp_path / "text.tar",
    }
    files["garbage_tgz"].write_bytes(b"\x1f\x8b\x08\x00 definitely not gzip data")
    data = tgz.read_bytes()
    files["truncated_tgz"].write_bytes(data[: len(data) // 2])
    data = zpath.read_bytes()
    files["truncated_zip"].write_bytes(data[: len(data) // 2])
    files["not_an_archive"].write_bytes(b"plain text " * 100)
    return files


ARCHIVE_CASES = [
    ("garbage_tgz", ValueError, r"garbage.tar.gz is not a tar or zip archive \(supported:"),
    ("truncated_tgz", ValueError, r"cut.tar.gz .*(corrupt|truncated|not a valid)"),
    ("truncated_zip", ValueError, r"cut.zip .*(corrupt|truncated|not a valid)"),
    ("not_an_archive", ValueError, r"text.tar is not a tar or zip archive \(supported: .tar"),
]


@pytest.mark.parametrize(
    ("name", "exc", "pattern"), ARCHIVE_CASES, ids=[c[0] for c in ARCHIVE_CASES]
)
def test_safe_extract_bad_archive(archives, tmp_path, name, exc, pattern):
    target = tmp_path / "out"
    with pytest.raises(exc, match=pattern):
        safe_extract(archives[name], target)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial-")]


def test_safe_extract_missing_archive(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"archive .*missing.zip does not exist"):
        safe_extract(tmp_path / "missing.zip", tmp_path / "out")


def test_get_dataset_from_truncated_archive(archives, tmp_path):
    with pytest.raises(ValueError, match=r"cut.zip .*(corrupt|truncated|not a valid)"):
        get_dataset(str(archives["truncated_zip"]), root=tmp_path / "cache")


# ------------------------------------------------------------------------------- CLI


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
        (["--dataset", "cifar11"], r"unknown dataset 'cifar11'; valid names are \[.*'digits'"),
        (["--dataset", "digits", "--model", "resnet19"], r"unknown model 'resnet19'; valid names"),
        (["--loss", "isomaxx"], r"unknown loss 'isomaxx'; valid losses: softmax"),
        (["--preset", "turbo"], r"unknown preset 'turbo'; valid presets: paper, fast, cpu"),
        (["--device", "gpu"], r"unknown device 'gpu'; expected auto, cpu, cuda"),
        (["--lr", "-1"], r"lr must be .*> 0, got -1.0"),
        (["--loss", "dismax", "--fpr-alpha", "0.3"], r"fpr_alpha must be one of 1, 0.5, 0.25"),
    ],
    ids=["dataset", "model", "loss", "preset", "device", "negative-lr", "fpr-alpha"],
)
def test_cli_train_bad_value(capsys, tmp_path, extra, pattern):
    args = ["train", *TRAIN, "--output-dir", tmp_path / "out", *extra]
    assert_user_error(cli(capsys, *args), "train", pattern)


def test_cli_train_config_missing(capsys, tmp_path):
    result = cli(capsys, "train", *TRAIN, "--config", tmp_path / "nope.toml")
    assert_user_error(result, "train", r"configuration file .*nope.toml does not exist")


def test_cli_train_config_not_toml(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs: 3\n")
    result = cli(capsys, "train", *TRAIN, "--config", bad)
    assert_user_error(result, "train", r"configuration file .*bad.toml is not valid TOML")


def test_cli_train_config_wrong_value_type(capsys, tmp_path):
    cfg = tmp_path / "lr.toml"
    cfg.write_text('[train]\nlr = "fast"\n')
    result = cli(capsys, "train", *TRAIN, "--config", cfg, "--output-dir", tmp_path / "o")
    assert_user_error(result, "train", r"lr must be .*got 'fast'")


def test_cli_train_config_unreadable(capsys, tmp_path):
    """A folder (root) or a chmod-000 file where the TOML file is expected."""
    path = tmp_path / "settings.toml"
    if IS_ROOT:
        path.mkdir()
    else:
        path.write_text("epochs = 1\n")
        path.chmod(0)
    result = cli(capsys, "train", *TRAIN, "--config", path)
    assert_user_error(result, "train", r"configuration file .*settings.toml")


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_cli_train_unwritable_output_dir(capsys, tmp_path, where):
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "sub" if where == "under-a-file" else Path("/proc/isomax-test-out")
    result = cli(capsys, "train", *TRAIN, "--output-dir", out)
    assert_user_error(result, "train", rf"cannot create output folder {re.escape(str(out))}: ")


CPU = ("--device", "cpu")
EVAL = ("--ood", "gaussian", *CPU)


def test_cli_evaluate_missing_checkpoint(capsys, tmp_path):
    result = cli(capsys, "evaluate", tmp_path / "none.safetensors", *EVAL)
    assert_user_error(result, "evaluate", r"no checkpoint file at .*none.safetensors")


def test_cli_evaluate_unreadable_checkpoint(capsys, tmp_path, ckpt):
    path, pattern = unreadable_file(tmp_path, ckpt)
    assert_user_error(cli(capsys, "evaluate", path, *EVAL), "evaluate", pattern)


@pytest.mark.parametrize(("name", "pattern"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_cli_evaluate_bad_checkpoint_file(capsys, tmp_path, bad_files, name, pattern):
    result = cli(capsys, "evaluate", bad_files[name], *EVAL, "--output-dir", tmp_path / "ev")
    assert_user_error(result, "evaluate", pattern)


@pytest.mark.parametrize("command", ["evaluate", "calibrate", "detect"])
def test_cli_refuses_pickles(capsys, tmp_path, pickles, command):
    files, marker = pickles
    for kind, path in files.items():
        if command == "evaluate":
            args = [path, *EVAL, "--output-dir", tmp_path / "ev"]
        elif command == "calibrate":
            args = [path, "--device", "cpu", "--output", tmp_path / "det.safetensors"]
        else:
            args = [path, tmp_path, "--device", "cpu"]
        result = cli(capsys, command, *args)
        assert_user_error(result, command, PICKLE_PATTERN)
        assert not marker.exists(), f"{kind} was executed by isomax {command}"


def test_cli_evaluate_checkpoint_and_detector_swapped(capsys, tmp_path, ckpt, detector_file):
    result = cli(capsys, "evaluate", detector_file, *EVAL, "--output-dir", tmp_path / "ev")
    assert_user_error(result, "evaluate", r"holds an isomax 'detector', expected a 'checkpoint'")
    result = cli(capsys, "detect", ckpt, tmp_path, "--device", "cpu")
    assert_user_error(result, "detect", r"holds an isomax 'checkpoint', expected a 'detector'")


def test_cli_evaluate_dataset_classes_disagree(capsys, tmp_path, ckpt):
    result = cli(
        capsys, "evaluate", ckpt, "--dataset", "digits-0to4", *EVAL, "--output-dir", tmp_path
    )
    assert_user_error(
        result,
        "evaluate",
        r"dataset 'digits-0to4' has 5 classes but the checkpoint was trained on 10",
    )


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--dataset", "cifar11"], r"unknown dataset 'cifar11'; valid names are"),
        (["--ood", "placesx"], r"unknown dataset 'placesx'; valid names are \[.*'gaussian'"),
        (["--scores", "mps,entropy"], r"unknown score 'entropy'; valid scores: mps, es"),
        (["--temperature", "0"], r"temperature must be a finite number > 0, got 0.0"),
        (
            ["--ood", "{tmp}/nowhere/"],
            r"nowhere does not exist \(expected a folder or an archive\)",
        ),
    ],
    ids=["dataset", "ood-set", "score", "temperature", "missing-ood-folder"],
)
def test_cli_evaluate_bad_value(capsys, tmp_path, ckpt, extra, pattern):
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    args = ["evaluate", ckpt, *EVAL, "--output-dir", tmp_path / "ev", *extra]
    assert_user_error(cli(capsys, *args), "evaluate", pattern)


def test_cli_evaluate_ood_folder_without_images(capsys, tmp_path, ckpt):
    (tmp_path / "empty").mkdir()
    ood = f"folder:{tmp_path / 'empty'}"
    result = cli(capsys, "evaluate", ckpt, "--ood", ood, *CPU, "--output-dir", tmp_path / "ev")
    assert_user_error(result, "evaluate", r"no image files found under .*empty")


@pytest.mark.parametrize("name", ["truncated_tgz", "truncated_zip"])
def test_cli_evaluate_corrupt_ood_archive(capsys, tmp_path, ckpt, archives, name):
    out = tmp_path / "ev"
    result = cli(capsys, "evaluate", ckpt, "--ood", archives[name], *CPU, "--output-dir", out)
    assert_user_error(result, "evaluate", rf"{archives[name].name} .*(corrupt|truncated)")


def test_cli_evaluate_unwritable_output_dir(capsys, tmp_path, ckpt):
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "sub"
    result = cli(capsys, "evaluate", ckpt, *EVAL, "--output-dir", out)
    assert_user_error(result, "evaluate", r"cannot create output folder .*a_file/sub: ")


def test_cli_calibrate_bad_score(capsys, tmp_path, ckpt):
    out = tmp_path / "det.safetensors"
    result = cli(capsys, "calibrate", ckpt, "--score", "entropy", *CPU, "--output", out)
    assert_user_error(result, "calibrate", r"unknown score 'entropy'; valid scores:")


def test_cli_calibrate_unwritable_output(capsys, tmp_path, ckpt):
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "sub" / "det.safetensors"
    result = cli(capsys, "calibrate", ckpt, "--device", "cpu", "--output", out)
    assert_user_error(result, "calibrate", r"cannot create output folder .*a_file/sub: ")


@pytest.fixture
def detect_inputs(tmp_path):
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
def test_cli_detect_bad_image_on_error_raise(capsys, detector_file, detect_inputs, name, pattern):
    image = detect_inputs / name
    result = cli(capsys, "detect", detector_file, image, "--on-error", "raise", *CPU)
    assert_user_error(result, "detect", rf"cannot decode image file .*{name}: {pattern}")


def test_cli_detect_skips_bad_images(capsys, detector_file, detect_inputs):
    code = main(["detect", str(detector_file), str(detect_inputs), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0
    assert len(out.strip().splitlines()) == 2  # header + good.png
    assert "1 images, " in err and "2 skipped (unreadable)" in err


def test_cli_detect_only_bad_images(capsys, detector_file, detect_inputs):
    images = [detect_inputs / "bad.png", detect_inputs / "cut.png"]
    result = cli(capsys, "detect", detector_file, *images, *CPU)
    assert_user_error(result, "detect", r"none of the 2 image files could be read")


def test_cli_detect_missing_path(capsys, tmp_path, detector_file):
    result = cli(capsys, "detect", detector_file, tmp_path / "nope.png", "--device", "cpu")
    assert_user_error(result, "detect", r"no image file or folder at .*nope.png")


def test_cli_detect_folder_without_images(capsys, tmp_path, detector_file):
    (tmp_path / "empty").mkdir()
    result = cli(capsys, "detect", detector_file, tmp_path / "empty", "--device", "cpu")
    assert_user_error(result, "detect", r"no images found in .*empty \(looked for files ending")


def test_cli_detect_unknown_device(capsys, detector_file, detect_inputs):
    result = cli(capsys, "detect", detector_file, detect_inputs, "--device", "gpu0")
    assert_user_error(result, "detect", r"device 'gpu0'.*expected")


def test_cli_detect_unwritable_output(capsys, tmp_path, detector_file, detect_inputs):
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "sub" / "out.csv"
    result = cli(capsys, "detect", detector_file, detect_inputs, "--device", "cpu", "--output", out)
    assert_user_error(result, "detect", r"cannot create output folder .*a_file/sub: ")


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["train", "--epochs", "0"], r"argument --epochs: expected a positive integer, got '0'"),
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
def test_cli_bad_option_values(capsys, argv, pattern):
    assert_argparse_error(cli(capsys, *argv), pattern)
