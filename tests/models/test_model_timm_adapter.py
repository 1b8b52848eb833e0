"""The timm adapter, exercised with a stand-in module that mimics timm's model API."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from isomax.heads import IsoMaxPlusHead
from isomax.models import TimmBackbone, create_model


class FakeTimmNet(nn.Module):
    """Mimics a timm CNN: ``num_features``, ``forward_features`` (feature map),
    ``forward_head(x, pre_logits)``, ``reset_classifier``; optionally a hidden head layer
    (``head_hidden_size``, as in timm's MobileNetV3)."""

    def __init__(
        self, num_classes: int = 1000, in_chans: int = 3, hidden: int | None = None
    ) -> None:
        super().__init__()
        self.num_features = 6
        self.stem = nn.Conv2d(in_chans, self.num_features, 3, padding=1)
        self.pre = nn.Identity() if hidden is None else nn.Linear(self.num_features, hidden)
        if hidden is not None:
            self.head_hidden_size = hidden
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        size = getattr(self, "head_hidden_size", self.num_features)
        self.fc = nn.Linear(size, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        return torch.relu(self.stem(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.pre(x.mean(dim=(2, 3)))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def test_backbone_wraps_a_timm_like_model() -> None:
    net = FakeTimmNet()
    model = TimmBackbone(net, 5, head="isomaxplus")
    assert isinstance(net.fc, nn.Identity), "timm's classifier must be reset to 0 classes"
    assert model.num_features == 6 and model.num_classes == 5
    assert isinstance(model.head, IsoMaxPlusHead)
    assert model.head.prototypes.shape == (5, 6)
    x = torch.randn(3, 3, 9, 9)
    expected = net.forward_head(net.forward_features(x), pre_logits=True)
    torch.testing.assert_close(model.features(x), expected)
    logits = model(x)
    assert logits.shape == (3, 5)
    logits.sum().backward()
    assert net.stem.weight.grad is not None


def test_backbone_uses_head_hidden_size() -> None:
    model = TimmBackbone(FakeTimmNet(hidden=11), 4)
    assert model.num_features == 11
    assert model.features(torch.randn(2, 3, 4, 4)).shape == (2, 11)
    model.head = IsoMaxPlusHead(model.num_features, 4)
    assert model(torch.randn(2, 3, 4, 4)).shape == (2, 4)


def test_backbone_rejects_modules_without_timm_api() -> None:
    with pytest.raises(TypeError, match="timm's model API"):
        TimmBackbone(nn.Linear(3, 3), 2)


def test_backbone_rejects_unpooled_features() -> None:
    class Unpooled(FakeTimmNet):
        def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
            return x

    with pytest.raises(ValueError, match="global_pool"):
        TimmBackbone(Unpooled(), 2).features(torch.randn(1, 3, 4, 4))


def test_create_model_timm_prefix_with_stand_in_module(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_create_model(name: str, **kwargs: Any) -> FakeTimmNet:
        calls.append((name, kwargs))
        return FakeTimmNet(num_classes=kwargs["num_classes"], in_chans=kwargs.get("in_chans", 3))

    fake_timm = types.ModuleType("timm")
    fake_timm.create_model = fake_create_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "timm", fake_timm)

    model = create_model("timm:resnet50", 7, head="dismax", in_channels=1, pretrained=True)
    assert isinstance(model, TimmBackbone)
    assert calls == [("resnet50", {"pretrained": True, "num_classes": 0, "in_chans": 1})]
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 7)
    assert model.head.prototypes.shape == (7, 6)

    create_model("timm:vit_tiny", 3, drop_rate=0.1)
    assert calls[-1] == ("vit_tiny", {"pretrained": False, "num_classes": 0, "drop_rate": 0.1})


def test_timm_prefix_without_timm_raises_clear_import_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail
    with pytest.raises(ImportError, match=r"pip install 'isomax\[timm\]'"):
        create_model("timm:resnet18", 10)
