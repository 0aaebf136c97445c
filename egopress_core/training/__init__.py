"""Training EgoPressDiff and the per-frame baseline: configuration, model kinds, data loading,
the loop, checkpoints, validation.

Entry points: :func:`load_train_config` + :func:`train` (what ``egopress train`` runs), and
:func:`evaluate_model` (sampled metrics in kPa, shared with evaluation). ``model.kind`` picks the
model (:data:`MODEL_KINDS`).
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
from egopress_core.model.kinds import MODEL_KINDS, ModelKind, checkpoint_kind, model_kind
from egopress_core.training.trainer import (
    TrainingDivergedError,
    TrainingLossModule,
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
    "EMAConfig",
    "EpochBatches",
    "LoggingConfig",
    "MODEL_KINDS",
    "ModelConfig",
    "ModelKind",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "TrainingDivergedError",
    "TrainingLossModule",
    "ValidationConfig",
    "WindowCollator",
    "build_accelerator",
    "build_datasets",
    "build_ema",
    "build_lr_scheduler",
    "build_model",
    "build_optimizer",
    "checkpoint_kind",
    "evaluate_model",
    "load_train_config",
    "model_kind",
    "parse_override",
    "train",
    "validation_loader",
]
