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
  overlaps with tent weights (window centres count most). Independent windows can be denoised
  several at a time (``window_batch_size``), which fills an accelerator better.

Both take the speed options of :mod:`egopress_core.runtime` (autocast precision, channels-last,
``torch.compile``; ``benchmarks/speed.md`` says what they buy). These are the model-level
policies; :class:`~egopress_core.pipeline.EgoPressPipeline` holds them with the hand, atlas and
preprocessing, and is what applications use.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any
from collections.abc import Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from egopress_core.conditioning import EgoPressConditions, build_conditions
from egopress_core.errors import ConfigError, DataError
from egopress_core.model.egopressdiff import EgoPressDiff
from egopress_core.model.features import FrameFeatures
from egopress_core.options import LIVE_SAMPLING, OFFLINE_SAMPLING, SamplingOptions
from egopress_core.runtime import autocast_context, check_precision, prepare_model_for_inference

def _cat_conditions(parts: list[EgoPressConditions]) -> EgoPressConditions:
    """Concatenate single-frame conditions along T (``uv_mask`` is shared)."""
    first = parts[0]
    return replace(
        first,
        **{
            item.name: torch.cat([getattr(part, item.name) for part in parts], dim=1)
            for item in fields(first)
            if item.name != "uv_mask" and getattr(first, item.name) is not None
        },
    )


@dataclass(eq=False)
class _WindowFrame:
    """A frame in the live window: its inputs until its first pass, then its encoded features.

    Attributes:
        batch: the frame's (1, 1, ...) inputs on the model's device (None once encoded).
        reference_depth_m: hand depth its depth map is normalised around (the latest known when
            it arrived).
        conditions: built by its first pass (kept only without the feature cache).
        features: its per-frame features (with the cache), reused by every later window.
    """

    batch: dict[str, torch.Tensor] | None
    reference_depth_m: float | None
    conditions: EgoPressConditions | None = None
    features: FrameFeatures | None = None


class _StageTimer:
    """Wall time of consecutive stages; synchronises CUDA so each stage is charged its own work."""

    def __init__(self, device: torch.device, enabled: bool) -> None:
        self.enabled = enabled
        self.device = device
        self.timings: dict[str, float] = {}
        self._last = self._now() if enabled else 0.0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.enabled:
            now = self._now()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self._last
            self._last = now


def _frame_batch(frame: Mapping[str, Any], uv_mask: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """One camera frame (see :class:`StreamingPressureEstimator`) as a (1, 1, ...) batch on ``device``."""
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
        "uv_mask": uv_mask,
    }
    if "uv_geometry" in frame and frame["uv_geometry"] is not None:
        batch["uv_geometry"] = _tensor(frame["uv_geometry"], "uv_geometry").float()[None, None]
    # Conditions are built where the model runs: on a GPU the pose maps (20 bone maps per
    # frame) cost a few kernels instead of milliseconds of CPU time.
    return {key: value.to(device) for key, value in batch.items()}


def _model_uv_mask(uv_mask: torch.Tensor | np.ndarray, model) -> torch.Tensor:
    """(Hu, Wu), (1, Hu, Wu) or (1, 1, Hu, Wu) mask -> (1, 1, Hu, Wu) float on the model's device."""
    mask = _tensor(uv_mask, "uv_mask").float()
    while mask.ndim < 4:
        mask = mask[None]
    if tuple(mask.shape) != (1, 1, *model.config.uv_size):
        raise DataError(f"uv_mask must be {tuple(model.config.uv_size)} for this model; got {tuple(mask.shape)}")
    return mask.to(model.device)


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
    """Validated by :class:`~egopress_core.options.SamplingOptions`, the one place sampler options are
    checked (ConfigError naming the field)."""
    SamplingOptions(scheduler=scheduler, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                    warm_start_strength=warm_start_strength)


def _tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, list, tuple, bool, int, float)):
        return torch.as_tensor(np.asarray(value))
    raise DataError(f"frame field {name!r} must be a tensor or array; got {type(value).__name__}")


class StreamingPressureEstimator:
    """Live policy: push one frame, get that frame's UV-pressure map (kPa).

    The sampling defaults are :data:`~egopress_core.options.LIVE_SAMPLING` (DPM-Solver++, 4 steps,
    warm-start strength 0.25: one U-Net pass per frame), which ``benchmarks/speed.md`` found within
    2% of the full-step reference's Volumetric IoU.

    Args:
        model: a trained :class:`EgoPressDiff` (put in eval mode here).
        uv_mask: (Hu, Wu), (1, Hu, Wu) or (1, 1, Hu, Wu) hand mask of the model's UV layout.
        num_inference_steps: steps of a full sampling run (the first window, and every window
            without warm start).
        warm_start_strength: fraction of those steps re-run for each later window
            (``round(steps * strength)``, at least 1), starting from the previous window's
            latents shifted by one frame and renoised to that point of the schedule (SDEdit
            style). None: every window is a full run from noise.
        scheduler: "ddim", "dpmsolver++" or "euler".
        guidance_scale: classifier-free guidance weight.
        seed: seeds the noise; :meth:`reset` restarts the same noise stream.
        cache_frame_features: encode each frame once and reuse its features in the T windows it
            belongs to (False re-encodes the whole window every frame; same results, for
            comparison).
        precision: "fp32", "fp16" or "bf16" autocast of encoders and U-Net
            (:func:`check_precision` says where each is allowed).
        channels_last, compile, compile_options: :func:`prepare_model_for_inference` options
            (they change ``model`` in place).
        record_timings: time the stages of every :meth:`push` into :attr:`last_timings`
            (seconds; "conditions", "encode_frames", "encode_window", "denoise", "decode"). On
            CUDA this synchronises after each stage, which costs a little overlap.

    Frame fields (one camera frame, no batch/time axes): ``rgb`` (3, H, W) float in [0, 1]
    (uint8 is divided by 255), ``depth_m`` (H, W) or (1, H, W) metres, ``intrinsics`` (3, 3),
    ``joints`` (21, 3) and ``vertices`` (V, 3) metres camera frame, ``valid`` bool (a hand was
    tracked), optional ``uv_geometry`` (5, Hu, Wu).
    """

    def __init__(
        self,
        model: EgoPressDiff,
        uv_mask: torch.Tensor | np.ndarray,
        num_inference_steps: int = LIVE_SAMPLING.num_inference_steps,
        warm_start_strength: float | None = LIVE_SAMPLING.warm_start_strength,
        scheduler: str = LIVE_SAMPLING.scheduler,
        guidance_scale: float = LIVE_SAMPLING.guidance_scale,
        seed: int = LIVE_SAMPLING.seed,
        cache_frame_features: bool = True,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        compile_options: Mapping[str, Any] | None = None,
        record_timings: bool = False,
    ) -> None:
        _check_sampling_args(num_inference_steps, scheduler, guidance_scale, warm_start_strength)
        check_precision(precision, model.device)
        self.model = prepare_model_for_inference(model, channels_last, compile, compile_options)
        self.uv_mask = _model_uv_mask(uv_mask, model)
        self.num_inference_steps = num_inference_steps
        self.warm_start_strength = None if warm_start_strength is None else float(warm_start_strength)
        self.scheduler = scheduler
        self.guidance_scale = float(guidance_scale)
        self.seed = int(seed)
        self.cache_frame_features = bool(cache_frame_features)
        self.precision = precision
        self.record_timings = bool(record_timings)
        self.last_timings: dict[str, float] = {}
        # add() (camera rate) and denoise() (whenever the model is free) may run on two threads.
        self._lock = threading.Lock()
        self._epoch = 0
        self.reset()

    @property
    def window_length(self) -> int:
        return self.model.config.num_frames

    @property
    def warm_steps(self) -> int:
        """Sampler steps each warm-started window runs (all of them without warm start)."""
        if self.warm_start_strength is None:
            return self.num_inference_steps
        return max(
            1, min(self.num_inference_steps, int(round(self.num_inference_steps * self.warm_start_strength)))
        )

    def reset(self) -> None:
        """Forget all frames (new sequence); the noise stream restarts from ``seed``."""
        with self._lock:
            self._forget()

    def _forget(self) -> None:
        self._epoch += 1  # a pass running across a reset must not write into the new window
        self._frames: deque[_WindowFrame] = deque(maxlen=self.window_length)
        self._latents: torch.Tensor | None = None
        self._reference_depth: float | None = None
        self._generator = torch.Generator().manual_seed(self.seed)
        self.frames_seen = 0
        self.pending = 0  # frames added since the last denoising pass
        self.last_timings = {}

    def _padded_index(self, available: int) -> torch.Tensor:
        """(T,) frame index of the window: until T frames have arrived, the first frame stands in
        for the missing past."""
        pad = self.window_length - available
        return torch.cat([torch.zeros(pad, dtype=torch.long), torch.arange(available)])

    def _conditions(self, frame: "_WindowFrame", timer: "_StageTimer") -> EgoPressConditions:
        """The frame's conditions, built on its first pass; depth is normalised around the hand
        depth known when the frame arrived."""
        if frame.conditions is None:
            config = self.model.config
            reference = None if frame.reference_depth_m is None else torch.full((1, 1), frame.reference_depth_m)
            conditions = build_conditions(frame.batch, pose_sigma_px=config.pose_sigma_px,
                                          depth_clip_m=config.depth_clip_m, reference_depth_m=reference)
            frame.conditions = self.model.check_conditions(conditions, check_window=False)
            timer.lap("conditions")
        return frame.conditions

    def _window_frames(self, parts: list["_WindowFrame"], timer: "_StageTimer") -> FrameFeatures:
        """(1, T) per-frame features of the window from a snapshot of its frames. With the cache,
        each frame is encoded on the first pass that sees it and kept (frames that leave the
        window before any pass are never encoded); without, the whole window is encoded."""
        model = self.model
        # Conditions outside autocast (pose maps and depth normalisation stay fp32), encoders in it.
        if self.cache_frame_features:
            for frame in parts:
                if frame.features is None:
                    conditions = self._conditions(frame, timer)
                    with autocast_context(model.device, self.precision):
                        frame.features = model.encode_frames(conditions)
                    frame.conditions = frame.batch = None  # the features are all later passes need
                    timer.lap("encode_frames")
            window = FrameFeatures.cat([frame.features for frame in parts])
        else:
            conditions = _cat_conditions([self._conditions(frame, timer) for frame in parts])
            with autocast_context(model.device, self.precision):
                window = model.encode_frames(conditions)
            timer.lap("encode_frames")
        if window.num_frames < self.window_length:
            window = window.frames(self._padded_index(window.num_frames).to(window.image_tokens.device))
        return window

    def strength_for(self, shift: int) -> float:
        """Warm-start strength of a pass whose window advanced ``shift`` frames: the configured
        strength, raised to the fraction of the window that is new (new frames start from a copy
        of the last known one, so a window that is mostly new gets mostly fresh steps)."""
        return min(1.0, max(float(self.warm_start_strength), shift / self.window_length))

    @torch.no_grad()
    def add(self, frame: Mapping[str, Any]) -> None:
        """Add the newest camera frame to the window (camera rate): its inputs on the model's
        device and the hand depth its conditions will be normalised around. Its conditions and
        per-frame features are computed by the first pass that sees it, so a frame that leaves
        the window before any pass (a machine slower than the camera) costs nothing more.
        :meth:`denoise` estimates the frames added since the last pass."""
        batch = _frame_batch(frame, self.uv_mask, self.model.device)
        with self._lock:
            if bool(batch["valid"]) and bool(torch.isfinite(batch["joints"]).all()):
                self._reference_depth = float(batch["joints"][..., 2].median())
            self._frames.append(_WindowFrame(batch, self._reference_depth))
            self.frames_seen += 1
            self.pending += 1

    @torch.no_grad()
    def denoise(self) -> tuple[int, torch.Tensor]:
        """Denoise the newest window and decode the frames added since the last pass.

        The window is warm-started from the previous pass's latents shifted by the frames it
        advanced (:meth:`strength_for`); frames added while this pass runs wait for the next one.

        Returns:
            (frames added since the last pass, (1, k, Hu, Wu) kPa of the newest k of them on the
            model's device, k = min(that number, T)). Frames that left the window before a pass
            reached them are not estimated (the count says how many were added).
        """
        model = self.model
        timer = _StageTimer(model.device, self.record_timings)
        with self._lock:
            added, self.pending = self.pending, 0
            if not added:
                return 0, torch.zeros(1, 0, *model.config.uv_size, device=model.device)
            parts = list(self._frames)
            previous, epoch = self._latents, self._epoch
        frames = self._window_frames(parts, timer)
        with autocast_context(model.device, self.precision):
            features = model.encode_window(frames)
            timer.lap("encode_window")
            # Warm start from the previous window shifted by the frames it advanced, or a full run.
            init = None
            if self.warm_start_strength is not None and previous is not None:
                init = shift_latents(previous, added)
            latents = model.denoise(
                features,
                num_inference_steps=self.num_inference_steps,
                scheduler=self.scheduler,
                guidance_scale=self.guidance_scale,
                generator=self._generator,
                init_latents=init,
                strength=1.0 if init is None else self.strength_for(added),
            )
            with self._lock:
                if epoch == self._epoch:
                    self._latents = latents
            timer.lap("denoise")
            # Decode only the frames this pass is for.
            newest = min(added, self.window_length)
            pressure = model.decode_latents(latents[:, -newest:], self.uv_mask)[:, :, 0].float()
        timer.lap("decode")
        self.last_timings = timer.timings
        return added, pressure

    @torch.no_grad()
    def push(self, frame: Mapping[str, Any]) -> torch.Tensor:
        """Add the newest camera frame and estimate its pressure (:meth:`add`, then
        :meth:`denoise`).

        Returns:
            (1, Hu, Wu) kPa on the model's device, >= 0, zero outside the UV mask.
        """
        self.add(frame)
        _, pressure = self.denoise()
        return pressure[:, -1]


class PerFramePressureEstimator:
    """Live policy of the per-frame baseline (:class:`~egopress_core.model.bin_classifier.PerFrameBinClassifier`):
    the interface of :class:`StreamingPressureEstimator` (:meth:`add` at camera rate,
    :meth:`denoise` whenever the model is free) over a model that classifies every frame on its
    own, so the live stream, the pressure node and the bench run either kind of checkpoint.

    A pass classifies the frames added since the previous one, at most the newest
    ``window_length`` (the model's ``num_frames``), so that a slow machine's pass stays as bounded
    as the video model's; the older ones are counted by the stream as skipped. Conditions are
    those of offline estimation, frame by frame, so live and offline estimates of a frame agree.

    Args:
        model: a trained per-frame baseline (put in eval mode here).
        uv_mask: as :class:`StreamingPressureEstimator`.
        precision: "fp32", "fp16" or "bf16" autocast (:func:`check_precision`).
        record_timings: time "conditions" and "classify" of every pass into :attr:`last_timings`.
    """

    # One forward per frame, whatever the sampler options (the baseline has no sampler).
    warm_steps = 1

    def __init__(self, model, uv_mask: torch.Tensor | np.ndarray, precision: str = "fp32",
                 record_timings: bool = False) -> None:
        check_precision(precision, model.device)
        self.model = model.eval()
        self.uv_mask = _model_uv_mask(uv_mask, model)
        self.precision = precision
        self.record_timings = bool(record_timings)
        self.last_timings: dict[str, float] = {}
        self._lock = threading.Lock()
        self.reset()

    @property
    def window_length(self) -> int:
        return self.model.config.num_frames

    def reset(self) -> None:
        """Forget the frames not estimated yet."""
        with self._lock:
            self._frames: deque[dict[str, torch.Tensor]] = deque(maxlen=self.window_length)
            self.frames_seen = 0
            self.pending = 0
            self.last_timings = {}

    @torch.no_grad()
    def add(self, frame: Mapping[str, Any]) -> None:
        """Add the newest camera frame (fields as :class:`StreamingPressureEstimator`)."""
        batch = _frame_batch(frame, self.uv_mask, self.model.device)
        with self._lock:
            self._frames.append(batch)
            self.frames_seen += 1
            self.pending += 1

    @torch.no_grad()
    def denoise(self) -> tuple[int, torch.Tensor]:
        """Classify the frames added since the last pass (the newest ``window_length`` of them).

        Returns:
            (frames added since the last pass, (1, k, Hu, Wu) kPa of the newest k of them).
        """
        model = self.model
        timer = _StageTimer(model.device, self.record_timings)
        with self._lock:
            added, self.pending = self.pending, 0
            frames = list(self._frames)
            self._frames.clear()
        if not added:
            return 0, torch.zeros(1, 0, *model.config.uv_size, device=model.device)
        batch = {key: self.uv_mask if key == "uv_mask" else torch.cat([frame[key] for frame in frames], dim=1)
                 for key in frames[0]}
        conditions = model.build_conditions(batch, check_window=False)
        timer.lap("conditions")
        with autocast_context(model.device, self.precision):
            pressure = model.sample(conditions)[:, :, 0].float()
        timer.lap("classify")
        self.last_timings = timer.timings
        return added, pressure


@torch.no_grad()
def estimate_sequence(
    model: EgoPressDiff,
    conditions: EgoPressConditions,
    stride: int | None = OFFLINE_SAMPLING.stride,
    num_inference_steps: int = OFFLINE_SAMPLING.num_inference_steps,
    scheduler: str = OFFLINE_SAMPLING.scheduler,
    guidance_scale: float = OFFLINE_SAMPLING.guidance_scale,
    seed: int = OFFLINE_SAMPLING.seed,
    warm_start_strength: float | None = OFFLINE_SAMPLING.warm_start_strength,
    progress: bool = True,
    window_batch_size: int = 1,
    precision: str = "fp32",
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
        window_batch_size: windows denoised together as one batch of ``B * window_batch_size``
            (throughput on accelerators; memory grows with it). The noise is drawn in the same
            order as one window at a time, so with the deterministic samplers ("ddim",
            "dpmsolver++") the result equals ``window_batch_size=1`` up to float rounding. Warm
            starts chain windows, so they need 1.
        precision: "fp32", "fp16" or "bf16" autocast (see :func:`check_precision`).

    Returns:
        (B, N, 1, Hu, Wu) kPa, >= 0, zero outside the UV mask.
    """
    _check_sampling_args(num_inference_steps, scheduler, guidance_scale, warm_start_strength)
    window = model.config.num_frames
    stride = window // 2 if stride is None else stride
    if not isinstance(stride, int) or not 1 <= stride <= window:
        raise ConfigError(f"stride must be an integer in 1..{window}; got {stride!r}")
    if isinstance(window_batch_size, bool) or not isinstance(window_batch_size, int) or window_batch_size < 1:
        raise ConfigError(f"window_batch_size must be a positive integer; got {window_batch_size!r}")
    if window_batch_size > 1 and warm_start_strength is not None:
        raise ConfigError("warm_start_strength chains each window to the previous one; it needs window_batch_size=1")
    conditions = model.check_conditions(conditions, check_window=False)
    model.eval()
    frames = conditions.num_frames
    device = model.device
    autocast = autocast_context(device, precision)

    # 1. Per-frame features for the whole sequence, in window-sized chunks (bounded memory).
    with autocast:
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
    groups = [starts[i : i + window_batch_size] for i in range(0, len(starts), window_batch_size)]

    # 2. Denoise each group of windows; accumulate tent-weighted maps.
    tent = torch.minimum(torch.arange(1, window + 1), torch.arange(window, 0, -1)).float().to(device)
    sequences = conditions.batch_size
    total = torch.zeros(sequences, frames, 1, *model.config.uv_size, device=device)
    weight = torch.zeros(frames, device=device)
    generator = torch.Generator().manual_seed(seed)
    previous: torch.Tensor | None = None
    previous_start = 0
    bar = tqdm(total=len(starts), desc="windows", disable=not progress)
    for group in groups:
        frame_indices = [index[start : start + window] for start in group]
        with autocast:
            parts = [
                model.encode_window(encoded.frames(frame_index.to(encoded.image_tokens.device)))
                for frame_index in frame_indices
            ]
            features = parts[0]
            for part in parts[1:]:
                features = features.cat_batch(part)
            init = None
            if warm_start_strength is not None and previous is not None:
                init = shift_latents(previous, group[0] - previous_start)
            latents = model.denoise(
                features,
                num_inference_steps,
                scheduler,
                guidance_scale,
                generator,
                init_latents=init,
                strength=1.0 if init is None else warm_start_strength,
            )
            previous, previous_start = latents, group[0]
            pressure = model.decode_latents(latents, features.uv_mask).float().to(device)
        # (len(group) * B, T, ...) in window-major order -> one window at a time.
        for window_pressure, frame_index in zip(pressure.split(sequences), frame_indices):
            target = frame_index.to(device)
            total.index_add_(1, target, window_pressure * tent[None, :, None, None, None])
            weight.index_add_(0, target, tent)
        bar.update(len(group))
    bar.close()
    return total / weight[None, :, None, None, None]
