"""One OOD scorer interface: fit on in-distribution data, score (higher = ID), save and load.

Every way isomax scores an input is a :class:`Scorer`:

* :class:`NativeScore` - the head's own score on the model's logits (a name of
  :mod:`isomax.scores`: ``es``, ``mds``, ``mmles``, ``mps``, ``energy``...); ``fit`` is a no-op;
* the post-hoc detectors of :mod:`isomax.posthoc` (``mahalanobis``, ``knn``, ``vim``,
  ``react``), which ``fit`` statistics of the model's features.

The interface (same names and signatures everywhere)::

    scorer.fit(id_loader, max_samples=None) -> scorer   # ID data only, never the test split
    scorer.is_fitted -> bool
    scorer.score(x) -> Tensor[N]                        # higher = more in-distribution
    scorer.score_and_logits(x) -> (Tensor[N], Tensor[N, C])   # one backbone pass
    scorer.score_loader(loader, max_samples=None) -> Tensor[N] (CPU)
    scorer.state_dict() / scorer.load_state_dict(state) # fitted statistics, tensors only
    scorer.config() -> dict                             # constructor settings (JSON)
    scorer.save(path)  /  load_scorer(path, model)      # safetensors, no code executed

:class:`isomax.OODDetector` (threshold, calibration, ``predict``) is built on any scorer, and
:class:`isomax.interop.PytorchOODDetector` wraps any scorer for pytorch-ood.

:func:`batches` is the one reader of loaders in isomax: a ``DataLoader``, a ``Dataset`` or any
iterable of tensors or ``(inputs, labels, ...)`` tuples.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from . import scores as _scores
from ._checks import check_labels, check_positive
from ._names import resolve_name
from .errors import InputError
from .io import field_error, load_file, require, save_file

__all__ = [
    "NativeScore",
    "Scorer",
    "batches",
    "get_scorer",
    "load_scorer",
    "model_fingerprint",
    "scorer_names",
    "split_batch",
]

_S = TypeVar("_S", bound="Scorer")
_KIND = "scorer"


# ----------------------------------------------------------------------------------------------
# Shared helpers: model state and loaders
# ----------------------------------------------------------------------------------------------


@contextmanager
def inference(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients; restores the train/eval flag of every submodule."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter or buffer lives (CPU for a model without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def split_batch(batch: Any, what: str = "loader") -> tuple[Tensor, Any]:
    """``x`` -> (x, None); ``(x,)`` -> (x, None); ``(x, y, ...)`` -> (x, y) (``y`` unchecked)."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise TypeError(
        f"{what} must yield input tensors or (inputs, labels) pairs, "
        f"got a batch of type {type(batch).__name__}"
    )


def _as_labels(y: Any, name: str) -> Any:
    if isinstance(y, Tensor):
        return y
    try:
        return torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name} must be a tensor of integer class indices, got {type(y).__name__}"
        ) from None


def batches(
    data: Any,
    what: str = "id_loader",
    labels: bool = False,
    num_classes: int | None = None,
    max_samples: int | None = None,
    needed_by: str = "",
    batch_size: int = 256,
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Read ``data`` as ``(inputs, labels or None)`` batches: the one loader reader of isomax.

    Args:
        data: a ``Dataset`` (read in order, ``batch_size`` at a time), a ``DataLoader`` or any
            iterable of tensors or ``(inputs, labels, ...)`` tuples.
        what: the argument's name, for messages.
        labels: require labels; they are checked (integers, one per input, >= 0 and below
            ``num_classes`` when given) and returned as int64 tensors. Otherwise a tensor in
            second place is passed through and anything else is ``None``.
        num_classes: the label range when ``labels``.
        max_samples: stop after this many inputs (the last batch is cut); ``None``: all.
        needed_by: who needs the labels, for the message when a batch has none.
        batch_size: batch size for a ``Dataset``.

    Raises:
        TypeError: a single tensor, or batches of another kind.
        ValueError: labels missing or invalid, or ``max_samples`` < 1.
    """
    if isinstance(data, Tensor):
        raise TypeError(
            f"{what} must be an iterable of batches, got a single tensor: wrap it as [x] or "
            "[(x, y)], or use a DataLoader"
        )
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, Iterable):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, str | bytes) or not isinstance(data, Iterable):
        raise TypeError(
            f"{what} must be an iterable of batches (a DataLoader, or a list of tensors or "
            f"(inputs, labels) pairs), got {type(data).__name__}"
        )
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
    ):
        raise InputError(f"max_samples must be None or a positive integer, got {max_samples!r}")
    return _read(data, what, labels, num_classes, max_samples, needed_by)


def _read(
    data: Iterable[Any],
    what: str,
    labels: bool,
    num_classes: int | None,
    max_samples: int | None,
    needed_by: str,
) -> Iterator[tuple[Tensor, Tensor | None]]:
    left = max_samples
    for batch in data:
        if left is not None and left <= 0:
            return
        x, y = split_batch(batch, what)
        if labels:
            if y is None:
                who = f": {needed_by} needs class labels" if needed_by else ""
                raise InputError(
                    f"{what} must yield (inputs, labels) pairs{who}, got a batch of inputs only"
                )
            name = f"{what} labels"
            y = check_labels(_as_labels(y, name), name, x.shape[0], num_classes, rows="inputs")
            y = y.long()
        elif not isinstance(y, Tensor):
            y = None
        if left is not None:
            if x.shape[0] > left:
                x, y = x[:left], (None if y is None else y[:left])
            left -= x.shape[0]
        yield x, y


# ----------------------------------------------------------------------------------------------
# The interface
# ----------------------------------------------------------------------------------------------


class Scorer(ABC):
    """An OOD score of a model's inputs: higher = more in-distribution.

    Subclasses implement :meth:`fit`, :meth:`score_and_logits`, :meth:`state_dict`,
    :meth:`load_state_dict` and :attr:`is_fitted`; :meth:`score`, :meth:`score_loader`,
    :meth:`config` and :meth:`save` have shared implementations.
    """

    #: the registry name (:func:`get_scorer`), saved with the scorer
    name: str = ""
    #: the classifier scored
    model: nn.Module

    @property
    @abstractmethod
    def is_fitted(self) -> bool:
        """Whether :meth:`score` can run (always True for scores that need no fit)."""

    @abstractmethod
    def fit(self: _S, id_loader: Iterable[Any], max_samples: int | None = None) -> _S:
        """Fit on in-distribution data (training or validation, never the test split).

        Args:
            id_loader: batches of inputs or ``(inputs, labels)`` pairs (see :func:`batches`).
            max_samples: use at most this many inputs; ``None``: all.

        Returns:
            The scorer itself.
        """

    @abstractmethod
    def score_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Scores (N,) and the model's logits (N, C) of a batch from one pass, on ``x``'s
        device; run in eval mode without gradients (submodule modes are restored)."""

    def score(self, x: Tensor) -> Tensor:
        """Scores of a batch, shape (N,), higher = more in-distribution, on ``x``'s device."""
        return self.score_and_logits(x)[0]

    def score_loader(self, loader: Iterable[Any], max_samples: int | None = None) -> Tensor:
        """Scores of every input of ``loader`` (up to ``max_samples``), in order, on the CPU."""
        parts = [self.score(x).cpu() for x, _ in batches(loader, "loader", max_samples=max_samples)]
        if not parts:
            raise InputError("loader yielded no batches to score")
        return torch.cat(parts)

    @abstractmethod
    def state_dict(self) -> dict[str, Tensor]:
        """The fitted statistics as CPU tensors (empty when nothing is fitted)."""

    @abstractmethod
    def load_state_dict(self: _S, state: dict[str, Tensor]) -> _S:
        """Restore what :meth:`state_dict` returned; the scorer is then fitted."""

    def config(self) -> dict[str, Any]:
        """The constructor's settings (JSON-serialisable), saved with the scorer."""
        return {}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the scorer (name, settings, fitted statistics) to one safetensors file."""
        if self.name not in scorer_names():
            raise InputError(
                f"a scorer named {self.name!r} cannot be saved: only the registered scorers "
                f"({', '.join(scorer_names())}) can be rebuilt by load_scorer"
            )
        native = isinstance(self, NativeScore)
        meta = {"scorer": self.name, "native": native, "config": self.config()}
        if getattr(self, "needs_fit", False) and self.is_fitted:
            fitted_on = getattr(self, "fitted_on", None)  # the model its statistics came from
            model = getattr(self, "model", None)
            if fitted_on is None and isinstance(model, nn.Module):
                fitted_on = model_fingerprint(model)  # statistics set by load_state_dict
            if fitted_on is not None:
                meta["model_fingerprint"] = fitted_on
        return save_file(path, self.state_dict(), meta, _KIND)


# ----------------------------------------------------------------------------------------------
# Native scores
# ----------------------------------------------------------------------------------------------


class NativeScore(Scorer):
    """The head's own score on the model's logits; nothing to fit.

    Args:
        model: a module returning logits (N, C).
        name: a name of :mod:`isomax.scores` (``mds``, ``es``, ``mmles``, ``mps`` = ``msp``,
            ``energy``...), or a function ``(logits, temperature) -> Tensor[N]`` (higher = ID;
            such a scorer works but cannot be saved).
        temperature: T, the score is computed on ``logits / T``.
    """

    def __init__(
        self, model: nn.Module, name: str | Callable[..., Tensor], temperature: float = 1.0
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if isinstance(name, str):
            self.fn: Callable[..., Tensor] = _scores.get(name)
            self.name = _scores.resolve(name)
        elif callable(name):
            self.fn = name
            self.name = getattr(name, "__name__", type(name).__name__)
        else:
            raise TypeError(f"score must be a score name or a callable, got {name!r}")
        self.model = model
        self.temperature = check_positive(temperature, "temperature")

    @property
    def is_fitted(self) -> bool:
        """Always True: a native score has nothing to fit."""
        return True

    def fit(self, id_loader: Iterable[Any], max_samples: int | None = None) -> NativeScore:
        """No-op (the score needs no statistics; the loader is not read); returns the scorer."""
        return self

    def score_logits(self, logits: Tensor, temperature: float | None = None) -> Tensor:
        """The score of logits (N, C) at ``temperature`` (default: the scorer's)."""
        t = self.temperature if temperature is None else temperature
        return self.fn(logits, temperature=t)

    def score_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        with inference(self.model):
            logits = self.model(x.to(model_device(self.model)))
            values = self.score_logits(logits)
        return values.to(x.device), logits.to(x.device)

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> NativeScore:
        if state:
            raise InputError(
                f"score {self.name!r} has no fitted state, got tensors {sorted(state)[:5]}"
            )
        return self

    def config(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def __repr__(self) -> str:
        return f"NativeScore({self.name!r}, temperature={self.temperature:g})"


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------


def scorer_names() -> list[str]:
    """Names accepted by :func:`get_scorer`: the native scores, then the post-hoc detectors
    (``energy`` is a native score; :func:`isomax.posthoc.get_detector` also builds it from
    features)."""
    from .posthoc import posthoc_names

    native = _scores.names()
    return [*native, *(n for n in posthoc_names() if n not in native)]


def get_scorer(name: str, model: nn.Module, **kwargs: Any) -> Scorer:
    """Build the scorer called ``name`` (case-insensitive; ``msp`` = ``mps``) for ``model``.

    Keyword arguments go to its constructor, e.g. ``get_scorer("knn", model, k=10)`` or
    ``get_scorer("energy", model, temperature=2.0)``.
    """
    from .posthoc import DETECTORS

    key = resolve_name("score", name, scorer_names(), _scores.ALIASES)
    if key in _scores.names():
        return NativeScore(model, key, **kwargs)
    return DETECTORS[key](model, **kwargs)


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of a model's weights and buffers (names, dtypes, shapes and values).

    A fitted scorer's statistics describe the features of the model it was fitted on; its
    file records this fingerprint so that :func:`load_scorer` can refuse another model.
    Sparse, conjugate and quantized tensors are read by value; extra (non-tensor) state by its
    ``repr``; tensors without data (the meta device) by name, dtype and shape only.
    """
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        if not isinstance(value, Tensor):
            digest.update(f"{name}|{type(value).__name__}|{value!r};".encode())
            continue
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)};".encode())
        if value.device.type == "meta":
            continue
        t = value.detach()
        if t.is_quantized:
            t = t.int_repr()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.resolve_conj().resolve_neg().to("cpu").contiguous().reshape(-1)
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_scorer(path: str | os.PathLike[str], model: nn.Module, check_model: bool = True) -> Scorer:
    """Load a scorer written by :meth:`Scorer.save` for ``model`` (no code is executed).

    A fitted (post-hoc) scorer is refused on a model other than the one it was fitted on
    (the file records :func:`model_fingerprint`): its statistics would describe another
    model's features. ``check_model=False`` loads it anyway (e.g. the same weights in
    another dtype). Files written before the fingerprint was recorded load unchecked.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    tensors, meta = load_file(path, _KIND)
    require(path, meta, ("scorer", "config"))
    if not isinstance(meta["scorer"], str) or meta["scorer"] not in scorer_names():
        raise field_error(path, "scorer", f"one of {', '.join(scorer_names())}", meta["scorer"])
    if not isinstance(meta["config"], dict):
        raise field_error(path, "config", "a table of settings", meta["config"])
    native = meta.get("native")
    if native is not None and not isinstance(native, bool):
        raise field_error(path, "native", "true or false", native)
    saved = meta.get("model_fingerprint")
    if saved is not None:
        if not isinstance(saved, str) or not _is_sha256(saved):
            raise field_error(path, "model_fingerprint", "a SHA-256 hex digest", saved)
        saved = saved.lower()
    scorer = build_scorer(path, meta["scorer"], model, meta["config"], native)
    fitted = getattr(scorer, "needs_fit", False)  # a native score or energy: nothing fitted
    if check_model and saved is not None and fitted:
        given = model_fingerprint(model)
        if given != saved:
            raise InputError(
                f"{path}: this {meta['scorer']} scorer was fitted on another model (weights "
                f"fingerprint {saved[:12]}), not the given {type(model).__name__} ({given[:12]}); "
                "its fitted statistics describe that model's features. Fit it on this model "
                "(get_scorer(name, model).fit(id_loader)), or pass check_model=False to load "
                "it anyway"
            )
    scorer.load_state_dict(tensors)
    if fitted:
        scorer.fitted_on = saved  # type: ignore[attr-defined]
    return scorer


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def build_scorer(
    path: str | os.PathLike[str],
    name: str,
    model: nn.Module,
    config: dict[str, Any],
    native: bool | None = None,
) -> Scorer:
    """The scorer ``name`` with settings read from ``path`` (a scorer or detector file).

    ``native`` chooses between the native ``energy`` score and the post-hoc
    :class:`~isomax.posthoc.EnergyDetector` (default: native whenever the name is a native
    score). An unknown or invalid setting raises ``MetadataError`` naming the file.
    """
    from .posthoc import DETECTORS

    key = _scores.ALIASES.get(name, name)
    if native is None:
        native = key in _scores.names()
    if not native and key not in DETECTORS:
        raise field_error(path, "native", f"true for the native score {key!r}", native)
    cls: type[Scorer] = NativeScore if native else DETECTORS[key]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "model", "name"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        expected = f"settings of {key!r} ({', '.join(sorted(allowed)) or 'none'})"
        raise field_error(path, "config", expected, config)
    try:
        return NativeScore(model, key, **config) if native else cls(model, **config)
    except InputError as exc:
        raise field_error(path, "config", f"valid settings of {key!r} ({exc})", config) from None
