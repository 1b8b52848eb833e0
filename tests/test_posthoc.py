"""Post-hoc detectors: ID > far OOD, agreement with NumPy references, errors, mode handling."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from isomax.models import create_model
from isomax.posthoc import (
    DETECTORS,
    EnergyDetector,
    KNNDetector,
    MahalanobisDetector,
    ReActDetector,
    ViMDetector,
    get_detector,
    posthoc_names,
)

NAMES = ["energy", "mahalanobis", "knn", "vim", "react"]
FITTED = ["mahalanobis", "knn", "vim", "react"]
KWARGS: dict[str, dict[str, int]] = {"knn": {"k": 10}}
HAS_FAISS = importlib.util.find_spec("faiss") is not None


def _blobs(seed: int = 0) -> dict[str, torch.Tensor]:
    """Three ID blobs (std 0.5, centres 4 e_c) in 5-D and a far OOD blob at (0, 0, 0, -4, 4)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(3, 5)
    centres[0, 0] = centres[1, 1] = centres[2, 2] = 4.0
    y = torch.arange(3).repeat_interleave(100)
    x = centres[y] + 0.5 * torch.randn(300, 5, generator=g)
    y_test = torch.arange(3).repeat_interleave(50)
    x_test = centres[y_test] + 0.5 * torch.randn(150, 5, generator=g)
    ood = torch.tensor([0.0, 0.0, 0.0, -4.0, 4.0]) + 0.5 * torch.randn(200, 5, generator=g)
    return {"x": x, "y": y, "x_test": x_test, "ood": ood}


def _train(head: str, data: dict[str, torch.Tensor], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("mlp", num_classes=3, input_dim=5, head=head, hidden_sizes=(32, 16))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    scale = 1.0 if head == "linear" else 10.0  # entropic scale for the distance heads
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(scale * model(data["x"]), data["y"]).backward()
        opt.step()
    return model.eval()


def _loader(x: torch.Tensor, y: torch.Tensor | None = None, batch: int = 64) -> list:
    if y is None:
        return [x[i : i + batch] for i in range(0, len(x), batch)]
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]


def _auroc(id_scores: torch.Tensor, ood_scores: torch.Tensor) -> float:
    labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    return float(roc_auc_score(labels, np.r_[id_scores.numpy(), ood_scores.numpy()]))


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    return _blobs()


@pytest.fixture(scope="module")
def trained(data: dict[str, torch.Tensor]) -> dict[str, nn.Module]:
    return {head: _train(head, data) for head in ("linear", "isomax", "isomaxplus", "dismax")}


def _identity_model(dim: int, num_classes: int = 3, seed: int = 0) -> nn.Module:
    """An MLP without hidden layers: its features are its inputs."""
    torch.manual_seed(seed)
    return create_model("mlp", num_classes=num_classes, input_dim=dim, hidden_sizes=()).eval()


# ---------------------------------------------------------------------------------------------
# Registry and construction
# ---------------------------------------------------------------------------------------------


def test_registry_names_and_classes() -> None:
    assert posthoc_names() == NAMES
    assert list(DETECTORS) == NAMES
    model = _identity_model(4)
    expected = [EnergyDetector, MahalanobisDetector, KNNDetector, ViMDetector, ReActDetector]
    for name, cls in zip(NAMES, expected, strict=True):
        assert type(get_detector(name, model)) is cls
        assert type(get_detector(name.upper(), model)) is cls
    assert get_detector("knn", model, k=7).k == 7
    with pytest.raises(TypeError):
        DETECTORS["knn"] = KNNDetector  # type: ignore[index]


@pytest.mark.parametrize("name", ["odin", "", 3])
def test_unknown_name_lists_valid_names(name: object) -> None:
    with pytest.raises(ValueError, match="valid names: energy, mahalanobis, knn, vim, react"):
        get_detector(name, _identity_model(4))  # type: ignore[arg-type]


def test_model_without_features_or_head_is_rejected() -> None:
    with pytest.raises(TypeError, match="features"):
        get_detector("knn", nn.Linear(3, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        get_detector("knn", object())  # type: ignore[arg-type]

    class NoHead(nn.Module):
        def features(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(TypeError, match="head"):
        get_detector("energy", NoHead())


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("energy", {"temperature": 0.0}, "temperature"),
        ("mahalanobis", {"ridge": -1.0}, "ridge"),
        ("knn", {"k": 0}, "k must be"),
        ("knn", {"query_chunk_size": 0}, "query_chunk_size"),
        ("knn", {"backend": "annoy"}, "backend"),
        ("vim", {"dim": 0}, "dim"),
        ("react", {"percentile": 0}, "percentile"),
        ("react", {"percentile": 100.5}, "percentile"),
    ],
)
def test_invalid_settings_raise(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_detector(name, _identity_model(4), **kwargs)


# ---------------------------------------------------------------------------------------------
# Detection on Gaussian blobs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_id_scores_higher_than_far_ood(
    name: str, data: dict[str, torch.Tensor], trained: dict[str, nn.Module]
) -> None:
    det = get_detector(name, trained["linear"], **KWARGS.get(name, {}))
    assert det.fit(_loader(data["x"], data["y"])) is det
    s_id, s_ood = det.score(data["x_test"]), det.score(data["ood"])
    assert s_id.shape == (150,) and s_ood.shape == (200,)
    assert s_id.dtype in (torch.float32, torch.float64)
    assert s_id.device == data["x_test"].device
    assert torch.isfinite(s_id).all() and torch.isfinite(s_ood).all()
    assert _auroc(s_id, s_ood) > 0.9


def test_score_loader_concatenates(data: dict[str, torch.Tensor], trained) -> None:
    det = get_detector("knn", trained["linear"], k=5).fit(_loader(data["x"]))
    torch.testing.assert_close(
        det.score_loader(_loader(data["ood"], torch.zeros(200, dtype=torch.long), batch=33)),
        det.score(data["ood"]),
    )


# ---------------------------------------------------------------------------------------------
# Energy
# ---------------------------------------------------------------------------------------------


def test_energy_matches_formula_and_needs_no_fit(data, trained) -> None:
    model = trained["linear"]
    det = EnergyDetector(model, temperature=2.0)
    assert det.is_fitted
    with torch.no_grad():
        logits = model(data["ood"])
    torch.testing.assert_close(det.score(data["ood"]), 2.0 * torch.logsumexp(logits / 2.0, 1))

    def exploding():
        raise AssertionError("energy's fit must not read the loader")
        yield

    assert det.fit(exploding()) is det
    assert det.fit([]) is det


# ---------------------------------------------------------------------------------------------
# Mahalanobis
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ridge", [0.0, 0.1])
def test_mahalanobis_matches_numpy_reference(ridge: float) -> None:
    rng = np.random.default_rng(1)
    d, n = 4, 60
    # Classes 0, 1 and 3 (class 2 absent: ignored); features far from the origin.
    y = rng.choice([0, 1, 3], size=n)
    x = rng.normal(size=(n, d)) * [1.0, 2.0, 0.5, 3.0] + 50.0 + 3.0 * y[:, None]
    q = rng.normal(size=(7, d)) * 3.0 + 55.0
    model = _identity_model(d, num_classes=4)
    det = MahalanobisDetector(model, ridge=ridge).fit(
        _loader(torch.tensor(x, dtype=torch.float32), torch.tensor(y), batch=16)
    )

    xf = torch.tensor(x, dtype=torch.float32).double().numpy()
    qf = torch.tensor(q, dtype=torch.float32).double().numpy()
    classes = [0, 1, 3]
    means = np.stack([xf[y == c].mean(0) for c in classes])
    centred = xf - means[[classes.index(c) for c in y]]
    cov = centred.T @ centred / n
    cov = cov + ridge * np.trace(cov) / d * np.eye(d)
    precision = np.linalg.pinv(cov)
    diff = qf[:, None, :] - means[None]
    d2 = np.einsum("ncd,de,nce->nc", diff, precision, diff)

    assert det.classes is not None and det.classes.tolist() == classes
    np.testing.assert_allclose(det.means.numpy(), means, rtol=1e-12)  # type: ignore[union-attr]
    np.testing.assert_allclose(det.precision.numpy(), precision, rtol=1e-8, atol=1e-10)  # type: ignore[union-attr]
    scores = det.score(torch.tensor(q, dtype=torch.float32))
    assert scores.dtype == torch.float64
    np.testing.assert_allclose(scores.numpy(), -d2.min(1), rtol=1e-8)


def test_mahalanobis_needs_labels(data, trained) -> None:
    det = MahalanobisDetector(trained["linear"])
    with pytest.raises(ValueError, match="needs class labels"):
        det.fit(_loader(data["x"]))
    with pytest.raises(ValueError, match="needs class labels"):
        det.fit([(data["x"],)])
    with pytest.raises(TypeError, match="integer class indices"):
        det.fit([(data["x"], data["y"].float())])
    with pytest.raises(ValueError, match="shape"):
        det.fit([(data["x"], data["y"][:10])])
    assert not det.is_fitted


# ---------------------------------------------------------------------------------------------
# KNN
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query_chunk", "bank_chunk"), [(3, 4), (1, 1), (2, 11), (1024, 8192)])
def test_knn_matches_brute_force(query_chunk: int, bank_chunk: int) -> None:
    rng = np.random.default_rng(2)
    bank = rng.normal(size=(37, 4)).astype(np.float32)
    query = rng.normal(size=(10, 4)).astype(np.float32)
    k = 5
    det = KNNDetector(
        _identity_model(4), k=k, query_chunk_size=query_chunk, bank_chunk_size=bank_chunk
    ).fit(_loader(torch.from_numpy(bank), batch=8))

    b = bank.astype(np.float64)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    q = query.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    dist = np.linalg.norm(q[:, None, :] - b[None], axis=2)
    kth = np.sort(dist, axis=1)[:, k - 1]
    np.testing.assert_allclose(det.score(torch.from_numpy(query)).numpy(), -kth, atol=1e-5)


def test_knn_k_larger_than_fit_set_raises() -> None:
    det = KNNDetector(_identity_model(4), k=10)
    with pytest.raises(ValueError, match=r"k=10 exceeds the number of fit samples \(8\)"):
        det.fit([torch.randn(5, 4), torch.randn(3, 4)])
    assert not det.is_fitted


@pytest.mark.skipif(HAS_FAISS, reason="faiss is installed")
def test_knn_faiss_backend_without_faiss_raises() -> None:
    with pytest.raises(ImportError, match="faiss"):
        KNNDetector(_identity_model(4), backend="faiss")


@pytest.mark.skipif(not HAS_FAISS, reason="faiss is not installed")
def test_knn_faiss_backend_agrees_with_torch() -> None:  # pragma: no cover - needs faiss
    x, q = torch.randn(50, 4), torch.randn(9, 4)
    model = _identity_model(4)
    ref = KNNDetector(model, k=3).fit([x]).score(q)
    got = KNNDetector(model, k=3, backend="faiss").fit([x]).score(q)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------
# ReAct
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("percentile", [90, 37.5, 100])
def test_react_threshold_is_numpy_percentile(percentile: float, data, trained) -> None:
    model = trained["linear"]
    det = ReActDetector(model, percentile=percentile).fit(_loader(data["x"]))
    with torch.no_grad():
        feats = model.features(data["x"]).numpy()
        c = float(np.percentile(feats, percentile))
        assert det.threshold == pytest.approx(c, rel=1e-6, abs=1e-7)
        logits = model.head(model.features(data["ood"]).clamp(max=det.threshold))
    torch.testing.assert_close(det.score(data["ood"]), torch.logsumexp(logits, 1))


# ---------------------------------------------------------------------------------------------
# ViM
# ---------------------------------------------------------------------------------------------


def test_vim_matches_numpy_reference(data, trained) -> None:
    model = trained["linear"]
    dim = 6
    det = ViMDetector(model, dim=dim).fit(_loader(data["x"]))
    with torch.no_grad():
        feats = model.features(data["x"]).double().numpy()
        logits = model(data["x"]).double().numpy()
        q_feats = model.features(data["ood"]).double().numpy()
        q_logits = model(data["ood"]).double().numpy()
    w = model.head.weight.detach().double().numpy()
    b = model.head.bias.detach().double().numpy()
    u = -np.linalg.pinv(w) @ b
    _, vectors = np.linalg.eigh((feats - u).T @ (feats - u) / len(feats))
    residual_basis = vectors[:, : feats.shape[1] - dim]
    residual = np.linalg.norm((feats - u) @ residual_basis, axis=1)
    assert logits.max(1).mean() > 0  # the paper's formula applies as is
    alpha = logits.max(1).mean() / residual.mean()

    assert det.principal_dim == dim
    assert det.alpha == pytest.approx(alpha, rel=1e-6)
    np.testing.assert_allclose(det.origin.numpy(), u, rtol=1e-6, atol=1e-8)  # type: ignore[union-attr]
    q_res = np.linalg.norm((q_feats - u) @ residual_basis, axis=1)
    expected = np.log(np.exp(q_logits).sum(1)) - alpha * q_res
    np.testing.assert_allclose(det.score(data["ood"]).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("head", ["isomax", "isomaxplus", "dismax"])
def test_vim_on_distance_heads(head: str, data, trained) -> None:
    model = trained[head]
    det = ViMDetector(model).fit(_loader(data["x"]))
    assert det.principal_dim == 8  # default rule: D // 2 for D = 16
    assert det.origin is not None and not det.origin.any()  # zero bias: u = 0
    with torch.no_grad():
        mean_max_logit = model(data["x"]).amax(1).double().mean().item()
        residual = det.residual_norm(model.features(data["x"])).mean().item()
    assert mean_max_logit < 0  # negative distances
    assert det.alpha == pytest.approx(abs(mean_max_logit) / residual, rel=1e-6)
    s_id, s_ood = det.score(data["x_test"]), det.score(data["ood"])
    assert torch.isfinite(s_id).all() and torch.isfinite(s_ood).all()
    if head == "isomax":
        assert _auroc(s_id, s_ood) > 0.9


def test_vim_rejects_other_heads_and_bad_dim(data) -> None:
    model = _identity_model(5)
    model.head = nn.Sequential(nn.Linear(5, 3))
    with pytest.raises(TypeError, match=r"nn\.Linear or a distance head"):
        ViMDetector(model).fit(_loader(data["x"]))
    with pytest.raises(ValueError, match="1 <= dim < D = 5"):
        ViMDetector(_identity_model(5), dim=5).fit(_loader(data["x"]))
    with pytest.raises(ValueError, match="D >= 2"):
        ViMDetector(_identity_model(1)).fit([torch.randn(4, 1)])
    with pytest.raises(ValueError, match="residual norms"):
        ViMDetector(_identity_model(5), dim=2).fit([data["x"][:2]])


@pytest.mark.parametrize(
    ("d", "dim"), [(4096, 1000), (2048, 1000), (2047, 512), (768, 512), (767, 383), (16, 8)]
)
def test_vim_default_dim_rule(d: int, dim: int) -> None:
    assert ViMDetector.default_dim(d) == dim


# ---------------------------------------------------------------------------------------------
# Shared behaviour: fit state, loaders, modes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FITTED)
def test_score_before_fit_raises(name: str, data, trained) -> None:
    det = get_detector(name, trained["linear"])
    assert not det.is_fitted
    with pytest.raises(RuntimeError, match="not fitted: call fit"):
        det.score(data["x_test"])


@pytest.mark.parametrize("name", FITTED)
def test_empty_loader_raises(name: str, data, trained) -> None:
    det = get_detector(name, trained["linear"])
    with pytest.raises(ValueError, match="no samples"):
        det.fit([])
    with pytest.raises(ValueError, match="no samples"):
        det.fit([(data["x"][:0], data["y"][:0])])
    with pytest.raises(TypeError, match="single tensor"):
        det.fit(data["x"])
    with pytest.raises(TypeError, match="batch of type"):
        det.fit([{"x": data["x"]}])


@pytest.mark.parametrize("name", ["energy", "knn", "vim", "react"])
def test_loaders_of_inputs_only(name: str, data, trained) -> None:
    model = trained["linear"]
    kwargs = KWARGS.get(name, {})
    labelled = get_detector(name, model, **kwargs).fit(_loader(data["x"], data["y"]))
    unlabelled = get_detector(name, model, **kwargs).fit(_loader(data["x"], batch=50))
    torch.testing.assert_close(unlabelled.score(data["ood"]), labelled.score(data["ood"]))


@pytest.mark.parametrize("name", NAMES)
def test_model_mode_restored_and_eval_inside(name: str, data) -> None:
    model = _train("linear", data)
    model.train()
    model.body[0].eval()  # a submodule in its own mode must keep it
    before = [m.training for m in model.modules()]
    seen: list[tuple[bool, bool]] = []
    model.body.register_forward_pre_hook(
        lambda m, _: seen.append((m.training, torch.is_grad_enabled()))
    )
    det = get_detector(name, model, **KWARGS.get(name, {})).fit(_loader(data["x"], data["y"]))
    det.score(data["x_test"])
    assert seen and all(state == (False, False) for state in seen)
    assert [m.training for m in model.modules()] == before

    # The mode is restored when the fit fails too.
    if name != "energy":
        with pytest.raises(ValueError):
            det.fit([])
        assert [m.training for m in model.modules()] == before


def test_refit_replaces_state(data, trained) -> None:
    model = trained["linear"]
    det = KNNDetector(model, k=3).fit(_loader(data["x"][:50]))
    det.fit(_loader(data["x"]))
    assert det.bank is not None and det.bank.shape == (300, 16)
    with pytest.raises(ValueError, match="exceeds"):
        det.fit([data["x"][:2]])
    assert not det.is_fitted
