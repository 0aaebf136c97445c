"""One side of the message round trip of test_msg_roundtrip.py, run as its own process.

    python ros_peer.py subscribe --topic-prefix /egopress_rt_1a2b --out received.json
    python ros_peer.py publish   --topic-prefix /egopress_rt_1a2b --out sent.json

Both sides know the messages to exchange from ``message_specs()`` (plain nested dicts, pure
numpy, so the test process can read them without rclpy). The publisher fills real
``egopress_ros.msg`` messages from them, publishes, and writes what it sent; the subscriber
writes what it received. Both write JSON: ``{"rmw": ..., "messages": {type: [plain dict, ...]}}``
with every field of every message, nested messages as dicts and arrays as lists.

Every wait is bounded by --timeout; on expiry the process exits 3 and says what it lacked.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Fixed ROS message sizes: MANO vertex count and the 21 OpenPose hand joints.
NUM_VERTICES = 778
NUM_JOINTS = 21
MAP_HEIGHT, MAP_WIDTH = 24, 40
TOPICS = {"HandMesh": "hand_mesh", "UVPressure": "uv_pressure", "HandContact": "hand_contact"}
EXIT_TIMEOUT = 3


def _float32_list(values: np.ndarray) -> list[float]:
    """float32 values as Python floats (exact, so a float32 field holds them unchanged)."""
    return np.asarray(values, dtype=np.float32).ravel().tolist()


def _f32(value: float) -> float:
    """A float32 field's value, rounded as DDS carries it (rclpy keeps Python floats as given)."""
    return float(np.float32(value))


def _header(frame_id: str, sec: int, nanosec: int) -> dict:
    return {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": frame_id}


def message_specs() -> dict[str, list[dict]]:
    """The messages to exchange, per type, as plain dicts naming every field.

    HandContact is sent twice: a frame in contact, and one without contact whose centre of
    pressure is NaN (as the message definition prescribes).
    """
    rng = np.random.default_rng(20240611)
    frame = "camera_color_optical_frame"
    header = _header(frame, 1_718_000_123, 456_789_012)

    vertices = rng.uniform([-0.08, -0.08, 0.35], [0.08, 0.08, 0.55], size=(NUM_VERTICES, 3)).astype(np.float32)
    joints = rng.uniform([-0.07, -0.07, 0.38], [0.07, 0.07, 0.52], size=(NUM_JOINTS, 3)).astype(np.float32)
    hand_mesh = {
        "header": header,
        "hand_side": 1,
        "hand_model": "egopress_hand_v1",
        "topology_id": f"egopress_hand_v1:{NUM_VERTICES}v:0123456789ab",
        "global_orient": _float32_list(rng.normal(0.0, 0.5, 3)),
        "hand_pose": _float32_list(rng.normal(0.0, 0.3, 45)),
        "betas": _float32_list(rng.normal(0.0, 1.0, 10)),
        "translation": {"x": 0.0125, "y": -0.031, "z": 0.4475},
        "vertices": [dict(zip("xyz", _float32_list(v))) for v in vertices],
        "joints": [dict(zip("xyz", _float32_list(j))) for j in joints],
        "confidence": 0.875,
        "estimator": "ground_truth",
    }

    pressure_map = np.zeros((MAP_HEIGHT, MAP_WIDTH), dtype=np.float32)
    pressure_map[5:15, 8:30] = rng.gamma(2.0, 3.0, size=(10, 22)).astype(np.float32)
    uv_pressure = {
        "header": header,
        "hand_side": 0,
        "uv_layout_id": f"egopress_uv_v1:{MAP_HEIGHT}x{MAP_WIDTH}:fedcba987654",
        "map": {
            "header": header,
            "height": MAP_HEIGHT,
            "width": MAP_WIDTH,
            "encoding": "32FC1",
            "is_bigendian": 0,
            "step": MAP_WIDTH * 4,
            "data": list(pressure_map.astype("<f4").tobytes()),
        },
        "contact_threshold_kpa": 1.0,
        "max_pressure_kpa": float(pressure_map.max()),
        "total_force_n": 3.75,
    }

    vertex_pressure = np.zeros(NUM_VERTICES, dtype=np.float32)
    pressed = rng.choice(NUM_VERTICES, size=120, replace=False)
    vertex_pressure[pressed] = rng.gamma(2.0, 2.0, size=120).astype(np.float32)
    in_contact = {
        "header": header,
        "hand_side": 1,
        "topology_id": hand_mesh["topology_id"],
        "vertex_pressure_kpa": _float32_list(vertex_pressure),
        "vertex_contact": (vertex_pressure > 1.0).tolist(),
        "contact_threshold_kpa": 1.0,
        "in_contact": True,
        "contact_area_m2": _f32(0.00175),
        "total_force_n": 4.5,
        "center_of_pressure": {"x": 0.021, "y": -0.0135, "z": 0.4625},
    }
    no_contact = {
        "header": _header(frame, 1_718_000_123, 489_122_345),
        "hand_side": 1,
        "topology_id": hand_mesh["topology_id"],
        "vertex_pressure_kpa": [0.0] * NUM_VERTICES,
        "vertex_contact": [False] * NUM_VERTICES,
        "contact_threshold_kpa": 1.0,
        "in_contact": False,
        "contact_area_m2": 0.0,
        "total_force_n": 0.0,
        "center_of_pressure": {"x": math.nan, "y": math.nan, "z": math.nan},
    }
    return {"HandMesh": [hand_mesh], "UVPressure": [uv_pressure], "HandContact": [in_contact, no_contact]}


def to_plain(value):
    """A ROS message (or field value) as JSON-ready data: dicts, lists, numbers, strings."""
    if hasattr(value, "get_fields_and_field_types"):
        return {name: to_plain(getattr(value, name)) for name in value.get_fields_and_field_types()}
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)) or type(value).__name__ == "array":
        return [to_plain(item) for item in value]
    return value


def fill(message, spec: dict):
    """Sets every field named in ``spec`` on ``message`` (recursing into nested messages)."""
    from rosidl_parser.definition import AbstractNestedType, NamespacedType

    slot_types = dict(zip(message.get_fields_and_field_types(), type(message).SLOT_TYPES))
    for name, value in spec.items():
        if name not in slot_types:
            raise KeyError(f"{type(message).__name__} has no field '{name}'")
        slot_type = slot_types[name]
        if isinstance(value, dict):
            fill(getattr(message, name), value)
        elif isinstance(slot_type, AbstractNestedType) and isinstance(slot_type.value_type, NamespacedType):
            element = slot_type.value_type
            element_class = getattr(importlib.import_module(".".join(element.namespaces)), element.name)
            setattr(message, name, [fill(element_class(), item) for item in value])
        else:
            setattr(message, name, value)
    return message


def _write_json(path: Path, document: dict) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(descriptor, "w") as stream:
        json.dump(document, stream)
    os.replace(temporary, path)


def _qos():
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    # Reliable and transient-local: nothing is lost to discovery timing.
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=10,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def _message_classes() -> dict:
    from egopress_ros import msg

    return {name: getattr(msg, name) for name in TOPICS}


def publish(topic_prefix: str, out: Path, timeout_s: float) -> int:
    import rclpy
    from rclpy.duration import Duration
    from rclpy.node import Node

    deadline = time.monotonic() + timeout_s
    specs = message_specs()
    classes = _message_classes()
    rclpy.init()
    try:
        node = Node("egopress_roundtrip_publisher")
        publishers = {
            name: node.create_publisher(classes[name], f"{topic_prefix}/{topic}", _qos())
            for name, topic in TOPICS.items()
        }
        while unmatched := [name for name, pub in publishers.items() if pub.get_subscription_count() == 0]:
            if time.monotonic() > deadline:
                print(f"publisher: no subscriber matched {unmatched} within {timeout_s} s", file=sys.stderr)
                return EXIT_TIMEOUT
            time.sleep(0.05)
        sent: dict[str, list] = {name: [] for name in TOPICS}
        for name, messages in specs.items():
            for spec in messages:
                message = fill(classes[name](), spec)
                publishers[name].publish(message)
                sent[name].append(to_plain(message))
        for name, pub in publishers.items():
            remaining = max(deadline - time.monotonic(), 0.0)
            if not pub.wait_for_all_acked(Duration(seconds=remaining)):
                print(f"publisher: {name} messages not acknowledged within {timeout_s} s", file=sys.stderr)
                return EXIT_TIMEOUT
        _write_json(out, {"rmw": rclpy.get_rmw_implementation_identifier(), "messages": sent})
        node.destroy_node()
        return 0
    finally:
        rclpy.try_shutdown()


def subscribe(topic_prefix: str, out: Path, timeout_s: float) -> int:
    import rclpy
    from rclpy.node import Node

    deadline = time.monotonic() + timeout_s
    expected = {name: len(messages) for name, messages in message_specs().items()}
    classes = _message_classes()
    received: dict[str, list] = {name: [] for name in TOPICS}
    rclpy.init()
    try:
        node = Node("egopress_roundtrip_subscriber")
        for name, topic in TOPICS.items():
            node.create_subscription(
                classes[name], f"{topic_prefix}/{topic}",
                lambda message, name=name: received[name].append(to_plain(message)), _qos(),
            )
        while missing := {name: count - len(received[name]) for name, count in expected.items()
                          if len(received[name]) < count}:
            if time.monotonic() > deadline:
                print(f"subscriber: still missing {missing} after {timeout_s} s", file=sys.stderr)
                _write_json(out, {"rmw": rclpy.get_rmw_implementation_identifier(), "messages": received})
                return EXIT_TIMEOUT
            rclpy.spin_once(node, timeout_sec=0.1)
        _write_json(out, {"rmw": rclpy.get_rmw_implementation_identifier(), "messages": received})
        node.destroy_node()
        return 0
    finally:
        rclpy.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("publish", "subscribe"))
    parser.add_argument("--topic-prefix", required=True, help="e.g. /egopress_rt_1a2b (unique per run)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for every wait together")
    args = parser.parse_args(argv)
    role = publish if args.role == "publish" else subscribe
    return role(args.topic_prefix, args.out, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
