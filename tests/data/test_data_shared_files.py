"""The offline copies in ../shared/data (each test skips when its file is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from isomax.data import (
    DatasetBundle,
    TensorImageDataset,
    get_dataset,
    get_ood_dataset,
    make_bundle,
    to_tensors,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CIFAR_JPG = SHARED / "cifar10_jpg.tar.xz"
TINY = SHARED / "tinyimagenet_val10k.tar.xz"
MNIST_TEST = SHARED / "mnist_test"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ISOMAX_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def like32() -> DatasetBundle:
    x = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    x[1::2] = 200
    ds = TensorImageDataset(x, [0, 1, 0, 1])
    return make_bundle("like", ds, TensorImageDataset(x[:2], [0, 1]), 0.0, 0, 2, "ab")


@pytest.mark.skipif(not (MNIST_TEST / "t10k-images-idx3-ubyte.gz").is_file(), reason="no copy")
def test_shared_mnist_as_ood_for_cifar_shape(like32: DatasetBundle) -> None:
    ood = get_ood_dataset("mnist", like=like32, root=MNIST_TEST)
    assert len(ood) == 10_000
    x, y = to_tensors(ood)
    assert x.shape == (10_000, 3, 32, 32) and x.dtype == torch.uint8 and set(y.tolist()) == {-1}
    assert int(x[:, :, :2].max()) == 0 and int(x.max()) == 255  # padded 28 -> 32


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR_JPG.is_file(), reason="no ../shared/data/cifar10_jpg.tar.xz")
def test_shared_cifar10_jpg_archive(tmp_path: Path) -> None:
    b = get_dataset(str(CIFAR_JPG), root=tmp_path, stats_samples=200)
    assert b.class_names == CIFAR10_CLASSES and b.num_classes == 10
    assert len(b.train) + len(b.val) == 50_000 and len(b.test) == 10_000
    assert len(b.val) == 5_000 and b.input_shape == (3, 32, 32)
    extracted = next((tmp_path / "extracted").iterdir())
    assert (extracted / "train" / "airplane").is_dir()
    test = b.test  # labels follow the class folder of each file
    assert test.targets.bincount().tolist() == [1000] * 10
    for i in (0, 999, 1000, 3456, 9999):
        assert CIFAR10_CLASSES[test.labels[i]] == test.files[i].parent.name
    x, y = to_tensors(torch.utils.data.Subset(test, [0, 5000, 9999]), raw=False)
    assert x.shape == (3, 3, 32, 32) and y.tolist() == [0, 5, 9]
    raw, _ = test.raw_batch([0, 1])
    assert raw.dtype == torch.uint8 and raw.shape == (2, 3, 32, 32)
    again = get_dataset(str(CIFAR_JPG), root=tmp_path, stats_samples=50)  # reuses the extraction
    assert len(again.test) == 10_000


@pytest.mark.slow
@pytest.mark.skipif(not TINY.is_file(), reason="no ../shared/data/tinyimagenet_val10k.tar.xz")
def test_shared_tinyimagenet_archive(like32: DatasetBundle) -> None:
    ood = get_ood_dataset(str(TINY), like=like32)  # unpacked into $ISOMAX_CACHE
    assert len(ood) == 10_000
    x, y = to_tensors(torch.utils.data.Subset(ood, range(0, 10_000, 1250)), raw=False)
    assert x.shape == (8, 3, 32, 32) and set(y.tolist()) == {-1}
    named = get_ood_dataset("tinyimagenet", like=like32, root=TINY, max_samples=16)  # same copy
    assert len(named) == 16 and named[3][0].shape == (3, 32, 32)
