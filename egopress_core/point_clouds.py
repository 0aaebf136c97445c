"""sensor_msgs/PointCloud2 <-> NumPy structured arrays, on raw message fields (no rclpy).

The numpy half of the PointCloud2 builders in :mod:`egopress_core.messages` (which turn a
:class:`PackedPointCloud` into an rclpy or a rosbags message), and the readers of any object with
the PointCloud2 fields (:func:`point_cloud_to_numpy`). Only unorganised clouds of scalar fields
are written; reading accepts organised clouds without row padding. Where ``sensor_msgs_py`` is
installed, ``test/integration/ros/test_ros_bridges.py`` checks that both agree with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egopress_core.errors import DataError

# sensor_msgs/PointField datatype code -> NumPy type without byte order.
POINT_FIELD_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_POINT_FIELD_CODES = {np.dtype(name).str.lstrip("<>|="): code for code, name in POINT_FIELD_TYPES.items()}
NUM_HAND_KEYPOINTS = 21


@dataclass(frozen=True)
class PointFieldSpec:
    """One sensor_msgs/PointField: name, byte offset, datatype code, count."""

    name: str
    offset: int
    datatype: int
    count: int = 1


@dataclass(frozen=True)
class PackedPointCloud:
    """The fields of an unorganised (height 1), little-endian PointCloud2."""

    fields: tuple[PointFieldSpec, ...]
    width: int
    point_step: int
    row_step: int
    data: bytes
    is_dense: bool


def pack_points(points: np.ndarray) -> PackedPointCloud:
    """A 1-D structured array, one scalar field per column, as PointCloud2 fields.

    Supported column types: int8/uint8/int16/uint16/int32/uint32/float32/float64.

    Raises:
        DataError: a column of another type or with a sub-array shape.
    """
    points = np.ascontiguousarray(points)
    fields = []
    for name in points.dtype.names:
        column, offset = points.dtype.fields[name][:2]
        key = column.str.lstrip("<>|=")
        if column.shape or key not in _POINT_FIELD_CODES:
            raise DataError(f"point field {name!r} has type {column}; supported: {sorted(POINT_FIELD_TYPES.values())}")
        fields.append(PointFieldSpec(name=name, offset=int(offset), datatype=_POINT_FIELD_CODES[key]))
    little = points.astype(points.dtype.newbyteorder("<"), copy=False)
    dense = all(np.isfinite(points[name]).all() for name in points.dtype.names
                if np.issubdtype(points.dtype[name], np.floating))
    return PackedPointCloud(fields=tuple(fields), width=int(points.shape[0]), point_step=int(points.dtype.itemsize),
                            row_step=int(points.dtype.itemsize * points.shape[0]), data=little.tobytes(),
                            is_dense=bool(dense))


def point_cloud_to_numpy(msg) -> np.ndarray:
    """Structured (N,) array of a PointCloud2's scalar fields (padding bytes skipped).

    Raises:
        DataError: an unknown datatype, a field with count != 1, or data shorter than the cloud.
    """
    names, formats, offsets = [], [], []
    order = ">" if msg.is_bigendian else "<"
    for field in msg.fields:
        if field.datatype not in POINT_FIELD_TYPES:
            raise DataError(f"PointCloud2 field {field.name!r} has unknown datatype {field.datatype}")
        if field.count != 1:
            raise DataError(f"PointCloud2 field {field.name!r} has count {field.count}; only scalar fields are read")
        names.append(field.name)
        formats.append(order + POINT_FIELD_TYPES[field.datatype])
        offsets.append(int(field.offset))
    count = int(msg.width) * int(msg.height)
    size = count * int(msg.point_step)
    if len(msg.data) < size or (msg.height > 1 and msg.row_step != msg.width * msg.point_step):
        raise DataError(f"PointCloud2 data has {len(msg.data)} bytes for {count} points of {msg.point_step} bytes")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(msg.point_step)})
    return np.frombuffer(bytes(msg.data[:size]), dtype=dtype, count=count)


def contact_points(vertices: np.ndarray, vertex_pressure_kpa: np.ndarray, vertex_contact: np.ndarray) -> np.ndarray:
    """(V,) structured array x, y, z (m), pressure (kPa), contact (0/1) of the hand's vertices."""
    points = np.zeros(len(vertices), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("pressure", "<f4"),
                                            ("contact", "u1")])
    vertices = np.asarray(vertices, dtype=np.float32)
    points["x"], points["y"], points["z"] = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    points["pressure"] = vertex_pressure_kpa
    points["contact"] = vertex_contact
    return points


def keypoint_points(points_3d: np.ndarray, confidence: np.ndarray | None = None) -> np.ndarray:
    """(21,) structured array x, y, z (m) and optional confidence: the keypoints backend's input."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("confidence", "<f4")] if confidence is not None else [])
    points = np.zeros(len(points_3d), dtype=fields)
    points_3d = np.asarray(points_3d, dtype=np.float32)
    points["x"], points["y"], points["z"] = points_3d[:, 0], points_3d[:, 1], points_3d[:, 2]
    if confidence is not None:
        points["confidence"] = confidence
    return points


@dataclass(frozen=True)
class HandKeypointFields:
    """21 keypoints read from a PointCloud2: points_3d (21, 3) or None, points_2d (21, 2) or
    None, confidence (21,) or None; NaN rows mark keypoints that were not found."""

    points_3d: np.ndarray | None
    points_2d: np.ndarray | None
    confidence: np.ndarray | None

    @property
    def has_hand(self) -> bool:
        found = [p for p in (self.points_3d, self.points_2d) if p is not None]
        return any(np.isfinite(p).all(axis=1).any() for p in found)


def keypoints_from_point_cloud(msg) -> HandKeypointFields:
    """Hand keypoints another tracker publishes as a PointCloud2 of exactly 21 points in OpenPose
    order: fields x, y, z (metres, camera frame) and / or u, v (pixels), optional confidence (0-1).

    Raises:
        DataError: another number of points, or neither x, y, z nor u, v fields.
    """
    points = point_cloud_to_numpy(msg)
    if points.shape[0] != NUM_HAND_KEYPOINTS:
        raise DataError(f"keypoints cloud has {points.shape[0]} points; expected {NUM_HAND_KEYPOINTS} "
                        "(OpenPose hand order)")
    names = set(points.dtype.names or ())
    points_3d = np.stack([points[a] for a in "xyz"], axis=1).astype(np.float64) if {"x", "y", "z"} <= names else None
    points_2d = np.stack([points["u"], points["v"]], axis=1).astype(np.float64) if {"u", "v"} <= names else None
    if points_3d is None and points_2d is None:
        raise DataError(f"keypoints cloud has fields {sorted(names)}; it needs x, y, z and / or u, v")
    confidence = None
    if "confidence" in names:
        confidence = np.nan_to_num(points["confidence"].astype(np.float64), nan=0.0).clip(0.0, 1.0)
    return HandKeypointFields(points_3d=points_3d, points_2d=points_2d, confidence=confidence)
