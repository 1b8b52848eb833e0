"""Names of the authors' reference code, for people migrating from it.

``XLossFirstPart`` is the head (replaces the last ``nn.Linear``), ``XLossSecondPart`` the loss
(replaces ``nn.CrossEntropyLoss``). They accept the constructor signatures, positional and
keyword, of the authors' 2021 repository (entropic-out-of-distribution-detection, both its first
``SecondPart(model_classifier)`` and its later ``SecondPart(entropic_scale=10.0)``) and of their
2022 DisMax repository (distinction-maximization-loss), with the same defaults and behaviour:
``debug=True`` returns the same tuple, DisMax applies FPR only when asked, splits odd batches the
same way, switches to the unscaled validation loss in eval mode and can precompute thresholds;
the heads load state dicts saved by the authors' classes. Unlike the reference code these run on
any device, never print and never exit; what they cannot honour raises. The deliberate
differences are listed in ``docs/fidelity.md``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import scores as _scores
from ._checks import check_float_matrix, check_labels
from .errors import InputError
from .fpr import ALPHAS, fractional_targets, mosaics
from .heads import DisMaxHead, IsoMaxHead, IsoMaxPlusHead
from .losses import IsoMaxLoss

__all__ = [
    "DisMaxLossFirstPart",
    "DisMaxLossSecondPart",
    "IsoMaxLossFirstPart",
    "IsoMaxLossSecondPart",
    "IsoMaxPlusLossFirstPart",
    "IsoMaxPlusLossSecondPart",
]

#: Percentiles of the authors' ``precomputed_thresholds`` (their order).
THRESHOLD_PERCENTILES = (
    0, 0.1, 0.2, 0.3, 0.4, 0.5, 1, 2, 3, 4, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 70, 80, 90, 100,
)  # fmt: skip


class _LoadsAuthorsStateDicts:
    """Heads that load state dicts of the authors' classes.

    Their IsoMax and IsoMax+ heads keep the temperature as a plain attribute (absent from the
    state dict: the current one is kept); their DisMax head saves it as a parameter of shape [1].
    """

    temperature: Tensor

    def _load_from_state_dict(  # type: ignore[no-untyped-def]
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ) -> None:
        key = prefix + "temperature"
        value = state_dict.get(key)
        if value is None:
            state_dict[key] = self.temperature.detach().clone()
        elif isinstance(value, Tensor) and value.shape == (1,):
            state_dict[key] = value.reshape(())
        super()._load_from_state_dict(  # type: ignore[misc]
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )


class IsoMaxLossFirstPart(_LoadsAuthorsStateDicts, IsoMaxHead):
    """IsoMax head under the reference name: ``IsoMaxLossFirstPart(num_features, num_classes,
    temperature=1.0)``."""

    def __init__(self, num_features: int, num_classes: int, temperature: float = 1.0) -> None:
        super().__init__(num_features, num_classes, temperature)
        self.num_features = num_features


class IsoMaxPlusLossFirstPart(_LoadsAuthorsStateDicts, IsoMaxPlusHead):
    """IsoMax+ head under the reference name (same arguments as IsoMaxLossFirstPart)."""

    def __init__(self, num_features: int, num_classes: int, temperature: float = 1.0) -> None:
        super().__init__(num_features, num_classes, temperature)
        self.num_features = num_features


_SCORE_TYPES = {
    "MPS": _scores.mps,
    "ES": _scores.es,
    "MDS": _scores.mds,
    "MMLS": _scores.mmls,
    "MMLES": _scores.mmles,
    "MMLEPS": _scores.mmleps,
}


class DisMaxLossFirstPart(_LoadsAuthorsStateDicts, DisMaxHead):
    """DisMax head under the reference name, with the reference's ``scores`` and buffers.

    ``scores(logits)`` scores the logits the head returned, with the score named by
    ``score_type`` (``"MMLES"`` by default; also MPS, ES, MDS, MMLS, MMLEPS). The buffers
    ``validationset_available`` and ``precomputed_thresholds`` (2 x 25: train and validation
    percentiles, NaN until computed) are those of the reference head, so its state dicts load.
    """

    validationset_available: Tensor
    precomputed_thresholds: Tensor

    def __init__(self, num_features: int, num_classes: int, temperature: float = 1.0) -> None:
        super().__init__(num_features, num_classes, temperature)
        self.num_features = num_features
        self.register_buffer("validationset_available", torch.tensor([False]))
        self.register_buffer(
            "precomputed_thresholds", torch.full((2, len(THRESHOLD_PERCENTILES)), math.nan)
        )
        self.score_type = "MMLES"

    def scores(self, logits: Tensor) -> Tensor:
        """Scores (higher = more in-distribution) of the head's logits, per ``score_type``."""
        key = str(self.score_type).upper()
        if key not in _SCORE_TYPES:
            raise InputError(
                f"score_type must be one of {', '.join(_SCORE_TYPES)}, got {self.score_type!r}"
            )
        return _SCORE_TYPES[key](logits)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _split_logits(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Logits at the targets (N,) and elsewhere (N * (C - 1),), row by row."""
    at_target = F.one_hot(targets.long(), logits.shape[1]).bool()
    return logits[at_target], logits[~at_target]


class _IsoMaxSecondPart(IsoMaxLoss):
    """Both reference signatures: ``(entropic_scale=10.0)`` (2021) and
    ``(model_classifier, entropic_scale=10.0)`` (2021's first version, 2022)."""

    def __init__(
        self,
        model_classifier: nn.Module | float | None = None,
        entropic_scale: float | None = None,
    ) -> None:
        if _is_number(model_classifier):  # SecondPart(10.0): the 2021 signature
            if entropic_scale is not None:
                raise TypeError(
                    "got two entropic scales: the first argument is the model classifier (an "
                    "nn.Module) or, in the 2021 signature, the entropic scale"
                )
            entropic_scale, model_classifier = float(model_classifier), None  # type: ignore[arg-type]
        elif model_classifier is not None and not isinstance(model_classifier, nn.Module):
            raise TypeError(
                "model_classifier must be the head (an nn.Module, e.g. IsoMaxLossFirstPart) or "
                f"None, got {type(model_classifier).__name__}"
            )
        super().__init__(entropic_scale=10.0 if entropic_scale is None else entropic_scale)
        self.model_classifier = model_classifier

    def _debug_scale(self) -> float:
        return 1.0

    def forward(self, logits: Tensor, targets: Tensor, debug: bool = False) -> Any:  # type: ignore[override]
        """The loss; with ``debug=True`` the reference's tuple: ``(loss, 1.0, intra_distances,
        inter_distances)`` (tensors; 2021 signature) or ``(loss, scale, inter_logits,
        intra_logits)`` (NumPy arrays; signature with a model classifier)."""
        loss = super().forward(logits, targets)
        if not debug:
            return loss
        intra, inter = _split_logits(logits.detach(), targets)
        if self.model_classifier is None:
            return loss, 1.0, -intra, -inter
        return loss, self._debug_scale(), inter.cpu().numpy(), intra.cpu().numpy()


class IsoMaxLossSecondPart(_IsoMaxSecondPart):
    """IsoMax loss under the reference name: ``IsoMaxLossSecondPart(entropic_scale=10.0)`` or
    ``IsoMaxLossSecondPart(model_classifier, entropic_scale=10.0)``."""


class IsoMaxPlusLossSecondPart(_IsoMaxSecondPart):
    """IsoMax+ loss under the reference name (the same loss and signatures as IsoMax's)."""

    def _debug_scale(self) -> float:
        return float(getattr(self.model_classifier, "distance_scale", torch.ones(1)).item())


_REGULARIZATIONS = {"fpr": "fpr", "fractional_probability": "fpr"}


class DisMaxLossSecondPart(nn.Module):
    """DisMax loss under the reference name:
    ``DisMaxLossSecondPart(model_classifier, regularization=None, alpha=1.0,
    batches_to_accumulate=32)``.

    ``preprocess(inputs, targets)`` shuffles the batch; with ``regularization="fpr"`` the second
    half (the last ``N - N // 2`` images, as in the reference) becomes 2x2 mosaics. In training
    mode (``model_classifier.training``) ``forward(logits, targets)`` is the cross-entropy of
    ``10 * logits`` or, with FPR, ``[CE(first half) + alpha * KL(fractional targets ||
    softmax(10 * logits))(second half)] / 2``, the fractional targets being built from the
    labels as in the reference; in eval mode it is the cross-entropy of the logits themselves
    and marks the head's ``validationset_available``.

    Args:
        model_classifier: the DisMax head (e.g. :class:`DisMaxLossFirstPart`).
        regularization: None (no FPR) or ``"fpr"`` (also ``"FPR"`` and the earlier
            ``"fractional_probability"``).
        alpha: weight of the FPR term: 1, 0.5 or 0.25.
        batches_to_accumulate: batches of scores behind each ``precompute_thresholds`` update.
    """

    def __init__(
        self,
        model_classifier: nn.Module,
        regularization: str | None = None,
        alpha: float = 1.0,
        batches_to_accumulate: int = 32,
    ) -> None:
        super().__init__()
        if not isinstance(model_classifier, nn.Module):
            raise TypeError(
                "model_classifier must be the DisMax head (an nn.Module, e.g. "
                f"DisMaxLossFirstPart), got {type(model_classifier).__name__}"
            )
        if regularization is not None:
            key = regularization.lower() if isinstance(regularization, str) else None
            if key not in _REGULARIZATIONS:
                raise InputError(f"regularization must be None or 'fpr', got {regularization!r}")
            regularization = _REGULARIZATIONS[key]
            if not isinstance(getattr(model_classifier, "num_classes", None), int):
                raise TypeError(
                    "FPR needs a head with an integer num_classes attribute (e.g. "
                    f"DisMaxLossFirstPart), got {type(model_classifier).__name__}"
                )
        if not _is_number(alpha) or float(alpha) not in ALPHAS:
            raise InputError(
                f"alpha must be one of {ALPHAS}, got {alpha!r} (the third argument is alpha; "
                "in the reference's May 2022 versions it was batches_to_accumulate: pass that "
                "by keyword)"
            )
        if (
            isinstance(batches_to_accumulate, bool)
            or not isinstance(batches_to_accumulate, int)
            or batches_to_accumulate < 1
        ):
            raise InputError(
                f"batches_to_accumulate must be a positive integer, got {batches_to_accumulate!r}"
            )
        self.model_classifier = model_classifier
        self.regularization = regularization
        self.alpha = float(alpha)
        self.batches_to_accumulate = batches_to_accumulate
        self.entropic_scale = 10.0
        self.accumulated_batches = 0
        self.accumulated_scores: dict[str, list[Tensor]] = {"train": [], "validation": []}

    def preprocess(self, inputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Shuffle the batch; with FPR, mosaics in its last ``N - N // 2`` images."""
        if not isinstance(inputs, Tensor) or inputs.dim() != 4:
            shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise InputError(f"inputs must be a 4-D tensor (N, C, H, W), got {shape}")
        n = inputs.shape[0]
        num_classes = getattr(self.model_classifier, "num_classes", None)
        if not isinstance(num_classes, int):
            num_classes = 2**62  # labels are only shuffled: any class index goes
        check_labels(targets, "targets", n, num_classes, ignore_index=-(2**62))
        perm = torch.randperm(n).to(inputs.device)
        inputs, targets = inputs[perm], targets[perm.to(targets.device)]
        if self.regularization == "fpr":
            half = n // 2
            inputs = torch.cat([inputs[:half], mosaics(inputs[half:])])
        return inputs, targets

    def forward(
        self,
        logits: Tensor,
        targets: Tensor,
        debug: bool = False,
        precompute_thresholds: bool = False,
    ) -> Any:
        """The loss; ``debug=True`` returns the reference's ``(loss, distance_scale,
        inter_logits, intra_logits)`` (NumPy arrays); ``precompute_thresholds=True`` adds the
        batch's scores to the head's ``precomputed_thresholds`` (see the class docstring)."""
        check_float_matrix(logits, "logits")
        n, num_classes = logits.shape
        check_labels(targets, "targets", n, num_classes, ignore_index=-(2**62))
        targets = targets.long()
        if self.model_classifier.training:
            partition = "train"
            log_q = F.log_softmax(self.entropic_scale * logits.float(), dim=1)
            if self.regularization is None:
                loss = F.nll_loss(log_q, targets)
            else:
                half = n // 2
                probs = fractional_targets(targets[half:], num_classes)
                kl = F.kl_div(log_q[half:], probs, reduction="batchmean")
                # A batch of one has no plain half (the reference's mean over it is NaN).
                ce = F.nll_loss(log_q[:half], targets[:half]) if half else kl.new_zeros(())
                loss = (ce + self.alpha * kl) / 2
        else:
            partition = "validation"
            flag = getattr(self.model_classifier, "validationset_available", None)
            if isinstance(flag, Tensor):
                flag.fill_(True)
            loss = F.cross_entropy(logits.float(), targets)
        if precompute_thresholds:
            self._accumulate(logits.detach(), partition)
        if not debug:
            return loss
        intra, inter = _split_logits(logits.detach(), targets)
        scale = getattr(self.model_classifier, "distance_scale", None)
        if not isinstance(scale, Tensor):
            raise TypeError("debug=True reports the head's distance_scale; this head has none")
        return loss, float(scale.item()), inter.cpu().numpy(), intra.cpu().numpy()

    def _accumulate(self, logits: Tensor, partition: str) -> None:
        head = self.model_classifier
        thresholds = getattr(head, "precomputed_thresholds", None)
        if not callable(getattr(head, "scores", None)) or not isinstance(thresholds, Tensor):
            raise TypeError(
                "precompute_thresholds needs a head with scores() and a precomputed_thresholds "
                f"buffer (DisMaxLossFirstPart), got {type(head).__name__}"
            )
        self.accumulated_scores[partition].append(head.scores(logits).double().cpu())
        self.accumulated_batches += 1  # one count for both partitions, as in the reference
        if self.accumulated_batches < self.batches_to_accumulate:
            return
        values = torch.cat(self.accumulated_scores[partition]).numpy()
        row = np.percentile(values, THRESHOLD_PERCENTILES)
        with torch.no_grad():
            thresholds[0 if partition == "train" else 1] = torch.from_numpy(row).to(thresholds)
        self.accumulated_scores[partition] = []
        self.accumulated_batches = 0

    def extra_repr(self) -> str:
        return f"regularization={self.regularization!r}, alpha={self.alpha:g}"
