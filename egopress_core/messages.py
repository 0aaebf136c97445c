"""The package's ROS messages <-> numpy, written once for rclpy and for rosbags.

Every message the nodes publish and the labeller writes has exactly one builder here, and every
message they read has one reader, so a live topic and a labelled bag hold the same bytes for the
same frame (``test/unit/test_message_layer.py`` serialises both and compares them):

- ``builtin_interfaces/Time``: :func:`time`; read by :func:`stamp_to_ns`, :func:`stamp_to_seconds`;
- ``std_msgs/Header``: :func:`header`, :func:`copy_header`;
- ``sensor_msgs/Image`` (the 32FC1 kPa map, the colour-mapped rgb8 mirror, camera images):
  :func:`image`; read by :mod:`egopress_core.image_encodings` (``decode_color``, ``decode_depth``,
  ``decode_image``), whose encoder it uses;
- ``sensor_msgs/CameraInfo``: :func:`camera_info`; read by :func:`camera_info_to_calibration`;
- ``sensor_msgs/PointCloud2``: :func:`point_cloud` and its two uses :func:`contact_point_cloud`
  (x, y, z, pressure, contact) and :func:`keypoints_point_cloud`; read by
  :func:`point_cloud_to_numpy`, :func:`keypoints_from_point_cloud`;
- ``visualization_msgs/Marker``: :func:`mesh_marker` (triangle list), :func:`delete_marker`;
- ``egopress_ros/HandMesh``: :func:`hand_mesh`; read by :func:`hand_mesh_from_msg`;
- ``egopress_ros/UVPressure``: :func:`uv_pressure`; read by :func:`uv_pressure_from_msg`;
- ``egopress_ros/HandContact``: :func:`hand_contact`.

Builders take a :class:`MessageFactory` first: an object mapping a ROS type name such as
``"sensor_msgs/msg/Image"`` to a constructor of that library's class. Two exist:
``egopress_ros.conversions.RCLPY`` (rclpy's generated classes, for the live nodes) and
:func:`egopress_core.rosbag.messages.bag_factory` (the rosbags type store, for bags). Builders
pass every array-valued field as a numpy array of the message's element type; the factory turns
it into what its library stores (``array.array`` / lists / numpy arrays) and fills the fields a
builder leaves out with the message's defaults. Readers take any object with the message's fields
(rclpy, rosbags or a ``SimpleNamespace``).

This module never imports rclpy (the library must run where ROS is not installed).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from egopress_core import image_encodings
from egopress_core.errors import DataError
from egopress_core.point_clouds import (  # noqa: F401 - the point-cloud readers, re-exported as part of this layer
    HandKeypointFields,
    contact_points,
    keypoint_points,
    keypoints_from_point_cloud,
    pack_points,
    point_cloud_to_numpy,
)

# ROS type names of everything built here.
TIME = "builtin_interfaces/msg/Time"
HEADER = "std_msgs/msg/Header"
COLOR_RGBA = "std_msgs/msg/ColorRGBA"
POINT = "geometry_msgs/msg/Point"
POINT32 = "geometry_msgs/msg/Point32"
VECTOR3 = "geometry_msgs/msg/Vector3"
QUATERNION = "geometry_msgs/msg/Quaternion"
POSE = "geometry_msgs/msg/Pose"
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"
POINT_FIELD = "sensor_msgs/msg/PointField"
MARKER = "visualization_msgs/msg/Marker"
HAND_MESH = "egopress_ros/msg/HandMesh"
UV_PRESSURE = "egopress_ros/msg/UVPressure"
HAND_CONTACT = "egopress_ros/msg/HandContact"

NANOSECONDS = 1_000_000_000
HAND_SIDE_CODES = {"right": 0, "left": 1}  # HandMesh / UVPressure / HandContact HAND_RIGHT, HAND_LEFT
HAND_SIDE_NAMES = {code: name for name, code in HAND_SIDE_CODES.items()}
NUM_JOINTS = 21  # HandMesh.joints is geometry_msgs/Point32[21]
# visualization_msgs/Marker constants (test_message_layer.py checks them against both libraries).
MARKER_TRIANGLE_LIST = 11
MARKER_ADD = 0
MARKER_DELETE = 2


# ----------------------------------------------------------------------------------------------
# Message-type factories
# ----------------------------------------------------------------------------------------------


class MessageFactory(abc.ABC):
    """Maps a ROS type name (``"sensor_msgs/msg/Image"``) to a constructor of one library's class.

    A constructor takes the message's fields as keywords. Fields left out take the message's
    defaults (zeros, empty strings and sequences, ``Quaternion.w = 1``). An array-valued field
    (``float32[]``, ``float64[9]``, ``bool[]``, ``uint8[] data``) takes a numpy array of its
    element type, or bytes for ``uint8[]``; the constructor converts it to the container the
    library wants, so that builders never need to know which library they build for.
    """

    def __init__(self) -> None:
        self._constructors: dict[str, Callable[..., Any]] = {}

    def constructor(self, typename: str) -> Callable[..., Any]:
        """The (cached) constructor of ``typename``, e.g. ``"geometry_msgs/msg/Point"``.

        Raises:
            KeyError: a type this factory does not know.
        """
        made = self._constructors.get(typename)
        if made is None:
            made = self._constructors[typename] = self._make_constructor(typename)
        return made

    def new(self, typename: str, **fields: Any) -> Any:
        """A ``typename`` message with ``fields``; see the class docstring."""
        return self.constructor(typename)(**fields)

    @abc.abstractmethod
    def _make_constructor(self, typename: str) -> Callable[..., Any]:
        """The constructor of ``typename`` for this library."""


# ----------------------------------------------------------------------------------------------
# Time and headers
# ----------------------------------------------------------------------------------------------


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * NANOSECONDS + int(stamp.nanosec)


def stamp_to_seconds(stamp) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def time(factory: MessageFactory, nanoseconds: int):
    """builtin_interfaces/Time of integer nanoseconds."""
    seconds, remainder = divmod(int(nanoseconds), NANOSECONDS)
    return factory.new(TIME, sec=seconds, nanosec=remainder)


def header(factory: MessageFactory, stamp_ns: int, frame_id: str):
    """std_msgs/Header of a stamp in nanoseconds and a frame."""
    return factory.new(HEADER, stamp=time(factory, stamp_ns), frame_id=str(frame_id))


def copy_header(factory: MessageFactory, source):
    """A new Header equal to ``source`` (any object with ``stamp`` and ``frame_id``; None: an
    empty header).

    Builders copy the header they are given rather than share it: each message then owns its
    header (a subscriber mutating one cannot change another), and a header read from one library
    can stamp a message of the other.
    """
    if source is None:
        return factory.new(HEADER)
    stamp = factory.new(TIME, sec=int(source.stamp.sec), nanosec=int(source.stamp.nanosec))
    return factory.new(HEADER, stamp=stamp, frame_id=str(source.frame_id))


# ----------------------------------------------------------------------------------------------
# Images and camera info
# ----------------------------------------------------------------------------------------------


def image(factory: MessageFactory, pixels: np.ndarray, encoding: str, source_header):
    """sensor_msgs/Image of (H, W) or (H, W, C) pixels (little-endian, unpadded rows).

    Args:
        encoding: must fit the pixels' dtype and channels: rgb8 / bgr8 / rgba8 / bgra8 / mono8
            uint8, 16UC1 / mono16 uint16, 32FC1 float32.
        source_header: copied (see :func:`copy_header`); None: an empty header.

    Raises:
        ImageEncodingError: an unknown encoding, or pixels of another dtype or channel count.
    """
    fields = image_encodings.encode_image(pixels, encoding)
    return factory.new(
        IMAGE, header=copy_header(factory, source_header), height=fields.height, width=fields.width,
        encoding=fields.encoding, is_bigendian=fields.is_bigendian, step=fields.step, data=fields.data,
    )  # fmt: skip


def camera_info(factory: MessageFactory, intrinsics: np.ndarray, image_hw: tuple[int, int], source_header):
    """sensor_msgs/CameraInfo of an undistorted pinhole camera (plumb_bob, zero distortion)."""
    k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
    projection = np.zeros((3, 4))
    projection[:, :3] = k
    return factory.new(
        CAMERA_INFO, header=copy_header(factory, source_header), height=int(image_hw[0]), width=int(image_hw[1]),
        distortion_model="plumb_bob", d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1),
        p=projection.reshape(-1),
    )  # fmt: skip


@dataclass(frozen=True)
class CameraCalibration:
    """The parts of a CameraInfo the nodes and the labeller use.

    Attributes:
        intrinsics: (3, 3) float64 pinhole matrix of the images: the left 3 x 3 of P, as ROS's
            image_geometry reads a CameraInfo (P describes the rectified image; for a camera
            without distortion it equals K); K where the driver left P empty.
        width, height: the image size the calibration is for (0 when the driver left it out).
        distortion_model: CameraInfo's name of the lens model ("plumb_bob", ...; "" when unset).
        distortion: D, the lens distortion coefficients of the raw image (empty when unset).
    """

    intrinsics: np.ndarray
    width: int
    height: int
    distortion_model: str = ""
    distortion: tuple[float, ...] = ()

    @property
    def distorted(self) -> bool:
        """Whether the raw image has lens distortion (a non-zero coefficient in D)."""
        return any(coefficient != 0.0 for coefficient in self.distortion)

    def distortion_note(self, color_topic: str) -> str | None:
        """One line for the user when the lens has distortion, None without: EgoPress models the
        camera as a pinhole and does not undistort, so the images must be the rectified ones."""
        if not self.distorted:
            return None
        largest = max(abs(coefficient) for coefficient in self.distortion)
        return (f"camera_info describes a lens with distortion ({self.distortion_model or 'model unset'}, largest "
                f"coefficient {largest:.3g}); EgoPress takes the images on '{color_topic}' as rectified, with the "
                "pinhole P. If they are the raw images, remap the colour and depth inputs to rectified ones "
                "(image_proc's rectify node): hand lifting and mesh projection are biased towards the image border")


def _pinhole(matrix: np.ndarray) -> bool:
    return bool(np.isfinite(matrix).all() and matrix[0, 0] > 0 and matrix[1, 1] > 0 and matrix[2, 2] == 1.0)


def camera_info_to_calibration(msg, image_hw: tuple[int, int] | None = None) -> CameraCalibration:
    """Pinhole matrix, image size and lens distortion of a CameraInfo, checked against the image
    it is used with.

    Args:
        image_hw: (H, W) of the colour image; None: no size check.

    Raises:
        DataError: an all-zero / non-pinhole K and P (an uncalibrated camera), or a CameraInfo made
            for another resolution than ``image_hw``.
    """
    projection = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)[:, :3] if len(msg.p) == 12 else np.zeros((3, 3))
    matrix = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if _pinhole(projection):
        matrix = projection
    elif not _pinhole(matrix):
        raise DataError(f"camera_info K = {matrix.ravel().tolist()} is not a calibrated pinhole matrix "
                        "(fx, fy > 0, K[2][2] = 1) and neither is P; is the camera calibrated?")
    width, height = int(msg.width), int(msg.height)
    if image_hw is not None and width and height and (height, width) != tuple(image_hw):
        raise DataError(f"camera_info is for {width}x{height} images but the colour image is "
                        f"{image_hw[1]}x{image_hw[0]}")
    distortion = tuple(float(value) for value in np.asarray(msg.d, dtype=np.float64).ravel())
    return CameraCalibration(intrinsics=matrix, width=width, height=height,
                             distortion_model=str(msg.distortion_model), distortion=distortion)


# ----------------------------------------------------------------------------------------------
# HandMesh
# ----------------------------------------------------------------------------------------------


def _points32(factory: MessageFactory, points: np.ndarray) -> list:
    point = factory.constructor(POINT32)
    return [point(x=x, y=y, z=z) for x, y, z in np.asarray(points, dtype=np.float32).reshape(-1, 3).tolist()]


def _points_array(points) -> np.ndarray:
    return np.array([(p.x, p.y, p.z) for p in points], dtype=np.float32).reshape(-1, 3)


def hand_mesh(factory: MessageFactory, source_header, hand_side: str, hand_model: str, topology_id: str,
              num_vertices: int, estimator: str, estimate=None):
    """egopress_ros/HandMesh of a :class:`~egopress_core.perception.types.HandMeshEstimate`.

    ``estimate`` None is "no hand": confidence 0 with NaN geometry of the full size, so that
    recorders keep fixed-size arrays and nobody mistakes it for a hand. With an estimate, its
    own hand side, model and topology are written (the arguments describe the "no hand" case).
    """
    if estimate is None:
        nan = np.float32("nan")
        side, model, topology = hand_side, hand_model, topology_id
        global_orient, hand_pose, betas = np.full(3, nan), np.full(45, nan), np.full(10, nan)
        translation = np.full(3, np.nan)
        vertices, joints = np.full((num_vertices, 3), nan), np.full((NUM_JOINTS, 3), nan)
        confidence = 0.0
    else:
        side, model, topology = estimate.hand_side, estimate.hand_model, estimate.topology_id
        global_orient, hand_pose, betas = estimate.global_orient, estimate.hand_pose, estimate.betas
        translation = np.asarray(estimate.transl, dtype=np.float64)
        vertices, joints = estimate.vertices, estimate.joints
        confidence = float(estimate.confidence)
    x, y, z = (float(v) for v in translation)
    return factory.new(
        HAND_MESH, header=copy_header(factory, source_header), hand_side=HAND_SIDE_CODES[side], hand_model=model,
        topology_id=topology, global_orient=np.asarray(global_orient, dtype=np.float32),
        hand_pose=np.asarray(hand_pose, dtype=np.float32), betas=np.asarray(betas, dtype=np.float32),
        translation=factory.new(VECTOR3, x=x, y=y, z=z), vertices=_points32(factory, vertices),
        joints=_points32(factory, joints), confidence=confidence, estimator=estimator,
    )  # fmt: skip


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
        """confidence > 0 and finite geometry."""
        return self.confidence > 0 and bool(np.isfinite(self.vertices).all()) and bool(np.isfinite(self.joints).all())


def hand_mesh_from_msg(msg) -> HandMeshFields:
    """The arrays of a HandMesh.

    Raises:
        DataError: an unknown hand side, or a joint count other than 21.
    """
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


def uv_pressure(factory: MessageFactory, uv_pressure_kpa: np.ndarray, source_header, hand_side: str, uv_layout_id: str,
                contact_threshold_kpa: float, total_force_n: float):
    """egopress_ros/UVPressure with the (Hu, Wu) kPa map as a 32FC1 image carrying the same header."""
    pressure = np.asarray(uv_pressure_kpa, dtype=np.float32)
    return factory.new(
        UV_PRESSURE, header=copy_header(factory, source_header), hand_side=HAND_SIDE_CODES[hand_side],
        uv_layout_id=uv_layout_id, map=image(factory, pressure, "32FC1", source_header),
        contact_threshold_kpa=float(contact_threshold_kpa),
        max_pressure_kpa=float(pressure.max()) if pressure.size else 0.0, total_force_n=float(total_force_n),
    )  # fmt: skip


def uv_pressure_from_msg(msg) -> np.ndarray:
    """(Hu, Wu) float32 kPa map of a UVPressure.

    Raises:
        ImageEncodingError: a map that is not 32FC1, or whose fields do not fit together.
    """
    if str(msg.map.encoding) != "32FC1":
        raise image_encodings.ImageEncodingError(f"UVPressure.map must be 32FC1; got {msg.map.encoding!r}")
    return image_encodings.image_pixels(msg.map, 1, "f4")[:, :, 0]


def hand_contact(factory: MessageFactory, summary, source_header, hand_side: str, topology_id: str):
    """egopress_ros/HandContact of a :class:`~egopress_core.contact.ContactSummary`."""
    x, y, z = (float(v) for v in summary.center_of_pressure)
    return factory.new(
        HAND_CONTACT, header=copy_header(factory, source_header), hand_side=HAND_SIDE_CODES[hand_side],
        topology_id=topology_id, vertex_pressure_kpa=np.asarray(summary.vertex_pressure_kpa, dtype=np.float32),
        vertex_contact=np.asarray(summary.vertex_contact, dtype=bool),
        contact_threshold_kpa=float(summary.contact_threshold_kpa), in_contact=bool(summary.in_contact),
        contact_area_m2=float(summary.contact_area_m2), total_force_n=float(summary.total_force_n),
        center_of_pressure=factory.new(POINT, x=x, y=y, z=z),
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# PointCloud2
# ----------------------------------------------------------------------------------------------


def point_cloud(factory: MessageFactory, points: np.ndarray, source_header):
    """Unorganised (height 1), little-endian PointCloud2 of a 1-D structured array, one scalar
    field per column (:func:`~egopress_core.point_clouds.pack_points`)."""
    packed = pack_points(points)
    field = factory.constructor(POINT_FIELD)
    return factory.new(
        POINT_CLOUD2, header=copy_header(factory, source_header), height=1, width=packed.width,
        fields=[field(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in packed.fields],
        is_bigendian=False, point_step=packed.point_step, row_step=packed.row_step,
        data=np.frombuffer(packed.data, dtype=np.uint8), is_dense=packed.is_dense,
    )  # fmt: skip


def contact_point_cloud(factory: MessageFactory, vertices: np.ndarray, summary, source_header):
    """PointCloud2 of the vertices with fields x, y, z (m), pressure (kPa) and contact (0/1)."""
    points = contact_points(vertices, summary.vertex_pressure_kpa, summary.vertex_contact)
    return point_cloud(factory, points, source_header)


def keypoints_point_cloud(factory: MessageFactory, points_3d: np.ndarray, source_header,
                          confidence: np.ndarray | None = None):
    """PointCloud2 of 21 OpenPose-order keypoints (x, y, z metres, optional confidence): the
    ``hand_keypoints`` input of the keypoints backend; NaN marks a keypoint not found."""
    return point_cloud(factory, keypoint_points(points_3d, confidence), source_header)


# ----------------------------------------------------------------------------------------------
# Marker
# ----------------------------------------------------------------------------------------------


def marker_geometry(vertices: np.ndarray, faces: np.ndarray,
                    colours: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The numpy half of a TRIANGLE_LIST Marker: (C, 3) float64 corner positions (three per
    face, in face order) and, with ``colours`` ((V, 3) uint8 per vertex), (C, 3) float64 RGB in
    [0, 1] per corner."""
    corners = np.asarray(faces, dtype=np.int64).reshape(-1)
    points = np.asarray(vertices, dtype=np.float64)[corners]
    rgb = None if colours is None else np.asarray(colours, dtype=np.float64)[corners] / 255.0
    return points, rgb


def mesh_marker(factory: MessageFactory, vertices: np.ndarray, faces: np.ndarray, source_header, namespace: str,
                colours: np.ndarray | None = None,
                uniform_rgba: tuple[float, float, float, float] = (0.85, 0.75, 0.7, 1.0), marker_id: int = 0):
    """visualization_msgs/Marker TRIANGLE_LIST of a mesh; ``colours`` (V, 3) uint8 per vertex,
    else ``uniform_rgba`` for all of it (its alpha applies to per-vertex colours too)."""
    corners, rgb = marker_geometry(vertices, faces, colours)
    point, colour = factory.constructor(POINT), factory.constructor(COLOR_RGBA)
    red, green, blue, alpha = (float(v) for v in uniform_rgba)
    return factory.new(
        MARKER, header=copy_header(factory, source_header), ns=namespace, id=int(marker_id), type=MARKER_TRIANGLE_LIST,
        action=MARKER_ADD, pose=factory.new(POSE, orientation=factory.new(QUATERNION, w=1.0)),
        scale=factory.new(VECTOR3, x=1.0, y=1.0, z=1.0), color=colour(r=red, g=green, b=blue, a=alpha),
        frame_locked=False, points=[point(x=x, y=y, z=z) for x, y, z in corners.tolist()],
        colors=[] if rgb is None else [colour(r=r, g=g, b=b, a=alpha) for r, g, b in rgb.tolist()],
    )  # fmt: skip


def delete_marker(factory: MessageFactory, source_header, namespace: str, marker_id: int = 0):
    """A DELETE Marker (e.g. when the hand is lost, so RViz does not keep showing a stale mesh)."""
    return factory.new(MARKER, header=copy_header(factory, source_header), ns=namespace, id=int(marker_id),
                       action=MARKER_DELETE)
