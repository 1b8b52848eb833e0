"""Test session settings (one intra-op thread per worker) and shared fixtures.

The suite runs under pytest-xdist with one worker per core; letting every worker also spawn one
OpenMP thread per core oversubscribes the machine and makes small tensor ops orders of
magnitude slower (measured here: a 100k-element copy took 7.7 ms with 2 threads under load and
0.03 ms with 1).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

torch.set_num_threads(1)

# Subprocesses (the CLI, torchrun) get one thread each too, and unbuffered output.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def free_port() -> int:
    """A TCP port free on the loopback interface right now (for torchrun rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The isomax CLI with a fault armed at one chosen point: the process SIGKILLs itself there, as
# a power cut or the OOM killer would, without running any clean-up. Points (N counts from 1):
#   write:NAME:N   the Nth atomic write of a file named NAME stops with half of the bytes in
#                  its temporary file (the rename never happens)
#   rename:NAME:N  the Nth atomic write of NAME has its temporary file complete and synced;
#                  the kill comes just before the rename
#   log:E          the log row of epoch E is written, its checkpoint is not
#   step:K         the Kth optimizer step of this process is about to run
# Nothing in the library knows about this: the wrapper patches it from outside.
_FAULT_WRAPPER = r"""
import os, signal, sys, tempfile
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import isomax.io
import isomax.engine.trainer
from isomax.cli import main

where, argv = sys.argv[1].split(":"), sys.argv[2:]


def die():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if where[0] in ("write", "rename"):
    # isomax.io writes through a temporary file (tempfile.mkstemp, os.fdopen) and os.replace;
    # the fault is put into the os and tempfile modules as isomax.io sees them.
    name, n = where[1], int(where[2])
    made, renamed, cut_fd = [0], [0], [None]

    class CutFile:
        def __init__(self, fh):
            self.fh = fh
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)
        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            os.fsync(self.fh.fileno())
            die()
        def __getattr__(self, attr):
            return getattr(self.fh, attr)

    class FaultyTempfile:
        def __getattr__(self, attr):
            return getattr(tempfile, attr)
        def mkstemp(self, *args, **kwargs):
            fd, tmp = tempfile.mkstemp(*args, **kwargs)
            if Path(tmp).name.startswith(f".{name}."):
                made[0] += 1
                if where[0] == "write" and made[0] == n:
                    cut_fd[0] = fd
            return fd, tmp

    class FaultyOS:
        def __getattr__(self, attr):
            return getattr(os, attr)
        def fdopen(self, fd, *args, **kwargs):
            fh = os.fdopen(fd, *args, **kwargs)
            return CutFile(fh) if fd == cut_fd[0] else fh
        def replace(self, src, dst):
            if Path(dst).name == name:
                renamed[0] += 1
                if where[0] == "rename" and renamed[0] == n:
                    die()
            return os.replace(src, dst)

    isomax.io.os, isomax.io.tempfile = FaultyOS(), FaultyTempfile()
elif where[0] == "log":
    real_logs = isomax.engine.trainer._write_logs

    def _write_logs(out, row):
        real_logs(out, row)
        if row["epoch"] == int(where[1]):
            die()

    isomax.engine.trainer._write_logs = _write_logs
elif where[0] == "step":
    steps = [0]

    def before_step(optimizer, args, kwargs):
        steps[0] += 1
        if steps[0] == int(where[1]):
            die()

    register_optimizer_step_pre_hook(before_step)
else:
    raise SystemExit(f"unknown fault point {sys.argv[1]!r}")
sys.exit(main(argv))
"""


@pytest.fixture
def isomax_killed_at():
    """``run(point, *argv)``: run ``isomax ARGV`` in a subprocess that SIGKILLs itself at
    ``point`` (see ``_FAULT_WRAPPER``); fails the test if the point is never reached."""

    def run(point: str, *argv: object) -> None:
        cmd = [sys.executable, "-c", _FAULT_WRAPPER, point, *map(str, argv)]
        proc = subprocess.run(cmd, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, (
            f"fault point {point} was never reached (exit status {proc.returncode}):\n"
            f"{proc.stderr[-3000:]}"
        )

    return run
