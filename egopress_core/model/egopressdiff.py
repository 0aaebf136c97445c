"""EgoPressDiff: conditional video diffusion over UV-pressure windows.

Conditions (RGB, depth, rendered skeleton, mesh vertices) -> encoders -> video U-Net with
Distribution-Calibrated spatial layers -> diffusers schedulers. One class for every size: the
:class:`~egopress_core.model.config.EgoPressDiffConfig` decides pixel space vs VAE latents and a
small conv vs the frozen CLIP image encoder.

Training target: the normalised pressure latent (see ``PressureNormalizer``), noised by
diffusers' ``DDPMScheduler``; loss ``|| (target - prediction) * (1 + M_uv) ||^2`` with M_uv the
UV hand mask at latent resolution (hand texels count twice), averaged over frames that carry an
annotation; ``pressure_loss_weight`` adds a term in proportion to the target pressure (see
:meth:`EgoPressDiff.loss_weight`).

This module is the model only. Checkpoint files, formats and versions:
:mod:`~egopress_core.model.checkpoint` (``save_pretrained`` / ``from_pretrained`` /
``load_config`` here delegate to it); growing a trained model or fine-tuning from a checkpoint:
:mod:`~egopress_core.model.surgery`; initialising from Stable Video Diffusion:
:mod:`~egopress_core.model.svd_transfer`.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from tqdm.auto import tqdm

from egopress_core.conditioning import (
    NUM_POSE_CHANNELS,
    EgoPressConditions,
    PressureNormalizer,
    build_conditions,
)
from egopress_core.errors import ConfigError, DataError
from egopress_core.model.checkpoint import load_egopressdiff, load_egopressdiff_config, save_egopressdiff
from egopress_core.model.config import EgoPressDiffConfig
from egopress_core.model.features import FrameFeatures, WindowFeatures
from egopress_core.model.image_encoder import CLIPImageEncoder, ConvImageEncoder
from egopress_core.model.latent_codec import PixelLatentCodec, VAELatentCodec, resize_frames
from egopress_core.model.pose_net import PoseNet
from egopress_core.model.unet import NUM_ADDED_TIME_IDS, EgoPressUNet, svd_added_time_ids
from egopress_core.model.vertex_encoder import VertexEncoder
from egopress_core.options import SCHEDULERS


@dataclass
class LossOutput:
    """loss: scalar mask-weighted loss; mse: scalar unweighted MSE (logging); timesteps: (B,)."""

    loss: torch.Tensor
    mse: torch.Tensor
    timesteps: torch.Tensor


def masked_diffusion_loss(
    prediction: torch.Tensor, target: torch.Tensor, texel_weight: torch.Tensor, frame_weight: torch.Tensor
) -> torch.Tensor:
    """``|| (target - prediction) * W ||^2``, mean over elements of the weighted frames.

    Args:
        prediction, target: (B, T, C, h, w).
        texel_weight: W, broadcastable to (B, T, 1, h, w): ``1 + M_uv`` in the paper (hand texels
            count twice), plus the pressure term of :meth:`EgoPressDiff.loss_weight`.
        frame_weight: (B, T) 1 for frames that count (annotated), 0 otherwise.

    Returns:
        Scalar loss (0 when no frame counts).
    """
    per_frame = ((target - prediction) * texel_weight).square().mean(dim=(2, 3, 4))
    frame_weight = frame_weight.to(per_frame.dtype)
    return (per_frame * frame_weight).sum() / frame_weight.sum().clamp_min(1.0)


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if isinstance(generator, int):
        return torch.Generator().manual_seed(generator)
    return generator


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) drawn on the generator's device, then moved (CPU generators drive GPU runs)."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source).to(device)


class EgoPressDiff(nn.Module):
    """The full model: encoders, video U-Net, noise schedule, sampler.

    Args:
        config: a validated :class:`EgoPressDiffConfig`.
    """

    def __init__(self, config: EgoPressDiffConfig) -> None:
        super().__init__()
        if not isinstance(config, EgoPressDiffConfig):
            raise ConfigError(f"config must be an EgoPressDiffConfig; got {type(config).__name__}")
        self.config = config
        self.normalizer = PressureNormalizer(config.pressure_reference_kpa, config.pressure_max_kpa)
        self._scheduler_templates: dict[str, Any] = {}  # make_scheduler's, one per sampler name

        if config.latent_space == "vae":
            self.codec: PixelLatentCodec | VAELatentCodec = VAELatentCodec(config.vae, config.uv_size)
        else:
            self.codec = PixelLatentCodec(config.uv_size)
        if config.image_encoder == "clip":
            self.image_encoder: ConvImageEncoder | CLIPImageEncoder = CLIPImageEncoder(
                config.clip, config.clip_patch_tokens
            )
        else:
            self.image_encoder = ConvImageEncoder(
                config.cross_attention_dim, config.num_image_tokens, tuple(config.image_encoder_channels)
            )
        self.vertex_encoder = (
            VertexEncoder(
                config.vertex_hidden_dim,
                config.cross_attention_dim,
                config.num_vertex_tokens,
                config.vertex_temporal_kernel_size,
            )
            if config.use_vertices
            else None
        )
        self.pose_net = (
            PoseNet(
                NUM_POSE_CHANNELS,
                config.unet_block_out_channels[0],
                tuple(config.pose_net_channels),
                PoseNet.downsamples_for(config.image_size, config.latent_size),
            )
            if config.use_pose_net
            else None
        )
        self.unet = EgoPressUNet(
            in_channels=config.unet_in_channels,
            out_channels=config.latent_channels,
            down_block_types=tuple(config.unet_down_block_types),
            up_block_types=tuple(config.unet_up_block_types),
            block_out_channels=tuple(config.unet_block_out_channels),
            addition_time_embed_dim=config.unet_addition_time_embed_dim,
            projection_class_embeddings_input_dim=NUM_ADDED_TIME_IDS * config.unet_addition_time_embed_dim,
            layers_per_block=config.unet_layers_per_block,
            cross_attention_dim=config.cross_attention_dim,
            transformer_layers_per_block=config.unet_transformer_layers_per_block,
            num_attention_heads=tuple(config.unet_num_attention_heads),
            num_frames=config.num_frames,
            num_image_tokens=config.num_image_tokens,
            num_vertex_tokens=config.num_vertex_tokens if config.use_vertices else 0,
            dc_calibration=config.dc_calibration,
        )
        # SVD micro-conditioning is constant per model: a buffer follows the model across devices,
        # so a U-Net call does not copy it from the host every denoising step. Not persistent: it
        # is derived from the config, not saved with the weights.
        self.register_buffer("added_time_ids", svd_added_time_ids(config.fps, 1, torch.device("cpu"), torch.float32).clone(),
                             persistent=False)
        with torch.device("cpu"):  # schedule tables stay on the CPU; add_noise moves what it needs
            self.noise_scheduler = DDPMScheduler(**self._noise_schedule(), clip_sample=False)

    # ------------------------------------------------------------------------------------------
    # Basics
    # ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def trainable_parameters(self) -> list[nn.Parameter]:
        """U-Net, Vertex Encoder, PoseNet and the conv image encoder (VAE and CLIP are frozen)."""
        return [p for p in self.parameters() if p.requires_grad]

    def _noise_schedule(self) -> dict[str, Any]:
        c = self.config
        return dict(
            num_train_timesteps=c.num_train_timesteps,
            beta_start=c.beta_start,
            beta_end=c.beta_end,
            beta_schedule=c.beta_schedule,
            prediction_type=c.prediction_type,
            timestep_spacing=c.timestep_spacing,
        )

    def make_scheduler(self, name: str):
        """A fresh sampler on the training noise schedule: "ddim", "dpmsolver++" or "euler".

        In pixel space the clean map is bounded ([-1, 1] after normalisation), so DDIM clips and
        DPM-Solver++ thresholds its clean-sample estimates to that range at every step (VAE
        latents are unbounded and are left alone). Euler has no such option.

        Each call returns its own copy (samplers keep per-run state) of one instance built per
        name: building one computes the 1000-step schedule in Python, a few milliseconds that a
        live frame cannot spare.
        """
        if name not in self._scheduler_templates:
            self._scheduler_templates[name] = self._build_scheduler(name)
        return copy.deepcopy(self._scheduler_templates[name])

    def _build_scheduler(self, name: str):
        schedule = self._noise_schedule()
        bounded = self.config.latent_space == "pixel"
        if name == "ddim":
            # set_alpha_to_one: the last step lands on the clean sample.
            return DDIMScheduler(
                **schedule, clip_sample=bounded, clip_sample_range=1.0, set_alpha_to_one=True
            )
        if name == "dpmsolver++":
            return DPMSolverMultistepScheduler(
                **schedule,
                algorithm_type="dpmsolver++",
                solver_order=2,
                thresholding=bounded,
                sample_max_value=1.0,
            )
        if name == "euler":
            return EulerDiscreteScheduler(**schedule)
        raise ConfigError(f"scheduler must be one of {list(SCHEDULERS)}. Got {name!r}")

    # ------------------------------------------------------------------------------------------
    # Conditions
    # ------------------------------------------------------------------------------------------
    def build_conditions(self, batch: Mapping[str, torch.Tensor], check_window: bool = True) -> EgoPressConditions:
        """Window batch dict -> validated conditions with this model's pose/depth settings.

        ``check_window=False`` accepts any number of frames (whole sequences for
        :func:`~egopress_core.inference.estimate_sequence`).
        """
        conditions = build_conditions(
            batch, pose_sigma_px=self.config.pose_sigma_px, depth_clip_m=self.config.depth_clip_m
        )
        return self.check_conditions(conditions, check_window=check_window)

    def check_conditions(
        self, conditions: EgoPressConditions, check_window: bool = True
    ) -> EgoPressConditions:
        """Validate values and sizes against the config; raise :class:`DataError` before any work."""
        conditions.validate()
        c = self.config
        if check_window and conditions.num_frames != c.num_frames:
            raise DataError(
                f"window has {conditions.num_frames} frames but the model was built for "
                f"num_frames={c.num_frames}"
            )
        if conditions.image_size != tuple(c.image_size):
            raise DataError(
                f"images are {conditions.image_size} but the model expects image_size={tuple(c.image_size)}"
            )
        if conditions.uv_size != tuple(c.uv_size):
            raise DataError(
                f"uv_mask is {conditions.uv_size} but the model expects uv_size={tuple(c.uv_size)}"
            )
        if c.use_uv_geometry and conditions.uv_geometry is None:
            raise DataError(
                "the model uses UV geometry (use_uv_geometry=True) but conditions.uv_geometry is missing"
            )
        return conditions

    def encode_frames(self, conditions: EgoPressConditions) -> FrameFeatures:
        """Per-frame encoders (cacheable across overlapping windows).

        Args:
            conditions: B sequences of any length T (checked by the caller).

        Returns:
            :class:`FrameFeatures` over the same T frames.
        """
        c = self.config
        conditions = conditions.to(self.device, self.dtype)
        batch, frames = conditions.batch_size, conditions.num_frames
        latent_size = self.codec.latent_size

        # 1. Image tokens per frame.
        image_tokens = self.image_encoder(conditions.rgb.flatten(0, 1)).tokens.unflatten(0, (batch, frames))
        # 2. Pooled vertex features per frame (temporal part is per window).
        vertex_features = (
            self.vertex_encoder.encode_frames(conditions.vertices) if self.vertex_encoder else None
        )
        # 3. PoseNet features at latent resolution.
        pose_features = None
        if self.pose_net is not None:
            pose_features = self.pose_net(
                conditions.pose_maps.flatten(0, 1), output_size=latent_size
            ).features
            pose_features = pose_features.unflatten(0, (batch, frames))
        # 4. Depth and UV geometry at latent resolution.
        depth = self.codec.encode_depth(conditions.depth) if c.use_depth else None
        geometry = resize_frames(conditions.uv_geometry, latent_size) if c.use_uv_geometry else None
        return FrameFeatures(
            image_tokens=image_tokens,
            vertex_features=vertex_features,
            pose_features=pose_features,
            depth=depth,
            geometry=geometry,
            frame_valid=conditions.frame_valid,
            uv_mask=conditions.uv_mask,
        )

    def encode_window(self, frame_features: FrameFeatures) -> WindowFeatures:
        """Window-level encoders (the Vertex Encoder's temporal convolutions)."""
        vertex_tokens = None
        if self.vertex_encoder is not None:
            vertex_tokens = self.vertex_encoder.encode_window(
                frame_features.vertex_features, frame_features.frame_valid
            )
        return WindowFeatures(
            image_tokens=frame_features.image_tokens,
            vertex_tokens=vertex_tokens,
            pose_features=frame_features.pose_features,
            depth=frame_features.depth,
            geometry=frame_features.geometry,
            frame_valid=frame_features.frame_valid,
            uv_mask=frame_features.uv_mask,
        )

    def encode_conditions(self, conditions: EgoPressConditions) -> WindowFeatures:
        """:meth:`encode_frames` then :meth:`encode_window`."""
        return self.encode_window(self.encode_frames(conditions))

    # ------------------------------------------------------------------------------------------
    # Denoiser
    # ------------------------------------------------------------------------------------------
    def predict(
        self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, features: WindowFeatures
    ) -> torch.Tensor:
        """U-Net prediction (noise, velocity or clean latent, per ``prediction_type``).

        Args:
            noisy_latents: (B, T, C, h, w).
            timesteps: (B,) or scalar.
            features: conditions of the same B and T.

        Returns:
            (B, T, C, h, w).
        """
        batch = noisy_latents.shape[0]
        sample = torch.cat([noisy_latents, *features.condition_channels()], dim=2).to(self.dtype)
        added_time_ids = self.added_time_ids.to(self.dtype).expand(batch, -1)
        return self.unet(
            sample,
            timesteps,
            features.encoder_hidden_states.to(self.dtype),
            added_time_ids,
            pose_features=features.pose_features,
        ).sample

    def latent_mask(self, uv_mask: torch.Tensor) -> torch.Tensor:
        """(B, 1, Hu, Wu) -> (B, 1, h, w) fraction of hand texels per latent cell."""
        return resize_frames(uv_mask[:, None], self.codec.latent_size)[:, 0]

    def loss_weight(self, pressure_kpa: torch.Tensor, uv_mask: torch.Tensor) -> torch.Tensor:
        """Per-texel loss weight ``1 + M_uv + w_p * (x + 1) / 2`` at latent resolution.

        Args:
            pressure_kpa: (B, T, 1, Hu, Wu) target pressure.
            uv_mask: (B, 1, Hu, Wu) hand mask.

        Returns:
            (B, T, 1, h, w), or (B, 1, 1, h, w) without the pressure term: M_uv is the hand fraction of each latent cell; ``x`` is the target
            normalised to [-1, 1] (so the pressure term is 0 without contact) and averaged over
            the cell; ``w_p`` is ``config.pressure_loss_weight``.
        """
        weight = 1.0 + self.latent_mask(uv_mask)[:, None]
        if self.config.pressure_loss_weight > 0:
            unit = (self.normalizer.encode(pressure_kpa * (uv_mask[:, None] > 0.5)) + 1.0) * 0.5
            weight = weight + self.config.pressure_loss_weight * resize_frames(unit, self.codec.latent_size)
        return weight

    def encode_pressure(self, pressure_kpa: torch.Tensor, uv_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, 1, Hu, Wu) kPa -> (B, T, C, h, w) clean latents (zero pressure off the hand)."""
        on_hand = (uv_mask[:, None] > 0.5).to(pressure_kpa.dtype)
        return self.codec.encode_pressure(self.normalizer.encode(pressure_kpa * on_hand).to(self.dtype))

    def decode_latents(self, latents: torch.Tensor, uv_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C, h, w) latents -> (B, T, 1, Hu, Wu) kPa, >= 0, zero outside the mask."""
        normalized = self.codec.decode_pressure(latents).float()
        return self.normalizer.decode(normalized, uv_mask[:, None].to(normalized.device))

    # ------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------
    def _dropout_keep(
        self, batch: int, generator: torch.Generator | None, device: torch.device
    ) -> dict[str, torch.Tensor]:
        c = self.config
        keep_any = _rand((batch,), generator, device) >= c.condition_dropout_prob
        modality = (
            _rand((len(WindowFeatures.MODALITIES), batch), generator, device) >= c.modality_dropout_prob
        )
        if not self.training:
            # Dropout is a training device: the loss of an evaluated model sees every condition.
            keep_any = torch.ones_like(keep_any)
            modality = torch.ones_like(modality)
        return {name: keep_any & modality[i] for i, name in enumerate(WindowFeatures.MODALITIES)}

    def compute_loss(
        self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | int | None = None
    ) -> LossOutput:
        """Denoising loss of one window batch (see the module docstring for the batch keys).

        Args:
            batch: window batch dict, with ``uv_pressure_kpa`` (B, T, 1, Hu, Wu) kPa.
            generator: drives timesteps, noise and condition dropout (reproducible steps).

        Returns:
            :class:`LossOutput`.
        """
        generator = _as_generator(generator)
        # 1. Conditions and target, validated before any network runs.
        conditions = self.build_conditions(batch)
        if "uv_pressure_kpa" not in batch:
            raise DataError("window batch has no uv_pressure_kpa (the training target)")
        pressure = batch["uv_pressure_kpa"].float()
        expected = (conditions.batch_size, conditions.num_frames, 1, *self.config.uv_size)
        if tuple(pressure.shape) != expected:
            raise DataError(f"uv_pressure_kpa must have shape {expected}; got {tuple(pressure.shape)}")
        valid = conditions.frame_valid
        if not bool(torch.isfinite(pressure[valid]).all()):
            raise DataError("uv_pressure_kpa contains NaN or infinite values on frames marked valid")
        device = self.device
        pressure = torch.where(valid[:, :, None, None, None], pressure, torch.zeros_like(pressure)).to(device)
        uv_mask = conditions.uv_mask.to(device)

        # 2. Encode conditions and the clean pressure latent.
        features = self.encode_conditions(conditions)
        clean = self.encode_pressure(pressure, uv_mask)
        batch_size = clean.shape[0]

        # 3. Condition dropout (all together for classifier-free guidance, or per modality).
        features = features.drop(self._dropout_keep(batch_size, generator, device))

        # 4. Noise a random timestep per window.
        source = generator.device if generator is not None else device
        timesteps = torch.randint(
            0, self.config.num_train_timesteps, (batch_size,), generator=generator, device=source
        ).to(device)
        noise = randn_tensor(clean.shape, generator=generator, device=device, dtype=clean.dtype)
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)

        # 5. Predict and compare with the target of the prediction type.
        prediction = self.predict(noisy, timesteps, features)
        if self.config.prediction_type == "epsilon":
            target = noise
        elif self.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(clean, noise, timesteps)
        else:
            target = clean
        prediction, target = prediction.float(), target.float()
        loss = masked_diffusion_loss(prediction, target, self.loss_weight(pressure, uv_mask), valid.to(device))
        with torch.no_grad():
            mse = masked_diffusion_loss(prediction, target, torch.ones_like(prediction[:1, :1]), valid.to(device))
        return LossOutput(loss=loss, mse=mse, timesteps=timesteps)

    def forward(
        self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | int | None = None
    ) -> LossOutput:
        """Training forward = :meth:`compute_loss`, so DDP / ``accelerate`` wrappers (which hook
        ``forward``) synchronise gradients: ``loss = wrapped_model(batch).loss``."""
        return self.compute_loss(batch, generator)

    # ------------------------------------------------------------------------------------------
    # Sampling
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def denoise(
        self,
        features: WindowFeatures,
        num_inference_steps: int = 25,
        scheduler: str = "ddim",
        guidance_scale: float = 1.0,
        generator: torch.Generator | int | None = None,
        init_latents: torch.Tensor | None = None,
        strength: float = 1.0,
        progress: bool = False,
    ) -> torch.Tensor:
        """Run the reverse process in latent space.

        Args:
            features: encoded conditions (B windows of T frames).
            num_inference_steps: sampler steps for a full (strength 1) run.
            scheduler: "ddim", "dpmsolver++" or "euler".
            guidance_scale: classifier-free guidance weight (1: conditional only, no extra pass).
            generator: seed or generator for the initial noise (and stochastic samplers).
            init_latents: optional (B, T, C, h, w) clean-latent estimate to start from (warm start).
            strength: with ``init_latents``, how far to renoise it: the run starts at timestep
                index ``round(num_inference_steps * (1 - strength))`` and takes the remaining
                steps (at least one). Must be 1 without ``init_latents``.
            progress: show a tqdm bar.

        Returns:
            (B, T, C, h, w) denoised latents.
        """
        generator = _as_generator(generator)
        if not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
            raise ConfigError(f"num_inference_steps must be a positive integer; got {num_inference_steps!r}")
        if not 0.0 < strength <= 1.0:
            raise ConfigError(f"strength must be in (0, 1]; got {strength}")
        if init_latents is None and strength != 1.0:
            raise ConfigError("strength < 1 needs init_latents to start from")
        if guidance_scale < 1.0:
            raise ConfigError(f"guidance_scale must be >= 1; got {guidance_scale}")
        if features.num_frames != self.config.num_frames:
            raise DataError(
                f"window has {features.num_frames} frames but the model was built for "
                f"num_frames={self.config.num_frames}"
            )
        sampler = self.make_scheduler(scheduler)
        device = self.device
        shape = (
            features.batch_size,
            features.num_frames,
            self.config.latent_channels,
            *self.codec.latent_size,
        )

        # 1. Timesteps; warm starts skip the noisiest part of the schedule.
        sampler.set_timesteps(num_inference_steps, device=device)
        steps_to_run = max(1, min(num_inference_steps, int(round(num_inference_steps * strength))))
        first = (num_inference_steps - steps_to_run) * sampler.order
        timesteps = sampler.timesteps[first:]
        if hasattr(sampler, "set_begin_index"):
            sampler.set_begin_index(first)

        # 2. Initial latents: pure noise, or the warm start renoised to the first timestep.
        noise = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        if init_latents is None:
            latents = noise * sampler.init_noise_sigma
        else:
            if tuple(init_latents.shape) != shape:
                raise DataError(f"init_latents must have shape {shape}; got {tuple(init_latents.shape)}")
            latents = sampler.add_noise(
                init_latents.to(device, torch.float32), noise, timesteps[:1].repeat(shape[0])
            )

        # 3. Reverse process, with classifier-free guidance as one batched pass.
        guided = guidance_scale != 1.0
        model_features = features.cat_batch(features.null()) if guided else features
        for t in tqdm(timesteps, desc="denoising", disable=not progress, leave=False):
            model_input = sampler.scale_model_input(latents, t)
            if guided:
                model_input = torch.cat([model_input, model_input])
            prediction = self.predict(model_input, t, model_features).float()
            if guided:
                conditional, unconditional = prediction.chunk(2)
                prediction = unconditional + guidance_scale * (conditional - unconditional)
            latents = sampler.step(prediction, t, latents, generator=generator).prev_sample
        return latents

    @torch.no_grad()
    def sample(
        self,
        conditions: EgoPressConditions,
        num_inference_steps: int = 25,
        scheduler: str = "ddim",
        guidance_scale: float = 1.0,
        generator: torch.Generator | int | None = None,
        init_latents: torch.Tensor | None = None,
        strength: float = 1.0,
        progress: bool = False,
    ) -> torch.Tensor:
        """Estimate UV pressure for B windows.

        Args: see :meth:`denoise`; ``conditions`` must have T = ``config.num_frames``.

        Returns:
            (B, T, 1, Hu, Wu) kPa, non-negative, zero outside ``conditions.uv_mask``.
        """
        conditions = self.check_conditions(conditions)
        features = self.encode_conditions(conditions)
        latents = self.denoise(
            features,
            num_inference_steps,
            scheduler,
            guidance_scale,
            generator,
            init_latents,
            strength,
            progress,
        )
        return self.decode_latents(latents, features.uv_mask)

    # ------------------------------------------------------------------------------------------
    # Checkpoints
    # ------------------------------------------------------------------------------------------
    def frozen_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the frozen pretrained modules (the SVD VAE, the CLIP encoder)."""
        prefixes = []
        if isinstance(self.codec, VAELatentCodec):
            prefixes.append("codec.")
        if isinstance(self.image_encoder, CLIPImageEncoder):
            prefixes.append("image_encoder.")
        return tuple(prefixes)

    def save_pretrained(self, directory: str | os.PathLike, include_frozen: bool = True) -> None:
        """Write ``config.json`` and ``model.safetensors`` (see :mod:`~egopress_core.model.checkpoint`).

        Args:
            directory: checkpoint folder (created).
            include_frozen: also store the frozen VAE / CLIP weights; False keeps paper-size
                checkpoints small, and loading then needs ``frozen_weights_from``.
        """
        save_egopressdiff(self, directory, include_frozen)

    @classmethod
    def load_config(cls, directory: str | os.PathLike) -> EgoPressDiffConfig:
        """A checkpoint's config (:func:`~egopress_core.model.checkpoint.load_egopressdiff_config`)."""
        return load_egopressdiff_config(directory)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        expected_config: EgoPressDiffConfig | None = None,
        expected_uv_layout: str | None = None,
        map_location: str | torch.device = "cpu",
        frozen_weights_from: str | os.PathLike | None = None,
    ) -> EgoPressDiff:
        """Load a checkpoint written by :meth:`save_pretrained`.

        Args:
            directory: checkpoint folder.
            expected_config: if given, every architecture key must match (training-only keys such
                as dropout probabilities may differ).
            expected_uv_layout: if given, the checkpoint's ``uv_layout`` must equal it.
            map_location: device for the weights.
            frozen_weights_from: SVD folder with the frozen VAE / CLIP weights, needed when the
                checkpoint was saved with ``include_frozen=False``.

        Raises:
            CheckpointError: what :func:`~egopress_core.model.checkpoint.load_egopressdiff` refuses.
        """
        return load_egopressdiff(cls, directory, expected_config=expected_config,
                                 expected_uv_layout=expected_uv_layout, map_location=map_location,
                                 frozen_weights_from=frozen_weights_from)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (``trainable_only``: with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "EgoPressDiff",
    "LossOutput",
    "SCHEDULERS",
    "count_parameters",
    "masked_diffusion_loss",
]
