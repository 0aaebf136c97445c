"""Training EgoPressDiff: configuration, data loading, the loop, checkpoints, validation.

Entry points: :func:`load_train_config` + :func:`train` (what ``egopress train`` runs), and
:func:`evaluate_model` (sampled metrics in kPa, shared with evaluation).
"""

from egopress_core.training.config import (
    CheckpointConfig,
    DataConfig,
    EMAConfig,
    LoggingConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    ValidationConfig,
    load_train_config,
    parse_override,
)
from egopress_core.training.data import EpochBatches, TrainingData, WindowCollator, build_datasets, validation_loader
from egopress_core.training.trainer import (
    DiffusionLossModule,
    TrainingDivergedError,
    TrainResult,
    build_accelerator,
    build_ema,
    build_lr_scheduler,
    build_model,
    build_optimizer,
    train,
)
from egopress_core.training.validation import evaluate_model

__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "DiffusionLossModule",
    "EMAConfig",
    "EpochBatches",
    "LoggingConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "TrainingDivergedError",
    "ValidationConfig",
    "WindowCollator",
    "build_accelerator",
    "build_datasets",
    "build_ema",
    "build_lr_scheduler",
    "build_model",
    "build_optimizer",
    "evaluate_model",
    "load_train_config",
    "parse_override",
    "train",
    "validation_loader",
]
