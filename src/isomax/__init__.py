"""isomax: IsoMax, IsoMax+ and DisMax, out-of-distribution detection as a property of training.

Drop-in use::

    model.fc = isomax.IsoMaxPlusHead(512, 10)        # was nn.Linear(512, 10)
    criterion = isomax.IsoMaxLoss()                  # was nn.CrossEntropyLoss()
    ...                                              # train as before
    score = isomax.scores.mds(model(x))              # higher = more in-distribution
"""

from __future__ import annotations

import logging

from . import (
    calibration,
    data,
    engine,
    finetune,
    interop,
    metrics,
    models,
    posthoc,
    scores,
    scoring,
)
from .comparison import compare
from .compat import (
    DisMaxLossFirstPart,
    DisMaxLossSecondPart,
    IsoMaxLossFirstPart,
    IsoMaxLossSecondPart,
    IsoMaxPlusLossFirstPart,
    IsoMaxPlusLossSecondPart,
)
from .detector import OODDetector, Prediction
from .fpr import FPRLoss, FPRTargets, FractionalProbabilityRegularization
from .heads import DisMaxHead, IsoMaxHead, IsoMaxPlusHead, build_head, pairwise_distances
from .losses import IsoMaxLoss
from .methods import METHODS, Method, get_method
from .optim import param_groups

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "METHODS",
    "DisMaxHead",
    "DisMaxLossFirstPart",
    "DisMaxLossSecondPart",
    "FPRLoss",
    "FPRTargets",
    "FractionalProbabilityRegularization",
    "IsoMaxHead",
    "IsoMaxLoss",
    "IsoMaxLossFirstPart",
    "IsoMaxLossSecondPart",
    "IsoMaxPlusHead",
    "IsoMaxPlusLossFirstPart",
    "IsoMaxPlusLossSecondPart",
    "Method",
    "OODDetector",
    "Prediction",
    "__version__",
    "build_head",
    "calibration",
    "compare",
    "data",
    "engine",
    "finetune",
    "get_method",
    "interop",
    "metrics",
    "models",
    "pairwise_distances",
    "param_groups",
    "posthoc",
    "scores",
    "scoring",
]
