"""Weights from a local Stable Video Diffusion folder: a paper-size EgoPressDiff initialised from
SVD (:func:`from_pretrained_svd`, what it took in :class:`SVDTransferReport`), and the frozen
VAE / CLIP weights of a checkpoint saved without them (:func:`load_frozen_from_svd`).

The folder has diffusers / transformers ``save_pretrained`` sub-folders ``unet/``, ``vae/`` and
``image_encoder/``. SVD's U-Net was trained with EDM preconditioning (continuous
``0.25 log sigma`` noise labels); EgoPressDiff fine-tunes it with discrete DDPM timesteps, so its
time embedding re-adapts during fine-tuning.

This module imports no model class (the checkpoint module, which the model imports, uses
:func:`load_frozen_from_svd`); :func:`from_pretrained_svd` gets EgoPressDiff from
:mod:`egopress_core.model.kinds`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from egopress_core.errors import CheckpointError, ConfigError
from egopress_core.model.config import CLIP_KEYS, VAE_KEYS, EgoPressDiffConfig, paper_config
from egopress_core.model.image_encoder import CLIPImageEncoder
from egopress_core.model.kinds import model_kind
from egopress_core.model.latent_codec import VAELatentCodec

if TYPE_CHECKING:
    from egopress_core.model.egopressdiff import EgoPressDiff

logger = logging.getLogger(__name__)

SVD_SUBFOLDERS = ("unet", "vae", "image_encoder")


@dataclass
class SVDTransferReport:
    """What :func:`from_pretrained_svd` took from the SVD U-Net (parameter names)."""

    loaded: list[str]
    expanded: list[str]
    initialised: list[str]


def load_frozen_from_svd(model: nn.Module, root: Path, variant: str | None = None) -> None:
    """Loads an EgoPressDiff's frozen VAE and CLIP weights from an SVD folder (``vae/``,
    ``image_encoder/``); a pixel-space codec or a conv image encoder has none to load."""
    if isinstance(model.codec, VAELatentCodec):
        model.codec.load_pretrained(root / "vae", variant=variant)
    if isinstance(model.image_encoder, CLIPImageEncoder):
        model.image_encoder.load_pretrained(root / "image_encoder")


def svd_config(svd_directory: str | os.PathLike, **config_overrides: Any) -> EgoPressDiffConfig:
    """The paper-size config whose architecture keys come from an SVD folder's configs.

    Other keys come from :func:`~egopress_core.model.config.paper_config` and
    ``config_overrides``.

    Raises:
        CheckpointError: not an SVD folder, unreadable configs, per-level layer counts.
        ConfigError: ``config_overrides`` set a key the SVD folder decides.
    """
    root = Path(svd_directory)
    for sub in SVD_SUBFOLDERS:
        if not (root / sub / "config.json").is_file():
            raise CheckpointError(f"{root} is not a Stable Video Diffusion folder: {sub}/config.json is missing")

    def read(sub: str) -> dict[str, Any]:
        try:
            return json.loads((root / sub / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(f"cannot read {root / sub / 'config.json'}: {error}") from error

    unet_cfg, vae_cfg, clip_cfg = read("unet"), read("vae"), read("image_encoder")
    if unet_cfg.get("_class_name") != "UNetSpatioTemporalConditionModel":
        raise CheckpointError(
            f"{root / 'unet'} holds {unet_cfg.get('_class_name')}, not UNetSpatioTemporalConditionModel"
        )
    heads = unet_cfg.get("num_attention_heads", (5, 10, 20, 20))
    levels = len(unet_cfg["block_out_channels"])
    clip = {k: clip_cfg[k] for k in CLIP_KEYS if k in clip_cfg}
    patch_tokens = config_overrides.get("clip_patch_tokens", True)
    grid = int(clip["image_size"]) // int(clip["patch_size"])
    derived: dict[str, Any] = dict(
        vae={k: vae_cfg[k] for k in VAE_KEYS if k in vae_cfg},
        clip=clip,
        num_image_tokens=1 + grid * grid if patch_tokens else 1,
        cross_attention_dim=int(unet_cfg["cross_attention_dim"]),
        unet_block_out_channels=tuple(unet_cfg["block_out_channels"]),
        unet_down_block_types=tuple(unet_cfg["down_block_types"]),
        unet_up_block_types=tuple(unet_cfg["up_block_types"]),
        unet_layers_per_block=int(unet_cfg.get("layers_per_block", 2)),
        unet_transformer_layers_per_block=int(unet_cfg.get("transformer_layers_per_block", 1)),
        unet_num_attention_heads=tuple(heads) if isinstance(heads, (list, tuple)) else (int(heads),) * levels,
        unet_addition_time_embed_dim=int(unet_cfg.get("addition_time_embed_dim", 256)),
    )
    for key in ("unet_layers_per_block", "unet_transformer_layers_per_block"):
        if isinstance(unet_cfg.get(key.removeprefix("unet_")), (list, tuple)):
            raise CheckpointError(f"per-level {key.removeprefix('unet_')} in {root / 'unet'} is not supported")
    clashing = sorted(set(config_overrides) & set(derived))
    if clashing:
        raise ConfigError(f"{clashing} come from the SVD folder and cannot be overridden")
    return paper_config(**{**derived, **config_overrides})


def transfer_svd_unet(model: EgoPressDiff, svd_directory: str | os.PathLike,
                      variant: str | None = None) -> SVDTransferReport:
    """Copies the SVD U-Net's tensors into ``model.unet`` by name where shapes match.

    ``conv_in`` is widened: SVD's noisy-latent channels feed the pressure latent, its
    conditioning-image latent channels feed the depth latent (both are VAE latents of an
    image-like condition), remaining channels start at zero. New modules (vertex cross-attention)
    keep their initialisation.

    Raises:
        CheckpointError: the U-Net does not load.
    """
    from diffusers import UNetSpatioTemporalConditionModel

    root = Path(svd_directory)
    try:
        svd_unet = UNetSpatioTemporalConditionModel.from_pretrained(os.fspath(root / "unet"), variant=variant)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load the SVD U-Net from {root / 'unet'}: {error}") from error
    source = svd_unet.state_dict()
    target = model.unet.state_dict()
    report = SVDTransferReport(loaded=[], expanded=[], initialised=[])
    latent = model.config.latent_channels
    for name, tensor in target.items():
        if name in source and source[name].shape == tensor.shape:
            target[name] = source[name].to(tensor.dtype)
            report.loaded.append(name)
        elif name == "conv_in.weight" and name in source:
            widened = torch.zeros_like(tensor)
            svd_in = source[name].shape[1]
            widened[:, :latent] = source[name][:, :latent]
            if model.config.use_depth and svd_in >= 2 * latent:
                widened[:, latent : 2 * latent] = source[name][:, latent : 2 * latent]
            target[name] = widened
            report.expanded.append(name)
        else:
            report.initialised.append(name)
    model.unet.load_state_dict(target)
    return report


def from_pretrained_svd(svd_directory: str | os.PathLike, variant: str | None = None,
                        **config_overrides: Any) -> EgoPressDiff:
    """Paper-size EgoPressDiff initialised from a local Stable Video Diffusion folder.

    Architecture keys come from the folder's configs (:func:`svd_config`); other keys from
    :func:`~egopress_core.model.config.paper_config` and ``config_overrides``. The VAE and CLIP
    load fully; U-Net tensors load by name where shapes match (:func:`transfer_svd_unet`). New
    modules (vertex cross-attention, PoseNet, Vertex Encoder) keep their initialisation. The
    transfer is logged and kept as ``model.svd_transfer``.

    Args:
        svd_directory: the SVD folder.
        variant: weights variant of the diffusers folders (e.g. ``"fp16"``).
        **config_overrides: :class:`~egopress_core.model.EgoPressDiffConfig` keys the folder does
            not decide.

    Raises:
        CheckpointError: not a (supported) SVD folder.
        ConfigError: an override of a key the SVD folder decides.
    """
    root = Path(svd_directory)
    config = svd_config(root, **config_overrides)
    model = model_kind("egopressdiff").build(config)
    # 1. Frozen VAE and CLIP: full loads. 2. U-Net: by name where shapes match; conv_in widened.
    load_frozen_from_svd(model, root, variant=variant)
    report = transfer_svd_unet(model, root, variant=variant)
    model.svd_transfer = report
    logger.info(
        "SVD U-Net transfer from %s: %d tensors loaded, %d widened, %d newly initialised",
        root,
        len(report.loaded),
        len(report.expanded),
        len(report.initialised),
    )
    return model


__all__ = [
    "SVDTransferReport",
    "from_pretrained_svd",
    "load_frozen_from_svd",
    "svd_config",
    "transfer_svd_unet",
]
