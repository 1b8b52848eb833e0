"""Fine-tuning step time on the CPU: float32 against bf16 autocast and channels-last.

On CPUs with AMX (Intel Xeon 4th generation and later) bf16 matrix products run on the tile
units, so a training step of the thin CIFAR ResNets takes about half the float32 time. This
measures, for each network, one SGD step (forward, cross-entropy, backward, step) at batch 128
on 32x32 inputs in four settings, interleaved over rounds, and reports the median seconds per
step and the ratio to float32 measured in the same run. ``isomax finetune`` (or ``train``)
takes the fast setting with ``--amp bf16 --channels-last``.

Run::

    python benchmarks/cpu_precision.py --nets resnet20,resnet56 --rounds 5 --out result.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _machine import save_result

SETTINGS = (("float32", "none", False), ("float32 + channels-last", "none", True),
            ("bf16", "bf16", False), ("bf16 + channels-last", "bf16", True))  # fmt: skip


def step_seconds(net: str, amp: str, channels_last: bool, batch: int, steps: int) -> float:
    """Median seconds of ``steps`` SGD steps (after one warm-up step)."""
    from isomax.models import create_model

    torch.manual_seed(0)
    model = create_model(net, num_classes=10)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", default="resnet20,resnet56")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=4, help="timed steps per setting and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON file for the full result")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for net in args.nets.split(","):
        per: dict[str, list[float]] = {name: [] for name, _, _ in SETTINGS}
        for _ in range(args.rounds):  # interleaved: noise hits every setting alike
            for name, amp, cl in SETTINGS:
                per[name].append(step_seconds(net, amp, cl, args.batch, args.steps))
        base = statistics.median(per["float32"])
        for name, _, _ in SETTINGS:
            med = statistics.median(per[name])
            rows.append({"net": net, "setting": name, "s_per_step": med, "ratio": med / base})
    machine = save_result(args.out, torch.device("cpu"), args, rows)
    print(f"{machine}, torch {torch.__version__}, batch {args.batch}")
    print("| net | setting | s / step (median) | time vs float32 |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['net']} | {r['setting']} | {r['s_per_step']:.3f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
