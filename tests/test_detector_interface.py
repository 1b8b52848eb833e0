"""OODDetector on top of the one scorer interface: every native score and post-hoc detector,
deprecated keyword names, and detector files written before the interface existed."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from isomax import OODDetector
from isomax.io import MetadataError, load_file, save_file
from isomax.posthoc import EnergyDetector
from isomax.scoring import NativeScore, get_scorer
from scorer_cases import CASES, IDS, loader, make, sample, trained


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_ood_detector_on_every_scorer(kind: str, name: str, tmp_path) -> None:
    model = trained()
    scorer = make(kind, name, model)
    det = OODDetector(model, scorer).fit(loader(100, seed=3), tpr=0.9, scorer_id_loader=loader(
        200, seed=2))  # fmt: skip
    assert det.scorer is scorer and det.score_name == name
    val = sample(100, seed=3)[0]
    s_val = scorer.score(val)
    k = math.ceil(0.9 * 100)
    assert det.threshold == pytest.approx(float(s_val.sort(descending=True).values[k - 1]))
    x = torch.cat([sample(20, seed=5)[0], sample(20, seed=6, ood=True)[0]])
    out = det.predict(x)
    torch.testing.assert_close(out.scores, scorer.score(x))
    assert torch.equal(out.is_ood, out.scores < det.threshold)
    with torch.no_grad():
        torch.testing.assert_close(out.probs, torch.softmax(model(x), dim=1))
    assert out.is_ood[20:].float().mean() > out.is_ood[:20].float().mean()  # higher = ID
    other = OODDetector.load(det.save(tmp_path / "det.safetensors"), trained())
    assert type(other.scorer) is type(scorer) and other.scorer.config() == scorer.config()
    back = other.predict(x)
    for field in ("classes", "probs", "scores", "is_ood"):
        assert torch.equal(getattr(back, field), getattr(out, field)), field


def test_native_score_follows_the_detector_temperature() -> None:
    model = trained()
    x = sample(30, seed=4)[0]
    scorer = NativeScore(model, "es")
    det = OODDetector(model, scorer, temperature=3.0, threshold=0.0)
    # an isomax head holds T in its buffer, which already divides the logits
    assert float(model.head.temperature) == 3.0 and scorer.temperature == 1.0
    with torch.no_grad():
        torch.testing.assert_close(det.score(x), torch.special.entr(
            torch.softmax(model(x), 1)).sum(1).neg())  # fmt: skip


def test_scorer_of_another_model_is_refused() -> None:
    with pytest.raises(ValueError, match="scores another model"):
        OODDetector(trained(), get_scorer("mds", trained()))


def test_knn_settings_and_the_energy_detector_survive_save_and_load(tmp_path) -> None:
    model = trained()
    knn = get_scorer("knn", model, k=7, query_chunk_size=5)
    det = OODDetector(model, knn).fit(loader(60, seed=3), scorer_id_loader=loader(80, seed=2))
    back = OODDetector.load(det.save(tmp_path / "knn.safetensors"), trained())
    assert (back.scorer.k, back.scorer.query_chunk_size) == (7, 5)
    energy = OODDetector(model, EnergyDetector(model, temperature=2.0)).fit(loader(60, seed=3))
    back = OODDetector.load(energy.save(tmp_path / "energy.safetensors"), trained())
    assert type(back.scorer) is EnergyDetector and back.scorer.temperature == 2.0


def test_msp_detector_saves_and_loads(tmp_path) -> None:
    det = OODDetector(trained(), "msp").fit(loader(60, seed=3))
    back = OODDetector.load(det.save(tmp_path / "msp.safetensors"), trained())
    assert back.score_name == "mps" and back.threshold == det.threshold


def test_deprecated_fit_keywords_still_work_and_warn() -> None:
    model = trained()
    new = OODDetector(model, "knn").fit(loader(60, seed=3), scorer_id_loader=loader(80, seed=2))
    old = OODDetector(model, "knn")
    with pytest.warns(DeprecationWarning, match="posthoc_fit_loader is deprecated"):
        old.fit(loader(60, seed=3), posthoc_fit_loader=loader(80, seed=2))
    with pytest.warns(DeprecationWarning, match="id_val_loader is deprecated, use id_loader"):
        OODDetector(model, "mds").fit(id_val_loader=loader(60, seed=3))
    assert old.threshold == new.threshold
    with pytest.raises(TypeError, match="pass id_loader only"):
        OODDetector(model, "mds").fit(loader(6, 3), id_val_loader=loader(6, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OODDetector(model, "mds").fit(id_loader=loader(60, seed=3))  # no warning


@pytest.mark.parametrize("name", ["mds", "knn", "vim"])
def test_detector_files_of_the_previous_format_still_load(name: str, tmp_path) -> None:
    """Files written before the scorer interface had no scorer_config / scorer_native."""
    model = trained()
    det = OODDetector(model, name).fit(loader(60, seed=3), scorer_id_loader=loader(120, seed=2))
    tensors, meta = load_file(det.save(tmp_path / "new.safetensors"), "detector")
    old_meta = {
        k: v
        for k, v in meta.items()
        if k not in ("kind", "format_version", "scorer_config", "scorer_native")
    }
    old = save_file(tmp_path / "old.safetensors", tensors, old_meta, "detector")
    back = OODDetector.load(old, trained())
    x = sample(30, seed=8)[0]
    assert torch.equal(back.predict(x).scores, det.predict(x).scores)
    bad = save_file(tmp_path / "bad.safetensors", tensors, {**old_meta, "scorer_config": [1]},
                    "detector")  # fmt: skip
    with pytest.raises(MetadataError, match="'scorer_config' must be a table"):
        OODDetector.load(bad, trained())
