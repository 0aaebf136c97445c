"""`egopress label-bag` on bags whose depth was recorded through compressed_depth_image_transport
(`.../compressedDepth` topics, `sensor_msgs/CompressedImage`), as recordings made to save disk
often are: the sample bag's depth re-encoded by an independent port of the transport's encoder
(test/support/compressed_depth_encoder.py), labelled, and compared with the raw bag's labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from compressed_depth_encoder import encode_compressed_depth
from rosbag_helpers import deserialize, label_options, read_bag, sample_bag, tiny_checkpoint

from egopress_core.errors import DataError
from egopress_core.messages import uv_pressure_from_msg
from egopress_core.rosbag.labeller import label_bag
from egopress_core.rosbag.sample import DEPTH_TOPIC
from egopress_core.rosbag.typestore import IMAGE, UV_PRESSURE

COMPRESSED_DEPTH_TOPIC = f"{DEPTH_TOPIC}/compressedDepth"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def _with_compressed_depth(source, destination, encoding: str, codec: str):
    """``source`` with its 16UC1 depth topic replaced by ``COMPRESSED_DEPTH_TOPIC``."""
    from rosbags.rosbag2 import Reader

    from egopress_core.rosbag.typestore import COMPRESSED_IMAGE, egopress_typestore
    from egopress_core.rosbag.writer import BagWriter

    store = egopress_typestore()
    with Reader(source) as reader, BagWriter(destination, store, storage="mcap") as writer:
        copies = {c.id: writer.add_copy_of(c)[0] for c in reader.connections if c.topic != DEPTH_TOPIC}
        compressed = writer.add_topic(COMPRESSED_DEPTH_TOPIC, COMPRESSED_IMAGE)
        for connection, timestamp, data in reader.messages():
            if connection.topic != DEPTH_TOPIC:
                writer.write(copies[connection.id], timestamp, data)
                continue
            image = store.deserialize_cdr(data, IMAGE)
            millimetres = image.data.view("<u2").reshape(image.height, image.width)
            depth = millimetres if encoding == "16UC1" else np.where(millimetres > 0, millimetres / 1000.0, np.nan)
            image_format, payload = encode_compressed_depth(depth, encoding, codec)
            message = store.types[COMPRESSED_IMAGE](header=image.header, format=image_format,
                                                    data=np.frombuffer(payload, dtype=np.uint8))
            writer.write(compressed, timestamp, store.serialize_cdr(message, COMPRESSED_IMAGE))
    return destination


@pytest.fixture(scope="module")
def raw_labels(tmp_path_factory, checkpoint):
    """The sample bag as recorded (raw 16UC1 depth), labelled: (options, report, UV pressure maps)."""
    options = label_options(checkpoint, num_inference_steps=1)
    output = tmp_path_factory.mktemp("raw_depth") / "labelled"
    report = label_bag(sample_bag(tmp_path_factory), output, options, progress=False)
    return options, report, _pressure(output)


def _pressure(path):
    return [uv_pressure_from_msg(deserialize(raw, UV_PRESSURE)) for _, raw in read_bag(path)["/egopress/uv_pressure"]]


@pytest.mark.parametrize(("encoding", "codec"), [("16UC1", "png"), ("16UC1", "rvl"), ("32FC1", "rvl")])
def test_compressed_depth_labels_as_the_raw_depth_does(tmp_path_factory, tmp_path, raw_labels, encoding, codec):
    options, raw, expected = raw_labels
    compressed_bag = _with_compressed_depth(sample_bag(tmp_path_factory), tmp_path / "compressed", encoding, codec)
    options = dataclasses.replace(options, topics=dataclasses.replace(options.topics, depth=COMPRESSED_DEPTH_TOPIC))
    report = label_bag(compressed_bag, tmp_path / "labelled", options, progress=False)

    assert report.status == "complete" and not report.skipped
    assert report.frames["with_pressure"] == raw.frames["with_pressure"] == raw.frames["synchronised"] > 0
    got = _pressure(tmp_path / "labelled")
    if encoding == "16UC1":  # lossless: the same depth, the same labels
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_array_equal(a, b)
    else:  # inverse-depth quantisation moves depth by under a millimetre here
        assert len(got) == len(expected)


def test_a_recording_with_only_compressed_depth_names_the_topic_to_pass(tmp_path_factory, tmp_path, raw_labels):
    options = raw_labels[0]
    compressed_bag = _with_compressed_depth(sample_bag(tmp_path_factory), tmp_path / "compressed", "16UC1", "png")
    with pytest.raises(DataError, match=rf"depth topic '{DEPTH_TOPIC}' is not in the bag \(topics of type .*"
                                        rf"'{COMPRESSED_DEPTH_TOPIC}'.*; pass one with --depth-topic\)"):
        label_bag(compressed_bag, tmp_path / "labelled", options, progress=False)
