"""A live stream over an :class:`~egopress_core.pipeline.EgoPressPipeline`: one camera frame and
its hand mesh in, that frame's pressure out.

The model-level policy (:class:`~egopress_core.inference.StreamingPressureEstimator`: the
window of encoded frames, warm starts, the sampler) sits under the stream's bookkeeping, which
LeRobot splits the same way between a policy's ``select_action`` and ``reset``. Frames enter
the stream at camera rate (:meth:`PressureStream.add`: checks and time bookkeeping only) and each
model pass prepares and estimates every frame since the previous pass (:meth:`PressureStream.step`),
so a slow machine emits blocks further apart instead of losing temporal context
(``docs/design.md``, "Live streaming"). Besides:

- the crop follows the hand (:class:`~egopress_core.preprocessing.HandCropTracker`);
- a stamp that goes backwards (bag loop, clock reset) or a gap longer than ``max_gap_s`` restarts
  the window, and so does a hand lost for longer than ``hand_lost_reset_s``, so the warm start
  never bridges an unrelated scene; each restart is a :class:`WindowReset` whose
  :class:`ResetCause` callers branch on;
- frames without a hand are not estimated (``push`` returns None: a hand the tracker lost may
  still be pressing, so "no contact" would be a false label).
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from egopress_core.contact import ContactSummary
from egopress_core.errors import ConfigError, DataError
from egopress_core.options import SamplingOptions, StreamOptions
from egopress_core.preprocessing import HandCropTracker, check_camera_frame, preprocess_frame, project_edge_coordinates

if TYPE_CHECKING:
    from egopress_core.pipeline import EgoPressPipeline

NUM_JOINTS = 21


class ResetCause(enum.Enum):
    """Why a stream's window restarted."""

    REQUESTED = "requested"  # reset() by the caller
    TIME_BACKWARDS = "time_backwards"  # a stamp older than the previous frame's
    GAP = "gap"  # more than max_gap_s since the previous frame
    HAND_LOST = "hand_lost"  # no hand for more than hand_lost_reset_s
    RUNTIME_CHANGED = "runtime_changed"  # the pipeline moved to another device / precision


@dataclass(frozen=True)
class WindowReset:
    """One restart of a stream's window: its cause and a sentence for logs."""

    cause: ResetCause
    message: str


@dataclass(frozen=True)
class _Queued:
    """A frame added since the last pass, checked but not yet cropped, resized or in the window."""

    stamp_s: float
    rgb: np.ndarray
    depth_m: np.ndarray
    intrinsics: np.ndarray
    vertices: np.ndarray
    joints: np.ndarray
    tag: Any


@dataclass(frozen=True)
class _Pending:
    """A frame in the window that no pass has estimated yet."""

    stamp_s: float
    box: tuple[int, int, int, int]
    vertices: np.ndarray
    preprocess_s: float
    encode_s: float
    tag: Any


@dataclass(frozen=True)
class StreamEstimate:
    """Pressure of one streamed frame.

    Attributes:
        stamp_s: the frame's stamp.
        uv_pressure_kpa: (Hu, Wu) float32 kPa at the model's UV resolution, >= 0, zero outside
            the hand's UV mask; row 0 is v = 1.
        uv_total_force_n: sum of pressure x texel area on the posed mesh, N.
        contact: per-vertex pressure and its summary.
        crop_box: (x0, y0, w, h) the image crop the model saw.
        window_frames: frames in the model's window (including this one), up to T.
        tag: what the caller passed to :meth:`PressureStream.add` with this frame (the node passes
            the image header), returned unchanged because estimates come back in blocks.
        timings_s: wall time of "preprocess" (crop, resize, UV geometry of this frame), "inference"
            (this frame's conditions and encoders, plus the pass that estimated it, which its block
            shares) and "contact" (its share of the block's readout).
    """

    stamp_s: float
    uv_pressure_kpa: np.ndarray
    uv_total_force_n: float
    contact: ContactSummary
    crop_box: tuple[int, int, int, int]
    window_frames: int
    tag: Any = None
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def max_pressure_kpa(self) -> float:
        return float(self.uv_pressure_kpa.max()) if self.uv_pressure_kpa.size else 0.0


class PressureStream:
    """Camera frames with their hand meshes in, pressure out: every frame is taken at camera rate
    (:meth:`add`) and each model pass brings the frames taken since the previous one into the
    window and estimates them (:meth:`step`); :meth:`push` does both for one frame
    (``docs/design.md``, "Live streaming").

    Made by :meth:`EgoPressPipeline.stream`.

    Args:
        pipeline: the loaded checkpoint.
        sampling: sampler of the windows (warm-started when ``warm_start_strength`` is set).
        options: :class:`~egopress_core.options.StreamOptions`.
        record_timings: time the model's stages of every frame into :attr:`last_timings`.
        cache_frame_features: encode each frame once and reuse it in the T windows it belongs to.
    """

    def __init__(self, pipeline: "EgoPressPipeline", sampling: SamplingOptions, options: StreamOptions,
                 record_timings: bool = False, cache_frame_features: bool = True) -> None:
        if sampling.stride is not None or sampling.window_batch_size != 1:
            raise ConfigError("SamplingOptions.stride and window_batch_size are options of offline estimation; a live "
                              f"stream takes neither. Got stride={sampling.stride}, "
                              f"window_batch_size={sampling.window_batch_size}")
        self.pipeline = pipeline
        self.sampling = sampling
        self.options = options
        self.record_timings = bool(record_timings)
        self.cache_frame_features = bool(cache_frame_features)
        self.crop_tracker = HandCropTracker(pipeline.image_size, pipeline.crop)
        self.resets = 0
        self.frames_skipped = 0
        self.last_reset: WindowReset | None = None
        # add() (camera rate) and step() (whenever the model is free) may run on two threads.
        self._lock = threading.RLock()
        self._epoch = 0
        self._queued: deque[_Queued] = deque()
        self._pending: deque[_Pending] = deque()
        self._preparing = 0
        self._build_policy()
        self._forget()

    def _build_policy(self) -> None:
        from egopress_core.inference import PerFramePressureEstimator, StreamingPressureEstimator

        pipeline, sampling = self.pipeline, self.sampling
        self._runtime = pipeline.runtime
        if not pipeline.is_video_model:
            # The per-frame baseline: no window, no sampler; the same add / step bookkeeping.
            self.policy = PerFramePressureEstimator(pipeline.model, pipeline.uv_mask_tensor(),
                                                    precision=pipeline.runtime.precision,
                                                    record_timings=self.record_timings)
            return
        # The model was prepared (channels-last, compile) by the pipeline; the policy only
        # autocasts.
        self.policy = StreamingPressureEstimator(
            pipeline.model, pipeline.uv_mask_tensor(), num_inference_steps=sampling.num_inference_steps,
            warm_start_strength=sampling.warm_start_strength, scheduler=sampling.scheduler,
            guidance_scale=sampling.guidance_scale, seed=sampling.seed,
            cache_frame_features=self.cache_frame_features, precision=pipeline.runtime.precision,
            record_timings=self.record_timings)

    def _forget(self) -> None:
        self._epoch += 1
        self.policy.reset()
        # Frames added but not estimated yet belong to the old scene: they will get no estimate.
        self.frames_skipped += len(self._queued) + len(self._pending)
        self._queued = deque()
        self._pending = deque()
        self.crop_tracker.reset()
        self._last_stamp: float | None = None
        self._hand_lost_since: float | None = None

    # -- properties ------------------------------------------------------------------------

    @property
    def window_length(self) -> int:
        return self.pipeline.window_length

    @property
    def frames_seen(self) -> int:
        """Frames with a hand pushed into the current window's history."""
        return self.policy.frames_seen

    @property
    def warm_steps(self) -> int:
        """U-Net passes of a warm-started frame."""
        return self.policy.warm_steps

    @property
    def last_timings(self) -> dict[str, float]:
        """Model stages of the last frame, seconds (with ``record_timings``)."""
        return self.policy.last_timings

    # -- state -----------------------------------------------------------------------------

    def reset(self, cause: ResetCause = ResetCause.REQUESTED, message: str = "reset") -> None:
        """Forget the window, the warm start, the crop and frames not estimated yet (a new scene)."""
        with self._lock:
            self._forget()
            self.resets += 1
            self.last_reset = WindowReset(cause, message)

    @property
    def pending(self) -> int:
        """Frames added and not estimated yet (what the next :meth:`step` estimates, up to T)."""
        with self._lock:
            return len(self._queued) + self._preparing + len(self._pending)

    # -- per frame -------------------------------------------------------------------------

    def add(
        self,
        rgb: np.ndarray,
        depth_m: np.ndarray,
        intrinsics: np.ndarray,
        stamp_s: float,
        vertices: np.ndarray | None,
        joints: np.ndarray | None,
        tag: Any = None,
    ) -> bool:
        """Take a camera frame: checks and time bookkeeping only; its crop, resize and UV
        geometry are done by the next :meth:`step`, before its pass, and its conditions and
        features by the first pass that sees it. :meth:`step` estimates the frames added since
        its last pass. Safe to call from another thread while :meth:`step` runs, and kept cheap
        for that: a camera thread doing the preprocessing beside a pass takes Python's GIL in
        turns with the pass's many small operators, which made the pass 30-40 % longer on two
        cores (``docs/design.md``, "Live streaming"). Of the frames waiting for a pass, only the
        newest T are kept (a pass could not estimate more); older ones count as skipped.

        Args:
            rgb: (H, W, 3) uint8. depth_m: (H, W) metres aligned to rgb; NaN / inf / <= 0 are
                holes. intrinsics: (3, 3) of the colour camera.
            stamp_s: capture time, seconds (ROS or sensor clock).
            vertices: (V, 3) hand mesh in the camera frame, metres, in the hand model's vertex
                order; None when no hand was found.
            joints: (21, 3) OpenPose-order joints, metres; None with ``vertices``.
            tag: anything, handed back in this frame's :attr:`StreamEstimate.tag`.

        Returns:
            Whether the frame was taken (False: it shows no hand, and will get no estimate).
            After the call, :attr:`last_reset` says whether (and why) this frame restarted the
            window (None: it did not).

        Raises:
            DataError: images, intrinsics or mesh with wrong shapes or values (naming them);
                the stream's state is unchanged then.
        """
        if not isinstance(stamp_s, (int, float)) or isinstance(stamp_s, bool) or not math.isfinite(stamp_s):
            raise DataError(f"stamp_s must be a finite number of seconds; got {stamp_s!r}")
        rgb, depth, matrix = check_camera_frame(rgb, depth_m, intrinsics)
        has_hand = vertices is not None
        if has_hand:
            vertices, joints = self._check_mesh(vertices, joints)
            rgb = rgb.copy()  # kept until the next pass; the caller may reuse its buffer

        with self._lock:
            self.last_reset = None
            if self._runtime is not self.pipeline.runtime:
                self._build_policy()
                self.reset(ResetCause.RUNTIME_CHANGED, f"the model moved to {self.pipeline.device}")
            if self._last_stamp is not None:
                step = stamp_s - self._last_stamp
                if step < 0:
                    self.reset(ResetCause.TIME_BACKWARDS, f"time went backwards by {-step:.3f} s")
                elif step > self.options.max_gap_s:
                    self.reset(ResetCause.GAP, f"{step:.3f} s passed since the previous frame "
                                               f"(max_gap_s={self.options.max_gap_s})")
            self._last_stamp = float(stamp_s)

            if not has_hand:
                if self._hand_lost_since is None:
                    self._hand_lost_since = float(stamp_s)
                elif (self.frames_seen or self._queued) and stamp_s - self._hand_lost_since > self.options.hand_lost_reset_s:
                    self.reset(ResetCause.HAND_LOST,
                               f"the hand was lost for more than {self.options.hand_lost_reset_s} s")
                    self._last_stamp = float(stamp_s)
                    self._hand_lost_since = float(stamp_s)
                return False
            self._hand_lost_since = None
            self._queued.append(_Queued(float(stamp_s), rgb, depth, matrix, vertices, joints, tag))
            while len(self._queued) > self.window_length:
                self._queued.popleft()
                self.frames_skipped += 1
        return True

    def step(self) -> list[StreamEstimate]:
        """Bring the frames added since the last pass into the window (crop, resize, UV geometry),
        denoise the newest window and estimate every one of them, in order.

        Frames that left the window (more than T were added while the model was busy) get no
        estimate and are counted in :attr:`frames_skipped` (with the frames a restart discarded):
        the window keeps consecutive frames, so temporal context is never lost, but a slow machine
        emits blocks further apart. Frames added while a pass runs wait for the next one.
        """
        with self._lock:
            policy, epoch, waiting = self.policy, self._epoch, len(self._queued)
        for _ in range(waiting):
            with self._lock:
                if epoch != self._epoch:
                    return []  # restarted: what was taken belongs to the old scene (the restart counted it)
                if not self._queued:
                    break
                item = self._queued.popleft()
                self._preparing = 1
                # In arrival order, on this thread only; a restart resets the tracker under the lock.
                box = self.crop_tracker.update(item.rgb.shape[:2], project_edge_coordinates(item.vertices, item.intrinsics))
            try:
                frame, preprocess_s = self._prepare(item, box)
            except BaseException:
                with self._lock:
                    self._preparing = 0
                    self.frames_skipped += 1
                raise
            with self._lock:
                self._preparing = 0
                if epoch != self._epoch:
                    self.frames_skipped += 1  # restarted meanwhile: the frame belongs to the old scene
                    return []
                added_at = time.perf_counter()
                policy.add(frame)
                self._pending.append(_Pending(item.stamp_s, box, item.vertices, preprocess_s,
                                              time.perf_counter() - added_at, item.tag))
        started = time.perf_counter()
        added, pressure = policy.denoise()
        inferred = time.perf_counter()
        with self._lock:
            if epoch != self._epoch or not added:
                return []  # reset while this pass ran: its frames belong to the old window
            pending = [self._pending.popleft() for _ in range(added)]
            estimated = pending[len(pending) - pressure.shape[1]:]
            self.frames_skipped += len(pending) - len(estimated)
            window_frames = min(self.frames_seen, self.window_length)
        maps = pressure[0].float().cpu().numpy()
        readouts = self.pipeline.readout(maps, np.stack([item.vertices for item in estimated]))
        finished = time.perf_counter()
        return [
            StreamEstimate(
                stamp_s=item.stamp_s, uv_pressure_kpa=readout.uv_pressure_kpa,
                uv_total_force_n=readout.uv_total_force_n, contact=readout.contact, crop_box=item.box,
                window_frames=window_frames, tag=item.tag,
                timings_s={"preprocess": item.preprocess_s, "inference": item.encode_s + inferred - started,
                           "contact": (finished - inferred) / len(estimated)},
            )
            for item, readout in zip(estimated, readouts)
        ]

    def push(
        self,
        rgb: np.ndarray,
        depth_m: np.ndarray,
        intrinsics: np.ndarray,
        stamp_s: float,
        vertices: np.ndarray | None,
        joints: np.ndarray | None,
    ) -> StreamEstimate | None:
        """Add the newest frame and estimate it at once (:meth:`add`, then :meth:`step`): one
        pass per frame. Returns its pressure, or None when it shows no hand."""
        if not self.add(rgb, depth_m, intrinsics, stamp_s, vertices, joints):
            return None
        estimates = self.step()
        return estimates[-1] if estimates else None

    def _prepare(self, item: _Queued, box: tuple[int, int, int, int]) -> tuple[dict[str, Any], float]:
        """(the model's inputs of a taken frame: crop, resize, UV geometry; seconds it took)."""
        pipeline = self.pipeline
        started = time.perf_counter()
        inputs = preprocess_frame(item.rgb, item.depth_m, item.intrinsics, box, pipeline.image_size,
                                  pipeline.crop.depth_resize)
        frame = {"rgb": inputs.rgb, "depth_m": inputs.depth_m, "intrinsics": inputs.intrinsics,
                 "joints": torch.from_numpy(item.joints), "vertices": torch.from_numpy(item.vertices), "valid": True}
        if pipeline.uv_geometry is not None:
            window = {key: value[None, None] for key, value in frame.items() if isinstance(value, torch.Tensor)}
            frame["uv_geometry"] = pipeline.uv_geometry(window)[0, 0]
        return frame, time.perf_counter() - started

    def _check_mesh(self, vertices, joints) -> tuple[np.ndarray, np.ndarray]:
        vertices = np.asarray(vertices, dtype=np.float32)
        hand = self.pipeline.hand
        if vertices.shape != (hand.num_vertices, 3):
            raise DataError(f"hand mesh has vertices of shape {tuple(vertices.shape)}; the model's hand "
                            f"{hand.topology_id} has ({hand.num_vertices}, 3)")
        if joints is None:
            raise DataError("joints are missing for a frame with a hand mesh")
        joints = np.asarray(joints, dtype=np.float32)
        if joints.shape != (NUM_JOINTS, 3):
            raise DataError(f"joints must have shape ({NUM_JOINTS}, 3); got {tuple(joints.shape)}")
        for name, value in (("vertices", vertices), ("joints", joints)):
            if not np.isfinite(value).all():
                raise DataError(f"hand mesh {name} hold NaN or infinite values")
        # Copies: the caller's arrays may be read-only (memory-mapped records), which torch warns about.
        return np.array(vertices, order="C"), np.array(joints, order="C")
