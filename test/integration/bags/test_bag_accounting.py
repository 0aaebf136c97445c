"""Recorded data loses nothing (issue 19): QoS profiles that differ between metadata.yaml and the
storage, damaged mcap chunks found by their CRCs, per-topic accounting that fails the run on a loss
unless it is accepted, CRCs in what EgoPress writes, reports that never overwrite a user's file,
specific errors for broken metadata, and the same accounting in the LeRobot export."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from rosbag_helpers import copy_sample_bag, label_options, read_bag, sample_bag, tiny_checkpoint, tree_digest

from egopress_core.errors import DataError
from egopress_core.rosbag.accounting import MessageLossError
from egopress_core.rosbag.label_options import report_path_for, work_dir_for
from egopress_core.rosbag.labeller import label_bag
from egopress_core.rosbag.mcap_integrity import add_crcs, scan
from egopress_core.rosbag.reader import BagReader
from egopress_core.rosbag.sample import COLOR_TOPIC

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def _edit_offered_qos(bag, topic: str) -> None:
    """Write one topic's deadline in metadata.yaml as the largest duration, as rosbag2 does, while
    the storage file keeps 0: the two profiles now differ."""
    path = bag / "metadata.yaml"
    text = path.read_text()
    start = text.index(f"name: {topic}")
    block_end = text.index("type:", start)
    block = text[start:block_end]
    edited = re.sub(r"deadline:\s*\{nsec: 0, sec: 0\}", "deadline: {nsec: 854775807, sec: 9223372036}", block, count=1)
    assert edited != block, "the sample bag's metadata changed shape"
    path.write_text(text[:start] + edited + text[block_end:])


def _damage_middle(bag) -> None:
    """64 KiB of other bytes in the middle of the storage file (same size)."""
    storage = next(bag.glob("*.mcap"))
    data = bytearray(storage.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 65536] = bytes((index * 37 + 11) % 251 for index in range(len(data[middle:middle + 65536])))
    storage.write_bytes(bytes(data))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_messages_whose_metadata_qos_differs_from_the_storage_are_all_read_and_copied(tmp_path_factory, tmp_path,
                                                                                      checkpoint, storage):
    from rosbags.rosbag2 import Reader

    source = copy_sample_bag(tmp_path_factory, tmp_path, storage)
    original = read_bag(source)  # before the edit, plain rosbags reads everything
    _edit_offered_qos(source, COLOR_TOPIC)
    with Reader(source) as plain:  # rosbags alone skips the topic whose profiles differ
        skipped_by_rosbags = plain.message_count - sum(1 for _ in plain.messages())
    with BagReader(source) as reader:
        counts = reader.topic_counts()
        assert sum(1 for _ in reader.messages(reader.connections)) == reader.message_count
    assert counts[COLOR_TOPIC]["metadata"] == counts[COLOR_TOPIC]["storage"] > 0

    output = tmp_path / "labelled"
    report = label_bag(source, output, label_options(checkpoint, num_inference_steps=1), progress=False)
    assert report.status == "complete"
    written = read_bag(output)
    for topic, messages in original.items():
        assert written[topic] == messages, topic  # every message, byte for byte
    assert all(item["lost"] == 0 for item in report.accounting)
    assert {item["topic"] for item in report.accounting} == set(original)
    if storage == "mcap":
        assert skipped_by_rosbags == counts[COLOR_TOPIC]["storage"]  # the bug this guards against


def test_damaged_mcap_fails_naming_topics_and_counts_until_the_loss_is_accepted(tmp_path_factory, tmp_path, checkpoint):
    source = copy_sample_bag(tmp_path_factory, tmp_path)
    _damage_middle(source)
    before = tree_digest(source)
    found = scan(next(source.glob("*.mcap")))
    assert found.damaged and found.data_crc == "mismatch"
    damaged_messages = sum(sum(chunk.messages.values()) for chunk in found.damaged)

    output = tmp_path / "labelled"
    options = label_options(checkpoint, num_inference_steps=1)
    with pytest.raises(MessageLossError, match=r"input messages did not reach the output: .*/camera/color/image_raw \d+ of") as raised:
        label_bag(source, output, options, progress=False)
    assert "\n" not in str(raised.value) and "--accept-loss" in str(raised.value)
    assert not output.exists() and work_dir_for(output).exists()
    saved = json.loads(report_path_for(output).read_text())
    assert saved["status"] == "failed"
    lost = {item["topic"]: item["lost"] for item in saved["accounting"] if item["lost"]}
    assert COLOR_TOPIC in lost and sum(lost.values()) >= damaged_messages
    assert saved["integrity"][0]["damaged_chunks"]

    # Accepting the loss keeps the output (resumed: nothing is estimated again); the report still lists it.
    report = label_bag(source, output, options, resume=True, progress=False, accept_loss=True)
    assert report.status == "complete" and output.exists()
    assert {item["topic"]: item["lost"] for item in report.accounting if item["lost"]} == lost
    assert any(note.startswith("accepted loss") for note in report.notes)
    labelled = read_bag(output)
    damaged_ranges = [(chunk.start_ns, chunk.end_ns) for chunk in found.damaged]
    assert not any(start <= stamp <= end for stamp, _ in labelled[COLOR_TOPIC] for start, end in damaged_ranges)
    assert tree_digest(source) == before


def test_outputs_and_sample_bags_carry_crcs_the_mcap_package_validates(tmp_path_factory, tmp_path, checkpoint):
    from mcap.reader import make_reader

    source = sample_bag(tmp_path_factory)
    output = tmp_path / "labelled"
    label_bag(source, output, label_options(checkpoint, num_inference_steps=1, storage="mcap"), progress=False)
    for bag in (source, output):
        storage = next(bag.glob("*.mcap"))
        result = scan(storage)
        assert result.chunks == result.chunks_with_crc > 0 and result.data_crc == "ok" and not result.damaged
        with storage.open("rb") as stream:
            count = sum(1 for _ in make_reader(stream, validate_crcs=True).iter_messages())
        assert count == sum(len(messages) for messages in read_bag(bag).values())

    # One changed byte inside a chunk is found, and only that chunk is blamed.
    copy = tmp_path / "copy.mcap"
    shutil.copy(next(output.glob("*.mcap")), copy)
    clean = scan(copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 3] ^= 0xFF
    copy.write_bytes(bytes(data))
    damaged = scan(copy)
    assert len(damaged.damaged) == 1 and damaged.chunks == clean.chunks
    assert "crc" in damaged.damaged[0].error.lower() and sum(damaged.damaged[0].messages.values()) > 0


def test_add_crcs_refuses_a_file_that_is_not_mcap(tmp_path):
    path = tmp_path / "x.mcap"
    path.write_bytes(b"not an mcap file at all")
    with pytest.raises(DataError, match="not an mcap file"):
        add_crcs(path)


def test_the_report_never_overwrites_a_file_the_user_has(tmp_path_factory, tmp_path, checkpoint):
    output = tmp_path / "labelled"
    mine = report_path_for(output)
    mine.write_text("my notes\n")
    with pytest.raises(DataError, match=r"labelled.report.json exists already .* never overwrites"):
        label_bag(sample_bag(tmp_path_factory), output, label_options(checkpoint), progress=False)
    assert mine.read_text() == "my notes\n" and not output.exists() and not work_dir_for(output).exists()


def _drop_metadata_key(path, key: str) -> None:
    import yaml

    document = yaml.safe_load(path.read_text())
    del document["rosbag2_bagfile_information"][key]
    path.write_text(yaml.safe_dump(document))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda path: path.write_text(""), "metadata.yaml is empty"),
    (lambda path: path.write_text("rosbag2_bagfile_information: [this is : not valid"), "metadata.yaml is not valid YAML"),
    (lambda path: path.write_bytes(b"\xff\xfe\x00garbage"), "metadata.yaml is not UTF-8 text"),
    (lambda path: _drop_metadata_key(path, "storage_identifier"),
     "metadata.yaml is incomplete: rosbag2_bagfile_information lacks storage_identifier"),
    (lambda path: path.write_text("just a string\n"), "has no rosbag2_bagfile_information section"),
])
def test_broken_metadata_gets_a_specific_message(tmp_path_factory, tmp_path, damage, message):
    source = copy_sample_bag(tmp_path_factory, tmp_path)
    damage(source / "metadata.yaml")
    with pytest.raises(DataError, match=re.escape(message)) as raised:
        BagReader(source)
    assert "ros2 bag reindex" in str(raised.value) and "mcap recover" not in str(raised.value)


def test_repair_hints_name_the_storage_that_failed(tmp_path_factory, tmp_path):
    source = copy_sample_bag(tmp_path_factory, tmp_path, "sqlite3")
    storage = next(source.glob("*.db3"))
    data = bytearray(storage.read_bytes())
    data[:100] = bytes(100)
    storage.write_bytes(bytes(data))
    with pytest.raises(DataError, match="cannot open the bag") as raised:
        BagReader(source)
    assert "mcap recover" not in str(raised.value) and "integrity_check" in str(raised.value)


def test_lerobot_export_accounts_for_what_it_reads(tmp_path_factory, tmp_path, checkpoint):
    from egopress_core.export.lerobot import export_lerobot

    labelled = tmp_path / "labelled"
    label_bag(sample_bag(tmp_path_factory), labelled, label_options(checkpoint, num_inference_steps=1, storage="mcap"),
              progress=False)
    clean = export_lerobot([labelled], tmp_path / "clean", progress=False)
    assert all(item["lost"] == 0 for item in clean.bags[0]["accounting"])
    _damage_middle(labelled)
    with pytest.raises(MessageLossError, match="did not reach the output"):
        export_lerobot([labelled], tmp_path / "damaged", progress=False)
    assert not (tmp_path / "damaged").exists()
    accepted = export_lerobot([labelled], tmp_path / "accepted", progress=False, accept_loss=True)
    assert accepted.bags[0]["accepted_loss"] and any(item["lost"] for item in accepted.bags[0]["accounting"])
    assert accepted.frames < clean.frames
