"""Cost of the IsoMax-family heads against ``nn.Linear``, as ratios measured in the same run.

1. Head alone: forward + backward of each head (batch 256, D = 512, C = 10, 100, 1000), and the
   authors' ``torch.cdist(..., compute_mode="donot_use_mm_for_euclid_dist")`` form as the
   reference implementation. Twice: features at random (heads as initialised: no entry needs
   the exact recomputation of :func:`isomax.pairwise_distances`), and features near their
   class's prototype as in a trained model (every row recomputes its nearest entry exactly),
   where the plain one-matmul expansion (inexact there) is timed too, to show what exactness costs.
2. A full training step (forward, loss, backward, SGD step) of a CIFAR ResNet-18 with each head,
   and with an IsoMax+ head forced to recompute every entry exactly (the upper bound of that cost).
3. Inference images/s of a CIFAR ResNet-18 with each head.

The ResNet-18 benchmarks time a second linear-head model as a control: its ratio to the first
(ideally 1.000) shows how much of a difference is noise.


Timings are interleaved (every variant once per round, rounds repeated) and the median is
reported, so that machine noise hits all variants alike. On a CPU shared with other jobs,
``--threads 1 --clock cpu`` times the process's CPU time instead of the wall clock, which other
jobs' load disturbs far less. Run::

    python benchmarks/heads.py --device cpu            # this machine
    python benchmarks/heads.py --device cpu --threads 1 --clock cpu  # a busy shared CPU
    python benchmarks/heads.py --device cuda --amp bf16 # a GPU
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import isomax
from _machine import save_result
from isomax.models import create_model

HEADS = ("linear", "isomax", "isomaxplus", "dismax")


class ReferenceIsoMaxPlus(nn.Module):
    """The authors' formulation (cdist without the matmul trick), for comparison only."""

    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.prototypes = nn.Parameter(torch.randn(c, d))
        self.distance_scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(
            F.normalize(x),
            F.normalize(self.prototypes),
            p=2.0,
            compute_mode="donot_use_mm_for_euclid_dist",
        )
        return -torch.abs(self.distance_scale) * d


class PlainMatmulIsoMaxPlus(nn.Module):
    """The one-matmul expansion without the exact recomputation (inexact near a prototype)."""

    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.prototypes = nn.Parameter(torch.randn(c, d))
        self.distance_scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.normalize(x)
        b = F.normalize(self.prototypes)
        squared = torch.addmm(a.new_full((), 2.0), a, b.t(), alpha=-2.0)
        return -torch.abs(self.distance_scale) * squared.clamp_min(1e-12).sqrt()


class _EveryEntryExact:
    """Context: :func:`isomax.pairwise_distances` recomputes every entry by the difference."""

    def __enter__(self) -> None:
        self.saved = isomax.heads._CANCELLATION_RATIO
        isomax.heads._CANCELLATION_RATIO = float("inf")

    def __exit__(self, *exc: object) -> None:
        isomax.heads._CANCELLATION_RATIO = self.saved


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: The clock of every timing: ``time.perf_counter`` (wall) or ``time.process_time`` (CPU).
CLOCK: Callable[[], float] = time.perf_counter


def _interleaved(
    fns: dict[str, Callable[[], None]], rounds: int, inner: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of every function, timed in interleaved rounds."""
    for fn in fns.values():  # warm-up
        for _ in range(2):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            t0 = CLOCK()
            for _ in range(inner):
                fn()
            _sync(device)
            times[name].append((CLOCK() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def _head_step(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    loss = isomax.IsoMaxLoss()

    def run() -> None:
        loss(m(x), y).backward()

    return run


def bench_heads(device: torch.device, rounds: int, classes: list[int]) -> list[dict]:
    rows = []
    for c in classes:
        y = torch.randint(0, c, (256,), device=device)
        prototypes = torch.randn(c, 512, device=device)
        inputs = {
            "random": torch.randn(256, 512, device=device),
            # distance 0.1 |p| (normalised distance about 0.1): the own entry cancels
            "near": prototypes[y] + 0.1 * torch.randn(256, 512, device=device),
        }
        for features, x in inputs.items():
            x.requires_grad_(True)
            mods = {name: isomax.build_head(name, 512, c).to(device) for name in HEADS}
            if features == "near":
                mods["isomaxplus_plain_matmul"] = PlainMatmulIsoMaxPlus(512, c).to(device)
            mods["isomaxplus_cdist_reference"] = ReferenceIsoMaxPlus(512, c).to(device)
            if features == "near":
                with torch.no_grad():
                    for name, m in mods.items():
                        if name != "linear":
                            m.prototypes.copy_(prototypes)
            fns = {k: _head_step(m, x, y) for k, m in mods.items()}
            t = _interleaved(fns, rounds, 20, device)
            for name, sec in t.items():
                rows.append(
                    {
                        "bench": "head_fwd_bwd",
                        "classes": c,
                        "features": features,
                        "head": name,
                        "ms": 1e3 * sec,
                        "ratio_to_linear": sec / t["linear"],
                    }
                )
    return rows


def _models(device: torch.device, channels_last: bool) -> dict[str, nn.Module]:
    """One ResNet-18 per head, plus a second linear one: its ratio shows the timing noise."""
    torch.manual_seed(0)
    out = {}
    variants = [*zip(HEADS, HEADS), ("isomaxplus (every entry exact)", "isomaxplus")]
    for name, h in [*variants, ("linear (control)", "linear")]:
        m = create_model("resnet18", 10, head=h).to(device)
        if channels_last:
            m = m.to(memory_format=torch.channels_last)
        out[name] = m
    return out


def bench_train_step(device: torch.device, rounds: int, batch: int, amp: str) -> list[dict]:
    models = _models(device, channels_last=device.type == "cuda")
    x = torch.randn(batch, 3, 32, 32, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    ctx = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if amp == "bf16"
        else torch.autocast(device.type, enabled=False)
    )

    def step(m: nn.Module) -> Callable[[], None]:
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        loss = isomax.IsoMaxLoss(1.0 if isinstance(m.head, nn.Linear) else 10.0)

        def run() -> None:
            with ctx:
                logits = m(x)
            out = loss(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            out.backward()
            opt.step()

        return run

    def every_entry_exact(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with _EveryEntryExact():
                fn()

        return run

    fns = {k: step(m) for k, m in models.items()}
    fns = {k: every_entry_exact(f) if "every entry" in k else f for k, f in fns.items()}
    inner = 1 if device.type == "cpu" else 10
    t = _interleaved(fns, rounds, inner, device)
    return [
        {
            "bench": "resnet18_train_step",
            "batch": batch,
            "amp": amp,
            "head": k,
            "ms": 1e3 * v,
            "images_per_s": batch / v,
            "ratio_to_linear": v / t["linear"],
        }
        for k, v in t.items()
    ]


def bench_inference(device: torch.device, rounds: int, batch: int, amp: str) -> list[dict]:
    models = _models(device, channels_last=device.type == "cuda")
    x = torch.randn(batch, 3, 32, 32, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if amp == "bf16"
        else torch.autocast(device.type, enabled=False)
    )

    def infer(m: nn.Module) -> Callable[[], None]:
        m.eval()

        @torch.no_grad()
        def run() -> None:
            with ctx:
                m(x)

        return run

    inner = 2 if device.type == "cpu" else 20
    t = _interleaved({k: infer(m) for k, m in models.items()}, rounds, inner, device)
    return [
        {
            "bench": "resnet18_inference",
            "batch": batch,
            "amp": amp,
            "head": k,
            "images_per_s": batch / v,
            "ratio_to_linear": v / t["linear"],
        }
        for k, v in t.items()
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["none", "bf16"], default="none")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument(
        "--batch", type=int, default=None, help="ResNet-18 batch (default 32 CPU, 512 GPU)"
    )
    p.add_argument("--classes", default="10,100,1000")
    p.add_argument("--skip-resnet", action="store_true")
    p.add_argument("--out", default=None, help="JSON file for the full results")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall clock, or the process's CPU time (steadier on a shared CPU; CPU only)",
    )
    args = p.parse_args()
    global CLOCK
    if args.clock == "cpu":
        if args.device != "cpu":
            p.error("--clock cpu times CPU work only; use --clock wall with a GPU")
        CLOCK = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = args.batch or (32 if device.type == "cpu" else 512)
    rows = bench_heads(device, args.rounds, [int(c) for c in args.classes.split(",")])
    if not args.skip_resnet:
        rows += bench_train_step(device, args.rounds, batch, args.amp)
        rows += bench_inference(device, args.rounds, batch, args.amp)
    machine = save_result(args.out, device, args, rows)
    print(
        f"# {machine}, torch {torch.__version__}, medians of {args.rounds} interleaved rounds, "
        f"{args.clock} clock"
    )
    print(f"{'benchmark':<22}{'setting':<14}{'head':<32}{'time/ms':>10}{'ratio':>8}")
    for r in rows:
        setting = f"C={r['classes']},{r['features']}" if "classes" in r else f"batch={r['batch']}"
        ms = r.get("ms", 1e3 * r["batch"] / r["images_per_s"] if "images_per_s" in r else 0)
        print(
            f"{r['bench']:<22}{setting:<14}{r['head']:<32}{ms:>10.3f}{r['ratio_to_linear']:>8.3f}"
        )


if __name__ == "__main__":
    main()
