"""Describe the machine a benchmark ran on (CPU model and threads, or the GPU's name)."""

from __future__ import annotations

import os
import platform

import torch


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def save_result(path: str | None, device: torch.device, args: object, rows: list) -> str:
    """Write the rows with the machine, torch version, date and arguments; returns the machine."""
    import json
    import time
    from pathlib import Path

    machine = describe(device)
    if path:
        result = {
            "machine": machine,
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"),
            "args": vars(args),
            "rows": rows,
        }
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
    return machine
