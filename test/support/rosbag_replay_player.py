"""The bag side of test_rosbag_replay.py, run as its own process: what ``ros2 bag play --clock``
and ``ros2 bag record --use-sim-time`` do, without ros2cli / rosbag2_py (neither is on PyPI).

    python rosbag_replay_player.py --bag BAG --out RECORDED --record /egopress/hand_mesh=egopress_ros/msg/HandMesh \
        --wait-subscribers /camera/color/image_raw=2 --done-topic /egopress/hand_contact --rate 0.25

Playing: every message of the bag (``rosbags`` reader) is published as its recorded CDR bytes
(rclpy publishes serialized messages as they are, as ``ros2 bag play`` does) on its own topic and
type, at its bag time scaled by ``--rate``; ``rosgraph_msgs/Clock`` carries the playback time on
``/clock`` at ``--clock-hz``, so nodes run with ``use_sim_time:=true`` see the recording's time.
Playback starts once the nodes have subscribed (``--wait-subscribers``) and offer the recorded
topics. After the last message the clock keeps running until the newest colour frame's output
arrives on ``--done-topic`` (or ``--timeout``), then ``--drain-s`` more.

Recording: the ``--record`` topics are received as serialized bytes and written, with their
receive time on the playback clock, into the rosbag2 ``--out`` (mcap, definitions embedded).
A JSON summary goes to ``OUT.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

NS = 1_000_000_000


def message_class(msgtype: str):
    """rclpy class of ``pkg/msg/Name``."""
    package, _, name = msgtype.partition("/msg/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _pairs(items: list[str], convert=str) -> dict:
    result = {}
    for item in items:
        key, separator, value = item.rpartition("=")
        if not separator:
            raise SystemExit(f"expected TOPIC=VALUE, got {item!r}")
        result[key] = convert(value)
    return result


def run(args: argparse.Namespace) -> dict:
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from rosgraph_msgs.msg import Clock

    record_types = _pairs(args.record)
    wait_subscribers = _pairs(args.wait_subscribers, int)
    summary: dict = {"timeouts": [], "published": 0}
    deadline = time.monotonic() + args.timeout
    rclpy.init()
    node = rclpy.create_node("egopress_bag_player")
    # Reliable keep-last: matches reliable and best-effort subscriptions alike.
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
    clock_publisher = node.create_publisher(Clock, "/clock", 10)
    recorded: list[tuple[int, str, bytes]] = []
    playback = {"ns": 0}
    done_stamp = {"ns": None, "seen": False}
    done_class = message_class(record_types[args.done_topic]) if args.done_topic else None

    def on_message(topic: str, data: bytes) -> None:
        recorded.append((playback["ns"], topic, data))
        if topic == args.done_topic and done_stamp["ns"] is not None:
            header = deserialize_message(data, done_class).header
            if header.stamp.sec * NS + header.stamp.nanosec == done_stamp["ns"]:
                done_stamp["seen"] = True

    for topic, msgtype in record_types.items():
        node.create_subscription(message_class(msgtype), topic, lambda data, t=topic: on_message(t, data), qos, raw=True)

    def publish_clock() -> None:
        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = divmod(playback["ns"], NS)
        clock_publisher.publish(clock)

    def spin_until(predicate, name: str, limit_s: float, clock_running_from: tuple[float, int] | None = None) -> bool:
        """Spins (publishing /clock, advancing it from ``clock_running_from`` = (wall, bag ns) if
        given) until ``predicate()`` or the limit; a missed limit is recorded."""
        end = min(deadline, time.monotonic() + limit_s)
        next_clock = time.monotonic()
        while not predicate():
            now = time.monotonic()
            if now >= end:
                summary["timeouts"].append(name)
                return False
            if clock_running_from is not None:
                wall, bag_ns = clock_running_from
                playback["ns"] = bag_ns + int((now - wall) * args.rate * NS)
            if now >= next_clock:
                publish_clock()
                next_clock = now + 1.0 / args.clock_hz
            rclpy.spin_once(node, timeout_sec=min(0.01, 1.0 / args.clock_hz))
        return True

    def spin_for(seconds: float, clock_running_from: tuple[float, int] | None = None) -> None:
        end = time.monotonic() + seconds
        spin_until(lambda: time.monotonic() >= end, "spin", seconds + 1.0, clock_running_from)

    with Reader(args.bag) as reader:
        publishers = {c.id: node.create_publisher(message_class(c.msgtype), c.topic, qos) for c in reader.connections}
        by_topic = {c.topic: publishers[c.id] for c in reader.connections}
        playback["ns"] = reader.start_time
        # The nodes are up: they subscribed to the camera topics and offer what is recorded.
        ready = spin_until(lambda: all(by_topic[t].get_subscription_count() >= n for t, n in wait_subscribers.items())
                           and all(node.count_publishers(t) >= 1 for t in record_types), "nodes ready", 120.0)
        summary["nodes_ready"] = ready
        spin_for(args.settle_s)
        started_wall, start_ns = time.monotonic(), reader.start_time
        last_colour_stamp = None
        colour_class = message_class("sensor_msgs/msg/Image")
        for connection, bag_ns, data in reader.messages():
            due = started_wall + (bag_ns - start_ns) / NS / args.rate
            spin_until(lambda due=due: time.monotonic() >= due, "playback", float("inf"), (started_wall, start_ns))
            playback["ns"] = max(playback["ns"], bag_ns)
            by_topic[connection.topic].publish(bytes(data))
            summary["published"] += 1
            if connection.topic == args.colour_topic:
                header = deserialize_message(bytes(data), colour_class).header
                last_colour_stamp = header.stamp.sec * NS + header.stamp.nanosec
        summary["play_wall_s"] = time.monotonic() - started_wall
        summary["bag_start_ns"], summary["bag_end_ns"] = reader.start_time, reader.end_time
    done_stamp["ns"] = last_colour_stamp
    summary["last_colour_stamp"] = last_colour_stamp
    running = (time.monotonic(), playback["ns"])
    if args.done_topic:
        summary["done"] = spin_until(lambda: done_stamp["seen"], f"{args.done_topic} for stamp {last_colour_stamp}",
                                     args.timeout, running)
    spin_for(args.drain_s, running)
    node.destroy_node()
    rclpy.try_shutdown()

    from egopress_core.rosbag.typestore import egopress_typestore
    from egopress_core.rosbag.writer import BagWriter

    recorded.sort(key=lambda item: item[0])
    with BagWriter(args.out, egopress_typestore(), storage="mcap") as writer:
        connections = {topic: writer.add_topic(topic, msgtype) for topic, msgtype in record_types.items()}
        for receive_ns, topic, data in recorded:
            writer.write(connections[topic], receive_ns, data)
    summary["recorded"] = {topic: sum(1 for _, t, _ in recorded if t == topic) for topic in record_types}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bag", type=Path, required=True, help="rosbag2 to play")
    parser.add_argument("--out", type=Path, required=True, help="rosbag2 folder to record into (must not exist)")
    parser.add_argument("--record", action="append", default=[], metavar="TOPIC=TYPE", help="topic to record, repeatable")
    parser.add_argument("--wait-subscribers", action="append", default=[], metavar="TOPIC=N",
                        help="play once the bag topic TOPIC has N subscriptions, repeatable")
    parser.add_argument("--colour-topic", default="/camera/color/image_raw", help="the bag's colour topic")
    parser.add_argument("--done-topic", help="recorded topic whose message stamped like the last colour image ends the run")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed (ros2 bag play --rate)")
    parser.add_argument("--clock-hz", type=float, default=40.0, help="/clock rate (ros2 bag play --clock)")
    parser.add_argument("--settle-s", type=float, default=1.0, help="wait after the nodes are ready (discovery)")
    parser.add_argument("--drain-s", type=float, default=1.0, help="keep recording this long after the last output")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for the whole run")
    args = parser.parse_args(argv)
    if args.done_topic and args.done_topic not in _pairs(args.record):
        parser.error("--done-topic must be one of the --record topics")
    summary = run(args)
    Path(f"{args.out}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
