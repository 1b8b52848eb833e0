"""Datasets that need no download: scikit-learn's digits and photos, and synthetic noise.

In-distribution:

* ``digits``: scikit-learn's ``load_digits`` (1,797 greyscale 8x8 images, values 0..16 scaled
  to [0, 1]), 10 classes. A fixed, stratified 30% of every class (seed 0, independent of the
  ``seed`` argument) is the test split; ``split_val`` of the rest (seeded by ``seed``) is the
  validation split; the remainder is train. With the default ``split_val=0.1`` that is about
  63/7/30 percent; ``split_val=1/7`` gives 60/10/30.
* ``digits-0to4``: the same split restricted to classes 0..4 (open-set / near-OOD protocol).
* ``fashion-mnist-small``: a class-balanced subset of Fashion-MNIST shipped with the package
  (``files/fashion_mnist_small.npz``, 400 KB, MIT licence, made by
  ``benchmarks/make_demo_data.py``): 2,000 training and 1,000 test images downscaled to 14x14,
  10 classes; ``split_val`` of the training images (seeded by ``seed``) is the validation split.
  The demo's data set, with scikit-learn's handwritten ``digits`` as the MNIST-like OOD set.

OOD:

* ``digits-5to9``: the test-split images of classes 5..9 (near-OOD for ``digits-0to4``).
* ``gaussian``: i.i.d. N(0.5, 1) pixels clipped to [0, 1] (as in ODIN); ``uniform``: i.i.d.
  U(0, 1) pixels. Both are generated deterministically per index from ``(seed, index)``;
  default 1,000 samples, or ``max_samples``.
* ``photos``: patches of scikit-learn's two sample photos (``china.jpg``, ``flower.jpg``) cut at
  seeded random positions and scales (10-60% of the shorter side, with the ID aspect ratio),
  resized to the ID shape; default 1,000 samples, or ``max_samples``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from .core import (
    ImageDataset,
    Shape,
    TensorImageDataset,
    _check_index,
    fit_image,
    optional_module,
)
from .registry import (
    DEFAULT_OOD,
    DatasetBundle,
    as_ood,
    make_bundle,
    register_dataset,
    register_ood_dataset,
)

__all__ = ["NoiseDataset", "PhotoPatchDataset", "digits_test_mask"]

DIGITS_TEST_FRACTION = 0.3
DEFAULT_SYNTHETIC_SAMPLES = 1000


def _sklearn_datasets() -> Any:
    return optional_module("sklearn.datasets", "the embedded datasets need scikit-learn")


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[Tensor, Tensor]:
    data = _sklearn_datasets().load_digits()
    x = torch.from_numpy((np.asarray(data.images, dtype=np.float32) / 16.0)[:, None])
    y = torch.from_numpy(np.asarray(data.target, dtype=np.int64))
    return x, y


def digits_test_mask(y: Tensor) -> Tensor:
    """Boolean mask of the fixed digits test split: 30% of every class, seed 0."""
    rng = np.random.default_rng(0)
    labels = y.numpy()
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        chosen = rng.permutation(idx)[: round(len(idx) * DIGITS_TEST_FRACTION)]
        mask[chosen] = True
    return torch.from_numpy(mask)


def _digits_parts(classes: range) -> tuple[TensorImageDataset, TensorImageDataset]:
    x, y = _digits_arrays()
    test_mask = digits_test_mask(y)
    keep = torch.isin(y, torch.tensor(list(classes)))
    names = [str(c) for c in classes]
    train = TensorImageDataset(x[keep & ~test_mask], y[keep & ~test_mask], class_names=names)
    test = TensorImageDataset(x[keep & test_mask], y[keep & test_mask], class_names=names)
    return train, test


@register_dataset("digits")
def _digits(
    root: Any = None, split_val: float = 0.1, seed: int = 0, download: bool = False
) -> DatasetBundle:
    train, test = _digits_parts(range(10))
    return make_bundle("digits", train, test, split_val, seed, 10, [str(c) for c in range(10)])


@register_dataset("digits-0to4")
def _digits_0to4(
    root: Any = None, split_val: float = 0.1, seed: int = 0, download: bool = False
) -> DatasetBundle:
    train, test = _digits_parts(range(5))
    return make_bundle(
        "digits-0to4",
        train,
        test,
        split_val,
        seed,
        5,
        [str(c) for c in range(5)],
        ood_names=("digits-5to9", *DEFAULT_OOD),
    )


FASHION_FILE = "fashion_mnist_small.npz"


@functools.lru_cache(maxsize=1)
def _fashion_arrays() -> dict[str, Any]:
    from importlib.resources import files

    with files("isomax.data").joinpath("files", FASHION_FILE).open("rb") as fh:
        with np.load(fh, allow_pickle=False) as data:
            return {k: data[k].copy() for k in data.files}


@register_dataset("fashion-mnist-small")
def _fashion_mnist_small(
    root: Any = None, split_val: float = 0.1, seed: int = 0, download: bool = False
) -> DatasetBundle:
    d = _fashion_arrays()
    names = [str(c) for c in d["class_names"]]
    train = TensorImageDataset(
        torch.from_numpy(d["x_train"]), torch.from_numpy(d["y_train"]), class_names=names
    )
    test = TensorImageDataset(
        torch.from_numpy(d["x_test"]), torch.from_numpy(d["y_test"]), class_names=names
    )
    return make_bundle(
        "fashion-mnist-small",
        train,
        test,
        split_val,
        seed,
        10,
        names,
        ood_names=("digits", *DEFAULT_OOD),
    )


@register_ood_dataset("digits-5to9")
def _digits_5to9(
    like: DatasetBundle,
    root: Any = None,
    download: bool = False,
    max_samples: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    _, test = _digits_parts(range(5, 10))
    return as_ood(test, like)


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])


class NoiseDataset(ImageDataset):
    """Synthetic noise images in [0, 1], deterministic per ``(seed, index)``, labels ``-1``.

    ``kind="gaussian"``: N(``loc``, ``scale``) clipped to [0, 1]; ``kind="uniform"``: U(0, 1).
    """

    def __init__(
        self,
        kind: str,
        num_samples: int,
        shape: Shape,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        seed: int = 0,
        loc: float = 0.5,
        scale: float = 1.0,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if kind not in ("gaussian", "uniform"):
            raise InputError(f"kind must be 'gaussian' or 'uniform', got {kind!r}")
        if num_samples <= 0:
            raise InputError(f"num_samples must be positive, got {num_samples}")
        super().__init__(shape, mean, std, transform)
        self.kind = kind
        self.num_samples = int(num_samples)
        self.seed = seed
        self.loc = loc
        self.scale = scale

    def __len__(self) -> int:
        return self.num_samples

    def get_raw(self, index: int) -> tuple[Tensor, int]:
        rng = _rng(self.seed, index)
        if self.kind == "gaussian":
            arr = rng.normal(self.loc, self.scale, size=self.shape)
        else:
            arr = rng.uniform(0.0, 1.0, size=self.shape)
        return torch.from_numpy(np.clip(arr, 0.0, 1.0).astype(np.float32)), -1

    def _empty_batch(self) -> tuple[Tensor, Tensor]:
        return torch.empty((0, *self.shape)), torch.empty(0, dtype=torch.int64)


@functools.lru_cache(maxsize=1)
def _sample_photos() -> tuple[Tensor, ...]:
    images = _sklearn_datasets().load_sample_images().images
    return tuple(
        torch.from_numpy(np.array(im, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        for im in images
    )


class PhotoPatchDataset(ImageDataset):
    """Patches of scikit-learn's sample photos, deterministic per ``(seed, index)``, labels -1."""

    def __init__(
        self,
        num_samples: int,
        shape: Shape,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        seed: int = 0,
        min_scale: float = 0.1,
        max_scale: float = 0.6,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if num_samples <= 0:
            raise InputError(f"num_samples must be positive, got {num_samples}")
        if not 0.0 < min_scale <= max_scale <= 1.0:
            raise InputError("need 0 < min_scale <= max_scale <= 1")
        super().__init__(shape, mean, std, transform)
        self.num_samples = int(num_samples)
        self.seed = seed
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.photos = _sample_photos()
        self._cache: Tensor | None = None

    def __len__(self) -> int:
        return self.num_samples

    def raw_tensors(self) -> tuple[Tensor, Tensor]:
        """All patches, cut once and kept (a few MB), so repeated evaluations are fast."""
        if self._cache is None:
            self._cache = torch.stack([self._cut(i) for i in range(self.num_samples)])
        return self._cache, torch.full((self.num_samples,), -1, dtype=torch.int64)

    def get_raw(self, index: int) -> tuple[Tensor, int]:
        index = _check_index(index, self.num_samples)
        return self.raw_tensors()[0][index], -1

    def _cut(self, index: int) -> Tensor:
        rng = _rng(self.seed, index)
        photo = self.photos[int(rng.integers(len(self.photos)))]
        _, ph, pw = photo.shape
        c, h, w = self.shape
        side = rng.uniform(self.min_scale, self.max_scale) * min(ph, pw)
        aspect = w / h
        ch = max(2, min(ph, round(side / np.sqrt(aspect))))
        cw = max(2, min(pw, round(side * np.sqrt(aspect))))
        top = int(rng.integers(0, ph - ch + 1))
        left = int(rng.integers(0, pw - cw + 1))
        patch = photo[:, top : top + ch, left : left + cw]
        if ch >= h and cw >= w:
            # shrinking: an area average is an antialiased resize, and far cheaper than
            # antialiased interpolation on big patches
            small = F.adaptive_avg_pool2d(patch.float().unsqueeze(0), (h, w))[0]
            patch = small.round_().clamp_(0, 255).to(torch.uint8)
        return fit_image(patch, (h, w), c, "resize")


def _count(max_samples: int | None, num_samples: int | None) -> int:
    if num_samples is not None:
        return int(num_samples)
    return DEFAULT_SYNTHETIC_SAMPLES if max_samples is None else int(max_samples)


@register_ood_dataset("gaussian")
def _gaussian(
    like: DatasetBundle,
    root: Any = None,
    download: bool = False,
    max_samples: int | None = None,
    seed: int = 0,
    num_samples: int | None = None,
    loc: float = 0.5,
    scale: float = 1.0,
) -> ImageDataset:
    n = _count(max_samples, num_samples)
    return NoiseDataset("gaussian", n, like.input_shape, like.mean, like.std, seed, loc, scale)


@register_ood_dataset("uniform")
def _uniform(
    like: DatasetBundle,
    root: Any = None,
    download: bool = False,
    max_samples: int | None = None,
    seed: int = 0,
    num_samples: int | None = None,
) -> ImageDataset:
    n = _count(max_samples, num_samples)
    return NoiseDataset("uniform", n, like.input_shape, like.mean, like.std, seed)


@register_ood_dataset("photos")
def _photos(
    like: DatasetBundle,
    root: Any = None,
    download: bool = False,
    max_samples: int | None = None,
    seed: int = 0,
    num_samples: int | None = None,
) -> ImageDataset:
    n = _count(max_samples, num_samples)
    return PhotoPatchDataset(n, like.input_shape, like.mean, like.std, seed)
