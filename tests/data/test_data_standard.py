"""Standard-set readers on small synthetic fixture files (CIFAR binary, IDX, SVHN .mat, ODIN)."""

from __future__ import annotations

import gzip
import hashlib
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from isomax.data import (
    RESOURCES,
    ChecksumError,
    DatasetBundle,
    DatasetNotFoundError,
    RemoteFile,
    TensorImageDataset,
    get_dataset,
    get_ood_dataset,
    make_bundle,
    read_cifar_binary,
    read_idx,
    read_svhn_mat,
    to_tensors,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ISOMAX_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def like32() -> DatasetBundle:
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator())
    ds = TensorImageDataset(x, [0, 1, 0, 1, 0, 1])
    return make_bundle("like", ds, TensorImageDataset(x[:2], [0, 1]), 0.0, 0, 2, "ab")


# --------------------------------------------------------------------------- CIFAR
def _cifar_records(labels: list[tuple[int, ...]]) -> bytes:
    out = bytearray()
    for k, lab in enumerate(labels):
        out += bytes(lab)
        for channel in range(3):  # plane value encodes (record, channel)
            out += bytes([(10 * k + 50 * channel) % 256]) * 1024
    return bytes(out)


def _write_cifar10(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for b in range(1, 6):
        recs = [((3 * b + i) % 10,) for i in range(3)]
        (folder / f"data_batch_{b}.bin").write_bytes(_cifar_records(recs))
    (folder / "test_batch.bin").write_bytes(_cifar_records([(9,), (0,), (4,)]))
    return folder


def test_read_cifar_binary_layout(tmp_path: Path) -> None:
    path = tmp_path / "b.bin"
    path.write_bytes(_cifar_records([(7,), (2,)]))
    x, labels = read_cifar_binary(path, 1)
    assert x.shape == (2, 3, 32, 32) and labels[:, 0].tolist() == [7, 2]
    assert x[1, 0, 0, 0] == 10 and x[1, 1, 31, 31] == 60 and x[0, 2, 5, 5] == 100
    path.write_bytes(b"\x00" * 3000)
    with pytest.raises(ValueError, match="3073-byte CIFAR record"):
        read_cifar_binary(path, 1)


def test_cifar10_from_root(tmp_path: Path) -> None:
    _write_cifar10(tmp_path / "data" / "cifar-10-batches-bin")
    b = get_dataset("cifar10", root=tmp_path / "data", split_val=0.2)
    assert b.class_names[0] == "airplane" and b.class_names[9] == "truck"
    assert len(b.train) + len(b.val) == 15 and len(b.val) == 3 and len(b.test) == 3
    x, y = b.test.raw_tensors()
    assert y.tolist() == [9, 0, 4] and x.dtype == torch.uint8 and b.input_shape == (3, 32, 32)
    assert b.ood_names[:3] == ("svhn", "tinyimagenet", "lsun")


def test_cifar10_archive_checked_and_unpacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _write_cifar10(tmp_path / "src" / "cifar-10-batches-bin")
    root = tmp_path / "root"
    root.mkdir()
    archive = root / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="cifar-10-batches-bin")
    remote = RESOURCES["cifar10"]["archive"]
    monkeypatch.setitem(
        RESOURCES["cifar10"], "archive", RemoteFile(remote.filename, remote.urls, md5="0" * 32)
    )
    with pytest.raises(ChecksumError, match="md5"):
        get_dataset("cifar10", root=root)
    assert not (root / "extracted").exists()
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(
        RESOURCES["cifar10"], "archive", RemoteFile(remote.filename, remote.urls, md5=md5)
    )
    b = get_dataset("cifar10", root=root)
    assert len(b.test) == 3 and (root / "extracted").is_dir()
    ood = get_ood_dataset("cifar10", like=b, root=root)  # reuses the extraction
    assert len(ood) == 3 and ood[0][1] == -1


def test_cifar10_download_with_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write_cifar10(tmp_path / "src" / "cifar-10-batches-bin")
    archive = tmp_path / "server" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="cifar-10-batches-bin")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(
        RESOURCES["cifar10"],
        "archive",
        RemoteFile("cifar-10-binary.tar.gz", (archive.as_uri(),), sha256=sha),
    )
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DatasetNotFoundError) as err:
        get_dataset("cifar10", root=root)
    assert str(root) in str(err.value) and archive.as_uri() in str(err.value)
    b = get_dataset("cifar10", root=root, download=True)
    assert (root / "cifar10" / "cifar-10-binary.tar.gz").is_file() and len(b.test) == 3


def test_cifar_not_found_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        get_dataset("cifar100", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "cifar-100-binary.tar.gz" in msg and "download=True" in msg


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(_cifar_records([(1, 99), (19, 5), (3, 0)]))
    (folder / "test.bin").write_bytes(_cifar_records([(4, 42)]))
    fine = get_dataset("cifar100", root=tmp_path, split_val=0.0)
    assert fine.num_classes == 100 and fine.class_names[-1] == "worm"
    assert to_tensors(fine.train)[1].tolist() == [99, 5, 0]
    coarse = get_dataset("cifar100", root=tmp_path, split_val=0.0, label="coarse")
    assert coarse.num_classes == 20 and to_tensors(coarse.train)[1].tolist() == [1, 19, 3]


# --------------------------------------------------------------------------- IDX / MNIST
def _idx_bytes(arr: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write_idx(path: Path, arr: np.ndarray, code: int = 0x08, gz: bool = True) -> None:
    data = _idx_bytes(arr, code)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)


def test_read_idx_types_and_validation(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    _write_idx(tmp_path / "a.idx", arr, 0x0C, gz=False)
    assert np.array_equal(read_idx(tmp_path / "a.idx"), arr)
    f = np.linspace(0, 1, 6, dtype=np.float32)
    _write_idx(tmp_path / "f.idx.gz", f, 0x0D)
    assert np.allclose(read_idx(tmp_path / "f.idx.gz"), f)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx_bytes(np.zeros((4, 2), np.uint8), 0x08)[:-1])
    with pytest.raises(ValueError, match=r"dims \(4, 2\)"):
        read_idx(tmp_path / "short")
    (tmp_path / "code").write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="type code"):
        read_idx(tmp_path / "code")


def _write_mnist(folder: Path, prefix: str, n: int, gz: bool = True) -> None:
    images = (np.arange(n * 28 * 28) % 251).astype(np.uint8).reshape(n, 28, 28)
    ext = ".gz" if gz else ""
    _write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images, gz=gz)
    _write_idx(
        folder / f"{prefix}-labels-idx1-ubyte{ext}", np.arange(n, dtype=np.uint8) % 10, gz=gz
    )


def test_mnist_bundle_and_ood(tmp_path: Path, like32: DatasetBundle) -> None:
    raw = tmp_path / "MNIST" / "raw"  # torchvision's layout
    _write_mnist(raw, "train", 20, gz=False)
    _write_mnist(raw, "t10k", 5)
    b = get_dataset("mnist", root=tmp_path, split_val=0.1)
    assert b.input_shape == (1, 28, 28) and b.num_classes == 10 and len(b.test) == 5
    ood = get_ood_dataset("mnist", like=like32, root=tmp_path)
    x, y = to_tensors(ood)
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.uint8 and set(y.tolist()) == {-1}
    assert int(x[:, :, :2].sum()) == 0 and torch.equal(x[:, 0], x[:, 2])  # padded, grey->RGB
    assert torch.equal(x[0, 0, 2:30, 2:30], b.test.x[0, 0])


def test_mnist_test_split_alone_and_bad_pairs(tmp_path: Path, like32: DatasetBundle) -> None:
    _write_mnist(tmp_path, "t10k", 4)
    assert len(get_ood_dataset("mnist", like=like32, root=tmp_path)) == 4
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte.gz"):
        get_dataset("mnist", root=tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="expected images"):
        get_ood_dataset("mnist", like=like32, root=tmp_path)


def test_fashion_mnist(tmp_path: Path) -> None:
    folder = tmp_path / "fashion-mnist"
    _write_mnist(folder, "train", 10)
    _write_mnist(folder, "t10k", 3)
    b = get_dataset("fashion-mnist", root=tmp_path)
    assert b.class_names[-1] == "Ankle boot" and len(b.test) == 3


# --------------------------------------------------------------------------- SVHN
def test_svhn_mat(tmp_path: Path, like32: DatasetBundle) -> None:
    from scipy.io import savemat

    for split, n in (("train", 6), ("test", 3)):
        x = np.zeros((32, 32, 3, n), dtype=np.uint8)
        x[:, :, 1, :] = 77
        y = (np.arange(n) % 3 + 9).reshape(n, 1)  # 9, 10 (= digit 0), 11 -> checked below
        y[y == 11] = 1
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
    xs, ys = read_svhn_mat(tmp_path / "test_32x32.mat")
    assert xs.shape == (3, 3, 32, 32) and ys.tolist() == [9, 0, 1] and xs[0, 1, 5, 5] == 77
    b = get_dataset("svhn", root=tmp_path, split_val=0.0)
    assert b.num_classes == 10 and len(b.train) == 6
    ood = get_ood_dataset("svhn", like=like32, root=tmp_path)
    assert len(ood) == 3 and ood[0][0].shape == (3, 32, 32)
    savemat(tmp_path / "bad.mat", {"X": np.zeros((8, 8)), "y": np.zeros(1)})
    with pytest.raises(ValueError, match="expected X"):
        read_svhn_mat(tmp_path / "bad.mat")


# --------------------------------------------------------------------------- ODIN-style OOD
def test_tinyimagenet_and_lsun_from_folders(tmp_path: Path, like32: DatasetBundle) -> None:
    images = tmp_path / "tiny-imagenet-200" / "val" / "images"
    images.mkdir(parents=True)
    for i in range(4):
        mode = "L" if i == 0 else "RGB"  # some TinyImageNet images are greyscale
        shape = (64, 64) if mode == "L" else (64, 64, 3)
        Image.fromarray(np.full(shape, 30 * i, np.uint8), mode=mode).save(images / f"val_{i}.JPEG")
    (tmp_path / "tiny-imagenet-200" / "wnids.txt").write_text("n01443537\n")
    ood = get_ood_dataset("tinyimagenet", like=like32, root=tmp_path)
    x, y = to_tensors(ood)
    assert x.shape == (4, 3, 32, 32) and set(y.tolist()) == {-1}
    lsun = tmp_path / "LSUN_resize" / "LSUN_resize"
    lsun.mkdir(parents=True)
    Image.fromarray(np.zeros((36, 36, 3), np.uint8)).save(lsun / "a.jpg")
    assert get_ood_dataset("lsun", like=like32, root=tmp_path)[0][0].shape == (3, 32, 32)
    crop = get_ood_dataset("lsun-crop", like=like32, root=lsun)
    assert crop[0][0].shape == (3, 32, 32)


def test_odin_archive_not_found(tmp_path: Path, like32: DatasetBundle) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        get_ood_dataset("tinyimagenet", like=like32, root=tmp_path / "none")
    assert "Imagenet_resize.tar.gz" in str(err.value) and "dropbox" in str(err.value)
