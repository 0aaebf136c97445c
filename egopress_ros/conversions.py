"""ROS messages <-> numpy for the nodes (no cv_bridge, no sensor_msgs_py: neither is on PyPI).

Images follow REP 118 and sensor_msgs/image_encodings, decoded and encoded by the library's
:mod:`egopress_core.image_encodings` (shared with the rosbag tools): colour as ``rgb8``, ``bgr8``,
``rgba8``, ``bgra8`` or ``mono8``; depth as ``16UC1`` / ``mono16`` (millimetres, 0 = no reading)
or ``32FC1`` (metres, NaN / +-inf = no reading). Rows may be padded (``step`` > width x pixel
size); ``is_bigendian`` is honoured. Anything else raises :class:`ImageFormatError` naming the
encoding or the inconsistent field, which the nodes report as a throttled warning.

Outputs: ``HandMesh``, ``UVPressure`` (32FC1 kPa map), ``HandContact``, and the standard-type
mirrors: a colour-mapped ``sensor_msgs/Image``, a ``sensor_msgs/PointCloud2`` of the vertices
(fields x, y, z, pressure, contact) and ``visualization_msgs/Marker`` triangle lists.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from egopress_core import image_encodings, point_clouds
from egopress_core.errors import DataError
from egopress_core.image_encodings import image_pixels
from egopress_core.point_clouds import keypoints_from_point_cloud, point_cloud_to_numpy  # noqa: F401 - the nodes' readers

NANOSECONDS = 1_000_000_000
HAND_SIDE_CODES = {"right": 0, "left": 1}  # HandMesh.HAND_RIGHT / HAND_LEFT
HAND_SIDE_NAMES = {code: name for name, code in HAND_SIDE_CODES.items()}
NUM_JOINTS = 21


# An image message whose encoding or layout the nodes cannot read.
ImageFormatError = image_encodings.ImageEncodingError
_REMAP_HINT = "check the remapping"


# ----------------------------------------------------------------------------------------------
# Time
# ----------------------------------------------------------------------------------------------


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * NANOSECONDS + int(stamp.nanosec)


def stamp_to_seconds(stamp) -> float:
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def ns_to_stamp(nanoseconds: int):
    from builtin_interfaces.msg import Time

    seconds, remainder = divmod(int(nanoseconds), NANOSECONDS)
    return Time(sec=seconds, nanosec=remainder)


def copy_header(header):
    from std_msgs.msg import Header

    return Header(stamp=header.stamp, frame_id=header.frame_id)


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------


def _byte_array(data: bytes | np.ndarray) -> array.array:
    """uint8[] field value without per-element checks (rclpy validates lists element by element)."""
    result = array.array("B")
    result.frombytes(data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes())
    return result


def _float32_array(values) -> array.array:
    result = array.array("f")
    result.frombytes(np.ascontiguousarray(values, dtype=np.float32).tobytes())
    return result


def color_image_to_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a colour Image (rgb8, bgr8, rgba8, bgra8, mono8)."""
    return image_encodings.decode_color(msg, _REMAP_HINT)


def depth_image_to_metres(msg) -> np.ndarray:
    """(H, W) float32 metres of a depth Image; missing readings are 0 (16UC1) or NaN / inf (32FC1)."""
    return image_encodings.decode_depth(msg, _REMAP_HINT)


def numpy_to_image(pixels: np.ndarray, encoding: str, header=None):
    """sensor_msgs/Image of (H, W) or (H, W, C) pixels; ``encoding`` must fit their dtype and
    channels (rgb8 / bgr8 / rgba8 / bgra8 / mono8 uint8, 16UC1 / mono16 uint16, 32FC1 float32)."""
    from sensor_msgs.msg import Image

    fields = image_encodings.encode_image(pixels, encoding)
    msg = Image()
    if header is not None:
        msg.header = copy_header(header)
    msg.height, msg.width, msg.encoding = fields.height, fields.width, fields.encoding
    msg.is_bigendian = fields.is_bigendian
    msg.step = fields.step
    msg.data = fields.data.tobytes()
    return msg


def camera_info_to_intrinsics(msg, image_hw: tuple[int, int] | None = None) -> np.ndarray:
    """(3, 3) float64 K of a CameraInfo, checked against the image size it is used with.

    Raises:
        DataError: an all-zero / non-positive K (uncalibrated camera), or a CameraInfo made for
            another resolution than the image's.
    """
    matrix = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(matrix).all() or matrix[0, 0] <= 0 or matrix[1, 1] <= 0 or matrix[2, 2] != 1.0:
        raise DataError(f"camera_info K = {matrix.ravel().tolist()} is not a calibrated pinhole matrix "
                        "(fx, fy > 0, K[2][2] = 1); is the camera calibrated?")
    if image_hw is not None and msg.width and msg.height and (int(msg.height), int(msg.width)) != tuple(image_hw):
        raise DataError(f"camera_info is for {msg.width}x{msg.height} images but the colour image is "
                        f"{image_hw[1]}x{image_hw[0]}")
    return matrix


# ----------------------------------------------------------------------------------------------
# Colour maps
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _colormap_table(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colour map."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)


def colorize(values: np.ndarray, vmax: float, cmap: str = "inferno", mask: np.ndarray | None = None,
             background: int = 128) -> np.ndarray:
    """(...,) values -> (..., 3) uint8 colours on [0, vmax]; entries where ``mask`` is False are grey."""
    table = _colormap_table(cmap)
    scaled = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)) / max(float(vmax), 1e-9), 0.0, 1.0)
    colours = table[np.round(scaled * 255.0).astype(np.intp)]
    if mask is not None:
        colours[~np.asarray(mask, dtype=bool)] = background
    return colours


# ----------------------------------------------------------------------------------------------
# Hand mesh
# ----------------------------------------------------------------------------------------------


def _points32(points: np.ndarray):
    from geometry_msgs.msg import Point32

    return [Point32(x=x, y=y, z=z) for x, y, z in np.asarray(points, dtype=np.float32).tolist()]


def hand_mesh_to_msg(estimate, header, hand_side: str, hand_model: str, topology_id: str, num_vertices: int,
                     estimator: str):
    """HandMesh of a :class:`~egopress_core.perception.types.HandMeshEstimate`, or of "no hand"
    (``estimate`` None): confidence 0 with NaN geometry of the full size, so that recorders
    keep fixed-size arrays and nobody mistakes it for a hand."""
    from geometry_msgs.msg import Vector3

    from egopress_ros.msg import HandMesh

    msg = HandMesh()
    msg.header = copy_header(header)
    msg.estimator = estimator
    if estimate is None:
        msg.hand_side = HAND_SIDE_CODES[hand_side]
        msg.hand_model = hand_model
        msg.topology_id = topology_id
        nan = float("nan")
        msg.global_orient = np.full(3, nan, dtype=np.float32)
        msg.hand_pose = np.full(45, nan, dtype=np.float32)
        msg.betas = np.full(10, nan, dtype=np.float32)
        msg.translation = Vector3(x=nan, y=nan, z=nan)
        msg.vertices = _points32(np.full((num_vertices, 3), nan))
        msg.joints = _points32(np.full((NUM_JOINTS, 3), nan))
        msg.confidence = 0.0
        return msg
    msg.hand_side = HAND_SIDE_CODES[estimate.hand_side]
    msg.hand_model = estimate.hand_model
    msg.topology_id = estimate.topology_id
    msg.global_orient = np.asarray(estimate.global_orient, dtype=np.float32)
    msg.hand_pose = np.asarray(estimate.hand_pose, dtype=np.float32)
    msg.betas = np.asarray(estimate.betas, dtype=np.float32)
    x, y, z = (float(v) for v in np.asarray(estimate.transl, dtype=np.float64))
    msg.translation = Vector3(x=x, y=y, z=z)
    msg.vertices = _points32(estimate.vertices)
    msg.joints = _points32(estimate.joints)
    msg.confidence = float(estimate.confidence)
    return msg


@dataclass(frozen=True)
class HandMeshData:
    """The parts of a HandMesh message the pressure node uses.

    Attributes:
        vertices: (V, 3) float32 metres; joints: (21, 3) float32 metres.
        has_hand: confidence > 0 and finite geometry.
    """

    hand_side: str
    topology_id: str
    confidence: float
    vertices: np.ndarray
    joints: np.ndarray
    estimator: str

    @property
    def has_hand(self) -> bool:
        return self.confidence > 0 and bool(np.isfinite(self.vertices).all()) and bool(np.isfinite(self.joints).all())


def hand_mesh_from_msg(msg) -> HandMeshData:
    if int(msg.hand_side) not in HAND_SIDE_NAMES:
        raise DataError(f"HandMesh.hand_side is {int(msg.hand_side)}; expected HAND_RIGHT (0) or HAND_LEFT (1)")
    vertices = np.array([(p.x, p.y, p.z) for p in msg.vertices], dtype=np.float32).reshape(-1, 3)
    joints = np.array([(p.x, p.y, p.z) for p in msg.joints], dtype=np.float32).reshape(-1, 3)
    return HandMeshData(hand_side=HAND_SIDE_NAMES[int(msg.hand_side)], topology_id=str(msg.topology_id),
                        confidence=float(msg.confidence), vertices=vertices, joints=joints, estimator=str(msg.estimator))


# ----------------------------------------------------------------------------------------------
# Pressure
# ----------------------------------------------------------------------------------------------


def uv_pressure_to_msg(uv_pressure_kpa: np.ndarray, header, hand_side: str, uv_layout_id: str,
                       contact_threshold_kpa: float, total_force_n: float):
    """UVPressure with the (Hu, Wu) kPa map as a 32FC1 image carrying the same header."""
    from egopress_ros.msg import UVPressure

    pressure = np.asarray(uv_pressure_kpa, dtype=np.float32)
    msg = UVPressure()
    msg.header = copy_header(header)
    msg.hand_side = HAND_SIDE_CODES[hand_side]
    msg.uv_layout_id = uv_layout_id
    msg.map = numpy_to_image(pressure, "32FC1", header)
    msg.contact_threshold_kpa = float(contact_threshold_kpa)
    msg.max_pressure_kpa = float(pressure.max()) if pressure.size else 0.0
    msg.total_force_n = float(total_force_n)
    return msg


def uv_pressure_from_msg(msg) -> np.ndarray:
    """(Hu, Wu) float32 kPa map of a UVPressure."""
    if msg.map.encoding != "32FC1":
        raise ImageFormatError(f"UVPressure.map must be 32FC1; got {msg.map.encoding!r}")
    return image_pixels(msg.map, 1, "f4")[:, :, 0].astype(np.float32)


def contact_to_msg(summary, header, hand_side: str, topology_id: str):
    """HandContact of a :class:`~egopress_core.contact.ContactSummary`."""
    from geometry_msgs.msg import Point

    from egopress_ros.msg import HandContact

    msg = HandContact()
    msg.header = copy_header(header)
    msg.hand_side = HAND_SIDE_CODES[hand_side]
    msg.topology_id = topology_id
    msg.vertex_pressure_kpa = _float32_array(summary.vertex_pressure_kpa)
    msg.vertex_contact = np.asarray(summary.vertex_contact, dtype=bool).tolist()
    msg.contact_threshold_kpa = float(summary.contact_threshold_kpa)
    msg.in_contact = bool(summary.in_contact)
    msg.contact_area_m2 = float(summary.contact_area_m2)
    msg.total_force_n = float(summary.total_force_n)
    x, y, z = (float(v) for v in summary.center_of_pressure)
    msg.center_of_pressure = Point(x=x, y=y, z=z)
    return msg


# ----------------------------------------------------------------------------------------------
# PointCloud2 (sensor_msgs_py is not on PyPI)
# ----------------------------------------------------------------------------------------------


def numpy_to_point_cloud(points: np.ndarray, header):
    """Unorganised PointCloud2 (height 1) of a 1-D structured array, one field per column
    (:func:`egopress_core.point_clouds.pack_points`)."""
    from sensor_msgs.msg import PointCloud2, PointField

    packed = point_clouds.pack_points(points)
    msg = PointCloud2()
    msg.header = copy_header(header)
    msg.height, msg.width = 1, packed.width
    msg.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in packed.fields]
    msg.is_bigendian = False
    msg.point_step, msg.row_step = packed.point_step, packed.row_step
    msg.data = packed.data
    msg.is_dense = packed.is_dense
    return msg


def contact_point_cloud(vertices: np.ndarray, summary, header):
    """PointCloud2 of the vertices with fields x, y, z (m), pressure (kPa) and contact (0/1)."""
    return numpy_to_point_cloud(
        point_clouds.contact_points(vertices, summary.vertex_pressure_kpa, summary.vertex_contact), header)


def keypoints_to_point_cloud(points_3d: np.ndarray, header, confidence: np.ndarray | None = None):
    """PointCloud2 of 21 3D keypoints (x, y, z, optional confidence): what the keypoints backend reads."""
    return numpy_to_point_cloud(point_clouds.keypoint_points(points_3d, confidence), header)


# ----------------------------------------------------------------------------------------------
# Markers
# ----------------------------------------------------------------------------------------------


def mesh_marker(vertices: np.ndarray, faces: np.ndarray, header, namespace: str, colours: np.ndarray | None = None,
                uniform_rgba: tuple[float, float, float, float] = (0.85, 0.75, 0.7, 1.0), marker_id: int = 0):
    """TRIANGLE_LIST Marker of a mesh; ``colours`` (V, 3) uint8 per vertex, else one colour."""
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker

    vertices = np.asarray(vertices, dtype=np.float64)
    corners = np.asarray(faces, dtype=np.int64).reshape(-1)
    msg = Marker()
    msg.header = copy_header(header)
    msg.ns, msg.id = namespace, int(marker_id)
    msg.type, msg.action = Marker.TRIANGLE_LIST, Marker.ADD
    msg.pose.orientation.w = 1.0
    msg.scale.x = msg.scale.y = msg.scale.z = 1.0
    msg.frame_locked = False
    msg.points = [Point(x=x, y=y, z=z) for x, y, z in vertices[corners].tolist()]
    red, green, blue, alpha = uniform_rgba
    msg.color = ColorRGBA(r=float(red), g=float(green), b=float(blue), a=float(alpha))
    if colours is not None:
        rgb = np.asarray(colours, dtype=np.float64)[corners] / 255.0
        msg.colors = [ColorRGBA(r=r, g=g, b=b, a=float(alpha)) for r, g, b in rgb.tolist()]
    return msg


def delete_marker(header, namespace: str, marker_id: int = 0):
    """A DELETE Marker (e.g. when the hand is lost, so RViz does not keep showing a stale mesh)."""
    from visualization_msgs.msg import Marker

    msg = Marker()
    msg.header = copy_header(header)
    msg.ns, msg.id = namespace, int(marker_id)
    msg.action = Marker.DELETE
    return msg
