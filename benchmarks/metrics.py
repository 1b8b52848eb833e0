"""Time ``isomax.metrics.ood_metrics`` against scikit-learn on the same data, in the same run.

    python benchmarks/metrics.py                 # 10M ID + 10M OOD float32 scores, 3 repeats
    python benchmarks/metrics.py --n 1000000 --dtype float64 --repeats 5

scikit-learn side: ``roc_auc_score`` + ``average_precision_score`` twice (ID positive; OOD
positive on negated scores) + one ``roc_curve(drop_intermediate=False)`` from which TNR@TPR,
the OpenOOD FPR@TPR and the detection accuracy are read. Both sides produce the same six numbers;
the script checks that they agree. Peak memory is measured in separate, untimed calls with
``tracemalloc`` (NumPy reports its buffers to it), as extra memory beyond the inputs.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from isomax.metrics import ood_metrics


def sklearn_metrics(ids: np.ndarray, ood: np.ndarray, tpr: float) -> dict[str, float]:
    """The six metrics the usual way, with scikit-learn (ID labelled 1)."""
    n_id, n_ood = ids.size, ood.size
    y = np.concatenate([np.ones(n_id, dtype=np.int8), np.zeros(n_ood, dtype=np.int8)])
    s = np.concatenate([ids, ood])
    auroc = roc_auc_score(y, s)
    ap_in = average_precision_score(y, s)
    ap_out = average_precision_score(1 - y, -s)
    fpr, tpr_curve, _ = roc_curve(y, s, drop_intermediate=False)
    tps = np.rint(tpr_curve * n_id)  # counts, from highest threshold (accept none) down
    fps = np.rint(fpr * n_ood)
    k_id = math.ceil(round(tpr * n_id, 6))
    k_ood = math.ceil(round(tpr * n_ood, 6))
    j = int(np.argmax(tps >= k_id))  # first point accepting >= k ID scores
    # OOD positive, flagged = score below the j-th threshold: fewest flagged with >= k OOD.
    j_ood = int(np.searchsorted(fps, n_ood - k_ood, side="right")) - 1
    tag = format(tpr * 100, "g")
    return {
        "auroc": float(auroc),
        "aupr_in": float(ap_in),
        "aupr_out": float(ap_out),
        f"tnr_at_tpr{tag}": float(1.0 - fpr[j]),
        f"fpr_at_tpr{tag}": float((n_id - tps[j_ood]) / n_id),
        "detection_accuracy": float(0.5 * (1.0 + np.max(tpr_curve - fpr))),
    }


def timed(fn: Callable[[], object], repeats: int) -> tuple[list[float], list[float], object]:
    """Wall-clock and process CPU seconds of each run, and the last result."""
    wall, cpu, out = [], [], None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return wall, cpu, out


def peak_mib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="scores per set (ID and OOD)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--tpr", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sklearn", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    ids = rng.normal(1.0, 1.0, args.n).astype(args.dtype)
    ood = rng.normal(0.0, 1.0, args.n).astype(args.dtype)
    input_mib = (ids.nbytes + ood.nbytes) / 2**20

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}"
    )
    print(
        f"n = {args.n:,} ID + {args.n:,} OOD scores, {args.dtype} ({input_mib:.0f} MiB), "
        f"tpr = {args.tpr}, repeats = {args.repeats}"
    )

    ours_times, ours_cpu, ours = timed(lambda: ood_metrics(ids, ood, tpr=args.tpr), args.repeats)
    ours_med = statistics.median(ours_times)
    print(
        f"isomax ood_metrics : median {ours_med:7.3f} s wall, "
        f"{statistics.median(ours_cpu):7.3f} s CPU; runs {fmt(ours_times)}"
    )
    if not args.skip_sklearn:
        sk_times, sk_cpu, sk = timed(lambda: sklearn_metrics(ids, ood, args.tpr), args.repeats)
        sk_med = statistics.median(sk_times)
        print(
            f"scikit-learn       : median {sk_med:7.3f} s wall, "
            f"{statistics.median(sk_cpu):7.3f} s CPU; runs {fmt(sk_times)}"
        )
        print(f"speed-up (sklearn / isomax, median wall): {sk_med / ours_med:.1f}x")
        assert isinstance(ours, dict) and isinstance(sk, dict)
        diff = max(abs(ours[k] - sk[k]) for k in sk)  # ours adds the trapezoidal AUPRs
        print(f"max |difference| over the six metrics: {diff:.2e}")

    ours_peak = peak_mib(lambda: ood_metrics(ids, ood, tpr=args.tpr))
    print(f"peak extra memory, isomax : {ours_peak:8.0f} MiB (tracemalloc, inputs excluded)")
    if not args.skip_sklearn:
        sk_peak = peak_mib(lambda: sklearn_metrics(ids, ood, args.tpr))
        print(f"peak extra memory, sklearn: {sk_peak:8.0f} MiB (tracemalloc, inputs excluded)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"process max RSS: {rss:.0f} MiB")
    assert isinstance(ours, dict)
    for key, value in ours.items():
        print(f"  {key:20s} {value:.6f}")


def fmt(times: list[float]) -> str:
    return " ".join(f"{t:.3f}" for t in times)


if __name__ == "__main__":
    main()
