"""The one interface every data source (synthetic, EgoPressure) exposes.

A source is a list of sequences; a sequence yields :class:`FrameRecord` objects lazily, so a
data set larger than RAM is read frame by frame. Clip windows, training, evaluation and the
rosbag tools consume only this interface.

Conventions (all sources convert to them):
- camera frame: the colour camera's optical frame (+x right, +y down, +z forward), metres;
- images: RGB ``uint8`` (H, W, 3); depth ``float32`` (H, W) in metres aligned to the colour
  image, 0 where the sensor has no reading;
- pressure: kPa, ``float32``, >= 0; UV maps are (H_uv, W_uv) with row 0 at v = 1;
- MANO parameters: axis-angle radians, 45 full pose values (not PCA), 10 betas, metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

import numpy as np

HAND_RIGHT = "right"
HAND_LEFT = "left"


@dataclass(frozen=True)
class ManoParams:
    """MANO-format hand parameters for one frame (camera frame)."""

    global_orient: np.ndarray  # (3,) axis-angle, radians
    hand_pose: np.ndarray  # (45,) axis-angle per joint, radians
    betas: np.ndarray  # (10,)
    transl: np.ndarray  # (3,) metres


@dataclass(frozen=True)
class FrameRecord:
    """Everything known about one frame. Optional fields are ``None`` when a source lacks them."""

    sequence: str
    index: int  # 0-based position in the sequence
    timestamp_s: float
    rgb: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray  # (H, W) float32, metres, 0 = no reading
    intrinsics: np.ndarray  # (3, 3) float64 pinhole K of the colour camera
    hand_side: str  # HAND_RIGHT or HAND_LEFT
    has_annotation: bool  # False: the hand fields below are not valid for this frame
    mano: ManoParams | None
    vertices: np.ndarray | None  # (V, 3) float32, metres, camera frame
    joints: np.ndarray | None  # (21, 3) float32, metres, camera frame, OpenPose hand order
    uv_pressure_kpa: np.ndarray | None  # (H_uv, W_uv) float32
    vertex_pressure_kpa: np.ndarray | None = None  # (V,) float32
    pad_pressure_kpa: np.ndarray | None = None  # (H_pad, W_pad) float32, pad-plane image
    camera_from_world: np.ndarray | None = None  # (4, 4) float64 extrinsics (world = pad)
    extras: dict = field(default_factory=dict)


class SequenceSource(Protocol):
    """A sequence of frames read lazily."""

    name: str
    fps: float
    hand_model: str  # name of the hand model the vertices follow (topology)
    uv_layout: str  # name of the UV layout of uv_pressure_kpa

    def __len__(self) -> int: ...

    def frame(self, index: int) -> FrameRecord: ...

    def __iter__(self) -> Iterator[FrameRecord]: ...


class DatasetSource(Protocol):
    """A collection of sequences, e.g. one split of a data set."""

    def sequences(self) -> Sequence[SequenceSource]: ...
