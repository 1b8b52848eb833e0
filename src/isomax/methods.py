"""The four methods compared throughout the project: head, loss and recommended score."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .fpr import FPRLoss
from .heads import build_head
from .losses import IsoMaxLoss

__all__ = ["METHODS", "Method", "get_method"]


@dataclass(frozen=True)
class Method:
    """A loss family: which head, which loss and which score the authors pair with it."""

    name: str
    head: str
    entropic_scale: float
    score: str
    scores: tuple[str, ...]

    def build_head(self, in_features: int, num_classes: int) -> nn.Module:
        return build_head(self.head, in_features, num_classes)

    def build_loss(self, fpr_alpha: float | None = None) -> nn.Module:
        """The training loss; DisMax with ``fpr_alpha`` set uses :class:`isomax.FPRLoss`."""
        if fpr_alpha is not None:
            if self.name != "dismax":
                raise ValueError(f"FPR is a DisMax option, not available for {self.name!r}")
            return FPRLoss(self.entropic_scale, fpr_alpha)
        return IsoMaxLoss(self.entropic_scale)


_ALL = ("mps", "es", "max_logit", "energy", "mds", "mmls", "mmles", "mmleps")

METHODS: dict[str, Method] = {
    "softmax": Method("softmax", "linear", 1.0, "mps", ("mps", "es", "max_logit", "energy")),
    "isomax": Method("isomax", "isomax", 10.0, "es", ("mps", "es", "mds", "energy")),
    "isomaxplus": Method("isomaxplus", "isomaxplus", 10.0, "mds", ("mps", "es", "mds", "energy")),
    "dismax": Method("dismax", "dismax", 10.0, "mmles", _ALL),
}


def get_method(name: str) -> Method:
    """Look a method up by name: ``softmax``, ``isomax``, ``isomaxplus`` (``isomax+``), ``dismax``."""
    key = name.lower().replace("-", "").replace("_", "").replace("+", "plus")
    if key not in METHODS:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(METHODS)}")
    return METHODS[key]
