"""Why KNN on a SoftMax fine-tune can beat the IsoMax-family heads: the fine-tuned checkpoints.

Reads the runs that ``finetune_pretrained.py`` keeps (``runs/<net>-<loss>-seed<s><tag>/
checkpoint.safetensors``) and the published weights they started from, extracts the penultimate
features of the CIFAR-10 training split, the test split and each OOD set once per model, and
measures from those features (float64 where it matters):

* ``drift``: how far fine-tuning moved the backbone, ``||w - w0|| / ||w0||`` over the weights of
  the convolutions and batch norms, for the stem and each of the three stages;
* ``cka``: linear CKA (Kornblith et al. 2019) between the pretrained and the fine-tuned features
  of 2000 test images (1 = the same representation up to rotation and scale);
* TNR@TPR95 per OOD set of: the loss's paper score on the model's logits (``native``); KNN as
  ``isomax.posthoc.KNNDetector`` computes it (k=50, L2-normalised features, fitted on the
  training split, Sun et al. 2022); one prototype per class, the class mean, by cosine
  (``mean_cos``) and by Euclidean distance (``mean_l2``); and the feature norm (``norm``).

One JSON per model under ``<out>/analysis/``; ``--table`` prints the table of BENCHMARKS.md.
Setup and data as in ``finetune_pretrained.py``. Example::

    python benchmarks/finetune_analysis.py --nets resnet56 --runs 'resnet56-*-seed0*'
    python benchmarks/finetune_analysis.py --table
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
PAPER_SCORE = {"softmax": "mps", "isomax": "es", "isomaxplus": "mds", "dismax": "mmles"}
SCORES = ("native", "knn", "mean_cos", "mean_l2", "norm")


def stage_of(key: str, blocks_per_stage: int) -> str:
    """``layers.13.conv1.weight`` -> ``stage2`` (13 // 9 + 1 for ResNet-56); others -> ``stem``."""
    parts = key.split(".")
    if parts[0] == "layers":
        return f"stage{int(parts[1]) // blocks_per_stage + 1}"
    return "stem"


def drift(start: dict, end: dict, depth: int) -> dict[str, float]:
    """``||w - w0|| / ||w0||`` per stage and in all, over the backbone's learned weights."""
    n = (depth - 2) // 6
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for key, w0 in start.items():
        if key.startswith("head.") or not w0.is_floating_point() or "running" in key:
            continue
        for group in (stage_of(key, n), "all"):
            num[group] = num.get(group, 0.0) + float(
                (end[key].double() - w0.double()).square().sum()
            )
            den[group] = den.get(group, 0.0) + float(w0.double().square().sum())
    return {g: (num[g] / den[g]) ** 0.5 for g in num}


def linear_cka(a, b) -> float:
    """Linear CKA of two feature matrices of the same rows (float64)."""
    a = a.double() - a.double().mean(0)
    b = b.double() - b.double().mean(0)
    return float((b.T @ a).square().sum() / ((a.T @ a).norm() * (b.T @ b).norm()))


def knn_score(bank, query, k: int = 50):
    """The library's KNN score (:class:`isomax.posthoc.KNNDetector`) of features ``query``,
    fitted on the features ``bank``."""
    import torch

    from isomax.posthoc import KNNDetector

    class _Features(torch.nn.Module):  # features are given: identity features, any head
        def __init__(self, width: int) -> None:
            super().__init__()
            self.head = torch.nn.Linear(width, 1)

        def features(self, x):
            return x

    detector = KNNDetector(_Features(bank.shape[1]), k=k)
    return detector.fit([bank]).score_features(query)


def feature_scores(train_f, train_y, f, logits, loss: str) -> dict:
    """Every score of SCORES for one set of features (larger = more in-distribution)."""
    import torch
    import torch.nn.functional as F

    from isomax.scores import get as get_score

    means = torch.stack(
        [train_f[train_y == c].double().mean(0) for c in range(int(train_y.max()) + 1)]
    )
    fd = f.double()
    return {
        "native": get_score(PAPER_SCORE[loss])(logits.float()),
        "knn": knn_score(train_f, f),
        "mean_cos": (F.normalize(fd, dim=1) @ F.normalize(means, dim=1).T).max(1).values,
        "mean_l2": -torch.cdist(fd, means).min(1).values,
        "norm": fd.norm(dim=1),
    }


def extract(model, x, batch: int = 500):
    """(features, logits) of ``x`` in float32, in eval mode, without gradients."""
    import torch

    feats, logits = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            f = model.features(x[i : i + batch])
            feats.append(f)
            logits.append(model.head(f))
    return torch.cat(feats), torch.cat(logits)


def analyse(name: str, net: str, loss: str, model, start: dict, tensors: dict, depth: int) -> dict:
    """One model's record: drift, CKA to the pretrained features, TNR@TPR95 of every score."""
    from isomax.metrics import ood_metrics

    t0 = time.perf_counter()
    f = {k: extract(model, x) for k, (x, _) in tensors.items()}
    train_y = tensors["train"][1]
    scores = {k: feature_scores(f["train"][0], train_y, *f[k], loss) for k in f if k != "train"}
    acc = float((f["test"][1].argmax(1) == tensors["test"][1]).double().mean())
    record = {
        "model": name,
        "net": net,
        "loss": loss,
        "accuracy": acc,
        "drift": drift(start, model.state_dict(), depth),
        "features": f["test"][0][:2000],
        "tnr_at_tpr95": {
            ood: {s: ood_metrics(scores["test"][s], scores[ood][s])["tnr_at_tpr95"] for s in SCORES}
            for ood in scores
            if ood != "test"
        },
        "seconds": 0.0,
    }
    record["seconds"] = time.perf_counter() - t0
    return record


def table(folder: Path) -> str:
    """Mean +- std over seeds per (net, model kind): drift, CKA, TNR@TPR95 of the scores of note
    (every score is in the JSON)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for f in sorted(folder.glob("*.json")):
        r = json.loads(f.read_text())
        kind = "pretrained" if r["model"].endswith("pretrained") else r["loss"]
        tag = r["model"].split("seed")[-1][1:] if "seed" in r["model"] else ""
        groups.setdefault((r["net"], kind + (f" ({tag.lstrip('-')})" if tag else "")), []).append(r)

    def ms(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
        m = scale * statistics.mean(values)
        s = f" ± {scale * statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
        return f"{m:.{digits}f}{s}"

    shown = {
        "tinyimagenet_val10k": ("native", "knn", "mean_cos", "norm"),
        "mnist": ("native", "knn", "norm"),
    }
    label = {"native": "native", "knn": "KNN", "mean_cos": "class mean", "norm": "norm"}
    head = ["net", "model", "n", "accuracy", "drift all / stage 3 (%)", "CKA to pretrained"]
    head += [f"{s.split('_')[0]} {label[sc]}" for s, scs in shown.items() for sc in scs]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for (net, kind), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "pretrained", kv[0][1])
    ):
        cells = [net, kind, str(len(rs)), ms([r["accuracy"] for r in rs])]
        cells.append(
            ms([r["drift"].get("all", 0.0) for r in rs], digits=1)
            + " / "
            + ms([r["drift"].get("stage3", 0.0) for r in rs], digits=1)
        )
        cells.append(ms([r["cka"] for r in rs], scale=1.0, digits=3))
        for s, scs in shown.items():
            cells += [ms([r["tnr_at_tpr95"][s][sc] for r in rs]) for sc in scs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", default="resnet56", help="pretrained networks to analyse")
    p.add_argument("--runs", default="{net}-*", help="glob of run folders under <out>/runs")
    p.add_argument("--data", type=Path, default=ROOT / ".data")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/finetune_pretrained")
    p.add_argument("--max-ood", type=int, default=None)
    p.add_argument("--max-train", type=int, default=None, help="training images (default all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    folder = args.out / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    if args.table:
        print(table(folder))
        return

    import torch

    from finetune_pretrained import prepare
    from isomax.data import to_tensors
    from isomax.data.core import limit_samples
    from isomax.engine.trainer import load_model
    from isomax.models.pretrained import build_pretrained, load_weights

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    bundle, _, ood = prepare(args.data, args.max_ood)
    tensors = {
        "train": to_tensors(limit_samples(bundle.train, args.max_train), raw=False),
        "test": to_tensors(bundle.test, raw=False),
    }
    tensors.update({name: to_tensors(ds, raw=False) for name, ds in ood.items()})
    print(f"data ready in {time.perf_counter() - t0:.0f}s", flush=True)
    for net in args.nets.split(","):
        weights = next((SHARED / "pretrained" / "cifar10_resnets").glob(f"{net}-*.th"))
        depth = int(net.removeprefix("resnet"))
        pre = build_pretrained(load_weights(weights), weights).eval()
        start = {k: v.clone() for k, v in pre.state_dict().items()}
        models = [(f"{net}-pretrained", "softmax", lambda pre=pre: pre)]
        for run in sorted((args.out / "runs").glob(args.runs.format(net=net))):
            ckpt = run / "checkpoint.safetensors"
            if ckpt.exists():
                loss = run.name.split("-")[1]
                models.append((run.name, loss, lambda ckpt=ckpt: load_model(ckpt)[0]))
        base = extract(pre, tensors["test"][0][:2000])[0]  # the CKA reference
        for name, loss, load in models:
            path = folder / f"{name}.json"
            if path.exists():
                continue
            record = analyse(name, net, loss, load().float().eval(), start, tensors, depth)
            record["cka"] = linear_cka(base, record.pop("features"))
            path.write_text(json.dumps(record, indent=1))
            tin = record["tnr_at_tpr95"]
            print(
                f"{name}: acc {100 * record['accuracy']:.1f} drift "
                f"{100 * record['drift']['all']:.1f}% cka {record['cka']:.3f} "
                + " ".join(f"{s} {100 * v:.1f}" for s, v in next(iter(tin.values())).items())
                + f" ({record['seconds']:.0f}s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
