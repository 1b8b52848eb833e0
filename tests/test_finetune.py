"""Fine-tuning: locating and replacing the classifier, initialisation, training, freezing."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch
from torch import nn

from isomax import DisMaxHead, IsoMaxHead, IsoMaxPlusHead
from isomax.finetune import (
    FinetuneResult,
    find_last_linear,
    finetune,
    load_pretrained,
    replace_classifier,
)
from isomax.models import create_model


class TinyResNet(nn.Module):
    """A stand-in for a pretrained torchvision ResNet: conv-BN-ReLU, pooling, ``fc``."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class TinyVGG(nn.Module):
    """A stand-in for VGG/EfficientNet: ``classifier = Sequential(Dropout, Linear)``."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _stripes(n: int = 128, seed: int = 0, noise: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of 8x8 images: horizontal (0) or vertical (1) +-1 stripes, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    pattern = (torch.arange(8) % 2).float().mul(2).sub(1)
    horizontal = pattern.view(8, 1).expand(8, 8)
    x = torch.where(y.view(n, 1, 1) == 0, horizontal, horizontal.t())
    x = x + noise * torch.randn(n, 8, 8, generator=g)
    return x.unsqueeze(1), y


def _loader(
    n: int = 128, batch_size: int = 32, seed: int = 0, shuffle: bool = True, noise: float = 0.5
) -> torch.utils.data.DataLoader:
    x, y = _stripes(n, seed, noise)
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=g
    )


# ------------------------------------------------------------------ find_last_linear


def test_find_last_linear_fc_and_sequential_classifier() -> None:
    model = TinyResNet()
    assert find_last_linear(model) == ("fc", model.fc)
    vgg = TinyVGG()
    assert find_last_linear(vgg) == ("classifier.1", vgg.classifier[1])


def test_find_last_linear_nested_heads_and_fallback() -> None:
    vit = nn.Module()
    vit.encoder = nn.Linear(4, 4)
    vit.heads = nn.Sequential()
    vit.heads.add_module("head", nn.Linear(4, 2))
    assert find_last_linear(vit)[0] == "heads.head"
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    assert find_last_linear(plain) == ("3", plain[3])


def test_find_last_linear_errors() -> None:
    with pytest.raises(ValueError, match="no nn.Linear"):
        find_last_linear(nn.Sequential(nn.Conv2d(1, 2, 3)))
    headless = TinyResNet()
    headless.fc = nn.Identity()  # as after timm's reset_classifier(0): never pick a hidden layer
    headless.hidden = nn.Linear(8, 8)
    with pytest.raises(ValueError, match="fc=Identity"):
        find_last_linear(headless)
    with pytest.raises(TypeError, match="model"):
        find_last_linear("resnet")  # type: ignore[arg-type]


# ------------------------------------------------------------------ replace_classifier


@pytest.mark.parametrize(
    ("method", "cls"),
    [("isomax", IsoMaxHead), ("isomaxplus", IsoMaxPlusHead), ("dismax", DisMaxHead)],
)
def test_replace_keeps_other_weights_and_outputs_logits(method: str, cls: type) -> None:
    torch.manual_seed(0)
    model = TinyVGG(num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    old_weight = model.classifier[1].weight.detach().clone()
    out = replace_classifier(model, method)
    assert out is model
    head = model.classifier[1]
    assert isinstance(head, cls)
    after = model.state_dict()
    for key, value in before.items():
        if not key.startswith("classifier.1."):
            assert torch.equal(after[key], value), key
    # same class count, no data: auto = the old weight rows
    assert torch.equal(head.prototypes.detach(), old_weight)
    assert model.eval()(torch.randn(5, 1, 8, 8)).shape == (5, 3)


def test_replace_prototypes_are_class_means_of_features() -> None:
    torch.manual_seed(0)
    model = TinyResNet(num_classes=3)
    model.train()
    loader = _loader(64, batch_size=16, shuffle=False)
    replace_classifier(model, "isomax", num_classes=2, data=loader)
    assert model.training  # mode restored
    model.eval()
    x, y = _stripes(64)
    with torch.no_grad():
        f = model.features(x).double()
    expected = torch.stack([f[y == c].mean(0) for c in range(2)]).float()
    torch.testing.assert_close(model.fc.prototypes.detach(), expected, rtol=1e-5, atol=1e-6)
    assert model.fc.num_classes == 2
    assert model(x).shape == (64, 2)


def test_replace_init_choices() -> None:
    torch.manual_seed(0)
    model = TinyResNet(num_classes=3)
    w = model.fc.weight.detach().clone()
    b = model.fc.bias.detach().clone()
    replace_classifier(model, "softmax")  # linear, same classes: keeps weight and bias
    assert isinstance(model.fc, nn.Linear)
    assert torch.equal(model.fc.weight.detach(), w)
    assert torch.equal(model.fc.bias.detach(), b)

    replace_classifier(model, "isomax", num_classes=5, init="default")  # IsoMax default: zeros
    assert torch.count_nonzero(model.fc.prototypes) == 0
    with pytest.raises(ValueError, match="no linear classifier"):
        replace_classifier(model, "isomax")  # already a distance head

    model = TinyResNet(num_classes=3)
    with pytest.raises(ValueError, match="init='weights'"):
        replace_classifier(model, "isomaxplus", num_classes=4, init="weights")
    with pytest.raises(ValueError, match="needs data"):
        replace_classifier(model, "isomaxplus", init="class_means")
    with pytest.raises(ValueError, match="init must be one of"):
        replace_classifier(model, "isomaxplus", init="zeros")
    with pytest.raises(ValueError, match="num_classes"):
        replace_classifier(model, "isomaxplus", num_classes=0)
    with pytest.raises(ValueError, match="unknown loss"):
        replace_classifier(model, "arcface")
    assert isinstance(model.fc, nn.Linear)  # nothing replaced on error


def test_replace_softmax_class_means_is_nearest_mean_classifier() -> None:
    torch.manual_seed(0)
    model = TinyResNet(num_classes=2)
    replace_classifier(model, "softmax", num_classes=2, init="class_means", data=_loader(64))
    model.eval()
    x, y = _stripes(64)
    with torch.no_grad():
        f = model.features(x)
        means = torch.stack([f[y == c].mean(0) for c in range(2)])
        nearest = torch.cdist(f, means).argmin(1)
        assert torch.equal(model(x).argmax(1), nearest)


def test_replace_class_means_bad_labels() -> None:
    model = TinyResNet(num_classes=2)
    x, _ = _stripes(8)
    bad = [(x, torch.full((8,), 5))]
    with pytest.raises(ValueError, match=r"data labels must lie in \[0, 1\], found 5"):
        replace_classifier(model, "isomax", data=bad)
    with pytest.raises(ValueError, match=r"data labels must lie in \[0, 1\], found 5"):
        replace_classifier(model, "isomaxplus", data=bad, init="class_means")


def test_auto_init_per_head() -> None:
    """With data and the same class count: IsoMax takes class means (its distances are at the
    features' scale), IsoMax+ and DisMax the old rows (only directions matter to them)."""
    loader = _loader(64, batch_size=16, shuffle=False)
    for method, expected in (("isomax", "means"), ("isomaxplus", "rows"), ("dismax", "rows")):
        torch.manual_seed(0)
        model = TinyResNet(num_classes=2)
        rows = model.fc.weight.detach().clone()
        replace_classifier(model, method, data=loader)
        protos = model.fc.prototypes.detach()
        assert torch.equal(protos, rows) == (expected == "rows"), method


# ------------------------------------------------------------------ finetune


def test_finetune_learns_stripes() -> None:
    torch.manual_seed(0)
    model = TinyResNet(num_classes=3)  # "pretrained" on 3 classes; target task has 2
    replace_classifier(model, "isomaxplus", num_classes=2, init="default")
    seen: list[dict] = []
    result = finetune(
        model,
        _loader(noise=2.0),
        "isomaxplus",
        epochs=5,
        lr=0.05,
        val_loader=_loader(128, seed=1, noise=2.0),
        progress=seen.append,
    )
    assert isinstance(result, FinetuneResult) and result.model is model
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert seen == result.history
    assert result.history[0]["train_acc"] < 0.8  # it had to learn
    assert result.history[-1]["train_loss"] < 0.2 * result.history[0]["train_loss"]
    assert result.history[-1]["train_acc"] > 0.9
    assert result.history[-1]["val_acc"] > 0.9
    assert 0 < result.history[-1]["lr"] < result.history[0]["lr"] < 0.05  # cosine decay
    assert not model.training


def test_finetune_replaces_linear_classifier_and_is_deterministic() -> None:
    histories = []
    for _ in range(2):
        torch.manual_seed(3)
        model = TinyVGG(num_classes=2)
        result = finetune(model, _loader(64), "dismax", epochs=2, lr=0.02)
        assert isinstance(model.classifier[1], DisMaxHead)
        histories.append(result.history)
    drop = ("images_per_s", "seconds")  # timings differ between runs
    same = [[{k: v for k, v in h.items() if k not in drop} for h in hs] for hs in histories]
    assert str(same[0]) == str(same[1])  # str: NaN == NaN
    assert math.isnan(histories[0][0]["val_acc"])


def test_finetune_freeze_backbone() -> None:
    torch.manual_seed(0)
    model = TinyResNet(num_classes=2)
    replace_classifier(model, "isomaxplus")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune(model, _loader(64), "isomaxplus", epochs=2, freeze_backbone=True)
    assert result.history[0]["lr"] < 0.01  # reported at the backbone's scale
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(after[key], value), key  # weights and batch-norm statistics
    assert not torch.equal(after["fc.prototypes"], before["fc.prototypes"])
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_finetune_keeps_an_existing_distance_head() -> None:
    torch.manual_seed(0)
    model = create_model("mlp", 2, input_dim=4, head="isomax", hidden_sizes=(16,))
    head = model.head
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    loader = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    result = finetune(model, loader, "isomax", epochs=3, lr=0.01, head_lr=0.1)
    assert model.head is head
    assert len(result.history) == 3


def test_finetune_errors() -> None:
    loader = _loader(16)
    no_linear = nn.Sequential(nn.Conv2d(1, 2, 8), nn.Flatten())
    with pytest.raises(ValueError, match="needs a distance head"):
        finetune(no_linear, loader, "isomaxplus")
    with pytest.raises(ValueError, match="no classifier head to train"):
        finetune(no_linear, loader, "softmax")
    with pytest.raises(ValueError, match="freeze_backbone"):
        finetune(no_linear, loader, "softmax", freeze_backbone=True)
    for kwargs, match in [
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"head_lr": -1.0}, "head_lr"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"method": "nope"}, "unknown loss"),
    ]:
        with pytest.raises(ValueError, match=match):
            finetune(TinyResNet(2), loader, **kwargs)
    with pytest.raises(ValueError, match="train_loader is empty"):
        finetune(TinyResNet(2), [], "isomaxplus")
    with pytest.raises(ValueError, match="train_loader must yield"):
        finetune(TinyResNet(2), [torch.zeros(2, 1, 8, 8)], "isomaxplus")


# ------------------------------------------------------------------ load_pretrained


@pytest.mark.parametrize(
    ("name", "package"), [("torchvision:resnet18", "torchvision"), ("timm:resnet18", "timm")]
)
def test_load_pretrained_without_the_package(
    monkeypatch: pytest.MonkeyPatch, name: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # makes the import fail
    monkeypatch.setitem(sys.modules, f"{package}.models", None)
    with pytest.raises(ImportError, match=f"pip install {package}"):
        load_pretrained(name, 10)


def test_load_pretrained_with_stand_in_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    tv = types.ModuleType("torchvision")
    tv_models = types.ModuleType("torchvision.models")

    def get_model(arch: str, weights: str) -> nn.Module:
        calls.append(("torchvision", arch, weights))
        return TinyResNet(num_classes=1000)

    def create_model(arch: str, pretrained: bool) -> nn.Module:
        calls.append(("timm", arch, pretrained))
        return TinyVGG(num_classes=1000)

    tv_models.get_model = get_model  # type: ignore[attr-defined]
    tv.models = tv_models  # type: ignore[attr-defined]
    timm = types.ModuleType("timm")
    timm.create_model = create_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", tv_models)
    monkeypatch.setitem(sys.modules, "timm", timm)

    model = load_pretrained("torchvision:resnet18", 10)
    assert isinstance(model.fc, IsoMaxPlusHead) and model.fc.num_classes == 10
    model = load_pretrained("timm:vgg11", method="dismax")
    assert isinstance(model.classifier[1], DisMaxHead) and model.classifier[1].num_classes == 1000
    assert calls == [("torchvision", "resnet18", "DEFAULT"), ("timm", "vgg11", True)]


def test_load_pretrained_bad_name() -> None:
    for name in ("resnet18", "torchvision:", "hub:resnet18"):
        with pytest.raises(ValueError, match="torchvision:ARCH"):
            load_pretrained(name)
    with pytest.raises(ValueError, match="unknown loss"):
        load_pretrained("torchvision:resnet18", method="nope")
