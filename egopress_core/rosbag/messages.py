"""numpy <-> rosbags message objects, for reading and writing bags without rclpy.

These are the bag-side twins of ``egopress_ros.conversions`` (which builds rclpy messages for the
live nodes); both follow the same conventions so a labelled bag and a live recording hold the
same numbers:

- images are decoded and encoded by :mod:`egopress_core.image_encodings` (the same code as the
  live nodes): colour ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8`` (here also
  ``sensor_msgs/CompressedImage`` JPEG / PNG); depth ``16UC1`` / ``mono16`` in millimetres
  (0 = no reading) or ``32FC1`` in metres (NaN / inf = no reading, returned as 0). Rows may be
  padded (``step``); ``is_bigendian`` is honoured. Anything else raises
  :class:`UnsupportedEncoding`, which the labeller reports and skips;
- a frame without a hand is a ``HandMesh`` with confidence 0 and NaN geometry of full size;
- the ``UVPressure`` map is ``32FC1`` kPa; ``HandContact`` carries per-vertex pressure and flags;
- the point cloud mirror has fields x, y, z (m), pressure (kPa) and contact (0/1).

Every builder takes the rosbags type store (:func:`~egopress_core.rosbag.typestore.egopress_typestore`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from egopress_core import image_encodings
from egopress_core.errors import DataError
from egopress_core.image_encodings import image_pixels
from egopress_core.point_clouds import (  # noqa: F401 - readers re-exported for the labeller
    contact_points,
    keypoint_points,
    keypoints_from_point_cloud,
    pack_points,
    point_cloud_to_numpy,
)
from egopress_core.rosbag.typestore import (
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    HAND_CONTACT,
    HAND_MESH,
    IMAGE,
    POINT_CLOUD2,
    UV_PRESSURE,
)

NANOSECONDS = 1_000_000_000
HAND_SIDE_CODES = {"right": 0, "left": 1}  # HandMesh.HAND_RIGHT / HAND_LEFT
HAND_SIDE_NAMES = {code: name for name, code in HAND_SIDE_CODES.items()}
NUM_JOINTS = 21

# sensor_msgs/PointField datatypes


# An image whose encoding or layout cannot be decoded (the labeller reports and skips it).
UnsupportedEncoding = image_encodings.ImageEncodingError


# ----------------------------------------------------------------------------------------------
# Time and headers
# ----------------------------------------------------------------------------------------------


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * NANOSECONDS + int(stamp.nanosec)


def time_msg(store, nanoseconds: int):
    seconds, remainder = divmod(int(nanoseconds), NANOSECONDS)
    return store.types["builtin_interfaces/msg/Time"](sec=seconds, nanosec=remainder)


def header_msg(store, stamp_ns: int, frame_id: str):
    return store.types["std_msgs/msg/Header"](stamp=time_msg(store, stamp_ns), frame_id=str(frame_id))


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------


def color_to_rgb(msg, msgtype: str = IMAGE) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a colour ``Image`` or a JPEG / PNG ``CompressedImage``."""
    if msgtype == COMPRESSED_IMAGE:
        return _decode_compressed(msg)
    if msgtype != IMAGE:
        raise UnsupportedEncoding(f"colour topic has type {msgtype}; expected {IMAGE} or {COMPRESSED_IMAGE}")
    return image_encodings.decode_color(msg, "check --camera-topic")


def _decode_compressed(msg) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    image_format = str(msg.format).lower()
    if "compresseddepth" in image_format:
        raise UnsupportedEncoding(f"CompressedImage format {msg.format!r} is a compressed depth image, not colour")
    try:
        with Image.open(io.BytesIO(np.asarray(msg.data, dtype=np.uint8).tobytes())) as image:
            if image.format not in ("JPEG", "PNG"):
                raise UnsupportedEncoding(f"CompressedImage holds {image.format}; JPEG and PNG are supported")
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise UnsupportedEncoding(f"CompressedImage (format {msg.format!r}) cannot be decoded: {error}") from None


def depth_to_metres(msg, msgtype: str = IMAGE) -> np.ndarray:
    """(H, W) float32 metres of a depth ``Image``; missing readings are 0."""
    if msgtype != IMAGE:
        raise UnsupportedEncoding(f"depth topic has type {msgtype}; expected {IMAGE} (16UC1 / mono16 / 32FC1)")
    depth = image_encodings.decode_depth(msg, "check --depth-topic")
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0.0)).astype(np.float32, copy=False)


def image_msg(store, pixels: np.ndarray, encoding: str, header):
    """sensor_msgs/Image of (H, W) or (H, W, C) pixels (little-endian, unpadded rows)."""
    fields = image_encodings.encode_image(pixels, encoding)
    return store.types[IMAGE](
        header=header, height=fields.height, width=fields.width, encoding=fields.encoding,
        is_bigendian=fields.is_bigendian, step=fields.step, data=fields.data,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Camera info
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraCalibration:
    """The parts of a CameraInfo the labeller uses: K (3, 3) float64 and the image size."""

    intrinsics: np.ndarray
    width: int
    height: int


def camera_info_to_calibration(msg) -> CameraCalibration:
    """Raises DataError for an all-zero or non-pinhole K (an uncalibrated camera)."""
    matrix = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(matrix).all() or matrix[0, 0] <= 0 or matrix[1, 1] <= 0 or matrix[2, 2] != 1.0:
        raise DataError(f"camera_info K = {matrix.ravel().tolist()} is not a calibrated pinhole matrix "
                        "(fx, fy > 0, K[2][2] = 1); is the camera calibrated?")
    return CameraCalibration(intrinsics=matrix, width=int(msg.width), height=int(msg.height))


def camera_info_msg(store, intrinsics: np.ndarray, image_hw: tuple[int, int], header):
    """A CameraInfo for an undistorted pinhole camera (plumb_bob with zero distortion)."""
    k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
    projection = np.zeros((3, 4))
    projection[:, :3] = k
    roi = store.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return store.types[CAMERA_INFO](
        header=header, height=int(image_hw[0]), width=int(image_hw[1]), distortion_model="plumb_bob",
        d=np.zeros(5), k=k.reshape(-1).copy(), r=np.eye(3).reshape(-1), p=projection.reshape(-1),
        binning_x=0, binning_y=0, roi=roi,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# HandMesh
# ----------------------------------------------------------------------------------------------


def _points32(store, points: np.ndarray) -> list:
    point = store.types["geometry_msgs/msg/Point32"]
    return [point(x=x, y=y, z=z) for x, y, z in np.asarray(points, dtype=np.float32).tolist()]


def _points_array(points) -> np.ndarray:
    return np.array([(p.x, p.y, p.z) for p in points], dtype=np.float32).reshape(-1, 3)


@dataclass(frozen=True)
class HandMeshFields:
    """A HandMesh message as arrays.

    Attributes:
        global_orient (3,), hand_pose (45,), betas (10,), translation (3,): float32 MANO params.
        vertices: (V, 3) float32 metres; joints: (21, 3) float32 metres (NaN without a hand).
    """

    stamp_ns: int
    frame_id: str
    hand_side: str
    hand_model: str
    topology_id: str
    global_orient: np.ndarray
    hand_pose: np.ndarray
    betas: np.ndarray
    translation: np.ndarray
    vertices: np.ndarray
    joints: np.ndarray
    confidence: float
    estimator: str

    @property
    def has_hand(self) -> bool:
        return self.confidence > 0 and bool(np.isfinite(self.vertices).all()) and bool(np.isfinite(self.joints).all())


def hand_mesh_msg(store, header, hand_side: str, hand_model: str, topology_id: str, num_vertices: int,
                  estimator: str, estimate=None):
    """HandMesh of a :class:`~egopress_core.perception.types.HandMeshEstimate`; ``estimate`` None is
    "no hand" (confidence 0, NaN geometry of the full size, so recorders keep fixed sizes)."""
    vector3 = store.types["geometry_msgs/msg/Vector3"]
    if estimate is None:
        nan = float("nan")
        return store.types[HAND_MESH](
            header=header, hand_side=HAND_SIDE_CODES[hand_side], hand_model=hand_model, topology_id=topology_id,
            global_orient=np.full(3, nan, dtype=np.float32), hand_pose=np.full(45, nan, dtype=np.float32),
            betas=np.full(10, nan, dtype=np.float32), translation=vector3(x=nan, y=nan, z=nan),
            vertices=_points32(store, np.full((num_vertices, 3), nan)), joints=_points32(store, np.full((NUM_JOINTS, 3), nan)),
            confidence=0.0, estimator=estimator,
        )  # fmt: skip
    x, y, z = (float(v) for v in np.asarray(estimate.transl, dtype=np.float64))
    return store.types[HAND_MESH](
        header=header, hand_side=HAND_SIDE_CODES[estimate.hand_side], hand_model=estimate.hand_model,
        topology_id=estimate.topology_id, global_orient=np.asarray(estimate.global_orient, dtype=np.float32),
        hand_pose=np.asarray(estimate.hand_pose, dtype=np.float32), betas=np.asarray(estimate.betas, dtype=np.float32),
        translation=vector3(x=x, y=y, z=z), vertices=_points32(store, estimate.vertices),
        joints=_points32(store, estimate.joints), confidence=float(estimate.confidence), estimator=estimator,
    )  # fmt: skip


def hand_mesh_from_msg(msg) -> HandMeshFields:
    if int(msg.hand_side) not in HAND_SIDE_NAMES:
        raise DataError(f"HandMesh.hand_side is {int(msg.hand_side)}; expected HAND_RIGHT (0) or HAND_LEFT (1)")
    joints = _points_array(msg.joints)
    if joints.shape != (NUM_JOINTS, 3):
        raise DataError(f"HandMesh has {len(joints)} joints; expected {NUM_JOINTS}")
    return HandMeshFields(
        stamp_ns=stamp_to_ns(msg.header.stamp), frame_id=str(msg.header.frame_id),
        hand_side=HAND_SIDE_NAMES[int(msg.hand_side)], hand_model=str(msg.hand_model), topology_id=str(msg.topology_id),
        global_orient=np.asarray(msg.global_orient, dtype=np.float32), hand_pose=np.asarray(msg.hand_pose, dtype=np.float32),
        betas=np.asarray(msg.betas, dtype=np.float32),
        translation=np.array([msg.translation.x, msg.translation.y, msg.translation.z], dtype=np.float32),
        vertices=_points_array(msg.vertices), joints=joints, confidence=float(msg.confidence), estimator=str(msg.estimator),
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Pressure
# ----------------------------------------------------------------------------------------------


def uv_pressure_msg(store, uv_pressure_kpa: np.ndarray, header, hand_side: str, uv_layout_id: str,
                    contact_threshold_kpa: float, total_force_n: float):
    """UVPressure with the (Hu, Wu) kPa map as a 32FC1 image carrying the same header."""
    pressure = np.asarray(uv_pressure_kpa, dtype=np.float32)
    return store.types[UV_PRESSURE](
        header=header, hand_side=HAND_SIDE_CODES[hand_side], uv_layout_id=uv_layout_id,
        map=image_msg(store, pressure, "32FC1", header), contact_threshold_kpa=float(contact_threshold_kpa),
        max_pressure_kpa=float(pressure.max()) if pressure.size else 0.0, total_force_n=float(total_force_n),
    )  # fmt: skip


def uv_pressure_from_msg(msg) -> np.ndarray:
    """(Hu, Wu) float32 kPa map of a UVPressure."""
    if str(msg.map.encoding) != "32FC1":
        raise UnsupportedEncoding(f"UVPressure.map must be 32FC1; got {msg.map.encoding!r}")
    return image_pixels(msg.map, 1, "f4")[:, :, 0]


def hand_contact_msg(store, summary, header, hand_side: str, topology_id: str):
    """HandContact of a :class:`~egopress_core.contact.ContactSummary`."""
    x, y, z = (float(v) for v in summary.center_of_pressure)
    return store.types[HAND_CONTACT](
        header=header, hand_side=HAND_SIDE_CODES[hand_side], topology_id=topology_id,
        vertex_pressure_kpa=np.ascontiguousarray(summary.vertex_pressure_kpa, dtype=np.float32),
        vertex_contact=np.asarray(summary.vertex_contact, dtype=bool), contact_threshold_kpa=float(summary.contact_threshold_kpa),
        in_contact=bool(summary.in_contact), contact_area_m2=float(summary.contact_area_m2),
        total_force_n=float(summary.total_force_n), center_of_pressure=store.types["geometry_msgs/msg/Point"](x=x, y=y, z=z),
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# PointCloud2
# ----------------------------------------------------------------------------------------------


def point_cloud_msg(store, points: np.ndarray, header):
    """Unorganised PointCloud2 (height 1) of a 1-D structured array, one scalar field per column."""
    packed = pack_points(points)
    point_field = store.types["sensor_msgs/msg/PointField"]
    return store.types[POINT_CLOUD2](
        header=header, height=1, width=packed.width,
        fields=[point_field(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in packed.fields],
        is_bigendian=False, point_step=packed.point_step, row_step=packed.row_step,
        data=np.frombuffer(packed.data, dtype=np.uint8), is_dense=packed.is_dense,
    )  # fmt: skip


def contact_point_cloud(store, vertices: np.ndarray, summary, header):
    """PointCloud2 of the vertices with fields x, y, z (m), pressure (kPa) and contact (0/1)."""
    return point_cloud_msg(store, contact_points(vertices, summary.vertex_pressure_kpa, summary.vertex_contact), header)


def keypoints_point_cloud(store, points_3d: np.ndarray, header, confidence: np.ndarray | None = None):
    """PointCloud2 of 21 OpenPose-order keypoints (x, y, z metres, optional confidence): the
    ``hand_keypoints`` input of the keypoints backend; NaN marks a keypoint not found."""
    return point_cloud_msg(store, keypoint_points(points_3d, confidence), header)
