"""Post-hoc OOD detectors on the features of a trained classifier.

Every detector works on a model exposing ``features(x) -> (N, D)`` and a ``head`` module with
``forward(x) = head(features(x))`` (every :class:`isomax.models.Classifier`) and follows one
convention:

* it is a :class:`isomax.scoring.Scorer`: ``fit(id_loader, max_samples=None) -> self`` on
  in-distribution training or validation data only; the loader yields ``(x, y)`` pairs (or
  longer tuples, ``y`` second) or bare ``x`` tensors;
* ``score(x) -> Tensor[N]``: higher = more in-distribution, on the device of ``x``; float32
  (float64 for Mahalanobis and ViM, and for float64 models);
* computations are batched on the model's device under ``torch.no_grad()`` with the model in
  eval mode; the train/eval mode of every submodule is restored afterwards.

Detectors (``get_detector(name, model, **kwargs)``):

=============== ====================================================== ==============
name            score                                                  fit data
=============== ====================================================== ==============
``energy``      T logsumexp(logits / T)                                nothing
``mahalanobis`` -min_c (f - mu_c)^T Sigma^+ (f - mu_c), tied Sigma     labels
``knn``         -(k-th smallest distance of f^ to the fit set)         inputs
``vim``         energy(logits) - alpha ||residual of f - u||           inputs
``react``       energy(head(min(f, c))), c a percentile of activations inputs
=============== ====================================================== ==============

References:
    Liu et al., "Energy-based Out-of-distribution Detection", NeurIPS 2020.
    Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution Samples and
    Adversarial Attacks", NeurIPS 2018.
    Sun et al., "Out-of-Distribution Detection with Deep Nearest Neighbors", ICML 2022.
    Wang et al., "ViM: Out-Of-Distribution with Virtual-logit Matching", CVPR 2022.
    Sun et al., "ReAct: Out-of-distribution Detection With Rectified Activations",
    NeurIPS 2021.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_float_matrix, check_positive
from ._names import resolve_name
from .errors import InputError
from .scores import energy as _energy
from .scoring import Scorer, batches, model_fingerprint
from .scoring import inference as _inference
from .scoring import model_device as _model_device

__all__ = [
    "DETECTORS",
    "EnergyDetector",
    "KNNDetector",
    "MahalanobisDetector",
    "PosthocDetector",
    "ReActDetector",
    "ViMDetector",
    "get_detector",
    "posthoc_names",
]

_D = TypeVar("_D", bound="PosthocDetector")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _percentile(values: Tensor, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) of a 1-D tensor, in O(n)."""
    n = values.numel()
    h = (n - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    a = float(values.kthvalue(lo + 1).values)
    b = a if hi == lo else float(values.kthvalue(hi + 1).values)
    return a + (h - lo) * (b - a)


def _head_weights(head: nn.Module) -> tuple[Tensor, Tensor]:
    """(W (C, D), b (C,)) of a linear head; (prototypes, 0) of an isomax distance head."""
    if isinstance(head, nn.Linear):
        w = head.weight
        b = head.bias if head.bias is not None else w.new_zeros(w.shape[0])
        return w.detach(), b.detach()
    prototypes = getattr(head, "prototypes", None)
    if isinstance(prototypes, Tensor) and prototypes.dim() == 2:
        p = prototypes.detach()
        return p, p.new_zeros(p.shape[0])
    raise TypeError(
        "ViM needs the weight and bias of the last layer: the head must be an nn.Linear or a "
        f"distance head with a 2-D `prototypes` tensor (isomax.heads), got {type(head).__name__}"
    )


# ----------------------------------------------------------------------------------------------
# Base class
# ----------------------------------------------------------------------------------------------


class PosthocDetector(Scorer):
    """Base class of the post-hoc :class:`~isomax.scoring.Scorer`: ``fit(id_loader) -> self``
    and ``score(x) -> Tensor[N]`` (higher = ID) on the model's features.

    Subclasses implement ``_start`` (reset the fit state), ``_update(features, labels)`` (one
    batch, on the model's device), ``_finish(n)`` and ``_score(features)``.

    Args:
        model: an ``nn.Module`` with a ``features(x) -> (N, D)`` method and a ``head`` module.
    """

    #: registry name
    name = ""
    #: whether ``fit`` needs (x, y) batches
    requires_labels: ClassVar[bool] = False
    #: fitted attributes that :meth:`state_dict` saves (tensors, floats or ints)
    state_names: ClassVar[tuple[str, ...]] = ()
    #: whether ``fit`` reads the data (False: fitted from construction)
    needs_fit: ClassVar[bool] = True

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not callable(getattr(model, "features", None)):
            raise TypeError(
                f"model must have a features(x) -> (N, D) method, {type(model).__name__} "
                "has none (every isomax.models.Classifier has one)"
            )
        if not isinstance(getattr(model, "head", None), nn.Module):
            raise TypeError(
                f"model must have a `head` module mapping features to logits, "
                f"{type(model).__name__} has none"
            )
        self.model = model
        #: the feature size D the detector was fitted on (as the heads' ``in_features``)
        self.in_features: int | None = None
        self._fitted = False
        #: :func:`~isomax.scoring.model_fingerprint` of the model when it was fitted (saved
        #: with the detector; ``None`` until fitted, or when set by ``load_state_dict``)
        self.fitted_on: str | None = None

    # -- public API ---------------------------------------------------------------------------

    @property
    def num_features(self) -> int | None:
        """Deprecated name of :attr:`in_features`."""
        return self.in_features

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run (always True for detectors that need no fit)."""
        return self._fitted

    def fit(self: _D, id_loader: Iterable[Any], max_samples: int | None = None) -> _D:
        """Fit on in-distribution data (training or validation split, never the test split).

        Args:
            id_loader: an iterable of ``(x, y)`` batches (``y`` integer class indices) or of
                bare ``x`` tensors (for detectors that need no labels), or a ``Dataset``.
            max_samples: fit on at most this many inputs (the first ones); ``None``: all.

        Returns:
            The detector itself.

        Raises:
            ValueError: the loader yields no sample, labels are missing where needed, or the
                detector's settings do not fit the data (e.g. KNN's ``k`` > the fit set).
        """
        fit_detectors([self], id_loader, max_samples)
        return self

    def _check_ready(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not self.is_fitted:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted: call fit(id_loader) before score(x)"
            )

    def _run(self, x: Tensor, from_features: bool, logits: bool) -> tuple[Tensor, Tensor | None]:
        """Scores (and logits) of inputs, or of features, on ``x``'s device."""
        self._check_ready(x)
        with _inference(self.model):
            x_model = x.to(_model_device(self.model))
            f = self._check_features(x_model) if from_features else self._features(x_model)
            out = self._score(f).to(x.device)
            return out, (self._logits(f).to(x.device) if logits else None)

    def score(self, x: Tensor) -> Tensor:
        """Scores of a batch, shape (N,), higher = more in-distribution, on ``x``'s device."""
        return self._run(x, from_features=False, logits=False)[0]

    def score_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Scores and the logits ``head(features(x))`` of a batch from one backbone pass."""
        out, logits = self._run(x, from_features=False, logits=True)
        assert logits is not None
        return out, logits

    def score_features(self, features: Tensor) -> Tensor:
        """Scores of penultimate features (N, D) (``model.features(x)``), on their device."""
        return self._run(features, from_features=True, logits=False)[0]

    def config(self) -> dict[str, Any]:
        """The constructor's settings, saved with the detector."""
        return {}

    def state_dict(self) -> dict[str, Tensor]:
        """The fitted statistics as CPU tensors (numbers as 0-d tensors), e.g. for safetensors."""
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: nothing to save")
        d = -1 if self.in_features is None else self.in_features
        out = {"num_features": torch.tensor(d)}  # the file key of earlier versions
        for name in self.state_names:
            value = getattr(self, name)
            if isinstance(value, Tensor):
                out[name] = value.detach().cpu()
            else:  # numbers keep full precision: float64 / int64
                dtype = torch.float64 if isinstance(value, float) else torch.int64
                out[name] = torch.tensor(value, dtype=dtype)

        return out

    def load_state_dict(self: _D, state: dict[str, Tensor]) -> _D:
        """Restore what :meth:`state_dict` saved; the detector is then fitted."""
        missing = [k for k in ("num_features", *self.state_names) if k not in state]
        if missing:
            raise InputError(f"{type(self).__name__} state lacks {missing}")
        device = _model_device(self.model)
        for name in self.state_names:
            value = state[name]
            setattr(self, name, value.to(device) if value.dim() > 0 else value.item())
        n = int(state["num_features"])
        self.in_features = None if n < 0 else n
        self._after_load()
        self._fitted = True
        return self

    def _after_load(self) -> None:
        """Rebuild derived state after :meth:`load_state_dict`."""

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}({self._extra_repr()}; {state})"

    # -- internals ----------------------------------------------------------------------------

    def _extra_repr(self) -> str:
        return ""

    def _features(self, x: Tensor) -> Tensor:
        return self._check_features(self.model.features(x))

    def _check_features(self, features: Any) -> Tensor:
        f = check_float_matrix(features, "model.features(x)")
        if self.in_features is None:
            self.in_features = int(f.shape[1])
        elif f.shape[1] != self.in_features:
            raise InputError(
                f"model.features(x) has {f.shape[1]} columns, but the detector was fitted on "
                f"{self.in_features}-dimensional features"
            )
        return f

    def _logits(self, f: Tensor) -> Tensor:
        return check_float_matrix(self.model.head(f), "model.head(features)")

    def _start(self) -> None:
        """Reset the fit state."""

    def _update(self, f: Tensor, y: Tensor | None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self, n: int) -> None:
        """Turn the accumulated state into the fitted statistics."""

    def _score(self, f: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------
# Detectors
# ----------------------------------------------------------------------------------------------


class EnergyDetector(PosthocDetector):
    """Energy score T * logsumexp(logits / T) (Liu et al., NeurIPS 2020).

    ``logits = model.head(model.features(x))``. Needs no fit: :meth:`fit` returns the detector
    without reading the loader, and :meth:`score` works before it.

    Args:
        model: the classifier.
        temperature: T > 0 (1 in the paper).
    """

    name = "energy"

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__(model)
        self.temperature = check_positive(temperature, "temperature")
        self._fitted = True

    needs_fit = False

    def fit(self: _D, id_loader: Iterable[Any], max_samples: int | None = None) -> _D:
        """No-op (the energy score has no statistics; the loader is not read)."""
        return self

    def config(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def _extra_repr(self) -> str:
        return f"temperature={self.temperature:g}"

    def _score(self, f: Tensor) -> Tensor:
        return _energy(self._logits(f), self.temperature)


class MahalanobisDetector(PosthocDetector):
    """Minimum Mahalanobis distance to the class means with a tied covariance (Lee et al. 2018).

    Fit: class means mu_c and the shared covariance Sigma = (1/N) sum_i (f_i - mu_{y_i})
    (f_i - mu_{y_i})^T of the features of labelled ID data, accumulated in float64 in one pass
    (memory O(D^2 + C D)). Score: -min_c (f - mu_c)^T Sigma^+ (f - mu_c), on the final features
    only and without input preprocessing. Classes absent from the fit data are ignored.

    Sigma^+ is the symmetric pseudo-inverse (eigendecomposition in float64, eigenvalues below
    ``D * eps * max eigenvalue`` dropped), which handles the exactly singular covariance of dead
    ReLU units. ``ridge > 0`` adds ``ridge * trace(Sigma) / D`` to the diagonal first.

    Args:
        model: the classifier.
        ridge: relative diagonal loading, >= 0 (0 = Lee et al.'s plain pseudo-inverse).
    """

    name = "mahalanobis"
    requires_labels = True
    state_names = ("means", "classes", "precision")

    def __init__(self, model: nn.Module, ridge: float = 0.0) -> None:
        super().__init__(model)
        ridge_value = float(ridge)
        if not math.isfinite(ridge_value) or ridge_value < 0:
            raise InputError(f"ridge must be a finite number >= 0, got {ridge!r}")
        self.ridge = ridge_value
        self.means: Tensor | None = None  #: (C', D) float64 means of the classes seen
        self.classes: Tensor | None = None  #: (C',) labels of those classes
        self.precision: Tensor | None = None  #: (D, D) float64 Sigma^+

    def config(self) -> dict[str, Any]:
        return {"ridge": self.ridge}

    def _extra_repr(self) -> str:
        return f"ridge={self.ridge:g}"

    def _start(self) -> None:
        self._shift: Tensor | None = None
        self._counts: Tensor | None = None
        self._sums: Tensor | None = None
        self._gram: Tensor | None = None

    def _update(self, f: Tensor, y: Tensor | None) -> None:
        assert y is not None
        g = f.to(torch.float64)
        if self._shift is None:
            # Accumulating around a shift (the first batch's mean) avoids cancellation in
            # sum f f^T - N mu mu^T when the features are far from the origin.
            self._shift = g.mean(dim=0)
            d = g.shape[1]
            self._gram = g.new_zeros(d, d)
            self._counts = g.new_zeros(0)
            self._sums = g.new_zeros(0, d)
        assert self._counts is not None and self._sums is not None and self._gram is not None
        g = g - self._shift
        needed = int(y.max()) + 1
        if needed > self._counts.shape[0]:
            extra = needed - self._counts.shape[0]
            self._counts = torch.cat([self._counts, self._counts.new_zeros(extra)])
            self._sums = torch.cat([self._sums, self._sums.new_zeros(extra, g.shape[1])])
        self._counts.index_add_(0, y, torch.ones_like(y, dtype=torch.float64))
        self._sums.index_add_(0, y, g)
        self._gram.addmm_(g.t(), g)

    def _finish(self, n: int) -> None:
        assert self._counts is not None and self._sums is not None and self._gram is not None
        assert self._shift is not None
        seen = self._counts > 0
        counts = self._counts[seen]
        means = self._sums[seen] / counts.unsqueeze(1)
        cov = (self._gram - (means.t() * counts) @ means) / n
        cov = (cov + cov.t()) / 2
        if self.ridge > 0:
            cov.diagonal().add_(self.ridge * cov.diagonal().mean())
        self.precision = torch.linalg.pinv(cov, hermitian=True)
        self.means = means + self._shift
        self.classes = torch.nonzero(seen).flatten()
        self._start()

    def squared_distances(self, f: Tensor) -> Tensor:
        """Squared Mahalanobis distances (N, C') of features to the class means (float64)."""
        assert self.means is not None and self.precision is not None
        means = self.means.to(f.device)
        precision = self.precision.to(f.device)
        centre = means.mean(dim=0)
        g = f.to(torch.float64) - centre
        m = means - centre
        gp = g @ precision
        mp = m @ precision
        d2 = (gp * g).sum(1, keepdim=True) - 2 * gp @ m.t() + (mp * m).sum(1)
        return d2.clamp_min(0)

    def _score(self, f: Tensor) -> Tensor:
        return -self.squared_distances(f).amin(dim=1)


class KNNDetector(PosthocDetector):
    """Deep nearest neighbours: -(distance to the k-th nearest ID feature) (Sun et al. 2022).

    Features are L2-normalised; the fit set's normalised features are kept on the model's device
    (N_fit x D floats). The pure-torch search is exact: queries are processed in chunks of
    ``query_chunk_size`` rows against chunks of ``bank_chunk_size`` fit rows, keeping a running
    top-k of cosine similarities, so the largest temporary is ``query_chunk_size x
    (bank_chunk_size + k)`` values (1024 x (8192 + k) float32 by default, about 32 MiB);
    distance = sqrt(2 - 2 cos). ``backend="faiss"`` uses an exact ``faiss.IndexFlatL2`` on the
    CPU instead (needs ``faiss`` installed; that path is not covered by this project's tests).

    Args:
        model: the classifier.
        k: the neighbour rank (50 in the paper for CIFAR-10); must not exceed the fit set size.
        backend: ``"torch"`` or ``"faiss"``.
        query_chunk_size: query rows per block.
        bank_chunk_size: fit rows per block.
    """

    name = "knn"
    state_names = ("bank",)

    def __init__(
        self,
        model: nn.Module,
        k: int = 50,
        backend: str = "torch",
        query_chunk_size: int = 1024,
        bank_chunk_size: int = 8192,
    ) -> None:
        super().__init__(model)
        for arg, value in (
            ("k", k),
            ("query_chunk_size", query_chunk_size),
            ("bank_chunk_size", bank_chunk_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{arg} must be a positive integer, got {value!r}")
        if backend not in ("torch", "faiss"):
            raise InputError(f"backend must be 'torch' or 'faiss', got {backend!r}")
        if backend == "faiss":
            try:
                import faiss  # noqa: F401
            except ImportError:
                raise ImportError(
                    "backend='faiss' needs the faiss package (pip install faiss-cpu); "
                    "backend='torch' needs nothing extra"
                ) from None
        self.k = k
        self.backend = backend
        self.query_chunk_size = query_chunk_size
        self.bank_chunk_size = bank_chunk_size
        self.bank: Tensor | None = None  #: (N_fit, D) L2-normalised fit features
        self._index: Any = None

    def config(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "backend": self.backend,
            "query_chunk_size": self.query_chunk_size,
            "bank_chunk_size": self.bank_chunk_size,
        }

    def _extra_repr(self) -> str:
        return f"k={self.k}, backend={self.backend!r}"

    def _start(self) -> None:
        self._parts: list[Tensor] = []
        self.bank = None
        self._index = None

    def _update(self, f: Tensor, y: Tensor | None) -> None:
        self._parts.append(F.normalize(self._float(f), dim=1))

    def _finish(self, n: int) -> None:
        if self.k > n:
            raise InputError(f"k={self.k} exceeds the number of fit samples ({n}); use k <= {n}")
        self.bank = torch.cat(self._parts)
        self._parts = []
        self._after_load()

    def _after_load(self) -> None:
        n = 0 if self.bank is None else int(self.bank.shape[0])
        if self.k > n:  # a saved file edited by hand
            raise InputError(f"k={self.k} exceeds the {n} fit samples of the bank; use k <= {n}")
        if self.backend == "faiss":
            import faiss

            bank = self.bank.detach().cpu().float().contiguous().numpy()
            self._index = faiss.IndexFlatL2(bank.shape[1])
            self._index.add(bank)

    @staticmethod
    def _float(f: Tensor) -> Tensor:
        return f if f.dtype == torch.float64 else f.float()

    def kth_distance(self, f: Tensor) -> Tensor:
        """Distance of each normalised feature to its k-th nearest normalised fit feature."""
        assert self.bank is not None
        q = F.normalize(self._float(f), dim=1)
        if self.backend == "faiss":
            squared, _ = self._index.search(q.detach().cpu().float().contiguous().numpy(), self.k)
            kth = torch.from_numpy(squared[:, self.k - 1]).to(q.device, q.dtype)
            return kth.clamp_min(0).sqrt()
        bank = self.bank.to(q.device, q.dtype)
        out = []
        for qs in q.split(self.query_chunk_size):
            best: Tensor | None = None
            for bs in bank.split(self.bank_chunk_size):
                sims = qs @ bs.t()
                if best is not None:
                    sims = torch.cat([best, sims], dim=1)
                best = sims.topk(min(self.k, sims.shape[1]), dim=1).values
            assert best is not None
            out.append(best[:, self.k - 1])
        cos = torch.cat(out) if out else q.new_zeros(0)
        return (2 - 2 * cos).clamp_min(0).sqrt()

    def _score(self, f: Tensor) -> Tensor:
        return -self.kth_distance(f)


class ViMDetector(PosthocDetector):
    """Virtual-logit Matching (Wang et al., CVPR 2022).

    With the last layer's W (C, D) and b (C,), the origin is u = -pinv(W) b. Fit: the principal
    subspace of dimension ``dim`` of the uncentred covariance of (f - u) over the fit data
    (float64 eigendecomposition); the residual of a feature is its component outside it, and
    alpha = |mean max logit| / mean ||residual|| over the fit data. Score:
    logsumexp(logits) - alpha ||residual(f - u)||.

    Distance heads (:mod:`isomax.heads`) have no W and b: their prototypes stand in for W with
    zero bias, hence u = 0, and the residual is taken of the raw features (not of the
    normalised ones the IsoMax+/DisMax heads use internally). Their logits are negative
    distances, so the paper's alpha = mean max logit / mean residual would be negative and would
    reward the residual; by default the magnitude |mean max logit| (the mean scaled minimum
    distance) keeps alpha > 0. It equals the paper's signed formula whenever the mean max logit
    is positive, as for a trained linear head; ``signed_alpha=True`` uses the paper's signed
    form in every case. Any other head raises TypeError at fit.

    The fit features are kept on the CPU (N_fit x D) for the second pass that computes alpha.

    Args:
        model: the classifier.
        dim: dimension of the principal subspace, 1 <= dim < D; default (the rule of the
            authors' code): 1000 if D >= 2048, 512 if D >= 768, else D // 2.
        signed_alpha: the paper's alpha = mean max logit / mean residual, sign included (negative
            for distance heads); default False: its absolute value.
    """

    name = "vim"
    state_names = ("origin", "residual_basis", "alpha", "principal_dim")

    def __init__(
        self, model: nn.Module, dim: int | None = None, signed_alpha: bool = False
    ) -> None:
        super().__init__(model)
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise InputError(f"dim must be None or a positive integer, got {dim!r}")
        if not isinstance(signed_alpha, bool):
            raise TypeError(f"signed_alpha must be True or False, got {signed_alpha!r}")
        self.dim = dim
        self.signed_alpha = signed_alpha
        self.origin: Tensor | None = None  #: u = -pinv(W) b, (D,) float64
        self.residual_basis: Tensor | None = None  #: (D, D - dim) float64
        self.alpha: float | None = None
        self.principal_dim: int | None = None  #: the dim used by the last fit

    @staticmethod
    def default_dim(in_features: int) -> int:
        """The authors' rule: 1000 if D >= 2048, 512 if D >= 768, else D // 2."""
        if in_features >= 2048:
            return 1000
        if in_features >= 768:
            return 512
        return in_features // 2

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "signed_alpha": self.signed_alpha}

    def _extra_repr(self) -> str:
        return f"dim={self.dim}" + (", signed_alpha=True" if self.signed_alpha else "")

    def _start(self) -> None:
        w, b = _head_weights(self.model.head)
        self._u = -(torch.linalg.pinv(w.to(torch.float64)) @ b.to(torch.float64))
        self._gram: Tensor | None = None
        self._max_logit_sum = 0.0
        self._parts: list[Tensor] = []
        self.origin = self.residual_basis = self.alpha = None

    def _update(self, f: Tensor, y: Tensor | None) -> None:
        if f.shape[1] != self._u.shape[0]:
            raise InputError(
                f"model.features(x) has {f.shape[1]} columns but the head's weight has "
                f"{self._u.shape[0]}"
            )
        g = f.to(torch.float64) - self._u.to(f.device)
        if self._gram is None:
            self._gram = g.new_zeros(g.shape[1], g.shape[1])
        self._gram.addmm_(g.t(), g)
        self._max_logit_sum += float(self._logits(f).to(torch.float64).amax(dim=1).sum())
        self._parts.append(f.detach().cpu())

    def _finish(self, n: int) -> None:
        assert self._gram is not None
        d = self._gram.shape[0]
        dim = self.default_dim(d) if self.dim is None else self.dim
        if not 1 <= dim < d:
            raise InputError(
                f"dim must satisfy 1 <= dim < D = {d} (the feature size), got {dim}"
                + (" from the default rule: ViM needs D >= 2" if self.dim is None else "")
            )
        _, vectors = torch.linalg.eigh(self._gram / n)  # ascending eigenvalues
        basis = vectors[:, : d - dim].contiguous()
        u = self._u.to(basis.device)
        device = basis.device
        total = norms = 0.0
        for part in self._parts:
            for chunk in part.split(8192):
                g = chunk.to(device, torch.float64) - u
                total += float(torch.linalg.vector_norm(g @ basis, dim=1).sum())
                norms += float(torch.linalg.vector_norm(g, dim=1).sum())
        mean_residual = total / n
        # Below 1e-9 of the mean norm the residual is float64 round-off: the fit features lie in
        # the principal subspace and alpha would be meaningless.
        if not mean_residual > 1e-9 * norms / n:
            raise InputError(
                f"the residual norms of the fit features are all zero: the features span at most "
                f"{dim} dimensions, so dim={dim} leaves nothing outside the principal subspace; "
                "use a smaller dim or more fit data"
            )
        mean_max_logit = self._max_logit_sum / n
        self.alpha = (mean_max_logit if self.signed_alpha else abs(mean_max_logit)) / mean_residual
        self.origin = u
        self.residual_basis = basis
        self.principal_dim = dim
        self._parts = []
        self._gram = None

    def residual_norm(self, f: Tensor) -> Tensor:
        """||(f - u) projected outside the principal subspace||, (N,) float64."""
        assert self.origin is not None and self.residual_basis is not None
        g = f.to(torch.float64) - self.origin.to(f.device)
        return torch.linalg.vector_norm(g @ self.residual_basis.to(f.device), dim=1)

    def _score(self, f: Tensor) -> Tensor:
        assert self.alpha is not None
        logits = self._logits(f).to(torch.float64)
        return _energy(logits) - self.alpha * self.residual_norm(f)


class ReActDetector(PosthocDetector):
    """ReAct: energy of the head applied to clipped features (Sun et al., NeurIPS 2021).

    Fit: the threshold c is the ``percentile``-th percentile of all entries of the fit features
    (linear interpolation, as ``numpy.percentile``); the fit features are kept on the CPU until
    then. Score: logsumexp(head(min(f, c))), using the model's own head, linear or distance.

    Args:
        model: the classifier.
        percentile: p in (0, 100]; 90 in the paper.
    """

    name = "react"
    state_names = ("threshold",)

    def __init__(self, model: nn.Module, percentile: float = 90.0) -> None:
        super().__init__(model)
        try:
            p = float(percentile)
        except (TypeError, ValueError):
            raise TypeError(f"percentile must be a number, got {percentile!r}") from None
        if not 0 < p <= 100:
            raise InputError(f"percentile must lie in (0, 100], got {percentile!r}")
        self.percentile = p
        self.threshold: float | None = None

    def config(self) -> dict[str, Any]:
        return {"percentile": self.percentile}

    def _extra_repr(self) -> str:
        return f"percentile={self.percentile:g}"

    def _start(self) -> None:
        self._parts: list[Tensor] = []
        self.threshold = None

    def _update(self, f: Tensor, y: Tensor | None) -> None:
        dtype = torch.float64 if f.dtype == torch.float64 else torch.float32
        self._parts.append(f.detach().to(dtype).cpu().flatten())

    def _finish(self, n: int) -> None:
        values = torch.cat(self._parts)
        self._parts = []
        self.threshold = _percentile(values, self.percentile)

    def _score(self, f: Tensor) -> Tensor:
        assert self.threshold is not None
        return _energy(self._logits(f.clamp(max=self.threshold)))


# ----------------------------------------------------------------------------------------------
# Several detectors, one backbone pass
# ----------------------------------------------------------------------------------------------


def _is_detector(det: Any) -> bool:
    if not isinstance(det, PosthocDetector):
        raise TypeError(f"expected post-hoc detectors, got {type(det).__name__}")
    return True


def _by_model(detectors: Iterable[PosthocDetector]) -> list[list[PosthocDetector]]:
    groups: dict[int, list[PosthocDetector]] = {}
    for det in detectors:
        if _is_detector(det):
            groups.setdefault(id(det.model), []).append(det)
    return list(groups.values())


def _num_classes(model: nn.Module) -> int | None:
    """The number of classes of the model's head (rows of its weight or prototypes), if known."""
    try:
        return int(_head_weights(model.head)[0].shape[0])
    except TypeError:
        return None


def fit_detectors(
    detectors: Sequence[PosthocDetector],
    id_loader: Iterable[Any],
    max_samples: int | None = None,
) -> None:
    """Fit several detectors on one pass over ``id_loader``.

    Detectors of the same model share one ``model.features(x)`` per batch, so fitting KNN,
    ViM, ReAct and Mahalanobis together costs one backbone pass instead of four; each detector
    ends exactly as its own :meth:`PosthocDetector.fit` would leave it.
    """
    groups = _by_model(d for d in detectors if _is_detector(d) and d.needs_fit)
    todo = [d for group in groups for d in group]
    if not todo:
        return
    labelled = [d for d in todo if d.requires_labels]
    reader = batches(
        id_loader,
        "id_loader",
        labels=bool(labelled),
        num_classes=_num_classes(labelled[0].model) if labelled else None,
        max_samples=max_samples,
        needed_by=type(labelled[0]).__name__ if labelled else "",
    )
    for det in todo:
        det._fitted = False
        det.in_features = None
        det._start()
    n = 0
    with ExitStack() as stack:
        for group in groups:
            stack.enter_context(_inference(group[0].model))
        devices = [_model_device(group[0].model) for group in groups]
        for x, labels in reader:
            if x.shape[0] == 0:
                continue
            for group, device in zip(groups, devices, strict=True):
                f = group[0]._features(x.to(device))
                if not bool(torch.isfinite(f).all()):
                    raise InputError(
                        f"model.features(x) holds NaN or inf for the fit data (inputs {n} to "
                        f"{n + x.shape[0] - 1}): {type(group[0]).__name__} would be fitted to NaN;"
                        " check those inputs"
                    )
                for det in group:
                    det.in_features = group[0].in_features
                    y = labels if det.requires_labels else None
                    det._update(f, None if y is None else y.to(f.device))
            n += x.shape[0]
        if n == 0:
            raise InputError(
                f"id_loader yielded no samples: {type(todo[0]).__name__} needs "
                "in-distribution data to fit on"
            )
        for det in todo:
            det._finish(n)
            det._fitted = True
        for group in groups:
            fingerprint = model_fingerprint(group[0].model)
            for det in group:
                det.fitted_on = fingerprint


def score_detectors(detectors: Mapping[str, PosthocDetector], x: Tensor) -> dict[str, Tensor]:
    """Scores of one batch by several fitted detectors (name -> (N,), higher = ID).

    Detectors of the same model share one ``model.features(x)``; the results equal each
    detector's own :meth:`PosthocDetector.score`.
    """
    if not isinstance(detectors, Mapping):
        raise TypeError(
            f"detectors must be a mapping of name -> detector, got {type(detectors).__name__}"
        )
    out: dict[str, Tensor] = {}
    names = {id(d): name for name, d in detectors.items()}
    for group in _by_model(detectors.values()):
        for det in group:
            det._check_ready(x)
        model = group[0].model
        with _inference(model):
            f = check_float_matrix(model.features(x.to(_model_device(model))), "model.features(x)")
            for det in group:
                out[names[id(det)]] = det._score(det._check_features(f)).to(x.device)
    return {name: out[name] for name in detectors}


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

DETECTORS: Mapping[str, type[PosthocDetector]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (
            EnergyDetector,
            MahalanobisDetector,
            KNNDetector,
            ViMDetector,
            ReActDetector,
        )
    }
)


def posthoc_names() -> list[str]:
    """Names accepted by :func:`get_detector`."""
    return list(DETECTORS)


def get_detector(name: str, model: nn.Module, **kwargs: Any) -> PosthocDetector:
    """Build the post-hoc detector called ``name`` (case-insensitive) for ``model``.

    Keyword arguments go to its constructor, e.g. ``get_detector("knn", model, k=10)``.
    """
    return DETECTORS[resolve_name("post-hoc detector", name, DETECTORS)](model, **kwargs)
