"""Where diffusion happens: pixel-space UV maps (compact) or a frozen video VAE's latents (paper).

Both codecs map the normalised pressure window (B, T, 1, Hu, Wu) in [-1, 1] to the latent the
U-Net denoises and back, and bring depth (and the UV-aligned geometry) to that latent's
resolution, so the channel concatenation lines up:

- :class:`PixelLatentCodec`: the latent is the UV map itself; depth and its validity are
  area-resized to the UV size.
- :class:`VAELatentCodec`: ``AutoencoderKLTemporalDecoder`` (Stable Video Diffusion's VAE, frozen).
  The one-channel pressure map is replicated to 3 channels for the VAE and the decoded RGB is
  averaged back; depth is VAE-encoded the same way (it is image-like), then resized to the
  pressure latent's size (image and UV sizes differ) and its validity appended.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from egopress_core.errors import CheckpointError


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T, C, h, w): area average when shrinking, bilinear otherwise."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    shrinking = frames.shape[-2] >= size[0] and frames.shape[-1] >= size[1]
    flat = frames.flatten(0, 1)
    if shrinking:
        resized = F.interpolate(flat, size=tuple(size), mode="area")
    else:
        resized = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return resized.unflatten(0, frames.shape[:2])


class PixelLatentCodec(nn.Module):
    """Identity latent: the normalised UV map, 1 channel at the UV resolution.

    Args:
        uv_size: (Hu, Wu).
    """

    latent_channels = 1

    def __init__(self, uv_size: tuple[int, int]) -> None:
        super().__init__()
        self.uv_size = (int(uv_size[0]), int(uv_size[1]))
        self.latent_size = self.uv_size

    def encode_pressure(self, normalized: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, Hu, Wu) in [-1, 1] -> (B, T, 1, Hu, Wu)."""
        return normalized

    def decode_pressure(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, Hu, Wu) -> (B, T, 1, Hu, Wu) normalised pressure."""
        return latents

    def encode_depth(self, depth: torch.Tensor) -> torch.Tensor:
        """(B, T, 2, H, W) normalised depth + validity -> (B, T, 2, h, w)."""
        return resize_frames(depth, self.latent_size)


class VAELatentCodec(nn.Module):
    """Frozen ``AutoencoderKLTemporalDecoder`` latents, scaled by its ``scaling_factor``.

    Args:
        vae_config: ``AutoencoderKLTemporalDecoder`` constructor arguments.
        uv_size: (Hu, Wu); must be divisible by the VAE's downsampling factor.
        chunk_frames: frames per VAE call (memory bound for paper-size windows).
    """

    def __init__(self, vae_config: dict[str, Any], uv_size: tuple[int, int], chunk_frames: int = 8) -> None:
        super().__init__()
        from diffusers import AutoencoderKLTemporalDecoder

        self.vae = AutoencoderKLTemporalDecoder(**vae_config)
        self.vae.requires_grad_(False)
        self.vae.eval()
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.uv_size = (int(uv_size[0]), int(uv_size[1]))
        self.latent_size = (self.uv_size[0] // factor, self.uv_size[1] // factor)
        self.latent_channels = int(self.vae.config.latent_channels)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.chunk_frames = int(chunk_frames)

    def load_pretrained(self, folder: str | os.PathLike, variant: str | None = None) -> None:
        """Load weights from an ``AutoencoderKLTemporalDecoder.save_pretrained`` folder."""
        from diffusers import AutoencoderKLTemporalDecoder

        try:
            pretrained = AutoencoderKLTemporalDecoder.from_pretrained(os.fspath(folder), variant=variant)
        except (OSError, ValueError) as error:
            raise CheckpointError(f"cannot load the VAE from {folder}: {error}") from error
        try:
            self.vae.load_state_dict(pretrained.state_dict())
        except RuntimeError as error:
            raise CheckpointError(f"VAE in {folder} does not match the config: {error}") from error

    def train(self, mode: bool = True) -> VAELatentCodec:
        # Frozen: always in eval mode.
        return super().train(False)

    @torch.no_grad()
    def _encode_image_like(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) in [-1, 1] -> (N, C, H/f, W/f) scaled latent means."""
        rgb_like = frames.expand(-1, 3, -1, -1).to(self.vae.dtype)
        latents = [self.vae.encode(chunk).latent_dist.mode() for chunk in rgb_like.split(self.chunk_frames)]
        return torch.cat(latents) * self.scaling_factor

    def encode_pressure(self, normalized: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, Hu, Wu) in [-1, 1] -> (B, T, C, h, w)."""
        latents = self._encode_image_like(normalized.flatten(0, 1))
        return latents.unflatten(0, normalized.shape[:2]).to(normalized.dtype)

    def decode_pressure(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, T, C, h, w) -> (B, T, 1, Hu, Wu) normalised pressure (mean of the decoded RGB).

        Decodes ``chunk_frames`` frames at a time as short clips (the temporal decoder mixes
        frames within a chunk), as SVD's pipeline does.
        """
        batch, frames = latents.shape[:2]
        chunk = min(self.chunk_frames, frames)
        decoded = []
        with torch.no_grad():
            for start in range(0, frames, chunk):
                piece = latents[:, start : start + chunk]
                count = piece.shape[1]
                out = self.vae.decode(
                    piece.flatten(0, 1).to(self.vae.dtype) / self.scaling_factor, num_frames=count
                ).sample
                decoded.append(out.unflatten(0, (batch, count)))
        return torch.cat(decoded, dim=1).mean(dim=2, keepdim=True).to(latents.dtype)

    def encode_depth(self, depth: torch.Tensor) -> torch.Tensor:
        """(B, T, 2, H, W) normalised depth + validity -> (B, T, C + 1, h, w)."""
        latents = self._encode_image_like(depth[:, :, :1].flatten(0, 1)).unflatten(0, depth.shape[:2])
        latents = resize_frames(latents.to(depth.dtype), self.latent_size)
        return torch.cat([latents, resize_frames(depth[:, :, 1:], self.latent_size)], dim=2)
