"""Model checkpoints on disk: the folder's files, each kind's format and version, the rules that
refuse checkpoints this code cannot use, and saving / loading.

A checkpoint folder holds ``config.json`` (``{"format", "version", "config", ...}``, sorted keys)
and ``model.safetensors``, written so that a crash never leaves a half-written checkpoint.
Formats: ``egopressdiff`` (:class:`~egopress_core.model.EgoPressDiff`, version
:data:`EGOPRESSDIFF_VERSION`) and ``egopress-bin-classifier`` (the per-frame baseline, version
:data:`BIN_CLASSIFIER_VERSION`).

The model classes keep thin ``save_pretrained`` / ``from_pretrained`` / ``load_config`` that call
the functions here with their own class, so this module imports no model class (the model
modules import it); :mod:`egopress_core.model.kinds` maps a folder's format to its kind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from egopress_core.errors import CheckpointError, ConfigError
from egopress_core.model.config import EgoPressDiffConfig
from egopress_core.model.svd_transfer import load_frozen_from_svd

if TYPE_CHECKING:
    from egopress_core.model.bin_classifier import PerFrameBinClassifier
    from egopress_core.model.egopressdiff import EgoPressDiff

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

EGOPRESSDIFF_FORMAT = "egopressdiff"
# 2: the last UV-geometry channel became the height above a fitted surface plane (it was a
# max-pooled depth proximity). 3: a model without depth (use_depth=False) gets its UV geometry
# built without depth too. Older checkpoints read unchanged unless one of those changes their
# inputs.
EGOPRESSDIFF_VERSION = 3
BIN_CLASSIFIER_FORMAT = "egopress-bin-classifier"
BIN_CLASSIFIER_VERSION = 1


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def write_checkpoint(directory: str | os.PathLike, state: dict[str, torch.Tensor], document: dict[str, Any]) -> None:
    """Writes the weights and the config document into ``directory`` (created).

    Both files are staged in a temporary folder inside ``directory`` and renamed into place.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in state.items()}
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".staging-"))
    try:
        save_file(state, staging / WEIGHTS_NAME, metadata={"format": "pt"})
        (staging / CONFIG_NAME).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        os.replace(staging / WEIGHTS_NAME, directory / WEIGHTS_NAME)
        os.replace(staging / CONFIG_NAME, directory / CONFIG_NAME)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_checkpoint(directory: str | os.PathLike, state: dict[str, torch.Tensor], format_name: str, version: int,
                    config: Any, **extra: Any) -> None:
    """Writes ``state`` and the document ``{"format", "version", "config": config.to_dict(), **extra}``."""
    document = {"format": format_name, "version": version, "config": config.to_dict(), **extra}
    write_checkpoint(directory, state, document)


def read_document(directory: str | os.PathLike) -> Any:
    """The parsed ``config.json`` of ``directory`` (any JSON value; the caller checks its format).

    Raises:
        CheckpointError: ``cannot read <path>: <error>`` (missing file, unreadable or not JSON).
    """
    path = Path(directory) / CONFIG_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error


# ----------------------------------------------------------------------------------------------
# Rules every kind applies
# ----------------------------------------------------------------------------------------------


def config_from_document(directory: str | os.PathLike, document: dict[str, Any], config_class: type) -> Any:
    """``config_class.from_dict(document["config"])``, any failure a :class:`CheckpointError`."""
    try:
        return config_class.from_dict(document["config"])
    except (ConfigError, KeyError, TypeError) as error:
        raise CheckpointError(f"{Path(directory) / CONFIG_NAME} holds an invalid config: {error}") from error


def check_expected(directory: str | os.PathLike, config: Any, expected_config: Any | None = None,
                   expected_uv_layout: str | None = None) -> None:
    """Refuses a checkpoint whose config is not the one the caller expects.

    Args:
        directory: the checkpoint folder (named in the messages).
        config: the checkpoint's config.
        expected_config: if given, every architecture key must match (training-only keys, such
            as dropout probabilities, may differ).
        expected_uv_layout: if given, the checkpoint's ``uv_layout`` must equal it.

    Raises:
        CheckpointError: another UV layout or architecture.
    """
    if expected_uv_layout is not None and config.uv_layout != expected_uv_layout:
        raise CheckpointError(
            f"checkpoint {directory} is for UV layout {config.uv_layout!r}, not {expected_uv_layout!r}"
        )
    if expected_config is not None:
        differences = config.architecture_differences(expected_config)
        if differences:
            listed = ", ".join(
                f"{key}: checkpoint {mine!r} vs expected {theirs!r}"
                for key, (mine, theirs) in sorted(differences.items())
            )
            raise CheckpointError(f"checkpoint {directory} was trained with another config ({listed})")


def check_weight_shapes(weights: Path, expected_shapes: dict[str, tuple[int, ...]]) -> None:
    """Compares the tensor names and shapes in a safetensors header with a model's, reading no
    tensor data (a mismatched paper-size file fails in milliseconds, not after gigabytes).

    Raises:
        CheckpointError: an unreadable header, or missing, unexpected or other-shaped tensors.
    """
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(weights), framework="pt") as handle:
            stored_shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"cannot read {weights}: {error}") from error
    missing = sorted(set(expected_shapes) - set(stored_shapes))
    unexpected = sorted(set(stored_shapes) - set(expected_shapes))
    wrong = sorted(k for k in set(expected_shapes) & set(stored_shapes) if expected_shapes[k] != stored_shapes[k])
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{weights} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shapes {[(k, stored_shapes[k], expected_shapes[k]) for k in wrong[:5]]}"
        )


# ----------------------------------------------------------------------------------------------
# EgoPressDiff
# ----------------------------------------------------------------------------------------------


def read_egopressdiff_document(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of an EgoPressDiff checkpoint this code can use.

    Raises:
        CheckpointError: no ``config.json``; unreadable; another format; a version this code does
            not read; or a version whose inputs this code no longer builds: version 1 with
            ``use_uv_geometry`` (the last UV-geometry channel changed in version 2), version 2 with
            ``use_uv_geometry`` and ``use_depth=False`` (geometry without depth since version 3).
    """
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"no EgoPressDiff checkpoint in {directory}: {CONFIG_NAME} is missing")
    document = read_document(directory)
    if not isinstance(document, dict) or document.get("format") != EGOPRESSDIFF_FORMAT:
        raise CheckpointError(f"{path} is not an EgoPressDiff checkpoint config")
    version = document.get("version")
    config = document.get("config") if isinstance(document.get("config"), dict) else {}
    uses_geometry = bool(config.get("use_uv_geometry"))
    if version == 1 and uses_geometry:
        raise CheckpointError(
            f"{path} is a version-1 checkpoint with use_uv_geometry: it was trained on the old "
            f"surface-proximity channel, which this code no longer computes; train it again "
            f"(scripts/train_shipped_model.sh shows how the shipped one is trained)"
        )
    if version == 2 and uses_geometry and config.get("use_depth") is False:
        raise CheckpointError(
            f"{path} is a version-2 checkpoint with use_uv_geometry and use_depth=False: its "
            f"UV geometry was built from the depth map, which this code no longer does for models "
            f"without depth; train it again"
        )
    if version not in (1, 2, EGOPRESSDIFF_VERSION):
        raise CheckpointError(
            f"{path} has checkpoint version {version}; this code reads versions 1 to {EGOPRESSDIFF_VERSION}"
        )
    return document


def load_egopressdiff_config(directory: str | os.PathLike) -> EgoPressDiffConfig:
    """An EgoPressDiff checkpoint's config, :class:`CheckpointError` for anything unreadable."""
    return config_from_document(directory, read_egopressdiff_document(directory), EgoPressDiffConfig)


def save_egopressdiff(model: EgoPressDiff, directory: str | os.PathLike, include_frozen: bool = True) -> None:
    """Writes ``config.json`` and ``model.safetensors`` of an EgoPressDiff.

    Args:
        model: the model.
        directory: checkpoint folder (created).
        include_frozen: also store the frozen VAE / CLIP weights (self-contained checkpoint).
            False keeps paper-size checkpoints small (no 2.5 GB of CLIP per save); loading then
            needs ``frozen_weights_from`` (the SVD folder) in :func:`load_egopressdiff`.

    Files are written to temporary names and renamed, so a crash leaves the old checkpoint.
    """
    skipped = () if include_frozen else model.frozen_prefixes()
    state = {name: tensor for name, tensor in model.state_dict().items() if not name.startswith(skipped)}
    save_checkpoint(directory, state, EGOPRESSDIFF_FORMAT, EGOPRESSDIFF_VERSION, model.config,
                    external_frozen_weights=bool(skipped))


def load_egopressdiff(
    model_class: type[EgoPressDiff],
    directory: str | os.PathLike,
    expected_config: EgoPressDiffConfig | None = None,
    expected_uv_layout: str | None = None,
    map_location: str | torch.device = "cpu",
    frozen_weights_from: str | os.PathLike | None = None,
) -> EgoPressDiff:
    """Loads a checkpoint written by :func:`save_egopressdiff`.

    Args:
        model_class: the class to build (:class:`~egopress_core.model.EgoPressDiff` or a subclass).
        directory: checkpoint folder.
        expected_config, expected_uv_layout: see :func:`check_expected`.
        map_location: device for the weights.
        frozen_weights_from: SVD folder to read the frozen VAE / CLIP weights from, needed when
            the checkpoint was saved with ``include_frozen=False``.

    Raises:
        CheckpointError: missing files, another config or UV layout, weights of other shapes; all
            checked before the weights are read.
    """
    from safetensors.torch import load_file

    document = read_egopressdiff_document(directory)
    config = config_from_document(directory, document, EgoPressDiffConfig)
    check_expected(directory, config, expected_config, expected_uv_layout)
    external = bool(document.get("external_frozen_weights", False))
    if external and frozen_weights_from is None:
        raise CheckpointError(
            f"checkpoint {directory} was saved without its frozen VAE / CLIP weights; "
            "pass frozen_weights_from=<Stable Video Diffusion folder>"
        )
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {WEIGHTS_NAME}")
    model = model_class(config)
    skipped = model.frozen_prefixes() if external else ()
    check_weight_shapes(
        weights, {name: tuple(t.shape) for name, t in model.state_dict().items() if not name.startswith(skipped)}
    )
    if external:
        load_frozen_from_svd(model, Path(frozen_weights_from))
    model.load_state_dict(load_file(os.fspath(weights), device=str(map_location)), strict=not external)
    return model.to(map_location)


# ----------------------------------------------------------------------------------------------
# The per-frame baseline
# ----------------------------------------------------------------------------------------------


def read_bin_classifier_document(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a per-frame baseline checkpoint (only its one version exists).

    Raises:
        CheckpointError: unreadable, another format or another version.
    """
    document = read_document(directory)
    if (not isinstance(document, dict) or document.get("format") != BIN_CLASSIFIER_FORMAT
            or document.get("version") != BIN_CLASSIFIER_VERSION):
        raise CheckpointError(f"{Path(directory) / CONFIG_NAME} is not a version-{BIN_CLASSIFIER_VERSION} "
                              f"{BIN_CLASSIFIER_FORMAT} checkpoint")
    return document


def save_bin_classifier(model: PerFrameBinClassifier, directory: str | os.PathLike) -> None:
    """Writes ``config.json`` and ``model.safetensors`` of the per-frame baseline atomically."""
    save_checkpoint(directory, model.state_dict(), BIN_CLASSIFIER_FORMAT, BIN_CLASSIFIER_VERSION, model.config)


def load_bin_classifier(
    model_class: type[PerFrameBinClassifier],
    directory: str | os.PathLike,
    expected_config: Any | None = None,
    expected_uv_layout: str | None = None,
    map_location: str | torch.device = "cpu",
) -> PerFrameBinClassifier:
    """Loads a checkpoint written by :func:`save_bin_classifier`.

    Args:
        model_class: the class to build; its ``load_config`` reads the config (the config class
            lives beside the model, which imports this module).
        directory, expected_config, expected_uv_layout, map_location: as in :func:`load_egopressdiff`
            (training-only keys such as ``soft_label_sigma_bins`` may differ from ``expected_config``).

    Raises:
        CheckpointError: missing or unreadable files, another config or UV layout, weights of
            other shapes.
    """
    from safetensors.torch import load_file

    config = model_class.load_config(directory)
    check_expected(directory, config, expected_config, expected_uv_layout)
    model = model_class(config)
    try:
        model.load_state_dict(load_file(os.fspath(Path(directory) / WEIGHTS_NAME)))
    except Exception as error:  # missing file, corrupt header or other shapes
        raise CheckpointError(f"cannot load weights from {directory}: {error}") from error
    return model.to(map_location)


__all__ = [
    "BIN_CLASSIFIER_FORMAT",
    "BIN_CLASSIFIER_VERSION",
    "CONFIG_NAME",
    "EGOPRESSDIFF_FORMAT",
    "EGOPRESSDIFF_VERSION",
    "WEIGHTS_NAME",
    "check_expected",
    "check_weight_shapes",
    "config_from_document",
    "load_bin_classifier",
    "load_egopressdiff",
    "load_egopressdiff_config",
    "read_bin_classifier_document",
    "read_document",
    "read_egopressdiff_document",
    "save_bin_classifier",
    "save_checkpoint",
    "save_egopressdiff",
    "write_checkpoint",
]
