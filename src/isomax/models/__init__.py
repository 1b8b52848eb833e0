"""Models with a swappable last layer for the IsoMax family.

Every model is a :class:`Classifier`: ``forward(x) = head(features(x))``. Build one by name::

    from isomax.models import create_model
    model = create_model("resnet18", num_classes=10, head="isomaxplus")
    model.head = isomax.DisMaxHead(model.num_features, 10)   # or model.replace_head("dismax")

Registered names (see :func:`list_models`): ``resnet18``, ``resnet34`` (CIFAR ResNets),
``resnet8``, ``resnet20``, ``resnet32``, ``resnet44``, ``resnet56``, ``resnet110`` (He et al.'s
thin CIFAR ResNets; :mod:`isomax.models.pretrained` loads their published weight files),
``densenet100`` (DenseNet-BC-100, k = 12), ``wrn28_10`` (WRN-28-10), ``digits_mlp``,
``digits_cnn`` (8x8 digits), ``mnist_cnn`` (28x28) and ``mlp`` (feature vectors). Any timm
model works as ``"timm:NAME"`` (``pip install 'isomax[timm]'``).
"""

from __future__ import annotations

from .base import Classifier, HeadSpec, count_parameters, init_weights, make_head
from .densenet import DenseNet, densenet100
from .registry import create_model, list_models, register_model
from .resnet import (
    BasicBlock,
    CifarResNet,
    ThinResNet,
    resnet8,
    resnet18,
    resnet20,
    resnet32,
    resnet34,
    resnet44,
    resnet56,
    resnet110,
)
from .small import MLP, DigitsCNN, DigitsMLP, MnistCNN, digits_cnn, digits_mlp, mlp, mnist_cnn
from .timm_adapter import TimmBackbone, create_timm_model
from .wide_resnet import WideBasicBlock, WideResNet, wrn28_10

__all__ = [
    "MLP",
    "BasicBlock",
    "CifarResNet",
    "Classifier",
    "DenseNet",
    "DigitsCNN",
    "DigitsMLP",
    "HeadSpec",
    "MnistCNN",
    "ThinResNet",
    "TimmBackbone",
    "WideBasicBlock",
    "WideResNet",
    "count_parameters",
    "create_model",
    "create_timm_model",
    "densenet100",
    "digits_cnn",
    "digits_mlp",
    "init_weights",
    "list_models",
    "make_head",
    "mlp",
    "mnist_cnn",
    "register_model",
    "resnet8",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet56",
    "resnet110",
    "wrn28_10",
]
