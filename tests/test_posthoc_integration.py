"""Post-hoc detectors wherever a score is: state round trip, OODDetector, evaluate, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from isomax import posthoc
from isomax.cli import main
from isomax.detector import OODDetector
from isomax.engine import evaluate
from isomax.models import create_model


def _data(seed: int, n: int = 120):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 5, generator=g) * 0.3 + torch.eye(5)[y] * 3
    return x, y


def _model():
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=3, input_dim=5, head="isomaxplus")
    x, y = _data(0, 300)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = torch.nn.CrossEntropyLoss()
    for _ in range(60):
        opt.zero_grad()
        loss(10 * model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("name", ["mahalanobis", "knn", "vim", "react"])
def test_state_dict_round_trip_gives_identical_scores(name):
    model = _model()
    x, y = _data(1)
    kwargs = {"k": 5} if name == "knn" else {}
    fitted = posthoc.get_detector(name, model, **kwargs).fit(DataLoader(TensorDataset(x, y), 32))
    state = fitted.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    fresh = posthoc.get_detector(name, model, **kwargs)
    with pytest.raises(RuntimeError, match="not fitted"):
        fresh.state_dict()
    fresh.load_state_dict(state)
    q = torch.randn(20, 5)
    assert torch.equal(fresh.score(q), fitted.score(q))
    with pytest.raises(ValueError, match="state lacks"):
        posthoc.get_detector(name, model, **kwargs).load_state_dict({})


def test_ood_detector_with_knn_fits_saves_and_loads(tmp_path):
    model = _model()
    train = DataLoader(TensorDataset(*_data(2, 200)), batch_size=50)
    val = DataLoader(TensorDataset(*_data(3, 100)), batch_size=50)
    det = OODDetector(model, score="knn")
    with pytest.raises(ValueError, match="pass scorer_id_loader"):
        det.fit(val)
    det.fit(val, tpr=0.9, scorer_id_loader=train)
    x = torch.cat([_data(4, 40)[0], torch.randn(10, 5) * 0.3 - 6])  # last 10: far away
    pred = det.predict(x)
    assert pred.is_ood[-10:].all() and pred.is_ood[:40].float().mean() < 0.3
    path = det.save(tmp_path / "knn.safetensors")
    again = OODDetector.load(path, _model())
    other = again.predict(x)
    assert torch.equal(other.scores, pred.scores) and torch.equal(other.is_ood, pred.is_ood)


def test_evaluate_reports_detectors_next_to_logit_scores():
    model = _model()
    fit = DataLoader(TensorDataset(*_data(5, 200)), batch_size=64)
    dets = {"knn": posthoc.get_detector("knn", model, k=5).fit(fit)}
    idd = DataLoader(TensorDataset(*_data(6, 100)), batch_size=64)
    far = DataLoader(TensorDataset(torch.randn(50, 5) - 5), batch_size=64)
    ev = evaluate(model, idd, {"far": far}, ["mds"], detectors=dets, keep_scores=True)
    assert set(ev.ood["far"]) == {"mds", "knn"} and set(ev.mean) == {"mds", "knn"}
    assert ev.ood["far"]["knn"]["auroc"] > 0.99
    want = dets["knn"].score(torch.cat([b[0] for b in idd])).double()
    torch.testing.assert_close(ev.scores["id"]["knn"], want)


def test_cli_compare_and_calibrate_with_posthoc(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                "--dataset",
                "digits",
                "--model",
                "digits_mlp",
                "--losses",
                "isomaxplus",
                "--epochs",
                "1",
                "--ood",
                "gaussian",
                "--posthoc",
                "knn,vim",
                "--device",
                "cpu",
                "--no-figures",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    run = json.loads((out / "runs" / "isomaxplus-seed0" / "evaluation.json").read_text())
    assert {"knn", "vim", "mds"} <= set(run["evaluation"]["mean"])
    assert "| IsoMax+ | KNN | gaussian |" in (out / "report.md").read_text()
    ckpt = out / "runs" / "isomaxplus-seed0" / "checkpoint.safetensors"
    det = tmp_path / "d.safetensors"
    assert (
        main(["calibrate", str(ckpt), "--score", "knn", "--output", str(det), "--device", "cpu"])
        == 0
    )
    loaded = OODDetector.load(det)
    assert loaded.score_name == "knn" and loaded.threshold is not None
    assert (
        main(
            [
                "compare",
                "--dataset",
                "digits",
                "--losses",
                "isomax",
                "--ood",
                "gaussian",
                "--posthoc",
                "energy",
                "--output-dir",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "unknown post-hoc detector 'energy'" in capsys.readouterr().err


def _image_folder(root):
    """Two classes of 40 noisy 8x8 RGB PNGs (dark and bright) in the ImageFolder layout."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, shade in (("a", 40), ("b", 200)):
        (root / cls).mkdir(parents=True)
        for i in range(40):
            img = np.clip(rng.normal(shade, 30, (8, 8, 3)), 0, 255).astype("uint8")
            Image.fromarray(img).save(root / cls / f"{i}.png")


def test_fit_posthoc_decodes_image_files_once_for_every_detector(tmp_path, monkeypatch):
    """The detectors are fitted from one threaded decoding of the training split, with the same
    result as fitting each from a DataLoader over the dataset."""
    from PIL import Image as pil_image

    from isomax.data import get_dataset
    from isomax.posthoc_fit import fit_posthoc

    _image_folder(tmp_path / "imgs")
    bundle = get_dataset(f"folder:{tmp_path / 'imgs'}", root=tmp_path / "cache", split_val=0.0)
    torch.manual_seed(0)
    model = create_model("digits_cnn", num_classes=2, in_channels=3, head="isomaxplus").eval()

    opened = []
    real_open = pil_image.open
    monkeypatch.setattr(pil_image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    fitted = fit_posthoc(model, ["knn", "mahalanobis", "vim"], bundle.train, 7)
    assert len(opened) == len(bundle.train) >= 50  # once, not once per detector
    monkeypatch.setattr(pil_image, "open", real_open)

    loader = DataLoader(bundle.train, batch_size=7, shuffle=False)
    x = torch.randn(5, 3, 8, 8)
    for name, det in fitted.items():
        reference = posthoc.get_detector(name, model).fit(loader)
        torch.testing.assert_close(det.score(x), reference.score(x), rtol=1e-5, atol=1e-6)


def test_compare_decodes_the_training_images_once_for_every_run(tmp_path, monkeypatch):
    """Two runs, each training and fitting two post-hoc detectors: every training image file is
    opened once in all (the split is decoded into memory before the runs)."""
    from PIL import Image as pil_image

    from isomax.comparison import compare

    _image_folder(tmp_path / "imgs")
    opened: list[str] = []
    real_open = pil_image.open
    monkeypatch.setattr(
        pil_image, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k)
    )
    result = compare(
        dataset=f"folder:{tmp_path / 'imgs'}",
        model="digits_mlp",
        losses=["softmax", "isomaxplus"],
        ood=["gaussian"],
        output_dir=tmp_path / "c",
        overrides={"epochs": 1, "device": "cpu", "data_root": str(tmp_path / "cache")},
        posthoc=["knn", "mahalanobis"],
        figures=False,
        save_scores=False,
    )
    assert len(result.runs) == 2
    assert all("knn" in r["evaluation"]["ood"]["gaussian"] for r in result.runs)
    counts: dict[str, int] = {}
    for f in opened:
        counts[f] = counts.get(f, 0) + 1
    # 80 files. Training files: once for the normalisation statistics, once decoded for both
    # runs (it was 5 times: statistics, then training and post-hoc fitting in each run);
    # validation files once; test files once per run (evaluation streams them).
    assert len(counts) == 80 and max(counts.values()) == 2
    assert sum(counts.values()) < 2 * 80
