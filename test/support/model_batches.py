"""Synthetic window batches in the clip-window Dataset's format, for the model tests."""

from __future__ import annotations

import torch

from egopress_core.model.config import EgoPressDiffConfig


def uv_mask_for(config: EgoPressDiffConfig) -> torch.Tensor:
    """(1, Hu, Wu) mask: a centred rectangle of hand texels with a background border."""
    height, width = config.uv_size
    mask = torch.zeros(1, height, width)
    mask[:, height // 8 : height - height // 8, width // 6 : width - width // 6] = 1.0
    return mask


def make_window_batch(
    config: EgoPressDiffConfig,
    batch_size: int = 2,
    num_frames: int | None = None,
    num_vertices: int = 60,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A plausible window batch: a hand ~0.4 m in front of the camera, moving slightly.

    Keys and shapes as the clip-window Dataset produces them (see egopress_core.conditioning).
    """
    generator = torch.Generator().manual_seed(seed)
    frames = config.num_frames if num_frames is None else num_frames
    height, width = config.image_size
    focal = 1.2 * width
    intrinsics = torch.tensor(
        [[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]]
    )
    intrinsics = intrinsics.expand(batch_size, frames, 3, 3).clone()
    centre = torch.tensor([0.0, 0.0, 0.4]) + 0.005 * torch.randn(
        batch_size, frames, 1, 3, generator=generator
    )
    joints = centre + 0.04 * torch.randn(batch_size, frames, 21, 3, generator=generator).clamp(-2, 2)
    vertices = centre + 0.04 * torch.randn(batch_size, frames, num_vertices, 3, generator=generator).clamp(
        -2, 2
    )
    depth = 0.38 + 0.05 * torch.rand(batch_size, frames, 1, height, width, generator=generator)
    depth[..., : max(1, height // 10), :] = 0.0  # a strip without depth readings
    mask = uv_mask_for(config)
    pressure = 30.0 * torch.rand(batch_size, frames, 1, *config.uv_size, generator=generator) ** 3 * mask
    return {
        "rgb": torch.rand(batch_size, frames, 3, height, width, generator=generator),
        "depth_m": depth,
        "intrinsics": intrinsics,
        "joints": joints,
        "vertices": vertices,
        "uv_pressure_kpa": pressure,
        "uv_mask": mask,
        "valid": torch.ones(batch_size, frames, dtype=torch.bool),
    }
