"""OOD scores from logits; higher = more in-distribution.

Every score is ``f(logits, temperature=1.0) -> Tensor[N]`` on z = logits / T, computed in float32
(float64 for float64 input), so float16 input and logits of magnitude 1e4 give finite values.
Recommended pairings (SPEC section 3): SoftMax -> ``mps``, IsoMax -> ``es``, IsoMax+ -> ``mds``,
DisMax -> ``mmles``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import check_float_matrix, check_positive
from ._names import resolve_name
from .errors import InputError

__all__ = [
    "energy",
    "es",
    "get",
    "max_logit",
    "mds",
    "mmleps",
    "mmles",
    "mmls",
    "mps",
    "names",
]

Score = Callable[..., Tensor]


def _scaled(logits: Tensor, temperature: float) -> Tensor:
    check_float_matrix(logits, "logits")
    if logits.shape[1] == 0:
        raise InputError("logits must have at least one class column, got shape (N, 0)")
    t = check_positive(temperature, "temperature")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return logits.to(dtype) / t


def _neg_entropy(z: Tensor) -> Tensor:
    log_p = torch.log_softmax(z, dim=1)
    return (log_p.exp() * log_p).sum(dim=1)


def mps(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Maximum probability score: max_j softmax(z)_j."""
    return torch.softmax(_scaled(logits, temperature), dim=1).amax(dim=1)


def es(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropic score: sum_j p_j log p_j (the negative entropy of softmax(z))."""
    return _neg_entropy(_scaled(logits, temperature))


def mds(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Minimum distance score: max_j z_j (for distance heads, -min distance / T)."""
    return _scaled(logits, temperature).amax(dim=1)


def max_logit(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Maximum logit: max_j z_j (same value as :func:`mds`; the name used for linear heads)."""
    return _scaled(logits, temperature).amax(dim=1)


def energy(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Negative free energy: T * logsumexp(logits / T) (Liu et al., NeurIPS 2020)."""
    t = check_positive(temperature, "temperature")
    return t * torch.logsumexp(_scaled(logits, t), dim=1)


def mmls(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Max-mean logit score of DisMax: max_j z_j + mean_j z_j."""
    z = _scaled(logits, temperature)
    return z.amax(dim=1) + z.mean(dim=1)


def mmles(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Max-mean logit entropy score of DisMax (its default): MMLS + sum_j p_j log p_j."""
    z = _scaled(logits, temperature)
    return z.amax(dim=1) + z.mean(dim=1) + _neg_entropy(z)


def mmleps(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """MMLES + max_j p_j (a DisMax option)."""
    z = _scaled(logits, temperature)
    log_p = torch.log_softmax(z, dim=1)
    p = log_p.exp()
    return z.amax(dim=1) + z.mean(dim=1) + (p * log_p).sum(dim=1) + p.amax(dim=1)


_SCORES: dict[str, Score] = {
    "mps": mps,
    "es": es,
    "mds": mds,
    "max_logit": max_logit,
    "energy": energy,
    "mmls": mmls,
    "mmles": mmles,
    "mmleps": mmleps,
}


def names() -> list[str]:
    """Names of the scores accepted by :func:`get`."""
    return list(_SCORES)


#: Other names of the same scores: ``msp`` is the literature's name of the maximum softmax
#: probability (Hendrycks & Gimpel), isomax's ``mps``.
ALIASES = {"msp": "mps"}


def resolve(name: str) -> str:
    """The registered name ``name`` spells (:func:`isomax._names.fold`; ``msp`` = ``mps``)."""
    return resolve_name("score", name, _SCORES, ALIASES)


def get(name: str) -> Score:
    """Return the score function called ``name`` (any spelling; ``msp`` = ``mps``)."""
    return _SCORES[resolve(name)]
