"""Registry, embedded datasets (digits, noise, photos), OOD shaping and tensor helpers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from isomax.data import (
    DatasetBundle,
    ImageDataset,
    TensorImageDataset,
    fit_image,
    get_dataset,
    get_ood_dataset,
    list_datasets,
    list_ood_datasets,
    make_bundle,
    normalize,
    register_dataset,
    to_tensors,
)
from isomax.data import registry as registry_mod
from isomax.data.embedded import digits_test_mask


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ISOMAX_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def digits() -> DatasetBundle:
    return get_dataset("digits")


def _cifar_like() -> DatasetBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(40) % 10
    ds = TensorImageDataset(x[:30], y[:30])
    return make_bundle("fake", ds, TensorImageDataset(x[30:], y[30:]), 0.2, 0, 10, "abcdefghij")


def test_registry_names() -> None:
    ids = list_datasets()
    for name in ("digits", "digits-0to4", "cifar10", "cifar100", "mnist", "fashion-mnist", "svhn"):
        assert name in ids
    oods = list_ood_datasets()
    for name in ("gaussian", "uniform", "photos", "digits-5to9", "tinyimagenet", "lsun", "mnist"):
        assert name in oods


def test_unknown_names_list_valid_ones(digits: DatasetBundle) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'nope'") as err:
        get_dataset("nope")
    assert "digits" in str(err.value) and "folder:PATH" in str(err.value)
    with pytest.raises(ValueError, match="gaussian"):
        get_ood_dataset("nope", like=digits)


def test_digits_bundle(digits: DatasetBundle) -> None:
    assert digits.num_classes == 10 and digits.input_shape == (1, 8, 8)
    assert digits.class_names == tuple(str(i) for i in range(10))
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert 530 <= len(digits.test) <= 545  # 30% of every class
    x, y = digits.train[0]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8) and isinstance(y, int)
    xs, _ = to_tensors(digits.train, raw=False)
    assert abs(float(xs.mean())) < 1e-4 and abs(float(xs.std()) - 1) < 1e-2  # train-normalised
    assert digits.ood_names


def _ids(ds) -> set[int]:
    return {int(i) for i in ds.indices}


def test_digits_split_deterministic_and_disjoint() -> None:
    a, b = get_dataset("digits", seed=3), get_dataset("digits", seed=3)
    assert _ids(a.train) == _ids(b.train) and _ids(a.val) == _ids(b.val)
    assert torch.equal(a.test.x, b.test.x)
    assert not _ids(a.train) & _ids(a.val)
    c = get_dataset("digits", seed=4)
    assert _ids(c.val) != _ids(a.val)  # the validation split follows the seed ...
    assert torch.equal(c.test.x, a.test.x)  # ... the test split does not
    # val is carved from train, never from test: no test image appears in train or val
    xt = {bytes(t.numpy().tobytes()) for t in a.test.x}
    xtrain, _ = to_tensors(a.train)
    xval, _ = to_tensors(a.val)
    overlap = sum(bytes(t.numpy().tobytes()) in xt for t in torch.cat([xtrain, xval]))
    assert overlap <= 5  # load_digits itself contains a handful of exact duplicates
    mask = digits_test_mask(torch.arange(10).repeat(20))
    assert int(mask.sum()) == 60  # 30% of each of the 10 classes of 20 samples


def test_split_val_fraction() -> None:
    b = get_dataset("digits", split_val=1 / 7)
    n = len(b.train) + len(b.val)
    assert len(b.val) == round(n / 7)
    b0 = get_dataset("digits", split_val=0.0)
    assert len(b0.val) == 0
    with pytest.raises(ValueError, match="split_val"):
        get_dataset("digits", split_val=1.0)


def test_digits_0to4_and_near_ood() -> None:
    b = get_dataset("digits-0to4")
    assert b.num_classes == 5 and b.ood_names[0] == "digits-5to9"
    assert set(to_tensors(b.train)[1].tolist()) == set(range(5))
    ood = get_ood_dataset("digits-5to9", like=b)
    x, y = ood[0]
    assert x.shape == (1, 8, 8) and y == -1
    assert 260 <= len(ood) <= 280  # test-split images of classes 5..9


@pytest.mark.parametrize("name", ["gaussian", "uniform", "photos", "digits-5to9"])
def test_ood_sets_have_id_shape(digits: DatasetBundle, name: str) -> None:
    ood = get_ood_dataset(name, like=digits, max_samples=20)
    assert len(ood) <= 20
    xs, ys = to_tensors(ood, raw=False)
    assert xs.shape[1:] == digits.input_shape and set(ys.tolist()) == {-1}
    assert ood.mean == digits.mean and ood.std == digits.std
    raw, _ = to_tensors(ood)
    assert float(raw.min()) >= 0 and float(to_tensors(ood)[0].float().max()) <= 255


@pytest.mark.parametrize("name", ["gaussian", "uniform", "photos"])
def test_synthetic_sets_deterministic(name: str) -> None:
    like = _cifar_like()
    a = get_ood_dataset(name, like=like, max_samples=8, seed=1)
    b = get_ood_dataset(name, like=like, max_samples=8, seed=1)
    c = get_ood_dataset(name, like=like, max_samples=8, seed=2)
    assert len(a) == 8 and a[0][0].shape == (3, 32, 32)
    assert torch.equal(a[5][0], b[5][0]) and not torch.equal(a[5][0], c[5][0])
    assert not torch.equal(a[0][0], a[1][0])
    assert len(get_ood_dataset(name, like=like)) == 1000


def test_noise_values_clipped() -> None:
    like = _cifar_like()
    raw, _ = to_tensors(get_ood_dataset("gaussian", like=like, max_samples=4))
    assert raw.dtype == torch.float32 and float(raw.min()) >= 0 and float(raw.max()) <= 1
    assert float((raw == 0).float().mean()) > 0.1  # N(0.5, 1) clipping hits the bounds


def test_to_tensors_matches_getitem(digits: DatasetBundle) -> None:
    raw, y = digits.raw("val")
    x0, y0 = digits.val[0]
    assert torch.allclose(digits.normalize(raw[:1])[0], x0) and int(y[0]) == y0
    assert raw.shape == (len(digits.val), 1, 8, 8)
    norm, _ = to_tensors(digits.val, raw=False)
    assert torch.allclose(norm[0], x0)


def test_to_tensors_generic_dataset() -> None:
    ds = TensorDataset(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 2]))
    x, y = to_tensors(ds, raw=False)
    assert x.shape == (3, 1, 2, 2) and y.tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="raw=False"):
        to_tensors(ds)


def test_dataloader_and_transform(digits: DatasetBundle) -> None:
    digits.train.transform = lambda t: t.flip(-1)
    try:
        xb, yb = next(iter(DataLoader(digits.train, batch_size=16)))
        assert xb.shape == (16, 1, 8, 8) and yb.dtype == torch.int64
        raw, _ = to_tensors(digits.train)  # transforms never apply to raw tensors
        assert torch.allclose(digits.normalize(raw[:1])[0].flip(-1), xb[0])
    finally:
        digits.train.transform = None


def test_normalize_uint8_and_float() -> None:
    x8 = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize(x8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert torch.allclose(out, torch.full_like(out, 2.0))
    assert torch.allclose(normalize(x8.float() / 255, (0.5,) * 3, (0.25,) * 3), out)
    with pytest.raises(ValueError, match="channels"):
        normalize(x8, (0.5,), (0.25,))


def test_fit_image_modes() -> None:
    img = torch.arange(28 * 28, dtype=torch.float32).reshape(1, 28, 28) / (28 * 28)
    padded = fit_image(img, (32, 32), 3, "pad")
    assert padded.shape == (3, 32, 32) and float(padded[:, :2].abs().sum()) == 0
    assert torch.equal(padded[0, 2:30, 2:30], img[0]) and torch.equal(padded[0], padded[2])
    big = torch.randint(0, 256, (3, 64, 48), dtype=torch.uint8)
    assert fit_image(big, (32, 32), 3, "resize").dtype == torch.uint8
    cropped = fit_image(big, (32, 32), 3, "crop")
    assert torch.equal(cropped, big[:, 16:48, 8:40])
    small = fit_image(big, (100, 100), 1, "crop")
    assert small.shape == (1, 100, 100)
    grey = fit_image(torch.full((3, 4, 4), 200, dtype=torch.uint8), (4, 4), 1)
    assert int(grey.max()) == 200 and grey.shape == (1, 4, 4)
    batch = fit_image(torch.rand(5, 1, 8, 8), (4, 4), 1, "resize")
    assert batch.shape == (5, 1, 4, 4) and float(batch.max()) <= 1.0
    with pytest.raises(ValueError, match="fit mode"):
        fit_image(img, (4, 4), 1, "stretch")


def test_ood_from_id_registry_name(digits: DatasetBundle) -> None:
    ood = get_ood_dataset("digits", like=_cifar_like(), max_samples=10)
    x, y = ood[0]
    assert x.shape == (3, 32, 32) and y == -1


def test_register_custom_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_mod, "_DATASETS", dict(registry_mod._DATASETS))

    @register_dataset("tiny-custom")
    def _factory(root=None, split_val=0.1, seed=0, download=False, size=12) -> DatasetBundle:
        x = torch.rand(size, 1, 4, 4)
        y = torch.arange(size) % 2
        train = TensorImageDataset(x, y)
        return make_bundle("tiny-custom", train, TensorImageDataset(x, y), split_val, seed, 2, "ab")

    assert "tiny-custom" in list_datasets()
    b = get_dataset("tiny-custom", size=20, split_val=0.25)
    assert len(b.train) == 15 and len(b.val) == 5 and isinstance(b.train, ImageDataset)
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("tiny-custom")(_factory)
    with pytest.raises(TypeError):
        get_dataset("tiny-custom", no_such_option=1)


DATASET_NAME_ERRORS = [
    pytest.param(
        lambda: get_dataset("cifar11"),
        ValueError,
        r"unknown dataset 'cifar11'; valid names: .*\bdigits\b.*, or 'folder:PATH'",
        id="unknown-dataset",
    ),
    pytest.param(
        lambda: get_ood_dataset("placesx", like=get_dataset("digits")),
        ValueError,
        r"unknown dataset 'placesx'; valid names: .*\bgaussian\b",
        id="unknown-ood-set",
    ),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), DATASET_NAME_ERRORS)
def test_unknown_dataset_rejected(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()
