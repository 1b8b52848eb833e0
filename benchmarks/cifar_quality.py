"""The paper's claim on real images: SoftMax against IsoMax, IsoMax+ and DisMax on CIFAR-10.

CIFAR-10 (the JPEG copy in ``../shared/data``) is the in-distribution set; TinyImageNet (resized
to 32x32) and MNIST (padded to 32x32, three channels) are the OOD sets. A CIFAR ResNet-18 is
trained with the ``fast`` preset for the same budget with every loss and seed; several runs share
the GPU at once. Every run is an ``isomax compare`` run in one output folder, so the runs can be
spread over several invocations (``--seeds 0,1`` then ``--seeds 2``) and are reused when done.

On a GPU, through ``benchmarks/gpu_suite.sh`` (which also measures the speed and picks the
epochs so that every run fits its budget), or by hand::

    mkdir -p .data/MNIST/raw && cp ../shared/data/*.tar.xz .data/ \
        && cp ../shared/data/mnist_test/* .data/MNIST/raw/
    python benchmarks/cifar_quality.py --data .data --seeds 0,1,2 --parallel 4 --out runs/cifar \
        --time-budget 480 --fit-epochs 25000   # 25000: one run's images/s (train_speed.py)

With ``--time-budget`` no run starts that the budget cannot fit (judged from the runs already
finished) and runs still going near the end are stopped; their checkpoints let a later
invocation with the same ``--out`` finish them. The report covers the seeds finished with every
loss.

On a CPU, at a smaller scale (ResNet-8, 6 epochs; BENCHMARKS.md section 3, ~80 minutes on 2
cores)::

    OMP_NUM_THREADS=1 python benchmarks/cifar_quality.py --data .data --model resnet8 \
        --epochs 6 --device cpu --parallel 2 --seeds 0,1,2 --out runs/cifar-cpu \
        --extra "--amp none --batch-size 128 --lr 0.1 --posthoc knn,mahalanobis"

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
FINAL_RESERVE_S = 45.0  # the final report and copying the results
RUN_OVERHEAD_S = 40.0  # per run: start, data decoding, evaluation (measured: about 30 s)
SHARING = 0.85  # runs time-sliced on one GPU get together somewhat less than one run alone


def fit_epochs(args: argparse.Namespace, runs: int, train_images: int, spent: float) -> int:
    """The most epochs (at most ``--epochs``) with which ``runs`` runs fit the time budget.

    Runs sharing the device split its throughput, so the training time of all runs is
    ``runs * epochs * train_images / (SHARING * images_per_s)`` whatever ``--parallel`` is;
    each wave of ``--parallel`` runs adds a fixed overhead.
    """
    if not args.time_budget:
        raise SystemExit("--fit-epochs needs --time-budget")
    waves = -(-runs // args.parallel)
    usable = args.time_budget - spent - FINAL_RESERVE_S - waves * RUN_OVERHEAD_S
    epochs = min(args.epochs, int(usable * SHARING * args.fit_epochs / (runs * train_images)))
    if epochs < 1:
        raise SystemExit(
            f"{runs} runs do not fit in {args.time_budget:.0f}s at {args.fit_epochs:.0f} "
            "images/s: give fewer seeds or losses, or more time"
        )
    return epochs


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
    p.add_argument(
        "--time-budget",
        type=float,
        default=0.0,
        help="seconds for this invocation: start no run the budget cannot fit, stop runs "
        "still going near the end (they resume on the next invocation); 0: no limit",
    )
    p.add_argument(
        "--fit-epochs",
        type=float,
        default=0.0,
        metavar="IMAGES_PER_S",
        help="lower --epochs so that every run fits in --time-budget, given the training "
        "images/s of one run alone on the device (e.g. from train_speed.py)",
    )
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
        bundle = get_dataset(dataset, root=data)
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
    losses = args.losses.split(",")
    jobs = [(loss, seed) for seed in args.seeds.split(",") for loss in losses]
    # finished runs are not started again (they would only take a slot to say "reused")
    jobs = [
        j for j in jobs if not (out / "runs" / f"{j[0]}-seed{j[1]}" / "evaluation.json").exists()
    ]
    chosen = out / "fitted_epochs.json"  # every invocation on this folder keeps the first choice
    setting = {"model": args.model, "dataset": dataset, "preset": args.preset}
    if chosen.exists():
        saved = json.loads(chosen.read_text())
        if {k: saved.get(k) for k in setting} != setting:
            sys.exit(
                f"{chosen} was written for {saved}, not {setting}: use another --out, or delete it"
            )
        args.epochs = saved["epochs"]
    elif args.fit_epochs and jobs:
        spent = time.perf_counter() - t0
        args.epochs = fit_epochs(args, len(jobs), len(bundle.train), spent)
        chosen.write_text(
            json.dumps({**setting, "epochs": args.epochs, "images_per_s": args.fit_epochs})
        )
    if chosen.exists():
        common[common.index("--epochs") + 1] = str(args.epochs)
        print(f"fitted epochs: {args.epochs} for every run ({chosen})", flush=True)
    running: list[tuple[subprocess.Popen, str, float]] = []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    failed, stopped, durations = [], [], []
    while jobs or running:
        elapsed = time.perf_counter() - t0
        deadline = args.time_budget - FINAL_RESERVE_S if args.time_budget else float("inf")
        estimate = max(durations, default=0.0)
        while jobs and len(running) < args.parallel and elapsed + estimate < deadline:
            loss, seed = jobs.pop(0)
            log = open(out / f"worker-{loss}-seed{seed}.log", "a")  # a resumed run appends
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
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            running.append((proc, f"{loss}-seed{seed}", time.perf_counter()))
        if jobs and not running:  # the budget cannot fit another run
            names = [f"{loss}-seed{seed}" for loss, seed in jobs]
            print(f"time budget: not started {names}", flush=True)
            break
        time.sleep(2)
        for proc, name, started in list(running):
            if proc.poll() is None and time.perf_counter() - t0 > deadline:
                proc.terminate()  # checkpoints are atomic: the next invocation resumes it
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                stopped.append(name)
                running.remove((proc, name, started))
                print(f"[{time.perf_counter() - t0:6.0f}s] {name}: stopped (budget)", flush=True)
            elif proc.poll() is not None:
                running.remove((proc, name, started))
                status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
                if proc.returncode:
                    failed.append(name)
                else:
                    durations.append(time.perf_counter() - started)
                print(f"[{time.perf_counter() - t0:6.0f}s] {name}: {status}", flush=True)
    results = out / "results"
    results.mkdir(exist_ok=True)
    run_dirs = list((out / "runs").iterdir()) if (out / "runs").is_dir() else []
    finished = {d.name for d in run_dirs if (d / "evaluation.json").exists()}
    for name in finished:
        shutil.copy(out / "runs" / name / "evaluation.json", results / f"{name}.json")
    if failed:
        print(f"failed runs: {failed} (see {out}/worker-*.log)", flush=True)
    # the report covers the seeds finished with every loss (other runs wait for a later call)
    seeds = {name.rsplit("-seed", 1)[1] for name in finished}
    done = sorted((s for s in seeds if all(f"{x}-seed{s}" in finished for x in losses)), key=int)
    if not done:
        for name in ("report.md", "results.json", "summary.csv", "full.csv"):
            (out / name).unlink(missing_ok=True)  # a single worker's partial report
        sys.exit(f"no seed finished with every loss yet (finished: {sorted(finished)})")
    # one last compare over those runs (all reused, nothing trained) writes the full report
    final = subprocess.run(
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
        env=env,
    )
    if final.returncode:
        sys.exit(f"the final report failed (exit {final.returncode}): see the message above")
    summary = json.loads((out / "results.json").read_text())["aggregate"]
    (results / "aggregate.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"total {time.perf_counter() - t0:.0f}s; seeds {','.join(done)}; report: {out / 'report.md'}"
    )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
