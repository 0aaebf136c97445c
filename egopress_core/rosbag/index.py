"""What a bag holds for labelling: topics, synchronised frames, contiguous segments, and a log of
everything skipped and why.

One pass over the camera topics (colour, aligned depth, camera_info, and the hand-mesh or
keypoint topic a backend needs) reads each message's header; images are checked for a readable
encoding and consistent size without being decoded. Frames are then matched by header stamp:

- each colour image takes the depth image with the nearest stamp, if within ``sync_slop_s``
  (RealSense's aligned depth carries the colour stamp exactly);
- the camera_info with the nearest stamp (drivers publish one per frame; a latched one is fine);
- the hand mesh / keypoints with the nearest stamp within ``sync_slop_s`` (none: no hand);
- frames sorted by stamp are cut into segments where the stamp jumps by more than
  ``max_gap_s`` (the model's context must not bridge unrelated moments).

Nothing here decodes pixels; the labeller reads the frames of each chunk again by bag time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from egopress_core.errors import DataError
from egopress_core.image_encodings import COLOR_ENCODINGS, DEPTH_ENCODINGS, check_layout, pixel_format
from egopress_core import messages as m
from egopress_core.rosbag.compressed_depth import parse_format
from egopress_core.rosbag.messages import UnsupportedEncoding
from egopress_core.rosbag.topics import TOPIC_OPTIONS
from egopress_core.rosbag.typestore import CAMERA_INFO, COMPRESSED_IMAGE, HAND_MESH, IMAGE, POINT_CLOUD2

COLOR_TYPES = (IMAGE, COMPRESSED_IMAGE)
# role -> accepted message types
ROLE_TYPES = {"color": COLOR_TYPES, "depth": (IMAGE, COMPRESSED_IMAGE), "camera_info": (CAMERA_INFO,), "hand_mesh": (HAND_MESH,),
              "keypoints": (POINT_CLOUD2,)}
_EXAMPLES = 3


@dataclass(frozen=True)
class TopicSelection:
    """The input topics. ``hand_mesh`` (a recorded or ground-truth ``HandMesh``) is read by the
    ground_truth backend, ``keypoints`` (a 21-point ``PointCloud2``) by the keypoints backend."""

    color: str = "/camera/color/image_raw"
    depth: str = "/camera/aligned_depth_to_color/image_raw"
    camera_info: str = "/camera/color/camera_info"
    hand_mesh: str | None = None
    keypoints: str | None = None

    def roles(self) -> dict[str, str]:
        """role -> topic, for the roles in use."""
        return {role: topic for role, topic in (("color", self.color), ("depth", self.depth),
                                                ("camera_info", self.camera_info), ("hand_mesh", self.hand_mesh),
                                                ("keypoints", self.keypoints)) if topic}


@dataclass(frozen=True)
class MessageRef:
    """Where one message is: its topic, bag time and header stamp (ns)."""

    topic: str
    bag_ns: int
    stamp_ns: int


@dataclass(frozen=True)
class FrameRef:
    """One synchronised frame: the colour image and what goes with it."""

    stamp_ns: int
    frame_id: str
    color: MessageRef
    depth: MessageRef
    calibration: int  # index into BagIndex.calibrations
    hand_mesh: MessageRef | None = None
    keypoints: MessageRef | None = None

    def refs(self) -> list[MessageRef]:
        return [ref for ref in (self.color, self.depth, self.hand_mesh, self.keypoints) if ref is not None]


class SkipLog:
    """Messages or frames left out, grouped by (topic, reason), with counts and example stamps."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], dict] = {}

    def add(self, topic: str, reason: str, stamp_ns: int | None = None, count: int = 1) -> None:
        self.merge([{"topic": topic, "reason": reason, "count": count,
                     "example_stamps_ns": [] if stamp_ns is None else [int(stamp_ns)]}])

    def merge(self, entries: list[dict]) -> None:
        """Adds entries of :meth:`entries` form (e.g. from another log or a saved chunk)."""
        for entry in entries:
            target = self._entries.setdefault((entry["topic"], entry["reason"]), {
                "topic": entry["topic"], "reason": entry["reason"], "count": 0, "example_stamps_ns": []})
            target["count"] += int(entry["count"])
            for stamp in entry.get("example_stamps_ns", []):
                if len(target["example_stamps_ns"]) < _EXAMPLES:
                    target["example_stamps_ns"].append(int(stamp))

    def entries(self) -> list[dict]:
        return [dict(entry) for entry in sorted(self._entries.values(), key=lambda e: (e["topic"], -e["count"]))]

    @property
    def total(self) -> int:
        return sum(entry["count"] for entry in self._entries.values())


@dataclass
class BagIndex:
    """The frames of a bag, ready to be labelled.

    Attributes:
        frames: synchronised frames sorted by stamp.
        segments: [start, stop) positions in ``frames`` of contiguous stretches.
        calibrations: distinct camera calibrations (``FrameRef.calibration`` indexes them).
        skipped: what was left out and why.
        gaps: stamp jumps longer than 2.5 frame periods (``split`` when they cut a segment).
        message_counts: messages read per topic.
        fps: median frame rate of the colour stream.
    """

    frames: list[FrameRef]
    segments: list[tuple[int, int]]
    calibrations: list[m.CameraCalibration]
    skipped: SkipLog
    gaps: list[dict] = field(default_factory=list)
    message_counts: dict[str, int] = field(default_factory=dict)
    fps: float = 0.0


def check_topics(reader, topics: TopicSelection) -> None:
    """Raises DataError naming a missing topic or one of the wrong type, with the bag's candidates."""
    available = reader.topics
    problems = []
    roles_of: dict[str, list[str]] = {}
    for role, topic in topics.roles().items():
        roles_of.setdefault(topic, []).append(role)
    for topic, roles in roles_of.items():
        if len(roles) > 1:
            problems.append(f"the {' and '.join(roles)} topics are both {topic!r}; each role needs its own topic")
    for role, topic in topics.roles().items():
        accepted = ROLE_TYPES[role]
        if topic not in available:
            candidates = sorted(name for name, kind in available.items() if kind in accepted)
            problems.append(f"{role} topic {topic!r} is not in the bag" + (f" (topics of type {' / '.join(accepted)}: {candidates}; "
                                                                            f"pass one with {TOPIC_OPTIONS[role]})"
                                                                            if candidates else f" (no topic of type {' / '.join(accepted)})"))
        elif available[topic] not in accepted:
            problems.append(f"{role} topic {topic!r} has type {available[topic]}; expected {' or '.join(accepted)}")
    if problems:
        raise DataError(f"{reader.path}: " + "; ".join(problems))


def _check_image_layout(msg, msgtype: str, role: str) -> tuple[int, int] | None:
    """(H, W) of an image whose encoding and size are readable, else raise UnsupportedEncoding.
    Compressed images are only decoded later (None: size unknown yet); a depth one must name the
    compressedDepth transport and an encoding and codec it has."""
    if msgtype == COMPRESSED_IMAGE:
        if role == "depth":
            parse_format(str(msg.format))
        return None
    encodings = COLOR_ENCODINGS if role == "color" else DEPTH_ENCODINGS
    encoding = str(msg.encoding)
    if encoding not in encodings:
        kind, other = ("colour", DEPTH_ENCODINGS) if role == "color" else ("depth", COLOR_ENCODINGS)
        hint = f"; this looks like a {'depth' if role == 'color' else 'colour'} image: check {TOPIC_OPTIONS[role]}" if encoding in other else ""
        raise UnsupportedEncoding(f"{kind} encoding {encoding!r} is not supported (expected one of {sorted(encodings)}){hint}")
    dtype, channels = pixel_format(encoding)
    return check_layout(msg, channels, dtype)


def build_index(reader, store, topics: TopicSelection, sync_slop_s: float = 0.02, max_gap_s: float = 1.0,
                progress: bool = True) -> BagIndex:
    """Reads the headers of the selected topics and matches frames (see the module docstring).

    Raises:
        DataError: a required topic is missing, or no frame could be synchronised.
    """
    check_topics(reader, topics)
    roles = topics.roles()
    role_of = {topic: role for role, topic in roles.items()}
    connections = [c for topic in roles.values() for c in reader.connections_of(topic)]
    skipped = SkipLog()
    counts = {topic: 0 for topic in roles.values()}
    found: dict[str, list[tuple[int, int, int, str, tuple | None]]] = {role: [] for role in roles}
    calibrations: list[m.CameraCalibration] = []
    calibration_keys: dict[tuple, int] = {}
    total = sum(c.msgcount for c in connections) or None
    for connection, bag_ns, data in tqdm(reader.messages(connections), total=total, desc="index", unit="msg",
                                         disable=not progress, leave=False):
        topic, role = connection.topic, role_of[connection.topic]
        counts[topic] += 1
        try:
            msg = store.deserialize_cdr(data, connection.msgtype)
        except Exception as error:  # noqa: BLE001 - truncated or garbage CDR
            skipped.add(topic, f"message cannot be deserialised as {connection.msgtype} ({type(error).__name__})")
            continue
        stamp = m.stamp_to_ns(msg.header.stamp)
        if stamp == 0:
            skipped.add(topic, "header stamp is zero (unstamped message); it cannot be synchronised")
            continue
        extra = None
        try:
            if role in ("color", "depth"):
                extra = _check_image_layout(msg, connection.msgtype, role)
            elif role == "camera_info":
                calibration = m.camera_info_to_calibration(msg)
                key = (calibration.width, calibration.height, *calibration.intrinsics.ravel().tolist(), *calibration.distortion)
                extra = calibration_keys.setdefault(key, len(calibrations))
                if extra == len(calibrations):
                    calibrations.append(calibration)
        except DataError as error:
            skipped.add(topic, str(error), stamp)
            continue
        found[role].append((stamp, bag_ns, len(found[role]), str(msg.header.frame_id), extra))

    if not found["color"]:
        raise DataError(f"{reader.path}: no readable colour image on {topics.color} ({skipped.total} messages skipped: "
                        f"{[e['reason'] for e in skipped.entries()][:3]})")
    if not calibrations:
        raise DataError(f"{reader.path}: no usable camera_info on {topics.camera_info}; the camera intrinsics are needed")
    if not found["depth"]:
        raise DataError(f"{reader.path}: no readable depth image on {topics.depth}")

    def nearest(stamps_sorted: np.ndarray, stamp: int) -> int:
        """Position of the stamp nearest ``stamp`` in a sorted, non-empty array."""
        position = int(np.searchsorted(stamps_sorted, stamp))
        return min((p for p in (position - 1, position) if 0 <= p < len(stamps_sorted)),
                   key=lambda p: abs(int(stamps_sorted[p]) - stamp))

    sorted_roles = {}
    for role, items in found.items():
        items.sort(key=lambda item: (item[0], item[1]))
        sorted_roles[role] = (items, np.array([item[0] for item in items], dtype=np.int64))
    slop = int(round(sync_slop_s * 1e9))
    frames: list[FrameRef] = []
    previous_stamp = None
    color_items, _ = sorted_roles["color"]
    for stamp, bag_ns, _, frame_id, size in color_items:
        if stamp == previous_stamp:
            skipped.add(topics.color, "duplicate header stamp (a second image with the same stamp)", stamp)
            continue
        previous_stamp = stamp
        depth_items, depth_stamps = sorted_roles["depth"]
        depth = depth_items[nearest(depth_stamps, stamp)]
        if abs(depth[0] - stamp) > slop:
            skipped.add(topics.color, f"no depth image within {sync_slop_s * 1000:g} ms of the colour stamp", stamp)
            continue
        if size is not None and depth[4] is not None and depth[4] != size:
            skipped.add(topics.color, f"depth image {depth[4][1]}x{depth[4][0]} is not aligned to the colour image "
                                      f"{size[1]}x{size[0]} (use the depth stream aligned to colour)", stamp)
            continue
        info_items, info_stamps = sorted_roles["camera_info"]
        calibration = info_items[nearest(info_stamps, stamp)][4]
        reference = calibrations[calibration]
        if size is not None and reference.width and reference.height and (reference.height, reference.width) != size:
            skipped.add(topics.color, f"camera_info is for {reference.width}x{reference.height} images but the colour "
                                      f"image is {size[1]}x{size[0]}", stamp)
            continue
        optional = {}
        for role in ("hand_mesh", "keypoints"):
            if role not in sorted_roles:
                continue
            items, stamps_sorted = sorted_roles[role]
            match = items[nearest(stamps_sorted, stamp)] if len(items) else None
            if match is None or abs(match[0] - stamp) > slop:
                skipped.add(roles[role], f"no {role.replace('_', ' ')} within {sync_slop_s * 1000:g} ms of the colour "
                                         "stamp (the frame is labelled as without a hand)", stamp)
                optional[role] = None
            else:
                optional[role] = MessageRef(roles[role], match[1], match[0])
        frames.append(FrameRef(
            stamp_ns=stamp, frame_id=frame_id, color=MessageRef(topics.color, bag_ns, stamp),
            depth=MessageRef(topics.depth, depth[1], depth[0]), calibration=calibration, **optional,
        ))  # fmt: skip
    if not frames:
        raise DataError(f"{reader.path}: no colour image could be matched with depth and camera_info "
                        f"({'; '.join(e['reason'] for e in skipped.entries()[:3])})")

    stamps = np.array([frame.stamp_ns for frame in frames], dtype=np.int64)
    steps = np.diff(stamps)
    period = float(np.median(steps)) if len(steps) else 0.0
    fps = 1e9 / period if period > 0 else 0.0
    max_gap = int(round(max_gap_s * 1e9))
    segments, gaps, start = [], [], 0
    for position, step in enumerate(steps, start=1):
        if period > 0 and step > 2.5 * period:
            split = bool(step > max_gap)
            gaps.append({"after_stamp_ns": int(stamps[position - 1]), "before_stamp_ns": int(stamps[position]),
                         "seconds": float(step) / 1e9, "missing_frames": int(round(step / period)) - 1, "split": split})
            if split:
                segments.append((start, position))
                start = position
    segments.append((start, len(frames)))
    return BagIndex(frames=frames, segments=segments, calibrations=calibrations, skipped=skipped, gaps=gaps,
                    message_counts=counts, fps=fps)
