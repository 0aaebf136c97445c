"""Message <-> numpy conversions of egopress_core.messages on rclpy's classes (the factory of
egopress_ros.conversions), against hand-built messages.

Image, CameraInfo, PointCloud2 and Marker come from the ROS wheels in the virtual environment;
the package's own messages (HandMesh, UVPressure, HandContact) need the colcon install space on
the path (``make test`` / ``. scripts/env.sh``), else those tests are skipped.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("sensor_msgs.msg", reason="the ROS 2 wheels are not installed (make setup)")

from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from egopress_core.contact import summarize_contact  # noqa: E402
from egopress_core.errors import DataError  # noqa: E402
from egopress_core import image_encodings as enc  # noqa: E402
from egopress_core import messages as msgs  # noqa: E402
from egopress_core.visualize import colorize  # noqa: E402
from egopress_ros.conversions import RCLPY  # noqa: E402


def _header(sec: int = 12, nanosec: int = 345) -> Header:
    header = Header(frame_id="camera_color_optical_frame")
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    return header


def _image(pixels: np.ndarray, encoding: str, step: int | None = None, bigendian: bool = False) -> Image:
    pixels = np.ascontiguousarray(pixels)
    row = pixels.shape[1] * (pixels.shape[2] if pixels.ndim == 3 else 1) * pixels.dtype.itemsize
    step = row if step is None else step
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    if bigendian:
        rows = pixels.astype(pixels.dtype.newbyteorder(">")).reshape(pixels.shape[0], -1).view(np.uint8)
    padded = np.zeros((pixels.shape[0], step), dtype=np.uint8)
    padded[:, :row] = rows
    return Image(header=_header(), height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                 is_bigendian=int(bigendian), step=step, data=padded.tobytes())


RGB = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding, pixels", [
    ("rgb8", RGB),
    ("bgr8", RGB[:, :, ::-1]),
    ("rgba8", np.concatenate([RGB, np.full((5, 7, 1), 255, np.uint8)], axis=2)),
    ("bgra8", np.concatenate([RGB[:, :, ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2)),
])
def test_colour_encodings_decode_to_rgb(encoding, pixels):
    np.testing.assert_array_equal(enc.decode_color(_image(pixels, encoding)), RGB)
    # Rows padded to a 32-byte step read the same.
    np.testing.assert_array_equal(enc.decode_color(_image(pixels, encoding, step=32)), RGB)


def test_mono8_becomes_grey_rgb():
    grey = RGB[:, :, 0]
    decoded = enc.decode_color(_image(grey, "mono8"))
    assert decoded.shape == (5, 7, 3) and (decoded == grey[:, :, None]).all()


def test_depth_encodings_decode_to_metres():
    millimetres = np.array([[0, 500, 1234], [65535, 1, 800]], dtype=np.uint16)
    for bigendian in (False, True):
        metres = enc.decode_depth(_image(millimetres, "16UC1", bigendian=bigendian))
        assert metres.dtype == np.float32
        np.testing.assert_allclose(metres, millimetres / 1000.0, rtol=1e-6)
    floats = np.array([[0.5, np.nan], [np.inf, 1.25]], dtype=np.float32)
    decoded = enc.decode_depth(_image(floats, "32FC1"))
    np.testing.assert_array_equal(np.isnan(decoded), np.isnan(floats))
    assert decoded[0, 0] == 0.5 and decoded[1, 1] == 1.25 and np.isinf(decoded[1, 0])
    np.testing.assert_allclose(enc.decode_depth(_image(millimetres, "mono16")), millimetres / 1000.0, rtol=1e-6)


def test_bad_images_raise_errors_naming_the_problem():
    with pytest.raises(enc.ImageEncodingError, match="'yuv422' is not supported"):
        enc.decode_color(_image(RGB[:, :, :2].copy(), "yuv422"))
    with pytest.raises(enc.ImageEncodingError, match="looks like a depth image"):
        enc.decode_color(_image(np.zeros((4, 4), np.uint16), "16UC1"))
    with pytest.raises(enc.ImageEncodingError, match="looks like a colour image"):
        enc.decode_depth(_image(RGB, "rgb8"))
    short = _image(RGB, "rgb8")
    short.step = 7 * 3 - 1
    with pytest.raises(enc.ImageEncodingError, match="shorter than a row"):
        enc.decode_color(short)
    truncated = _image(RGB, "rgb8")
    truncated.data = bytes(truncated.data)[:-1]
    with pytest.raises(enc.ImageEncodingError, match="image data has 104 bytes"):
        enc.decode_color(truncated)
    with pytest.raises(enc.ImageEncodingError, match="empty"):
        enc.decode_color(Image(encoding="rgb8"))


def test_numpy_to_image_round_trips_and_checks_types():
    image = msgs.image(RCLPY, RGB, "rgb8", _header())
    assert (image.height, image.width, image.step, image.header.stamp.sec) == (5, 7, 21, 12)
    np.testing.assert_array_equal(enc.decode_color(image), RGB)
    floats = np.linspace(0, 3, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(enc.decode_depth(msgs.image(RCLPY, floats, "32FC1", None)), floats)
    with pytest.raises(enc.ImageEncodingError, match="32FC1 needs 1-channel float32"):
        msgs.image(RCLPY, floats.astype(np.float64), "32FC1", None)


def test_camera_info_intrinsics_and_size_check():
    info = CameraInfo(height=480, width=640)
    info.k = [600.0, 0.0, 320.0, 0.0, 601.0, 240.0, 0.0, 0.0, 1.0]
    matrix = msgs.camera_info_to_calibration(info, (480, 640)).intrinsics
    assert matrix[0, 0] == 600.0 and matrix[1, 2] == 240.0
    with pytest.raises(DataError, match="camera_info is for 640x480 images but the colour image is 320x240"):
        msgs.camera_info_to_calibration(info, (240, 320))
    with pytest.raises(DataError, match="not a calibrated pinhole matrix"):
        msgs.camera_info_to_calibration(CameraInfo(), None)


def test_camera_info_reads_the_rectified_pinhole_and_names_lens_distortion():
    """As image_geometry: P is the images' pinhole (image_proc's rectified output has P != K), K
    only where P is empty; a lens with distortion gets one line saying the images must be
    rectified, a lens without none."""
    info = CameraInfo(height=480, width=640, distortion_model="plumb_bob")
    info.k = [600.0, 0.0, 320.0, 0.0, 601.0, 240.0, 0.0, 0.0, 1.0]
    assert msgs.camera_info_to_calibration(info).intrinsics[0, 0] == 600.0  # P all zero
    info.p = [540.0, 0.0, 318.0, 0.0, 0.0, 545.0, 236.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.d = [0.0] * 5
    calibration = msgs.camera_info_to_calibration(info, (480, 640))
    np.testing.assert_array_equal(calibration.intrinsics, [[540, 0, 318], [0, 545, 236], [0, 0, 1]])
    assert not calibration.distorted and calibration.distortion_note("color/image_raw") is None
    info.d = [-0.21, 0.05, 0.0, 0.001, 0.0]
    calibration = msgs.camera_info_to_calibration(info, (480, 640))
    note = calibration.distortion_note("/camera/color/image_raw")
    assert calibration.distorted and calibration.distortion_model == "plumb_bob"
    assert "plumb_bob, largest coefficient 0.21" in note and "'/camera/color/image_raw'" in note
    assert "rectif" in note and "\n" not in note


def test_point_cloud_round_trip_and_keypoints():
    points = np.zeros(21, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("confidence", "<f4")])
    points["x"] = np.arange(21) * 0.01
    points["z"] = 0.4
    points["confidence"] = 0.5
    points["x"][3] = np.nan
    cloud = msgs.point_cloud(RCLPY, points, _header())
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "confidence"] and not cloud.is_dense
    assert all(f.datatype == PointField.FLOAT32 for f in cloud.fields) and cloud.point_step == 16
    keypoints = msgs.keypoints_from_point_cloud(cloud)
    assert keypoints.points_2d is None and keypoints.points_3d.shape == (21, 3)
    assert np.isnan(keypoints.points_3d[3, 0]) and keypoints.points_3d[4, 0] == pytest.approx(0.04)
    np.testing.assert_allclose(keypoints.confidence, 0.5)
    # A cloud with padding between fields (point_step larger than the fields).
    padded = PointCloud2(header=_header(), height=1, width=21, point_step=20, row_step=420, is_bigendian=False)
    padded.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1) for n, o in (("u", 4), ("v", 12))]
    raw = np.zeros((21, 5), dtype="<f4")
    raw[:, 1], raw[:, 3] = np.arange(21), 2 * np.arange(21)
    padded.data = raw.tobytes()
    read = msgs.keypoints_from_point_cloud(padded)
    assert read.points_3d is None and read.points_2d[5].tolist() == [5.0, 10.0]
    with pytest.raises(DataError, match="expected 21"):
        msgs.keypoints_from_point_cloud(msgs.point_cloud(RCLPY, points[:20], _header()))


def test_contact_point_cloud_and_marker():
    vertices = np.array([[0, 0, 0.4], [0.01, 0, 0.4], [0, 0.01, 0.4], [0.01, 0.01, 0.41]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    summary = summarize_contact([0.0, 3.0, 0.5, 8.0], vertices, np.full(4, 1e-5), 1.0)
    cloud = msgs.contact_point_cloud(RCLPY, vertices, summary, _header())
    read = msgs.point_cloud_to_numpy(cloud)
    assert read.dtype.names == ("x", "y", "z", "pressure", "contact") and cloud.point_step == 17
    np.testing.assert_allclose(read["pressure"], [0, 3, 0.5, 8])
    assert read["contact"].tolist() == [0, 1, 0, 1]
    colours = colorize(summary.vertex_pressure_kpa, 8.0)
    marker = msgs.mesh_marker(RCLPY, vertices, faces, _header(), "hand", colours=colours)
    assert marker.type == marker.TRIANGLE_LIST and len(marker.points) == len(marker.colors) == 6
    assert marker.points[4].x == pytest.approx(0.01) and marker.points[4].z == pytest.approx(0.41)
    assert marker.colors[4].r == pytest.approx(colours[3, 0] / 255) and marker.header.frame_id == "camera_color_optical_frame"
    assert msgs.delete_marker(RCLPY, _header(), "hand").action == marker.DELETE


def test_colorize_maps_range_and_mask():
    colours = colorize(np.array([0.0, 5.0, 10.0, 50.0, np.nan]), 10.0, mask=np.array([1, 1, 1, 1, 0], bool))
    assert colours.dtype == np.uint8 and colours.shape == (5, 3)
    np.testing.assert_array_equal(colours[2], colours[3])  # clipped at vmax
    assert (colours[4] == 128).all() and not np.array_equal(colours[0], colours[2])


def test_stamps():
    assert msgs.stamp_to_ns(_header(3, 7).stamp) == 3_000_000_007
    stamp = msgs.time(RCLPY, 5_000_000_123)
    assert (stamp.sec, stamp.nanosec) == (5, 123)
    assert msgs.stamp_to_seconds(stamp) == pytest.approx(5.000000123)


@pytest.fixture(scope="module")
def messages():
    return pytest.importorskip("egopress_ros.msg", reason="egopress_ros messages are not built or not on the path "
                               "(make setup; . scripts/env.sh)")


def test_hand_mesh_message_from_estimate_and_for_no_hand(messages):
    from egopress_core.data.records import ManoParams
    from egopress_core.perception import HandMeshEstimate

    rng = np.random.default_rng(1)
    estimate = HandMeshEstimate(
        mano=ManoParams(rng.normal(size=3), rng.normal(size=45), rng.normal(size=10), np.array([0.01, -0.02, 0.4])),
        vertices=rng.normal(size=(30, 3)), joints=rng.normal(size=(21, 3)), confidence=0.75, estimator="keypoints",
        hand_side="left", hand_model="egopress_hand_v1", topology_id="egopress_hand_v1:30v:abc")
    msg = msgs.hand_mesh(RCLPY, _header(), "left", "egopress_hand_v1", "egopress_hand_v1:30v:abc", 30, "keypoints", estimate)
    assert msg.hand_side == messages.HandMesh.HAND_LEFT and msg.confidence == 0.75 and msg.header.stamp.sec == 12
    np.testing.assert_allclose(msg.hand_pose, estimate.hand_pose, rtol=1e-6)
    assert msg.translation.z == pytest.approx(0.4)
    data = msgs.hand_mesh_from_msg(msg)
    assert data.has_hand and data.hand_side == "left" and data.vertices.shape == (30, 3)
    np.testing.assert_allclose(data.vertices, estimate.vertices, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(data.joints, estimate.joints, rtol=1e-6, atol=1e-7)

    none = msgs.hand_mesh(RCLPY, _header(), "right", "egopress_hand_v1", "egopress_hand_v1:30v:abc", 30, "keypoints")
    assert none.confidence == 0.0 and len(none.vertices) == 30 and math.isnan(none.vertices[0].x)
    assert not msgs.hand_mesh_from_msg(none).has_hand and math.isnan(none.translation.x)


def test_uv_pressure_and_contact_messages(messages):
    pressure = np.zeros((6, 8), dtype=np.float32)
    pressure[2:4, 3:6] = [[1.0, 2.5, 0.0], [4.0, 0.5, 3.0]]
    msg = msgs.uv_pressure(RCLPY, pressure, _header(), "right", "layout:6x8:123", 1.0, 0.75)
    assert msg.map.encoding == "32FC1" and msg.map.header.stamp == msg.header.stamp
    assert msg.max_pressure_kpa == 4.0 and msg.total_force_n == 0.75 and msg.hand_side == messages.UVPressure.HAND_RIGHT
    np.testing.assert_array_equal(msgs.uv_pressure_from_msg(msg), pressure)

    vertices = np.array([[0, 0, 0.4], [0.02, 0, 0.4], [0, 0.02, 0.4]])
    summary = summarize_contact([5.0, 0.0, 5.0], vertices, np.full(3, 1e-4), 1.0)
    contact = msgs.hand_contact(RCLPY, summary, _header(), "right", "topo")
    assert list(contact.vertex_contact) == [True, False, True] and contact.in_contact
    assert contact.center_of_pressure.y == pytest.approx(0.01) and contact.total_force_n == pytest.approx(1.0)
    empty = msgs.hand_contact(RCLPY, summarize_contact(np.zeros(3), vertices, np.full(3, 1e-4)), _header(), "right", "topo")
    assert not empty.in_contact and math.isnan(empty.center_of_pressure.x)
