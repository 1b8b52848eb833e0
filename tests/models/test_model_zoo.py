"""Architectures of isomax.models: shapes, heads, channels, parameter counts, training."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest
import torch
from torch import nn

from isomax import IsoMaxLoss
from isomax.heads import DisMaxHead, IsoMaxHead, IsoMaxPlusHead
from isomax.models import (
    MLP,
    Classifier,
    DenseNet,
    WideResNet,
    count_parameters,
    create_model,
)

NUM_CLASSES = 10

# name -> (default input shape of one image, num_features)
IMAGE_MODELS: dict[str, tuple[tuple[int, int, int], int]] = {
    "resnet18": ((3, 32, 32), 512),
    # Any size above the minimum works; smaller inputs keep the deep networks fast.
    "resnet34": ((3, 16, 16), 512),
    "densenet100": ((3, 16, 16), 342),
    "wrn28_10": ((3, 16, 16), 640),
    "resnet8": ((3, 32, 32), 64),
    "resnet20": ((3, 16, 16), 64),
    "digits_cnn": ((1, 8, 8), 64),
    "digits_mlp": ((1, 8, 8), 64),
    "mnist_cnn": ((1, 28, 28), 128),
}

# Literature values for 10 classes (He et al.; Huang et al.; Zagoruyko and Komodakis).
PARAMETER_COUNTS = {
    "resnet18": 11.17e6,
    "resnet34": 21.28e6,
    "resnet20": 0.27e6,
    "resnet32": 0.46e6,
    "resnet56": 0.85e6,
    "densenet100": 0.769e6,
    "wrn28_10": 36.5e6,
}


@cache
def _model(name: str) -> Classifier:
    """One shared instance per architecture (building WRN-28-10 takes a moment)."""
    torch.manual_seed(0)
    return create_model(name, NUM_CLASSES)


def _images(name: str, n: int) -> torch.Tensor:
    return torch.randn(n, *IMAGE_MODELS[name][0])


@pytest.mark.parametrize("name", list(IMAGE_MODELS))
def test_forward_and_features_shapes(name: str) -> None:
    model = _model(name)
    assert isinstance(model, Classifier)
    assert model.num_features == IMAGE_MODELS[name][1]
    assert model.num_classes == NUM_CLASSES
    model.train()
    with torch.no_grad():
        assert model(_images(name, 2)).shape == (2, NUM_CLASSES)
        assert model.features(_images(name, 2)).shape == (2, model.num_features)
        model.eval()
        assert model(_images(name, 1)).shape == (1, NUM_CLASSES)
    model.train()


@pytest.mark.parametrize("name", list(PARAMETER_COUNTS))
def test_parameter_counts_match_the_literature(name: str) -> None:
    count = count_parameters(_model(name))
    assert abs(count - PARAMETER_COUNTS[name]) <= 0.02 * PARAMETER_COUNTS[name], count


def test_count_parameters_trainable_only() -> None:
    model = create_model("digits_mlp", 10)
    total = count_parameters(model)
    assert total == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    model.head.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == total - (64 * 10 + 10)
    assert count_parameters(model) == total


@pytest.mark.parametrize(
    ("name", "channels", "size"),
    [
        ("resnet18", 1, 28),
        ("resnet34", 1, 8),
        ("densenet100", 1, 8),
        ("wrn28_10", 1, 8),
        ("digits_cnn", 3, 8),
        ("digits_mlp", 3, 8),
        ("mnist_cnn", 3, 32),
    ],
)
def test_in_channels_variants(name: str, channels: int, size: int) -> None:
    model = create_model(name, 3, in_channels=channels).eval()
    with torch.no_grad():
        assert model(torch.randn(2, channels, size, size)).shape == (2, 3)


def test_default_in_channels() -> None:
    assert _model("resnet18").conv1.in_channels == 3
    assert create_model("digits_cnn", 10).in_channels == 1
    with pytest.raises(RuntimeError):  # a 3-channel net fed one channel: PyTorch's own error
        _model("resnet18")(torch.randn(1, 1, 8, 8))


@pytest.mark.parametrize(("name", "size"), [("resnet18", 1), ("resnet18", 45), ("mnist_cnn", 4)])
def test_any_spatial_size_above_the_minimum(name: str, size: int) -> None:
    model = _model(name).eval()
    channels = IMAGE_MODELS[name][0][0]
    with torch.no_grad():
        assert model(torch.randn(1, channels, size, size)).shape == (1, NUM_CLASSES)


def test_too_small_or_wrongly_shaped_inputs_raise() -> None:
    with pytest.raises(ValueError, match="at least 4x4"):
        _model("densenet100")(torch.randn(1, 3, 3, 3))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        _model("resnet18")(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        _model("resnet18").features([1, 2, 3])  # type: ignore[arg-type]


def test_digits_models_accept_flat_rows() -> None:
    x = torch.rand(5, 64)
    for name in ("digits_cnn", "digits_mlp"):
        model = _model(name).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), model(x.reshape(5, 1, 8, 8)))


HEAD_SPECS: list[tuple[object, type[nn.Module]]] = [
    ("linear", nn.Linear),
    ("softmax", nn.Linear),
    ("isomax", IsoMaxHead),
    ("isomaxplus", IsoMaxPlusHead),
    ("dismax", DisMaxHead),
    (DisMaxHead, DisMaxHead),  # a class is a factory (in_features, num_classes) -> module
    (lambda d, c: IsoMaxPlusHead(d, c), IsoMaxPlusHead),
]


@pytest.mark.parametrize(("spec", "kind"), HEAD_SPECS)
def test_create_model_with_head(spec: object, kind: type[nn.Module]) -> None:
    model = create_model("digits_cnn", 4, head=spec)  # type: ignore[arg-type]
    assert isinstance(model.head, kind)
    if isinstance(model.head, IsoMaxHead | IsoMaxPlusHead):
        assert model.head.prototypes.shape == (4, model.num_features)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 4)


def test_create_model_with_head_module_instance() -> None:
    head = IsoMaxPlusHead(512, NUM_CLASSES)
    model = create_model("resnet18", NUM_CLASSES, head=head)
    assert model.head is head
    with pytest.raises(ValueError, match="expects 64 input features"):
        create_model("resnet18", NUM_CLASSES, head=IsoMaxHead(64, NUM_CLASSES))


def test_distance_heads_keep_their_initialisation() -> None:
    # init_weights runs on the backbone before the head is attached: IsoMax prototypes stay 0.
    model = create_model("densenet100", 10, head="isomax")
    assert model.head.prototypes.shape == (10, 342)
    assert torch.count_nonzero(model.head.prototypes) == 0


def test_swap_head_by_assignment_and_replace_head() -> None:
    model = create_model("digits_mlp", 10)
    x = torch.randn(3, 1, 8, 8)
    model.head = IsoMaxPlusHead(model.num_features, 10)
    assert model(x).shape == (3, 10)
    assert "head.prototypes" in model.state_dict()

    assert model.replace_head("dismax") is model
    assert isinstance(model.head, DisMaxHead)
    model.replace_head(IsoMaxHead, num_classes=6)
    assert model.num_classes == 6 and model.head.prototypes.shape == (6, 64)
    assert model(x).shape == (3, 6)
    model.replace_head(nn.Linear(64, 2))
    assert model.num_classes == 2
    model.replace_head(nn.Sequential(nn.Linear(64, 5)))  # no size attributes: keeps the record
    assert model.num_classes == 2
    with pytest.raises(ValueError, match="expects 32 input features"):
        model.replace_head(nn.Linear(32, 2))


def test_replace_head_follows_dtype() -> None:
    model = create_model("mlp", 3, input_dim=4).double()
    model.replace_head("isomaxplus")
    assert model.head.prototypes.dtype == torch.float64
    assert model(torch.randn(2, 4, dtype=torch.float64)).dtype == torch.float64


def test_mlp_on_feature_vectors() -> None:
    model = create_model("mlp", 3, head="isomaxplus", input_dim=4, hidden_sizes=(16, 8))
    assert isinstance(model, MLP)
    assert model.num_features == 8
    assert model.features(torch.randn(5, 4)).shape == (5, 8)
    assert model(torch.randn(5, 4)).shape == (5, 3)
    linear = create_model("mlp", 3, input_dim=4, hidden_sizes=())
    assert linear.num_features == 4 and count_parameters(linear) == 4 * 3 + 3
    with pytest.raises(ValueError, match="input_dim"):
        create_model("mlp", 3)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        model(torch.randn(5, 1, 2, 2))
    with pytest.raises(ValueError, match="hidden sizes"):
        create_model("mlp", 3, input_dim=4, hidden_sizes=(0,))


def test_standard_initialisation() -> None:
    model = create_model("resnet18", 10)
    conv = model.layer2[0].conv1
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.05)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_invalid_architecture_arguments() -> None:
    with pytest.raises(ValueError, match="depth"):
        DenseNet(99, 12, 10)
    with pytest.raises(ValueError, match="depth"):
        WideResNet(27, 2, 10)
    with pytest.raises(ValueError, match="dropout"):
        WideResNet(10, 1, 10, dropout=1.0)


def test_wide_resnet_dropout_is_active_in_training_only() -> None:
    torch.manual_seed(0)
    model = WideResNet(10, 1, 3, dropout=0.5)
    x = torch.randn(2, 3, 8, 8)
    model.train()
    assert not torch.equal(model.features(x), model.features(x))
    model.eval()
    assert torch.equal(model.features(x), model.features(x))
    assert create_model("wrn28_10", 10, dropout=0.3).block1[0].dropout == 0.3


def test_resnet18_channels_last_and_backward() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", NUM_CLASSES, head="isomaxplus")
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        reference = model(x)
        torch.testing.assert_close(
            model(x.to(memory_format=torch.channels_last)), reference, rtol=1e-4, atol=1e-4
        )
        model_cl = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(
            model_cl(x.to(memory_format=torch.channels_last)), reference, rtol=1e-4, atol=1e-4
        )
    model.train()
    loss = IsoMaxLoss()(model(x.to(memory_format=torch.channels_last)), torch.tensor([1, 7]))
    loss.backward()
    assert model.conv1.weight.grad is not None
    assert model.head.prototypes.grad is not None


def _train_steps(
    name: str, head: str, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> list[float]:
    torch.manual_seed(0)
    model = create_model(name, 10, head=head)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    y = torch.arange(64) % 10
    x = torch.rand(10, 1, 8, 8)[y] + 0.2 * torch.randn(64, 1, 8, 8)  # one template per class
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize(
    ("name", "head", "loss_fn"),
    [
        ("digits_cnn", "linear", nn.CrossEntropyLoss()),
        ("digits_cnn", "isomaxplus", IsoMaxLoss()),
        ("digits_mlp", "isomax", IsoMaxLoss()),
    ],
)
def test_small_models_train(
    name: str, head: str, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> None:
    losses = _train_steps(name, head, loss_fn)
    assert all(v == v for v in losses)  # no NaN
    assert losses[-1] < 0.7 * losses[0], losses


def test_thin_resnet_option_a_shortcut_is_subsample_and_zero_pad() -> None:
    """He et al.'s parameter-free shortcut, checked against a hand-written reference."""
    from isomax.models.resnet import BasicBlock

    block = BasicBlock(16, 32, stride=2, projection=False)
    assert not list(block.shortcut.parameters())
    x = torch.randn(2, 16, 8, 8)
    expected = torch.zeros(2, 32, 4, 4)
    expected[:, 8:24] = x[:, :, ::2, ::2]
    torch.testing.assert_close(block.shortcut(x), expected, rtol=0, atol=0)
    # depth 6n + 2: n blocks per stage, 2 convolutions each, plus the stem and the head
    model = create_model("resnet20", NUM_CLASSES)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == 20


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_thin_resnet_rejects_bad_depth(bad: object) -> None:
    from isomax.models import ThinResNet

    with pytest.raises(ValueError, match="blocks must be a positive integer"):
        ThinResNet(bad, NUM_CLASSES)  # type: ignore[arg-type]


@pytest.mark.parametrize("widths", [(64, 32, 16), (16, 0, 64), (16, 32)])
def test_thin_resnet_rejects_bad_widths(widths: tuple[int, ...]) -> None:
    from isomax.models import ThinResNet

    with pytest.raises(ValueError, match="non-decreasing stage widths"):
        ThinResNet(1, NUM_CLASSES, widths=widths)
