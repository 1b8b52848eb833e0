"""The deployable OOD detector: a trained model, a score, a temperature and a threshold."""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import check_positive
from ._names import find_name
from .errors import InputError
from .io import check_model_facts, field_error, is_number, load_file, require, save_file
from .posthoc import posthoc_names
from .scoring import NativeScore, Scorer, batches, build_scorer, get_scorer, inference
from .scoring import scorer_names as _scorer_names

__all__ = ["OODDetector", "Prediction"]

log = logging.getLogger(__name__)

#: fewer in-distribution scores than this make a noisy threshold: fit warns
MIN_ID_SCORES = 100
_KIND = "detector"
_STATE = "posthoc/"  #: prefix of the scorer's fitted tensors in a detector file


@dataclass(frozen=True)
class Prediction:
    """What :meth:`OODDetector.predict` returns, one row per input."""

    classes: Tensor  #: predicted class, (N,) int64
    probs: Tensor  #: softmax(logits / T), (N, C)
    scores: Tensor  #: the detector's score, higher = more in-distribution, (N,)
    is_ood: Tensor  #: score < threshold, (N,) bool


_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _encode_threshold(value: float | None) -> float | str | None:
    """JSON has no infinities: +-inf and NaN thresholds are stored as "inf", "-inf", "nan"."""
    if value is not None and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _decode_threshold(value: float | str | None) -> float | None:
    return _NON_FINITE[value] if isinstance(value, str) else value


def _check_detector(path: str | os.PathLike[str], meta: dict[str, Any], tensors: Any) -> None:
    """Validate a detector's metadata (raises ``MetadataError`` naming the file and the field)."""
    require(path, meta, ("score", "temperature", "threshold"))
    known = (*_scorer_names(), "msp")
    if not isinstance(meta["score"], str) or meta["score"].lower() not in known:
        raise field_error(path, "score", f"one of {', '.join(known)}", meta["score"])
    if not isinstance(meta.get("scorer_config", {}), dict):
        raise field_error(path, "scorer_config", "a table of settings", meta["scorer_config"])
    native = meta.get("scorer_native")
    if native is not None and not isinstance(native, bool):
        raise field_error(path, "scorer_native", "true or false", native)
    if native is False and meta["score"].lower() not in posthoc_names():
        raise field_error(path, "score", "a post-hoc detector name", meta["score"])
    t = meta["temperature"]
    if not is_number(t) or not t > 0:
        raise field_error(path, "temperature", "a finite number > 0", t)
    th = meta["threshold"]
    if not (th is None or is_number(th) or th in ("inf", "-inf")):
        raise field_error(path, "threshold", 'a number, "inf", "-inf" or null', th)
    tpr = meta.get("tpr")
    if tpr is not None and not (is_number(tpr) and 0 < tpr <= 1):
        raise field_error(path, "tpr", "null or a number in (0, 1]", tpr)
    extra = meta.get("metadata") or {}
    if not isinstance(extra, dict):
        raise field_error(path, "metadata", "a table", extra)
    weights = {k: v for k, v in tensors.items() if not k.startswith(_STATE)}
    check_model_facts(path, extra, weights)
    if "config" in extra:
        require(path, extra, ("num_classes", "input_shape"))


class OODDetector:
    """Deployment object: classify inputs and flag the out-of-distribution ones.

    Built on any :class:`~isomax.scoring.Scorer` (a native score or a post-hoc detector): the
    scorer gives the OOD score, the detector adds the temperature (calibration), the threshold
    and :meth:`predict`. The model stays where it is and in the train/eval mode it is in: every
    pass runs in eval mode and restores the mode of each submodule afterwards.

    Args:
        model: a trained classifier returning logits.
        score: a scorer name (:func:`isomax.scoring.get_scorer`: a score of
            :mod:`isomax.scores`, or a post-hoc detector ``mahalanobis``, ``knn``, ``vim``,
            ``react``, which :meth:`fit` fits on ``scorer_id_loader``), or a
            :class:`~isomax.scoring.Scorer` built for ``model``. Default: the score the authors
            pair with the model's head (IsoMax ``es``, IsoMax+ ``mds``, DisMax ``mmles``,
            linear ``mps``).
        temperature: T applied to the logits for the probabilities and a native score. There
            is one temperature: for a head with a ``temperature`` buffer (the isomax heads) it
            is that buffer, which already divides the logits; default: the head's value (else
            a :class:`~isomax.scoring.NativeScore`'s own, else 1). A native scorer's
            temperature follows the detector's.
        threshold: inputs whose score is below it are flagged OOD; set by :meth:`fit`.
        device: where to run the model; default (and the model is not moved): where its
            parameters are. A device given here moves the model there.

    Example::

        det = OODDetector(model, score="mds").fit(id_loader, tpr=0.95)
        out = det.predict(x)          # out.classes, out.probs, out.scores, out.is_ood
        det.save("detector.safetensors")
        det = OODDetector.load("detector.safetensors", model)
        knn = isomax.scoring.get_scorer("knn", model, k=10).fit(train_loader)
        det = OODDetector(model, knn).fit(id_val_loader)
    """

    def __init__(
        self,
        model: nn.Module,
        score: str | Scorer | None = None,
        temperature: float | None = None,
        threshold: float | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        if score is None:
            from .methods import recommended_score

            score = recommended_score(model)
        if isinstance(score, Scorer):
            if score.model is not model:
                raise InputError(
                    f"the {type(score).__name__} given as score scores another model: build it "
                    "for the detector's model"
                )
            if isinstance(score, NativeScore) and temperature is None:
                temperature = score.temperature if score.temperature != 1.0 else None
            self.scorer: Scorer = score
        else:
            self.scorer = get_scorer(score, model)
        from .methods import find_head

        head = find_head(model)
        buffer = getattr(head, "temperature", None)
        #: the head's temperature buffer, when it has one: then the only temperature
        self._head_temperature: Tensor | None = (
            buffer if isinstance(buffer, Tensor) and buffer.numel() == 1 else None
        )
        self._temperature = 1.0
        if temperature is not None:
            self.temperature = temperature
        self._sync_scorer()
        self.threshold = None if threshold is None else float(threshold)
        self.tpr: float | None = None
        #: JSON-serialisable facts saved with the detector (e.g. the training configuration,
        #: input shape and normalisation, class names) so that ``load`` can rebuild the model.
        self.metadata: dict[str, Any] = {}
        if device is None:
            first = next(model.parameters(), None)
            self.device = first.device if first is not None else torch.device("cpu")
        else:
            if not isinstance(device, torch.device):
                from .engine.trainer import resolve_device

                device = resolve_device(str(device))
            self.device = device
            self.model.to(self.device)

    @property
    def score_name(self) -> str:
        """The scorer's name (e.g. ``"mds"``, ``"knn"``)."""
        return self.scorer.name

    @property
    def temperature(self) -> float:
        """The temperature T (the head's buffer when it has one)."""
        if self._head_temperature is not None:
            return float(self._head_temperature)
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        t = check_positive(value, "temperature")
        if self._head_temperature is not None:
            with torch.no_grad():
                self._head_temperature.fill_(t)
        else:
            self._temperature = t
        self._sync_scorer()

    def _sync_scorer(self) -> None:
        """A native score divides the logits by what the head does not: the detector's T."""
        if isinstance(getattr(self, "scorer", None), NativeScore):
            self.scorer.temperature = self._divisor  # type: ignore[attr-defined]

    @property
    def _divisor(self) -> float:
        """What still divides the model's logits: 1 when the head applies T itself."""
        return 1.0 if self._head_temperature is not None else self._temperature

    def logits(self, x: Tensor) -> Tensor:
        """The model's logits for a batch (run in eval mode; the model's modes are restored)."""
        with inference(self.model):
            return self.model(x.to(self.device))

    def _collect(self, id_loader: Iterable[Any]) -> tuple[Tensor, Tensor | None, Tensor]:
        logits, labels, values = [], [], []
        for x, y in batches(id_loader, "id_loader"):
            v, z = self.scorer.score_and_logits(x.to(self.device))  # one backbone pass
            values.append(v.cpu())
            logits.append(z.float().cpu())
            if y is not None:
                labels.append(y.cpu())
        if not logits:
            raise InputError("the validation loader is empty: no in-distribution data to fit on")
        return torch.cat(logits), torch.cat(labels) if labels else None, torch.cat(values)

    def fit(
        self,
        id_loader: Iterable[Any] | None = None,
        tpr: float = 0.95,
        calibrate: str | None = None,
        scorer_id_loader: Iterable[Any] | None = None,
        *,
        id_val_loader: Iterable[Any] | None = None,
        posthoc_fit_loader: Iterable[Any] | None = None,
    ) -> OODDetector:
        """Set the threshold (and optionally the temperature) from ID validation data only.

        Args:
            id_loader: in-distribution validation batches (never the test split).
            tpr: share of ID inputs to accept; the threshold is the k-th largest ID score with
                k = ceil(tpr * n) (so "keep 95%" is the 5th-percentile rule).
            calibrate: ``"nll"`` or ``"ece"`` to fit the temperature first (needs labels).
            scorer_id_loader: ID training data to fit the scorer on first (a post-hoc
                detector's statistics must not come from the data that sets the threshold);
                not needed for a native score or a scorer already fitted.
            id_val_loader: deprecated name of ``id_loader``.
            posthoc_fit_loader: deprecated name of ``scorer_id_loader``.
        """
        from .calibration import fit_temperature, threshold_for_tpr

        id_loader = _renamed("id_val_loader", id_val_loader, "id_loader", id_loader)
        scorer_id_loader = _renamed(
            "posthoc_fit_loader", posthoc_fit_loader, "scorer_id_loader", scorer_id_loader
        )
        if id_loader is None:
            raise TypeError("fit() needs id_loader: in-distribution validation batches")
        if scorer_id_loader is not None:
            self.scorer.fit(scorer_id_loader)
        elif not self.scorer.is_fitted:
            raise InputError(
                f"score {self.score_name!r} is a post-hoc detector: pass scorer_id_loader (ID "
                "training data, not the validation data that sets the threshold)"
            )
        if calibrate is not None:
            objective = find_name(calibrate, ("nll", "ece"))
            if objective is None:
                raise InputError(f"calibrate must be 'nll', 'ece' or None, got {calibrate!r}")
            calibrate = objective
        logits, labels, values = self._collect(id_loader)
        logits = logits / self._divisor  # = raw logits / T, whichever holds T
        if calibrate is not None:
            if labels is None:
                raise InputError("calibrate needs labelled batches (inputs, labels)")
            bounds = (0.001, 100.0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a bound is handled below
                factor = fit_temperature(logits, labels, objective=calibrate, bounds=bounds)
            if not bounds[0] * 1.001 < factor < bounds[1] / 1.001:
                # the optimum lies outside the search (typically: every validation input is
                # classified correctly, or there are very few): T would collapse every score
                log.warning(
                    "the %s temperature fit ran to the bound T = %.4g on %d validation inputs "
                    "(all classified correctly, or too few to fit): temperature kept at %.4g",
                    calibrate,
                    self.temperature * factor,
                    len(labels),
                    self.temperature,
                )
            else:
                self.temperature = self.temperature * factor
                logits = logits / factor
                log.info("fitted temperature %.4g (%s)", self.temperature, calibrate)
        if isinstance(self.scorer, NativeScore):  # the score of the logits at the fitted T
            values = self.scorer.score_logits(logits, temperature=1.0)
        if len(values) < MIN_ID_SCORES:
            log.warning(
                "the threshold at TPR %g%% is set from only %d in-distribution scores (the lowest "
                "%d decide it): fit on more validation data (CLI: a larger --val-split)",
                100 * tpr,
                len(values),
                max(1, len(values) - math.ceil(tpr * len(values))),
            )
        self.threshold = threshold_for_tpr(values, tpr=tpr)
        self.tpr = float(tpr)
        log.info("threshold %.6g keeps %.1f%% of ID validation inputs", self.threshold, 100 * tpr)
        return self

    def score(self, x: Tensor) -> Tensor:
        """Scores of a batch (higher = more in-distribution)."""
        return self.scorer.score(x.to(self.device))

    def __repr__(self) -> str:
        threshold = "not fitted" if self.threshold is None else f"{self.threshold:.6g}"
        kept = "" if self.tpr is None else f" (keeps {100 * self.tpr:.1f}% of ID validation)"
        head = getattr(self.model, "head", None)
        parts = [
            f"model={type(self.model).__name__}"
            + (f" with {type(head).__name__}" if isinstance(head, nn.Module) else ""),
            f"score={self.score_name!r}",
            f"temperature={self.temperature:.4g}",
            f"threshold={threshold}{kept}",
            f"device={self.device}",
        ]
        return f"OODDetector({', '.join(parts)})"

    def predict(self, x: Tensor | Iterable[Any]) -> Prediction:
        """Classes, probabilities, scores and the OOD mask of a batch, or of every batch of a
        loader (a ``DataLoader`` or any iterable of tensors or ``(inputs, labels)`` pairs),
        concatenated in order."""
        if self.threshold is None:
            raise RuntimeError("the detector has no threshold: call fit() or pass threshold=")
        if not isinstance(x, Tensor):
            if isinstance(x, str | bytes) or not isinstance(x, Iterable):
                raise TypeError(
                    f"predict takes a tensor or a loader of batches, got {type(x).__name__}"
                )
            parts = [self.predict(inputs) for inputs, _ in batches(x, "the loader")]
            if not parts:
                raise InputError("the loader given to predict is empty")
            return Prediction(
                *(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Prediction))
            )
        values, logits = self.scorer.score_and_logits(x.to(self.device))  # one backbone pass
        probs = torch.softmax(logits.float() / self._divisor, dim=1)
        # fail safe: an input whose score is NaN is flagged as out-of-distribution
        return Prediction(probs.argmax(dim=1), probs, values, ~(values >= self.threshold))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write weights, scorer (name, settings, fitted state), temperature and threshold to
        one safetensors file."""
        if self.score_name not in _scorer_names():
            raise InputError(
                f"a detector on the custom score {self.score_name!r} cannot be saved: only "
                f"registered scores ({', '.join(_scorer_names())}) can be rebuilt by load"
            )
        meta = {
            "score": self.score_name,
            "scorer_config": self.scorer.config(),
            "scorer_native": isinstance(self.scorer, NativeScore),
            "temperature": self.temperature,
            "threshold": _encode_threshold(self.threshold),
            "tpr": self.tpr,
            "model_class": type(self.model).__name__,
            "metadata": self.metadata,
        }
        tensors = dict(self.model.state_dict())
        tensors.update({f"{_STATE}{k}": v for k, v in self.scorer.state_dict().items()})
        return save_file(path, tensors, meta, _KIND)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        model: nn.Module | None = None,
        device: str | torch.device | None = None,
    ) -> OODDetector:
        """Load a detector saved by :meth:`save` (no code is executed).

        Args:
            path: the ``.safetensors`` file.
            model: a module of the saved architecture to load the weights into; ``None``
                rebuilds it from the training configuration stored in ``metadata["config"]``
                (detectors made by ``isomax calibrate`` carry it).
            device: where to run.
        """
        tensors, meta = load_file(path, _KIND)
        _check_detector(path, meta, tensors)
        extra = meta.get("metadata") or {}
        if model is None:
            if "config" not in extra:
                raise InputError(
                    f"{path} does not record its model configuration: pass the model, "
                    "OODDetector.load(path, model)"
                )
            from .engine.config import TrainConfig
            from .engine.trainer import build_model

            cfg = TrainConfig.from_dict(extra["config"])
            model = build_model(cfg, int(extra["num_classes"]), int(extra["input_shape"][0]))
        state = {k[len(_STATE) :]: tensors.pop(k) for k in list(tensors) if k.startswith(_STATE)}
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise InputError(
                f"{path} was saved from a {meta.get('model_class')} whose weights do not fit "
                f"the given {type(model).__name__}: {' '.join(str(exc).split())[:400]}"
            ) from None
        name = meta["score"].lower()
        native = meta.get("scorer_native")
        scorer = build_scorer(path, name, model, meta.get("scorer_config", {}), native)
        det = cls(model, scorer, meta["temperature"], _decode_threshold(meta["threshold"]), device)
        det.tpr = meta.get("tpr")
        det.metadata = extra
        if state or not isinstance(scorer, NativeScore):
            scorer.load_state_dict(state)
        return det


def _renamed(old: str, old_value: Any, new: str, new_value: Any) -> Any:
    """The value of a renamed keyword argument; the old name still works, with a warning."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TypeError(f"pass {new} only ({old} is its deprecated name)")
    warnings.warn(
        f"{old} is deprecated, use {new} (the same data)", DeprecationWarning, stacklevel=3
    )
    return old_value
