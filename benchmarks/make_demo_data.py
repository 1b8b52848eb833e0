"""Build ``src/isomax/data/files/fashion_mnist_small.npz``, the demo's embedded data set.

A seeded, class-balanced subset of Fashion-MNIST (Zalando SE, MIT licence), downscaled from
28x28 to 14x14 by 2x2 area averaging and stored as uint8. Reads the original ``*-idx?-ubyte.gz``
files, e.g. from Debian's ``dataset-fashion-mnist`` package:

    python benchmarks/make_demo_data.py --source /usr/share/datasets/fashion-mnist
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

import numpy as np

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def _idx(path: Path, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.open(path).read(), np.uint8, offset=offset)


def _subset(x: np.ndarray, y: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    idx = np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(10)])
    )
    small = x[idx].reshape(-1, 14, 2, 14, 2).astype(np.float64).mean(axis=(2, 4))
    return np.round(small).astype(np.uint8)[:, None], y[idx].astype(np.int64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--output", default=str(Path(__file__).parents[1] / "src/isomax/data/files"))
    args = p.parse_args()
    src = Path(args.source)
    xtr = _idx(src / "train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    ytr = _idx(src / "train-labels-idx1-ubyte.gz", 8)
    xte = _idx(src / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    yte = _idx(src / "t10k-labels-idx1-ubyte.gz", 8)
    x_train, y_train = _subset(xtr, ytr, args.train_per_class, seed=0)
    x_test, y_test = _subset(xte, yte, args.test_per_class, seed=1)
    out = Path(args.output) / "fashion_mnist_small.npz"
    np.savez_compressed(
        out,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=np.array(CLASSES),
    )
    print(out, out.stat().st_size, "bytes, sha256", hashlib.sha256(out.read_bytes()).hexdigest())


if __name__ == "__main__":
    main()
