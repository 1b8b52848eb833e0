"""Bridges to other OOD toolkits: a pytorch-ood detector and OpenOOD's ``ood.csv``.

* :class:`PytorchOODDetector` exposes an isomax :class:`~isomax.scoring.Scorer` (a native
  score or a post-hoc detector) through pytorch-ood's detector API: ``predict(x)`` (inputs),
  ``predict_logits(logits)`` and ``fit_logits`` (pytorch-ood 0.4's ``LogitsDetector``),
  ``predict_features(features)`` (penultimate features, as pytorch-ood 0.4 means them),
  ``fit(id_loader)`` / ``fit_features``; call = predict. It
  plugs into ``pytorch_ood.utils.OODMetrics`` and friends. pytorch-ood scores outliers
  *higher*, isomax scores inliers higher: the adapter returns ``-score``. pytorch-ood is
  imported only when the adapter is first used (``import isomax`` never imports it).
* :func:`to_openood_csv` writes an :class:`~isomax.engine.evaluation.Evaluation` in the layout of
  OpenOOD v1.5's ``ood.csv`` (Yang et al., "OpenOOD v1.5", 2023).
"""

from __future__ import annotations

import csv
import importlib
import io
import os
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from . import scores as _scores
from ._checks import check_positive
from ._names import find_name
from .errors import InputError
from .io import atomic_write_bytes
from .scoring import NativeScore, Scorer, get_scorer

__all__ = ["OPENOOD_COLUMNS", "PytorchOODDetector", "to_openood_csv"]


def _broken(err: Exception) -> ImportError:
    return ImportError(
        f"pytorch-ood is installed but importing it failed ({type(err).__name__}: {err}); "
        "repair it (e.g. a torchvision matching torch) or uninstall it to use isomax's "
        "PytorchOODDetector without it"
    )


def _pytorch_ood_bases() -> tuple[type, type[Exception]]:
    """pytorch-ood's detector base class (``LogitsDetector`` from 0.4, ``Detector`` before) and
    its ``ModelNotSetException``; ``(object, ValueError)`` when pytorch-ood is not installed.

    Raises:
        ImportError: pytorch-ood is installed but importing it fails (whatever the error, e.g. a
            torchvision build that does not match torch); the original error is chained.
    """
    try:
        api = importlib.import_module("pytorch_ood.api")
    except ModuleNotFoundError as err:
        if err.name == "pytorch_ood":
            return object, ValueError  # not installed
        raise _broken(err) from err
    except Exception as err:  # a broken install raises anything, not only ImportError
        raise _broken(err) from err
    base = getattr(api, "LogitsDetector", None) or api.Detector
    return base, getattr(api, "ModelNotSetException", ValueError)


class _Adapter:
    """The adapter's methods; :func:`_adapter_class` puts pytorch-ood's base class under them."""

    _model_not_set: type[Exception] = ValueError

    def __init__(
        self,
        model: nn.Module | None,
        score: str | Callable[..., Tensor] | Scorer = "mds",
        temperature: float = 1.0,
        head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module or None, got {type(model).__name__}")
        if head is not None and not isinstance(head, nn.Module):
            raise TypeError(f"head must be an nn.Module or None, got {type(head).__name__}")
        t = check_positive(temperature, "temperature")
        #: the scorer behind the adapter; None when there is no model (logits only)
        self.scorer: Scorer | None
        #: the score of logits, for predict_logits (None for a post-hoc scorer)
        self.score_fn: Callable[..., Tensor] | None
        if isinstance(score, str) and model is not None:
            from .posthoc_fit import posthoc_detector_names

            if find_name(score, posthoc_detector_names()) is not None:  # "knn": a post-hoc scorer
                score = get_scorer(score, model)
        if isinstance(score, Scorer):
            if model is not None and model is not score.model:
                raise InputError("the scorer scores another model than the model given")
            model, self.scorer = score.model, score
            self.score_fn = score.score_logits if isinstance(score, NativeScore) else None
            self.score_name = score.name
        elif isinstance(score, str) or callable(score):
            fn = _scores.get(score) if isinstance(score, str) else score
            self.scorer = NativeScore(model, score, t) if model is not None else None
            self.score_fn = lambda logits, temperature=t: fn(logits, temperature=temperature)
            self.score_name = (
                _scores.resolve(score)
                if isinstance(score, str)
                else getattr(score, "__name__", "score")
            )
        else:
            raise TypeError(f"score must be a score name, a callable or a Scorer, got {score!r}")
        self.model = model
        self.head = head
        self._temperature = t

    @property
    def temperature(self) -> float:
        """T dividing the logits of a native score."""
        if isinstance(self.scorer, NativeScore):
            return self.scorer.temperature
        return self._temperature

    def fit(self, id_loader: Any = None, device: Any = None, *, data_loader: Any = None) -> Any:
        """Fit the scorer on ID data (a no-op for a native score); returns ``self``.

        ``data_loader`` is pytorch-ood's name of ``id_loader``; ``device`` is ignored (the
        scorer runs where the model is).
        """
        loader = data_loader if id_loader is None else id_loader
        if loader is not None and self.scorer is not None:
            self.scorer.fit(loader)
        return self

    def _fit_nothing(self, method: str) -> Any:
        if self.scorer is not None and not isinstance(self.scorer, NativeScore):
            raise InputError(
                f"{method}() cannot fit the post-hoc scorer {self.score_name!r}: fit it on "
                "inputs with fit(id_loader)"
            )
        return self

    def fit_features(self, x: Any = None, y: Any = None) -> Any:
        """Nothing to fit for a native score; returns ``self``."""
        return self._fit_nothing("fit_features")

    def fit_logits(self, logits: Any = None, y: Any = None) -> Any:
        """Nothing to fit for a native score; returns ``self``."""
        return self._fit_nothing("fit_logits")

    def predict(self, x: Tensor) -> Tensor:
        """Outlier scores ``-scorer.score(x)``, shape (N,); higher = more likely OOD."""
        if self.scorer is None:
            raise self._model_not_set(
                "model: predict() needs a model; use predict_logits(logits) without one"
            )
        return -self.scorer.score(x)

    def predict_logits(self, logits: Tensor) -> Tensor:
        """Outlier scores from logits ``(N, C)``: ``-score(logits, temperature)``."""
        if self.score_fn is None:
            raise InputError(
                f"the post-hoc scorer {self.score_name!r} scores inputs or features, not "
                "logits: use predict(x) or predict_features(features)"
            )
        return -self.score_fn(logits, temperature=self.temperature)

    def predict_features(self, x: Tensor) -> Tensor:
        """Outlier scores from penultimate features ``(N, D)``.

        A post-hoc scorer scores them directly; a native score goes through the head: the
        ``head`` argument, else the model's ``head`` attribute (isomax models).
        """
        if self.scorer is not None and not isinstance(self.scorer, NativeScore):
            score_features = getattr(self.scorer, "score_features", None)
            if score_features is None:
                raise InputError(f"the scorer {self.score_name!r} does not score features")
            return -score_features(x)
        head = self.head if self.head is not None else getattr(self.model, "head", None)
        if not isinstance(head, nn.Module):
            raise self._model_not_set(
                "predict_features() takes penultimate features (N, D) and needs the head that "
                "maps them to logits: pass head=..., or a model with a .head (isomax models); "
                "for logits use predict_logits()"
            )
        return self.predict_logits(head(x))

    def __call__(self, x: Tensor) -> Tensor:
        """Same as :meth:`predict`."""
        return self.predict(x)

    def __repr__(self) -> str:
        model = type(self.model).__name__ if self.model is not None else None
        return (
            f"PytorchOODDetector(model={model}, score={self.score_name!r}, "
            f"temperature={self.temperature:g})"
        )


_ADAPTER_DOC = """An isomax :class:`~isomax.scoring.Scorer` behind pytorch-ood's detector API.

    ``predict(x) = -scorer.score(x)``: outliers score higher, as pytorch-ood expects; the
    scorer runs the model in eval mode without gradients (submodule modes are restored).
    ``predict_logits(logits)`` scores logits (native scores), ``predict_features(features)``
    scores penultimate features (pytorch-ood 0.4's meaning: through the head for a native
    score, directly for a post-hoc one). ``fit(id_loader)`` fits the scorer (a no-op for a
    native score); ``fit_logits`` and ``fit_features`` have nothing to fit for a native score
    and refuse a post-hoc one. A ``pytorch_ood.api.LogitsDetector``
    (``Detector`` before pytorch-ood 0.4) when pytorch-ood is installed; it is imported the first
    time this class is looked up, never by ``import isomax``.

    Args:
        model: a module returning logits; may be None when only ``predict_logits`` or
            ``predict_features`` (with ``head``) is used, or when ``score`` is a scorer.
        score: a :class:`~isomax.scoring.Scorer` (a native score or a post-hoc detector, built
            for ``model``), a name from :mod:`isomax.scores` (``mds``, ``es``, ``mmles``...)
            or a function ``(logits, temperature) -> Tensor[N]`` with higher = more
            in-distribution (a name or function becomes a :class:`~isomax.scoring.NativeScore`
            of the model).
        temperature: divides the logits before a native score.
        head: the module mapping penultimate features to logits, for ``predict_features``;
            default the model's ``head`` attribute.

    Raises:
        ImportError: (at the first lookup) pytorch-ood is installed but fails to import.
    """


def _adapter_class() -> type:
    base, model_not_set = _pytorch_ood_bases()
    bases = (_Adapter,) if base is object else (_Adapter, base)
    namespace = {"__doc__": _ADAPTER_DOC, "__module__": __name__, "_model_not_set": model_not_set}
    return types.new_class("PytorchOODDetector", bases, exec_body=lambda ns: ns.update(namespace))


if TYPE_CHECKING:  # at run time the class is built on first use, by __getattr__ below
    PytorchOODDetector = _Adapter


def __getattr__(name: str) -> Any:
    # PEP 562: the adapter class (and so pytorch-ood) is built on first use only.
    if name == "PytorchOODDetector":
        cls = _adapter_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Columns of OpenOOD v1.5's ``ood.csv``.
OPENOOD_COLUMNS = ("dataset", "FPR@95", "AUROC", "AUPR_IN", "AUPR_OUT", "ACC")

# OpenOOD column -> key of isomax.metrics.ood_metrics (FPR@95 is OOD-positive in both; OpenOOD's
# AUPRs are trapezoidal areas under the precision-recall curve, not average precision).
_KEYS = {
    "FPR@95": "fpr_at_tpr95",
    "AUROC": "auroc",
    "AUPR_IN": "aupr_in_trapezoid",
    "AUPR_OUT": "aupr_out_trapezoid",
}


def _as_parts(evaluation: Any) -> tuple[Mapping[str, Any], float | None]:
    """The ``ood[set][score][metric]`` mapping and the ID accuracy (None when absent)."""
    if isinstance(evaluation, Mapping):
        ood = evaluation.get("ood")
        id_metrics = evaluation.get("id") or {}
    elif hasattr(evaluation, "ood") and hasattr(evaluation, "id_metrics"):
        ood, id_metrics = evaluation.ood, evaluation.id_metrics or {}
    else:
        raise TypeError(
            "evaluation must be an isomax Evaluation or its to_dict() dict, "
            f"got {type(evaluation).__name__}"
        )
    if not isinstance(ood, Mapping) or not ood:
        raise InputError("evaluation holds no OOD results (its 'ood' entry is missing or empty)")
    acc = id_metrics.get("accuracy") if isinstance(id_metrics, Mapping) else None
    return ood, None if acc is None else float(acc)


def _names(value: Sequence[str] | str, arg: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    names = list(value)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{arg} must be a sequence of OOD set names, got {value!r}")
    return names


def match_ood_sets(names: Sequence[str], labels: Sequence[str], arg: str) -> list[str]:
    """The evaluation's OOD set labels that ``names`` spell (:func:`isomax._names.fold`)."""
    found = [find_name(n, labels) for n in names]
    unknown = [n for n, f in zip(names, found, strict=True) if f is None]
    if unknown:
        raise InputError(
            f"{arg}: unknown OOD set(s) {', '.join(map(repr, unknown))}; the evaluation "
            f"has {', '.join(map(repr, labels))}"
        )
    return [f for f in found if f is not None]


def to_openood_csv(
    evaluation: Any,
    path: str | os.PathLike[str],
    score: str,
    near: Sequence[str] | str = (),
    far: Sequence[str] | str | None = None,
    accuracy: float | None = None,
) -> Path:
    """Write one score's results in the layout of OpenOOD v1.5's ``ood.csv``.

    Header ``dataset,FPR@95,AUROC,AUPR_IN,AUPR_OUT,ACC``; one row per near-OOD set, then a
    ``nearood`` row with their mean, then one row per far-OOD set and a ``farood`` row (a group
    with no set has no mean row). Values are percentages with 2 decimals (means are taken before
    rounding); ACC is the ID accuracy on every row. FPR@95 is OpenOOD's OOD-positive rate
    (``fpr_at_tpr95``); AUPR_IN and AUPR_OUT are OpenOOD's trapezoidal areas under the
    precision-recall curve (``aupr_in_trapezoid`` / ``aupr_out_trapezoid``, not the average
    precision ``aupr_in`` / ``aupr_out`` of isomax's own reports). Lines end with
    ``\\r\\n``, as Python's ``csv`` module (and so OpenOOD) writes them. Written atomically.

    Args:
        evaluation: an :class:`~isomax.engine.evaluation.Evaluation` or its ``to_dict()``.
        path: the file to write (its folder must exist).
        score: which score's metrics to write (e.g. ``"mds"``).
        near: names of the near-OOD sets, in row order.
        far: names of the far-OOD sets; default every set not in ``near``, in evaluation order.
        accuracy: ID accuracy as a fraction; default the evaluation's ``accuracy``.

    Returns:
        The path written.

    Raises:
        ValueError: unknown set names in ``near``/``far``, a set in both, no set to write, a
            score or metric missing from the evaluation (``fpr_at_tpr95`` needs ``tpr=0.95``), or
            no accuracy.
    """
    ood, acc = _as_parts(evaluation)
    if accuracy is not None:
        acc = float(accuracy)
    if acc is None or not 0.0 <= acc <= 1.0:
        raise InputError(
            f"accuracy must be a fraction in [0, 1] (from the evaluation's ID metrics or the "
            f"accuracy argument), got {acc!r}"
        )
    near_names = match_ood_sets(_names(near, "near"), list(ood), "near")
    far_names = (
        [n for n in ood if n not in near_names]
        if far is None
        else match_ood_sets(_names(far, "far"), list(ood), "far")
    )
    both = [n for n in near_names if n in far_names]
    if both:
        raise InputError(f"OOD set(s) {', '.join(map(repr, both))} are both in near and far")
    if not near_names and not far_names:
        raise InputError("no OOD set to write: near and far are both empty")

    def values(name: str) -> list[float]:
        per_score = ood[name]
        if score not in per_score:
            raise InputError(
                f"score {score!r} not in the evaluation of {name!r}; it has "
                f"{', '.join(map(repr, per_score))}"
            )
        metrics = per_score[score]
        missing = [k for k in _KEYS.values() if k not in metrics]
        if missing:
            raise InputError(
                f"the evaluation of {name!r} / {score!r} lacks {', '.join(missing)} "
                "(OpenOOD's FPR@95 needs an evaluation run with tpr=0.95; the trapezoidal "
                "AUPRs are in evaluations made by isomax.metrics.ood_metrics since 0.1.0)"
            )
        return [float(metrics[k]) for k in _KEYS.values()]

    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(OPENOOD_COLUMNS)

    def row(name: str, vals: Sequence[float]) -> None:
        writer.writerow([name, *(f"{100.0 * v:.2f}" for v in (*vals, acc))])

    for names, group in ((near_names, "nearood"), (far_names, "farood")):
        rows = [values(n) for n in names]
        for name, vals in zip(names, rows):
            row(name, vals)
        if rows:
            row(group, [sum(col) / len(rows) for col in zip(*rows)])
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
