"""Test session settings (one intra-op thread per worker) and shared fixtures.

The suite runs under pytest-xdist with one worker per core; letting every worker also spawn one
OpenMP thread per core oversubscribes the machine and makes small tensor ops orders of
magnitude slower (measured here: a 100k-element copy took 7.7 ms with 2 threads under load and
0.03 ms with 1). Heavy modules are imported where used, so that the xdist controller, which runs
no test, does not pay for them.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

if TYPE_CHECKING:
    from torch import Tensor


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # the xdist controller: it only hands out tests
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


# ---------------------------------------------------------------------- files for bad-input tests

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _png_bytes(size: int = 8, mode: str = "L") -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    shape = (size, size) if mode == "L" else (size, size, 3)
    buf = io.BytesIO()
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def png_bytes() -> Callable[..., bytes]:
    """``png_bytes(size=8, mode="L")``: the bytes of a small random PNG image."""
    return _png_bytes


class _Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class Pickles(NamedTuple):
    files: dict[str, Path]
    marker: Path  # exists only if a payload ran
    refusal: str  # the message pattern of a refused file


@pytest.fixture
def pickles(tmp_path) -> Pickles:
    """Malicious files: a raw pickle (protocol 4 and 0) and a torch.save archive."""
    import torch

    marker = tmp_path / "PWNED"
    payload = _Payload(marker)
    for protocol in (4, 0):
        pickle.loads(pickle.dumps(payload, protocol=protocol))  # the payload runs code ...
        assert marker.exists()
        marker.unlink()  # ... so its absence below proves nothing was unpickled
    files = {
        "pickle4": tmp_path / "model.pkl",
        "pickle0": tmp_path / "model0.safetensors",
        "torch_save": tmp_path / "model.pt",
    }
    files["pickle4"].write_bytes(pickle.dumps(payload, protocol=4))
    files["pickle0"].write_bytes(pickle.dumps(payload, protocol=0))
    torch.save({"state": payload}, files["torch_save"])
    refusal = (
        r"(holds a pickle .*isomax refuses to load it because unpickling can execute code"
        r"|is not a valid safetensors file)"
    )
    return Pickles(files, marker, refusal)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A 1-epoch digits_mlp (IsoMax+) checkpoint and its detector, made with the CLI."""
    from isomax.cli import main

    out = tmp_path_factory.mktemp("digits_run") / "run"
    args = ["--model", "digits_mlp", "--epochs", "1", "--device", "cpu"]
    assert main(["train", "--dataset", "digits", *args, "--output-dir", str(out), "-q"]) == 0
    ckpt = out / "checkpoint.safetensors"
    assert main(["calibrate", str(ckpt), "--device", "cpu"]) == 0
    assert (out / "detector.safetensors").exists()
    return out


@pytest.fixture
def ckpt(digits_run) -> Path:
    """``digits_run``'s checkpoint (10 classes, IsoMax+)."""
    return digits_run / "checkpoint.safetensors"


@pytest.fixture
def detector_file(digits_run) -> Path:
    """``digits_run``'s detector."""
    return digits_run / "detector.safetensors"


def _rewrite_checkpoint(src: Path, dst: Path, edit) -> Path:
    """Copy a checkpoint with its metadata changed by ``edit(meta) -> meta``."""
    from isomax.io import load_file, save_file

    tensors, meta = load_file(src, "checkpoint")
    save_file(dst, tensors, edit(json.loads(json.dumps(meta))), "checkpoint")
    return dst


def _raw_metadata_file(src: Path, dst: Path, text: str) -> Path:
    """Copy a checkpoint's tensors with the isomax metadata replaced by ``text``."""
    from safetensors.torch import save

    from isomax.io import load_file

    tensors, _ = load_file(src, "checkpoint")
    dst.write_bytes(save(tensors, metadata={"isomax": text}))
    return dst


def _plain_safetensors(dst: Path) -> None:
    """A safetensors file without isomax metadata."""
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(dst))


def _drop_config(meta: dict) -> dict:
    del meta["config"]
    return meta


def _other_model(meta: dict) -> dict:
    meta["config"]["model"] = "digits_cnn"
    return meta


# name, how to spoil the checkpoint, the message pattern expected when loading it
_BAD_CHECKPOINTS = [
    (
        "truncated_header",
        lambda ckpt, dst: dst.write_bytes(ckpt.read_bytes()[:200]),
        r"is not a valid safetensors file \(corrupt or truncated\?\)",
    ),
    (
        "truncated_tail",
        lambda ckpt, dst: dst.write_bytes(ckpt.read_bytes()[:-100]),
        r"is not a valid safetensors file \(corrupt or truncated\?\)",
    ),
    (
        "junk",
        lambda ckpt, dst: dst.write_bytes(b"this is not a safetensors file at all"),
        r"is not a valid safetensors file \(corrupt or truncated\?\)",
    ),
    (
        "plain",
        lambda ckpt, dst: _plain_safetensors(dst),
        r"is a safetensors file but not an isomax checkpoint \(no metadata\)",
    ),
    (
        "future",
        lambda ckpt, dst: _rewrite_checkpoint(ckpt, dst, lambda m: {**m, "format_version": 99}),
        r"has format version 99; this isomax reads versions up to 1: upgrade isomax",
    ),
    (
        "bad_json",
        lambda ckpt, dst: _raw_metadata_file(ckpt, dst, "{not json"),
        r"bad_json.safetensors.*(metadata|JSON)",
    ),
    (
        "no_config",
        lambda ckpt, dst: _rewrite_checkpoint(ckpt, dst, _drop_config),
        r"no_config.safetensors.*config",
    ),
    (
        "other_model",
        lambda ckpt, dst: _rewrite_checkpoint(ckpt, dst, _other_model),
        r"the weights do not fit model 'digits_cnn' with loss 'isomaxplus'",
    ),
]


@pytest.fixture(params=_BAD_CHECKPOINTS, ids=[c[0] for c in _BAD_CHECKPOINTS])
def bad_checkpoint(request, tmp_path, ckpt) -> tuple[Path, str]:
    """(a corrupt, truncated or foreign version of ``ckpt``, the message pattern it gets)."""
    name, spoil, pattern = request.param
    path = tmp_path / f"{name}.safetensors"
    spoil(ckpt, path)
    return path, pattern


@pytest.fixture
def unreadable_checkpoint(tmp_path, ckpt) -> tuple[Path, str]:
    """A path that cannot be read as a file, and the message pattern expected for it.

    chmod 000 does not stop root, so as root the path is a folder where a file is expected.
    """
    path = tmp_path / "unreadable.safetensors"
    if IS_ROOT:
        path.mkdir()
        return path, rf"no checkpoint file at .*{path.name}"
    path.write_bytes(ckpt.read_bytes())
    path.chmod(0)
    return path, rf"(Permission denied|cannot read).*{path.name}"


@pytest.fixture
def archives(tmp_path) -> dict[str, Path]:
    """Corrupt and truncated archives, plus a file with an archive suffix that is none."""
    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    for i in range(4):
        (src / "x" / f"{i}.png").write_bytes(_png_bytes(64, "RGB"))
    tgz = tmp_path / "good.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(src, arcname="set")
    zpath = tmp_path / "good.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted((src / "x").iterdir()):
            zf.write(f, f"set/x/{f.name}")
    files = {
        "garbage_tgz": tmp_path / "garbage.tar.gz",
        "truncated_tgz": tmp_path / "cut.tar.gz",
        "truncated_zip": tmp_path / "cut.zip",
        "not_an_archive": tmp_path / "text.tar",
    }
    files["garbage_tgz"].write_bytes(b"\x1f\x8b\x08\x00 definitely not gzip data")
    data = tgz.read_bytes()
    files["truncated_tgz"].write_bytes(data[: len(data) // 2])
    data = zpath.read_bytes()
    files["truncated_zip"].write_bytes(data[: len(data) // 2])
    files["not_an_archive"].write_bytes(b"plain text " * 100)
    return files


def _he_state_dict(n: int, num_classes: int = 10, seed: int = 0) -> dict[str, Tensor]:
    """A random state dict in the published layout (module. prefix, no num_batches_tracked)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    sd: dict[str, Tensor] = {}

    def conv(name: str, cout: int, cin: int) -> None:
        sd[name] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5

    def bn(name: str, c: int) -> None:
        sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_var"] = 1 + 0.1 * torch.rand(c, generator=g)

    conv("conv1.weight", 16, 3)
    bn("bn1", 16)
    cin = 16
    for s, width in enumerate((16, 32, 64), start=1):
        for i in range(n):
            conv(f"layer{s}.{i}.conv1.weight", width, cin)
            bn(f"layer{s}.{i}.bn1", width)
            conv(f"layer{s}.{i}.conv2.weight", width, width)
            bn(f"layer{s}.{i}.bn2", width)
            cin = width
    sd["linear.weight"] = torch.randn(num_classes, 64, generator=g) * 0.1
    sd["linear.bias"] = torch.randn(num_classes, generator=g) * 0.1
    return {f"module.{k}": v for k, v in sd.items()}


@pytest.fixture(scope="session")
def make_he_state_dict():
    """Builds random weights in the published layout of He et al.'s CIFAR ResNets."""
    return _he_state_dict
