"""Training and evaluation engine."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import PRESETS, TrainConfig, load_config
from .evaluation import Evaluation, evaluate, score_batches
from .loader import TensorLoader
from .trainer import (
    NonFiniteLossError,
    TrainResult,
    build_model,
    load_model,
    lr_at,
    resolve_device,
    train,
)

__all__ = [
    "PRESETS",
    "Evaluation",
    "NonFiniteLossError",
    "TensorLoader",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "evaluate",
    "load_checkpoint",
    "load_config",
    "load_model",
    "lr_at",
    "resolve_device",
    "save_checkpoint",
    "score_batches",
    "train",
]
