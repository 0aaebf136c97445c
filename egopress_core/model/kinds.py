"""The model kinds EgoPress trains and loads, keyed by ``model.kind`` (and a checkpoint's format).

- ``egopressdiff``: :class:`~egopress_core.model.EgoPressDiff` (presets ``tiny``, ``compact``,
  ``paper``; ``model.overrides`` are :class:`~egopress_core.model.EgoPressDiffConfig` keys);
- ``bin_classifier``: the PressureVision-style per-frame baseline
  :class:`~egopress_core.model.bin_classifier.PerFrameBinClassifier` (presets ``tiny``,
  ``compact``; overrides are :class:`~egopress_core.model.bin_classifier.BinClassifierConfig`
  keys).

Both model classes share the interface the loop, validation and checkpoints use (``config``
with ``uv_size`` / ``num_frames`` / ``replace`` / ``architecture_differences``,
``build_conditions``, ``compute_loss``, ``sample``, and ``save_pretrained``, ``from_pretrained``,
``load_config``, which delegate to :mod:`egopress_core.model.checkpoint`); what differs between
kinds lives here, in one :class:`ModelKind` per kind, so the loop has no per-kind branches.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from egopress_core.errors import CheckpointError, ConfigError

DEFAULT_KIND = "egopressdiff"


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ModelKind:
    """What the training loop needs to know about one kind of model.

    Attributes:
        name: the ``model.kind`` value.
        title: human-readable name (logs, plots, the model folder's README).
        model_path, config_path, presets_path, format_path: ``"module:attribute"`` of the model
            class, its config dataclass, its ``{preset name: factory(**overrides)}`` dict and its
            checkpoint format (the ``format`` field of its ``config.json``), imported when first
            used (this registry is read by the config module and by the model modules, whose
            imports must not cycle through it).
        supports_pretrained_svd: ``model.pretrained_svd`` applies (paper-size SVD initialisation).
        pressure_ceiling: model config -> (kPa above which training pressures saturate, the advice
            to give when the data exceeds it).
    """

    name: str
    title: str
    model_path: str
    config_path: str
    presets_path: str
    format_path: str
    supports_pretrained_svd: bool
    pressure_ceiling: Callable[[Any], tuple[float, str]]

    @property
    def model_class(self) -> type:
        return _import(self.model_path)

    @property
    def config_class(self) -> type:
        return _import(self.config_path)

    @property
    def presets(self) -> dict[str, Callable[..., Any]]:
        return _import(self.presets_path)

    @property
    def checkpoint_format(self) -> str:
        """The ``format`` field of this kind's ``config.json``."""
        return _import(self.format_path)

    def preset_config(self, preset: str, **overrides: Any) -> Any:
        """The model config of ``preset`` with ``overrides`` (keys of :attr:`config_class`)."""
        presets = self.presets
        if preset not in presets:
            raise ConfigError(f"model.preset must be one of {list(presets)} for model.kind={self.name!r}. "
                              f"Got {preset!r}")
        return presets[preset](**overrides)

    def build(self, model_config: Any) -> Any:
        """A freshly initialised model."""
        return self.model_class(model_config)

    def load(self, directory: str | os.PathLike, expected_config: Any) -> Any:
        """A checkpoint of this kind with exactly ``expected_config``'s architecture and UV layout.

        Raises:
            CheckpointError: a checkpoint of another kind, architecture or UV layout.
        """
        found = checkpoint_kind(directory)
        if found.name != self.name:
            raise CheckpointError(f"{directory} holds a model.kind={found.name!r} checkpoint; this run trains "
                                  f"model.kind={self.name!r}")
        return self.model_class.from_pretrained(directory, expected_config=expected_config,
                                                expected_uv_layout=expected_config.uv_layout)

    def load_config(self, directory: str | os.PathLike) -> Any:
        """The model config of a checkpoint of this kind (CheckpointError for another kind)."""
        found = checkpoint_kind(directory)
        if found.name != self.name:
            raise CheckpointError(f"{directory} holds a model.kind={found.name!r} checkpoint, not {self.name!r}")
        return self.model_class.load_config(directory)


def _diffusion_ceiling(config: Any) -> tuple[float, str]:
    return float(config.pressure_max_kpa), "raise model.overrides.pressure_max_kpa"


def _bin_ceiling(config: Any) -> tuple[float, str]:
    from egopress_core.metrics import PRESSURE_BIN_CENTRES_KPA

    return float(PRESSURE_BIN_CENTRES_KPA[-1]), "the top pressure bin decodes to its centre"


MODEL_KINDS: dict[str, ModelKind] = {
    "egopressdiff": ModelKind(
        name="egopressdiff",
        title="EgoPressDiff",
        model_path="egopress_core.model.egopressdiff:EgoPressDiff",
        config_path="egopress_core.model.config:EgoPressDiffConfig",
        presets_path="egopress_core.model.config:PRESETS",
        format_path="egopress_core.model.checkpoint:EGOPRESSDIFF_FORMAT",
        supports_pretrained_svd=True,
        pressure_ceiling=_diffusion_ceiling,
    ),
    "bin_classifier": ModelKind(
        name="bin_classifier",
        title="per-frame baseline (bin classifier)",
        model_path="egopress_core.model.bin_classifier:PerFrameBinClassifier",
        config_path="egopress_core.model.bin_classifier:BinClassifierConfig",
        presets_path="egopress_core.model.bin_classifier:PRESETS",
        format_path="egopress_core.model.checkpoint:BIN_CLASSIFIER_FORMAT",
        supports_pretrained_svd=False,
        pressure_ceiling=_bin_ceiling,
    ),
}


def model_kind(name: str) -> ModelKind:
    """The :class:`ModelKind` called ``name``.

    Raises:
        ConfigError: ``model.kind must be one of [...]. Got X``.
    """
    if name not in MODEL_KINDS:
        raise ConfigError(f"model.kind must be one of {list(MODEL_KINDS)}. Got {name!r}")
    return MODEL_KINDS[name]


def checkpoint_kind(directory: str | os.PathLike) -> ModelKind:
    """The kind of the model checkpoint folder ``directory``, from its ``config.json`` format.

    Raises:
        CheckpointError: no readable ``config.json``, or a format no kind writes.
    """
    path = Path(directory) / "config.json"
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise CheckpointError(f"no model checkpoint in {directory}: {path.name} is missing") from error
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    found = document.get("format") if isinstance(document, dict) else None
    for kind in MODEL_KINDS.values():
        if kind.checkpoint_format == found:
            return kind
    known = [kind.checkpoint_format for kind in MODEL_KINDS.values()]
    raise CheckpointError(f"{path} holds a {found!r} checkpoint; expected one of {known}")
