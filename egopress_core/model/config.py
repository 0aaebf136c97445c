"""EgoPressDiff configuration: one validated dataclass, saved as JSON next to the weights.

Every key is read by the model (no decorative keys). Presets: :func:`tiny_config` (tests, seconds
on a CPU), :func:`compact_config` (trained from scratch on a CPU in about an hour: pixel-space
32x32 UV maps, 64x64 images, 16 frames) and :func:`paper_config` (Stable-Video-Diffusion-sized
U-Net, frozen SVD VAE and CLIP ViT-H/14 image encoder, 224x224 UV maps).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egopress_core.errors import ConfigError
from egopress_core.files import write_json_atomic

LATENT_SPACES = ("pixel", "vae")
IMAGE_ENCODERS = ("conv", "clip")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")
DOWN_BLOCK_TYPES = ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal")
UP_BLOCK_TYPES = ("CrossAttnUpBlockSpatioTemporal", "UpBlockSpatioTemporal")

# Keys that only shape training; a checkpoint stays compatible when they differ.
TRAINING_ONLY_KEYS = frozenset({"condition_dropout_prob", "modality_dropout_prob", "pressure_loss_weight"})

# AutoencoderKLTemporalDecoder / CLIPVisionConfig arguments kept in the config (the rest are
# library defaults); the model builds the modules from exactly these.
VAE_KEYS = (
    "in_channels",
    "out_channels",
    "down_block_types",
    "block_out_channels",
    "layers_per_block",
    "latent_channels",
    "sample_size",
    "scaling_factor",
)
CLIP_KEYS = (
    "hidden_size",
    "intermediate_size",
    "projection_dim",
    "num_hidden_layers",
    "num_attention_heads",
    "num_channels",
    "image_size",
    "patch_size",
    "hidden_act",
    "layer_norm_eps",
)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")


def _probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1); got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}. Got {value!r}")


def _size_pair(name: str, value: Any) -> tuple[int, int]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(f"{name} must be (height, width); got {value!r}")
    for item in value:
        _positive_int(name, item)
    return int(value[0]), int(value[1])


@dataclass
class EgoPressDiffConfig:
    """Sizes, switches and the noise schedule of one EgoPressDiff model.

    Data layout
        num_frames: window length T the model denoises at once.
        image_size: (H, W) of RGB, depth and pose maps.
        uv_size: (Hu, Wu) of the UV-pressure map.
        uv_layout: id of the UV layout the maps follow; checkpoints refuse other layouts.
        fps: frame rate fed to the U-Net's SVD frame-rate embedding.
    Pressure normalisation (:class:`~egopress_core.conditioning.PressureNormalizer`)
        pressure_reference_kpa, pressure_max_kpa.
    Conditioning
        pose_sigma_px: line width of rendered skeleton maps; depth_clip_m: depth half-range
        around the hand.
    Ablation switches
        use_depth (depth channels concatenated to the latent; False also builds the UV geometry
        without depth, so the model sees none), use_vertices (Vertex Encoder and
        the DC layer's vertex branch), use_pose_net, dc_calibration (False: vertex branch added
        uncalibrated), use_uv_geometry (6 UV-aligned geometry channels concatenated: see
        :func:`~egopress_core.conditioning.uv_geometry_from_mesh`).
    Latent space
        latent_space: "pixel" (the UV map itself, 1 channel) or "vae" (frozen
        AutoencoderKLTemporalDecoder built from ``vae``, a dict of its constructor arguments).
    Image encoder
        image_encoder: "conv" (trainable :class:`ConvImageEncoder` with ``image_encoder_channels``
        and ``num_image_tokens`` tokens) or "clip" (frozen CLIP vision model built from ``clip``;
        ``clip_patch_tokens`` uses the projected patch tokens besides the image embedding).
    Vertex encoder
        vertex_hidden_dim, num_vertex_tokens (per frame), vertex_temporal_kernel_size.
    PoseNet
        pose_net_channels: widths of its 4 conv layers.
    U-Net (diffusers UNetSpatioTemporalConditionModel arguments)
        cross_attention_dim, unet_block_out_channels, unet_down_block_types, unet_up_block_types,
        unet_layers_per_block, unet_transformer_layers_per_block, unet_num_attention_heads,
        unet_addition_time_embed_dim.
    Diffusion (shared by the DDPM training scheduler and the DDIM / DPM-Solver++ / Euler samplers)
        prediction_type, num_train_timesteps, beta_schedule, beta_start, beta_end (diffusers reads
        the two betas for "linear" / "scaled_linear" only), timestep_spacing.
    Loss
        pressure_loss_weight: extra weight on texels in proportion to their normalised target
            pressure (0 at no contact, 1 at ``pressure_max_kpa``); 0 is the paper's loss. Contact
            covers about 1% of the hand's texels, so with the paper's weighting an undertrained
            model predicts faint haze; a weight of ~10 makes contact texels count as much as the
            empty hand around them.
    Classifier-free guidance
        condition_dropout_prob: all conditions dropped together (the unconditional branch);
        modality_dropout_prob: each modality (image, vertices, pose, depth, UV geometry) dropped
        independently, so the model copes with a missing sensor.
    """

    num_frames: int = 16
    image_size: tuple[int, int] = (64, 64)
    uv_size: tuple[int, int] = (32, 32)
    uv_layout: str = "egopress_hand"
    fps: float = 30.0

    pressure_reference_kpa: float = 1.0
    pressure_max_kpa: float = 200.0

    pose_sigma_px: float = 1.5
    depth_clip_m: float = 0.15

    use_depth: bool = True
    use_vertices: bool = True
    use_pose_net: bool = True
    dc_calibration: bool = True
    use_uv_geometry: bool = False

    latent_space: str = "pixel"
    vae: dict | None = None

    image_encoder: str = "conv"
    image_encoder_channels: tuple[int, ...] = (32, 64, 128)
    num_image_tokens: int = 16
    clip: dict | None = None
    clip_patch_tokens: bool = True

    vertex_hidden_dim: int = 128
    num_vertex_tokens: int = 4
    vertex_temporal_kernel_size: int = 3

    pose_net_channels: tuple[int, int, int, int] = (16, 32, 64, 64)

    cross_attention_dim: int = 128
    unet_block_out_channels: tuple[int, ...] = (32, 64, 128)
    unet_down_block_types: tuple[str, ...] = (
        "DownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
    )
    unet_up_block_types: tuple[str, ...] = (
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "UpBlockSpatioTemporal",
    )
    unet_layers_per_block: int = 1
    unet_transformer_layers_per_block: int = 1
    unet_num_attention_heads: tuple[int, ...] = (1, 2, 4)
    unet_addition_time_embed_dim: int = 32

    prediction_type: str = "v_prediction"
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    timestep_spacing: str = "trailing"

    pressure_loss_weight: float = 0.0

    condition_dropout_prob: float = 0.1
    modality_dropout_prob: float = 0.05

    def __post_init__(self) -> None:
        # JSON / YAML give lists; the dataclass keeps tuples so configs compare and hash simply.
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, list):
                setattr(self, item.name, tuple(value))
        self.validate()

    # ------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid key."""
        _positive_int("num_frames", self.num_frames)
        self.image_size = _size_pair("image_size", self.image_size)
        self.uv_size = _size_pair("uv_size", self.uv_size)
        if not isinstance(self.uv_layout, str) or not self.uv_layout:
            raise ConfigError(f"uv_layout must be a non-empty string; got {self.uv_layout!r}")
        if not isinstance(self.fps, (int, float)) or not self.fps > 0:
            raise ConfigError(f"fps must be > 0; got {self.fps!r}")
        if not self.pressure_reference_kpa > 0:
            raise ConfigError(f"pressure_reference_kpa must be > 0; got {self.pressure_reference_kpa}")
        if not self.pressure_max_kpa > self.pressure_reference_kpa:
            raise ConfigError(
                f"pressure_max_kpa must exceed pressure_reference_kpa={self.pressure_reference_kpa}; "
                f"got {self.pressure_max_kpa}"
            )
        if not self.pose_sigma_px > 0:
            raise ConfigError(f"pose_sigma_px must be > 0; got {self.pose_sigma_px}")
        if not self.depth_clip_m > 0:
            raise ConfigError(f"depth_clip_m must be > 0; got {self.depth_clip_m}")
        for name in (
            "use_depth",
            "use_vertices",
            "use_pose_net",
            "dc_calibration",
            "use_uv_geometry",
            "clip_patch_tokens",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false; got {getattr(self, name)!r}")
        if self.dc_calibration and not self.use_vertices:
            raise ConfigError(
                "dc_calibration=True needs use_vertices=True: there is no vertex branch to calibrate"
            )

        _choice("latent_space", self.latent_space, LATENT_SPACES)
        if self.latent_space == "vae":
            if not isinstance(self.vae, dict):
                raise ConfigError(
                    "latent_space='vae' needs vae: a dict of AutoencoderKLTemporalDecoder arguments"
                )
            unknown = sorted(set(self.vae) - set(VAE_KEYS))
            if unknown:
                raise ConfigError(f"vae has unknown keys {unknown}; allowed: {list(VAE_KEYS)}")
            for key in ("block_out_channels", "latent_channels"):
                if key not in self.vae:
                    raise ConfigError(f"vae.{key} is required")
            self.vae = {k: tuple(v) if isinstance(v, list) else v for k, v in self.vae.items()}
            factor = self.vae_downsample_factor
            for axis, size in zip(("height", "width"), self.uv_size):
                if size % factor:
                    raise ConfigError(
                        f"uv_size {axis} {size} must be divisible by the VAE's downsampling factor {factor}"
                    )
        elif self.vae is not None:
            raise ConfigError("vae must be null when latent_space='pixel'")

        _choice("image_encoder", self.image_encoder, IMAGE_ENCODERS)
        if self.image_encoder == "conv":
            if not self.image_encoder_channels:
                raise ConfigError("image_encoder_channels must list at least one width")
            for width in self.image_encoder_channels:
                _positive_int("image_encoder_channels", width)
            _positive_int("num_image_tokens", self.num_image_tokens)
            if math.isqrt(self.num_image_tokens) ** 2 != self.num_image_tokens:
                raise ConfigError(
                    f"num_image_tokens must be a square (a token grid); got {self.num_image_tokens}"
                )
            if self.clip is not None:
                raise ConfigError("clip must be null when image_encoder='conv'")
        else:
            if self.image_encoder_channels:
                raise ConfigError("image_encoder_channels must be empty when image_encoder='clip'")
            if not isinstance(self.clip, dict):
                raise ConfigError("image_encoder='clip' needs clip: a dict of CLIPVisionConfig arguments")
            unknown = sorted(set(self.clip) - set(CLIP_KEYS))
            if unknown:
                raise ConfigError(f"clip has unknown keys {unknown}; allowed: {list(CLIP_KEYS)}")
            for key in ("projection_dim", "image_size", "patch_size"):
                if key not in self.clip:
                    raise ConfigError(f"clip.{key} is required")
            if self.clip["projection_dim"] != self.cross_attention_dim:
                raise ConfigError(
                    f"clip.projection_dim ({self.clip['projection_dim']}) must equal cross_attention_dim "
                    f"({self.cross_attention_dim}): image tokens feed the U-Net's cross-attention"
                )
            expected_tokens = self.clip_num_tokens
            if self.num_image_tokens != expected_tokens:
                raise ConfigError(
                    f"num_image_tokens must be {expected_tokens} for this CLIP encoder "
                    f"(clip_patch_tokens={self.clip_patch_tokens}); got {self.num_image_tokens}"
                )
        if self.dc_calibration and self.num_image_tokens < 2:
            raise ConfigError(
                "dc_calibration needs num_image_tokens >= 2: with one token the image branch is constant "
                "over space and has no channel spread to calibrate to"
            )

        _positive_int("vertex_hidden_dim", self.vertex_hidden_dim)
        _positive_int("num_vertex_tokens", self.num_vertex_tokens)
        if self.dc_calibration and self.num_vertex_tokens < 2:
            raise ConfigError(
                "dc_calibration needs num_vertex_tokens >= 2: with one token the vertex branch is constant "
                "over space, so its channel std is 0"
            )
        _positive_int("vertex_temporal_kernel_size", self.vertex_temporal_kernel_size)
        if self.vertex_temporal_kernel_size % 2 == 0:
            raise ConfigError(
                f"vertex_temporal_kernel_size must be odd; got {self.vertex_temporal_kernel_size}"
            )
        if len(self.pose_net_channels) != 4:
            raise ConfigError(
                f"pose_net_channels must list 4 widths (4 conv layers); got {self.pose_net_channels!r}"
            )
        for width in self.pose_net_channels:
            _positive_int("pose_net_channels", width)

        _positive_int("cross_attention_dim", self.cross_attention_dim)
        levels = len(self.unet_block_out_channels)
        if levels == 0:
            raise ConfigError("unet_block_out_channels must list at least one width")
        for width in self.unet_block_out_channels:
            _positive_int("unet_block_out_channels", width)
            if width % 32:
                raise ConfigError(
                    f"unet_block_out_channels must be multiples of 32 (GroupNorm groups); got {width}"
                )
        for name, allowed in (
            ("unet_down_block_types", DOWN_BLOCK_TYPES),
            ("unet_up_block_types", UP_BLOCK_TYPES),
        ):
            types = getattr(self, name)
            if len(types) != levels:
                raise ConfigError(
                    f"{name} must have {levels} entries (one per unet_block_out_channels); got {len(types)}"
                )
            for block_type in types:
                _choice(name, block_type, allowed)
        if len(self.unet_num_attention_heads) != levels:
            raise ConfigError(
                f"unet_num_attention_heads must have {levels} entries; "
                f"got {len(self.unet_num_attention_heads)}"
            )
        for width, heads in zip(self.unet_block_out_channels, self.unet_num_attention_heads):
            _positive_int("unet_num_attention_heads", heads)
            if width % heads:
                raise ConfigError(f"unet_num_attention_heads: {heads} heads do not divide width {width}")
        _positive_int("unet_layers_per_block", self.unet_layers_per_block)
        _positive_int("unet_transformer_layers_per_block", self.unet_transformer_layers_per_block)
        _positive_int("unet_addition_time_embed_dim", self.unet_addition_time_embed_dim)
        if self.unet_addition_time_embed_dim % 2:
            raise ConfigError(
                f"unet_addition_time_embed_dim must be even; got {self.unet_addition_time_embed_dim}"
            )

        _choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        _positive_int("num_train_timesteps", self.num_train_timesteps)
        _choice("beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ConfigError(f"need 0 < beta_start < beta_end < 1; got {self.beta_start}, {self.beta_end}")
        _choice("timestep_spacing", self.timestep_spacing, TIMESTEP_SPACINGS)
        self._validate_noise_schedule()
        if isinstance(self.pressure_loss_weight, bool) or not isinstance(self.pressure_loss_weight, (int, float)) \
                or not 0.0 <= self.pressure_loss_weight < float("inf"):
            raise ConfigError(f"pressure_loss_weight must be a finite number >= 0; got {self.pressure_loss_weight!r}")
        _probability("condition_dropout_prob", self.condition_dropout_prob)
        _probability("modality_dropout_prob", self.modality_dropout_prob)

    def _validate_noise_schedule(self) -> None:
        """The schedule must end in (near) pure noise, and epsilon prediction must stay invertible."""
        import torch
        from diffusers import DDPMScheduler

        # Explicit CPU: configs are also validated inside `with torch.device("meta")` model builds.
        with torch.device("cpu"):
            final_alpha_bar = float(
                DDPMScheduler(
                    num_train_timesteps=self.num_train_timesteps,
                    beta_schedule=self.beta_schedule,
                    beta_start=self.beta_start,
                    beta_end=self.beta_end,
                ).alphas_cumprod[-1]
            )
        if final_alpha_bar > 0.05:
            raise ConfigError(
                f"the noise schedule never reaches noise: alphas_cumprod[-1] = {final_alpha_bar:.3g} with "
                f"beta_schedule={self.beta_schedule!r}, num_train_timesteps={self.num_train_timesteps}; "
                "raise num_train_timesteps or beta_end"
            )
        if self.prediction_type == "epsilon" and final_alpha_bar < 1e-4:
            raise ConfigError(
                f"prediction_type='epsilon' with alphas_cumprod[-1] = {final_alpha_bar:.3g}: recovering the "
                "clean map divides noise-prediction errors by sqrt(alphas_cumprod) at the first sampling "
                "step; use 'v_prediction' or 'sample', or a (scaled_)linear beta_schedule"
            )

    # ------------------------------------------------------------------------------------------
    @property
    def vae_downsample_factor(self) -> int:
        return 2 ** (len(self.vae["block_out_channels"]) - 1) if self.latent_space == "vae" else 1

    @property
    def latent_channels(self) -> int:
        """Channels of the pressure latent the U-Net denoises."""
        return int(self.vae["latent_channels"]) if self.latent_space == "vae" else 1

    @property
    def latent_size(self) -> tuple[int, int]:
        factor = self.vae_downsample_factor
        return self.uv_size[0] // factor, self.uv_size[1] // factor

    @property
    def depth_channels(self) -> int:
        """Depth channels at latent resolution: encoded depth plus its validity."""
        return (self.latent_channels + 1) if self.use_depth else 0

    @property
    def geometry_channels(self) -> int:
        from egopress_core.conditioning import UV_GEOMETRY_CHANNELS

        return UV_GEOMETRY_CHANNELS if self.use_uv_geometry else 0

    @property
    def unet_in_channels(self) -> int:
        return self.latent_channels + self.depth_channels + self.geometry_channels

    @property
    def clip_num_tokens(self) -> int:
        if not self.clip_patch_tokens:
            return 1
        grid = int(self.clip["image_size"]) // int(self.clip["patch_size"])
        return 1 + grid * grid

    @property
    def num_condition_tokens(self) -> int:
        return self.num_image_tokens + (self.num_vertex_tokens if self.use_vertices else 0)

    # ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""

        def plain(value: Any) -> Any:
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return {item.name: plain(getattr(self, item.name)) for item in dataclasses.fields(self) if item.init}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EgoPressDiffConfig:
        known = {item.name for item in dataclasses.fields(cls) if item.init}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown EgoPressDiff config keys {unknown}")
        return cls(**values)

    def replace(self, **overrides: Any) -> EgoPressDiffConfig:
        """A validated copy with ``overrides`` applied (unknown keys raise ConfigError)."""
        values = self.to_dict()
        values.update(overrides)
        return type(self).from_dict(values)

    def architecture_differences(self, other: EgoPressDiffConfig) -> dict[str, tuple[Any, Any]]:
        """Keys (other than training-only ones) whose values differ: {key: (self, other)}."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {
            key: (mine[key], theirs[key])
            for key in mine
            if key not in TRAINING_ONLY_KEYS and mine[key] != theirs[key]
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temporary file, then rename)."""
        write_json_atomic(path, self.to_dict(), sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EgoPressDiffConfig:
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read EgoPressDiff config {path}: {error}") from error
        if not isinstance(values, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        return cls.from_dict(values)


# ----------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------


def tiny_config(**overrides: Any) -> EgoPressDiffConfig:
    """Real classes at toy size: a forward/backward takes well under a second on a CPU."""
    values: dict[str, Any] = dict(
        num_frames=4,
        image_size=(32, 32),
        uv_size=(16, 16),
        image_encoder_channels=(16, 32),
        num_image_tokens=4,
        vertex_hidden_dim=32,
        num_vertex_tokens=2,
        pose_net_channels=(8, 8, 16, 16),
        cross_attention_dim=32,
        unet_block_out_channels=(32, 64),
        unet_down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        unet_up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        unet_layers_per_block=1,
        unet_num_attention_heads=(2, 4),
        unet_addition_time_embed_dim=8,
        num_train_timesteps=100,
    )
    values.update(overrides)
    return EgoPressDiffConfig(**values)


def compact_config(**overrides: Any) -> EgoPressDiffConfig:
    """Trained from scratch on a CPU: pixel-space 32x32 UV maps, 64x64 images, T = 16."""
    return EgoPressDiffConfig(**overrides)


# Stable Video Diffusion (img2vid) U-Net, VAE and CLIP ViT-H/14 sizes, as in its model folder.
SVD_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=768,
    scaling_factor=0.18215,
)
SVD_CLIP = dict(
    hidden_size=1280,
    intermediate_size=5120,
    projection_dim=1024,
    num_hidden_layers=32,
    num_attention_heads=16,
    num_channels=3,
    image_size=224,
    patch_size=14,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)


def paper_config(**overrides: Any) -> EgoPressDiffConfig:
    """The paper's model: SVD-sized U-Net in the SVD VAE's latent space, CLIP image tokens.

    224x224 UV maps (EgoPressure's) -> 28x28x4 latents; 16-frame windows; cross-attention width
    1024 (CLIP ViT-H/14 projection). Image size 256x256 is our choice (the paper does not say).
    Load pretrained weights with :func:`~egopress_core.model.svd_transfer.from_pretrained_svd`.
    """
    values: dict[str, Any] = dict(
        num_frames=16,
        image_size=(256, 256),
        uv_size=(224, 224),
        latent_space="vae",
        vae=dict(SVD_VAE),
        image_encoder="clip",
        clip=dict(SVD_CLIP),
        clip_patch_tokens=True,
        num_image_tokens=1 + (224 // 14) ** 2,
        image_encoder_channels=(),
        vertex_hidden_dim=256,
        num_vertex_tokens=4,
        pose_net_channels=(16, 32, 96, 256),
        cross_attention_dim=1024,
        unet_block_out_channels=(320, 640, 1280, 1280),
        unet_down_block_types=(
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "DownBlockSpatioTemporal",
        ),
        unet_up_block_types=(
            "UpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
        ),
        unet_layers_per_block=2,
        unet_num_attention_heads=(5, 10, 20, 20),
        unet_addition_time_embed_dim=256,
        prediction_type="v_prediction",
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        condition_dropout_prob=0.1,
        modality_dropout_prob=0.0,
    )
    values.update(overrides)
    return EgoPressDiffConfig(**values)


PRESETS = {"tiny": tiny_config, "compact": compact_config, "paper": paper_config}


def preset_config(name: str, **overrides: Any) -> EgoPressDiffConfig:
    """The named preset with ``overrides`` applied."""
    if name not in PRESETS:
        raise ConfigError(f"model preset must be one of {list(PRESETS)}. Got {name!r}")
    return PRESETS[name](**overrides)
