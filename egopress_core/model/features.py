"""Encoded conditions, split by how long they stay valid.

:class:`FrameFeatures` hold per-frame encoder outputs (image tokens, PoseNet features, depth at
latent resolution, ...): a frame's features do not depend on its neighbours, so streaming caches
them across overlapping windows. :class:`WindowFeatures` add what depends on the whole window (the
Vertex Encoder's temporal convolutions) and are what the U-Net consumes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


def _cat(values: list[torch.Tensor | None], dim: int) -> torch.Tensor | None:
    return None if values[0] is None else torch.cat(values, dim=dim)  # type: ignore[arg-type]


@dataclass
class FrameFeatures:
    """Per-frame encoder outputs of B sequences over T frames.

    Attributes:
        image_tokens: (B, T, Ni, D).
        vertex_features: (B, T, Hv) pooled per-frame vertex features, or None without vertices.
        pose_features: (B, T, C0, h, w) PoseNet output, or None without PoseNet.
        depth: (B, T, Cd, h, w) depth at latent resolution, or None without depth.
        geometry: (B, T, 5, h, w) UV-aligned geometry at latent resolution, or None.
        frame_valid: (B, T) bool.
        uv_mask: (B, 1, Hu, Wu) float.
    """

    image_tokens: torch.Tensor
    vertex_features: torch.Tensor | None
    pose_features: torch.Tensor | None
    depth: torch.Tensor | None
    geometry: torch.Tensor | None
    frame_valid: torch.Tensor
    uv_mask: torch.Tensor

    @property
    def num_frames(self) -> int:
        return int(self.image_tokens.shape[1])

    def _per_frame(self) -> list[str]:
        return [item.name for item in fields(self) if item.name != "uv_mask"]

    def frames(self, index: torch.Tensor | slice) -> FrameFeatures:
        """Select frames along T (a slice or a 1-D index tensor, repeats allowed)."""
        return replace(
            self,
            **{
                name: None if getattr(self, name) is None else getattr(self, name)[:, index]
                for name in self._per_frame()
            },
        )

    @classmethod
    def cat(cls, parts: list[FrameFeatures]) -> FrameFeatures:
        """Concatenate along T (parts share B and uv_mask)."""
        first = parts[0]
        return replace(
            first,
            **{name: _cat([getattr(p, name) for p in parts], dim=1) for name in first._per_frame()},
        )


@dataclass
class WindowFeatures:
    """Everything the U-Net is conditioned on for a window of T frames.

    Attributes:
        image_tokens: (B, T, Ni, D).
        vertex_tokens: (B, T, Nv, D) or None.
        pose_features: (B, T, C0, h, w) or None.
        depth: (B, T, Cd, h, w) or None.
        geometry: (B, T, 5, h, w) or None.
        frame_valid: (B, T) bool.
        uv_mask: (B, 1, Hu, Wu) float.
    """

    image_tokens: torch.Tensor
    vertex_tokens: torch.Tensor | None
    pose_features: torch.Tensor | None
    depth: torch.Tensor | None
    geometry: torch.Tensor | None
    frame_valid: torch.Tensor
    uv_mask: torch.Tensor

    # Fields a condition dropout can null (set to zero), i.e. the modalities.
    MODALITIES = ("image_tokens", "vertex_tokens", "pose_features", "depth", "geometry")

    @property
    def batch_size(self) -> int:
        return int(self.image_tokens.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.image_tokens.shape[1])

    @property
    def encoder_hidden_states(self) -> torch.Tensor:
        """(B, T, Ni + Nv, D): image tokens, then vertex tokens."""
        if self.vertex_tokens is None:
            return self.image_tokens
        return torch.cat([self.image_tokens, self.vertex_tokens], dim=2)

    def condition_channels(self) -> list[torch.Tensor]:
        """Channel-concatenated conditions, in U-Net input order (depth, then geometry)."""
        return [value for value in (self.depth, self.geometry) if value is not None]

    def drop(self, keep: dict[str, torch.Tensor]) -> WindowFeatures:
        """Null modalities per sample: ``keep[name]`` is (B,) bool; False zeroes that sample's field."""
        updates = {}
        for name, mask in keep.items():
            value = getattr(self, name)
            if value is None:
                continue
            shape = (value.shape[0],) + (1,) * (value.ndim - 1)
            updates[name] = value * mask.to(value.dtype).reshape(shape)
        return replace(self, **updates)

    def null(self) -> WindowFeatures:
        """The unconditional input of classifier-free guidance: every modality zeroed."""
        return replace(
            self,
            **{
                name: None if getattr(self, name) is None else torch.zeros_like(getattr(self, name))
                for name in self.MODALITIES
            },
        )

    def cat_batch(self, other: WindowFeatures) -> WindowFeatures:
        """Stack two feature sets along B (for a batched conditional + unconditional pass)."""
        return WindowFeatures(
            **{
                item.name: _cat([getattr(self, item.name), getattr(other, item.name)], dim=0)
                for item in fields(self)
            }
        )
