"""Names of the authors' reference code, for people migrating from it.

``XLossFirstPart`` is the head (replaces the last ``nn.Linear``), ``XLossSecondPart`` the loss
(replaces ``nn.CrossEntropyLoss``); the constructor arguments are the authors'. Unlike the
reference code these run on any device, never print and never exit.
"""

from __future__ import annotations

from torch import Tensor, nn

from .fpr import FPRLoss, FPRTargets, FractionalProbabilityRegularization
from .heads import DisMaxHead, IsoMaxHead, IsoMaxPlusHead
from .losses import IsoMaxLoss

__all__ = [
    "DisMaxLossFirstPart",
    "DisMaxLossSecondPart",
    "IsoMaxLossFirstPart",
    "IsoMaxLossSecondPart",
    "IsoMaxPlusLossFirstPart",
    "IsoMaxPlusLossSecondPart",
]


class IsoMaxLossFirstPart(IsoMaxHead):
    """IsoMax head under the reference name: ``IsoMaxLossFirstPart(num_features, num_classes)``."""

    def __init__(self, num_features: int, num_classes: int, temperature: float = 1.0) -> None:
        super().__init__(num_features, num_classes, temperature)


class IsoMaxPlusLossFirstPart(IsoMaxPlusHead):
    """IsoMax+ head under the reference name."""

    def __init__(self, num_features: int, num_classes: int, temperature: float = 1.0) -> None:
        super().__init__(num_features, num_classes, temperature)


class DisMaxLossFirstPart(DisMaxHead):
    """DisMax head under the reference name."""

    def __init__(self, num_features: int, num_classes: int, temperature: float = 1.0) -> None:
        super().__init__(num_features, num_classes, temperature)


class IsoMaxLossSecondPart(IsoMaxLoss):
    """IsoMax loss under the reference name: ``IsoMaxLossSecondPart(entropic_scale=10.0)``."""

    def __init__(self, entropic_scale: float = 10.0) -> None:
        super().__init__(entropic_scale=entropic_scale)


class IsoMaxPlusLossSecondPart(IsoMaxLoss):
    """IsoMax+ loss under the reference name (the same loss as IsoMax)."""

    def __init__(self, entropic_scale: float = 10.0) -> None:
        super().__init__(entropic_scale=entropic_scale)


class DisMaxLossSecondPart(FPRLoss):
    """DisMax loss under the reference name: ``DisMaxLossSecondPart(model_classifier)``.

    ``preprocess(inputs, targets)`` applies Fractional Probability Regularization to a batch,
    and ``forward(logits, targets)`` accepts its result or plain labels.

    Args:
        model_classifier: the DisMax head (its ``num_classes`` sizes the FPR targets).
        debug: accepted for compatibility; nothing is printed.
        gpu: accepted for compatibility; tensors stay on the device they come on.
        alpha: weight of the FPR term (1, 0.5 or 0.25).
    """

    def __init__(
        self,
        model_classifier: nn.Module,
        debug: bool = False,
        gpu: int | None = None,
        alpha: float = 1.0,
    ) -> None:
        super().__init__(alpha=alpha)
        num_classes = getattr(model_classifier, "num_classes", None)
        if not isinstance(num_classes, int):
            raise TypeError(
                "model_classifier must be a head with an integer num_classes attribute "
                f"(e.g. DisMaxLossFirstPart), got {type(model_classifier).__name__}"
            )
        self._fpr = FractionalProbabilityRegularization(num_classes)

    def preprocess(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, FPRTargets]:
        """Turn a batch into its FPR version (mosaics in the second half)."""
        return self._fpr(inputs, targets)
