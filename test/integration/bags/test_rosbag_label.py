"""`egopress label-bag` on generated sample bags: every storage / compression variant, the output's
topics, counts, stamps and values, the input left untouched, the backends and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rosbag_helpers import (
    connections_of,
    deserialize,
    label_options,
    read_bag,
    sample_bag,
    stamp_ns,
    tiny_checkpoint,
    tree_digest,
)

from egopress_core.rosbag.index import TopicSelection
from egopress_core.rosbag.label_options import report_path_for, work_dir_for
from egopress_core.rosbag.labeller import label_bag
from egopress_core.rosbag.sample import (
    COLOR_TOPIC,
    GROUND_TRUTH_CONTACT_TOPIC,
    GROUND_TRUTH_KEYPOINTS_TOPIC,
    GROUND_TRUTH_MESH_TOPIC,
)
from egopress_core.rosbag.typestore import HAND_CONTACT, HAND_MESH, IMAGE, POINT_CLOUD2, UV_PRESSURE

OUTPUTS = {
    "/egopress/hand_mesh": HAND_MESH,
    "/egopress/uv_pressure": UV_PRESSURE,
    "/egopress/hand_contact": HAND_CONTACT,
    "/egopress/uv_pressure/image": IMAGE,
    "/egopress/uv_pressure/image_raw": IMAGE,
    "/egopress/hand_contact/points": POINT_CLOUD2,
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.mark.parametrize(("storage", "compression"), [("sqlite3", "none"), ("mcap", "none"), ("mcap", "storage"),
                                                      ("sqlite3", "message"), ("mcap", "file")])
def test_labelled_bag_keeps_the_input_and_adds_stamped_labels(tmp_path_factory, tmp_path, checkpoint, storage, compression):
    from egopress_core.data.sources import hand_uv_mask
    from egopress_core.hand.hand_model import load_hand_model

    source = sample_bag(tmp_path_factory, storage, compression)
    before = tree_digest(source)
    output = tmp_path / "labelled"
    report = label_bag(source, output, label_options(checkpoint), progress=False)

    assert tree_digest(source) == before, "the input bag was modified"
    assert report.status == "complete" and report.storage == storage
    assert not work_dir_for(output).exists()
    # Written under a temporary name, then moved: the storage file still carries the bag's name.
    suffix = ".mcap" if storage == "mcap" else ".db3"
    assert sorted(path.name for path in output.iterdir()) == [f"labelled{suffix}", "metadata.yaml"]
    saved = json.loads(report_path_for(output).read_text())
    assert saved["status"] == "complete" and saved["frames"]["with_pressure"] == saved["frames"]["synchronised"]

    original, labelled = read_bag(source), read_bag(output)
    # Every original message, byte for byte at its bag time; definitions and QoS copied.
    for topic, messages in original.items():
        assert labelled[topic] == messages, topic
    inputs, outputs = connections_of(source), connections_of(output)
    for topic, connection in inputs.items():
        copied = outputs[topic]
        assert (copied.msgtype, copied.digest, copied.msgdef.data) == (connection.msgtype, connection.digest, connection.msgdef.data)
        assert copied.ext.offered_qos_profiles == connection.ext.offered_qos_profiles

    colour = {stamp_ns(deserialize(raw, IMAGE)): bag_time for bag_time, raw in original[COLOR_TOPIC]}
    assert set(labelled) == set(original) | set(OUTPUTS)
    for topic, msgtype in OUTPUTS.items():
        assert outputs[topic].msgtype == msgtype
        assert len(labelled[topic]) == len(colour), topic
        for bag_time, raw in labelled[topic]:
            message = deserialize(raw, msgtype)
            # Stamped with the source image: its header stamp, logged at its bag time.
            assert colour[stamp_ns(message)] == bag_time
            assert message.header.frame_id == "camera_color_optical_frame"

    hand = load_hand_model("right")
    mask = hand_uv_mask((16, 16), "right").mask
    truth = {stamp_ns(m): m for m in (deserialize(raw, HAND_MESH) for _, raw in original[GROUND_TRUTH_MESH_TOPIC])}
    for _, raw in labelled["/egopress/hand_mesh"]:
        mesh = deserialize(raw, HAND_MESH)
        reference = truth[stamp_ns(mesh)]
        assert mesh.confidence == 1.0 and mesh.estimator == "ground_truth" and mesh.topology_id == hand.topology_id
        np.testing.assert_array_equal([(p.x, p.y, p.z) for p in mesh.vertices], [(p.x, p.y, p.z) for p in reference.vertices])
    for _, raw in labelled["/egopress/uv_pressure"]:
        message = deserialize(raw, UV_PRESSURE)
        uv_map = np.frombuffer(message.map.data.tobytes(), dtype="<f4").reshape(message.map.height, message.map.width)
        assert message.map.encoding == "32FC1" and uv_map.shape == (16, 16)
        assert np.isfinite(uv_map).all() and (uv_map >= 0).all() and (uv_map[~mask] == 0).all()
        assert message.max_pressure_kpa == pytest.approx(float(uv_map.max()))
        assert message.total_force_n >= 0 and ":16x16:" in message.uv_layout_id
    for _, raw in labelled["/egopress/hand_contact"]:
        contact = deserialize(raw, HAND_CONTACT)
        pressure = np.asarray(contact.vertex_pressure_kpa)
        assert pressure.shape == (hand.num_vertices,) and (pressure >= 0).all()
        np.testing.assert_array_equal(np.asarray(contact.vertex_contact), pressure > contact.contact_threshold_kpa)
        assert contact.in_contact == bool(np.asarray(contact.vertex_contact).any()) and contact.total_force_n >= 0
    for _, raw in labelled["/egopress/hand_contact/points"]:
        cloud = deserialize(raw, POINT_CLOUD2)
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "pressure", "contact"]
        assert cloud.width == hand.num_vertices and cloud.height == 1
    image = deserialize(labelled["/egopress/uv_pressure/image"][0][1], IMAGE)
    assert (image.encoding, image.height, image.width) == ("rgb8", 16, 16)


def test_keypoints_backend_fits_the_hand_to_the_recorded_keypoints(tmp_path_factory, tmp_path, checkpoint):
    source = sample_bag(tmp_path_factory, "mcap", "none")
    options = label_options(checkpoint, backend="keypoints", topics=TopicSelection(keypoints=GROUND_TRUTH_KEYPOINTS_TOPIC),
                            num_inference_steps=1)
    report = label_bag(source, tmp_path / "labelled", options, progress=False)
    labelled = read_bag(tmp_path / "labelled")
    truth = {stamp_ns(m): m for m in (deserialize(raw, HAND_MESH) for _, raw in labelled[GROUND_TRUTH_MESH_TOPIC])}
    errors = []
    for _, raw in labelled["/egopress/hand_mesh"]:
        mesh = deserialize(raw, HAND_MESH)
        assert mesh.estimator == "keypoints"
        if mesh.confidence > 0:
            fitted = np.array([(p.x, p.y, p.z) for p in mesh.joints])
            expected = np.array([(p.x, p.y, p.z) for p in truth[stamp_ns(mesh)].joints])
            errors.append(np.linalg.norm(fitted - expected, axis=1).mean())
    assert report.frames["with_pressure"] == len(errors) >= 0.9 * report.frames["synchronised"]
    assert np.median(errors) < 0.01  # the fit reproduces the true joints to a centimetre


def test_command_line_labels_a_bag_and_reports_errors(tmp_path_factory, tmp_path, checkpoint, capsys):
    from egopress_core.cli.main import main

    source = sample_bag(tmp_path_factory, "mcap", "none")
    output = tmp_path / "labelled"
    code = main(["label-bag", str(source), str(output), "--checkpoint", str(checkpoint), "--backend", "ground_truth",
                 "--steps", "1", "--device", "cpu", "--storage", "sqlite3", "--compression", "message", "--namespace", "/labels",
                 "--window-batch-size", "2", "--no-mirrors", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "complete" in printed and str(report_path_for(output)) in printed
    labelled = read_bag(output)
    assert {"/labels/hand_mesh", "/labels/uv_pressure", "/labels/hand_contact"} <= set(labelled)
    assert not any(topic.startswith("/labels/uv_pressure/") for topic in labelled)
    metadata = (output / "metadata.yaml").read_text()
    assert "storage_identifier: sqlite3" in metadata and "compression_mode: message" in metadata

    code = main(["label-bag", str(tmp_path / "missing"), str(tmp_path / "out2"), "--checkpoint", str(checkpoint),
                 "--backend", "ground_truth", "--no-progress"])
    assert code == 2 and "no such bag" in capsys.readouterr().err
    code = main(["label-bag", str(source), str(output), "--checkpoint", str(checkpoint), "--backend", "ground_truth",
                 "--no-progress"])
    assert code == 2 and "exists already" in capsys.readouterr().err
    code = main(["label-bag", str(source), str(tmp_path / "fp16"), "--checkpoint", str(checkpoint), "--backend", "ground_truth",
                 "--device", "cpu", "--precision", "fp16", "--no-progress"])
    assert code == 2 and "precision='fp16' needs a GPU" in capsys.readouterr().err and not (tmp_path / "fp16").exists()


def test_uv_geometry_checkpoint_labels_a_bag(tmp_path_factory, tmp_path):
    checkpoint = tiny_checkpoint(tmp_path_factory, use_uv_geometry=True)
    source = sample_bag(tmp_path_factory, "mcap", "none")
    report = label_bag(source, tmp_path / "labelled", label_options(checkpoint, num_inference_steps=1, mirrors=False),
                       progress=False)
    assert report.status == "complete"
    assert len(read_bag(tmp_path / "labelled")["/egopress/uv_pressure"]) > 0


def test_sample_bag_holds_realsense_topics_and_the_ground_truth(tmp_path_factory):
    from egopress_core.rosbag.sample import START_STAMP_NS
    from rosbag_helpers import SAMPLE_FRAMES, synthetic_sequence

    source = sample_bag(tmp_path_factory, "mcap", "none")
    sequence = synthetic_sequence(tmp_path_factory)
    messages = read_bag(source)
    assert set(messages) == {COLOR_TOPIC, "/camera/aligned_depth_to_color/image_raw", "/camera/color/camera_info",
                             "/camera/aligned_depth_to_color/camera_info", GROUND_TRUTH_MESH_TOPIC,
                             GROUND_TRUTH_KEYPOINTS_TOPIC, GROUND_TRUTH_CONTACT_TOPIC}
    assert all(len(items) == SAMPLE_FRAMES for items in messages.values())
    for index, (bag_time, raw) in enumerate(messages[COLOR_TOPIC]):
        image = deserialize(raw, IMAGE)
        assert stamp_ns(image) == START_STAMP_NS + round(index * 1e9 / 30)
        assert 0 < bag_time - stamp_ns(image) < 20_000_000  # logged a few ms after capture
        assert image.encoding == "rgb8"
        np.testing.assert_array_equal(image.data.reshape(image.height, image.width, 3), sequence.array("rgb")[index])
    depth = deserialize(messages["/camera/aligned_depth_to_color/image_raw"][3][1], IMAGE)
    assert depth.encoding == "16UC1"
    np.testing.assert_array_equal(depth.data.view("<u2").reshape(depth.height, depth.width), sequence.array("depth_mm")[3])
    contact = [deserialize(raw, HAND_CONTACT) for _, raw in messages[GROUND_TRUTH_CONTACT_TOPIC]]
    assert any(c.in_contact for c in contact) and not all(c.in_contact for c in contact)
    forces = np.array([c.total_force_n for c in contact])
    np.testing.assert_allclose(forces, sequence.array("force_n")[: len(forces)], rtol=0.02, atol=0.05)
    # Three seconds at the default size stay under 10 MB uncompressed (the size grows per frame).
    size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    assert size / SAMPLE_FRAMES * 90 < 10e6


@pytest.mark.parametrize(("field", "value", "message"), [
    ("window_batch_size", 0, "window_batch_size must be an integer >= 1"),
    ("window_batch_size", None, "window_batch_size must be an integer >= 1"),
    ("batch_size", 1.5, "batch_size must be an integer >= 1"),
    ("precision", "int8", "precision must be one of"),
    ("scheduler", "ddpm", "scheduler must be one of"),
])
def test_label_options_name_the_bad_field(field, value, message):
    from rosbag_helpers import nested_label_options

    from egopress_core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        nested_label_options(backend="ground_truth", topics=TopicSelection(hand_mesh=GROUND_TRUTH_MESH_TOPIC), **{field: value})
