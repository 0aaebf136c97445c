"""The rosbags type store and message conversions: custom types as the ROS build generates them,
definitions embedded in written bags, image / depth / point-cloud / mesh conversions of
egopress_core.messages on the rosbags factory, and the bag-only image decoders."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from egopress_core import messages as msgs
from egopress_core.errors import ConfigError, DataError
from egopress_core.rosbag import messages as m
from egopress_core.rosbag.reader import BagReader
from egopress_core.rosbag.typestore import (
    COMPRESSED_IMAGE,
    CUSTOM_MESSAGES,
    HAND_MESH,
    IMAGE,
    PACKAGE,
    egopress_typestore,
    find_msg_dir,
    message_definition,
)
from egopress_core.rosbag.writer import BagWriter

ROOT = Path(__file__).resolve().parents[3]  # test/integration/<layer>/<this file>


@pytest.fixture(scope="module")
def store():
    return egopress_typestore()


def header(store, stamp_ns=1_234_567_890_123):
    return msgs.header(m.bag_factory(store), stamp_ns, "camera_color_optical_frame")


def test_custom_types_hash_as_the_ros_build_generates_them(store):
    built = ROOT / "install" / PACKAGE / "share" / PACKAGE / "msg"
    if not (built / "HandMesh.json").is_file():
        pytest.skip("messages not built (make msgs)")
    for name in CUSTOM_MESSAGES:
        description = json.loads((built / f"{name}.json").read_text())
        expected = next(h["hash_string"] for h in description["type_hashes"] if h["type_name"] == f"{PACKAGE}/msg/{name}")
        assert store.hash_rihs01(f"{PACKAGE}/msg/{name}") == expected


def test_message_definitions_travel_with_the_bag(store, tmp_path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    definition, digest = message_definition(store, HAND_MESH)
    assert definition.startswith((find_msg_dir() / "HandMesh.msg").read_text().strip())  # comments included
    assert "MSG: geometry_msgs/Point32" in definition and digest.startswith("RIHS01_")

    with BagWriter(tmp_path / "bag", store, storage="mcap") as writer:
        connection = writer.add_topic("/hand_mesh", HAND_MESH)
        writer.write_message(connection, 5, msgs.hand_mesh(m.bag_factory(store), header(store), "left", "hand", "hand:10v:abc", 10, "test"))
    # A reader that knows none of the package's types reads it from the bag's definitions.
    with AnyReader([tmp_path / "bag"], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        (item,) = list(reader.messages())
        message = reader.deserialize(item[2], item[0].msgtype)
    assert message.confidence == 0.0 and message.hand_side == 1 and len(message.vertices) == 10
    assert np.isnan([p.x for p in message.vertices]).all() and message.estimator == "test"


def test_missing_message_folder_is_a_clear_error(monkeypatch, tmp_path):
    from egopress_core.rosbag import typestore

    monkeypatch.setattr(typestore, "msg_dir_candidates", lambda: [tmp_path / "nowhere"])
    with pytest.raises(ConfigError, match="EGOPRESS_MSG_DIR"):
        typestore.find_msg_dir()


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_colour_encodings_decode_to_rgb_with_padded_rows(store, encoding):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    channels = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "rgba8": np.dstack([rgb, np.full((5, 7), 9, np.uint8)]),
                "bgra8": np.dstack([rgb[:, :, ::-1], np.full((5, 7), 9, np.uint8)]), "mono8": rgb[:, :, 0]}[encoding]
    message = msgs.image(m.bag_factory(store), channels, encoding, header(store))
    row = message.step
    padded = np.zeros((5, row + 3), np.uint8)
    padded[:, :row] = message.data.reshape(5, row)
    message.step, message.data = row + 3, padded.reshape(-1)
    message = store.deserialize_cdr(store.serialize_cdr(message, IMAGE), IMAGE)
    expected = np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(m.color_to_rgb(message), expected)


def test_depth_encodings_give_metres_with_holes_as_zero(store):
    millimetres = np.array([[0, 500], [1234, 65535]], dtype=np.uint16)
    message = msgs.image(m.bag_factory(store), millimetres, "16UC1", header(store))
    np.testing.assert_allclose(m.depth_to_metres(message), millimetres / 1000.0, rtol=1e-6)
    big = msgs.image(m.bag_factory(store), millimetres.byteswap(), "16UC1", header(store))
    big.is_bigendian = 1
    np.testing.assert_allclose(m.depth_to_metres(big), millimetres / 1000.0, rtol=1e-6)
    metres = np.array([[np.nan, 0.5], [np.inf, -1.0]], dtype=np.float32)
    np.testing.assert_array_equal(m.depth_to_metres(msgs.image(m.bag_factory(store), metres, "32FC1", header(store))), [[0, 0.5], [0, 0]])


def test_unsupported_images_raise_named_errors(store):
    message = msgs.image(m.bag_factory(store), np.zeros((2, 2), np.uint16), "16UC1", header(store))
    with pytest.raises(m.UnsupportedEncoding, match="looks like a depth image"):
        m.color_to_rgb(message)
    message.encoding = "yuv422"
    with pytest.raises(m.UnsupportedEncoding, match="'yuv422' is not supported"):
        m.depth_to_metres(message)
    message = msgs.image(m.bag_factory(store), np.zeros((2, 2, 3), np.uint8), "rgb8", header(store))
    message.data = message.data[:-1]
    with pytest.raises(m.UnsupportedEncoding, match="image data has 11 bytes"):
        m.color_to_rgb(message)
    with pytest.raises(DataError, match="needs 3-channel uint8"):
        msgs.image(m.bag_factory(store), np.zeros((2, 2), np.uint8), "rgb8", header(store))


@pytest.mark.parametrize("image_format", ["png", "jpeg"])
def test_compressed_colour_images_decode(store, image_format):
    from PIL import Image

    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, 12:] = (200, 40, 10)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=image_format.upper())
    message = store.types[COMPRESSED_IMAGE](header=header(store), format=f"rgb8; {image_format} compressed bgr8",
                                            data=np.frombuffer(buffer.getvalue(), np.uint8))
    decoded = m.color_to_rgb(message, COMPRESSED_IMAGE)
    assert decoded.shape == rgb.shape
    assert np.abs(decoded.astype(int) - rgb).mean() < (0.5 if image_format == "png" else 6)
    message.data = np.frombuffer(b"not an image", np.uint8)
    with pytest.raises(m.UnsupportedEncoding, match="cannot be decoded"):
        m.color_to_rgb(message, COMPRESSED_IMAGE)


def test_point_clouds_and_keypoints_round_trip(store):
    joints = np.random.default_rng(1).normal(size=(21, 3)).astype(np.float32)
    joints[4] = np.nan
    cloud = msgs.keypoints_point_cloud(m.bag_factory(store), joints, header(store), np.linspace(0, 1, 21, dtype=np.float32))
    cloud = store.deserialize_cdr(store.serialize_cdr(cloud, "sensor_msgs/msg/PointCloud2"), "sensor_msgs/msg/PointCloud2")
    fields = msgs.keypoints_from_point_cloud(cloud)
    np.testing.assert_array_equal(fields.points_3d, joints.astype(np.float64))
    assert fields.points_2d is None and fields.confidence[4] == pytest.approx(0.2) and fields.has_hand
    assert not cloud.is_dense
    with pytest.raises(DataError, match="expected 21"):
        msgs.keypoints_from_point_cloud(msgs.keypoints_point_cloud(m.bag_factory(store), joints[:5], header(store)))


def test_pressure_messages_carry_the_source_header(store):
    from egopress_core.contact import summarize_contact

    uv_map = np.zeros((4, 6), np.float32)
    uv_map[1, 2] = 12.5
    message = msgs.uv_pressure(m.bag_factory(store), uv_map, header(store), "right", "atlas:4x6:abc", 1.0, 3.25)
    message = store.deserialize_cdr(store.serialize_cdr(message, "egopress_ros/msg/UVPressure"), "egopress_ros/msg/UVPressure")
    assert message.map.header.stamp == message.header.stamp and message.max_pressure_kpa == 12.5
    np.testing.assert_array_equal(msgs.uv_pressure_from_msg(message), uv_map)
    vertices = np.eye(3)
    summary = summarize_contact(np.array([0.5, 2.0, 3.0]), vertices, np.array([1e-4, 1e-4, 2e-4]))
    contact = msgs.hand_contact(m.bag_factory(store), summary, header(store), "left", "t")
    contact = store.deserialize_cdr(store.serialize_cdr(contact, "egopress_ros/msg/HandContact"), "egopress_ros/msg/HandContact")
    np.testing.assert_array_equal(contact.vertex_contact, [False, True, True])
    assert contact.hand_side == 1 and contact.total_force_n == pytest.approx(summary.total_force_n)


def test_reader_rejects_what_is_not_a_bag(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="not a rosbag2"):
        BagReader(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="no such bag"):
        BagReader(tmp_path / "missing")


def test_shared_image_encodings_read_raw_fields_of_any_message():
    """egopress_core.image_encodings serves rclpy and rosbags messages alike: any object with the
    Image fields, ``data`` as bytes, a list or an array."""
    from types import SimpleNamespace

    from egopress_core import image_encodings as enc

    metres = np.array([[0.5, np.nan, 1.25]], dtype=np.float32)
    big = SimpleNamespace(height=1, width=3, step=12, encoding="32FC1", is_bigendian=1,
                          data=list(metres.astype(">f4").tobytes()))
    decoded = enc.decode_depth(big)
    assert decoded.dtype == np.float32 and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, metres)  # NaN kept: "no reading" as recorded
    fields = enc.encode_image(np.arange(6, dtype=np.uint16).reshape(2, 3), "mono16")
    assert (fields.height, fields.width, fields.step, fields.is_bigendian) == (2, 3, 6, 0)
    as_bytes = SimpleNamespace(**{**fields.__dict__, "data": fields.data.tobytes()})
    np.testing.assert_allclose(enc.decode_depth(as_bytes), np.arange(6).reshape(2, 3) / 1000.0, rtol=1e-6)
    assert enc.pixel_format("bgra8") == ("u1", 4)
    with pytest.raises(enc.ImageEncodingError, match="'yuv422' is not supported"):
        enc.pixel_format("yuv422")
    with pytest.raises(enc.ImageEncodingError, match="looks like a colour image: check --depth-topic"):
        enc.decode_depth(SimpleNamespace(**{**fields.__dict__, "encoding": "rgb8"}), "check --depth-topic")
    assert m.UnsupportedEncoding is enc.ImageEncodingError and issubclass(enc.ImageEncodingError, DataError)
