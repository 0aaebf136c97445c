"""Inputs and outputs of hand-mesh estimation: one RGB-D frame in, one hand mesh out.

Conventions are those of :mod:`egopress_core.data.records`: camera optical frame (+x right,
+y down, +z forward), metres, RGB ``uint8``, depth ``float32`` metres aligned to the colour image
with 0 where the sensor has no reading, axis-angle radians, 45 full pose values relative to the
flat hand, 10 betas. Pixel coordinates follow OpenCV: ``(u, v)`` with u right and v down,
integer values at pixel centres. Keypoints are in OpenPose / MediaPipe hand order (wrist; thumb
CMC, MCP, IP, tip; index MCP, PIP, DIP, tip; middle; ring; little), the order of
``HandOutput.joints`` and ``msg/HandMesh.msg``.

Every constructor here validates its arrays and raises :class:`~egopress_core.errors.DataError`
naming the field, so that bad input never reaches torch or smplx.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from egopress_core.data.records import HAND_LEFT, HAND_RIGHT, FrameRecord, ManoParams
from egopress_core.errors import DataError

NUM_KEYPOINTS = 21
HAND_SIDES = (HAND_RIGHT, HAND_LEFT)
# OpenPose rows of the palm keypoints that do not move with the fingers: wrist and the four
# long-finger MCPs (the thumb CMC moves with the thumb).
PALM_KEYPOINTS = (0, 5, 9, 13, 17)


def _as_float_array(value, name: str, shape: tuple[int | None, ...], allow_nan: bool) -> np.ndarray:
    """``value`` as a float64 array of ``shape`` (None = any size), or DataError naming ``name``."""
    if isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as error:
            raise DataError(f"{name} must be an array of shape {_shape_text(shape)}; got {type(value).__name__} ({error})") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise DataError(f"{name} must be a numeric array of shape {_shape_text(shape)}; got dtype {array.dtype}")
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        raise DataError(f"{name} must have shape {_shape_text(shape)}; got {tuple(array.shape)}")
    array = array.astype(np.float64)
    finite = np.isfinite(array)
    if allow_nan:
        if np.isinf(array).any():
            raise DataError(f"{name} holds infinite values (use NaN for a missing entry)")
    elif not finite.all():
        raise DataError(f"{name} holds NaN or infinite values")
    return array


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("N" if size is None else str(size) for size in shape) + ")"


def validate_intrinsics(intrinsics, name: str = "intrinsics") -> np.ndarray:
    """(3, 3) float64 pinhole matrix ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` with fx, fy > 0.

    Raises:
        DataError: wrong shape, non-finite entries, non-positive focal lengths or a last row
            other than ``[0, 0, 1]``.
    """
    matrix = _as_float_array(intrinsics, name, (3, 3), allow_nan=False)
    if not (matrix[0, 0] > 0 and matrix[1, 1] > 0):
        raise DataError(f"{name} must have positive focal lengths fx = K[0, 0], fy = K[1, 1]; got {matrix[0, 0]}, {matrix[1, 1]}")
    if matrix[1, 0] != 0 or not np.array_equal(matrix[2], [0.0, 0.0, 1.0]):
        raise DataError(f"{name} must be an upper-triangular pinhole matrix with last row [0, 0, 1]; got {matrix.tolist()}")
    return matrix


def validate_hand_side(side, name: str = "hand_side") -> str:
    if side not in HAND_SIDES:
        raise DataError(f"{name} must be one of {HAND_SIDES}; got {side!r}")
    return str(side)


@dataclass(frozen=True)
class HandKeypoints:
    """21 keypoints of one hand from another tracker or a data set, OpenPose order.

    At least one of ``points_3d`` / ``points_2d`` must be given. A missing keypoint is NaN (all
    its coordinates) or has confidence 0.

    Attributes:
        points_3d: (21, 3) metres, camera frame, or None.
        points_2d: (21, 2) pixels (u right, v down) in the frame's colour image, or None.
        confidence: (21,) in [0, 1] (weights of the keypoints in the fit), or None for all 1.
        hand_side: "right" / "left" if the tracker says which hand it is, else None.
    """

    points_3d: np.ndarray | None = None
    points_2d: np.ndarray | None = None
    confidence: np.ndarray | None = None
    hand_side: str | None = None

    def __post_init__(self) -> None:
        if self.points_3d is None and self.points_2d is None:
            raise DataError("HandKeypoints needs points_3d (21, 3) or points_2d (21, 2); both are None")
        if self.points_3d is not None:
            object.__setattr__(self, "points_3d", _as_float_array(self.points_3d, "keypoints.points_3d", (NUM_KEYPOINTS, 3), True))
        if self.points_2d is not None:
            object.__setattr__(self, "points_2d", _as_float_array(self.points_2d, "keypoints.points_2d", (NUM_KEYPOINTS, 2), True))
        if self.confidence is not None:
            confidence = _as_float_array(self.confidence, "keypoints.confidence", (NUM_KEYPOINTS,), False)
            if (confidence < 0).any() or (confidence > 1).any():
                raise DataError(f"keypoints.confidence must lie in [0, 1]; got values in [{confidence.min()}, {confidence.max()}]")
            object.__setattr__(self, "confidence", confidence)
        if self.hand_side is not None:
            validate_hand_side(self.hand_side, "keypoints.hand_side")

    def weights(self) -> np.ndarray:
        """(21,) confidence, 1 where none was given."""
        return np.ones(NUM_KEYPOINTS) if self.confidence is None else self.confidence.copy()


@dataclass(frozen=True)
class RGBDFrame:
    """One aligned RGB-D frame.

    Attributes:
        rgb: (H, W, 3) uint8, or None where only keypoints are at hand (``keypoints`` backend).
        depth_m: (H, W) float32 metres aligned to ``rgb``, 0 = no reading, or None. NaN,
            infinite and negative readings are holes too (they become 0).
        intrinsics: (3, 3) pinhole matrix of the colour camera.
        stamp: capture time, seconds.
        keypoints: externally given keypoints (``keypoints`` backend), or None.
        source_record: the data set frame this came from (``ground_truth`` backend), or None.
    """

    rgb: np.ndarray | None
    depth_m: np.ndarray | None
    intrinsics: np.ndarray
    stamp: float = 0.0
    keypoints: HandKeypoints | None = None
    source_record: FrameRecord | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "intrinsics", validate_intrinsics(self.intrinsics, "frame.intrinsics"))
        if not isinstance(self.stamp, (int, float, np.integer, np.floating)) or not math.isfinite(float(self.stamp)):
            raise DataError(f"frame.stamp must be a finite number of seconds; got {self.stamp!r}")
        object.__setattr__(self, "stamp", float(self.stamp))
        image_size = None
        if self.rgb is not None:
            rgb = self.rgb
            if not isinstance(rgb, np.ndarray):
                raise DataError(f"frame.rgb must be a numpy array (H, W, 3) uint8; got {type(rgb).__name__}")
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
                raise DataError(f"frame.rgb must have shape (H, W, 3); got {tuple(rgb.shape)}")
            if rgb.dtype != np.uint8:
                raise DataError(f"frame.rgb must be uint8 (0-255); got dtype {rgb.dtype}")
            image_size = rgb.shape[:2]
        if self.depth_m is not None:
            depth = self.depth_m
            if not isinstance(depth, np.ndarray):
                raise DataError(f"frame.depth_m must be a numpy array (H, W) float32 metres; got {type(depth).__name__}")
            if depth.ndim != 2 or depth.shape[0] < 1 or depth.shape[1] < 1:
                raise DataError(f"frame.depth_m must have shape (H, W); got {tuple(depth.shape)}")
            if not np.issubdtype(depth.dtype, np.floating):
                raise DataError(
                    f"frame.depth_m must be floating-point metres; got dtype {depth.dtype} "
                    "(convert sensor millimetres with depth.astype(np.float32) / 1000)"
                )
            if image_size is not None and depth.shape != image_size:
                raise DataError(f"frame.depth_m {tuple(depth.shape)} is not aligned to frame.rgb {tuple(image_size)}")
            depth = depth.astype(np.float32, copy=True)
            depth[~np.isfinite(depth) | (depth < 0)] = 0.0
            object.__setattr__(self, "depth_m", depth)
        if self.keypoints is not None and not isinstance(self.keypoints, HandKeypoints):
            raise DataError(f"frame.keypoints must be HandKeypoints or None; got {type(self.keypoints).__name__}")
        if self.source_record is not None and not isinstance(self.source_record, FrameRecord):
            raise DataError(f"frame.source_record must be a FrameRecord or None; got {type(self.source_record).__name__}")

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(H, W) of the images, or None without images."""
        if self.rgb is not None:
            return tuple(self.rgb.shape[:2])  # type: ignore[return-value]
        if self.depth_m is not None:
            return tuple(self.depth_m.shape)  # type: ignore[return-value]
        return None

    @classmethod
    def from_record(cls, record: FrameRecord, keypoints: HandKeypoints | None = None) -> "RGBDFrame":
        """The frame of a data set record (its images, camera, time), carrying the record itself
        for the ``ground_truth`` backend."""
        if not isinstance(record, FrameRecord):
            raise DataError(f"from_record needs a FrameRecord; got {type(record).__name__}")
        return cls(
            rgb=record.rgb,
            depth_m=record.depth_m,
            intrinsics=record.intrinsics,
            stamp=record.timestamp_s,
            keypoints=keypoints,
            source_record=record,
        )


@dataclass(frozen=True)
class HandMeshEstimate:
    """A MANO-format hand mesh estimated for one frame (fields of ``msg/HandMesh.msg``).

    Attributes:
        mano: parameters in the camera frame; ``hand_pose`` is relative to the flat hand, so
            ``HandModel(flat_hand_mean=True).forward`` of them gives ``vertices``/``joints``.
        vertices: (V, 3) float32 metres, camera frame, in the order of ``topology_id``.
        joints: (21, 3) float32 metres, camera frame, OpenPose order.
        confidence: in [0, 1]; 0 means no hand (geometry invalid).
        estimator: backend name ("mediapipe", "keypoints", "ground_truth").
        hand_side: "right" or "left".
        hand_model: name of the hand model the parameters drive.
        topology_id: ``"<hand_model>:<V>v:<sha1 of faces, 12 hex>"``.
        stamp: the source frame's stamp, seconds.
        observed_keypoints: (21, 3) metres, the 3D keypoints the fit used (NaN = unused), or None.
        keypoint_residual_m: (21,) distance of each fitted joint to its observed keypoint
            (NaN = unobserved), or None.
        fit_time_s: wall time of detection + fitting for this frame, seconds.
        iterations: optimiser iterations spent on this frame (0 for passthrough).
    """

    mano: ManoParams
    vertices: np.ndarray
    joints: np.ndarray
    confidence: float
    estimator: str
    hand_side: str
    hand_model: str
    topology_id: str
    stamp: float = 0.0
    observed_keypoints: np.ndarray | None = None
    keypoint_residual_m: np.ndarray | None = None
    fit_time_s: float = 0.0
    iterations: int = 0

    def __post_init__(self) -> None:
        validate_hand_side(self.hand_side, "estimate.hand_side")
        if not 0.0 <= float(self.confidence) <= 1.0:
            raise DataError(f"estimate.confidence must lie in [0, 1]; got {self.confidence}")
        vertices = np.asarray(self.vertices)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise DataError(f"estimate.vertices must have shape (V, 3); got {tuple(vertices.shape)}")
        joints = np.asarray(self.joints)
        if joints.shape != (NUM_KEYPOINTS, 3):
            raise DataError(f"estimate.joints must have shape (21, 3); got {tuple(joints.shape)}")
        for name, size in (("global_orient", 3), ("hand_pose", 45), ("betas", 10), ("transl", 3)):
            value = np.asarray(getattr(self.mano, name))
            if value.shape != (size,):
                raise DataError(f"estimate.mano.{name} must have shape ({size},); got {tuple(value.shape)}")
        object.__setattr__(self, "vertices", vertices.astype(np.float32, copy=False))
        object.__setattr__(self, "joints", joints.astype(np.float32, copy=False))
        object.__setattr__(self, "confidence", float(self.confidence))

    @property
    def global_orient(self) -> np.ndarray:
        """(3,) axis-angle of the wrist in the camera frame."""
        return self.mano.global_orient

    @property
    def hand_pose(self) -> np.ndarray:
        """(45,) axis-angle of the 15 finger joints, MANO order, relative to the flat hand."""
        return self.mano.hand_pose

    @property
    def betas(self) -> np.ndarray:
        """(10,) shape coefficients."""
        return self.mano.betas

    @property
    def transl(self) -> np.ndarray:
        """(3,) translation of the model root, metres, camera frame."""
        return self.mano.transl

    @property
    def has_hand(self) -> bool:
        return self.confidence > 0.0


def is_hand(estimate: HandMeshEstimate | None) -> bool:
    """True if an estimator's answer holds a hand (neither None nor confidence 0)."""
    return estimate is not None and estimate.has_hand
