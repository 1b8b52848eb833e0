"""Bring your own model: fine-tune CIFAR-10 ResNets trained by someone else, SoftMax vs IsoMax.

Starts from the published He et al. CIFAR-10 ResNets in ``../shared/pretrained/cifar10_resnets``
(SoftMax-trained, ImageNet normalisation), fine-tunes each with every loss through the training
engine (``TrainConfig(pretrained=FILE)``, the ``finetune`` preset) on the CIFAR-10 JPEG copy in
``../shared/data`` and evaluates against TinyImageNet (resized) and MNIST with every native score,
plus the post-hoc detectors on the SoftMax fine-tune. The data is decoded once per invocation.

Setup (from the repository root; ``.data`` is git-ignored)::

    mkdir -p .data/MNIST/raw && cp ../shared/data/*.tar.xz .data/ \\
        && cp ../shared/data/mnist_test/* .data/MNIST/raw/

Run (one JSON per run under ``--out``; finished runs are skipped, so it can be re-invoked)::

    python benchmarks/finetune_pretrained.py --nets resnet20 --losses softmax,isomax \\
        --seeds 0,1,2 --out benchmarks/results/finetune_pretrained
    python benchmarks/finetune_pretrained.py --table --out benchmarks/results/finetune_pretrained
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
POSTHOC = ("knn", "mahalanobis", "vim", "react")


def run_one(args, net: str, loss: str, seed: int, data, bundle, ood, out: Path) -> None:
    from isomax.engine import evaluate, load_config, train
    from isomax.methods import get_method
    from isomax.posthoc_fit import fit_posthoc

    weights = next((SHARED / "pretrained" / "cifar10_resnets").glob(f"{net}-*.th"))
    overrides = {
        "dataset": str(args.data / "cifar10_jpg.tar.xz"),
        "data_root": str(args.data),
        "model": net,
        "loss": loss,
        "seed": seed,
        "pretrained": str(weights),
        "normalize": "imagenet",
        "epochs": args.epochs,
        "device": "cpu",
        "output_dir": str(out / "runs" / f"{net}-{loss}-seed{seed}{args.tag}"),
        "checkpoint_every": args.epochs,
    }
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
    cfg = load_config(preset="finetune", overrides=overrides)
    t0 = time.perf_counter()
    result = train(cfg, bundle=bundle, data=data, overwrite=True)  # a JSON marks a finished run
    seconds = time.perf_counter() - t0
    names = list(get_method(loss).scores)
    if loss == "softmax":
        names += [s for s in ("energy", "max_logit", "mds") if s not in names]
    detectors = fit_posthoc(result.model, POSTHOC, bundle.train, 512) if loss == "softmax" else {}
    ev = evaluate(result.model, bundle.test, ood, names, device="cpu", detectors=detectors)
    record = {
        "net": net,
        "loss": loss,
        "seed": seed,
        "settings": {k: v for k, v in cfg.to_dict().items() if k not in ("output_dir",)},
        "train_seconds": seconds,
        "history": result.history,
        "evaluation": ev.to_dict(),
    }
    path = out / f"{net}-{loss}-seed{seed}{args.tag}.json"
    path.write_text(json.dumps(record, indent=1))
    acc = ev.id_metrics["accuracy"]
    tin = next(iter(ev.ood.values()))
    best = max(tin, key=lambda s: tin[s]["tnr_at_tpr95"])
    print(
        f"{net} {loss} seed {seed}: {seconds:.0f}s, acc {100 * acc:.1f}, TinyImageNet TNR "
        + ", ".join(f"{s} {100 * tin[s]['tnr_at_tpr95']:.1f}" for s in tin)
        + f" (best {best})",
        flush=True,
    )


def diagnose(net: str, data, losses: list[str], batches: int = 4) -> str:
    """Why the heads gain differently: the backbone's gradient at the start of fine-tuning.

    For each loss, the new head is put in place as the engine does (``head_init=auto``), then
    the mean over a few batches of the training loss and of the gradient norm of the backbone
    (all parameters but the head) is measured, with the feature norm.
    """
    import torch

    from isomax.engine import TrainConfig
    from isomax.engine.loader import TensorLoader
    from isomax.engine.trainer import _pretrained_model
    from isomax.methods import get_method

    weights = next((SHARED / "pretrained" / "cifar10_resnets").glob(f"{net}-*.th"))
    lines = ["| loss | head init | initial loss | backbone grad norm | ratio to SoftMax |"]
    lines.append("|---|---|---|---|---|")
    base = None
    for loss in losses:
        cfg = TrainConfig(model=net, loss=loss, pretrained=str(weights), normalize="imagenet")
        torch.manual_seed(0)
        model = _pretrained_model(cfg, data).train()
        crit = get_method(loss).build_loss()
        head = {id(p) for p in model.head.parameters()}
        pick = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(0))
        pick = pick[: 128 * batches]
        loader = TensorLoader(data.x_train[pick], data.y_train[pick], 128, data.mean, data.std)
        losses_, norms = [], []
        for x, y in loader:
            model.zero_grad()
            value = crit(model(x), y)
            value.backward()
            g = [p.grad.flatten() for p in model.parameters() if id(p) not in head]
            norms.append(float(torch.cat(g).norm()))
            losses_.append(float(value.detach()))
        norm = sum(norms) / len(norms)
        base = norm if base is None else base
        init = "old rows" if loss != "isomax" else "class means"
        lines.append(
            f"| {loss} | {init} | {sum(losses_) / len(losses_):.3f} | {norm:.4f} | {norm / base:.2f} |"
        )
    return "\n".join(lines)


def norm_signal(net: str, bundle, ood, samples: int = 2000) -> str:
    """How much of the OOD signal is in the feature norm, which IsoMax+ and DisMax normalise away.

    On the pretrained network (before any fine-tuning): AUROC (ID positive) of the feature norm
    alone, and of the cosine-only nearest-class-direction score (what MDS of IsoMax+ sees at the
    start), ID test split against each OOD set.
    """
    import torch

    from isomax.data import to_tensors
    from isomax.data.core import limit_samples
    from isomax.metrics import auroc
    from isomax.models.pretrained import build_pretrained, load_weights

    weights = next((SHARED / "pretrained" / "cifar10_resnets").glob(f"{net}-*.th"))
    model = build_pretrained(load_weights(weights), weights).eval()
    rows = {}

    @torch.no_grad()
    def feats(ds):
        x, _ = to_tensors(limit_samples(ds, samples), raw=False)
        return torch.cat([model.features(x[i : i + 500]) for i in range(0, len(x), 500)])

    w = model.head.weight / model.head.weight.norm(dim=1, keepdim=True)
    for name, ds in [("id", bundle.test), *ood.items()]:
        f = feats(ds)
        cos = (f / f.norm(dim=1, keepdim=True)) @ w.T
        rows[name] = (f.norm(dim=1), cos.max(1).values)
    lines = ["| OOD set | feature norm AUROC | cosine to nearest class direction AUROC |"]
    lines.append("|---|---|---|")
    for name in ood:
        norm = auroc(rows["id"][0], rows[name][0])
        cos = auroc(rows["id"][1], rows[name][1])
        lines.append(f"| {name} | {100 * norm:.1f} | {100 * cos:.1f} |")
    return "\n".join(lines)


def table(out: Path, tag: str) -> str:
    """Mean +- std over seeds: accuracy, then TNR@TPR95 / AUROC per OOD set, per loss and score."""
    rows: dict[tuple[str, str, str], list[dict]] = {}
    for f in sorted(out.glob(f"*{tag}.json")):
        if tag == "" and f.stem.count("-") > 2:
            continue
        r = json.loads(f.read_text())
        ev = r["evaluation"]
        for score in ev["mean"]:
            rows.setdefault((r["net"], r["loss"], score), []).append(
                {"acc": ev["id"]["accuracy"], **{n: ev["ood"][n][score] for n in ev["ood"]}}
            )

    def ms(values: list[float]) -> str:
        m = 100 * statistics.mean(values)
        s = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{m:.1f} +- {s:.1f}"

    sets = None
    lines = []
    for (net, loss, score), runs in rows.items():
        if sets is None:
            sets = [k for k in runs[0] if k != "acc"]
            lines += [
                "| net | loss | score | seeds | accuracy | "
                + " | ".join(f"{s} TNR@TPR95 | {s} AUROC | {s} FPR@95 (OOD+)" for s in sets)
                + " |",
                "|---" * (5 + 3 * len(sets)) + "|",
            ]
        cells = [net, loss, score, str(len(runs)), ms([r["acc"] for r in runs])]
        for s in sets:
            for metric in ("tnr_at_tpr95", "auroc", "fpr_at_tpr95"):
                cells.append(ms([r[s][metric] for r in runs]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


BRIEF = {  # the rows of BENCHMARKS.md: every SoftMax score of note, each loss's paper score
    "softmax": ("mps", "energy", "max_logit", "knn", "vim", "react", "mahalanobis"),
    "isomax": ("es", "mps"),
    "isomaxplus": ("mds", "es"),
    "dismax": ("mmles", "mds"),
}


def brief(out: Path) -> str:
    """BENCHMARKS.md's table: per network, the scores of BRIEF, mean +- std over seeds."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for f in sorted(out.glob("*.json")):
        if f.stem.count("-") > 2:  # variants carry a tag
            continue
        r = json.loads(f.read_text())
        runs.setdefault((r["net"], r["loss"]), []).append(r)

    def ms(values: list[float]) -> str:
        m = 100 * statistics.mean(values)
        return f"{m:.1f} ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else f"{m:.1f}"

    head = (
        "| net | loss (score) | seeds | accuracy | TinyImageNet TNR@TPR95 | TinyImageNet AUROC "
        "| TinyImageNet FPR@95 (OOD+) | MNIST TNR@TPR95 | MNIST AUROC | train s (median) |"
    )
    lines = [head, "|---" * 10 + "|"]
    for net in ("resnet20", "resnet32", "resnet56"):
        for loss, scores in BRIEF.items():
            rs = runs.get((net, loss), [])
            if not rs:
                continue
            for score in scores:
                ev = [r["evaluation"] for r in rs]
                tin = [e["ood"]["tinyimagenet_val10k"][score] for e in ev]
                mn = [e["ood"]["mnist"][score] for e in ev]
                cells = [
                    net,
                    f"{loss} ({score})",
                    str(len(rs)),
                    ms([e["id"]["accuracy"] for e in ev]),
                    ms([t["tnr_at_tpr95"] for t in tin]),
                    ms([t["auroc"] for t in tin]),
                    ms([t["fpr_at_tpr95"] for t in tin]),
                    ms([t["tnr_at_tpr95"] for t in mn]),
                    ms([t["auroc"] for t in mn]),
                    f"{statistics.median(r['train_seconds'] for r in rs):.0f}",
                ]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prepare(data_dir: Path, max_ood: int | None = None):
    """(bundle, TrainData, OOD sets): CIFAR-10 JPEGs with ImageNet normalisation, decoded once,
    and TinyImageNet (resized) and MNIST as the evaluation sees them."""
    from isomax.engine import TrainConfig
    from isomax.engine.trainer import TrainData, load_bundle
    from isomax.ood_sets import evaluation_datasets

    cfg = TrainConfig(
        dataset=str(data_dir / "cifar10_jpg.tar.xz"), data_root=str(data_dir), normalize="imagenet"
    )
    bundle = load_bundle(cfg)
    ood = evaluation_datasets(
        bundle,
        [str(data_dir / "tinyimagenet_val10k.tar.xz"), "mnist"],
        str(data_dir),
        max_samples=max_ood,
    )
    return bundle, TrainData.from_bundle(bundle), ood


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", default="resnet20", help="resnet20,resnet32,resnet56")
    p.add_argument("--losses", default="softmax,isomax,isomaxplus,dismax")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--data", type=Path, default=ROOT / ".data")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/finetune_pretrained")
    p.add_argument("--set", action="append", default=[], help="extra setting KEY=VALUE")
    p.add_argument("--tag", default="", help="suffix of the result files (variants)")
    p.add_argument("--max-ood", type=int, default=None)
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 beside another job)")
    p.add_argument("--table", action="store_true", help="print the table of finished runs")
    p.add_argument("--brief", action="store_true", help="print BENCHMARKS.md's table")
    p.add_argument("--diagnose", action="store_true", help="backbone gradients at the start")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table or args.brief:
        print(brief(args.out) if args.brief else table(args.out, args.tag))
        return

    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    bundle, data, ood = prepare(args.data, args.max_ood)
    print(f"data ready in {time.perf_counter() - t0:.0f}s", flush=True)
    if args.diagnose:
        for net in args.nets.split(","):
            print(diagnose(net, data, args.losses.split(",")))
            print(norm_signal(net, bundle, ood))
        return
    for net in args.nets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for loss in args.losses.split(","):
                if (args.out / f"{net}-{loss}-seed{seed}{args.tag}.json").exists():
                    continue
                run_one(args, net, loss, seed, data, bundle, ood, args.out)


if __name__ == "__main__":
    main()
