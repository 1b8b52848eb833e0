"""Registry and head specification of isomax.models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isomax.heads import IsoMaxPlusHead
from isomax.models import Classifier, create_model, list_models, make_head, register_model
from isomax.models import registry as registry_module

EXPECTED = [
    "densenet100",
    "digits_cnn",
    "digits_mlp",
    "mlp",
    "mnist_cnn",
    "resnet110",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet56",
    "resnet8",
    "wrn28_10",
]


class _Tiny(Classifier):
    def __init__(self, num_classes: int, head: object = "linear", in_channels: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self._attach_head(head, in_channels, num_classes)  # type: ignore[arg-type]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register models without leaking them into the others."""
    monkeypatch.setattr(registry_module, "_MODELS", dict(registry_module._MODELS))


def test_list_models_has_the_documented_names() -> None:
    assert list_models() == EXPECTED
    resnets = list_models("resnet*")
    assert resnets == [n for n in EXPECTED if n.startswith("resnet")] and len(resnets) == 8
    assert list_models("DIGITS_*") == ["digits_cnn", "digits_mlp"]
    assert list_models("nothing*") == []


@pytest.mark.usefixtures("clean_registry")
def test_register_create_round_trip() -> None:
    @register_model("Tiny_Net")
    def tiny_net(num_classes: int, head: object = "linear", in_channels: int = 3) -> _Tiny:
        return _Tiny(num_classes, head, in_channels)

    assert "tiny_net" in list_models()
    model = create_model("TINY_NET", 4, head="isomax", in_channels=2)
    assert isinstance(model, _Tiny)
    assert model.num_features == 2 and model.num_classes == 4
    assert model(torch.randn(3, 2, 5, 5)).shape == (3, 4)
    # The decorator returns the builder unchanged.
    assert isinstance(tiny_net(3), _Tiny)


@pytest.mark.usefixtures("clean_registry")
def test_register_rejects_duplicates_unless_overwrite() -> None:
    register_model("dup")(lambda num_classes, head="linear": _Tiny(num_classes, head))
    with pytest.raises(ValueError, match="already registered"):
        register_model("dup")(lambda num_classes, head="linear": _Tiny(num_classes, head))
    register_model("dup", overwrite=True)(
        lambda num_classes, head="linear": _Tiny(num_classes, head, in_channels=5)
    )
    assert create_model("dup", 2).num_features == 5


@pytest.mark.usefixtures("clean_registry")
def test_register_rejects_bad_names_and_builders() -> None:
    with pytest.raises(ValueError, match="reserved"):
        register_model("timm:resnet50")
    with pytest.raises(ValueError, match="non-empty"):
        register_model("  ")
    with pytest.raises(TypeError, match="callable"):
        register_model("x")(42)  # type: ignore[type-var]
    register_model("not_a_classifier")(lambda num_classes, head="linear": nn.Linear(2, 2))
    with pytest.raises(TypeError, match="expected a Classifier"):
        create_model("not_a_classifier", 2)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet19'") as info:
        create_model("resnet19", 10)
    for name in EXPECTED:
        assert name in str(info.value)


def test_unknown_keyword_argument_is_an_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):
        create_model("digits_mlp", 10, no_such_option=1)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_num_classes_must_be_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        create_model("digits_mlp", bad)  # type: ignore[arg-type]


def test_make_head_accepts_names_modules_and_factories() -> None:
    assert isinstance(make_head("linear", 8, 3), nn.Linear)
    assert isinstance(make_head("IsoMax+", 8, 3), IsoMaxPlusHead)
    module = IsoMaxPlusHead(8, 3)
    assert make_head(module, 8, 3) is module
    assert isinstance(make_head(IsoMaxPlusHead, 8, 3), IsoMaxPlusHead)
    built = make_head(lambda d, c: nn.Sequential(nn.Linear(d, c)), 8, 3)
    assert built(torch.randn(2, 8)).shape == (2, 3)


def test_make_head_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown head"):
        make_head("cosine", 8, 3)
    with pytest.raises(TypeError, match="head must be"):
        make_head(3, 8, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must return an nn.Module"):
        make_head(lambda d, c: "oops", 8, 3)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="expects 7 input features"):
        make_head(nn.Linear(7, 3), 8, 3)
    with pytest.raises(ValueError, match="produces 4 classes"):
        make_head(IsoMaxPlusHead(8, 4), 8, 3)


def test_unknown_model_rejected():
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'; valid names: .*resnet18"):
        create_model("resnet19", 10)
