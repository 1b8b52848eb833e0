"""The one scorer interface: every native score and every post-hoc detector has the same methods
and signatures, fits, scores with higher = in-distribution, and round-trips through a file."""

from __future__ import annotations

import inspect

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import TensorDataset

import isomax
from isomax import scores
from isomax.io import MetadataError, load_file, save_file
from isomax.posthoc import EnergyDetector, KNNDetector, PosthocDetector
from isomax.scoring import (
    NativeScore,
    Scorer,
    batches,
    get_scorer,
    load_scorer,
    model_fingerprint,
    scorer_names,
    split_batch,
)
from scorer_cases import CASES, IDS, loader, make, sample, trained

METHODS = (
    "fit",
    "score",
    "score_and_logits",
    "score_loader",
    "state_dict",
    "load_state_dict",
    "config",
    "save",
)


def _params(fn) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_every_scorer_has_the_same_methods_and_signatures(kind: str, name: str) -> None:
    scorer = make(kind, name, trained())
    assert isinstance(scorer, Scorer)
    assert isinstance(scorer, NativeScore if kind == "native" else PosthocDetector)
    assert scorer.name == name
    for method in METHODS:
        assert _params(getattr(type(scorer), method)) == _params(getattr(Scorer, method)), method
    assert _params(Scorer.fit) == [("self", inspect.Parameter.empty), ("id_loader",
        inspect.Parameter.empty), ("max_samples", None)]  # fmt: skip
    assert isinstance(type(scorer).is_fitted, property)


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_fit_score_save_load_round_trip(kind: str, name: str, tmp_path) -> None:
    model = trained()
    scorer = make(kind, name, model)
    assert scorer.fit(loader(200, seed=2)) is scorer and scorer.is_fitted
    x = sample(40, seed=5)[0]
    values, logits = scorer.score_and_logits(x)
    assert values.shape == (40,) and torch.isfinite(values).all()
    torch.testing.assert_close(logits, model(x).detach())
    assert torch.equal(scorer.score(x), values)
    batched = scorer.score_loader([x[:15], (x[15:], torch.zeros(25, dtype=torch.long))])
    torch.testing.assert_close(batched, values.cpu())
    path = scorer.save(tmp_path / "scorer.safetensors")
    other = load_scorer(path, trained())  # same weights, a different module
    assert type(other) is type(scorer) and other.name == scorer.name and other.is_fitted
    assert other.config() == scorer.config()
    assert torch.equal(other.score(x), values)


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_higher_scores_are_in_distribution(kind: str, name: str) -> None:
    scorer = make(kind, name, trained()).fit(loader(300, seed=2))
    s_id = scorer.score(sample(300, seed=5)[0])
    s_ood = scorer.score(sample(200, seed=6, ood=True)[0])
    labels = [1] * len(s_id) + [0] * len(s_ood)  # ID positive
    assert roc_auc_score(labels, torch.cat([s_id, s_ood]).numpy()) > 0.65


@pytest.mark.parametrize("name", scores.names())
def test_native_score_is_the_score_of_the_logits(name: str) -> None:
    model = trained()
    x = sample(30, seed=7)[0]
    scorer = NativeScore(model, name, temperature=2.5)
    assert scorer.fit(object()) is scorer  # the loader is not read
    with torch.no_grad():
        expected = scores.get(name)(model(x).double(), temperature=2.5)
    torch.testing.assert_close(scorer.score(x).double(), expected, rtol=1e-5, atol=1e-6)
    assert scorer.state_dict() == {} and scorer.config() == {"temperature": 2.5}


def test_energy_detector_equals_the_native_energy_and_both_round_trip(tmp_path) -> None:
    model = trained()
    x = sample(30, seed=7)[0]
    native, posthoc = NativeScore(model, "energy", 3.0), EnergyDetector(model, temperature=3.0)
    torch.testing.assert_close(native.score(x), posthoc.score(x))
    back = load_scorer(posthoc.save(tmp_path / "e.safetensors"), model)
    assert type(back) is EnergyDetector and back.temperature == 3.0
    assert type(load_scorer(native.save(tmp_path / "n.safetensors"), model)) is NativeScore


def test_get_scorer_names_aliases_and_errors() -> None:
    model = trained()
    assert scorer_names() == [*scores.names(), "mahalanobis", "knn", "vim", "react"]
    assert get_scorer("MSP", model).name == "mps"
    assert isinstance(get_scorer("energy", model), NativeScore)
    assert get_scorer("knn", model, k=3).k == 3
    with pytest.raises(
        ValueError,
        match=r"unknown score 'odin'; valid names: mps.*, mahalanobis, knn, vim, react \(also: msp = mps\)",
    ):
        get_scorer("odin", model)
    with pytest.raises(TypeError, match="nn.Module"):
        NativeScore("resnet", "mds")  # type: ignore[arg-type]
    custom = NativeScore(model, lambda z, temperature: z[:, 0] / temperature)
    with pytest.raises(ValueError, match="cannot be saved"):
        custom.save("never.safetensors")


def test_max_samples_caps_every_fit() -> None:
    model = trained()
    x, y = sample(100, seed=2)
    knn = KNNDetector(model, k=3).fit([(x[:30], y[:30]), (x[30:], y[30:])], max_samples=45)
    assert knn.bank.shape == (45, 8)
    ref = KNNDetector(model, k=3).fit([(x[:45], y[:45])])
    assert torch.equal(knn.bank, ref.bank)
    mahalanobis = get_scorer("mahalanobis", model).fit(TensorDataset(x, y), max_samples=60)
    ref_m = get_scorer("mahalanobis", model).fit([(x[:60], y[:60])])
    torch.testing.assert_close(mahalanobis.means, ref_m.means)
    with pytest.raises(ValueError, match="max_samples must be None or a positive integer"):
        KNNDetector(model, k=3).fit([(x, y)], max_samples=0)


def _knn_file(tmp_path, model):
    return get_scorer("knn", model, k=4).fit(loader(50, seed=2)).save(tmp_path / "k.safetensors")


def _contents(path):
    """A scorer file's tensors and the metadata to write it again with (hand-edited)."""
    tensors, meta = load_file(path, "scorer")
    return tensors, {k: v for k, v in meta.items() if k not in ("kind", "format_version")}


def test_load_scorer_refuses_bad_files(tmp_path) -> None:
    model = trained()
    path = _knn_file(tmp_path, model)
    tensors, meta = _contents(path)
    bad = tmp_path / "bad.safetensors"
    save_file(bad, tensors, {**meta, "config": {"k": 4, "script": "rm -rf /"}}, "scorer")
    with pytest.raises(MetadataError, match=r"'config' must be settings of 'knn'"):
        load_scorer(bad, model)
    save_file(bad, tensors, {**meta, "config": {"k": 0}}, "scorer")
    with pytest.raises(MetadataError, match="positive integer"):
        load_scorer(bad, model)
    save_file(bad, tensors, {**meta, "scorer": "odin"}, "scorer")
    with pytest.raises(MetadataError, match="'scorer' must be one of"):
        load_scorer(bad, model)
    save_file(bad, {}, meta, "scorer")
    with pytest.raises(ValueError, match="state lacks"):
        load_scorer(bad, model)
    isomax.OODDetector(model, "mds", threshold=0.0).save(bad)
    with pytest.raises(ValueError, match="expected a 'scorer'"):
        load_scorer(bad, model)


def test_a_fitted_scorer_file_refuses_another_model(tmp_path) -> None:
    model = trained()
    path = _knn_file(tmp_path, model)
    assert load_scorer(path, trained()).is_fitted  # the same weights in another module: fine
    other = trained()
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)  # a fine-tuned model: same shapes, other weights
    assert model_fingerprint(other) != model_fingerprint(model)
    with pytest.raises(ValueError, match=r"fitted on another model .*check_model=False"):
        load_scorer(path, other)
    assert load_scorer(path, other, check_model=False).is_fitted
    # a native score has nothing fitted: its file loads on any model
    native = get_scorer("mds", model).save(tmp_path / "n.safetensors")
    assert isinstance(load_scorer(native, other), NativeScore)
    # files written before the fingerprint was recorded load unchecked; a bad one is refused
    tensors, meta = _contents(path)
    old = tmp_path / "old.safetensors"
    save_file(old, tensors, {k: v for k, v in meta.items() if k != "model_fingerprint"}, "scorer")
    assert load_scorer(old, other).is_fitted
    save_file(old, tensors, {**meta, "model_fingerprint": 7}, "scorer")
    with pytest.raises(MetadataError, match="model_fingerprint"):
        load_scorer(old, model)


def test_the_fingerprint_is_taken_when_the_scorer_is_fitted(tmp_path) -> None:
    model = trained()
    scorer = get_scorer("mahalanobis", model).fit(loader(60, seed=2))
    with torch.no_grad():
        next(model.parameters()).add_(0.5)  # training went on after the fit
    path = scorer.save(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="fitted on another model"):
        load_scorer(path, model)  # the statistics are not this model's
    back = load_scorer(path, trained())  # the model they came from
    # loaded anyway onto another model, then saved: the file still names the fitted model
    again = load_scorer(path, model, check_model=False).save(tmp_path / "again.safetensors")
    assert load_scorer(again, trained()).is_fitted
    assert back.fitted_on == scorer.fitted_on == model_fingerprint(trained())
    # energy fits nothing: no fingerprint, loads on any model
    energy = EnergyDetector(model)
    back = load_scorer(energy.save(tmp_path / "e.safetensors"), trained())
    assert type(back) is EnergyDetector and back.is_fitted


def test_fingerprint_field_is_checked_and_any_case(tmp_path) -> None:
    model = trained()
    path = _knn_file(tmp_path, model)
    tensors, meta = _contents(path)
    edited = tmp_path / "edited.safetensors"
    for bad in ("", "abc", "z" * 64):
        save_file(edited, tensors, {**meta, "model_fingerprint": bad}, "scorer")
        with pytest.raises(MetadataError, match="'model_fingerprint' must be a SHA-256"):
            load_scorer(edited, model)
    upper = meta["model_fingerprint"].upper()
    save_file(edited, tensors, {**meta, "model_fingerprint": upper}, "scorer")
    assert load_scorer(edited, model).is_fitted
    native = get_scorer("mds", model).save(tmp_path / "n.safetensors")
    tensors, meta = _contents(native)
    save_file(edited, tensors, {**meta, "native": False}, "scorer")
    with pytest.raises(MetadataError, match="'native' must be true for the native score 'mds'"):
        load_scorer(edited, model)


class _Odd(torch.nn.Module):
    """State a fingerprint must read: extra state, sparse, conjugate and meta buffers."""

    def __init__(self, device: str = "cpu") -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer("sparse", torch.eye(3).to_sparse())
        self.register_buffer("conj", torch.tensor([1 + 2j, 3 - 1j]).conj())
        self.register_buffer("meta", torch.empty(4, device="meta"))

    def get_extra_state(self) -> dict:
        return {"version": 2}

    def set_extra_state(self, state: dict) -> None:
        pass


def test_model_fingerprint_reads_any_state() -> None:
    a, b = _Odd(), _Odd()
    b.lin.load_state_dict(a.lin.state_dict())
    assert model_fingerprint(a) == model_fingerprint(b)
    b.conj.mul_(2)  # a value of the conjugate view
    assert model_fingerprint(a) != model_fingerprint(b)


def test_model_fingerprint_reads_names_shapes_and_values() -> None:
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) == model_fingerprint(b)
    assert len(model_fingerprint(a)) == 64
    c = torch.nn.Linear(2, 3)  # other shapes
    with torch.no_grad():
        c.weight.copy_(a.weight.t())
        c.bias.zero_()
    assert model_fingerprint(c) != model_fingerprint(a)
    assert model_fingerprint(a.double()) != model_fingerprint(b)  # another dtype


# ------------------------------------------------------------------ the one loader reader


def test_batches_reads_every_kind_of_loader() -> None:
    x, y = sample(10, seed=3)
    for data in ([(x[:4], y[:4]), (x[4:], y[4:])], TensorDataset(x, y), [[x, y, "extra"]]):
        got = list(batches(data, labels=True, num_classes=3))
        assert torch.equal(torch.cat([b[0] for b in got]), x)
        assert torch.equal(torch.cat([b[1] for b in got]), y)
    bare = list(batches([x[:3], (x[3:],)]))
    assert [b[1] for b in bare] == [None, None]
    assert [len(b[0]) for b in batches([x[:4], x[4:]], max_samples=6)] == [4, 2]
    _, listed = next(batches([(x, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0])], labels=True))
    assert listed.dtype == torch.long
    assert split_batch((x, y)) == (x, y)


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "match"),
    [
        (torch.zeros(3, 5), {}, TypeError, "got a single tensor"),
        ("images/", {}, TypeError, "must be an iterable of batches"),
        ([{"x": 1}], {}, TypeError, "must yield input tensors or .* got a batch of type dict"),
        ([torch.zeros(2, 5)], {"labels": True, "needed_by": "Mahalanobis"}, ValueError,
         r"id_loader must yield \(inputs, labels\) pairs: Mahalanobis needs class labels"),
        ([(torch.zeros(2, 5), torch.tensor([0, 3]))], {"labels": True, "num_classes": 3},
         ValueError, r"id_loader labels must lie in \[0, 2\], found 3"),
        ([(torch.zeros(2, 5), torch.tensor([0, -1]))], {"labels": True}, ValueError,
         "id_loader labels must be >= 0, found -1"),
        ([(torch.zeros(2, 5), torch.tensor([0.0, 1.0]))], {"labels": True}, TypeError,
         "id_loader labels must hold integer class indices"),
        ([(torch.zeros(2, 5), torch.tensor([0]))], {"labels": True}, ValueError,
         r"id_loader labels must have shape \(2,\) to match the inputs, got \(1,\)"),
    ],
)  # fmt: skip
def test_batches_refuses_bad_loaders(data, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        list(batches(data, **kwargs))
