"""Damaged and incomplete input: unreadable bags fail with a clear error and leave no output under
the final name; damaged chunks, missing topics, unknown encodings, unmatched frames and gaps are
skipped and reported."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rosbag_helpers import (
    SAMPLE_FRAMES,
    copy_sample_bag,
    deserialize,
    label_options,
    read_bag,
    rewrite_bag,
    sample_bag,
    stamp_ns,
    tiny_checkpoint,
    tree_digest,
    write_ros1_bag,
)

from egopress_core.errors import DataError
from egopress_core.rosbag.label_options import report_path_for, work_dir_for
from egopress_core.rosbag.labeller import label_bag
from egopress_core.rosbag.sample import COLOR_TOPIC, DEPTH_TOPIC
from egopress_core.rosbag.typestore import IMAGE


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def _corrupt_metadata(bag):
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [this is : not valid")


def _truncate_storage(bag):
    storage = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    data = storage.read_bytes()
    storage.write_bytes(data[: len(data) // 3])


def _zero_database_header(bag):
    storage = next(bag.glob("*.db3"))
    data = bytearray(storage.read_bytes())
    data[:100] = bytes(100)
    storage.write_bytes(bytes(data))


@pytest.mark.parametrize(("storage", "damage", "message"), [
    ("mcap", _corrupt_metadata, "metadata.yaml is not valid YAML"),
    ("mcap", _truncate_storage, "cannot open the bag"),
    ("sqlite3", _zero_database_header, "cannot open the bag"),
    ("sqlite3", lambda bag: (bag / "metadata.yaml").unlink(), "metadata.yaml is missing"),
])
def test_unreadable_bag_fails_clearly_without_output(tmp_path_factory, tmp_path, checkpoint, storage, damage, message):
    source = copy_sample_bag(tmp_path_factory, tmp_path, storage)
    damage(source)
    output = tmp_path / "labelled"
    with pytest.raises(DataError, match=message) as raised:
        label_bag(source, output, label_options(checkpoint), progress=False)
    assert str(source) in str(raised.value)
    assert not output.exists() and not work_dir_for(output).exists()
    report = json.loads(report_path_for(output).read_text())
    assert report["status"] == "failed" and message in report["error"]


def test_damaged_mcap_chunk_is_skipped_and_reported(tmp_path_factory, tmp_path, checkpoint):
    from rosbags.rosbag2.storage_mcap import McapReader

    source = copy_sample_bag(tmp_path_factory, tmp_path, "mcap", "storage")  # zstd-compressed chunks of ~1 MB
    storage = next(source.glob("*.mcap"))
    reader = McapReader(storage)
    reader.open()
    chunks = list(reader.chunks)
    reader.close()
    assert len(chunks) >= 3
    damaged = chunks[1]
    data = bytearray(storage.read_bytes())
    middle = damaged.chunk_start_offset + 9 + 40 + len(damaged.compression) + damaged.compressed_size // 2
    data[middle: middle + 256] = b"\xff" * 256
    storage.write_bytes(bytes(data))
    before = tree_digest(source)

    output = tmp_path / "labelled"
    # The damaged chunk's messages cannot be copied: the loss must be accepted to keep the output.
    report = label_bag(source, output, label_options(checkpoint, num_inference_steps=1), progress=False, accept_loss=True)
    assert tree_digest(source) == before
    assert report.status == "complete" and report.unreadable
    bad = report.unreadable[0]
    assert bad["start_ns"] <= damaged.message_start_time + 1 and bad["stop_ns"] > damaged.message_end_time
    assert bad["error"]
    labelled = read_bag(output)
    colour_times = [t for t, _ in labelled[COLOR_TOPIC]]
    assert 0 < len(colour_times) < SAMPLE_FRAMES
    assert not any(bad["start_ns"] <= t < bad["stop_ns"] for t in colour_times)
    # Colour images next to the damaged region may have lost their depth or hand mesh: reported, not labelled.
    skipped_colour = sum(entry["count"] for entry in report.skipped if entry["topic"] == COLOR_TOPIC)
    assert report.frames["synchronised"] + skipped_colour == len(colour_times)
    assert len(labelled["/egopress/hand_mesh"]) == report.frames["synchronised"]
    assert len(labelled["/egopress/uv_pressure"]) == report.frames["with_pressure"] >= len(colour_times) - 3
    assert "unreadable bag time" in report.summary()


def test_missing_topic_fails_with_the_candidates(tmp_path_factory, tmp_path, checkpoint):
    source = rewrite_bag(sample_bag(tmp_path_factory), tmp_path / "no_depth", lambda *args: args[-1], drop_topics=(DEPTH_TOPIC,))
    output = tmp_path / "labelled"
    with pytest.raises(DataError, match=r"depth topic '/camera/aligned_depth_to_color/image_raw' is not in the bag"):
        label_bag(source, output, label_options(checkpoint), progress=False)
    assert not output.exists()
    assert "is not in the bag" in json.loads(report_path_for(output).read_text())["error"]

    # A wrongly remapped topic says what it found and what it expected.
    from egopress_core.rosbag.index import TopicSelection

    options = label_options(checkpoint, topics=TopicSelection(depth="/camera/color/camera_info", hand_mesh="/ground_truth/hand_mesh"))
    with pytest.raises(DataError, match="has type sensor_msgs/msg/CameraInfo; expected sensor_msgs/msg/Image"):
        label_bag(sample_bag(tmp_path_factory), tmp_path / "other", options, progress=False)


def test_unknown_encodings_unmatched_frames_and_gaps_are_skipped_and_reported(tmp_path_factory, tmp_path, checkpoint):
    bad_encoding, no_depth, removed = {5, 6}, {11}, set(range(22, 30))

    def damage(topic, index, timestamp, message):
        if index in removed:
            return None  # a recording gap of 8 frames (0.27 s) on every topic
        if topic == COLOR_TOPIC and index in bad_encoding:
            message.encoding = "yuv422"
        if topic == DEPTH_TOPIC and index in no_depth:
            return None
        return message

    source = rewrite_bag(sample_bag(tmp_path_factory), tmp_path / "damaged", damage)
    output = tmp_path / "labelled"
    report = label_bag(source, output, label_options(checkpoint, num_inference_steps=1, max_gap_s=0.2), progress=False)

    reasons = {entry["reason"]: entry for entry in report.skipped}
    encoding = next(entry for reason, entry in reasons.items() if "yuv422" in reason)
    assert encoding["count"] == 2 and encoding["topic"] == COLOR_TOPIC
    unmatched = next(entry for reason, entry in reasons.items() if "no depth image within 20 ms" in reason)
    assert unmatched["count"] == 1
    # Gaps: the two skipped colour images (bridged) and the recording gap (longer than max_gap_s: a new segment).
    assert [(gap["missing_frames"], gap["split"]) for gap in report.gaps] == [(len(bad_encoding), False), (len(removed), True)]
    assert len(report.segments) == 2
    expected = SAMPLE_FRAMES - len(removed) - len(bad_encoding) - len(no_depth)
    assert report.frames["synchronised"] == report.frames["with_pressure"] == expected

    labelled = read_bag(output)
    colour = [deserialize(raw, IMAGE) for _, raw in labelled[COLOR_TOPIC]]
    skipped_stamps = {stamp_ns(colour[i]) for i, image in enumerate(colour) if image.encoding == "yuv422"}
    labelled_stamps = {stamp_ns(deserialize(raw, "egopress_ros/msg/UVPressure")) for _, raw in labelled["/egopress/uv_pressure"]}
    assert len(labelled_stamps) == expected and not labelled_stamps & skipped_stamps
    saved = json.loads(report_path_for(output).read_text())
    assert saved["skipped"] == report.skipped and saved["gaps"] == report.gaps
    assert np.all(np.diff(sorted(labelled_stamps)) > 0)


def test_depth_in_metres_with_nan_holes_is_labelled_and_unknown_depth_encodings_are_skipped(tmp_path_factory, tmp_path,
                                                                                          checkpoint):
    from egopress_core import messages
    from egopress_core.rosbag.messages import bag_factory
    from egopress_core.rosbag.typestore import egopress_typestore

    store = egopress_typestore()
    all_nan, unknown = {3, 4}, {15}

    def to_metres(topic, index, timestamp, message):
        """16UC1 millimetres -> 32FC1 metres with NaN holes (REP 118 "no reading"); some frames all NaN."""
        if topic != DEPTH_TOPIC:
            return message
        millimetres = message.data.view("<u2").reshape(message.height, message.width)
        metres = np.where(millimetres > 0, millimetres / 1000.0, np.nan).astype(np.float32)
        if index in all_nan:
            metres[:] = np.nan
        converted = messages.image(bag_factory(store), metres, "32FC1", message.header)
        if index in unknown:
            converted.encoding = "16SC1"
        return converted

    source = rewrite_bag(sample_bag(tmp_path_factory), tmp_path / "metres", to_metres)
    output = tmp_path / "labelled"
    report = label_bag(source, output, label_options(checkpoint, num_inference_steps=1), progress=False)

    assert report.status == "complete"
    depth_skips = [entry for entry in report.skipped if entry["topic"] == DEPTH_TOPIC]
    assert len(depth_skips) == 1 and "'16SC1' is not supported" in depth_skips[0]["reason"] and depth_skips[0]["count"] == 1
    unmatched = [entry for entry in report.skipped if entry["topic"] == COLOR_TOPIC]
    assert [entry["count"] for entry in unmatched] == [1] and "no depth image within" in unmatched[0]["reason"]
    # Holes and all-NaN frames are "no reading": the frames are labelled, from the hand mesh and colour alone.
    assert report.frames["synchronised"] == report.frames["with_pressure"] == SAMPLE_FRAMES - len(unknown)
    labelled = read_bag(output)
    depth_stamps = [stamp_ns(deserialize(raw, IMAGE)) for _, raw in labelled[DEPTH_TOPIC]]
    pressure_stamps = {stamp_ns(deserialize(raw, "egopress_ros/msg/UVPressure")) for _, raw in labelled["/egopress/uv_pressure"]}
    assert {depth_stamps[i] for i in all_nan} <= pressure_stamps and depth_stamps[15] not in pressure_stamps


def test_a_lens_with_distortion_is_named_in_the_report(tmp_path_factory, tmp_path, checkpoint):
    """A camera_info with distortion coefficients (most drivers publish the raw lens's D): the
    frames are labelled, and the report says once that EgoPress takes the images as rectified."""
    from egopress_core.rosbag.sample import CAMERA_INFO_TOPIC

    def distorted(topic, index, timestamp, message):
        if topic == CAMERA_INFO_TOPIC:
            message.d = np.array([-0.05, 0.06, 0.0, 0.0005, -0.02])
        return message

    source = rewrite_bag(sample_bag(tmp_path_factory), tmp_path / "distorted", distorted)
    report = label_bag(source, tmp_path / "labelled", label_options(checkpoint, num_inference_steps=1), progress=False)
    assert report.status == "complete" and report.frames["with_pressure"] == report.frames["synchronised"] > 0
    notes = [note for note in report.notes if "distortion" in note]
    assert len(notes) == 1 and "largest coefficient 0.06" in notes[0] and f"'{COLOR_TOPIC}'" in notes[0]
    assert not [note for note in label_bag(sample_bag(tmp_path_factory), tmp_path / "plain", label_options(
        checkpoint, num_inference_steps=1), progress=False).notes if "distortion" in note]


def test_a_ros1_bag_is_named_and_the_suggested_conversion_works(tmp_path, checkpoint):
    """A ROS 1 recording (a .bag file) fails with one line naming the conversion, and that
    command, run as printed, gives a bag the reader opens."""
    import shlex
    import subprocess
    import sys

    from egopress_core.rosbag.reader import BagReader

    source = write_ros1_bag(tmp_path / "recording.bag", COLOR_TOPIC)
    with pytest.raises(DataError, match="a ROS 1 bag; EgoPress reads rosbag2") as raised:
        label_bag(source, tmp_path / "labelled", label_options(checkpoint), progress=False)
    command = shlex.split(str(raised.value).split("`")[1])
    assert command[0] == "rosbags-convert"
    subprocess.run([sys.executable, "-m", "rosbags.convert", *command[1:]], check=True, capture_output=True)
    with BagReader(tmp_path / "recording") as reader:
        assert list(reader.topics) == [COLOR_TOPIC]
