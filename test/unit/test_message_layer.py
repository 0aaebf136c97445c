"""One message layer, two libraries: the same frame's messages built by egopress_core.messages on
rclpy's classes (what the live nodes publish) and on the rosbags type store (what the labeller
writes) serialise to the same CDR bytes, message type by message type, and read back to the
same arrays.

rclpy serialises through Fast CDR, which leaves the alignment padding between fields
uninitialised (whatever the buffer held), so the raw bytes are compared with that in mind: same
length, the rclpy bytes decoded and re-encoded by rosbags (which zeroes padding) equal the bag's
bytes exactly, and wherever the raw bytes differ the bag has a zero padding byte.

Needs rclpy and the package's generated messages (``make setup``; ``. scripts/env.sh``), like
test_ros_conversions.py; skipped without them.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy.serialization", reason="rclpy is not installed (make setup)")
pytest.importorskip("egopress_ros.msg", reason="egopress_ros messages are not built or not on the path "
                    "(make setup; . scripts/env.sh)")

from rclpy.serialization import serialize_message  # noqa: E402

from egopress_core import messages as msgs  # noqa: E402
from egopress_core.contact import summarize_contact  # noqa: E402
from egopress_core.data.records import ManoParams  # noqa: E402
from egopress_core.perception import HandMeshEstimate  # noqa: E402
from egopress_core.rosbag.messages import bag_factory  # noqa: E402
from egopress_core.visualize import colorize  # noqa: E402
from egopress_ros.conversions import RCLPY, message_class  # noqa: E402

STAMP_NS = 1_712_000_123_456_789_012
FRAME_ID = "camera_color_optical_frame"
NUM_VERTICES = 40
MODEL, TOPOLOGY, LAYOUT = "egopress_hand_v1", "egopress_hand_v1:40v:0123456789ab", "egopress_uv:6x8:0123456789ab"
# Every type the layer builds, and the ones they nest (imported before field checks are switched on).
TYPES = (msgs.TIME, msgs.HEADER, msgs.COLOR_RGBA, msgs.POINT, msgs.POINT32, msgs.VECTOR3, msgs.QUATERNION,
         msgs.POSE, msgs.IMAGE, msgs.CAMERA_INFO, msgs.POINT_CLOUD2, msgs.POINT_FIELD, msgs.MARKER, msgs.HAND_MESH,
         msgs.UV_PRESSURE, msgs.HAND_CONTACT)


# The messages build_all makes (the byte comparison runs once per name).
MESSAGE_NAMES = [
    "Time", "Header", "Image rgb8 (colour-mapped pressure)", "Image 32FC1 (raw pressure)", "Image rgb8 (camera)",
    "Image 16UC1 (depth)", "CameraInfo", "PointCloud2 (contact)", "PointCloud2 (keypoints)", "Marker (mesh, coloured)",
    "Marker (mesh, uniform)", "Marker (delete)", "HandMesh", "HandMesh (no hand)", "UVPressure", "HandContact",
    "HandContact (no contact)",
]


class Frame:
    """One frame's outputs, as the pressure node and the labeller have them."""

    def __init__(self) -> None:
        rng = np.random.default_rng(18)
        vertices = rng.uniform([-0.08, -0.08, 0.35], [0.08, 0.08, 0.55], size=(NUM_VERTICES, 3))
        joints = rng.uniform([-0.08, -0.08, 0.35], [0.08, 0.08, 0.55], size=(21, 3))
        self.estimate = HandMeshEstimate(
            mano=ManoParams(rng.normal(size=3), rng.normal(size=45), rng.normal(size=10), np.array([0.01, -0.02, 0.4])),
            vertices=vertices, joints=joints, confidence=0.8, estimator="keypoints", hand_side="left",
            hand_model=MODEL, topology_id=TOPOLOGY)
        self.faces = rng.integers(0, NUM_VERTICES, size=(25, 3))
        pressure = np.where(rng.random(NUM_VERTICES) < 0.3, rng.uniform(0.0, 20.0, NUM_VERTICES), 0.0)
        self.summary = summarize_contact(pressure, vertices, np.full(NUM_VERTICES, 1e-5), 1.0)
        self.no_contact = summarize_contact(np.zeros(NUM_VERTICES), vertices, np.full(NUM_VERTICES, 1e-5), 1.0)
        self.uv_kpa = np.where(rng.random((6, 8)) < 0.5, rng.uniform(0.0, 30.0, (6, 8)), 0.0).astype(np.float32)
        self.uv_mask = rng.random((6, 8)) < 0.8
        self.rgb = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
        self.depth_mm = rng.integers(0, 3000, size=(4, 6), dtype=np.uint16)
        self.intrinsics = np.array([[600.0, 0.0, 320.0], [0.0, 601.0, 240.0], [0.0, 0.0, 1.0]])
        keypoints = joints.copy()
        keypoints[7] = np.nan  # a keypoint the tracker did not find
        self.keypoints, self.keypoint_confidence = keypoints, rng.uniform(0.0, 1.0, 21).astype(np.float32)


def build_all(factory: msgs.MessageFactory, frame: Frame) -> dict[str, tuple[object, str]]:
    """name -> (message, type name): every message type of the layer, for one frame."""
    header = msgs.header(factory, STAMP_NS, FRAME_ID)
    estimate, summary = frame.estimate, frame.summary
    return {
        "Time": (msgs.time(factory, STAMP_NS), msgs.TIME),
        "Header": (header, msgs.HEADER),
        "Image rgb8 (colour-mapped pressure)": (
            msgs.image(factory, colorize(frame.uv_kpa, 25.0, mask=frame.uv_mask), "rgb8", header), msgs.IMAGE),
        "Image 32FC1 (raw pressure)": (msgs.image(factory, frame.uv_kpa, "32FC1", header), msgs.IMAGE),
        "Image rgb8 (camera)": (msgs.image(factory, frame.rgb, "rgb8", header), msgs.IMAGE),
        "Image 16UC1 (depth)": (msgs.image(factory, frame.depth_mm, "16UC1", header), msgs.IMAGE),
        "CameraInfo": (msgs.camera_info(factory, frame.intrinsics, (480, 640), header), msgs.CAMERA_INFO),
        "PointCloud2 (contact)": (msgs.contact_point_cloud(factory, estimate.vertices, summary, header), msgs.POINT_CLOUD2),
        "PointCloud2 (keypoints)": (
            msgs.keypoints_point_cloud(factory, frame.keypoints, header, frame.keypoint_confidence), msgs.POINT_CLOUD2),
        "Marker (mesh, coloured)": (
            msgs.mesh_marker(factory, estimate.vertices, frame.faces, header, "hand_contact",
                             colours=colorize(summary.vertex_pressure_kpa, 25.0)), msgs.MARKER),
        "Marker (mesh, uniform)": (msgs.mesh_marker(factory, estimate.vertices, frame.faces, header, "hand_mesh"),
                                   msgs.MARKER),
        "Marker (delete)": (msgs.delete_marker(factory, header, "hand_mesh"), msgs.MARKER),
        "HandMesh": (msgs.hand_mesh(factory, header, "left", MODEL, TOPOLOGY, NUM_VERTICES, "keypoints", estimate),
                     msgs.HAND_MESH),
        "HandMesh (no hand)": (msgs.hand_mesh(factory, header, "right", MODEL, TOPOLOGY, NUM_VERTICES, "mediapipe"),
                               msgs.HAND_MESH),
        "UVPressure": (msgs.uv_pressure(factory, frame.uv_kpa, header, "left", LAYOUT, 1.0, 2.5), msgs.UV_PRESSURE),
        "HandContact": (msgs.hand_contact(factory, summary, header, "left", TOPOLOGY), msgs.HAND_CONTACT),
        "HandContact (no contact)": (msgs.hand_contact(factory, frame.no_contact, header, "left", TOPOLOGY),
                                     msgs.HAND_CONTACT),
    }


@pytest.fixture(scope="module")
def frame() -> Frame:
    return Frame()


@pytest.fixture(scope="module")
def rclpy_checks_fields():
    """rclpy's generated classes type-check every field assignment (ROS_PYTHON_CHECK_FIELDS=1), so
    that a value rclpy only coerces when the check is off fails here. The flag is read when the
    modules are imported, so it is switched on in the imported modules and restored afterwards."""
    for typename in TYPES:
        message_class(typename)
    switched = {name: module for name, module in list(sys.modules.items())
                if ".msg._" in name and getattr(module, "ros_python_check_fields", None) is not None}
    saved = {name: module.ros_python_check_fields for name, module in switched.items()}
    for module in switched.values():
        module.ros_python_check_fields = "1"
    yield
    for name, module in switched.items():
        module.ros_python_check_fields = saved[name]


@pytest.fixture(scope="module")
def both(frame, rclpy_checks_fields) -> tuple[dict, dict]:
    return build_all(RCLPY, frame), build_all(bag_factory(), frame)


def test_every_message_type_is_covered(both):
    assert sorted(both[0]) == sorted(both[1]) == sorted(MESSAGE_NAMES)
    built = {typename for _, typename in both[0].values()}
    assert built == {msgs.TIME, msgs.HEADER, msgs.IMAGE, msgs.CAMERA_INFO, msgs.POINT_CLOUD2, msgs.MARKER,
                     msgs.HAND_MESH, msgs.UV_PRESSURE, msgs.HAND_CONTACT}


@pytest.mark.parametrize("name", MESSAGE_NAMES)
def test_rclpy_and_rosbags_messages_serialise_to_the_same_bytes(both, name):
    (live, typename), (bag, _) = both[0][name], both[1][name]
    store = bag_factory().store
    live_bytes = bytes(serialize_message(live))
    bag_bytes = bytes(store.serialize_cdr(bag, typename))
    assert len(live_bytes) == len(bag_bytes), f"{name}: {len(live_bytes)} bytes live, {len(bag_bytes)} in the bag"
    canonical = bytes(store.serialize_cdr(store.deserialize_cdr(live_bytes, typename), typename))
    first = next((i for i, (a, b) in enumerate(zip(canonical, bag_bytes)) if a != b), None)
    assert first is None, f"{name}: bytes differ from offset {first}: live {canonical[first:first + 16].hex()} " \
                          f"bag {bag_bytes[first:first + 16].hex()}"
    padding = [i for i, (a, b) in enumerate(zip(live_bytes, bag_bytes)) if a != b]
    assert all(bag_bytes[i] == 0 for i in padding), f"{name}: raw bytes differ outside padding at {padding[:8]}"


def test_readers_give_the_same_arrays_for_both(both, frame):
    live, bag = both
    for messages in (live, bag):
        mesh = msgs.hand_mesh_from_msg(messages["HandMesh"][0])
        assert mesh.has_hand and mesh.hand_side == "left" and mesh.topology_id == TOPOLOGY
        assert mesh.stamp_ns == STAMP_NS and mesh.frame_id == FRAME_ID
        np.testing.assert_array_equal(mesh.vertices, frame.estimate.vertices.astype(np.float32))
        np.testing.assert_array_equal(mesh.joints, frame.estimate.joints.astype(np.float32))
        np.testing.assert_array_equal(mesh.translation, np.float32([0.01, -0.02, 0.4]))
        assert not msgs.hand_mesh_from_msg(messages["HandMesh (no hand)"][0]).has_hand
        np.testing.assert_array_equal(msgs.uv_pressure_from_msg(messages["UVPressure"][0]), frame.uv_kpa)
        cloud = msgs.point_cloud_to_numpy(messages["PointCloud2 (contact)"][0])
        np.testing.assert_array_equal(cloud["pressure"], frame.summary.vertex_pressure_kpa.astype(np.float32))
        keypoints = msgs.keypoints_from_point_cloud(messages["PointCloud2 (keypoints)"][0])
        np.testing.assert_array_equal(keypoints.points_3d, frame.keypoints.astype(np.float32).astype(np.float64))
        calibration = msgs.camera_info_to_calibration(messages["CameraInfo"][0], (480, 640))
        np.testing.assert_array_equal(calibration.intrinsics, frame.intrinsics)
        assert msgs.stamp_to_ns(messages["Time"][0]) == STAMP_NS


def test_constants_match_both_libraries():
    store = bag_factory().store
    for cls in (message_class(msgs.MARKER), store.types[msgs.MARKER]):
        assert (cls.TRIANGLE_LIST, cls.ADD, cls.DELETE) == (msgs.MARKER_TRIANGLE_LIST, msgs.MARKER_ADD, msgs.MARKER_DELETE)
    for typename in (msgs.HAND_MESH, msgs.UV_PRESSURE, msgs.HAND_CONTACT):
        for cls in (message_class(typename), store.types[typename]):
            assert (cls.HAND_RIGHT, cls.HAND_LEFT) == (msgs.HAND_SIDE_CODES["right"], msgs.HAND_SIDE_CODES["left"])


def test_a_header_from_either_library_stamps_messages_of_the_other():
    live_header = msgs.header(RCLPY, STAMP_NS, FRAME_ID)
    bag_header = msgs.header(bag_factory(), STAMP_NS, FRAME_ID)
    store = bag_factory().store
    from_live = msgs.delete_marker(bag_factory(), live_header, "x")
    from_bag = msgs.delete_marker(bag_factory(), bag_header, "x")
    assert bytes(store.serialize_cdr(from_live, msgs.MARKER)) == bytes(store.serialize_cdr(from_bag, msgs.MARKER))
    assert msgs.stamp_to_ns(msgs.delete_marker(RCLPY, bag_header, "x").header.stamp) == STAMP_NS


def test_factories_fill_defaults_and_convert_arrays():
    """Left-out fields take the message's defaults in both (rosbags' dataclasses have none), and a
    builder's numpy arrays become what each library stores."""
    live = RCLPY.new(msgs.HAND_CONTACT, vertex_pressure_kpa=np.float32([1.5, 2.0]), vertex_contact=np.array([True, False]))
    bag = bag_factory().new(msgs.HAND_CONTACT, vertex_pressure_kpa=np.float32([1.5, 2.0]),
                            vertex_contact=np.array([True, False]))
    assert list(live.vertex_pressure_kpa) == list(bag.vertex_pressure_kpa) == [1.5, 2.0]
    assert list(live.vertex_contact) == [True, False] and bag.vertex_contact.dtype == bool
    assert live.header.frame_id == bag.header.frame_id == "" and bag.center_of_pressure.x == 0.0
    assert RCLPY.new(msgs.POSE).orientation.w == bag_factory().new(msgs.POSE).orientation.w == 1.0
    assert len(bag_factory().new(msgs.HAND_MESH).joints) == len(RCLPY.new(msgs.HAND_MESH).joints) == msgs.NUM_JOINTS
    assert bytes(RCLPY.new(msgs.IMAGE, data=b"\x01\x02").data) == bag_factory().new(msgs.IMAGE, data=b"\x01\x02").data.tobytes()
