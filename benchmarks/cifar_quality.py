"""The paper's claim on real images: SoftMax against IsoMax, IsoMax+ and DisMax on CIFAR-10.

CIFAR-10 (the JPEG copy in ``../shared/data``) is the in-distribution set; TinyImageNet (resized
to 32x32) and MNIST (padded to 32x32, three channels) are the OOD sets. A CIFAR ResNet-18 is
trained with the ``fast`` preset for the same budget with every loss and seed; several runs share
the GPU at once. Every run is an ``isomax compare`` run in one output folder, so the runs can be
spread over several invocations (``--seeds 0,1`` then ``--seeds 2``) and are reused when done.

GPU (about 9 minutes for 4 losses x 2 seeds on one H100)::

    mkdir -p .data/MNIST/raw && cp ../shared/data/*.tar.xz .data/ \
        && cp ../shared/data/mnist_test/* .data/MNIST/raw/
    python benchmarks/cifar_quality.py --data .data --seeds 0,1 --parallel 4 --out runs/cifar

CPU smoke test (a few images per class, one epoch)::

    python benchmarks/cifar_quality.py --data .data --subset 20 --epochs 1 --device cpu \
        --parallel 1 --extra "--max-ood 200" --out /tmp/cifar-smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LOSSES = ("softmax", "isomax", "isomaxplus", "dismax")


def _subset_folder(src: Path, dest: Path, per_class: int) -> Path:
    """A small ImageFolder copy (symlinks) with ``per_class`` images per class and split."""
    for split in ("train", "test"):
        for cls in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            out = dest / split / cls.name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:per_class]:
                link = out / f.name
                if not link.exists():
                    link.symlink_to(f.resolve())
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=".data", help="folder with the archives and MNIST/raw")
    p.add_argument("--out", default="runs/cifar-quality")
    p.add_argument("--losses", default=",".join(LOSSES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--preset", default="fast")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--device", default="auto")
    p.add_argument("--parallel", type=int, default=4, help="runs sharing the device at once")
    p.add_argument("--subset", type=int, default=0, help="images per class (smoke tests)")
    p.add_argument("--extra", default="", help="more `isomax compare` options, quoted")
    args = p.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from isomax.data import get_dataset, get_ood_dataset

    data = Path(args.data).resolve()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cifar = data / "cifar10_jpg.tar.xz"
    tiny = data / "tinyimagenet_val10k.tar.xz"
    for f in (cifar, tiny, data / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"):
        if not f.exists():
            sys.exit(f"missing {f}: see the commands at the top of this script")
    t0 = time.perf_counter()
    bundle = get_dataset(str(cifar), root=data)  # unpacks once, before the workers start
    get_ood_dataset(str(tiny), like=bundle, root=data)
    dataset = str(cifar)
    if args.subset:
        extracted = Path(bundle.train.base.root if hasattr(bundle.train, "base") else data)
        root = next(
            q for q in extracted.parents if (q / "train").is_dir() and (q / "test").is_dir()
        )
        dataset = str(_subset_folder(root, out / "subset", args.subset))
    print(f"data ready in {time.perf_counter() - t0:.0f}s", flush=True)

    common = [
        "--dataset",
        dataset,
        "--model",
        args.model,
        "--preset",
        args.preset,
        "--epochs",
        str(args.epochs),
        "--device",
        args.device,
        "--data-root",
        str(data),
        "--ood",
        f"{tiny},mnist",
        "--output-dir",
        str(out),
        *args.extra.split(),
    ]
    jobs = [(loss, seed) for seed in args.seeds.split(",") for loss in args.losses.split(",")]
    running: list[tuple[subprocess.Popen, str]] = []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    failed = []
    while jobs or running:
        while jobs and len(running) < args.parallel:
            loss, seed = jobs.pop(0)
            log = open(out / f"worker-{loss}-seed{seed}.log", "w")
            cmd = [
                sys.executable,
                "-m",
                "isomax",
                "compare",
                "--losses",
                loss,
                "--seed-list",
                seed,
                "--no-figures",
                *common,
            ]
            running.append(
                (
                    subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                    f"{loss}-seed{seed}",
                )
            )
        time.sleep(2)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
                if proc.returncode:
                    failed.append(name)
                print(f"[{time.perf_counter() - t0:6.0f}s] {name}: {status}", flush=True)
    if failed:
        sys.exit(f"failed runs: {failed} (see {out}/worker-*.log)")
    # one last compare over every finished run in the folder writes the full report
    done = sorted(
        {
            d.name.rsplit("-seed", 1)[1]
            for d in (out / "runs").iterdir()
            if (d / "evaluation.json").exists()
        },
        key=int,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "isomax",
            "compare",
            "--losses",
            args.losses,
            "--seed-list",
            ",".join(done),
            *common,
        ],
        check=True,
        env=env,
    )
    results = out / "results"
    results.mkdir(exist_ok=True)
    for d in (out / "runs").iterdir():
        if (d / "evaluation.json").exists():
            shutil.copy(d / "evaluation.json", results / f"{d.name}.json")
    summary = json.loads((out / "results.json").read_text())["aggregate"]
    (results / "aggregate.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"total {time.perf_counter() - t0:.0f}s; report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
