"""Weight surgery: start a model from a trained one instead of from scratch.

- :func:`with_uv_geometry`: an EgoPressDiff that also takes UV-aligned geometry, its new inputs
  zero-initialised so it first computes exactly what the trained model does;
- :func:`init_from`: the model of a run that fine-tunes a checkpoint (``model.init_from``), grown
  with :func:`with_uv_geometry` when that is the one architecture change.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from egopress_core.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from egopress_core.model.egopressdiff import EgoPressDiff
    from egopress_core.model.kinds import ModelKind


def with_uv_geometry(model: EgoPressDiff) -> EgoPressDiff:
    """A copy of ``model`` that also takes UV-aligned geometry (``use_uv_geometry``).

    Every weight is copied; the U-Net's first convolution gets ``UV_GEOMETRY_CHANNELS`` new input
    channels (the last ones, as :meth:`~egopress_core.model.WindowFeatures.condition_channels`
    orders them) with zero weights, so the new model computes exactly what ``model`` does until
    training teaches it to use the new evidence. This is how a trained model is fine-tuned with
    the extra conditioning instead of trained again from scratch.

    Raises:
        ConfigError: the model already takes UV geometry.
        CheckpointError: the model is not an EgoPressDiff (the per-frame baseline fuses UV geometry
            in a layer of its own, which cannot start out as the identity).
    """
    from egopress_core.model.egopressdiff import EgoPressDiff

    if not isinstance(model, EgoPressDiff):
        raise CheckpointError(
            f"only an EgoPressDiff can be grown with UV geometry, not a {type(model).__name__}: train it with "
            "use_uv_geometry from scratch, or fine-tune it without"
        )
    if model.config.use_uv_geometry:
        raise ConfigError("the model already uses UV geometry (use_uv_geometry=True)")
    grown = type(model)(model.config.replace(use_uv_geometry=True)).to(model.device, model.dtype)
    state = model.state_dict()
    old = state["unet.conv_in.weight"]  # (C_out, C_in, kt, kh, kw) or (C_out, C_in, kh, kw)
    new = grown.unet.conv_in.weight
    padded = torch.zeros_like(new)
    padded[:, : old.shape[1]] = old
    state["unet.conv_in.weight"] = padded
    grown.load_state_dict(state)
    return grown.train(model.training)


def init_from(kind: ModelKind, directory: str | os.PathLike, model_config: Any) -> Any:
    """The checkpoint in ``directory`` as the start of a run that trains ``model_config``.

    The checkpoint must have ``model_config``'s architecture (training-only keys, such as dropout
    probabilities, may differ and are taken from ``model_config``), except that a model without
    ``use_uv_geometry`` may be fine-tuned with it: it is grown by :func:`with_uv_geometry`.

    Args:
        kind: the run's model kind; the checkpoint must be of the same kind.
        directory: checkpoint folder (``save_pretrained``).
        model_config: the run's model config.

    Raises:
        CheckpointError: a checkpoint of another kind or architecture.
    """
    saved = kind.load_config(directory)
    differences = saved.architecture_differences(model_config)
    if set(differences) == {"use_uv_geometry"} and getattr(model_config, "use_uv_geometry", False):
        # Adding the UV-aligned conditioning to a trained model: its new inputs start at zero.
        model = with_uv_geometry(kind.load(directory, expected_config=saved))
    else:
        model = kind.load(directory, expected_config=model_config)
    model.config = model_config  # same architecture; training-only keys (dropout) from this run
    return model


__all__ = ["init_from", "with_uv_geometry"]
