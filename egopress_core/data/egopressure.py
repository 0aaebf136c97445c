"""Reader for the EgoPressure data set in its Hugging Face release layout.

``docs/egopressure_format.md`` describes the files and the reader's assumptions in full.

Layout (``root`` is a local download of ``eth-siplab/EgoPressure``)::

    configs/<participant>/<sequence>.json                    calibration + participant metadata
    configs/<participant>/<sequence>_k4a/cam-<c>.k4a_calibration.json   Azure Kinect factory calib.
    data/<participant>/<sequence>/cam-<c>.color.parquet      JPEG bytes, undistorted
    data/<participant>/<sequence>/cam-<c>.depth.parquet      16-bit PNG, mm, depth-sensor frame
    data/<participant>/<sequence>/cam-<c>.mask.parquet       hand masks (PNG), optional here
    data/<participant>/<sequence>/pressure.parquet           force, pressure_map, pressure_map_range
    data/<participant>/<sequence>/annotation.parquet         MANO mesh/params, ego pose, flags

Every shard has one row per frame and an integer ``frame`` column (frames start at 1). Image
columns are structs ``{bytes, path}`` holding the encoded file (plain binary is accepted too);
array columns are flat float lists. Camera ``"0"`` in the config is the egocentric camera, whose
shards use the token ``d``; the static cameras ``"1"``..``"7"`` use their number.

What this reader produces (see :mod:`egopress_core.data.records` for the conventions):

- RGB from the colour shard, optionally decoded at 1/2, 1/4 or 1/8 size in the JPEG decoder
  (``image_scale``), with the intrinsics scaled to match.
- Depth registered to the colour image: every valid depth pixel is back-projected through the
  depth camera's (distorted, Brown-Conrady) model, moved into the colour camera with the
  depth-to-colour transform, projected with the colour pinhole intrinsics and z-buffered (nearest
  surface wins), then optionally splatted with a min filter so the sparser depth samples cover
  the denser colour grid. Metres, float32, 0 = no reading.
- Vertices, joints, MANO parameters and the vertex normals moved from the world (pad) frame into
  the colour camera frame with the per-frame ego pose ``P_cam = ego_R @ P_world + ego_T`` (a
  static camera uses its fixed config ``ModelViewMatrix``, translation in millimetres).
- UV pressure in kPa: ``sensel_counts_to_kpa(clip(pressure_map, 0) * pressure_map_range[1])``.
- Pad pressure in kPa from the raw ``force`` grid (105 x 185 Sensel counts).

Reading is lazy: opening a data set touches no parquet file; a sequence's length and
annotation flags read only the ``frame`` / ``has_annotation`` columns; a frame read fetches the
parquet row group that holds it (the last ``_ROW_GROUP_CACHE`` groups per shard stay cached, so
consecutive frames are cheap) and decodes only that frame's JPEG and depth PNG. File handles are
reopened in each process (``DataLoader`` workers) and dropped when pickled.

Facts taken from the official toolkit (github.com/eth-siplab/EgoPressure: ``docs/DATA.md``,
``egopressure/registration.py``, ``annotation.py``, ``constants.py``, ``senselpad.py``):

- vertices, joints, ``transl`` are metres in the world frame (pad plane z = 0, +z down);
  ``ego_R``/``ego_T`` map world -> ego camera, metres;
- ``pressure_map`` is normalised; ``map * pressure_map_range[1]`` recovers Sensel counts;
- ``full_pose`` is 16 x 3 axis-angle, global orientation first, flat-hand convention (MANO's
  ``hands_mean`` is not added); ``betas`` is stored as 1 x 10;
- depth maps are 16-bit PNG millimetres in the depth-sensor frame (512 x 512, WFOV 2x2 binned,
  distorted); the depth intrinsics are in the k4a factory calibration: the camera whose
  ``Location`` ends in ``D0`` has normalised ``ModelParameters`` ordered
  (cx, cy, fx, fy, k1..k6, codx, cody, p2, p1, metric_radius); each camera's ``Rt`` maps points
  from the D0 (reference) frame into that camera, translation in metres, so the ``PV0`` entry is
  depth -> colour;
- the config's ``k1..k6, p1, p2`` describe the colour lens before undistortion: released
  colour images are plain pinhole, so only ``fx, fy, cx, cy`` are used;
- joint order: 0 wrist, then thumb, index, middle, ring, little, each base -> tip (OpenPose).

Assumptions where the public record is silent (each is one constant or parameter below):

- ``DEPTH_PIXEL_CENTER_OFFSET``: normalised k4a intrinsics are converted to pixels the way the
  Azure Kinect SDK does (``cx_px = cx * W - 0.5``: raw calibration is 0-cornered); the official
  toolkit omits the half pixel.
- ``depth_to_color="k4a"`` (default) takes depth -> colour from the k4a ``PV0`` ``Rt`` (what the
  official toolkit uses, and the same factory calibration as the depth intrinsics);
  ``"config"`` takes the sequence config's ``DepthToColor`` 4 x 4, assumed to map depth-frame
  points into the colour frame, with its translation unit inferred by
  :func:`depth_to_color_metres` (the Azure Kinect depth-colour baseline is about 32 mm, so a
  translation longer than ``_MAX_BASELINE_M`` means millimetres).
- MANO parameters in the camera frame: ``global_orient_cam = ego_R @ R(global_orient)``; the
  translation must also absorb the rotation about the root joint J0, and J0 (shape-dependent) is
  recovered as ``joint_position[0] - transl`` because the wrist is MANO's root joint.
- UV maps keep the stored row order: row 0 at v = 1, as the authors' visualiser draws the MANO
  UV layout (``y = (1 - v) * size``).
- ``SPLITS``: the participant-level split (15 train / 6 test) is not listed in the public
  toolkit; by default ``p_001``..``p_015`` are train and ``p_016``..``p_021`` test
  (:data:`TRAIN_PARTICIPANTS`, :data:`TEST_PARTICIPANTS`). Pass ``splits=`` (or
  ``participants=``) to use another split.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from egopress_core.data.records import HAND_LEFT, HAND_RIGHT, FrameRecord, ManoParams
from egopress_core.data.sensel import (
    PAD_X_RANGE_M,
    PAD_Y_RANGE_M,
    SENSEL_GRID_SHAPE,
    sensel_counts_to_kpa,
)
from egopress_core.errors import ConfigError, DataError

FPS = 30.0
HAND_MODEL = "mano"
# Named like egopress_core.hand.hand_model names an atlas: the stem of MANO's UV obj per side
# (MANO_UV_right.obj / MANO_UV_left.obj); EgoPressure's maps are 224 x 224, row 0 at v = 1.
UV_LAYOUTS = {HAND_RIGHT: "MANO_UV_right", HAND_LEFT: "MANO_UV_left"}
NUM_VERTICES = 778

TRAIN_PARTICIPANTS: tuple[str, ...] = tuple(f"p_{i:03d}" for i in range(1, 16))
TEST_PARTICIPANTS: tuple[str, ...] = tuple(f"p_{i:03d}" for i in range(16, 22))
SPLITS: dict[str, tuple[str, ...]] = {"train": TRAIN_PARTICIPANTS, "test": TEST_PARTICIPANTS}
SPLIT_NAMES = ("train", "test", "all")

CAMERA_KEYS = ("0", "1", "2", "3", "4", "5", "6", "7")  # config keys; "0" is the ego camera

FRAME_COLUMN = "frame"
COLOR_COLUMN = "image"
DEPTH_COLUMN = "depth"
MASK_COLUMN = "mask"
ANNOTATION_COLUMNS = (
    FRAME_COLUMN, "has_annotation", "hand_side", "ego_R", "ego_T",
    "vertices", "joint_position", "betas", "full_pose", "transl",
)
ANNOTATION_OPTIONAL_COLUMNS = ("normals", "displacement")
PRESSURE_COLUMNS = (FRAME_COLUMN, "force", "pressure_map", "pressure_map_range")

ARRAY_SHAPES: dict[str, tuple[int, ...]] = {
    "vertices": (NUM_VERTICES, 3),
    "joint_position": (21, 3),
    "normals": (NUM_VERTICES, 3),
    "displacement": (NUM_VERTICES,),
    "betas": (10,),
    "full_pose": (48,),
    "transl": (3,),
    "ego_R": (3, 3),
    "ego_T": (3,),
    "force": SENSEL_GRID_SHAPE,
    "pressure_map": (224, 224),
    "pressure_map_range": (2,),
}

# Raw k4a intrinsics are 0-cornered (pixel (0, 0)'s top-left corner is the origin); the SDK
# subtracts half a pixel to get OpenCV's pixel-centred convention.
DEPTH_PIXEL_CENTER_OFFSET = 0.5
_MAX_BASELINE_M = 0.5
_IMAGE_SCALES = (1.0, 0.5, 0.25, 0.125)
_DEPTH_TO_COLOR_SOURCES = ("k4a", "config")
_ROW_GROUP_CACHE = 2  # decoded row groups kept per shard: consecutive frames hit the cache


def camera_token(camera_key: str) -> str:
    """Shard-file token of a config camera key: ``"0"`` (ego) -> ``"d"``, others unchanged."""
    return "d" if camera_key == "0" else camera_key


# ----------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class DepthCameraModel:
    """Azure Kinect depth camera (Brown-Conrady with centre of distortion), pixel units."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    radial: tuple[float, float, float, float, float, float]  # k1..k6 (rational: (1+k1..)/(1+k4..))
    p1: float
    p2: float
    codx: float = 0.0
    cody: float = 0.0

    @classmethod
    def from_k4a(cls, camera_entry: dict, width: int, height: int, source: str) -> "DepthCameraModel":
        """Build from the ``...D0`` entry of a k4a calibration JSON for a ``width x height`` map."""
        try:
            params = [float(p) for p in camera_entry["Intrinsics"]["ModelParameters"]]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{source}: depth camera entry has no numeric "
                            f"Intrinsics.ModelParameters ({error})") from error
        if len(params) < 14:
            raise DataError(f"{source}: Intrinsics.ModelParameters has {len(params)} values, "
                            "expected at least 14 (cx, cy, fx, fy, k1..k6, codx, cody, p2, p1)")
        return cls(
            width=width, height=height,
            cx=params[0] * width - DEPTH_PIXEL_CENTER_OFFSET,
            cy=params[1] * height - DEPTH_PIXEL_CENTER_OFFSET,
            fx=params[2] * width, fy=params[3] * height,
            radial=tuple(params[4:10]), codx=params[10], cody=params[11],
            p2=params[12], p1=params[13],
        )

    def distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ideal normalised coordinates -> distorted normalised coordinates (the k4a model).

        Args:
            x, y: (...,) undistorted normalised image coordinates (X/Z, Y/Z).
        Returns:
            (xd, yd): (...,) distorted normalised coordinates; pixels are ``fx * xd + cx``.
        """
        k1, k2, k3, k4, k5, k6 = self.radial
        xp, yp = x - self.codx, y - self.cody
        r2 = xp * xp + yp * yp
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        xd = xp * radial + (r2 + 2 * xp * xp) * self.p2 + 2 * xp * yp * self.p1 + self.codx
        yd = yp * radial + (r2 + 2 * yp * yp) * self.p1 + 2 * xp * yp * self.p2 + self.cody
        return xd, yd

    def undistort(self, xd: np.ndarray, yd: np.ndarray, iterations: int = 20
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Invert :meth:`distort` by fixed-point iteration; non-converged points become NaN.

        Args:
            xd, yd: (...,) distorted normalised coordinates.
        Returns:
            (x, y): (...,) undistorted normalised coordinates, NaN where the inversion failed
            (the far periphery of the wide field of view, beyond the model's valid radius).
        """
        k1, k2, k3, k4, k5, k6 = self.radial
        x, y = xd.copy(), yd.copy()
        with np.errstate(all="ignore"):
            for _ in range(iterations):
                xp, yp = x - self.codx, y - self.cody
                r2 = xp * xp + yp * yp
                radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
                dx = (r2 + 2 * xp * xp) * self.p2 + 2 * xp * yp * self.p1
                dy = (r2 + 2 * yp * yp) * self.p1 + 2 * xp * yp * self.p2
                x = (xd - self.codx - dx) / radial + self.codx
                y = (yd - self.cody - dy) / radial + self.cody
            check_x, check_y = self.distort(x, y)
            # 0.05 depth pixels of residual: anything larger did not converge
            tolerance = 0.05 / max(self.fx, self.fy)
            bad = ~(np.abs(check_x - xd) < tolerance) | ~(np.abs(check_y - yd) < tolerance)
        x[bad] = np.nan
        y[bad] = np.nan
        return x, y

    def pixel_rays(self) -> np.ndarray:
        """Rays through every depth pixel centre, scaled to z = 1 (cached per camera model).

        Returns:
            (H, W, 3) float64, read-only; NaN where the distortion model could not be inverted.
        """
        return _pixel_rays(self)


@lru_cache(maxsize=8)
def _pixel_rays(model: DepthCameraModel) -> np.ndarray:
    # The recordings share a few physical depth cameras, so sequences reuse the grid.
    v, u = np.mgrid[0:model.height, 0:model.width].astype(np.float64)
    x, y = model.undistort((u - model.cx) / model.fx, (v - model.cy) / model.fy)
    rays = np.stack([x, y, np.ones_like(x)], axis=-1)
    rays.flags.writeable = False
    return rays


def depth_to_color_metres(matrix: np.ndarray) -> np.ndarray:
    """A 4 x 4 depth -> colour transform with its translation in metres.

    The config's ``DepthToColor`` does not state its unit. Azure Kinect's depth-colour baseline is
    about 32 mm, so a translation longer than ``_MAX_BASELINE_M`` can only be millimetres.

    Args:
        matrix: (4, 4) rigid transform, translation in metres or millimetres.
    Returns:
        (4, 4) float64, translation in metres.
    """
    out = np.array(matrix, dtype=np.float64)
    if np.linalg.norm(out[:3, 3]) > _MAX_BASELINE_M:
        out[:3, 3] /= 1000.0
    return out


def _rigid_from_rt(entry: dict, source: str) -> np.ndarray:
    try:
        rotation = np.asarray(entry["Rt"]["Rotation"], dtype=np.float64).reshape(3, 3)
        translation = np.asarray(entry["Rt"]["Translation"], dtype=np.float64).reshape(3)
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{source}: camera {entry.get('Location', '?')!r} has no valid "
                        f"Rt.Rotation (9 values) / Rt.Translation (3 values) ({error})") from error
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = translation
    return transform


@dataclass(frozen=True)
class ColorCameraCalibration:
    """Pinhole intrinsics of an undistorted colour camera plus its config ``DepthToColor``."""

    intrinsics: np.ndarray  # (3, 3) float64
    image_size: tuple[int, int] | None  # (width, height) from the config, if given
    depth_to_color: np.ndarray | None  # (4, 4) as stored (unit unknown) or None
    # (4, 4) world -> camera, metres, of a static camera (config ModelViewMatrix, stored in mm);
    # None for the ego camera, whose pose changes per frame
    camera_from_world: np.ndarray | None = None

    @classmethod
    def from_config(cls, config: dict, camera_key: str, source: str) -> "ColorCameraCalibration":
        try:
            entry = config["camera_calibrations"][camera_key]
        except (KeyError, TypeError) as error:
            raise DataError(f"{source}: no camera_calibrations[{camera_key!r}] entry") from error
        try:
            fx, fy, cx, cy = (float(entry[key]) for key in ("fx", "fy", "cx", "cy"))
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{source}: camera_calibrations[{camera_key!r}] needs numeric "
                            f"fx, fy, cx, cy ({error!r})") from error
        size = None
        if "ImageSizeX" in entry and "ImageSizeY" in entry:
            size = (int(entry["ImageSizeX"]), int(entry["ImageSizeY"]))
        depth_to_color = None
        if entry.get("DepthToColor") is not None:
            try:
                depth_to_color = np.asarray(entry["DepthToColor"], dtype=np.float64).reshape(4, 4)
            except (TypeError, ValueError) as error:
                raise DataError(f"{source}: camera_calibrations[{camera_key!r}].DepthToColor "
                                "is not a 4 x 4 matrix") from error
        camera_from_world = None
        if entry.get("ModelViewMatrix") is not None:
            try:
                camera_from_world = np.asarray(entry["ModelViewMatrix"],
                                               dtype=np.float64).reshape(4, 4)
            except (TypeError, ValueError) as error:
                raise DataError(f"{source}: camera_calibrations[{camera_key!r}].ModelViewMatrix "
                                "is not a 4 x 4 matrix") from error
            camera_from_world[:3, 3] /= 1000.0  # millimetres in the release
        intrinsics = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return cls(intrinsics=intrinsics, image_size=size, depth_to_color=depth_to_color,
                   camera_from_world=camera_from_world)


def reproject_depth_to_color(
    depth_mm: np.ndarray,
    depth_rays: np.ndarray,
    color_from_depth: np.ndarray,
    color_intrinsics: np.ndarray,
    color_size: tuple[int, int],
    splat_radius: int = 0,
) -> np.ndarray:
    """Register a depth-sensor map to a colour camera's pixel grid with a z-buffer.

    Args:
        depth_mm: (Hd, Wd) uint16 depth along the depth camera's optical axis, mm; 0 = no reading.
        depth_rays: (Hd, Wd, 3) rays through the depth pixels scaled to z = 1 (NaN = invalid),
            e.g. :meth:`DepthCameraModel.pixel_rays`.
        color_from_depth: (4, 4) rigid transform depth frame -> colour frame, metres.
        color_intrinsics: (3, 3) pinhole K of the (undistorted) colour image.
        color_size: (W, H) of the colour image.
        splat_radius: each sample also covers the (2r+1)^2 pixels around it (nearest surface
            wins), filling the gaps when depth samples are sparser than colour pixels.
    Returns:
        (H, W) float32 depth along the colour camera's optical axis, metres; 0 = no sample.
    """
    width, height = color_size
    ray_x, ray_y = depth_rays[..., 0], depth_rays[..., 1]
    valid = (depth_mm > 0) & np.isfinite(ray_x)
    z_depth = depth_mm[valid].astype(np.float64) * 1e-3
    x_depth, y_depth = ray_x[valid] * z_depth, ray_y[valid] * z_depth
    # component-wise: a (N, 3) gather and matmul cost ~10x more for N ~ 260k
    (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = color_from_depth[:3, :3]
    t0, t1, t2 = color_from_depth[:3, 3]
    x = r00 * x_depth + r01 * y_depth + r02 * z_depth + t0
    y = r10 * x_depth + r11 * y_depth + r12 * z_depth + t1
    z = r20 * x_depth + r21 * y_depth + r22 * z_depth + t2
    front = z > 1e-6
    x, y, z = x[front], y[front], z[front]
    u = color_intrinsics[0, 0] * x / z + color_intrinsics[0, 1] * y / z + color_intrinsics[0, 2]
    v = color_intrinsics[1, 1] * y / z + color_intrinsics[1, 2]
    # pixel (i, j) covers [j - 0.5, j + 0.5) x [i - 0.5, i + 0.5): round to the nearest centre
    ui = np.floor(u + 0.5).astype(np.int64)
    vi = np.floor(v + 0.5).astype(np.int64)
    inside = (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height)
    zbuffer = np.full(height * width, np.inf)
    np.minimum.at(zbuffer, vi[inside] * width + ui[inside], z[inside])
    zbuffer = zbuffer.reshape(height, width)
    if splat_radius > 0:
        # A min filter of the point z-buffer equals splatting each point as a square and
        # z-buffering the squares.
        from scipy.ndimage import minimum_filter

        zbuffer = minimum_filter(zbuffer, size=2 * splat_radius + 1, mode="constant", cval=np.inf)
    zbuffer[~np.isfinite(zbuffer)] = 0.0
    return zbuffer.astype(np.float32)


def auto_splat_radius(color_focal_px: float, depth_focal_px: float) -> int:
    """Splat radius that closes the gaps between neighbouring depth samples in the colour image.

    Neighbouring depth pixels land about ``color_focal / depth_focal`` colour pixels apart; a
    square of half-width ``ceil((spacing - 1) / 2)`` per sample covers that spacing.
    """
    spacing = color_focal_px / max(depth_focal_px, 1e-9)
    return max(0, math.ceil((spacing - 1.0) / 2.0))


def _rotation_to_axis_angle(rotation: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(rotation).as_rotvec()


def _axis_angle_to_rotation(axis_angle: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(axis_angle).as_matrix()


# ----------------------------------------------------------------------------- parquet shards


class _ParquetShard:
    """One parquet file read lazily, by row group, with the ``frame`` column as the row index.

    The ``pyarrow.ParquetFile`` handle and the row-group cache are per process: they are dropped
    when pickled and reopened after a fork (``DataLoader`` workers).
    """

    def __init__(self, path: Path):
        self.path = path
        self._pid: int | None = None
        self._file = None
        self._locations: dict[int, tuple[int, int]] | None = None
        self._frames: np.ndarray | None = None
        self._groups: OrderedDict = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_pid=None, _file=None, _groups=OrderedDict())
        return state

    def exists(self) -> bool:
        return self.path.is_file()

    @property
    def file(self):
        if self._file is None or self._pid != os.getpid():
            import pyarrow as pa
            import pyarrow.parquet as pq

            if not self.path.is_file():
                raise DataError(f"{self.path}: parquet file is missing")
            try:
                self._file = pq.ParquetFile(self.path)
            except (pa.ArrowException, OSError) as error:
                raise DataError(f"{self.path}: not a readable parquet file ({error})") from error
            self._pid = os.getpid()
            self._groups = OrderedDict()
        return self._file

    @property
    def column_names(self) -> list[str]:
        return list(self.file.schema_arrow.names)

    def require_columns(self, columns: Sequence[str]) -> None:
        names = set(self.column_names)
        missing = [c for c in columns if c not in names]
        if missing:
            listed = ", ".join(repr(c) for c in missing)
            raise DataError(f"{self.path}: missing column {listed} "
                            f"(columns present: {sorted(names)})")

    @property
    def num_rows(self) -> int:
        return int(self.file.metadata.num_rows)

    def read_column(self, column: str) -> list:
        """All values of one column, in row order."""
        import pyarrow as pa

        self.require_columns([column])
        try:
            return self.file.read(columns=[column]).column(column).to_pylist()
        except (pa.ArrowException, OSError) as error:
            raise DataError(f"{self.path}: cannot read column {column!r} ({error})") from error

    def frames(self) -> np.ndarray:
        """(N,) int64 frame numbers in row order."""
        if self._frames is None:
            values = self.read_column(FRAME_COLUMN)
            if any(v is None for v in values):
                raise DataError(f"{self.path}: column 'frame' has null entries")
            self._frames = np.asarray(values, dtype=np.int64)
        return self._frames

    def _location(self, frame_number: int) -> tuple[int, int] | None:
        if self._locations is None:
            frames = self.frames()
            locations: dict[int, tuple[int, int]] = {}
            row = 0
            metadata = self.file.metadata
            for group in range(metadata.num_row_groups):
                rows = metadata.row_group(group).num_rows
                for offset in range(rows):
                    locations[int(frames[row + offset])] = (group, offset)
                row += rows
            self._locations = locations
        return self._locations.get(int(frame_number))

    def read_row(self, frame_number: int, columns: Sequence[str]) -> dict | None:
        """The named cells of the row for ``frame_number``, or None if the frame has no row."""
        import pyarrow as pa

        self.require_columns(columns)
        location = self._location(frame_number)
        if location is None:
            return None
        group, offset = location
        key = (group, tuple(columns))
        table = self._groups.get(key)
        if table is None:
            try:
                table = self.file.read_row_group(group, columns=list(columns))
            except (pa.ArrowException, OSError) as error:
                raise DataError(f"{self.path}: cannot read row group {group} "
                                f"(columns {list(columns)}): {error}") from error
            self._groups[key] = table
            while len(self._groups) > _ROW_GROUP_CACHE:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(key)
        return {c: table.column(c)[offset].as_py() for c in columns}


def _encoded_bytes(cell, path: Path, column: str, frame_number: int) -> bytes:
    if isinstance(cell, dict):
        cell = cell.get("bytes")
    if not isinstance(cell, (bytes, bytearray)) or len(cell) == 0:
        raise DataError(f"{path}: column {column!r} at frame {frame_number} holds no encoded "
                        "image bytes")
    return bytes(cell)


def _array(cell, name: str, path: Path, frame_number: int) -> np.ndarray:
    shape = ARRAY_SHAPES[name]
    if cell is None:
        raise DataError(f"{path}: column {name!r} is null at annotated frame {frame_number}")
    values = np.asarray(cell, dtype=np.float32).reshape(-1)
    if values.size != int(np.prod(shape)):
        raise DataError(f"{path}: column {name!r} at frame {frame_number} has {values.size} "
                        f"values, expected {int(np.prod(shape))} for shape {shape}")
    return values.reshape(shape)


# ----------------------------------------------------------------------------- sequences


class EgoPressureSequence:
    """One EgoPressure recording seen from one camera, read lazily frame by frame.

    Implements :class:`~egopress_core.data.records.SequenceSource`; also
    :meth:`annotation_flags` (reads one column, no frames) so clip windows can skip frames
    without annotation when they build their index.

    Args:
        data_dir: ``data/<participant>/<sequence>``.
        config_path: ``configs/<participant>/<sequence>.json``.
        camera: config camera key, ``"0"`` = egocentric.
        image_scale: decode RGB at this fraction of full size (1, 0.5, 0.25, 0.125).
        depth_splat: splat radius of the depth registration in colour pixels; None picks
            :func:`auto_splat_radius`.
        depth_to_color: ``"k4a"`` (factory calibration ``PV0`` Rt) or ``"config"``
            (``DepthToColor`` of the sequence config).
    """

    fps = FPS
    hand_model = HAND_MODEL
    num_vertices = NUM_VERTICES

    def __init__(
        self,
        data_dir: str | os.PathLike,
        config_path: str | os.PathLike,
        camera: str = "0",
        image_scale: float = 1.0,
        depth_splat: int | None = None,
        depth_to_color: str = "k4a",
    ):
        if camera not in CAMERA_KEYS:
            raise ConfigError(f"camera must be one of {CAMERA_KEYS}. Got {camera!r}")
        if image_scale not in _IMAGE_SCALES:
            raise ConfigError(f"image_scale must be one of {_IMAGE_SCALES}. Got {image_scale!r}")
        if depth_splat is not None and (not isinstance(depth_splat, int) or depth_splat < 0):
            raise ConfigError(f"depth_splat must be None or an int >= 0. Got {depth_splat!r}")
        if depth_to_color not in _DEPTH_TO_COLOR_SOURCES:
            raise ConfigError(f"depth_to_color must be one of {_DEPTH_TO_COLOR_SOURCES}. "
                              f"Got {depth_to_color!r}")
        self.data_dir = Path(data_dir)
        self.config_path = Path(config_path)
        self.name = self.data_dir.name
        self.participant = self.data_dir.parent.name
        self.camera = camera
        self.image_scale = float(image_scale)
        self.depth_splat = depth_splat
        self.depth_to_color = depth_to_color
        token = camera_token(camera)
        self.k4a_path = self.config_path.parent / f"{self.name}_k4a" / f"cam-{token}.k4a_calibration.json"
        self._annotation = _ParquetShard(self.data_dir / "annotation.parquet")
        self._pressure = _ParquetShard(self.data_dir / "pressure.parquet")
        self._color = _ParquetShard(self.data_dir / f"cam-{token}.color.parquet")
        self._depth = _ParquetShard(self.data_dir / f"cam-{token}.depth.parquet")
        self._mask = _ParquetShard(self.data_dir / f"cam-{token}.mask.parquet")
        self._depth_model: DepthCameraModel | None = None

    def __repr__(self) -> str:
        return f"EgoPressureSequence({self.participant}/{self.name}, camera={self.camera!r})"

    # -- metadata that needs no frame --------------------------------------------------------

    def __len__(self) -> int:
        return int(self.frame_numbers.size)

    @cached_property
    def hand_side(self) -> str:
        """``"left"`` or ``"right"``: the sequence name's suffix, else the first annotation row."""
        for side in (HAND_LEFT, HAND_RIGHT):
            if self.name.endswith(f"_{side}"):
                return side
        side = self._annotation.read_column("hand_side")[0] if len(self) else None
        if side not in (HAND_LEFT, HAND_RIGHT):
            raise DataError(f"{self._annotation.path}: column 'hand_side' holds {side!r}, "
                            "expected 'left' or 'right'")
        return side

    @property
    def uv_layout(self) -> str:
        return UV_LAYOUTS[self.hand_side]

    @cached_property
    def frame_numbers(self) -> np.ndarray:
        """(N,) dataset frame numbers (start at 1) of positions 0..N-1."""
        return self._annotation.frames()

    def annotation_flags(self) -> np.ndarray:
        """(N,) bool ``has_annotation`` of every frame, read from one column."""
        if "_flags" not in self.__dict__:
            values = self._annotation.read_column("has_annotation")
            self.__dict__["_flags"] = np.asarray([bool(v) for v in values], dtype=bool)
        return self.__dict__["_flags"]

    @property
    def num_unannotated(self) -> int:
        return int((~self.annotation_flags()).sum())

    @cached_property
    def config(self) -> dict:
        if not self.config_path.is_file():
            raise DataError(f"{self.config_path}: sequence config JSON is missing")
        try:
            return json.loads(self.config_path.read_text())
        except (OSError, ValueError) as error:
            raise DataError(f"{self.config_path}: not a readable JSON file ({error})") from error

    @cached_property
    def color_calibration(self) -> ColorCameraCalibration:
        return ColorCameraCalibration.from_config(self.config, self.camera, str(self.config_path))

    @cached_property
    def _k4a(self) -> dict:
        if not self.k4a_path.is_file():
            raise DataError(f"{self.k4a_path}: k4a factory calibration is missing (it holds the "
                            "depth camera intrinsics needed to register depth to colour)")
        try:
            cameras = json.loads(self.k4a_path.read_text())["CalibrationInformation"]["Cameras"]
        except (OSError, ValueError) as error:
            raise DataError(f"{self.k4a_path}: not a readable JSON file ({error})") from error
        except (KeyError, TypeError) as error:
            raise DataError(f"{self.k4a_path}: no CalibrationInformation.Cameras list") from error
        by_location = {}
        for entry in cameras:
            location = str(entry.get("Location", ""))
            for suffix in ("D0", "PV0"):
                if location.endswith(suffix):
                    by_location[suffix] = entry
        for suffix in ("D0", "PV0"):
            if suffix not in by_location:
                raise DataError(f"{self.k4a_path}: no camera whose Location ends in {suffix!r}")
        return by_location

    def _color_from_depth(self) -> np.ndarray:
        """(4, 4) depth frame -> colour frame, metres."""
        if self.depth_to_color == "config":
            matrix = self.color_calibration.depth_to_color
            if matrix is None:
                raise DataError(f"{self.config_path}: camera_calibrations[{self.camera!r}] has "
                                "no DepthToColor (use depth_to_color='k4a')")
            return depth_to_color_metres(matrix)
        depth_from_reference = _rigid_from_rt(self._k4a["D0"], str(self.k4a_path))
        color_from_reference = _rigid_from_rt(self._k4a["PV0"], str(self.k4a_path))
        return color_from_reference @ np.linalg.inv(depth_from_reference)

    def _depth_rays(self, width: int, height: int) -> np.ndarray:
        model = self._depth_model
        if model is None or (model.width, model.height) != (width, height):
            model = DepthCameraModel.from_k4a(self._k4a["D0"], width, height, str(self.k4a_path))
            self._depth_model = model
        return model.pixel_rays()

    # -- frames -------------------------------------------------------------------------------

    def frame(self, index: int) -> FrameRecord:
        """Read, decode and convert one frame (position ``index``, 0-based)."""
        count = len(self)
        if not 0 <= index < count:
            raise IndexError(f"{self.name}: frame index {index} out of range [0, {count})")
        frame_number = int(self.frame_numbers[index])

        annotation_columns = list(ANNOTATION_COLUMNS) + [
            c for c in ANNOTATION_OPTIONAL_COLUMNS if c in self._annotation.column_names]
        annotation = self._annotation.read_row(frame_number, annotation_columns)
        pressure = self._pressure.read_row(frame_number, PRESSURE_COLUMNS)
        if pressure is None:
            raise DataError(f"{self._pressure.path}: no row for frame {frame_number}")

        rgb, intrinsics = self._read_rgb(frame_number)
        depth, depth_missing = self._read_depth(frame_number, intrinsics, rgb.shape[1], rgb.shape[0])

        path = self._annotation.path
        camera_from_world = self.color_calibration.camera_from_world
        if self.camera == "0":
            camera_from_world = np.eye(4)
            camera_from_world[:3, :3] = _array(annotation["ego_R"], "ego_R", path, frame_number)
            camera_from_world[:3, 3] = _array(annotation["ego_T"], "ego_T", path, frame_number)
        elif camera_from_world is None:
            raise DataError(f"{self.config_path}: static camera {self.camera!r} has no "
                            "ModelViewMatrix")
        else:
            camera_from_world = camera_from_world.copy()
        hand_side = annotation["hand_side"]
        if hand_side not in (HAND_LEFT, HAND_RIGHT):
            raise DataError(f"{path}: column 'hand_side' at frame {frame_number} is "
                            f"{hand_side!r}, expected 'left' or 'right'")
        pad_kpa = sensel_counts_to_kpa(_array(pressure["force"], "force",
                                              self._pressure.path, frame_number))
        extras = {
            "participant": self.participant,
            "camera": self.camera,
            "frame_number": frame_number,
            "depth_missing": depth_missing,
            "world_z_down": True,
            "pad_x_range_m": PAD_X_RANGE_M,
            "pad_y_range_m": PAD_Y_RANGE_M,
            "mano_flat_hand_mean": True,
        }
        has_annotation = bool(annotation["has_annotation"])
        mano = vertices = joints = uv_kpa = None
        if has_annotation:
            mano, vertices, joints, uv_kpa = self._hand(annotation, pressure, camera_from_world,
                                                        frame_number, extras)
        return FrameRecord(
            sequence=self.name,
            index=index,
            timestamp_s=(frame_number - 1) / self.fps,
            rgb=rgb,
            depth_m=depth,
            intrinsics=intrinsics,
            hand_side=hand_side,
            has_annotation=has_annotation,
            mano=mano,
            vertices=vertices,
            joints=joints,
            uv_pressure_kpa=uv_kpa,
            pad_pressure_kpa=pad_kpa,
            camera_from_world=camera_from_world,
            extras=extras,
        )

    def __iter__(self) -> Iterator[FrameRecord]:
        for index in range(len(self)):
            yield self.frame(index)

    def read_mask(self, index: int) -> np.ndarray:
        """(H, W) uint8 hand mask of frame ``index`` at full colour resolution."""
        from PIL import Image

        frame_number = int(self.frame_numbers[index])
        row = self._mask.read_row(frame_number, [FRAME_COLUMN, MASK_COLUMN])
        if row is None:
            raise DataError(f"{self._mask.path}: no row for frame {frame_number}")
        data = _encoded_bytes(row[MASK_COLUMN], self._mask.path, MASK_COLUMN, frame_number)
        mask = np.asarray(Image.open(io.BytesIO(data)))
        return mask if mask.ndim == 2 else mask[..., 0]

    def _read_rgb(self, frame_number: int) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image, UnidentifiedImageError

        row = self._color.read_row(frame_number, [FRAME_COLUMN, COLOR_COLUMN])
        if row is None:
            raise DataError(f"{self._color.path}: no row for frame {frame_number}")
        data = _encoded_bytes(row[COLOR_COLUMN], self._color.path, COLOR_COLUMN, frame_number)
        try:
            image = Image.open(io.BytesIO(data))
            full_size = image.size
            target = (round(full_size[0] * self.image_scale), round(full_size[1] * self.image_scale))
            if target != full_size:
                image.draft("RGB", target)  # JPEG: DCT-domain downscale, cheap
                image = image.convert("RGB")
                if image.size != target:
                    image = image.resize(target, Image.Resampling.BOX)
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{self._color.path}: column {COLOR_COLUMN!r} at frame "
                            f"{frame_number} is not a decodable image ({error})") from error
        calibration = self.color_calibration
        if calibration.image_size is not None and calibration.image_size != full_size:
            raise DataError(f"{self._color.path}: frame {frame_number} is {full_size[0]}x"
                            f"{full_size[1]} but {self.config_path} calibrates "
                            f"{calibration.image_size[0]}x{calibration.image_size[1]}")
        scale_x, scale_y = target[0] / full_size[0], target[1] / full_size[1]
        intrinsics = calibration.intrinsics.copy()
        # pixel-centred convention: a centre u maps to (u + 0.5) * s - 0.5
        intrinsics[0, 0] *= scale_x
        intrinsics[1, 1] *= scale_y
        intrinsics[0, 2] = (intrinsics[0, 2] + 0.5) * scale_x - 0.5
        intrinsics[1, 2] = (intrinsics[1, 2] + 0.5) * scale_y - 0.5
        return rgb, intrinsics

    def _read_depth(self, frame_number: int, intrinsics: np.ndarray, width: int, height: int
                    ) -> tuple[np.ndarray, bool]:
        from PIL import Image, UnidentifiedImageError

        row = self._depth.read_row(frame_number, [FRAME_COLUMN, DEPTH_COLUMN])
        if row is None:  # the camera dropped this frame at capture: no reading anywhere
            return np.zeros((height, width), dtype=np.float32), True
        cell = row[DEPTH_COLUMN]
        if isinstance(cell, list):  # tolerate raw uint16 lists (square maps)
            side = int(round(math.sqrt(len(cell))))
            if side * side != len(cell):
                raise DataError(f"{self._depth.path}: column {DEPTH_COLUMN!r} at frame "
                                f"{frame_number} has {len(cell)} values, not a square map")
            depth_mm = np.asarray(cell, dtype=np.uint16).reshape(side, side)
        else:
            data = _encoded_bytes(cell, self._depth.path, DEPTH_COLUMN, frame_number)
            try:
                depth_mm = np.asarray(Image.open(io.BytesIO(data)))
            except (UnidentifiedImageError, OSError) as error:
                raise DataError(f"{self._depth.path}: column {DEPTH_COLUMN!r} at frame "
                                f"{frame_number} is not a decodable PNG ({error})") from error
            if depth_mm.ndim != 2:
                raise DataError(f"{self._depth.path}: depth at frame {frame_number} has shape "
                                f"{depth_mm.shape}, expected a single-channel 16-bit map")
            depth_mm = depth_mm.astype(np.uint16)
        rays = self._depth_rays(depth_mm.shape[1], depth_mm.shape[0])
        splat = self.depth_splat
        if splat is None:
            splat = auto_splat_radius(intrinsics[0, 0], self._depth_model.fx)
        depth = reproject_depth_to_color(depth_mm, rays, self._color_from_depth(), intrinsics,
                                         (width, height), splat)
        return depth, False

    def _hand(self, annotation: dict, pressure: dict, camera_from_world: np.ndarray,
              frame_number: int, extras: dict):
        path = self._annotation.path
        rotation, translation = camera_from_world[:3, :3], camera_from_world[:3, 3]
        vertices_world = _array(annotation["vertices"], "vertices", path, frame_number)
        joints_world = _array(annotation["joint_position"], "joint_position", path, frame_number)
        full_pose = _array(annotation["full_pose"], "full_pose", path, frame_number).astype(np.float64)
        transl_world = _array(annotation["transl"], "transl", path, frame_number).astype(np.float64)
        betas = _array(annotation["betas"], "betas", path, frame_number)

        vertices = (vertices_world @ rotation.T + translation).astype(np.float32)
        joints = (joints_world @ rotation.T + translation).astype(np.float32)
        global_orient = _rotation_to_axis_angle(rotation @ _axis_angle_to_rotation(full_pose[:3]))
        wrist_world = joints_world[0].astype(np.float64)
        root_rest = wrist_world - transl_world  # J0(betas): MANO rotates about the root joint
        transl_camera = rotation @ wrist_world + translation - root_rest
        mano = ManoParams(
            global_orient=global_orient.astype(np.float32),
            hand_pose=full_pose[3:].astype(np.float32),
            betas=betas.astype(np.float32),
            transl=transl_camera.astype(np.float32),
        )
        if annotation.get("normals") is not None:
            normals = _array(annotation["normals"], "normals", path, frame_number)
            extras["vertex_normals"] = (normals @ rotation.T).astype(np.float32)
        if annotation.get("displacement") is not None:
            extras["vertex_displacement"] = _array(annotation["displacement"], "displacement",
                                                   path, frame_number)
        pressure_path = self._pressure.path
        value_range = _array(pressure["pressure_map_range"], "pressure_map_range",
                             pressure_path, frame_number)
        normalised = _array(pressure["pressure_map"], "pressure_map", pressure_path, frame_number)
        uv_kpa = sensel_counts_to_kpa(np.clip(normalised, 0.0, None) * value_range[1])
        extras["pressure_map_range"] = value_range
        return mano, vertices, joints, uv_kpa


# ----------------------------------------------------------------------------- data set


class EgoPressureDataset:
    """The sequences of one split of a local EgoPressure download.

    Implements :class:`~egopress_core.data.records.DatasetSource`.

    Args:
        root: download root holding ``data/`` and ``configs/``.
        split: ``"train"``, ``"test"`` or ``"all"`` (ignored when ``participants`` is given).
        participants: explicit participant ids, overriding ``split``.
        camera: config camera key, ``"0"`` = egocentric.
        splits: ``{"train": [...], "test": [...]}`` replacing :data:`SPLITS`.
        image_scale, depth_splat, depth_to_color: see :class:`EgoPressureSequence`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        participants: Sequence[str] | None = None,
        camera: str = "0",
        splits: Mapping[str, Sequence[str]] | None = None,
        image_scale: float = 1.0,
        depth_splat: int | None = None,
        depth_to_color: str = "k4a",
    ):
        if split not in SPLIT_NAMES:
            raise ConfigError(f"split must be one of {SPLIT_NAMES}. Got {split!r}")
        if camera not in CAMERA_KEYS:
            raise ConfigError(f"camera must be one of {CAMERA_KEYS}. Got {camera!r}")
        self.root = Path(root)
        self.split = split
        self.camera = camera
        data_root = self.root / "data"
        if not data_root.is_dir():
            raise DataError(f"{self.root}: not an EgoPressure root (no 'data/' folder)")
        available = sorted(p.name for p in data_root.iterdir() if p.is_dir())
        if participants is not None:
            missing = [p for p in participants if p not in available]
            if missing:
                raise DataError(f"{data_root}: participant(s) {missing} not found "
                                f"(available: {available})")
            selected = list(participants)
        elif split == "all":
            selected = available
        else:
            table = dict(SPLITS if splits is None else splits)
            if split not in table:
                raise ConfigError(f"splits must define {split!r}. Got keys {sorted(table)}")
            wanted = set(table[split])
            selected = [p for p in available if p in wanted]
        self.participants = selected
        sequences = []
        for participant in selected:
            for directory in sorted(p for p in (data_root / participant).iterdir() if p.is_dir()):
                config = self.root / "configs" / participant / f"{directory.name}.json"
                sequences.append(EgoPressureSequence(
                    directory, config, camera=camera, image_scale=image_scale,
                    depth_splat=depth_splat, depth_to_color=depth_to_color))
        if not sequences:
            raise DataError(f"{data_root}: no sequences for split {split!r} "
                            f"(participants selected: {selected}, available: {available})")
        self._sequences = sequences

    def sequences(self) -> list[EgoPressureSequence]:
        return list(self._sequences)

    def annotation_report(self) -> dict[str, dict[str, int]]:
        """Per sequence: ``{"frames": N, "unannotated": K}`` (reads one column per sequence)."""
        return {seq.name: {"frames": len(seq), "unannotated": seq.num_unannotated}
                for seq in self._sequences}

    @property
    def skipped_frames(self) -> int:
        """Frames without annotation (``has_annotation`` false) across the selected sequences."""
        return sum(seq.num_unannotated for seq in self._sequences)

    @property
    def num_frames(self) -> int:
        return sum(len(seq) for seq in self._sequences)
