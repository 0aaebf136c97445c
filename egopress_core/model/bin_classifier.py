"""PressureVision-style discrete baseline: a per-frame encoder-decoder that classifies every UV
texel into 9 pressure bins.

PressureVision (Grady et al., 2022) and PressureVision++ estimate pressure per frame, independent
of its neighbours in time, as one of the classes [0, 0.5, 1, 2, 4, 8, 16, 32, 64] kPa (bin edges)
and decode a class to its bin centre (0, 0.75, 1.5, 3, 6, 12, 24, 48, 80 kPa). This model is that
estimator on EgoPressDiff's inputs, one frame at a time: RGB, depth, rendered skeleton maps and
the hand's vertices in (and, with ``use_uv_geometry``, the same UV-aligned evidence EgoPressDiff
can take), a UV map of class logits out. Trained with a soft cross-entropy: the
target puts Gaussian mass on the ordinal bins around the true pressure's (continuous) bin
position, so neighbouring classes are penalised less than distant ones.

The interface matches :class:`~egopress_core.model.EgoPressDiff` where the training loop,
validation and evaluation use it: ``build_conditions``, ``compute_loss``, ``sample`` (kPa, with
the sampler arguments accepted and unused: the classifier is deterministic and takes one step),
``save_pretrained`` / ``from_pretrained`` / ``load_config``; its config has the same
``replace`` / ``architecture_differences`` / ``to_dict``. Presets ``tiny`` and ``compact``
(:data:`PRESETS`) take the data layout of the EgoPressDiff preset of the same name (window length,
image and UV sizes, conditioning), so the two train on identical windows.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from egopress_core.conditioning import (
    NUM_POSE_CHANNELS,
    UV_GEOMETRY_CHANNELS,
    EgoPressConditions,
    PressureNormalizer,
    build_conditions,
)
from egopress_core.errors import ConfigError, DataError
from egopress_core.metrics import PRESSURE_BIN_CENTRES_KPA
from egopress_core.model.checkpoint import (
    config_from_document,
    load_bin_classifier,
    read_bin_classifier_document,
    save_bin_classifier,
)
from egopress_core.model.config import EgoPressDiffConfig
from egopress_core.model.egopressdiff import LossOutput
from egopress_core.model.vertex_encoder import normalize_vertices

NUM_BINS = len(PRESSURE_BIN_CENTRES_KPA)
# Keys that change training, not the network: a checkpoint may be fine-tuned or resumed with others.
TRAINING_ONLY_KEYS = frozenset({"soft_label_sigma_bins", "pressure_loss_weight"})
# How class probabilities become kPa (BinClassifierConfig.readout): PressureVision's most likely
# bin, or contact where the pressure bins together are more likely than the zero bin, at the
# probability-weighted mean of their centres (``docs/design.md``, "Metrics").
READOUTS = ("argmax", "contact_probability")
# Keys that change how the logits are read, not the network or its training.
READOUT_KEYS = frozenset({"readout"})


@dataclass
class BinClassifierConfig:
    """Sizes of the per-frame baseline; the defaults are the ``compact`` preset.

    num_frames: window length of the batches it is trained and evaluated on (frames are
        processed independently; kept so windows are checked like EgoPressDiff's).
    image_size, uv_size, uv_layout: as in :class:`~egopress_core.model.EgoPressDiffConfig`.
    pose_sigma_px, depth_clip_m: conditioning, as in EgoPressDiff.
    encoder_channels: widths of the stride-2 conv stages over the stacked image inputs.
    vertex_hidden_dim: width of the per-frame PointNet over vertices.
    decoder_channels: widths of the upsampling stages from a 4x4 UV seed to ``uv_size``.
    soft_label_sigma_bins: std of the Gaussian soft label, in bins.
    pressure_loss_weight: extra loss weight on texels in proportion to their target pressure,
        defined exactly as EgoPressDiff's (``w_p`` times the pressure on EgoPressDiff's default
        logarithmic scale: 0 at no contact, 1 at 200 kPa), so the two can be trained with the
        same weighting; 0 is the plain soft cross-entropy.
    use_uv_geometry: also take the frame's UV-aligned geometry (``conditions.uv_geometry``,
        :func:`~egopress_core.conditioning.uv_geometry_from_mesh`), fused at full UV resolution
        before the head; the baseline for an EgoPressDiff trained with it.
    readout: how a texel's class probabilities become kPa, one of :data:`READOUTS`:
        ``argmax``, the most likely bin's centre (PressureVision's), or
        ``contact_probability``, contact where the eight pressure bins together outweigh the
        zero bin (probability > 0.5), at the mean of their centres weighted by their
        probabilities. Not part of the architecture: a trained checkpoint reads either way.
    """

    num_frames: int = 16
    image_size: tuple[int, int] = (64, 64)
    uv_size: tuple[int, int] = (32, 32)
    uv_layout: str = "egopress_hand"
    pose_sigma_px: float = 1.5
    depth_clip_m: float = 0.15
    # Sized so the compact baseline has a parameter budget comparable to compact EgoPressDiff's
    # (5.8 M vs 8.8 M trainable), not a handicapped straw man.
    encoder_channels: tuple[int, ...] = (64, 128, 256, 512)
    vertex_hidden_dim: int = 256
    decoder_channels: tuple[int, ...] = (256, 128, 64)
    soft_label_sigma_bins: float = 0.5
    pressure_loss_weight: float = 0.0
    use_uv_geometry: bool = False
    readout: str = "argmax"

    def __post_init__(self) -> None:
        self.image_size = tuple(self.image_size)
        self.uv_size = tuple(self.uv_size)
        self.encoder_channels = tuple(self.encoder_channels)
        self.decoder_channels = tuple(self.decoder_channels)
        for name in ("num_frames", "vertex_hidden_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        for name in ("image_size", "uv_size", "encoder_channels", "decoder_channels"):
            value = getattr(self, name)
            if not value or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value):
                raise ConfigError(f"{name} must be positive integers; got {value!r}")
        if len(self.image_size) != 2 or len(self.uv_size) != 2:
            raise ConfigError(f"image_size and uv_size must be (height, width); got {self.image_size}, {self.uv_size}")
        seed = 4 * 2 ** len(self.decoder_channels)
        if self.uv_size != (seed, seed):
            raise ConfigError(
                f"uv_size must be ({seed}, {seed}) for {len(self.decoder_channels)} decoder stages "
                f"(a 4x4 seed doubled per stage); got {self.uv_size}"
            )
        for name in ("pose_sigma_px", "depth_clip_m", "soft_label_sigma_bins"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name} must be > 0; got {value!r}")
        if not isinstance(self.use_uv_geometry, bool):
            raise ConfigError(f"use_uv_geometry must be a bool; got {self.use_uv_geometry!r}")
        if self.readout not in READOUTS:
            raise ConfigError(f"BinClassifierConfig.readout must be one of {READOUTS}. Got {self.readout!r}")
        weight = self.pressure_loss_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise ConfigError(f"pressure_loss_weight must be a finite number >= 0; got {weight!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "BinClassifierConfig":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown BinClassifierConfig keys {sorted(unknown)}")
        return cls(**values)

    def replace(self, **overrides: Any) -> "BinClassifierConfig":
        """A validated copy with ``overrides`` applied (unknown keys raise ConfigError)."""
        return type(self).from_dict({**self.to_dict(), **overrides})

    def architecture_differences(self, other: "BinClassifierConfig") -> dict[str, tuple[Any, Any]]:
        """Keys (other than training-only and readout ones) whose values differ: {key: (self, other)}."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {key: (mine[key], theirs[key]) for key in mine
                if key not in TRAINING_ONLY_KEYS | READOUT_KEYS and mine[key] != theirs[key]}


def _data_layout(preset: str) -> dict[str, Any]:
    """Window length, image / UV sizes and conditioning of the EgoPressDiff preset ``preset``."""
    from egopress_core.model.config import preset_config

    diffusion = preset_config(preset)
    return dict(num_frames=diffusion.num_frames, image_size=diffusion.image_size, uv_size=diffusion.uv_size,
                pose_sigma_px=diffusion.pose_sigma_px, depth_clip_m=diffusion.depth_clip_m)


def tiny_bin_classifier_config(**overrides: Any) -> BinClassifierConfig:
    """Toy size for tests and ``--quick`` runs: T = 4, 32x32 images, 16x16 UV maps."""
    values: dict[str, Any] = dict(_data_layout("tiny"), encoder_channels=(16, 32), vertex_hidden_dim=32,
                                  decoder_channels=(32, 16))
    values.update(overrides)
    return BinClassifierConfig.from_dict(values)


def compact_bin_classifier_config(**overrides: Any) -> BinClassifierConfig:
    """The baseline of compact EgoPressDiff: T = 16, 64x64 images, 32x32 UV maps."""
    values: dict[str, Any] = dict(_data_layout("compact"))
    values.update(overrides)
    return BinClassifierConfig.from_dict(values)


PRESETS = {"tiny": tiny_bin_classifier_config, "compact": compact_bin_classifier_config}


def preset_config(name: str, **overrides: Any) -> BinClassifierConfig:
    """The baseline preset ``name`` with ``overrides`` (BinClassifierConfig keys) applied."""
    if name not in PRESETS:
        raise ConfigError(f"baseline preset must be one of {list(PRESETS)}. Got {name!r}")
    return PRESETS[name](**overrides)


def soft_bin_targets(pressure_kpa: torch.Tensor, sigma_bins: float) -> torch.Tensor:
    """(...,) kPa -> (..., 9) soft class distribution.

    The continuous bin position interpolates linearly between bin centres (so 0.75 kPa sits on
    class 1, 1.125 kPa halfway between classes 1 and 2); the target is a Gaussian over class
    indices around it, normalised.
    """
    centres = torch.tensor(PRESSURE_BIN_CENTRES_KPA, dtype=pressure_kpa.dtype, device=pressure_kpa.device)
    clamped = pressure_kpa.clamp(0.0, float(centres[-1]))
    upper = torch.bucketize(clamped, centres).clamp(1, NUM_BINS - 1)
    low_centre, high_centre = centres[upper - 1], centres[upper]
    position = (upper - 1).to(pressure_kpa.dtype) + (clamped - low_centre) / (high_centre - low_centre)
    classes = torch.arange(NUM_BINS, dtype=pressure_kpa.dtype, device=pressure_kpa.device)
    logits = -0.5 * ((classes - position[..., None]) / sigma_bins) ** 2
    return logits.softmax(dim=-1)


def _conv_block(width_in: int, width_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(width_in, width_out, 3, stride=stride, padding=1),
        nn.GroupNorm(math.gcd(8, width_out), width_out),
        nn.SiLU(),
    )


class PerFrameBinClassifier(nn.Module):
    """The discrete per-frame baseline (see the module docstring).

    Args:
        config: a validated :class:`BinClassifierConfig`.
    """

    def __init__(self, config: BinClassifierConfig) -> None:
        super().__init__()
        if not isinstance(config, BinClassifierConfig):
            raise ConfigError(f"config must be a BinClassifierConfig; got {type(config).__name__}")
        self.config = config
        in_channels = 3 + 2 + NUM_POSE_CHANNELS
        stages, width = [], in_channels
        for channels in config.encoder_channels:
            stages.append(_conv_block(width, channels, stride=2))
            width = channels
        self.encoder = nn.Sequential(*stages)
        hidden = config.vertex_hidden_dim
        self.vertex_mlp = nn.Sequential(
            nn.Linear(3, hidden), nn.LayerNorm(hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.SiLU(),
        )
        seed_channels = config.decoder_channels[0]
        # Image space and UV space are not aligned: the pooled frame code is mapped to a UV seed
        # by a dense layer, and a learned UV embedding tells the decoder which texel is which.
        self.to_seed = nn.Linear(width + hidden, seed_channels * 16)
        self.uv_embedding = nn.Parameter(torch.zeros(1, seed_channels, 4, 4))
        decoder, width = [], seed_channels
        for channels in config.decoder_channels:
            decoder += [nn.Upsample(scale_factor=2, mode="nearest"), _conv_block(width, channels, stride=1)]
            width = channels
        self.decoder = nn.Sequential(*decoder)
        # UV geometry is already laid out like the output: concatenated at full resolution.
        self.geometry_fusion = (_conv_block(width + UV_GEOMETRY_CHANNELS, width, stride=1)
                                if config.use_uv_geometry else None)
        self.head = nn.Conv2d(width, NUM_BINS, 3, padding=1)
        self.register_buffer("bin_centres", torch.tensor(PRESSURE_BIN_CENTRES_KPA), persistent=False)
        # The pressure term of the loss weight on EgoPressDiff's default scale (see the config).
        defaults = EgoPressDiffConfig()
        self._weight_scale = PressureNormalizer(defaults.pressure_reference_kpa, defaults.pressure_max_kpa)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def build_conditions(self, batch: Mapping[str, torch.Tensor], check_window: bool = True) -> EgoPressConditions:
        """Window batch -> conditions, exactly as EgoPressDiff builds them; ``check_window=False``
        accepts any number of frames (whole sequences: frames are processed independently)."""
        conditions = build_conditions(batch, self.config.pose_sigma_px, self.config.depth_clip_m).to(self.device)
        if self.config.use_uv_geometry and conditions.uv_geometry is None:
            raise DataError("the model uses UV geometry (use_uv_geometry=True) but the batch has no uv_geometry")
        if check_window and conditions.num_frames != self.config.num_frames:
            raise DataError(
                f"window has {conditions.num_frames} frames but the model was built for num_frames={self.config.num_frames}"
            )
        if conditions.image_size != self.config.image_size or conditions.uv_size != self.config.uv_size:
            raise DataError(
                f"batch has images {conditions.image_size} and UV maps {conditions.uv_size}; the model was "
                f"built for {self.config.image_size} and {self.config.uv_size}"
            )
        return conditions

    def forward(self, conditions: EgoPressConditions) -> torch.Tensor:
        """Class logits of every frame.

        Args:
            conditions: B windows of T frames.
        Returns:
            (B, T, 9, Hu, Wu) logits.
        """
        batch, frames = conditions.batch_size, conditions.num_frames
        # 1. Stack the per-frame image inputs and encode them.
        images = torch.cat([conditions.rgb, conditions.depth, conditions.pose_maps], dim=2).flatten(0, 1)
        image_code = self.encoder(images).mean(dim=(2, 3))  # (B*T, C)
        # 2. PointNet over the frame's normalised vertices (zero on frames without a hand).
        vertices = normalize_vertices(conditions.vertices)
        vertex_code = self.vertex_mlp(vertices).amax(dim=2).flatten(0, 1)  # (B*T, D)
        vertex_code = vertex_code * conditions.frame_valid.flatten()[:, None].to(vertex_code.dtype)
        # 3. Decode a UV map of features.
        seed = self.to_seed(torch.cat([image_code, vertex_code], dim=1)).view(batch * frames, -1, 4, 4)
        decoded = self.decoder(seed + self.uv_embedding)
        # 4. Fuse the UV-aligned geometry, if used, and classify each texel.
        if self.geometry_fusion is not None:
            decoded = self.geometry_fusion(torch.cat([decoded, conditions.uv_geometry.flatten(0, 1)], dim=1))
        logits = self.head(decoded)
        return logits.view(batch, frames, NUM_BINS, *self.config.uv_size)

    def compute_loss(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | int | None = None) -> LossOutput:
        """Soft cross-entropy over the annotated frames, each texel weighted like EgoPressDiff's
        loss: ``1 + M_uv + w_p * unit(pressure)`` (:meth:`loss_weight`). ``generator`` is unused
        (the loss is deterministic)."""
        conditions = self.build_conditions(batch)
        pressure = batch["uv_pressure_kpa"].to(self.device).float()[:, :, 0]  # (B, T, Hu, Wu)
        valid = conditions.frame_valid
        if not bool(torch.isfinite(pressure[valid]).all()):
            raise DataError("uv_pressure_kpa contains NaN or infinite values on frames marked valid")
        pressure = torch.where(valid[:, :, None, None], pressure, torch.zeros_like(pressure))
        logits = self(conditions)
        targets = soft_bin_targets(pressure, self.config.soft_label_sigma_bins).movedim(-1, 2)
        cross_entropy = -(targets * F.log_softmax(logits, dim=2)).sum(dim=2)  # (B, T, Hu, Wu)
        weight = self.loss_weight(pressure, conditions.uv_mask)  # (B, T or 1, Hu, Wu)
        frame_weight = valid.to(cross_entropy.dtype)
        per_frame = (cross_entropy * weight).mean(dim=(2, 3))
        loss = (per_frame * frame_weight).sum() / frame_weight.sum().clamp_min(1.0)
        with torch.no_grad():
            decoded = self._decode(logits, conditions.uv_mask)
            mse = ((decoded - pressure).square().mean(dim=(2, 3)) * frame_weight).sum() / frame_weight.sum().clamp_min(1.0)
        return LossOutput(loss=loss, mse=mse, timesteps=torch.zeros(conditions.batch_size, dtype=torch.long))

    def loss_weight(self, pressure_kpa: torch.Tensor, uv_mask: torch.Tensor) -> torch.Tensor:
        """Per-texel loss weight ``1 + M_uv + w_p * unit(p)``.

        Args:
            pressure_kpa: (B, T, Hu, Wu) target pressure.
            uv_mask: (B, 1, Hu, Wu) hand mask.

        Returns:
            (B, 1, Hu, Wu) without a pressure term, else (B, T, Hu, Wu).
        """
        weight = 1.0 + uv_mask
        if self.config.pressure_loss_weight > 0:
            unit = (self._weight_scale.encode(pressure_kpa * (uv_mask > 0.5)) + 1.0) * 0.5
            weight = weight + self.config.pressure_loss_weight * unit
        return weight

    def _decode(self, logits: torch.Tensor, uv_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, K, Hu, Wu) logits -> (B, T, Hu, Wu) kPa by ``config.readout``, zero off the mask."""
        if self.config.readout == "argmax":
            pressure = self.bin_centres[logits.argmax(dim=2)]
        else:
            probabilities = logits.float().softmax(dim=2)
            contact = 1.0 - probabilities[:, :, 0]  # bin 0 is "no pressure" (centre 0 kPa)
            weighted = torch.einsum("btkhw,k->bthw", probabilities[:, :, 1:], self.bin_centres[1:].float())
            pressure = torch.where(contact > 0.5, weighted / contact.clamp_min(1e-6), torch.zeros_like(contact))
        return pressure * (uv_mask > 0.5).to(pressure.dtype)

    @torch.no_grad()
    def sample(self, conditions: EgoPressConditions, num_inference_steps: int = 1, scheduler: str = "ddim",
               guidance_scale: float = 1.0, generator: torch.Generator | int | None = None,
               init_latents: torch.Tensor | None = None, strength: float = 1.0, progress: bool = False) -> torch.Tensor:
        """UV pressure of B windows: (B, T, 1, Hu, Wu) kPa, bin centres, zero off the hand mask.

        The diffusion sampler's arguments are accepted so the model drops into the same
        evaluation code, and have no effect.
        """
        conditions = conditions.validate().to(self.device)
        return self._decode(self(conditions), conditions.uv_mask)[:, :, None]

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` atomically (:mod:`~egopress_core.model.checkpoint`)."""
        save_bin_classifier(self, directory)

    @classmethod
    def load_config(cls, directory: str | os.PathLike) -> BinClassifierConfig:
        """Read a checkpoint's config, raising :class:`~egopress_core.errors.CheckpointError` for anything
        unreadable."""
        return config_from_document(directory, read_bin_classifier_document(directory), BinClassifierConfig)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, expected_config: BinClassifierConfig | None = None,
                        expected_uv_layout: str | None = None,
                        map_location: str | torch.device = "cpu") -> "PerFrameBinClassifier":
        """Load a checkpoint written by :meth:`save_pretrained`.

        Args:
            directory: checkpoint folder.
            expected_config: if given, every architecture key must match (training-only keys such
                as ``soft_label_sigma_bins`` may differ).
            expected_uv_layout: if given, the checkpoint's ``uv_layout`` must equal it.
            map_location: device for the weights.

        Raises:
            CheckpointError: missing or unreadable files, another config or UV layout, weights of
                other shapes.
        """
        return load_bin_classifier(cls, directory, expected_config=expected_config,
                                   expected_uv_layout=expected_uv_layout, map_location=map_location)
