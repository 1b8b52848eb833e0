"""PNG figures: valid files, inputs of every shape, the AUROC helper, errors, no side effects."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

import matplotlib
import matplotlib.image

from isomax import plots
from isomax.plots import (
    plot_reliability,
    plot_roc_curves,
    plot_score_histograms,
    plot_training_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL = ("softmax", "isomax", "isomaxplus", "dismax")
OODS = ("svhn", "lsun", "tiny-imagenet")


def _assert_png(path: Path, returned: Path) -> np.ndarray:
    assert returned == path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert 200 <= img.shape[0] <= 5000 and 200 <= img.shape[1] <= 5000
    assert img.std() > 0  # not blank
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left
    return img


def _scores(methods, oods, n=300, as_torch=False, seed=0):
    g = np.random.default_rng(seed)
    conv = torch.from_numpy if as_torch else (lambda a: a)
    ids = {m: conv(g.normal(1.0 + i, 1.0, n)) for i, m in enumerate(methods)}
    ood = {
        m: {o: conv(g.normal(0.0, 1.0, n // 2 + j)) for j, o in enumerate(oods)} for m in methods
    }
    return ids, ood


def _diagram(seed=0, n_bins=10):
    g = np.random.default_rng(seed)
    edges = np.linspace(0, 1, n_bins + 1)
    conf = (edges[:-1] + edges[1:]) / 2
    acc = np.clip(conf + g.normal(0, 0.1, n_bins), 0, 1)
    counts = g.integers(1, 50, n_bins)
    conf[:2], acc[:2], counts[:2] = np.nan, np.nan, 0  # empty bins
    return {"edges": edges, "confidence": conf, "accuracy": acc, "counts": counts}


def _history(epochs=5, nan_val=False):
    return [
        {
            "epoch": e,
            "train_loss": 2.0 / (e + 1),
            "train_acc": 0.5 + 0.08 * e,
            "val_acc": math.nan if nan_val else 0.45 + 0.08 * e,
        }
        for e in range(1, epochs + 1)
    ]


@pytest.fixture(autouse=True)
def _no_global_matplotlib_state(monkeypatch):
    """Every test: pyplot cannot even be imported, and backend, rcParams and figures stay put."""
    backend, rc = matplotlib.get_backend(), dict(matplotlib.rcParams)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # importing it would fail
    yield
    monkeypatch.undo()
    import matplotlib.pyplot as plt

    assert matplotlib.get_backend() == backend
    assert dict(matplotlib.rcParams) == rc
    assert plt.get_fignums() == []


# --------------------------------------------------------------------------------------------
# Every function writes a valid PNG
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("methods", "oods", "as_torch"),
    [(ALL, OODS[:1], True), (ALL[:1], OODS, False)],
    ids=["4methods-1ood-torch", "1method-3oods-numpy"],
)
def test_histograms_and_roc_write_png(tmp_path, methods, oods, as_torch):
    ids, ood = _scores(methods, oods, as_torch=as_torch)
    names = {m: "score" + str(i) for i, m in enumerate(methods)}
    p = tmp_path / "h" / "hist.png"
    img = _assert_png(p, plot_score_histograms(ids, ood, p, score_names=names))
    assert (img.shape[0] > img.shape[1]) == (len(methods) > len(oods))  # rows = methods
    p = tmp_path / "r" / "roc.png"
    _assert_png(p, plot_roc_curves(ids, ood, str(p)))


def test_roc_four_methods_three_oods(tmp_path):
    ids, ood = _scores(ALL, OODS, n=100, as_torch=True)
    ood["dismax"] = {o: v.numpy() for o, v in ood["dismax"].items()}  # mixed inputs
    p = tmp_path / "roc.png"
    img = _assert_png(p, plot_roc_curves(ids, ood, p))
    assert img.shape[1] > 2 * img.shape[0]  # three panels side by side


def test_constant_and_tied_scores(tmp_path):
    ids = {"softmax": np.ones(50)}
    ood = {"softmax": {"a": torch.ones(30, dtype=torch.float16)}}
    _assert_png(tmp_path / "h" / "x.png", plot_score_histograms(ids, ood, tmp_path / "h" / "x.png"))
    _assert_png(tmp_path / "r" / "x.png", plot_roc_curves(ids, ood, tmp_path / "r" / "x.png"))


def test_hist_edges_constant_and_outliers():
    for value in (0.0, 1.0, -2500.0, 1e-7):
        edges = plots._hist_edges(np.full(40, value))
        assert edges[0] < value < edges[-1] and np.all(np.diff(edges) > 0)
    x = np.r_[np.linspace(0, 1, 1000), 1e9, -1e9]
    edges = plots._hist_edges(x)
    assert -0.01 < edges[0] < 0.01 and 0.99 < edges[-1] < 1.01
    assert 10 <= edges.size - 1 <= 60


def test_outliers_and_odd_dtypes(tmp_path):
    g = np.random.default_rng(1)
    x = g.normal(size=1000)
    x[:3] = [1e9, -1e9, 5e8]
    ids = {"isomax+": torch.tensor(x, dtype=torch.bfloat16, requires_grad=True)}
    ood = {"isomax+": {"noise": np.arange(100, dtype=np.int32)}}
    p = tmp_path / "x.png"
    _assert_png(p, plot_score_histograms(ids, ood, p))


def test_unknown_methods_get_further_colours(tmp_path):
    methods = (*ALL, "odin", "energy-ft")
    ids, ood = _scores(methods, OODS[:1], n=50)
    p = tmp_path / "x.png"
    _assert_png(p, plot_roc_curves(ids, ood, p))
    styles = plots._styles(["odin", "IsoMax+", "softmax", "mine"], "x")
    assert [s[:2] for s in styles] == [
        ("softmax", "SoftMax"),
        ("IsoMax+", "IsoMax+"),
        ("odin", "odin"),
        ("mine", "mine"),
    ]
    colours = [s[2] for s in plots._styles([*ALL, "a", "b"], "x")]
    assert len(set(colours)) == len(colours)


def test_reliability_writes_png_four_methods(tmp_path):
    diagrams = {m: _diagram(i) for i, m in enumerate(ALL)}
    diagrams["softmax"]["confidence"][:2] = 0.0  # empty bins may hold 0 instead of NaN
    diagrams["softmax"]["accuracy"][:2] = 0.0
    diagrams["dismax"] = {k: torch.as_tensor(v) for k, v in diagrams["dismax"].items()}
    # as read back from results.json: lists, None for NaN
    diagrams["isomax"] = {
        k: [None if x != x else float(x) for x in v] for k, v in diagrams["isomax"].items()
    }
    p = tmp_path / "rel.png"
    _assert_png(p, plot_reliability(diagrams, p))


def test_reliability_one_method_from_metrics(tmp_path):
    from isomax.metrics import reliability_diagram

    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(500, 10, generator=g), dim=1)
    labels = torch.randint(0, 10, (500,), generator=g)
    d = reliability_diagram(probs, labels, n_bins=15)
    p = tmp_path / "rel.png"
    _assert_png(p, plot_reliability({"softmax": d}, p))


@pytest.mark.parametrize("methods", [ALL[:1], ALL], ids=["1method", "4methods"])
def test_training_curves_write_png(tmp_path, methods):
    histories = {m: _history(3 + i, nan_val=(i % 2 == 0)) for i, m in enumerate(methods)}
    p = tmp_path / "train.png"
    _assert_png(p, plot_training_curves(histories, p))


def test_training_curves_edge_cases(tmp_path):
    rows = [{"epoch": 1, "train_loss": np.float32(0.7), "train_acc": torch.tensor(0.6)}]
    diverged = _history(4)
    diverged[2]["train_loss"] = math.nan
    diverged[3]["val_acc"] = None  # JSON's null
    del diverged[1]["val_acc"]
    p = tmp_path / "train.png"
    _assert_png(p, plot_training_curves({"softmax": rows, "isomax": diverged}, p))
    zero_loss = [{**r, "train_loss": 0.0} for r in _history(3, nan_val=True)]
    _assert_png(p, plot_training_curves({"dismax": zero_loss}, p))  # overwrite is fine


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


def _good():
    return _scores(ALL[:2], OODS[:2], n=20)


@pytest.mark.parametrize(
    ("mutate", "exc", "match"),
    [
        (lambda i, o: ({}, o), ValueError, "id_scores is empty"),
        (lambda i, o: (i, {}), ValueError, "ood_scores is empty"),
        (lambda i, o: ([1.0], o), TypeError, "id_scores must be a mapping"),
        (
            lambda i, o: ({**i, "softmax": np.array([])}, o),
            ValueError,
            r"id_scores\['softmax'\] is empty",
        ),
        (lambda i, o: ({**i, "softmax": np.array([0.1, np.nan])}, o), ValueError, "1 NaN"),
        (lambda i, o: ({**i, "softmax": torch.tensor([0.1, math.inf])}, o), ValueError, "infinite"),
        (lambda i, o: ({**i, "softmax": np.ones((2, 3))}, o), ValueError, "must be 1-D"),
        (lambda i, o: ({**i, "softmax": np.array(["a"])}, o), TypeError, "real numbers"),
        (lambda i, o: ({**i, "softmax": torch.ones(3, dtype=torch.bool)}, o), TypeError, "real"),
        (
            lambda i, o: ({"softmax": i["softmax"]}, o),
            ValueError,
            r"only in ood_scores: \['isomax'\]",
        ),
        (
            lambda i, o: ({**i, "dismax": i["softmax"]}, o),
            ValueError,
            r"only in id_scores: \['dismax'\]",
        ),
        (lambda i, o: (i, {**o, "isomax": {}}), ValueError, r"ood_scores\['isomax'\] is empty"),
        (
            lambda i, o: (i, {**o, "isomax": {"svhn": o["isomax"]["svhn"]}}),
            ValueError,
            "same OOD sets",
        ),
        (
            lambda i, o: (i, {**o, "isomax": {**o["isomax"], "svhn": np.array([np.nan])}}),
            ValueError,
            r"ood_scores\['isomax'\]\['svhn'\] must be finite",
        ),
        (lambda i, o: ({**i, "IsoMax": i["isomax"]}, o), ValueError, "same method"),
    ],
)
@pytest.mark.parametrize("fn", [plot_score_histograms, plot_roc_curves])
def test_bad_scores_raise(tmp_path, fn, mutate, exc, match):
    ids, ood = mutate(*_good())
    with pytest.raises(exc, match=match):
        fn(ids, ood, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_bad_path_and_score_names(tmp_path):
    ids, ood = _good()
    with pytest.raises(ValueError, match=r"path must end in \.png"):
        plot_roc_curves(ids, ood, tmp_path / "x.pdf")
    with pytest.raises(TypeError, match="path must be"):
        plot_roc_curves(ids, ood, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"score_names has methods not in id_scores: \['dismax'\]"):
        plot_score_histograms(ids, ood, tmp_path / "x.png", score_names={"dismax": "mmles"})
    with pytest.raises(TypeError, match=r"score_names\['softmax'\] must be a str"):
        plot_score_histograms(ids, ood, tmp_path / "x.png", score_names={"softmax": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda d: {k: v for k, v in d.items() if k != "counts"},
            r"lacks the key\(s\) \['counts'\]",
        ),
        (lambda d: {**d, "counts": np.zeros(10)}, "adds up to 0"),
        (lambda d: {**d, "counts": -np.ones(10)}, "finite and >= 0"),
        (lambda d: {**d, "accuracy": np.full(10, 0.5)[:9]}, r"shape \(10,\)"),
        (lambda d: {**d, "edges": np.linspace(1, 0, 11)}, "strictly increasing"),
        (lambda d: {**d, "edges": np.linspace(0, 100, 11)}, r"must lie in \[0, 1\]"),
        (lambda d: {**d, "accuracy": np.full(10, np.nan)}, r"'accuracy'\] must lie in \[0, 1\]"),
        (lambda d: {**d, "confidence": np.full(10, 50.0)}, r"'confidence'\] must lie in \[0, 1\]"),
    ],
)
def test_bad_diagrams_raise(tmp_path, mutate, match):
    with pytest.raises(ValueError, match=match):
        plot_reliability({"softmax": mutate(_diagram())}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="diagrams is empty"):
        plot_reliability({}, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("histories", "exc", "match"),
    [
        ({}, ValueError, "histories is empty"),
        ({"softmax": []}, ValueError, r"histories\['softmax'\] is empty"),
        ({"softmax": {"epoch": 1}}, TypeError, "sequence of per-epoch dicts"),
        ({"softmax": [1.0]}, TypeError, r"histories\['softmax'\]\[0\] must be a dict"),
        ({"softmax": [{"epoch": 1, "train_loss": 1.0}]}, ValueError, r"\['train_acc'\]"),
        (
            {"softmax": [{"epoch": 1, "train_loss": "x", "train_acc": 0.5}]},
            TypeError,
            "must be a number",
        ),
        (
            {"softmax": [{"epoch": math.nan, "train_loss": 1.0, "train_acc": 0.5}]},
            ValueError,
            "finite",
        ),
    ],
)
def test_bad_histories_raise(tmp_path, histories, exc, match):
    with pytest.raises(exc, match=match):
        plot_training_curves(histories, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Atomic writes, missing matplotlib, no global state
# --------------------------------------------------------------------------------------------


def test_failed_save_leaves_no_temporary_and_keeps_old_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    p = tmp_path / "x.png"
    p.write_bytes(b"old")

    def broken_savefig(self, fh, **kwargs):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_training_curves({"softmax": _history()}, p)
    assert [q.name for q in tmp_path.iterdir()] == ["x.png"]
    assert p.read_bytes() == b"old"


def test_missing_matplotlib_raises_import_error(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'isomax\[full\]'"):
        plot_training_curves({"softmax": _history()}, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
