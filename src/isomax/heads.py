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
from ._names import resolve_name
from .errors import InputError

__all__ = [
    "DisMaxHead",
    "IsoMaxHead",
    "IsoMaxPlusHead",
    "available_heads",
    "build_head",
    "pairwise_distances",
]

# An entry of the one-matmul expansion is recomputed from the difference of its two rows when its
# squared distance is at most this fraction of ||a||^2 + ||b||^2 (the prototypes' side centred,
# or 2 for unit vectors): there the rounding error of the expansion, about
# sqrt(D) * eps * (||a||^2 + ||b||^2), is no longer small against the result. Above it the
# relative error of a float32 distance is about 1e-6 (D = 512).
_CANCELLATION_RATIO = 0.25
# A normalised distance below this is recomputed in float64: float32 unit vectors are rounded by
# up to eps = 6e-8 per row, so a float32 difference of two of them is off by at most
# 2 eps / distance relative (8e-6 at this bound, 1e-4 at a normalised distance of 1e-3).
_FLOAT64_BELOW = 1.0 / 64.0
# Under torch.compile the recomputed entries cannot depend on the data's values: the entries of
# this many prototypes per row, those most at risk of cancelling, are recomputed (in float64).
_COMPILED_REFINED = 4


class _Difference(torch.autograd.Function):
    """||a_k - b_k|| row by row, with its gradient written out (zero where the distance is 0).

    The difference of two float32 rows is exact to one rounding per component, so is the norm.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        diff = a - b
        d = torch.linalg.vector_norm(diff, dim=1)
        ctx.save_for_backward(diff, d)
        return d

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        diff, d = ctx.saved_tensors
        g = diff * torch.where(d > 0, grad / d, 0.0).unsqueeze(1)
        return g, -g


class _NormalisedDifference(torch.autograd.Function):
    """||a_k / ||a_k|| - u_k|| row by row for unit rows u_k, in u's dtype, gradient written out.

    The gradient with respect to a is (I - a^ a^T)(a^ - u) / (||a|| d)
    = ((a^ - u) - (d^2 / 2) a^) / (||a|| d), since a^.(a^ - u) = 1 - a^.u = d^2 / 2.
    """

    @staticmethod
    def forward(ctx, a: Tensor, u: Tensor) -> Tensor:  # type: ignore[override]
        a_u = a.to(u.dtype)
        # the same floor as F.normalize
        inv_norm = 1.0 / torch.linalg.vector_norm(a_u, dim=1, keepdim=True).clamp_min(1e-12)
        diff = a_u * inv_norm - u
        d = torch.linalg.vector_norm(diff, dim=1)
        ctx.save_for_backward(a_u, inv_norm, diff, d)
        ctx.a_dtype = a.dtype
        return d

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        a_u, inv_norm, diff, d = ctx.saved_tensors
        g = torch.where(d > 0, grad.to(d.dtype) / d, 0.0).unsqueeze(1)
        along = (d * d / 2).unsqueeze(1) * inv_norm * inv_norm * g
        grad_a = diff * (g * inv_norm) - a_u * along
        return grad_a.to(ctx.a_dtype), -g * diff


def _exact_entries(
    x: Tensor,
    prototypes: Tensor,
    units: Tensor | None,
    rows: Tensor | None,
    cols: Tensor,
    dtype: torch.dtype,
) -> Tensor:
    """||x[rows] - prototypes[cols]|| from the rows' difference, shape (K,).

    ``units``: the normalised prototypes (in ``dtype``) for normalised distances, else None.
    ``rows`` None: every row once, in order.
    """
    a = x.to(dtype)
    if rows is not None:  # None: one entry per row, in order (the typical case once trained)
        a = a.index_select(0, rows)
    if units is None:
        return _Difference.apply(a, prototypes.to(dtype).index_select(0, cols))
    compiling = torch.compiler.is_compiling()
    if dtype == torch.float64 or compiling:
        units64 = units if dtype == torch.float64 else F.normalize(prototypes.double(), dim=1)
        return _NormalisedDifference.apply(a, units64.index_select(0, cols)).to(dtype)
    d = _NormalisedDifference.apply(a, units.index_select(0, cols))
    with torch.no_grad():
        (close,) = (d < _FLOAT64_BELOW).nonzero(as_tuple=True)
    if close.numel() == 0:
        return d
    units64 = F.normalize(prototypes.double(), dim=1).index_select(0, cols.index_select(0, close))
    d64 = _NormalisedDifference.apply(a.index_select(0, close), units64)
    return d.index_put((close,), d64.to(dtype))


def pairwise_distances(x: Tensor, prototypes: Tensor, normalize: bool = False) -> Tensor:
    """Euclidean distances between rows of ``x`` and rows of ``prototypes``, exact and fast.

    One matrix product, ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, in float32 (float64 for float64
    inputs) even under autocast; without normalisation both sides are first centred on the
    prototypes' mean (which changes no distance but shrinks the norms). Where that expansion can
    cancel (a squared distance at most a quarter of ||a||^2 + ||b||^2: a feature near a prototype,
    typically its own, so about one entry per row), the entry is recomputed from the difference
    of the two rows (normalised distances below 1/64 in float64). The result agrees with float64
    on the same inputs to about 1e-5 relative or better, and every entry with a nonzero distance
    has a nonzero gradient. Finding the entries to recompute reads the data, so on a GPU a call
    synchronises with the device (two or three small reads); under ``torch.compile`` (whose
    shapes may not depend on the data) the 4
    entries of each row most at risk are recomputed instead, which covers every row with at
    most 4 prototypes that close.

    Args:
        x: features, shape (N, D).
        prototypes: shape (C, D).
        normalize: L2-normalise both sides first (IsoMax+ and DisMax).

    Returns:
        Distances of shape (N, C), float32 (float64 if either input is float64).
    """
    dtype = torch.float64 if torch.float64 in (x.dtype, prototypes.dtype) else torch.float32
    tiny = torch.finfo(dtype).tiny
    with torch.autocast(device_type=x.device.type, enabled=False):
        a = x.to(dtype)
        b = prototypes.to(dtype)
        units = None
        if normalize:
            # a^.b^ = (a.b^) / ||a||: no (N, D) division, forward or backward
            b = units = F.normalize(b, dim=1)
            inv_norm = 1.0 / torch.linalg.vector_norm(a, dim=1, keepdim=True).clamp_min(1e-12)
            squared = 2.0 - 2.0 * (a @ b.t()) * inv_norm
            scale = squared.new_full((), 2.0)
        else:
            # A constant shift changes no distance (nor its gradient): the centre is detached.
            centre = b.detach().mean(dim=0)
            a = a - centre
            b = b - centre
            norm_a = torch.linalg.vector_norm(a, dim=1, keepdim=True)  # cheapest backward
            scale = norm_a.square() + b.pow(2).sum(1).unsqueeze(0)
            squared = torch.addmm(scale, a, b.t(), alpha=-2.0)
        # The entries recomputed below are overwritten, so this clamp only keeps the square
        # root's gradient finite there; every other entry is above it.
        dist = squared.clamp_min(tiny).sqrt()
        with torch.no_grad():
            if torch.compiler.is_compiling():
                # Shapes must not depend on the data: the entries most at risk in each row.
                k = min(b.shape[0], _COMPILED_REFINED)
                ratio = squared if normalize else squared / scale.clamp_min(tiny)
                cols = ratio.topk(k, dim=1, largest=False).indices.reshape(-1)
                rows = torch.arange(a.shape[0], device=a.device).repeat_interleave(k)
                in_order = False
            else:
                rows, cols = (squared <= _CANCELLATION_RATIO * scale).nonzero(as_tuple=True)
                if rows.numel() == 0:
                    return dist
                n = a.shape[0]
                in_order = rows.shape[0] == n and torch.equal(
                    rows, torch.arange(n, device=a.device)
                )
        exact = _exact_entries(x, prototypes, units, None if in_order else rows, cols, dtype)
        return dist.index_put((rows, cols), exact)


class _DistanceHead(nn.Module):
    """Common parts: prototypes, temperature buffer, input checks."""

    prototypes: nn.Parameter
    temperature: Tensor

    def __init__(self, in_features: int, num_classes: int, temperature: float = 1.0) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
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


_HEADS: dict[str, Callable[[int, int], nn.Module]] = {
    "linear": nn.Linear,
    "isomax": IsoMaxHead,
    "isomaxplus": IsoMaxPlusHead,
    "dismax": DisMaxHead,
}
#: ``softmax`` names the linear head that the SoftMax loss trains.
_HEAD_ALIASES = {"softmax": "linear"}


def available_heads() -> list[str]:
    """Names accepted by :func:`build_head` (``softmax`` is ``linear``)."""
    return sorted([*_HEADS, *_HEAD_ALIASES])


def build_head(name: str, in_features: int, num_classes: int) -> nn.Module:
    """Build a head by name: ``linear`` (= ``softmax``), ``isomax``, ``isomaxplus``, ``dismax``."""
    key = resolve_name("head", name, sorted(_HEADS), _HEAD_ALIASES)
    return _HEADS[key](in_features, num_classes)
