"""EgoPressDiff's video U-Net: diffusers' SVD U-Net with Distribution-Calibrated spatial layers.

:class:`EgoPressUNet` is a ``UNetSpatioTemporalConditionModel`` (same config, same parameter names,
so Stable Video Diffusion weights load by name) with two changes:

- every spatial ``BasicTransformerBlock`` inside its ``TransformerSpatioTemporalModel`` modules is
  a :class:`DistributionCalibratedSpatialLayer`;
- ``forward`` takes per-frame condition tokens (SVD repeats one clip-level embedding for all
  frames; here each frame has its own RGB and mesh) and an optional PoseNet residual added right
  after ``conv_in``.

``added_time_ids`` keep SVD's meaning: (fps, motion bucket id, noise-augmentation strength). The
model feeds the clip frame rate and SVD's neutral constants for the other two (see
:func:`svd_added_time_ids`), so pretrained time embeddings stay in range.
"""

from __future__ import annotations

import torch
from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel
from diffusers.models.unets.unet_spatio_temporal_condition import (
    UNetSpatioTemporalConditionModel,
    UNetSpatioTemporalConditionOutput,
)
from diffusers.configuration_utils import register_to_config

from egopress_core.errors import ConfigError
from egopress_core.model.dc_spatial_layer import DistributionCalibratedSpatialLayer

# SVD's default motion bucket and the noise-augmentation strength of clean conditions.
SVD_MOTION_BUCKET_ID = 127.0
SVD_NOISE_AUG_STRENGTH = 0.0
NUM_ADDED_TIME_IDS = 3


def svd_added_time_ids(fps: float, batch_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(B, 3) SVD micro-conditioning: (fps - 1, motion bucket 127, noise augmentation 0).

    SVD's pipeline passes ``fps - 1`` (it was trained on that); we do the same.
    """
    ids = torch.tensor([fps - 1.0, SVD_MOTION_BUCKET_ID, SVD_NOISE_AUG_STRENGTH], device=device, dtype=dtype)
    return ids.expand(batch_size, -1)


class EgoPressUNet(UNetSpatioTemporalConditionModel):
    """Video U-Net denoising a window of pressure latents.

    Args (beyond ``UNetSpatioTemporalConditionModel``'s, with which they share meaning):
        in_channels: noisy pressure latent + depth (+ validity) + UV-geometry channels.
        out_channels: pressure latent channels.
        num_image_tokens: image tokens per frame in ``encoder_hidden_states``.
        num_vertex_tokens: vertex tokens per frame after them (0: no vertex branch).
        dc_calibration: calibrate the vertex branch to the image branch (False: plain sum).

    ``projection_class_embeddings_input_dim`` is derived: 3 added time ids x
    ``addition_time_embed_dim``.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 3,
        out_channels: int = 1,
        down_block_types: tuple[str, ...] = ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types: tuple[str, ...] = ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels: tuple[int, ...] = (32, 64),
        addition_time_embed_dim: int = 8,
        projection_class_embeddings_input_dim: int = 24,
        layers_per_block: int = 1,
        cross_attention_dim: int = 32,
        transformer_layers_per_block: int = 1,
        num_attention_heads: tuple[int, ...] = (2, 4),
        num_frames: int = 16,
        num_image_tokens: int = 4,
        num_vertex_tokens: int = 2,
        dc_calibration: bool = True,
    ) -> None:
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("addition_time_embed_dim", addition_time_embed_dim),
            ("num_frames", num_frames),
            ("num_image_tokens", num_image_tokens),
            ("cross_attention_dim", cross_attention_dim),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"EgoPressUNet: {name} must be a positive integer; got {value!r}")
        if projection_class_embeddings_input_dim != NUM_ADDED_TIME_IDS * addition_time_embed_dim:
            raise ConfigError(
                f"EgoPressUNet: projection_class_embeddings_input_dim must be 3 * addition_time_embed_dim = "
                f"{NUM_ADDED_TIME_IDS * addition_time_embed_dim}; got {projection_class_embeddings_input_dim}"
            )
        if any(width % 32 for width in block_out_channels):
            raise ConfigError(
                f"EgoPressUNet: block_out_channels must be multiples of 32; got {block_out_channels}"
            )
        if not isinstance(num_vertex_tokens, int) or num_vertex_tokens < 0:
            raise ConfigError(f"EgoPressUNet: num_vertex_tokens must be >= 0; got {num_vertex_tokens!r}")
        if dc_calibration and num_vertex_tokens == 0:
            raise ConfigError("EgoPressUNet: dc_calibration=True needs num_vertex_tokens > 0")
        super().__init__(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=tuple(down_block_types),
            up_block_types=tuple(up_block_types),
            block_out_channels=tuple(block_out_channels),
            addition_time_embed_dim=addition_time_embed_dim,
            projection_class_embeddings_input_dim=projection_class_embeddings_input_dim,
            layers_per_block=layers_per_block,
            cross_attention_dim=cross_attention_dim,
            transformer_layers_per_block=transformer_layers_per_block,
            num_attention_heads=num_attention_heads,
            num_frames=num_frames,
        )
        self.num_condition_tokens = num_image_tokens + num_vertex_tokens
        for module in self.modules():
            if isinstance(module, TransformerSpatioTemporalModel):
                module.transformer_blocks = torch.nn.ModuleList(
                    [
                        DistributionCalibratedSpatialLayer(
                            dim=block.dim,
                            num_attention_heads=block.num_attention_heads,
                            attention_head_dim=block.attention_head_dim,
                            cross_attention_dim=block.cross_attention_dim,
                            num_image_tokens=num_image_tokens,
                            num_vertex_tokens=num_vertex_tokens,
                            calibrate=dc_calibration,
                        )
                        for block in module.transformer_blocks
                    ]
                )

    def dc_layers(self) -> list[DistributionCalibratedSpatialLayer]:
        """Every spatial layer of the U-Net, in module order."""
        return [m for m in self.modules() if isinstance(m, DistributionCalibratedSpatialLayer)]

    def forward(  # type: ignore[override]
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        pose_features: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> UNetSpatioTemporalConditionOutput | tuple[torch.Tensor]:
        """Predict the noise / velocity / clean latent of a window.

        Args:
            sample: (B, T, in_channels, h, w) noisy latents with the condition channels.
            timestep: scalar or (B,) diffusion timesteps.
            encoder_hidden_states: (B, T, Ni + Nv, D) per-frame image then vertex tokens.
            added_time_ids: (B, 3) SVD micro-conditioning (:func:`svd_added_time_ids`).
            pose_features: optional (B, T, C0, h, w) PoseNet output, C0 = block_out_channels[0].
            return_dict: return a ``UNetSpatioTemporalConditionOutput`` rather than a tuple.

        Returns:
            ``UNetSpatioTemporalConditionOutput`` with sample (B, T, out_channels, h, w).
        """
        batch_size, num_frames = sample.shape[:2]
        if encoder_hidden_states.shape[:3] != (batch_size, num_frames, self.num_condition_tokens):
            raise ValueError(
                f"encoder_hidden_states must be ({batch_size}, {num_frames}, "
                f"{self.num_condition_tokens}, D); "
                f"got {tuple(encoder_hidden_states.shape)}"
            )
        # Odd latent sizes (e.g. SVD's 28x28 for 224x224 maps) need explicit upsampling sizes.
        overall_up_factor = 2**self.num_upsamplers
        forward_upsample_size = any(size % overall_up_factor != 0 for size in sample.shape[-2:])
        upsample_size = None

        # 1. Time embedding: diffusion timestep plus SVD's added time ids.
        timesteps = timestep
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=torch.float32, device=sample.device)
        elif timesteps.ndim == 0:
            timesteps = timesteps[None].to(sample.device)
        timesteps = timesteps.expand(batch_size)
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype=sample.dtype))
        time_embeds = self.add_time_proj(added_time_ids.flatten()).reshape(batch_size, -1).to(emb.dtype)
        emb = emb + self.add_embedding(time_embeds)

        # 2. Frames into the batch axis; per-frame tokens stay per frame.
        sample = sample.flatten(0, 1)
        emb = emb.repeat_interleave(num_frames, dim=0)
        encoder_hidden_states = encoder_hidden_states.flatten(0, 1)

        # 3. conv_in, plus the PoseNet residual on the first feature map.
        sample = self.conv_in(sample)
        if pose_features is not None:
            sample = sample + pose_features.flatten(0, 1).to(sample.dtype)
        image_only_indicator = torch.zeros(batch_size, num_frames, dtype=sample.dtype, device=sample.device)

        # 4. Down blocks, mid block, up blocks (as diffusers' SVD U-Net).
        down_block_res_samples: tuple[torch.Tensor, ...] = (sample,)
        for down_block in self.down_blocks:
            if getattr(down_block, "has_cross_attention", False):
                sample, res_samples = down_block(
                    hidden_states=sample,
                    temb=emb,
                    encoder_hidden_states=encoder_hidden_states,
                    image_only_indicator=image_only_indicator,
                )
            else:
                sample, res_samples = down_block(
                    hidden_states=sample, temb=emb, image_only_indicator=image_only_indicator
                )
            down_block_res_samples += res_samples
        sample = self.mid_block(
            hidden_states=sample,
            temb=emb,
            encoder_hidden_states=encoder_hidden_states,
            image_only_indicator=image_only_indicator,
        )
        for index, up_block in enumerate(self.up_blocks):
            is_final_block = index == len(self.up_blocks) - 1
            res_samples = down_block_res_samples[-len(up_block.resnets) :]
            down_block_res_samples = down_block_res_samples[: -len(up_block.resnets)]
            if not is_final_block and forward_upsample_size:
                upsample_size = down_block_res_samples[-1].shape[2:]
            if getattr(up_block, "has_cross_attention", False):
                sample = up_block(
                    hidden_states=sample,
                    temb=emb,
                    res_hidden_states_tuple=res_samples,
                    encoder_hidden_states=encoder_hidden_states,
                    upsample_size=upsample_size,
                    image_only_indicator=image_only_indicator,
                )
            else:
                sample = up_block(
                    hidden_states=sample,
                    temb=emb,
                    res_hidden_states_tuple=res_samples,
                    upsample_size=upsample_size,
                    image_only_indicator=image_only_indicator,
                )

        # 5. Output projection back to (B, T, C, h, w).
        sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))
        sample = sample.reshape(batch_size, num_frames, *sample.shape[1:])
        if not return_dict:
            return (sample,)
        return UNetSpatioTemporalConditionOutput(sample=sample)
