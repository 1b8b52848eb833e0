"""Training throughput: the fast preset against the authors' recipe, and each head against
the linear one, with the real engine (:func:`isomax.engine.train`) in the same run.

Images are synthetic CIFAR-shaped uint8 tensors (throughput does not depend on their content),
so the benchmark needs no data files. Each configuration trains ``--epochs`` epochs; the
reported images/s is the median over epochs after the first (warm-up, compilation). A
configuration listed more than once in ``--configs`` is measured in each place and reported once,
with the median over all its runs (list them symmetrically, e.g. ``A,B,B,A``). Run::

    python benchmarks/train_speed.py --device cuda --images 50000 --epochs 3   # a GPU
    python benchmarks/train_speed.py --device cpu --images 512 --epochs 2 --model digits_cnn
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from _machine import save_result
from isomax.data import TensorImageDataset, make_bundle
from isomax.engine import load_config, train


def synthetic_bundle(n: int, shape: tuple[int, int, int], classes: int = 10):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    test = TensorImageDataset(x[: max(1, n // 10)], y[: max(1, n // 10)])
    return make_bundle(
        "synthetic",
        TensorImageDataset(x, y),
        test,
        split_val=0.0,
        seed=0,
        num_classes=classes,
        class_names=[str(i) for i in range(classes)],
        stats_samples=1000,
    )


def run(preset: str, loss: str, args: argparse.Namespace, bundle) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        overrides = dict(
            dataset="synthetic",
            model=args.model,
            loss=loss,
            epochs=args.epochs,
            device=args.device,
            output_dir=tmp,
            val_split=0.0,
        )
        if args.compile:
            overrides["compile"] = True
        cfg = load_config(preset=preset, overrides=overrides)
        result = train(cfg, bundle=bundle)
    rates = [h["images_per_s"] for h in result.history[1:]] or [result.history[0]["images_per_s"]]
    return {
        "preset": preset,
        "loss": loss,
        "batch_size": cfg.batch_size,
        "amp": cfg.amp,
        "channels_last": cfg.channels_last,
        "data_on_device": cfg.data_on_device,
        "images_per_s": statistics.median(rates),
        "per_epoch": rates,
    }


def merge_repeats(rows: list[dict]) -> list[dict]:
    """One row per (preset, loss): a configuration listed several times (e.g. A,B,B,A, which
    cancels a slow drift of the machine) gets the median over the epochs of all its runs."""
    merged: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["preset"], r["loss"])
        if key in merged:
            m = merged[key]
            m["per_epoch"] = m["per_epoch"] + r["per_epoch"]
            m["runs"] += 1
            m["images_per_s"] = statistics.median(m["per_epoch"])
        else:
            merged[key] = {**r, "runs": 1}
    return list(merged.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--images", type=int, default=50000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--configs", default="paper:softmax,fast:softmax,fast:isomaxplus,fast:dismax")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    shape = (1, 8, 8) if args.model.startswith("digits") else (3, 32, 32)
    bundle = synthetic_bundle(args.images, shape)
    rows = merge_repeats([run(*c.split(":"), args, bundle) for c in args.configs.split(",")])
    base = {r["loss"]: r for r in rows if r["preset"] == "fast"}
    paper = next((r for r in rows if r["preset"] == "paper"), None)
    for r in rows:
        if paper:
            r["ratio_to_paper"] = r["images_per_s"] / paper["images_per_s"]
        if "softmax" in base:
            r["ratio_to_fast_softmax"] = r["images_per_s"] / base["softmax"]["images_per_s"]
    device = torch.device(args.device)
    machine = save_result(args.out, device, args, rows)
    print(f"# {machine}, torch {torch.__version__}, {args.model}, {args.images} images")
    print(
        f"{'preset':<8}{'loss':<12}{'batch':>6}{'amp':>6}{'images/s':>12}{'x paper':>9}"
        f"{'x fast softmax':>16}"
    )
    for r in rows:
        print(
            f"{r['preset']:<8}{r['loss']:<12}{r['batch_size']:>6}{r['amp']:>6}"
            f"{r['images_per_s']:>12.0f}{r.get('ratio_to_paper', float('nan')):>9.2f}"
            f"{r.get('ratio_to_fast_softmax', float('nan')):>16.3f}"
        )


if __name__ == "__main__":
    main()
