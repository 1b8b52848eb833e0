"""One call that evaluates a model: ID accuracy and calibration, and a table per OOD set.

In the spirit of OpenOOD's evaluator: :func:`evaluate` returns, for every OOD set and every
score, TNR@TPR95 (ID positive, the papers' convention), FPR@TPR95 (OOD positive, OpenOOD's
convention), AUROC, AUPR-In, AUPR-Out and detection accuracy, plus the mean over OOD sets.
Scores are computed batch by batch, so memory holds one float per input and score (plus the ID
probabilities), whatever the size of the OOD sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .. import metrics
from .. import scores as _scores
from ..errors import InputError

__all__ = ["Evaluation", "evaluate", "score_batches"]


@dataclass
class Evaluation:
    """Result of :func:`evaluate`; values are fractions in [0, 1]."""

    id_metrics: dict[str, float]
    ood: dict[str, dict[str, dict[str, float]]]  # ood[set][score][metric]
    mean: dict[str, dict[str, float]]  # mean[score][metric] over the OOD sets
    reliability: dict[str, list[float | None]] = field(default_factory=dict, repr=False)
    scores: dict[str, dict[str, Tensor]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "units": (
                "fractions in [0, 1]: accuracy, ece, mce, brier and every OOD metric; nll in "
                "nats; temperature unitless"
            ),
            "id": self.id_metrics,
            "ood": self.ood,
            "mean": self.mean,
            "reliability": self.reliability,
        }

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows (one per OOD set and score, then the means) for CSV and Markdown."""
        out = []
        for name, per_score in [*self.ood.items(), ("mean", self.mean)]:
            for score, values in per_score.items():
                out.append({"ood": name, "score": score, **values})
        return out


def _loader(data: Any, batch_size: int) -> Iterable[Any]:
    from ..data import ImageDataset

    if isinstance(data, ImageDataset) and data.transform is None:
        return _image_batches(data, batch_size)
    if isinstance(data, torch.utils.data.Dataset):
        return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    return data


def _image_batches(ds: Any, batch_size: int) -> Iterable[tuple[Tensor, Tensor]]:
    """Vectorised batches of an isomax image dataset: one batch in memory at a time."""
    from ..data import normalize
    from ..data.core import stream_raw_batches

    for x, y in stream_raw_batches(ds, batch_size):
        if len(y):
            yield normalize(x, ds.mean, ds.std), y


def _detector_scores(detectors: Mapping[str, Any], x: Tensor) -> dict[str, Tensor]:
    """Each detector's scores of a batch; post-hoc detectors of one model share a backbone pass."""
    from ..posthoc import PosthocDetector, score_detectors

    shared = {n: d for n, d in detectors.items() if isinstance(d, PosthocDetector)}
    out = score_detectors(shared, x) if shared else {}
    return {n: out[n] if n in out else d.score(x) for n, d in detectors.items()}


@torch.no_grad()
def score_batches(
    model: nn.Module,
    data: Any,
    score_names: Sequence[str],
    temperature: float = 1.0,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
    keep_logits: bool = False,
    detectors: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Tensor], Tensor | None, Tensor | None]:
    """Scores of every input of a dataset or loader, streamed batch by batch.

    ``detectors`` adds fitted post-hoc detectors (:mod:`isomax.posthoc`), scored on the inputs
    under their own names.

    Returns:
        (scores by name, each (N,) float64 on the CPU; the logits (N, C) float32 or None; the
        labels (N,) or None).
    """
    model.eval()
    device = torch.device(device)
    fns = {name: _scores.get(name) for name in score_names}
    collected: dict[str, list[Tensor]] = {name: [] for name in fns}
    kept, labels = [], []
    n = 0
    for batch in _loader(data, batch_size):
        x = batch[0] if isinstance(batch, list | tuple) else batch
        logits = model(x.to(device)).float()
        for name, fn in fns.items():
            collected[name].append(fn(logits, temperature=temperature).double().cpu())
        if detectors:
            for name, values in _detector_scores(detectors, x.to(device)).items():
                collected.setdefault(name, []).append(values.double().cpu())
        n += len(logits)
        if keep_logits:
            kept.append(logits.cpu())
        if isinstance(batch, list | tuple) and len(batch) > 1:
            labels.append(torch.as_tensor(batch[1]).cpu())
    if n == 0:
        raise InputError("the dataset to score is empty")
    out = {name: torch.cat(parts) for name, parts in collected.items()}
    return out, torch.cat(kept) if keep_logits else None, torch.cat(labels) if labels else None


def evaluate(
    model: nn.Module,
    id_data: Any,
    ood_data: Mapping[str, Any],
    score_names: Sequence[str] = ("mps",),
    temperature: float = 1.0,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
    tpr: float = 0.95,
    keep_scores: bool = False,
    id_val_data: Any = None,
    detectors: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Evaluate ``model`` on the ID test data and on each OOD set.

    Args:
        model: the trained classifier (returns logits).
        id_data: labelled in-distribution test data (a Dataset or a loader of (x, y)).
        ood_data: name -> Dataset or loader of OOD inputs.
        score_names: names from :mod:`isomax.scores`.
        temperature: applied to the logits for probabilities and scores.
        keep_scores: keep the raw scores in ``Evaluation.scores`` (``"id"`` and each OOD name).
        id_val_data: labelled ID validation data; when given, a temperature is fitted on it
            (NLL, :func:`isomax.calibration.fit_temperature`) and the ID metrics gain
            ``temperature``, ``ece_calibrated``, ``nll_calibrated`` and ``brier_calibrated``
            computed on the test data at that temperature. Never pass the test split here.
        detectors: fitted post-hoc detectors (name -> :class:`isomax.posthoc.PosthocDetector`)
            reported next to the logit scores under their names.
    """
    if not ood_data:
        raise InputError("ood_data is empty: name at least one OOD set to evaluate against")
    id_scores, logits, labels = score_batches(
        model, id_data, score_names, temperature, device, batch_size, True, detectors
    )
    all_names = [*score_names, *(detectors or {})]
    if labels is None or logits is None:
        raise InputError("the in-distribution data must yield (inputs, labels) pairs")
    probs = torch.softmax(logits.double() / temperature, dim=1)
    id_metrics = {
        "accuracy": metrics.accuracy(probs, labels),
        "ece": metrics.expected_calibration_error(probs, labels),
        "mce": metrics.maximum_calibration_error(probs, labels),
        "nll": metrics.nll(probs, labels),
        "brier": metrics.brier(probs, labels),
        "n": float(len(labels)),
    }
    if id_val_data is not None:
        from ..calibration import fit_temperature

        _, val_logits, val_labels = score_batches(
            model, id_val_data, (), 1.0, device, batch_size, keep_logits=True
        )
        if val_labels is None or val_logits is None:
            raise InputError("id_val_data must yield (inputs, labels) pairs")
        t_fit = fit_temperature(val_logits, val_labels, objective="nll")
        calibrated = torch.softmax(logits.double() / t_fit, dim=1)
        id_metrics.update(
            temperature=t_fit,
            ece_calibrated=metrics.expected_calibration_error(calibrated, labels),
            nll_calibrated=metrics.nll(calibrated, labels),
            brier_calibrated=metrics.brier(calibrated, labels),
        )
    ood: dict[str, dict[str, dict[str, float]]] = {}
    raw: dict[str, dict[str, Tensor]] = {"id": id_scores} if keep_scores else {}
    for name, data in ood_data.items():
        values, _, _ = score_batches(
            model, data, score_names, temperature, device, batch_size, detectors=detectors
        )
        ood[name] = {s: metrics.ood_metrics(id_scores[s], values[s], tpr=tpr) for s in all_names}
        if keep_scores:
            raw[name] = values
    keys = next(iter(ood.values()))[all_names[0]].keys()
    mean = {s: {k: sum(ood[n][s][k] for n in ood) / len(ood) for k in keys} for s in all_names}
    diagram = {  # JSON-friendly: lists, with None for empty bins
        k: [None if v != v else float(v) for v in vals]
        for k, vals in metrics.reliability_diagram(probs, labels).items()
        if k in ("edges", "confidence", "accuracy", "counts")
    }
    return Evaluation(id_metrics, ood, mean, diagram, raw)
