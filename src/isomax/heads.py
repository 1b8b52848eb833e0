"""Distance-based heads of the IsoMax family: drop-in replacements for ``nn.Linear``.

Each head maps features ``(N, in_features)`` to logits ``(N, num_classes)`` and holds a
``temperature`` buffer (1 during training, set by calibration afterwards) that divides the
logits. The entropic scale is not here: it belongs to the loss (:class:`isomax.IsoMaxLoss`).

References:
    Macêdo et al., "Entropic Out-of-Distribution Detection", IJCNN 2021 (arXiv 1908.05569).
    Macêdo and Ludermir, "Enhanced Isotropy Maximization Loss", arXiv 2105.14399.
    Macêdo et al., "Distinction Maximization Loss", arXiv 2205.05874.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_float_matrix, check_positive

__all__ = [
    "DisMaxHead",
    "IsoMaxHead",
    "IsoMaxPlusHead",
    "available_heads",
    "build_head",
    "pairwise_distances",
]

# Squared distances are clamped to this before the square root, so that the gradient of the
# square root stays finite when a feature coincides with a prototype.
_MIN_SQUARED_DISTANCE = 1e-12


def pairwise_distances(x: Tensor, prototypes: Tensor, normalize: bool = False) -> Tensor:
    """Euclidean distances between rows of ``x`` and rows of ``prototypes`` in one matmul.

    Uses ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b (for unit vectors 2 - 2 a.b), clamped before the
    square root, in float32 (or float64 for float64 inputs) even under autocast.

    Args:
        x: features, shape (N, D).
        prototypes: shape (C, D).
        normalize: L2-normalise both sides first (IsoMax+ and DisMax).

    Returns:
        Distances of shape (N, C), float32 (float64 if either input is float64).
    """
    dtype = torch.float64 if torch.float64 in (x.dtype, prototypes.dtype) else torch.float32
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(dtype)
        p = prototypes.to(dtype)
        if normalize:
            x = F.normalize(x, dim=1)
            p = F.normalize(p, dim=1)
            squared = torch.addmm(x.new_full((), 2.0), x, p.t(), beta=1.0, alpha=-2.0)
        else:
            norms = x.pow(2).sum(1, keepdim=True) + p.pow(2).sum(1).unsqueeze(0)
            squared = torch.addmm(norms, x, p.t(), alpha=-2.0)
        return squared.clamp_min(_MIN_SQUARED_DISTANCE).sqrt()


class _DistanceHead(nn.Module):
    """Common parts: prototypes, temperature buffer, input checks."""

    prototypes: nn.Parameter
    temperature: Tensor

    def __init__(self, in_features: int, num_classes: int, temperature: float = 1.0) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.prototypes = nn.Parameter(torch.empty(num_classes, in_features))
        self.register_buffer(
            "temperature", torch.tensor(check_positive(temperature, "temperature"))
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check(self, features: Tensor) -> Tensor:
        return check_float_matrix(features, "features", self.in_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"temperature={float(self.temperature):g}"
        )


class IsoMaxHead(_DistanceHead):
    """IsoMax head: logits z_j = -||f - p_j|| / T, prototypes initialised to zero.

    Train with :class:`isomax.IsoMaxLoss` (entropic scale 10); score with entropic score
    (:func:`isomax.scores.es`).
    """

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.prototypes)

    def forward(self, features: Tensor) -> Tensor:
        d = pairwise_distances(self._check(features), self.prototypes)
        return -d / self.temperature


class IsoMaxPlusHead(_DistanceHead):
    """IsoMax+ head: z_j = -|s| ||f^ - p^_j|| / T on L2-normalised features and prototypes.

    Prototypes are drawn from N(0, 1), the learnable ``distance_scale`` s starts at 1.
    Score with the minimum distance score (:func:`isomax.scores.mds`).
    """

    def __init__(self, in_features: int, num_classes: int, temperature: float = 1.0) -> None:
        super().__init__(in_features, num_classes, temperature)
        self.distance_scale = nn.Parameter(torch.ones(1))

    def reset_parameters(self) -> None:
        nn.init.normal_(self.prototypes, mean=0.0, std=1.0)
        if hasattr(self, "distance_scale"):
            nn.init.ones_(self.distance_scale)

    def distances(self, features: Tensor) -> Tensor:
        """Scaled distances |s| ||f^ - p^_j|| (no temperature), shape (N, C)."""
        d = pairwise_distances(self._check(features), self.prototypes, normalize=True)
        return self.distance_scale.abs().to(d.dtype) * d

    def forward(self, features: Tensor) -> Tensor:
        return -self.distances(features) / self.temperature


class DisMaxHead(IsoMaxPlusHead):
    """DisMax head: z_j = -(d_j + mean_k d_k) / T with d_j = |s| ||f^ - p^_j|| / sqrt(2).

    The mean term is the same for every class of a sample, so it cancels inside the softmax (no
    effect on the loss or its gradients) and only enters logit-based scores such as
    :func:`isomax.scores.mmles`.
    """

    def distances(self, features: Tensor) -> Tensor:
        return super().distances(features) / math.sqrt(2.0)

    def forward(self, features: Tensor) -> Tensor:
        d = self.distances(features)
        return -(d + d.mean(dim=1, keepdim=True)) / self.temperature


def _linear(in_features: int, num_classes: int) -> nn.Module:
    return nn.Linear(in_features, num_classes)


_HEADS: dict[str, Callable[[int, int], nn.Module]] = {
    "linear": _linear,
    "softmax": _linear,
    "isomax": IsoMaxHead,
    "isomaxplus": IsoMaxPlusHead,
    "dismax": DisMaxHead,
}


def available_heads() -> list[str]:
    """Names accepted by :func:`build_head`."""
    return sorted(_HEADS)


def build_head(name: str, in_features: int, num_classes: int) -> nn.Module:
    """Build a head by name: ``linear`` (= ``softmax``), ``isomax``, ``isomaxplus``, ``dismax``."""
    key = name.lower().replace("-", "").replace("_", "").replace("+", "plus")
    if key not in _HEADS:
        raise ValueError(f"unknown head {name!r}; valid names: {', '.join(available_heads())}")
    return _HEADS[key](in_features, num_classes)
