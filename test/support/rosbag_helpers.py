"""Shared pieces of the rosbag / LeRobot tests: a tiny checkpoint (``tiny_checkpoints``), small
sample bags (generated once per test session under pytest's base temp folder), bag rewriting and
reading."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np

from egopress_core.rosbag.index import TopicSelection
from egopress_core.rosbag.label_options import LabelOptions
from egopress_core.rosbag.sample import GROUND_TRUTH_MESH_TOPIC
from tiny_checkpoints import session_dir as _session_dir
from tiny_checkpoints import tiny_checkpoint  # noqa: F401  (the bag tests import it from here)

SAMPLE_FRAMES = 40
SAMPLE_IMAGE_SIZE = (108, 144)


def synthetic_sequence(tmp_path_factory):
    """One synthetic sequence (SAMPLE_FRAMES frames at 30 Hz), generated once per session."""
    from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset
    from egopress_core.data.synthetic.storage import SyntheticDataset

    root = _session_dir(tmp_path_factory, "rosbag_synth")
    if not (root / "seq_00000").is_dir():
        config = SynthConfig(sequences=1, frames=SAMPLE_FRAMES, image_sizes=(SAMPLE_IMAGE_SIZE,),
                             gestures=("single_press",), uv_resolution=64)
        generate_dataset(config, root, workers=1, progress=False)
    return SyntheticDataset(root).sequences()[0]


def sample_bag(tmp_path_factory, storage: str = "mcap", compression: str = "none") -> Path:
    """The sample bag of the session's synthetic sequence in ``storage`` / ``compression``."""
    from egopress_core.rosbag.sample import sequence_to_bag

    path = _session_dir(tmp_path_factory, f"rosbag_sample_{storage}_{compression}")
    if not path.exists():
        sequence_to_bag(synthetic_sequence(tmp_path_factory), path, storage=storage, compression=compression, progress=False)
    return path


def copy_sample_bag(tmp_path_factory, tmp_path: Path, storage: str = "mcap", compression: str = "none") -> Path:
    """A copy of the session's sample bag in ``tmp_path / "input"``, for a test to damage or edit."""
    import shutil

    destination = tmp_path / "input"
    shutil.copytree(sample_bag(tmp_path_factory, storage, compression), destination)
    return destination


def nested_label_options(**values) -> LabelOptions:
    """LabelOptions from flat keyword arguments: keys of the option sets (``num_inference_steps``,
    ``device``, ``crop``, ``contact_threshold_kpa``, ...) go to their dataclass."""
    import dataclasses

    from egopress_core.options import OFFLINE_SAMPLING, ContactOptions, CropOptions, RuntimeOptions, SamplingOptions

    nested = {"sampling": (SamplingOptions, OFFLINE_SAMPLING), "runtime": (RuntimeOptions, RuntimeOptions()),
              "crop": (CropOptions, CropOptions()), "contact": (ContactOptions, ContactOptions())}
    groups: dict[str, dict] = {name: {} for name in nested}
    for name, (cls, _) in nested.items():
        for item in dataclasses.fields(cls):
            if item.name in values:
                groups[name][item.name] = values.pop(item.name)
    for name, (cls, default) in nested.items():
        values[name] = dataclasses.replace(default, **groups[name])
    return LabelOptions(**values)


def label_options(checkpoint: Path, **overrides) -> LabelOptions:
    """Fast settings for the tiny model: ground-truth hands, 2 sampler steps, CPU."""
    values = dict(checkpoint=str(checkpoint), backend="ground_truth", topics=TopicSelection(hand_mesh=GROUND_TRUTH_MESH_TOPIC),
                  device="cpu", num_inference_steps=2)
    values.update(overrides)
    return nested_label_options(**values)


def read_bag(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    """topic -> [(bag time ns, raw CDR bytes)] in time order."""
    from rosbags.rosbag2 import Reader

    result: dict[str, list[tuple[int, bytes]]] = {}
    with Reader(path) as reader:
        for connection, timestamp, data in reader.messages():
            result.setdefault(connection.topic, []).append((timestamp, bytes(data)))
    return result


def connections_of(path: Path) -> dict[str, object]:
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        return {connection.topic: connection for connection in reader.connections}


def rewrite_bag(source: Path, destination: Path, transform: Callable, storage: str = "mcap", drop_topics: tuple[str, ...] = ()) -> Path:
    """Copies ``source`` to a new bag; ``transform(topic, index_on_topic, timestamp, message) ->
    message | None`` may change a deserialised message or drop it (None)."""
    from rosbags.rosbag2 import Reader

    from egopress_core.rosbag.typestore import egopress_typestore
    from egopress_core.rosbag.writer import BagWriter

    store = egopress_typestore()
    counters: dict[str, int] = {}
    with Reader(source) as reader, BagWriter(destination, store, storage=storage) as writer:
        copies = {c.id: writer.add_copy_of(c)[0] for c in reader.connections if c.topic not in drop_topics}
        for connection, timestamp, data in reader.messages():
            if connection.topic in drop_topics:
                continue
            index = counters.get(connection.topic, 0)
            counters[connection.topic] = index + 1
            message = transform(connection.topic, index, timestamp, store.deserialize_cdr(data, connection.msgtype))
            if message is not None:
                writer.write(copies[connection.id], timestamp, store.serialize_cdr(message, connection.msgtype))
    return destination


def tree_digest(path: Path) -> str:
    """sha1 over every file's relative name, bytes and modification time (to prove nothing was touched)."""
    digest = hashlib.sha1()
    for item in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode())
        digest.update(item.read_bytes())
        digest.update(str(os.stat(item).st_mtime_ns).encode())
    return digest.hexdigest()


def deserialize(raw: bytes, msgtype: str):
    from egopress_core.rosbag.typestore import egopress_typestore

    return egopress_typestore().deserialize_cdr(raw, msgtype)


def stamp_ns(message) -> int:
    return int(message.header.stamp.sec) * 1_000_000_000 + int(message.header.stamp.nanosec)


def as_array(values) -> np.ndarray:
    return np.asarray(values)


def write_ros1_bag(path: Path, topic: str = "/camera/color/image_raw") -> Path:
    """A ROS 1 bag file (rosbags' rosbag1 writer) holding one 1 x 2 colour image on ``topic``."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    path.parent.mkdir(parents=True, exist_ok=True)
    store = get_typestore(Stores.ROS1_NOETIC)
    image, header, time = (store.types[name] for name in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    with Writer(path) as writer:
        connection = writer.add_connection(topic, image.__msgtype__, typestore=store)
        message = image(header=header(seq=0, stamp=time(sec=1, nanosec=0), frame_id="camera"), height=1, width=2,
                        encoding="rgb8", is_bigendian=0, step=6, data=np.zeros(6, dtype=np.uint8))
        writer.write(connection, 1_000_000_000, store.serialize_ros1(message, image.__msgtype__))
    return path
