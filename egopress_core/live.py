"""Live estimation: one camera frame and its hand mesh in, UV pressure and per-vertex contact out.

This is the library half of the ROS pressure node (and what a rosbag labeller replaying frames one
by one uses), so that the node only converts messages:

- :func:`crop_box` / :class:`HandCropTracker` choose the image crop the way the clip windows do
  for training (:class:`~egopress_core.data.windows.ClipWindowDataset`, ``crop="hand"``: a box
  around the projected hand vertices, ``hand_margin`` on each side, at least
  ``min_crop_fraction`` of the short side, the model's aspect ratio). Training uses one box per
  window; a live stream has no future frames, so the tracker keeps its box while the hand stays
  well inside it and is not much smaller, and re-centres otherwise. Consecutive frames then
  share a crop most of the time, as in training windows.
- :func:`preprocess_frame` crops and resizes one frame exactly as the windows do (uint8
  antialiased bilinear RGB, nearest-surface depth, intrinsics ``K' = A K``); test_live.py checks it
  against :class:`ClipWindowDataset` output.
- :class:`LivePressureEstimator` runs :class:`~egopress_core.inference.StreamingPressureEstimator`
  on those inputs and turns the newest UV map into per-vertex pressure and a
  :class:`~egopress_core.contact.ContactSummary`. It owns the stream's temporal bookkeeping:
  a timestamp that goes backwards (bag loop, clock reset) or a gap longer than ``max_gap_s``
  restarts the window; frames without a hand are not estimated (nothing is returned: a hand the
  tracker lost may still be pressing, so "no contact" would be a false label), and a hand lost
  for longer than ``hand_lost_reset_s`` restarts the window, so the warm start never bridges
  an unrelated scene.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from egopress_core.contact import ContactSummary, summarize_contact
from egopress_core.data.windows import (
    CROP_MODES,
    DEPTH_RESIZE_MODES,
    crop_padded,
    crop_resize_intrinsics,
    resize_depth,
)
from egopress_core.errors import CheckpointError, ConfigError, DataError
from egopress_core.metrics import DEFAULT_CONTACT_THRESHOLD_KPA

UV_MASK_FILE = "hand_uv_mask.json"
NUM_JOINTS = 21
# A held crop is replaced when the fresh box around the hand is this many times smaller.
_HOLD_MAX_SHRINK = 1.5


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


def _number(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number. Got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be in {bracket}{low:g}, {high:g}]. Got {value!r}")
    return float(value)


@dataclass(frozen=True)
class LiveConfig:
    """How live frames are cropped and how the stream's time is handled.

    Attributes:
        crop: ``"hand"`` (box around the hand, as in training) or ``"full"`` (centred box).
        hand_margin: added on each side of the hand box, as a fraction of its larger side.
        min_crop_fraction: smallest hand crop side, as a fraction of the image's short side.
        depth_resize: ``"min"`` or ``"nearest"`` (see :func:`~egopress_core.data.windows.resize_depth`).
        hold_crop: keep the crop box while the hand stays inside it (see the module docstring);
            False makes a fresh box every frame.
        max_gap_s: a longer gap between consecutive frames restarts the window.
        hand_lost_reset_s: a hand missing for longer than this restarts the window.
        contact_threshold_kpa: per-vertex contact threshold (PressureVision uses 1 kPa).
    """

    crop: str = "hand"
    hand_margin: float = 0.3
    min_crop_fraction: float = 0.1
    depth_resize: str = "min"
    hold_crop: bool = True
    max_gap_s: float = 1.0
    hand_lost_reset_s: float = 0.5
    contact_threshold_kpa: float = DEFAULT_CONTACT_THRESHOLD_KPA

    def __post_init__(self) -> None:
        if self.crop not in CROP_MODES:
            raise ConfigError(f"crop must be one of {CROP_MODES}. Got {self.crop!r}")
        if self.depth_resize not in DEPTH_RESIZE_MODES:
            raise ConfigError(f"depth_resize must be one of {DEPTH_RESIZE_MODES}. Got {self.depth_resize!r}")
        _number("hand_margin", self.hand_margin, 0.0, 5.0)
        _number("min_crop_fraction", self.min_crop_fraction, 0.0, 1.0)
        if not isinstance(self.hold_crop, bool):
            raise ConfigError(f"hold_crop must be a bool. Got {self.hold_crop!r}")
        _number("max_gap_s", self.max_gap_s, 0.0, low_open=True)
        _number("hand_lost_reset_s", self.hand_lost_reset_s, 0.0)
        _number("contact_threshold_kpa", self.contact_threshold_kpa, 0.0)


# ----------------------------------------------------------------------------------------------
# Crop
# ----------------------------------------------------------------------------------------------


def project_edge_coordinates(points_xyz: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points -> (M, 2) pixel "edge" coordinates (pixel j spans [j, j + 1)),
    for the points in front of the camera (z > 1 mm), as the clip windows project them."""
    xyz = np.asarray(points_xyz, dtype=np.float64)
    xyz = xyz[xyz[:, 2] > 1e-3]
    projected = xyz @ np.asarray(intrinsics, dtype=np.float64).T
    return projected[:, :2] / projected[:, 2:3] + 0.5


def crop_box(
    image_hw: tuple[int, int],
    image_size: tuple[int, int],
    hand_points: np.ndarray | None = None,
    hand_margin: float = 0.3,
    min_crop_fraction: float = 0.1,
) -> tuple[int, int, int, int]:
    """(x0, y0, w, h) integer crop box of an ``image_hw`` image for a model input of
    ``image_size``, exactly as :class:`~egopress_core.data.windows.ClipWindowDataset` chooses it
    (without augmentation).

    Args:
        image_hw: (H, W) of the camera image.
        image_size: (H, W) of the model input (sets the box's aspect ratio).
        hand_points: (N, 2) edge coordinates of the hand (:func:`project_edge_coordinates`), or
            None / empty for the largest centred box (``crop="full"``).
        hand_margin, min_crop_fraction: as :class:`LiveConfig`.
    """
    img_h, img_w = int(image_hw[0]), int(image_hw[1])
    aspect = image_size[1] / image_size[0]
    if img_w / img_h >= aspect:
        box_h, box_w = float(img_h), img_h * aspect
    else:
        box_w, box_h = float(img_w), img_w / aspect
    centre = np.array([img_w / 2.0, img_h / 2.0])
    if hand_points is not None and len(hand_points):
        low, high = hand_points.min(axis=0), hand_points.max(axis=0)
        centre = (low + high) / 2.0
        side = float(np.max(high - low)) * (1.0 + 2.0 * hand_margin)
        side = max(side, min_crop_fraction * min(img_h, img_w), 1.0)
        side = min(side, float(max(img_h, img_w)))
        box_w, box_h = side * max(aspect, 1.0), side * max(1.0 / aspect, 1.0)
    width, height = max(1, round(box_w)), max(1, round(box_h))
    x0, y0 = round(centre[0] - width / 2.0), round(centre[1] - height / 2.0)
    return int(x0), int(y0), int(width), int(height)


class HandCropTracker:
    """The crop box of a live stream (see the module docstring).

    A held box is kept while (1) the image size is unchanged, (2) the hand's projected extent
    stays inside the box with at least half the margin left on every side, and (3) a fresh box
    would not be more than 1.5 times smaller. Otherwise the fresh box replaces it.

    Args:
        image_size: (H, W) of the model input.
        config: crop settings of a :class:`LiveConfig`.
    """

    def __init__(self, image_size: tuple[int, int], config: LiveConfig | None = None) -> None:
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.config = config or LiveConfig()
        self.reset()

    def reset(self) -> None:
        self._box: tuple[int, int, int, int] | None = None
        self._image_hw: tuple[int, int] | None = None
        self.boxes_made = 0

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        return self._box

    def update(self, image_hw: tuple[int, int], hand_points: np.ndarray | None) -> tuple[int, int, int, int]:
        """The box for this frame; ``hand_points`` are edge coordinates (None: no hand)."""
        cfg = self.config
        image_hw = (int(image_hw[0]), int(image_hw[1]))
        if cfg.crop == "full" or hand_points is None or not len(hand_points):
            fresh = crop_box(image_hw, self.image_size)
            if cfg.crop == "full" or self._box is None or self._image_hw != image_hw:
                self._set(fresh, image_hw)
            return self._box  # type: ignore[return-value]
        fresh = crop_box(image_hw, self.image_size, hand_points, cfg.hand_margin, cfg.min_crop_fraction)
        if not cfg.hold_crop or self._box is None or self._image_hw != image_hw or not self._holds(hand_points, fresh):
            self._set(fresh, image_hw)
        return self._box  # type: ignore[return-value]

    def _set(self, box: tuple[int, int, int, int], image_hw: tuple[int, int]) -> None:
        if box != self._box:
            self.boxes_made += 1
        self._box, self._image_hw = box, image_hw

    def _holds(self, hand_points: np.ndarray, fresh: tuple[int, int, int, int]) -> bool:
        x0, y0, width, height = self._box  # type: ignore[misc]
        low, high = hand_points.min(axis=0), hand_points.max(axis=0)
        inset = 0.5 * self.config.hand_margin * float(np.max(high - low))
        inside = (low[0] - inset >= x0 and low[1] - inset >= y0
                  and high[0] + inset <= x0 + width and high[1] + inset <= y0 + height)
        not_too_big = max(width, height) <= _HOLD_MAX_SHRINK * max(fresh[2], fresh[3])
        return bool(inside and not_too_big)


# ----------------------------------------------------------------------------------------------
# One frame -> model inputs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInputs:
    """One frame at model resolution (the per-frame slice of a clip window).

    Attributes:
        rgb: (3, H, W) float32 in [0, 1].
        depth_m: (1, H, W) float32 metres, 0 = no reading.
        intrinsics: (3, 3) float32, K of the cropped and resized image.
        box: (x0, y0, w, h) the crop in camera pixels.
    """

    rgb: torch.Tensor
    depth_m: torch.Tensor
    intrinsics: torch.Tensor
    box: tuple[int, int, int, int]


def check_camera_frame(rgb, depth_m, intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (rgb uint8 (H, W, 3), depth float32 (H, W) with holes as 0, K float64 (3, 3)).

    NaN, infinite and negative depth readings are holes (REP 118 marks missing 32FC1 readings
    with NaN / infinity) and become 0.

    Raises:
        DataError: naming the array that has the wrong type, shape or values.
    """
    from egopress_core.perception.types import validate_intrinsics

    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        described = f"{rgb.dtype} {tuple(rgb.shape)}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise DataError(f"rgb must be a (H, W, 3) uint8 array; got {described}")
    if not isinstance(depth_m, np.ndarray) or depth_m.ndim != 2 or not np.issubdtype(depth_m.dtype, np.floating):
        described = f"{depth_m.dtype} {tuple(depth_m.shape)}" if isinstance(depth_m, np.ndarray) else type(depth_m).__name__
        raise DataError(f"depth_m must be a (H, W) floating-point array in metres; got {described}")
    if depth_m.shape != rgb.shape[:2]:
        raise DataError(f"depth image {depth_m.shape[1]}x{depth_m.shape[0]} is not aligned to the colour image "
                        f"{rgb.shape[1]}x{rgb.shape[0]} (W x H); use the depth stream aligned to colour")
    depth = depth_m.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return rgb, depth, validate_intrinsics(intrinsics)


def preprocess_frame(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    intrinsics: np.ndarray,
    box: tuple[int, int, int, int],
    image_size: tuple[int, int],
    depth_resize: str = "min",
) -> ModelInputs:
    """Crop ``box`` out of one frame and resize it to ``image_size``, as the clip windows do.

    Args:
        rgb: (H, W, 3) uint8; depth_m: (H, W) float32 metres, 0 = hole; intrinsics: (3, 3).
        box: (x0, y0, w, h); parts outside the image are black / holes.
        image_size: (H', W') model input size.
        depth_resize: "min" or "nearest".
    """
    crop = crop_padded(np.asarray(rgb, dtype=np.uint8), *box)
    # Resampling uint8 directly, as the windows do (the float result rounded to 1/255).
    image = torch.from_numpy(crop).permute(2, 0, 1)[None]
    resized = F.interpolate(image, size=tuple(image_size), mode="bilinear", align_corners=False, antialias=True)
    depth_crop = crop_padded(np.asarray(depth_m, dtype=np.float32), *box)
    depth = resize_depth(torch.from_numpy(depth_crop)[None, None], tuple(image_size), depth_resize)[0]
    matrix = crop_resize_intrinsics(intrinsics, box, tuple(image_size)).astype(np.float32)
    return ModelInputs(rgb=resized[0].float() / 255.0, depth_m=depth, intrinsics=torch.from_numpy(matrix), box=box)


# ----------------------------------------------------------------------------------------------
# The live estimator
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveEstimate:
    """Pressure of one frame.

    Attributes:
        stamp_s: the frame's stamp.
        uv_pressure_kpa: (Hu, Wu) float32 kPa at the model's UV resolution, >= 0, zero outside
            the hand's UV mask; row 0 is v = 1.
        uv_total_force_n: sum of pressure x texel area on the posed mesh, N.
        contact: per-vertex pressure and its summary.
        crop_box: (x0, y0, w, h) the image crop the model saw.
        window_frames: frames in the model's window (including this one), up to T.
        timings_s: wall time of "preprocess", "inference", "contact".
    """

    stamp_s: float
    uv_pressure_kpa: np.ndarray
    uv_total_force_n: float
    contact: ContactSummary
    crop_box: tuple[int, int, int, int]
    window_frames: int
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def max_pressure_kpa(self) -> float:
        return float(self.uv_pressure_kpa.max()) if self.uv_pressure_kpa.size else 0.0


# Keyword arguments of StreamingPressureEstimator a live estimator passes through; its defaults
# (warm-started DPM-Solver++ 8, fp32) are the live defaults.
STREAMING_OPTIONS = ("num_inference_steps", "warm_start_strength", "scheduler", "guidance_scale", "seed",
                     "precision", "channels_last", "compile", "compile_options")
# ``compile_mode`` of :meth:`LivePressureEstimator.to` that leaves the U-Net as it is.
COMPILE_OFF = "off"


class LivePressureEstimator:
    """Camera frames with their hand meshes in, pressure out, one frame at a time.

    Args:
        model: a trained :class:`~egopress_core.model.egopressdiff.EgoPressDiff`.
        uv_mask: the :class:`~egopress_core.data.sources.HandUVMask` the model was trained with.
        hand: the hand model of that mask's atlas (default: loaded from the mask's paths); the
            meshes pushed must follow its topology.
        config: :class:`LiveConfig`.
        streaming_options: sampling and speed options of
            :class:`~egopress_core.inference.StreamingPressureEstimator` (``STREAMING_OPTIONS``:
            ``num_inference_steps``, ``warm_start_strength``, ``scheduler``, ``guidance_scale``,
            ``seed``, ``precision``, ``channels_last``, ``compile``, ``compile_options``); unset
            ones keep its defaults. Compiling is best asked for in :meth:`to`, once the model is
            on the device it will run on.

    Raises:
        CheckpointError: the mask is of another UV layout or resolution than the model.
        ConfigError: invalid options.
    """

    def __init__(
        self,
        model,
        uv_mask,
        hand=None,
        config: LiveConfig | None = None,
        **streaming_options: Any,
    ) -> None:
        from egopress_core.conditioning import UVGeometryBuilder
        from egopress_core.hand.hand_model import load_hand_model
        from egopress_core.inference import StreamingPressureEstimator
        from egopress_core.model.egopressdiff import EgoPressDiff
        from egopress_core.uv_atlas import UVAtlas

        if not isinstance(model, EgoPressDiff):
            raise CheckpointError(f"live estimation needs an EgoPressDiff model; got {type(model).__name__} "
                                  "(the per-frame baseline has no streaming mode)")
        config = config or LiveConfig()
        if not isinstance(config, LiveConfig):
            raise ConfigError(f"config must be a LiveConfig. Got {type(config).__name__}")
        unknown = sorted(set(streaming_options) - set(STREAMING_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown streaming option(s) {unknown}; must be among {list(STREAMING_OPTIONS)}")
        model_config = model.config
        if tuple(uv_mask.uv_size) != tuple(model_config.uv_size):
            raise CheckpointError(f"the UV mask is {uv_mask.uv_size} but the model's uv_size is {tuple(model_config.uv_size)}")
        if not uv_mask.matches(model_config.uv_layout):
            raise CheckpointError(f"the model was trained on UV layout {model_config.uv_layout!r}; "
                                  f"the hand's atlas is {uv_mask.layout_id!r}")
        self.model = model
        self.uv_mask = uv_mask
        self.hand = hand if hand is not None else load_hand_model(uv_mask.side, uv_mask.hand_model_path, uv_mask.uv_obj_path)
        if self.hand.side != uv_mask.side:
            raise ConfigError(f"hand model is the {self.hand.side} hand but the UV mask is of the {uv_mask.side} hand")
        if self.hand.uv_obj_path is None:
            raise ConfigError(f"hand model {self.hand.model_path} has no UV atlas OBJ")
        # The atlas at the model's resolution: maps the model's UV maps to vertices and areas.
        self.atlas = UVAtlas.from_obj(self.hand.uv_obj_path, resolution=tuple(model_config.uv_size),
                                      name=self.hand.uv_layout_name)
        if self.atlas.num_vertices != self.hand.num_vertices:
            raise ConfigError(f"UV atlas {self.hand.uv_obj_path} has {self.atlas.num_vertices} vertices, "
                              f"the hand model {self.hand.num_vertices}")
        self.config = config
        self.streaming_options = dict(streaming_options)
        # UV-aligned evidence for models that take it, built as in training.
        self.uv_geometry = UVGeometryBuilder.for_model(self.atlas, model_config)
        self._streaming_class = StreamingPressureEstimator
        self.crop_tracker = HandCropTracker(tuple(model_config.image_size), config)
        self._build_streaming()
        self._last_stamp: float | None = None
        self._hand_lost_since: float | None = None
        self.resets = 0
        self.last_reset_reason: str | None = None

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls,
        directory: str | os.PathLike,
        device: str | torch.device = "cpu",
        hand_side: str | None = None,
        hand_model_path: str | os.PathLike | None = None,
        uv_obj_path: str | os.PathLike | None = None,
        **options: Any,
    ) -> "LivePressureEstimator":
        """Loads an EgoPressDiff checkpoint folder and the UV mask it was trained with.

        The mask comes from the folder's ``hand_uv_mask.json`` (written by training); without
        it, the mask of ``hand_side`` (default right) of ``hand_model_path`` (default: bundled
        hand) is built and must match the checkpoint's UV layout.

        Args:
            directory: checkpoint folder (``config.json``, ``model.safetensors``).
            device: where the model runs ("cpu", "cuda", "cuda:1", ...).
            hand_side: if given, the checkpoint's hand must be this one.
            options: :class:`LivePressureEstimator` keyword arguments.

        Raises:
            CheckpointError: missing or unreadable checkpoint, other model kind, a mask that
                does not match, or the wrong hand.
        """
        from egopress_core.data.sources import HandUVMask, hand_uv_mask
        from egopress_core.evaluation import load_pressure_model

        path = Path(directory)
        if not path.is_dir():
            raise CheckpointError(f"checkpoint folder {path} does not exist")
        device = resolve_device(device)
        model = load_pressure_model(path, map_location=device)
        mask_file = path / UV_MASK_FILE
        if mask_file.is_file():
            try:
                mask = HandUVMask.load(mask_file)
            except (DataError, KeyError) as error:
                raise CheckpointError(f"{mask_file}: {error}") from error
        else:
            mask = hand_uv_mask(tuple(model.config.uv_size), hand_side or "right", hand_model_path, uv_obj_path)
        if hand_side is not None and mask.side != hand_side:
            raise CheckpointError(f"checkpoint {path} estimates the {mask.side} hand, not the {hand_side} hand")
        if not mask.matches(model.config.uv_layout):
            raise CheckpointError(f"checkpoint {path} was trained on UV layout {model.config.uv_layout!r}, "
                                  f"but the hand model's atlas is {mask.layout_id!r}; give the hand model it was trained with")
        return cls(model, mask, **options)

    def _build_streaming(self) -> None:
        """(Re)builds the streaming policy on the model's device; it validates the options."""
        self.streaming = self._streaming_class(self.model, self.uv_mask.tensor(), **self.streaming_options)

    # -- properties ------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def window_length(self) -> int:
        return int(self.model.config.num_frames)

    @property
    def uv_layout_id(self) -> str:
        """Layout id of the published maps: the hand's atlas at the model's UV resolution."""
        return self.atlas.layout_id

    @property
    def hand_side(self) -> str:
        return self.uv_mask.side

    @property
    def faces(self) -> np.ndarray:
        return self.hand.faces

    @property
    def topology_id(self) -> str:
        return self.hand.topology_id

    # -- state -----------------------------------------------------------------------------

    def to(self, device: str | torch.device, precision: str | None = None,
           compile_mode: str | None = None) -> "LivePressureEstimator":
        """Move the model (e.g. to "cpu" to free accelerator memory); restarts the window.

        Args:
            device: where the model runs next.
            precision: if given, the autocast precision from now on ("fp32", "fp16", "bf16");
                half precision is checked against ``device`` (fp16 needs a GPU), so a model
                parked on the CPU and moved to a GPU sets its GPU precision here.
            compile_mode: if given, ``torch.compile`` the U-Net in this mode from now on (one of
                :data:`~egopress_core.inference.COMPILE_MODES`; "reduce-overhead" replays CUDA
                graphs), or :data:`COMPILE_OFF` to stop asking for it. It compiles on the first
                frames after the move (seconds to a minute), for ``device``. A U-Net compiled
                before stays wrapped (torch has no undo); it is simply not called while the
                model is parked.

        Raises:
            ConfigError: an unusable device, a precision or compile mode the device cannot run;
                the estimator is then unchanged.
        """
        from egopress_core.inference import check_compile, check_precision

        device = resolve_device(device)
        if precision is not None:
            check_precision(precision, device)
        compile_options = None
        if compile_mode is not None and compile_mode != COMPILE_OFF:
            compile_options = {**(self.streaming_options.get("compile_options") or {}), "mode": compile_mode}
            check_compile(device, compile_options)
        self.model.to(device)
        if precision is not None:
            self.streaming_options["precision"] = precision
        if compile_mode == COMPILE_OFF:
            self.streaming_options["compile"] = False
        elif compile_options is not None:
            self.streaming_options.update(compile=True, compile_options=compile_options)
        self._build_streaming()
        self.reset("the model moved to another device")
        return self

    def reset(self, reason: str = "reset") -> None:
        """Forget the window, the warm start and the crop (a new scene)."""
        self.streaming.reset()
        self.crop_tracker.reset()
        self._last_stamp = None
        self._hand_lost_since = None
        self.resets += 1
        self.last_reset_reason = reason

    # -- per frame -------------------------------------------------------------------------

    def push(
        self,
        rgb: np.ndarray,
        depth_m: np.ndarray,
        intrinsics: np.ndarray,
        stamp_s: float,
        vertices: np.ndarray | None,
        joints: np.ndarray | None,
    ) -> LiveEstimate | None:
        """Add the newest frame; return its pressure, or None when it shows no hand.

        Args:
            rgb: (H, W, 3) uint8. depth_m: (H, W) metres aligned to rgb; NaN / inf / <= 0 are
                holes. intrinsics: (3, 3) of the colour camera.
            stamp_s: capture time, seconds (ROS or sensor clock).
            vertices: (V, 3) hand mesh in the camera frame, metres, in the hand model's vertex
                order; None when no hand was found.
            joints: (21, 3) OpenPose-order joints, metres; None with ``vertices``.

        Returns:
            :class:`LiveEstimate`, or None for a frame without a hand. After the call,
            :attr:`last_reset_reason` says whether (and why) this frame restarted the window.

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

        self.last_reset_reason = None
        if self._last_stamp is not None:
            step = stamp_s - self._last_stamp
            if step < 0:
                self.reset(f"time went backwards by {-step:.3f} s")
            elif step > self.config.max_gap_s:
                self.reset(f"{step:.3f} s passed since the previous frame (max_gap_s={self.config.max_gap_s})")
        self._last_stamp = float(stamp_s)

        if not has_hand:
            if self._hand_lost_since is None:
                self._hand_lost_since = float(stamp_s)
            elif self.streaming.frames_seen and stamp_s - self._hand_lost_since > self.config.hand_lost_reset_s:
                self.reset(f"the hand was lost for more than {self.config.hand_lost_reset_s} s")
                self._last_stamp = float(stamp_s)
                self._hand_lost_since = float(stamp_s)
            return None
        self._hand_lost_since = None

        started = time.perf_counter()
        box = self.crop_tracker.update(rgb.shape[:2], project_edge_coordinates(vertices, matrix))
        inputs = preprocess_frame(rgb, depth, matrix, box, tuple(self.model.config.image_size), self.config.depth_resize)
        frame = {
            "rgb": inputs.rgb,
            "depth_m": inputs.depth_m,
            "intrinsics": inputs.intrinsics,
            "joints": torch.from_numpy(joints),
            "vertices": torch.from_numpy(vertices),
            "valid": True,
        }
        if self.uv_geometry is not None:
            window = {key: value[None, None] for key, value in frame.items() if isinstance(value, torch.Tensor)}
            frame["uv_geometry"] = self.uv_geometry(window)[0, 0]
        prepared = time.perf_counter()

        pressure = self.streaming.push(frame)  # (1, Hu, Wu) on the model's device
        uv_map = pressure[0].float().cpu().numpy()
        inferred = time.perf_counter()

        vertex_pressure = np.clip(self.atlas.uv_to_vertex(uv_map.astype(np.float64)), 0.0, None)
        vertices64 = vertices.astype(np.float64)
        contact = summarize_contact(vertex_pressure, vertices64, self.atlas.vertex_area(vertices64),
                                    self.config.contact_threshold_kpa)
        uv_force = float(self.atlas.total_force(uv_map.astype(np.float64), vertices64))
        finished = time.perf_counter()
        return LiveEstimate(
            stamp_s=float(stamp_s),
            uv_pressure_kpa=uv_map.astype(np.float32),
            uv_total_force_n=uv_force,
            contact=contact,
            crop_box=box,
            window_frames=min(self.streaming.frames_seen, self.window_length),
            timings_s={"preprocess": prepared - started, "inference": inferred - prepared, "contact": finished - inferred},
        )

    def _check_mesh(self, vertices, joints) -> tuple[np.ndarray, np.ndarray]:
        vertices = np.asarray(vertices, dtype=np.float32)
        expected = self.hand.num_vertices
        if vertices.shape != (expected, 3):
            raise DataError(f"hand mesh has vertices of shape {tuple(vertices.shape)}; the model's hand "
                            f"{self.hand.topology_id} has ({expected}, 3)")
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


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device`` of a user's string ("cpu", "cuda", "cuda:1", "mps", "auto" = CUDA if
    available, else CPU), checked to exist on this machine.

    Raises:
        ConfigError: an unknown device string, or an accelerator this machine does not have.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:<index>', 'mps' or 'auto'. Got {device!r} ({error})") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was requested but this machine has no usable CUDA device "
                              "(torch.cuda.is_available() is False); use device 'cpu'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif resolved.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r} was requested but MPS is not available")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:<index>', 'mps' or 'auto'. Got {device!r}")
    return resolved


def release_accelerator_memory() -> None:
    """Return cached CUDA memory to the driver (after moving a model off the GPU)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
