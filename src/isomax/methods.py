"""The four methods compared throughout the project: head, loss and recommended score."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ._names import resolve_name
from .errors import InputError
from .fpr import FPRLoss
from .heads import DisMaxHead, IsoMaxHead, IsoMaxPlusHead, build_head
from .losses import IsoMaxLoss

__all__ = ["METHODS", "Method", "find_head", "get_method", "recommended_score"]


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
                raise InputError(f"FPR is a DisMax option, not available for {self.name!r}")
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
    return METHODS[resolve_name("loss", name, METHODS)]


def find_head(model: nn.Module) -> nn.Module | None:
    """The module that produces the logits: ``model.head`` (isomax models), the model itself
    when it is a head, else its last distance head or ``nn.Linear``; None if there is none."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module):
        return head
    found = None
    for module in model.modules():
        if isinstance(module, IsoMaxHead | IsoMaxPlusHead | nn.Linear):
            found = module
    return found


def recommended_score(model: nn.Module) -> str:
    """The score the authors pair with the model's head: DisMax -> ``mmles``, IsoMax+ ->
    ``mds``, IsoMax -> ``es``, anything else (a linear head) -> ``mps``."""
    head = find_head(model)
    if isinstance(head, DisMaxHead):  # a subclass of IsoMaxPlusHead: test it first
        return METHODS["dismax"].score
    if isinstance(head, IsoMaxPlusHead):
        return METHODS["isomaxplus"].score
    if isinstance(head, IsoMaxHead):
        return METHODS["isomax"].score
    return METHODS["softmax"].score
