"""Training and evaluation engine."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import PRESETS, TrainConfig, load_config
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
    "NonFiniteLossError",
    "TensorLoader",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "load_checkpoint",
    "load_config",
    "load_model",
    "lr_at",
    "resolve_device",
    "save_checkpoint",
    "train",
]
