"""Our image and point-cloud conversions agree with the ROS tools users know: ``cv_bridge`` and
``sensor_msgs_py.point_cloud2``.

The package converts without them (neither is on PyPI, where the library is installed and
tested), but declares both in package.xml, so a ROS user mixing our topics with code written
against them must get the same pixels and points. Each check runs wherever the tool is
importable (a sourced ROS distribution) and is skipped, naming the missing module, elsewhere.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from egopress_core import image_encodings as enc
from egopress_core import messages as msgs

ROOT = Path(__file__).resolve().parents[3]  # test/integration/<layer>/<this file>
# Every encoding egopress_core.image_encodings reads and writes, with pixels of its type.
_RNG = np.random.default_rng(7)
_RGB = _RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
_ALPHA = _RNG.integers(0, 256, size=(5, 7, 1), dtype=np.uint8)
PIXELS = {
    "rgb8": _RGB,
    "bgr8": _RGB[:, :, ::-1].copy(),
    "rgba8": np.concatenate([_RGB, _ALPHA], axis=2),
    "bgra8": np.concatenate([_RGB[:, :, ::-1], _ALPHA], axis=2),
    "mono8": _RGB[:, :, 0].copy(),
    "mono16": _RNG.integers(0, 65536, size=(5, 7), dtype=np.uint16),
    "16UC1": _RNG.integers(0, 65536, size=(5, 7), dtype=np.uint16),
    "32FC1": _RNG.uniform(0.0, 5.0, size=(5, 7)).astype(np.float32),
}
assert set(PIXELS) == set(enc.PIXEL_FORMATS), "a supported encoding is missing from the comparison"


def test_package_declares_the_ros_tools_it_is_checked_against():
    """Both ship with every ROS distribution (not PyPI), so they are exec_depends for rosdep."""
    exec_depends = {element.text for element in ElementTree.parse(ROOT / "package.xml").getroot().iter("exec_depend")}
    assert {"cv_bridge", "sensor_msgs_py"} <= exec_depends


@pytest.fixture(scope="module")
def rclpy_factory():
    pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2) is not importable (make setup)")
    from egopress_ros.conversions import RCLPY

    return RCLPY


@pytest.fixture(scope="module")
def bridge(rclpy_factory):
    cv_bridge = pytest.importorskip("cv_bridge", reason="cv_bridge is not importable: it ships with ROS distributions "
                                    "(ros-<distro>-cv-bridge), not with PyPI")
    return cv_bridge.CvBridge()


@pytest.fixture(scope="module")
def point_cloud2(rclpy_factory):
    return pytest.importorskip("sensor_msgs_py.point_cloud2", reason="sensor_msgs_py is not importable: it ships with "
                               "ROS distributions (ros-<distro>-sensor-msgs-py), not with PyPI")


def _header():
    from std_msgs.msg import Header

    header = Header(frame_id="camera_color_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 1_712_000_123, 456_789
    return header


def _image_fields(msg) -> tuple:
    return (int(msg.height), int(msg.width), str(msg.encoding), int(msg.is_bigendian), int(msg.step),
            bytes(msg.data), int(msg.header.stamp.sec), int(msg.header.stamp.nanosec), str(msg.header.frame_id))


def _padded(msg, extra_pixels: int):
    """A copy of an unpadded Image with ``extra_pixels`` pixels of padding after each row (cv_bridge
    reads rows padded by whole pixels)."""
    from sensor_msgs.msg import Image

    pixel = msg.step // msg.width
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    padded = np.full((msg.height, msg.step + extra_pixels * pixel), 0xAB, np.uint8)
    padded[:, :msg.step] = rows
    return Image(header=msg.header, height=msg.height, width=msg.width, encoding=msg.encoding,
                 is_bigendian=msg.is_bigendian, step=padded.shape[1], data=padded.tobytes())


@pytest.mark.ros
@pytest.mark.parametrize("encoding", sorted(PIXELS))
def test_images_we_build_are_the_images_cv_bridge_builds(bridge, rclpy_factory, encoding):
    pixels, header = PIXELS[encoding], _header()
    ours = msgs.image(rclpy_factory, pixels, encoding, header)
    theirs = bridge.cv2_to_imgmsg(pixels, encoding=encoding, header=header)
    assert _image_fields(ours) == _image_fields(theirs)


@pytest.mark.ros
@pytest.mark.parametrize("encoding", sorted(PIXELS))
def test_we_read_images_as_cv_bridge_reads_them(bridge, encoding):
    pixels = PIXELS[encoding]
    for message in (bridge.cv2_to_imgmsg(pixels, encoding=encoding), _padded(bridge.cv2_to_imgmsg(pixels, encoding=encoding), 3)):
        theirs = np.asarray(bridge.imgmsg_to_cv2(message, desired_encoding="passthrough"))
        ours = enc.decode_image(message)
        assert ours.dtype == theirs.dtype.newbyteorder("=") and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(ours, pixels)
        if encoding in enc.COLOR_ENCODINGS:
            np.testing.assert_array_equal(enc.decode_color(message), bridge.imgmsg_to_cv2(message, desired_encoding="rgb8"))
        else:
            scale = enc.DEPTH_ENCODINGS[encoding][1]
            np.testing.assert_allclose(enc.decode_depth(message), theirs.astype(np.float64) * scale, rtol=1e-6)


def _contact_points(with_nan: bool) -> np.ndarray:
    rng = np.random.default_rng(3)
    vertices = rng.uniform(-0.1, 0.5, size=(30, 3))
    if with_nan:
        vertices[4] = np.nan  # not dense, as sensor_msgs_py always writes
    pressure = rng.uniform(0.0, 10.0, 30)
    return msgs.contact_points(vertices, pressure, pressure > 2.0)


def _cloud_fields(msg) -> tuple:
    fields = [(f.name, int(f.offset), int(f.datatype), int(f.count)) for f in msg.fields]
    return (int(msg.height), int(msg.width), fields, bool(msg.is_bigendian), int(msg.point_step), int(msg.row_step),
            bytes(msg.data), bool(msg.is_dense))


def _keypoint_points() -> np.ndarray:
    joints = np.random.default_rng(4).uniform(-0.1, 0.5, size=(21, 3))
    joints[9] = np.nan
    return msgs.keypoint_points(joints, np.linspace(0.0, 1.0, 21))


@pytest.mark.ros
@pytest.mark.parametrize("points", [_contact_points(True), _keypoint_points()], ids=["contact", "keypoints"])
def test_point_clouds_we_build_are_the_clouds_sensor_msgs_py_builds(point_cloud2, rclpy_factory, points):
    header = _header()
    ours = msgs.point_cloud(rclpy_factory, points, header)
    theirs = point_cloud2.create_cloud(header, ours.fields, points)
    assert _cloud_fields(ours) == _cloud_fields(theirs)


@pytest.mark.ros
@pytest.mark.parametrize("points", [_contact_points(False), _contact_points(True), _keypoint_points()],
                         ids=["contact-dense", "contact", "keypoints"])
def test_we_read_point_clouds_as_sensor_msgs_py_reads_them(point_cloud2, rclpy_factory, points):
    ours = msgs.point_cloud(rclpy_factory, points, _header())
    theirs = point_cloud2.create_cloud(_header(), ours.fields, points)
    for cloud in (ours, theirs):
        expected = point_cloud2.read_points(cloud, skip_nans=False)
        read = msgs.point_cloud_to_numpy(cloud)
        assert read.dtype.names == expected.dtype.names == points.dtype.names
        for name in points.dtype.names:
            np.testing.assert_array_equal(read[name], expected[name])
            np.testing.assert_array_equal(read[name], points[name])
