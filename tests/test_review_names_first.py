"""Found by a second new-user review (2026-12-02): names checked before any work and saved
under their registered spelling; NaN fit data, hand-edited detector files, stale baselines."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from isomax.checkpoint_eval import evaluate_checkpoint
from isomax.engine import load_config
from isomax.interop import match_ood_sets
from isomax.io import load_file, save_file
from isomax.ood_sets import ood_label
from isomax.posthoc import KNNDetector, get_detector
from isomax.posthoc_fit import check_posthoc_names


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_settings_are_saved_under_their_registered_names() -> None:
    cfg = load_config(overrides={"loss": "IsoMax+", "model": "ResNet-20", "preset": "CPU"})
    assert (cfg.loss, cfg.model, cfg.preset) == ("isomaxplus", "resnet20", "cpu")
    assert load_config(overrides={"model": "timm:resnet18"}).model == "timm:resnet18"


def test_ood_and_posthoc_names_take_any_spelling() -> None:
    assert ood_label("Gaussian") == "gaussian"
    assert ood_label("folder:/data/My Set.tar.gz") == "folder:My Set"
    assert check_posthoc_names(["KNN", "ViM"]) == ["knn", "vim"]
    assert match_ood_sets(["Gaussian"], ["gaussian", "mnist"], "near") == ["gaussian"]
    with pytest.raises(ValueError, match="near: unknown OOD set\\(s\\) 'places'; the evaluation"):
        match_ood_sets(["places"], ["gaussian"], "near")


def test_evaluate_checks_names_before_loading_anything(tmp_path) -> None:
    missing = tmp_path / "no-checkpoint.safetensors"  # never opened: the names fail first
    with pytest.raises(ValueError, match="unknown post-hoc detector 'knnn'"):
        evaluate_checkpoint(missing, ["gaussian"], posthoc=["knnn"])
    with pytest.raises(ValueError, match="unknown score 'entropy'"):
        evaluate_checkpoint(missing, ["gaussian"], scores=["entropy"])


def test_cli_near_typo_fails_before_the_evaluation(tmp_path, capsys) -> None:
    from isomax.cli import main

    missing = tmp_path / "no-checkpoint.safetensors"
    code = main(
        ["evaluate", str(missing), "--ood", "gaussian", "--near", "gausian",
         "--openood-csv", str(tmp_path / "o.csv")]
    )  # fmt: skip
    assert code == 2 and "near: unknown OOD set(s) 'gausian'" in capsys.readouterr().err


def test_post_hoc_fit_refuses_nan_features() -> None:
    net = _Net()
    x = torch.randn(20, 4)
    x[13, 2] = float("nan")
    y = torch.arange(20) % 3
    with pytest.raises(ValueError, match=r"NaN or inf for the fit data \(inputs 10 to 19\)"):
        get_detector("mahalanobis", net).fit([(x[:10], y[:10]), (x[10:], y[10:])])


def test_hand_edited_detector_values_are_refused(tmp_path) -> None:
    net = _Net()
    knn = KNNDetector(net, k=3).fit([(torch.randn(12, 4), torch.arange(12) % 3)])
    state = knn.state_dict()
    knn.k = 50  # as if the file said k = 50 for a bank of 12
    with pytest.raises(ValueError, match="k=50 exceeds the 12 fit samples"):
        knn.load_state_dict(state)


def test_detector_file_with_a_nan_threshold_is_refused(tmp_path, detector_file) -> None:
    from isomax.detector import OODDetector
    from isomax.io import MetadataError

    tensors, meta = load_file(detector_file, "detector")
    bad = tmp_path / "bad.safetensors"
    save_file(bad, tensors, {**meta, "threshold": "nan"}, "detector")
    model = OODDetector.load(detector_file).model
    with pytest.raises(MetadataError, match="threshold"):
        OODDetector.load(bad, model)
    assert json.dumps(meta)  # the original file's metadata is plain JSON


def test_mahalanobis_refuses_labels_beyond_the_heads_classes() -> None:
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\], found 3"):
        get_detector("mahalanobis", _Net()).fit(
            [(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1]))]
        )


def test_score_detectors_wants_a_mapping() -> None:
    from isomax.posthoc import score_detectors

    with pytest.raises(TypeError, match="detectors must be a mapping of name -> detector"):
        score_detectors([get_detector("knn", _Net())], torch.randn(2, 4))


def test_adapter_takes_post_hoc_names_in_any_spelling() -> None:
    from isomax.interop import PytorchOODDetector

    net = _Net()
    adapter = PytorchOODDetector(net, "KNN")
    assert isinstance(adapter.scorer, KNNDetector) and adapter.score_name == "knn"
    assert PytorchOODDetector(net, "MSP").score_name == "mps"


def test_calibrate_objective_any_case_and_a_clear_error() -> None:
    from isomax.detector import OODDetector

    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(40, 4, generator=g), torch.arange(40) % 3)]
    det = OODDetector(_Net(), score="mps").fit(data, calibrate="NLL")
    assert det.temperature > 0
    with pytest.raises(ValueError, match="calibrate must be 'nll', 'ece' or None, got 'brier'"):
        OODDetector(_Net(), score="mps").fit(data, calibrate="brier")
