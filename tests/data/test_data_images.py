"""Image files: ImageFolder layout, unlabelled folders, corrupt files, folder/archive bundles."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from isomax.data import (
    CorruptImageError,
    ImageFilesDataset,
    ImageFolderDataset,
    TensorImageDataset,
    decode_image,
    find_images,
    get_dataset,
    get_ood_dataset,
    load_images,
    make_bundle,
    to_tensors,
)

CLASSES = ("bird", "airplane", "cat")  # written unsorted: labels must follow sorted order


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ISOMAX_CACHE", str(tmp_path_factory.mktemp("cache")))


def _save(path: Path, value: int, size=(12, 10), mode: str = "RGB", fmt: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode=mode).save(path, format=fmt)


def _folder(root: Path, per_class: int = 4, offset: int = 0) -> Path:
    for k, cls in enumerate(CLASSES):
        for i in range(per_class):
            ext = ".png" if i % 2 else ".jpg"
            _save(root / cls / f"{i + offset:03d}{ext}", 40 * k + 10)
    _save(root / "airplane" / "nested" / "deep.png", 10, mode="L")  # nested + greyscale
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root


def test_decode_and_find(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", 7, mode="L")
    rgb = decode_image(tmp_path / "a.png", 3)
    assert rgb.shape == (3, 10, 12) and rgb.dtype == torch.uint8 and int(rgb.max()) == 7
    assert decode_image(tmp_path / "a.png", 1).shape == (1, 10, 12)
    (tmp_path / "._a.png").write_bytes(b"macOS resource fork")
    assert find_images(tmp_path) == [tmp_path / "a.png"]


def test_image_folder_labels_follow_sorted_classes(tmp_path: Path) -> None:
    ds = ImageFolderDataset(_folder(tmp_path / "data"), image_size=8)
    assert ds.class_names == ("airplane", "bird", "cat")
    assert len(ds) == 13 and ds.targets.tolist().count(0) == 5
    for i in range(len(ds)):
        cls = ds.files[i].relative_to(tmp_path / "data").parts[0]
        assert ds.labels[i] == ds.class_to_idx[cls]
    x, y = ds.get_raw(len(ds) - 1)
    assert x.shape == (3, 8, 8) and x.dtype == torch.uint8 and y == 2
    assert abs(int(x.float().mean()) - 90) <= 2  # cat images are filled with 90
    xn, _ = ds[0]
    assert xn.dtype == torch.float32


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ImageFolderDataset(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    _save(tmp_path / "flat" / "x.png", 1)
    with pytest.raises(ValueError, match="no class subfolders"):
        ImageFolderDataset(tmp_path / "flat")
    _folder(tmp_path / "d")
    with pytest.raises(ValueError, match="not among the expected classes"):
        ImageFolderDataset(tmp_path / "d", classes=["airplane", "bird"])


def _with_corrupt(root: Path) -> tuple[Path, list[Path]]:
    _folder(root)
    bad1 = root / "bird" / "001.png"
    bad1.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    bad2 = root / "cat" / "002.jpg"
    bad2.write_bytes(bad2.read_bytes()[:40])  # truncated JPEG
    return root, [bad1, bad2]


def test_corrupt_image_raise_names_path(tmp_path: Path) -> None:
    root, bad = _with_corrupt(tmp_path / "d")
    ds = ImageFolderDataset(root, image_size=8)
    idx = ds.files.index(bad[0])
    with pytest.raises(CorruptImageError, match=str(bad[0])):
        ds[idx]
    with pytest.raises(CorruptImageError, match="cannot decode image file"):
        ds.load_into_memory(num_workers=2)


def test_corrupt_image_skip_counts_and_continues(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, bad = _with_corrupt(tmp_path / "d")
    ds = ImageFolderDataset(root, image_size=8, on_error="skip")
    idx = ds.files.index(bad[0])
    with caplog.at_level("WARNING"):
        x, y = ds[idx]
    assert x.shape == (3, 8, 8) and y == ds.labels[idx + 1]  # the next valid sample
    assert ds.skipped == [str(bad[0])] and str(bad[0]) in caplog.text
    ds[idx]  # already known: not logged or counted twice
    assert len(ds.skipped) == 1
    mem = ds.load_into_memory(num_workers=2)
    assert isinstance(mem, TensorImageDataset) and len(mem) == len(ds) - 2
    assert sorted(ds.skipped) == sorted(str(p) for p in bad)
    x_all, _ = to_tensors(ds)
    assert x_all.shape[0] == len(ds) - 2


def test_image_files_dataset(tmp_path: Path) -> None:
    _folder(tmp_path / "imgs")
    ds = ImageFilesDataset(tmp_path / "imgs", image_size=(6, 5), channels=1)
    assert len(ds) == 13
    x, y = ds[3]
    assert x.shape == (1, 6, 5) and y == -1
    with pytest.raises(ValueError, match="no image files"):
        ImageFilesDataset(tmp_path / "imgs" / ".hidden")
    with pytest.raises(ValueError, match="on_error"):
        ImageFilesDataset(tmp_path / "imgs", on_error="ignore")


def test_load_into_memory_matches_lazy(tmp_path: Path) -> None:
    ds = ImageFolderDataset(_folder(tmp_path / "d"), image_size=8, mean=(0.5,) * 3, std=(0.2,) * 3)
    mem = ds.load_into_memory(num_workers=3)
    assert mem.x.dtype == torch.uint8 and mem.class_names == ds.class_names
    for i in (0, 5, 12):
        assert torch.equal(mem[i][0], ds[i][0]) and mem[i][1] == ds[i][1]
    x, y = to_tensors(ds, num_workers=2, batch_size=3)
    assert torch.equal(x, mem.x) and torch.equal(y, mem.y)


def test_folder_bundle_with_train_test(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _folder(root / "train", per_class=6)
    _folder(root / "test", per_class=2, offset=100)
    b = get_dataset(f"folder:{root}", image_size=16, split_val=0.25)
    assert b.class_names == ("airplane", "bird", "cat") and b.num_classes == 3
    assert len(b.train) + len(b.val) == 19 and len(b.test) == 7
    assert b.input_shape == (3, 16, 16) and len(b.mean) == 3
    assert b.name == f"folder:{root}"
    mem = get_dataset(str(root), image_size=16, split_val=0.25, in_memory=True)
    assert [len(mem.train), len(mem.val), len(mem.test)] == [len(b.train), len(b.val), 7]
    assert np.allclose(mem.mean, b.mean, atol=1e-6)


def test_folder_bundle_without_split_folders(tmp_path: Path) -> None:
    b = get_dataset(f"folder:{_folder(tmp_path / 'flat', per_class=10)}", channels=1)
    total = len(b.train) + len(b.val) + len(b.test)
    assert total == 31 and len(b.test) == round(31 * 0.2)
    assert b.input_shape == (1, 32, 32)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_bundle_and_ood(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src"
    _folder(src / "wrapper" / "train")
    _folder(src / "wrapper" / "test", per_class=1)
    archive = tmp_path / f"data.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in sorted(src.rglob("*")):
                zf.write(p, p.relative_to(src).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(src / "wrapper", arcname="wrapper")
    cache = tmp_path / "cache"
    b = get_dataset(str(archive), root=cache, image_size=8)
    assert b.class_names == ("airplane", "bird", "cat") and len(b.test) == 4
    assert any((cache / "extracted").iterdir())
    like = make_bundle(
        "like", TensorImageDataset(torch.zeros(4, 1, 20, 20, dtype=torch.uint8) + 3, [0, 1, 0, 1]),
        TensorImageDataset(torch.zeros(2, 1, 20, 20, dtype=torch.uint8), [0, 1]), 0.0, 0, 2, "ab",
    )  # fmt: skip
    ood = get_ood_dataset(str(archive), like=like, root=cache)
    assert len(ood) == 13 + 4 and ood[0][0].shape == (1, 20, 20) and ood[0][1] == -1
    ood2 = get_ood_dataset(f"folder:{src}", like=like, max_samples=5, mode="crop")
    assert len(ood2) == 5 and ood2[4][0].shape == (1, 20, 20)


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        get_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(FileNotFoundError):
        get_dataset(str(tmp_path / "nope.tar.gz"))


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("batch", [1, 4, 1000])
def test_stream_raw_batches_equal_to_tensors_in_order(
    tmp_path: Path, workers: int, batch: int
) -> None:
    from isomax.data.core import stream_raw_batches

    root, bad = _with_corrupt(tmp_path / "d")
    ds = ImageFolderDataset(root, image_size=8, on_error="skip")
    parts = list(stream_raw_batches(ds, batch, num_workers=workers))
    assert all(len(y) <= batch for _, y in parts)
    x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    x_ref, y_ref = to_tensors(ds, num_workers=1)
    assert x.shape[0] == len(ds) - len(bad)
    assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(stream_raw_batches(ds, 0))


def test_stream_raw_batches_cuts_photo_patches_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: each decoding thread used to build the whole in-memory cache itself."""
    from isomax.data.core import stream_raw_batches
    from isomax.data.embedded import PhotoPatchDataset

    ds = PhotoPatchDataset(40, (3, 8, 8))
    cuts = []
    real_cut = PhotoPatchDataset._cut
    monkeypatch.setattr(
        PhotoPatchDataset, "_cut", lambda self, i: cuts.append(i) or real_cut(self, i)
    )
    x = torch.cat([b[0] for b in stream_raw_batches(ds, 7, num_workers=4)])
    assert sorted(cuts) == list(range(40))
    assert torch.equal(x, ds.raw_tensors()[0])


# -------------------------------------------------------------------------------- undecodable images (listed in docs/errors.md)


@pytest.fixture
def image_tree(tmp_path, png_bytes):
    """root/a: good.png, bad.png (not an image); root/b: good.png, cut.png (truncated)."""
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "good.png").write_bytes(png_bytes())
    (root / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    (root / "b" / "good.png").write_bytes(png_bytes())
    big = png_bytes(64, "RGB")
    (root / "b" / "cut.png").write_bytes(big[: len(big) // 2])
    return root


def _index(ds: ImageFolderDataset, name: str) -> int:
    return next(i for i, f in enumerate(ds.files) if f.as_posix().endswith(name))


@pytest.mark.parametrize(
    ("name", "pattern"),
    [("a/bad.png", r"cannot identify image file"), ("b/cut.png", r"image file is truncated")],
    ids=["corrupt", "truncated"],
)
def test_image_folder_on_error_raise(image_tree, name, pattern):
    ds = ImageFolderDataset(image_tree, image_size=8, channels=1, on_error="raise")
    with pytest.raises(CorruptImageError, match=rf"cannot decode image file .*{name}: {pattern}"):
        ds[_index(ds, name)]


def test_image_folder_on_error_skip(image_tree, caplog):
    ds = ImageFolderDataset(image_tree, image_size=8, channels=1, on_error="skip")
    assert len(ds) == 4
    for i in range(len(ds)):
        x, _ = ds[i]  # the undecodable ones return the next good sample
        assert x.shape == (1, 8, 8)
    assert sorted(Path(p).name for p in ds.skipped) == ["bad.png", "cut.png"]
    assert len(ds.load_into_memory(num_workers=1)) == 2
    assert "skipping undecodable image" in caplog.text


def test_image_folder_bad_on_error_value(image_tree):
    with pytest.raises(
        ValueError, match=r"on_error must be one of \('raise', 'skip'\), got 'warn'"
    ):
        ImageFolderDataset(image_tree, on_error="warn")


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image folder .*nowhere does not exist"):
        ImageFolderDataset(tmp_path / "nowhere")


def test_load_images_unreadable_file_raises(tmp_path):
    """A dangling link stands for a file that cannot be opened (chmod does not stop root)."""
    link = tmp_path / "ghost.png"
    link.symlink_to(tmp_path / "does-not-exist.png")
    with pytest.raises(CorruptImageError, match=r"cannot decode image file .*ghost.png"):
        load_images([tmp_path], (1, 8, 8), [0.0], [1.0], on_error="raise")
    with pytest.raises(ValueError, match=r"none of the 1 image files could be read"):
        load_images([tmp_path], (1, 8, 8), [0.0], [1.0], on_error="skip")


def test_optional_modules_say_what_needs_them_and_how_to_install(monkeypatch, tmp_path):
    import sys

    from isomax.data import embedded, standard
    from isomax.data.core import optional_module

    with pytest.raises(
        ImportError, match=r"^reading X needs Y; install it with: pip install 'isomax\[full\]'$"
    ):
        optional_module("isomax_no_such_module", "reading X needs Y")
    for module in ("PIL.Image", "sklearn.datasets", "scipy.io"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ImportError, match="reading image files needs Pillow; install"):
        decode_image(tmp_path / "x.png", 3)
    with pytest.raises(ImportError, match="the embedded datasets need scikit-learn; install"):
        embedded._sklearn_datasets()
    with pytest.raises(ImportError, match="reading SVHN .mat files needs SciPy; install"):
        standard.read_svhn_mat(tmp_path / "x.mat")


def test_both_image_datasets_take_the_same_keyword_options(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d")
    options = {"image_size": (6, 5), "channels": 1, "mode": "pad", "on_error": "skip"}
    for ds in (ImageFolderDataset(root, **options), ImageFilesDataset(root, **options)):
        assert ds.shape == (1, 6, 5) and ds.mode == "pad" and ds.on_error == "skip"
    for make in (ImageFolderDataset, ImageFilesDataset):
        with pytest.raises(TypeError, match="image_sise"):
            make(root, image_sise=8)
        with pytest.raises(TypeError, match="positional"):
            make(root, 8)
