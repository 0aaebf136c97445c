"""Vertex Encoder: hand-mesh vertices of a window -> cross-attention tokens per frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from egopress_core.errors import ConfigError, DataError


@dataclass
class VertexEncoderOutput:
    """tokens: (B, T, N, D) per-frame vertex tokens for the DC layer's vertex cross-attention."""

    tokens: torch.Tensor


def normalize_vertices(vertices: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Remove each frame's translation and scale.

    Args:
        vertices: (B, T, V, 3) metres.

    Returns:
        (B, T, V, 3): centred on the vertex centroid and divided by the RMS distance to it, so
        the result is invariant to translating and uniformly scaling a frame (rotation is kept:
        which side of the hand faces the camera matters for contact).
    """
    centred = vertices - vertices.mean(dim=2, keepdim=True)
    scale = centred.square().sum(dim=-1).mean(dim=2, keepdim=True).sqrt().clamp_min(eps)
    return centred / scale[..., None]


class DepthwiseSeparableTemporalBlock(nn.Module):
    """Residual temporal block: depthwise conv over frames -> pointwise conv -> LayerNorm -> SiLU.

    Args:
        channels: feature width C.
        kernel_size: odd temporal kernel; edges replicate the first/last frame.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(
            channels,
            channels,
            kernel_size,
            padding=kernel_size // 2,
            groups=channels,
            padding_mode="replicate",
        )
        self.pointwise = nn.Conv1d(channels, channels, 1)
        self.norm = nn.LayerNorm(channels)
        self.act = nn.SiLU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        mixed = self.pointwise(self.depthwise(features.transpose(1, 2))).transpose(1, 2)
        return features + self.act(self.norm(mixed))


class VertexEncoder(nn.Module):
    """Topology-agnostic encoder of a window of hand meshes (PointNet per frame + temporal convs).

    (B, T, V, 3) vertices -> per-frame normalisation (translation and scale removed) -> shared
    3-layer MLP with LayerNorm on every vertex -> max-pool over vertices -> 2 depthwise-separable
    temporal conv blocks -> linear + LayerNorm to ``num_tokens`` tokens of width ``output_dim``.
    Any vertex count V works (MANO's 778, the shipped hand's, a decimated mesh).

    Frames without a hand (``frame_valid`` False) get a learned "missing" embedding before the
    temporal convolutions, so they neither inject garbage nor look like a real hand at the origin.

    Args:
        hidden_dim: width of the per-vertex MLP and the temporal blocks.
        output_dim: token width (the U-Net's cross-attention width).
        num_tokens: tokens per frame.
        temporal_kernel_size: odd kernel of the temporal convolutions.
        num_temporal_blocks: number of depthwise-separable temporal blocks (the paper uses 2).
    """

    def __init__(
        self,
        hidden_dim: int = 128,
        output_dim: int = 128,
        num_tokens: int = 1,
        temporal_kernel_size: int = 3,
        num_temporal_blocks: int = 2,
    ) -> None:
        super().__init__()
        for name, value in (
            ("hidden_dim", hidden_dim),
            ("output_dim", output_dim),
            ("num_tokens", num_tokens),
            ("temporal_kernel_size", temporal_kernel_size),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"VertexEncoder: {name} must be a positive integer; got {value!r}")
        if temporal_kernel_size % 2 == 0:
            raise ConfigError(f"VertexEncoder: temporal_kernel_size must be odd; got {temporal_kernel_size}")
        if not isinstance(num_temporal_blocks, int) or num_temporal_blocks < 0:
            raise ConfigError(f"VertexEncoder: num_temporal_blocks must be >= 0; got {num_temporal_blocks!r}")
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.num_tokens = num_tokens

        layers: list[nn.Module] = []
        width_in = 3
        for _ in range(3):
            layers += [nn.Linear(width_in, hidden_dim), nn.LayerNorm(hidden_dim), nn.SiLU()]
            width_in = hidden_dim
        self.point_mlp = nn.Sequential(*layers)
        self.missing_frame_embedding = nn.Parameter(torch.zeros(hidden_dim))
        self.temporal_blocks = nn.ModuleList(
            [
                DepthwiseSeparableTemporalBlock(hidden_dim, temporal_kernel_size)
                for _ in range(num_temporal_blocks)
            ]
        )
        self.proj_out = nn.Linear(hidden_dim, num_tokens * output_dim)
        self.norm_out = nn.LayerNorm(output_dim)

    def encode_frames(self, vertices: torch.Tensor) -> torch.Tensor:
        """Per-frame part (cacheable across overlapping windows).

        Args:
            vertices: (B, T, V, 3) metres.

        Returns:
            (B, T, hidden_dim) max-pooled point features.
        """
        if vertices.ndim != 4 or vertices.shape[-1] != 3:
            raise DataError(f"vertices must have shape (B, T, V, 3); got {tuple(vertices.shape)}")
        return self.point_mlp(normalize_vertices(vertices)).amax(dim=2)

    def encode_window(
        self, frame_features: torch.Tensor, frame_valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Temporal part over a window.

        Args:
            frame_features: (B, T, hidden_dim) from :meth:`encode_frames`.
            frame_valid: optional (B, T) bool.

        Returns:
            (B, T, num_tokens, output_dim) tokens.
        """
        features = frame_features
        if frame_valid is not None:
            keep = frame_valid.to(torch.bool)[..., None]
            features = torch.where(keep, features, self.missing_frame_embedding.to(features.dtype))
        for block in self.temporal_blocks:
            features = block(features)
        tokens = self.proj_out(features).unflatten(-1, (self.num_tokens, self.output_dim))
        return self.norm_out(tokens)

    def forward(self, vertices: torch.Tensor, frame_valid: torch.Tensor | None = None) -> VertexEncoderOutput:
        """Encode a window of meshes.

        Args:
            vertices: (B, T, V, 3) metres, camera frame.
            frame_valid: optional (B, T) bool; False frames use the missing-frame embedding.

        Returns:
            :class:`VertexEncoderOutput` with tokens (B, T, num_tokens, output_dim).
        """
        # 1. Normalise each frame, shared MLP on every vertex, max-pool over vertices.
        frame_features = self.encode_frames(vertices)
        # 2. Temporal convolutions and projection to tokens.
        return VertexEncoderOutput(tokens=self.encode_window(frame_features, frame_valid))
