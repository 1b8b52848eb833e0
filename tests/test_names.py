"""One spelling rule and one error wording for every registry of names (isomax._names)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from isomax import METHODS, get_method
from isomax._names import add_name, find_name, fold, resolve_name, unknown_name
from isomax.data import get_dataset, get_ood_dataset, list_datasets, list_ood_datasets
from isomax.data import registry as data_registry
from isomax.engine.config import PRESETS, load_config
from isomax.heads import available_heads, build_head
from isomax.models import create_model, list_models
from isomax.models import registry as model_registry
from isomax.plots import _KNOWN, _styles


class _Picked(Exception):
    """Raised by a stand-in builder: carries the registered name the lookup arrived at."""


def _picker(name: str) -> Callable[..., object]:
    def builder(*args: object, **kwargs: object) -> object:
        raise _Picked(name)

    return builder


def _picked(call: Callable[[], object]) -> str:
    with pytest.raises(_Picked) as info:
        call()
    return str(info.value)


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Model and dataset builders that only say which name was looked up (nothing is built)."""
    for module, attr in (
        (model_registry, "_MODELS"),
        (data_registry, "_DATASETS"),
        (data_registry, "_OOD_DATASETS"),
    ):
        table = getattr(module, attr)
        monkeypatch.setattr(module, attr, {name: _picker(name) for name in table})


def _head_name(spelling: str) -> str:
    built = type(build_head(spelling, 4, 3)).__name__
    by_type = {type(build_head(n, 4, 3)).__name__: n for n in reversed(available_heads())}
    return by_type[built]  # nn.Linear -> "linear" (first of "linear" and "softmax")


#: (kind in the error, the registry's names, spelling -> the name it resolves to).
REGISTRIES: dict[str, tuple[str, Callable[[], list[str]], Callable[[str], str]]] = {
    "heads": ("head", available_heads, _head_name),
    "losses": ("loss", lambda: list(METHODS), lambda s: get_method(s).name),
    "models": ("model", list_models, lambda s: _picked(lambda: create_model(s, 3))),
    "datasets": ("dataset", list_datasets, lambda s: _picked(lambda: get_dataset(s))),
    "ood-sets": (
        "dataset",
        lambda: sorted(set(list_ood_datasets()) | set(list_datasets())),
        lambda s: _picked(lambda: get_ood_dataset(s, like=None)),  # type: ignore[arg-type]
    ),
    "presets": ("preset", lambda: list(PRESETS), lambda s: load_config(preset=s).preset),
    "plot-styles": ("", lambda: list(_KNOWN), lambda s: _styles([s], "id_scores")[0][1]),
}


def _spellings(name: str) -> Iterator[str]:
    yield name
    yield name.upper()
    yield f"  {name.title()} "
    yield name.replace("-", "_")
    yield name.replace("_", "-")
    yield name.replace("-", "").replace("_", "")
    yield re.sub(r"(?<=[a-z])(?=\d)", "-", name)  # resnet18 -> resnet-18
    yield name.replace("plus", "+")
    yield name.replace("plus", "_plus")


@pytest.mark.usefixtures("stand_ins")
@pytest.mark.parametrize("registry", list(REGISTRIES))
def test_every_registry_accepts_the_same_spellings(registry: str) -> None:
    _, names, resolve = REGISTRIES[registry]
    assert names() and len({fold(n) for n in names()}) == len(names())  # no two spelt alike
    for name in names():
        expected = resolve(name)
        for spelling in _spellings(name):
            assert resolve(spelling) == expected, (registry, name, spelling)
    if registry == "plot-styles":
        assert {resolve(n) for n in names()} == {display for display, _ in _KNOWN.values()}


@pytest.mark.usefixtures("stand_ins")
@pytest.mark.parametrize("registry", [r for r in REGISTRIES if r != "plot-styles"])
def test_every_registry_names_the_choices_of_an_unknown_name(registry: str) -> None:
    kind, names, resolve = REGISTRIES[registry]
    with pytest.raises(ValueError) as info:
        resolve("nope")
    message = str(info.value)
    assert message.startswith(f"unknown {kind} 'nope'; valid names: {names()[0]}, ")
    for name in names():
        assert re.search(rf"[:,] {re.escape(name)}\b", message), (name, message)


@pytest.mark.usefixtures("stand_ins")
def test_names_accepted_before_are_still_accepted() -> None:
    for spelling in ("isomax+", "IsoMax+", "isomaxplus", "isomax_plus", "isomax-plus"):
        assert _head_name(spelling) == "isomaxplus"
        assert get_method(spelling).name == "isomaxplus"
        assert _styles([spelling], "x")[0][1] == "IsoMax+"
    assert _head_name("softmax") == _head_name("linear") == "linear"
    datasets = {
        "cifar-10": "cifar10",
        "CIFAR-100": "cifar100",
        "fashion_mnist": "fashion-mnist",
        "fashionmnist": "fashion-mnist",
        " Digits ": "digits",
    }
    for spelling, name in datasets.items():
        assert _picked(lambda s=spelling: get_dataset(s)) == name
    ood = {
        "tiny-imagenet": "tinyimagenet",
        "tinyimagenet-resize": "tinyimagenet",
        "imagenet-resize": "tinyimagenet",
        "lsun-resize": "lsun",
        "noise": "gaussian",
        "Noise": "gaussian",
        "LSUN_crop": "lsun-crop",
    }
    for spelling, name in ood.items():
        assert _picked(lambda s=spelling: get_ood_dataset(s, like=None)) == name  # type: ignore[arg-type]
    assert _picked(lambda: create_model("Digits-MLP", 3)) == "digits_mlp"
    assert _picked(lambda: create_model("WRN28-10", 3)) == "wrn28_10"


def test_fold_is_one_rule() -> None:
    assert fold("IsoMax+") == fold("isomax_plus") == fold(" Isomax-Plus ") == "isomaxplus"
    assert fold("Fashion-MNIST") == fold("fashion_mnist") == "fashionmnist"
    assert fold("max-logit") == fold("MaxLogit") == "maxlogit"


def test_find_and_resolve_name() -> None:
    choices = ["max_logit", "mps"]
    assert find_name("Max-Logit", choices) == "max_logit"
    assert find_name("msp", choices, {"msp": "mps"}) == "mps"
    assert find_name("MSP", choices, {"msp": "mps"}) == "mps"
    assert find_name("nope", choices, {"nope": "absent"}) is None  # alias of a missing entry
    assert find_name(3, choices) is None
    with pytest.raises(ValueError, match=r"^unknown score 3; valid names: max_logit, mps$"):
        resolve_name("score", 3, choices)
    with pytest.raises(
        ValueError,
        match=r"^unknown score 'x'; valid names: max_logit, mps \(also: msp = mps\), or a file$",
    ):
        raise unknown_name("score", "x", choices, {"msp": "mps", "maxlogit": "max_logit"}, "a file")


def test_add_name_refuses_a_second_spelling_of_a_taken_name() -> None:
    table: dict[str, int] = {}
    assert add_name("model", table, " Tiny-Net ", 1) == "tiny-net"
    with pytest.raises(ValueError, match=r"^model 'tiny-net' is already registered"):
        add_name("model", table, "TINY_NET", 2)
    assert add_name("model", table, "tiny_net", 3, overwrite=True) == "tiny_net"
    assert table == {"tiny_net": 3}
    with pytest.raises(ValueError, match="non-empty string"):
        add_name("model", table, "  ", 4)


@pytest.mark.usefixtures("stand_ins")
def test_registries_refuse_a_second_spelling() -> None:
    with pytest.raises(ValueError, match="model 'digits_mlp' is already registered"):
        model_registry.register_model("Digits-MLP")(_picker("x"))
    with pytest.raises(ValueError, match="dataset 'fashion-mnist' is already registered"):
        data_registry.register_dataset("fashion_mnist")(_picker("x"))
    data_registry.register_ood_dataset("My-Set")(_picker("my-set"))
    assert _picked(lambda: get_ood_dataset("my_set", like=None)) == "my-set"  # type: ignore[arg-type]
