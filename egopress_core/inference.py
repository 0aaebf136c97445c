"""Inference policies over a trained EgoPressDiff: live streaming and offline sequences.

- :class:`StreamingPressureEstimator` (live, one camera frame in, one UV map out): keeps the last
  T frames' encoded conditions, denoises the window ending at the newest frame and returns that
  frame's map. Each window is warm-started from the previous window's denoised latents, shifted
  by one frame and renoised to an intermediate timestep (``warm_start_strength``), so
  consecutive outputs agree and each new frame costs only a fraction of a full sampling run.
  Per-frame encoder outputs (image tokens, PoseNet features, depth latents, pooled vertex
  features) are cached: a frame is encoded once, not once per window it appears in.
- :func:`estimate_sequence` (offline, e.g. labelling a rosbag): covers a whole sequence with
  overlapping windows, so every frame gets context from both directions, and blends the
  overlaps with tent weights (window centres count most).
"""

from __future__ import annotations

from collections import deque
from typing import Any
from collections.abc import Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from egopress_core.conditioning import EgoPressConditions, build_conditions
from egopress_core.errors import ConfigError, DataError
from egopress_core.model.egopressdiff import SCHEDULERS, EgoPressDiff
from egopress_core.model.features import FrameFeatures


def shift_latents(latents: torch.Tensor, shift: int) -> torch.Tensor | None:
    """Move a window's latents ``shift`` frames earlier; new frames copy the last known one.

    Args:
        latents: (B, T, C, h, w) denoised latents of the previous window.
        shift: frames the window advanced (>= 0).

    Returns:
        (B, T, C, h, w) initial estimate for the next window, or None when the windows do not
        overlap (shift >= T).
    """
    frames = latents.shape[1]
    if shift >= frames:
        return None
    if shift == 0:
        return latents.clone()
    kept = latents[:, shift:]
    return torch.cat([kept, kept[:, -1:].expand(-1, shift, -1, -1, -1)], dim=1)


def _check_sampling_args(
    num_inference_steps: int, scheduler: str, guidance_scale: float, warm_start_strength: float | None
) -> None:
    if not isinstance(num_inference_steps, int) or num_inference_steps <= 0:
        raise ConfigError(f"num_inference_steps must be a positive integer; got {num_inference_steps!r}")
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"scheduler must be one of {list(SCHEDULERS)}. Got {scheduler!r}")
    if guidance_scale < 1.0:
        raise ConfigError(f"guidance_scale must be >= 1; got {guidance_scale}")
    if warm_start_strength is not None and not 0.0 < warm_start_strength <= 1.0:
        raise ConfigError(f"warm_start_strength must be in (0, 1]; got {warm_start_strength}")


def _tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, list, tuple, bool, int, float)):
        return torch.as_tensor(np.asarray(value))
    raise DataError(f"frame field {name!r} must be a tensor or array; got {type(value).__name__}")


class StreamingPressureEstimator:
    """Live policy: push one frame, get that frame's UV-pressure map (kPa).

    Args:
        model: a trained :class:`EgoPressDiff` (put in eval mode here).
        uv_mask: (Hu, Wu), (1, Hu, Wu) or (1, 1, Hu, Wu) hand mask of the model's UV layout.
        num_inference_steps: steps of a full sampling run (the first window).
        warm_start_strength: fraction of those steps re-run for each later window
            (``ceil``-free: ``round(steps * strength)``, at least 1).
        scheduler: "ddim", "dpmsolver++" or "euler".
        guidance_scale: classifier-free guidance weight.
        seed: seeds the noise; :meth:`reset` restarts the same noise stream.

    Frame fields (one camera frame, no batch/time axes): ``rgb`` (3, H, W) float in [0, 1]
    (uint8 is divided by 255), ``depth_m`` (H, W) or (1, H, W) metres, ``intrinsics`` (3, 3),
    ``joints`` (21, 3) and ``vertices`` (V, 3) metres camera frame, ``valid`` bool (a hand was
    tracked), optional ``uv_geometry`` (5, Hu, Wu).
    """

    def __init__(
        self,
        model: EgoPressDiff,
        uv_mask: torch.Tensor | np.ndarray,
        num_inference_steps: int = 20,
        warm_start_strength: float = 0.4,
        scheduler: str = "ddim",
        guidance_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        _check_sampling_args(num_inference_steps, scheduler, guidance_scale, warm_start_strength)
        self.model = model.eval()
        mask = _tensor(uv_mask, "uv_mask").float()
        while mask.ndim < 4:
            mask = mask[None]
        if tuple(mask.shape) != (1, 1, *model.config.uv_size):
            raise DataError(
                f"uv_mask must be {tuple(model.config.uv_size)} for this model; got {tuple(mask.shape)}"
            )
        self.uv_mask = mask.to(model.device)
        self.num_inference_steps = num_inference_steps
        self.warm_start_strength = float(warm_start_strength)
        self.scheduler = scheduler
        self.guidance_scale = float(guidance_scale)
        self.seed = int(seed)
        self.reset()

    @property
    def window_length(self) -> int:
        return self.model.config.num_frames

    @property
    def warm_steps(self) -> int:
        """Sampler steps each warm-started window runs."""
        return max(
            1, min(self.num_inference_steps, int(round(self.num_inference_steps * self.warm_start_strength)))
        )

    def reset(self) -> None:
        """Forget all frames (new sequence); the noise stream restarts from ``seed``."""
        self._frames: deque[FrameFeatures] = deque(maxlen=self.window_length)
        self._latents: torch.Tensor | None = None
        self._reference_depth: float | None = None
        self._generator = torch.Generator().manual_seed(self.seed)
        self.frames_seen = 0

    def _frame_batch(self, frame: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        required = ("rgb", "depth_m", "intrinsics", "joints", "vertices", "valid")
        missing = [key for key in required if key not in frame]
        if missing:
            raise DataError(f"frame is missing {missing}")
        rgb = _tensor(frame["rgb"], "rgb")
        rgb = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
        depth = _tensor(frame["depth_m"], "depth_m").float()
        if depth.ndim == 2:
            depth = depth[None]
        batch = {
            "rgb": rgb[None, None],
            "depth_m": depth[None, None],
            "intrinsics": _tensor(frame["intrinsics"], "intrinsics").float()[None, None],
            "joints": _tensor(frame["joints"], "joints").float()[None, None],
            "vertices": _tensor(frame["vertices"], "vertices").float()[None, None],
            "valid": _tensor(frame["valid"], "valid").to(torch.bool).reshape(1, 1),
            "uv_mask": self.uv_mask.cpu(),
        }
        if "uv_geometry" in frame and frame["uv_geometry"] is not None:
            batch["uv_geometry"] = _tensor(frame["uv_geometry"], "uv_geometry").float()[None, None]
        return batch

    @torch.no_grad()
    def push(self, frame: Mapping[str, Any]) -> torch.Tensor:
        """Add the newest camera frame and estimate its pressure.

        Returns:
            (1, Hu, Wu) kPa on the model's device, >= 0, zero outside the UV mask.
        """
        model, config = self.model, self.model.config
        # 1. Conditions of this frame; depth is normalised around the latest known hand depth.
        batch = self._frame_batch(frame)
        valid = bool(batch["valid"])
        if valid and bool(torch.isfinite(batch["joints"]).all()):
            self._reference_depth = float(batch["joints"][..., 2].median())
        reference = None if self._reference_depth is None else torch.full((1, 1), self._reference_depth)
        conditions = build_conditions(
            batch,
            pose_sigma_px=config.pose_sigma_px,
            depth_clip_m=config.depth_clip_m,
            reference_depth_m=reference,
        )
        conditions = model.check_conditions(conditions, check_window=False)

        # 2. Per-frame encoders run once per frame; the window reuses the cache.
        self._frames.append(model.encode_frames(conditions))
        self.frames_seen += 1
        window = FrameFeatures.cat(list(self._frames))
        if window.num_frames < self.window_length:
            # Until T frames have arrived, the first frame stands in for the missing past.
            pad = self.window_length - window.num_frames
            index = torch.cat([torch.zeros(pad, dtype=torch.long), torch.arange(window.num_frames)])
            window = window.frames(index.to(window.image_tokens.device))
        features = model.encode_window(window)

        # 3. Warm start from the previous window shifted by one frame, or a full run.
        init = None if self._latents is None else shift_latents(self._latents, 1)
        latents = model.denoise(
            features,
            num_inference_steps=self.num_inference_steps,
            scheduler=self.scheduler,
            guidance_scale=self.guidance_scale,
            generator=self._generator,
            init_latents=init,
            strength=1.0 if init is None else self.warm_start_strength,
        )
        self._latents = latents

        # 4. Decode only the newest frame.
        return model.decode_latents(latents[:, -1:], self.uv_mask)[0, 0]


@torch.no_grad()
def estimate_sequence(
    model: EgoPressDiff,
    conditions: EgoPressConditions,
    stride: int | None = None,
    num_inference_steps: int = 25,
    scheduler: str = "ddim",
    guidance_scale: float = 1.0,
    seed: int = 0,
    warm_start_strength: float | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """UV pressure for every frame of whole sequences, from overlapping windows.

    Windows of T = ``config.num_frames`` frames start every ``stride`` frames (the last one ends
    at the last frame); each frame's estimate is the tent-weighted mean of the windows covering
    it. Sequences shorter than T are padded with their last frame. Per-frame encoders run once
    per frame.

    Args:
        model: trained EgoPressDiff.
        conditions: B sequences of N frames (any N >= 1).
        stride: window step, 1..T; default T // 2.
        num_inference_steps, scheduler, guidance_scale: as :meth:`EgoPressDiff.denoise`.
        seed: seeds the noise of the whole run.
        warm_start_strength: if set, each window after the first starts from the previous one's
            latents shifted by ``stride`` (renoised to this strength) instead of pure noise.
        progress: tqdm bar over windows.

    Returns:
        (B, N, 1, Hu, Wu) kPa, >= 0, zero outside the UV mask.
    """
    _check_sampling_args(num_inference_steps, scheduler, guidance_scale, warm_start_strength)
    window = model.config.num_frames
    stride = window // 2 if stride is None else stride
    if not isinstance(stride, int) or not 1 <= stride <= window:
        raise ConfigError(f"stride must be an integer in 1..{window}; got {stride!r}")
    conditions = model.check_conditions(conditions, check_window=False)
    model.eval()
    frames = conditions.num_frames
    device = model.device

    # 1. Per-frame features for the whole sequence, in window-sized chunks (bounded memory).
    encoded = FrameFeatures.cat(
        [
            model.encode_frames(conditions.window(start, min(start + window, frames)))
            for start in range(0, frames, window)
        ]
    )
    index = torch.arange(frames)
    if frames < window:
        index = torch.cat([index, torch.full((window - frames,), frames - 1)])
    last_start = len(index) - window
    starts = list(range(0, last_start + 1, stride))
    if starts[-1] != last_start:
        starts.append(last_start)

    # 2. Denoise each window; accumulate tent-weighted maps.
    tent = torch.minimum(torch.arange(1, window + 1), torch.arange(window, 0, -1)).float().to(device)
    total = torch.zeros(conditions.batch_size, frames, 1, *model.config.uv_size, device=device)
    weight = torch.zeros(frames, device=device)
    generator = torch.Generator().manual_seed(seed)
    previous: torch.Tensor | None = None
    previous_start = 0
    for start in tqdm(starts, desc="windows", disable=not progress):
        frame_index = index[start : start + window]
        features = model.encode_window(encoded.frames(frame_index.to(encoded.image_tokens.device)))
        init = None
        if warm_start_strength is not None and previous is not None:
            init = shift_latents(previous, start - previous_start)
        latents = model.denoise(
            features,
            num_inference_steps,
            scheduler,
            guidance_scale,
            generator,
            init_latents=init,
            strength=1.0 if init is None else warm_start_strength,
        )
        previous, previous_start = latents, start
        pressure = model.decode_latents(latents, features.uv_mask).to(device)
        target = frame_index.to(device)
        total.index_add_(1, target, pressure * tent[None, :, None, None, None])
        weight.index_add_(0, target, tent)
    return total / weight[None, :, None, None, None]
