"""OODDetector: fit on ID validation data, predict, save/load round trip, hostile files."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import isomax
from isomax.detector import OODDetector
from isomax.io import UnsafeFileError
from isomax.models import create_model


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), isomax.IsoMaxPlusHead(16, 3))


def _val_loader(n: int = 200) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=64)


def test_fit_sets_threshold_from_validation_scores_only():
    det = OODDetector(_model(), score="mds").fit(_val_loader(), tpr=0.95)
    x = torch.cat([b[0] for b in _val_loader()])
    with torch.no_grad():
        scores = isomax.scores.mds(det.model(x))
    k = math.ceil(0.95 * len(scores))  # 190 of 200
    assert det.threshold == pytest.approx(float(scores.sort(descending=True).values[k - 1]))
    assert int((scores >= det.threshold).sum()) == k  # no ties among continuous scores
    out = det.predict(x)
    assert out.classes.shape == (200,) and out.probs.shape == (200, 3)
    assert torch.equal(out.is_ood, out.scores < det.threshold)
    torch.testing.assert_close(out.probs.sum(1), torch.ones(200))


def test_fit_with_calibration_changes_temperature_and_probabilities():
    # labels that agree with the model on about 70% of the inputs: the NLL optimum lies inside
    # the search range (random labels would send T to its upper bound, which fit() refuses)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 6, generator=g)
    with torch.no_grad():
        y = _model()(x).argmax(1)
    flip = torch.rand(200, generator=g) < 0.3
    y[flip] = torch.randint(0, 3, (int(flip.sum()),), generator=g)
    det = OODDetector(_model(), score="es").fit([(x, y)], calibrate="nll")
    assert 0.001 <= det.temperature <= 100 and det.temperature != 1.0
    x = torch.randn(4, 6)
    with torch.no_grad():
        logits = det.model(x)
    # one temperature: the head's buffer, which already divides the model's logits
    assert float(det.model[2].temperature) == det.temperature
    torch.testing.assert_close(det.predict(x).probs, torch.softmax(logits, 1))
    torch.testing.assert_close(det.score(x), isomax.scores.es(logits))


def test_save_load_round_trip_identical_predictions(tmp_path):
    det = OODDetector(_model(), score="mmles").fit(_val_loader(), calibrate="ece", tpr=0.9)
    det.metadata = {"note": "hello"}
    path = det.save(tmp_path / "det.safetensors")
    other = OODDetector.load(path, _model(seed=123))  # different initial weights
    x = torch.randn(50, 6)
    a, b = det.predict(x), other.predict(x)
    for f in ("classes", "probs", "scores", "is_ood"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert (other.score_name, other.temperature, other.threshold, other.tpr) == (
        det.score_name,
        det.temperature,
        det.threshold,
        0.9,
    )
    assert other.metadata == {"note": "hello"}
    with pytest.raises(ValueError, match="does not record its model configuration"):
        OODDetector.load(path)


def test_pickles_corrupt_files_and_wrong_models_are_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(UnsafeFileError, match="holds a pickle"):
        OODDetector.load(evil, _model())
    torch.save(_model().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(UnsafeFileError, match="refuses to load it"):
        OODDetector.load(tmp_path / "weights.pt", _model())
    assert not (tmp_path / "pwned").exists()
    det = OODDetector(_model(), score="mds", threshold=0.0)
    path = det.save(tmp_path / "d.safetensors")
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        OODDetector.load(truncated, _model())
    wrong = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), isomax.IsoMaxPlusHead(8, 3))
    with pytest.raises(ValueError, match="weights do not fit the given Sequential"):
        OODDetector.load(path, wrong)
    with pytest.raises(FileNotFoundError, match="no detector file"):
        OODDetector.load(tmp_path / "nope.safetensors", _model())


def test_bad_use():
    with pytest.raises(ValueError, match="unknown score 'bogus'"):
        OODDetector(_model(), score="bogus")
    with pytest.raises(RuntimeError, match="no threshold"):
        OODDetector(_model()).predict(torch.randn(2, 6))
    with pytest.raises(ValueError, match="validation loader is empty"):
        OODDetector(_model()).fit([])
    unlabeled = [torch.randn(8, 6)]
    with pytest.raises(ValueError, match="calibrate needs labelled batches"):
        OODDetector(_model()).fit(unlabeled, calibrate="nll")
    assert OODDetector(_model()).fit(unlabeled).threshold is not None


def test_a_safetensors_header_length_starting_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    """Regression: a header of 128 + 256k bytes starts with the byte 0x80, like a pickle."""
    from isomax.io import load_file, save_file

    for pad in range(0, 300):
        path = save_file(
            tmp_path / "s.safetensors", {"x": torch.zeros(3)}, {"pad": "p" * pad}, "scores"
        )
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length whose first byte is 0x80")
    tensors, meta = load_file(path, "scores")
    assert meta["pad"] == "p" * pad and torch.equal(tensors["x"], torch.zeros(3))


# -------------------------------------------------------------------------------- bad input (listed in docs/errors.md)


NAN = float("nan")


def _linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(2, 3)


DETECTOR_ERRORS = [
    pytest.param(
        lambda: OODDetector(_linear(), score="entropy"),
        ValueError,
        r"unknown score 'entropy'; valid names:",
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
]


@pytest.mark.parametrize(("call", "exc", "pattern"), DETECTOR_ERRORS)
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


def test_checkpoint_loaded_into_another_model(detector_file):
    other = create_model("digits_cnn", 10, head="isomaxplus", in_channels=1)
    with pytest.raises(
        ValueError, match=r"was saved from a DigitsMLP whose weights do not fit the given DigitsCNN"
    ):
        OODDetector.load(detector_file, model=other)
