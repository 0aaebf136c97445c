"""Image encoders: RGB frames -> cross-attention tokens.

- :class:`ConvImageEncoder` (compact model, trained from scratch): a small strided conv stack
  pooled to a grid of tokens.
- :class:`CLIPImageEncoder` (paper model): the frozen CLIP ViT of a Stable Video Diffusion
  folder (``image_encoder/``); needs ``transformers``, imported only when this class is built.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from egopress_core.errors import CheckpointError, ConfigError, DataError

# OpenAI CLIP preprocessing statistics (what SVD's feature extractor uses).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ImageEncoderOutput:
    """tokens: (N, num_tokens, output_dim), N = B * T frames."""

    tokens: torch.Tensor


def _check_rgb(rgb: torch.Tensor) -> None:
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise DataError(f"rgb must have shape (N, 3, H, W); got {tuple(rgb.shape)}")


class ConvImageEncoder(nn.Module):
    """Strided conv stack -> adaptive average pool to a g x g grid -> linear + LayerNorm tokens.

    Args:
        output_dim: token width (the U-Net's cross-attention width).
        num_tokens: tokens per frame; a square g * g (one per grid cell).
        channels: widths of the stride-2 conv layers (GroupNorm + SiLU after each).
        in_channels: input channels (3 for RGB).
    """

    def __init__(
        self,
        output_dim: int,
        num_tokens: int = 16,
        channels: tuple[int, ...] = (32, 64, 128),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        for name, value in (
            ("output_dim", output_dim),
            ("num_tokens", num_tokens),
            ("in_channels", in_channels),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"ConvImageEncoder: {name} must be a positive integer; got {value!r}")
        grid = math.isqrt(num_tokens)
        if grid * grid != num_tokens:
            raise ConfigError(f"ConvImageEncoder: num_tokens must be a square; got {num_tokens}")
        if not channels or any(not isinstance(c, int) or c <= 0 for c in channels):
            raise ConfigError(f"ConvImageEncoder: channels must be positive integers; got {channels!r}")
        self.output_dim = output_dim
        self.num_tokens = num_tokens
        self.grid = grid

        layers: list[nn.Module] = []
        width_in = in_channels
        for width in channels:
            layers += [
                nn.Conv2d(width_in, width, 3, stride=2, padding=1),
                nn.GroupNorm(math.gcd(8, width), width),
                nn.SiLU(),
            ]
            width_in = width
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(width_in, output_dim)
        self.position_embedding = nn.Parameter(torch.randn(num_tokens, output_dim) * 0.02)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, rgb: torch.Tensor) -> ImageEncoderOutput:
        """Encode frames.

        Args:
            rgb: (N, 3, H, W) in [0, 1].

        Returns:
            :class:`ImageEncoderOutput` with tokens (N, num_tokens, output_dim).
        """
        _check_rgb(rgb)
        # 1. Conv features of the frame mapped to [-1, 1].
        features = self.convs(rgb * 2.0 - 1.0)
        # 2. One token per grid cell, row-major, with a learned position embedding.
        pooled = F.adaptive_avg_pool2d(features, self.grid).flatten(2).transpose(1, 2)
        tokens = self.proj(pooled) + self.position_embedding
        return ImageEncoderOutput(tokens=self.norm(tokens))


class CLIPImageEncoder(nn.Module):
    """Frozen CLIP vision model (``CLIPVisionModelWithProjection``) as SVD uses it.

    Tokens are the projection of the final (post-LayerNorm) hidden states: token 0 is exactly
    SVD's ``image_embeds`` conditioning; with ``patch_tokens`` the projected patch tokens follow
    (1 + (image_size / patch_size)^2 tokens), which gives the cross-attention (and the DC
    layer's channel statistics) spatial variation to work with.

    Args:
        clip_config: CLIPVisionConfig arguments (``projection_dim``, ``image_size``, ...).
        patch_tokens: return the patch tokens besides the image embedding.
    """

    def __init__(self, clip_config: dict[str, Any], patch_tokens: bool = True) -> None:
        super().__init__()
        try:
            from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
        except ImportError as error:  # pragma: no cover - transformers is a core requirement
            raise ConfigError("image_encoder='clip' needs the transformers package") from error
        if not isinstance(clip_config, dict) or "projection_dim" not in clip_config:
            raise ConfigError(
                f"CLIPImageEncoder: clip_config must be a dict with projection_dim; got {clip_config!r}"
            )
        self.model = CLIPVisionModelWithProjection(CLIPVisionConfig(**clip_config))
        self.patch_tokens = bool(patch_tokens)
        self.output_dim = int(self.model.config.projection_dim)
        self.input_size = int(self.model.config.image_size)
        grid = self.input_size // int(self.model.config.patch_size)
        self.num_tokens = 1 + grid * grid if self.patch_tokens else 1
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def load_pretrained(self, folder: str | os.PathLike) -> None:
        """Load weights from a ``CLIPVisionModelWithProjection.save_pretrained`` folder."""
        from transformers import CLIPVisionModelWithProjection

        try:
            pretrained = CLIPVisionModelWithProjection.from_pretrained(os.fspath(folder))
        except (OSError, ValueError) as error:
            raise CheckpointError(f"cannot load the CLIP image encoder from {folder}: {error}") from error
        state = pretrained.state_dict()
        mine = self.model.state_dict()
        mismatched = [k for k in mine if k not in state or state[k].shape != mine[k].shape]
        if mismatched:
            raise CheckpointError(
                f"CLIP image encoder in {folder} does not match the config: {mismatched[:5]}"
            )
        self.model.load_state_dict(state, strict=False)

    def train(self, mode: bool = True) -> CLIPImageEncoder:
        # Frozen: stays in eval mode (dropout off) while the rest of EgoPressDiff trains.
        return super().train(False)

    @torch.no_grad()
    def forward(self, rgb: torch.Tensor) -> ImageEncoderOutput:
        """Encode frames.

        Args:
            rgb: (N, 3, H, W) in [0, 1].

        Returns:
            :class:`ImageEncoderOutput` with tokens (N, num_tokens, projection_dim).
        """
        _check_rgb(rgb)
        # 1. CLIP preprocessing: antialiased resize to the ViT input size, OpenAI normalisation.
        pixels = F.interpolate(
            rgb, size=(self.input_size, self.input_size), mode="bicubic", antialias=True, align_corners=False
        ).clamp(0.0, 1.0)
        pixels = ((pixels - self.mean) / self.std).to(self.model.dtype)
        # 2. Final hidden states -> post-LayerNorm -> projection (token 0 = image_embeds).
        hidden = self.model.vision_model(pixel_values=pixels).last_hidden_state
        if not self.patch_tokens:
            hidden = hidden[:, :1]
        tokens = self.model.visual_projection(self.model.vision_model.post_layernorm(hidden))
        return ImageEncoderOutput(tokens=tokens.to(rgb.dtype))
