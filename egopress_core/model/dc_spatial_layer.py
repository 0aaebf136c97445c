"""Distribution-Calibrated Spatial Layer: the spatial block of EgoPressDiff's video U-Net.

It replaces the spatial ``BasicTransformerBlock`` inside every diffusers
``TransformerSpatioTemporalModel``; the temporal block that follows it there is unchanged.

Token routing: the U-Net passes one ``encoder_hidden_states`` tensor per frame, (N, Ni + Nv, D),
image tokens first, then vertex tokens; each layer knows ``num_image_tokens`` and
``num_vertex_tokens`` and splits it. The same concatenation reaches SVD's temporal blocks as
their ``time_context`` (diffusers feeds them the first frame's tokens), so both modalities are
visible there too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from egopress_core.errors import ConfigError


@dataclass
class DCBranches:
    """The two cross-attention branches of a DC layer, each (N, L, C).

    image: z_img; vertex: z_vtx; vertex_calibrated: z_vtx after calibration to z_img's
    channel statistics (equal to ``vertex`` when calibration is off); None without vertices.
    """

    image: torch.Tensor
    vertex: torch.Tensor | None
    vertex_calibrated: torch.Tensor | None


def calibrate_channel_statistics(
    source: torch.Tensor, reference: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Give ``source`` the per-channel mean and std of ``reference`` (statistics over tokens).

    ``(source - mu_s) / sigma_s * sigma_r + mu_r`` with mu, sigma the mean and standard deviation
    over the token axis, per sample and channel (as AdaIN does over space); sigma includes
    ``eps`` under the square root.

    Args:
        source: (N, L, C).
        reference: (N, L', C).

    Returns:
        (N, L, C).
    """
    # Statistics in float32: under fp16/bf16 autocast small variances and eps would underflow.
    source_f, reference_f = source.float(), reference.float()
    source_var, source_mean = torch.var_mean(source_f, dim=1, keepdim=True, correction=0)
    reference_var, reference_mean = torch.var_mean(reference_f, dim=1, keepdim=True, correction=0)
    scale = torch.sqrt(reference_var + eps) / torch.sqrt(source_var + eps)
    return ((source_f - source_mean) * scale + reference_mean).to(source.dtype)


class DistributionCalibratedSpatialLayer(nn.Module):
    """Self-attention, parallel image / vertex cross-attention with calibration, feed-forward.

    With z the block input (N, L, C) and LN the layer norms:

    1. ``z = z + SelfAttn(LN1(z))``
    2. ``q = LN2(z)``; ``z_img = CrossAttn_img(q, image tokens)``;
       ``z_vtx = CrossAttn_vtx(q, vertex tokens)``
    3. ``z_vtx' = (z_vtx - mu_vtx) / sigma_vtx * sigma_img + mu_img`` (per channel, over the L
       spatial tokens; skipped when ``calibrate`` is False: the ablation adds z_vtx as is)
    4. ``z = z + z_img + z_vtx'``: the paper's "z_img + z_vtx'" kept on the residual stream, as
       every diffusers transformer block does, so the block stays a perturbation of its input
       (and SVD's spatial weights, loaded into ``attn1`` / ``attn2`` / ``ff``, keep their meaning)
    5. ``z = z + FF(LN3(z))``

    Submodule names follow diffusers' ``BasicTransformerBlock`` (``norm1``, ``attn1``, ``norm2``,
    ``attn2`` for the image branch, ``norm3``, ``ff``); the vertex branch is ``attn2_vertex``.

    Args:
        dim: channels C of the spatial tokens.
        num_attention_heads: heads of every attention.
        attention_head_dim: channels per head.
        cross_attention_dim: width D of the image and vertex tokens.
        num_image_tokens: Ni, image tokens at the front of ``encoder_hidden_states``.
        num_vertex_tokens: Nv, vertex tokens after them (0: no vertex branch).
        calibrate: calibrate the vertex branch to the image branch's channel statistics.
        eps: variance floor of the calibration.
    """

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        cross_attention_dim: int,
        num_image_tokens: int,
        num_vertex_tokens: int,
        calibrate: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        for name, value in (
            ("dim", dim),
            ("num_attention_heads", num_attention_heads),
            ("attention_head_dim", attention_head_dim),
            ("cross_attention_dim", cross_attention_dim),
            ("num_image_tokens", num_image_tokens),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(
                    f"DistributionCalibratedSpatialLayer: {name} must be a positive integer; got {value!r}"
                )
        if not isinstance(num_vertex_tokens, int) or num_vertex_tokens < 0:
            raise ConfigError(
                "DistributionCalibratedSpatialLayer: num_vertex_tokens must be >= 0; "
                f"got {num_vertex_tokens!r}"
            )
        if calibrate and num_vertex_tokens == 0:
            raise ConfigError(
                "DistributionCalibratedSpatialLayer: calibrate=True needs num_vertex_tokens > 0"
            )
        if not eps > 0:
            raise ConfigError(f"DistributionCalibratedSpatialLayer: eps must be > 0; got {eps}")
        self.dim = dim
        self.num_attention_heads = num_attention_heads
        self.attention_head_dim = attention_head_dim
        self.cross_attention_dim = cross_attention_dim
        self.num_image_tokens = num_image_tokens
        self.num_vertex_tokens = num_vertex_tokens
        self.calibrate = calibrate
        self.eps = eps

        def cross_attention() -> Attention:
            return Attention(
                query_dim=dim,
                cross_attention_dim=cross_attention_dim,
                heads=num_attention_heads,
                dim_head=attention_head_dim,
                bias=False,
            )

        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(
            query_dim=dim, heads=num_attention_heads, dim_head=attention_head_dim, bias=False
        )
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = cross_attention()
        self.attn2_vertex = cross_attention() if num_vertex_tokens > 0 else None
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self._chunk_size: int | None = None
        self._chunk_dim = 0

    def set_chunk_feed_forward(self, chunk_size: int | None, dim: int = 0) -> None:
        """Called by diffusers' ``enable_forward_chunking``: run the feed-forward in chunks."""
        self._chunk_size = chunk_size
        self._chunk_dim = dim

    def split_tokens(self, encoder_hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, Ni + Nv, D) -> image tokens (N, Ni, D), vertex tokens (N, Nv, D) or None."""
        expected = self.num_image_tokens + self.num_vertex_tokens
        if (
            encoder_hidden_states is None
            or encoder_hidden_states.ndim != 3
            or encoder_hidden_states.shape[1] != expected
        ):
            shape = None if encoder_hidden_states is None else tuple(encoder_hidden_states.shape)
            raise ValueError(
                f"encoder_hidden_states must be (N, {self.num_image_tokens} image + "
                f"{self.num_vertex_tokens} vertex tokens, {self.cross_attention_dim}); got {shape}"
            )
        image = encoder_hidden_states[:, : self.num_image_tokens]
        vertex = encoder_hidden_states[:, self.num_image_tokens :] if self.num_vertex_tokens else None
        return image, vertex

    def cross_attention_branches(
        self, norm_hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> DCBranches:
        """Steps 2-3: both cross-attention branches and the calibrated vertex branch.

        Args:
            norm_hidden_states: (N, L, C), the LN2-normalised block state.
            encoder_hidden_states: (N, Ni + Nv, D).
        """
        image_tokens, vertex_tokens = self.split_tokens(encoder_hidden_states)
        z_img = self.attn2(norm_hidden_states, encoder_hidden_states=image_tokens)
        if self.attn2_vertex is None:
            return DCBranches(image=z_img, vertex=None, vertex_calibrated=None)
        z_vtx = self.attn2_vertex(norm_hidden_states, encoder_hidden_states=vertex_tokens)
        calibrated = calibrate_channel_statistics(z_vtx, z_img, self.eps) if self.calibrate else z_vtx
        return DCBranches(image=z_img, vertex=z_vtx, vertex_calibrated=calibrated)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Same call signature and return type as ``BasicTransformerBlock`` (drop-in).

        Args:
            hidden_states: (N, L, C) spatial tokens, N = B * T frames, L = h * w.
            attention_mask: optional self-attention mask (unused by the U-Net).
            encoder_hidden_states: (N, Ni + Nv, D) per-frame image then vertex tokens.
            encoder_attention_mask: optional cross-attention mask (unused by the U-Net).

        Returns:
            (N, L, C).
        """
        # 1. Self-attention.
        hidden_states = hidden_states + self.attn1(self.norm1(hidden_states), attention_mask=attention_mask)
        # 2.-3. Parallel cross-attentions, vertex branch calibrated to the image branch.
        if encoder_attention_mask is not None:
            raise ValueError("DistributionCalibratedSpatialLayer does not support encoder_attention_mask")
        branches = self.cross_attention_branches(self.norm2(hidden_states), encoder_hidden_states)
        # 4. Sum on the residual stream.
        hidden_states = hidden_states + branches.image
        if branches.vertex_calibrated is not None:
            hidden_states = hidden_states + branches.vertex_calibrated
        # 5. Feed-forward.
        norm_hidden_states = self.norm3(hidden_states)
        if self._chunk_size is not None:
            ff_output = torch.cat(
                [self.ff(chunk) for chunk in norm_hidden_states.split(self._chunk_size, dim=self._chunk_dim)],
                dim=self._chunk_dim,
            )
        else:
            ff_output = self.ff(norm_hidden_states)
        return hidden_states + ff_output
