"""Labelled bags -> a Hugging Face LeRobot dataset, format v3.0 (``egopress export-lerobot``).

The layout is LeRobot's (``lerobot.datasets.lerobot_dataset``, ``CODEBASE_VERSION = "v3.0"``);
the ``lerobot`` package itself pins torch < 2.11 and diffusers < 0.36, so it cannot be installed
beside this package, and the files are written directly, as ``LeRobotDataset`` writes them::

    OUT/
      README.md                                   dataset card: features, units, sources
      meta/info.json                              codebase_version, fps, features, paths, totals
      meta/stats.json                             per feature: min, max, mean, std, count, q01..q99
      meta/tasks.parquet                          task strings (pandas index) -> task_index
      meta/episodes/chunk-000/file-000.parquet    one row per episode: length, data / video file and
                                                  frame range, per-episode stats/<feature>/<stat>
      data/chunk-000/file-000.parquet             one row per frame (all episodes, appended)
      videos/observation.images.color/chunk-000/file-000.mp4   the colour frames of all episodes

Features (per frame):

========================================  ======  ==========  ==========================================
key                                       dtype   shape       meaning
========================================  ======  ==========  ==========================================
observation.images.color                  video   (H, W, 3)   colour image (AV1 or H.264 mp4, yuv420p)
observation.pressure.vertex_kpa           float32 (V,)        pressure per hand-mesh vertex, kPa
observation.pressure.vertex_contact       bool    (V,)        vertex_kpa > contact threshold
observation.pressure.uv_kpa               float32 (h, w)      UV-pressure map, kPa, area-downsampled
observation.pressure.total_force_n        float32 (1,)        total normal force, N
observation.pressure.contact_area_m2      float32 (1,)        hand area in contact, m²
observation.pressure.center_of_pressure   float32 (3,)        camera frame, m (0 without contact)
observation.pressure.in_contact           bool    (1,)        any vertex in contact
observation.hand.present                  bool    (1,)        a hand was found (else pressure is 0)
observation.hand.joints                   float32 (21, 3)     OpenPose-order joints, camera frame, m
stamp_ns                                  int64   (1,)        header stamp of the source colour image
timestamp, frame_index, episode_index,    LeRobot's standard columns
index, task_index
========================================  ======  ==========  ==========================================

Episodes: every contiguous stretch of labelled frames of each bag (split where the stamps jump by
more than ``max_gap_s``, like the labeller's segments). Within an episode ``timestamp`` is
``frame_index / fps`` (the video's frame clock, which LeRobot looks frames up by); the true
capture time is ``stamp_ns``. A frame whose colour image is missing from the bag is left out.

Frames are those with a ``HandMesh`` on ``<namespace>/hand_mesh`` (the labeller writes one for every
synchronised frame). Frames without a hand keep zeros in the pressure and hand features and
``observation.hand.present = False`` (policies should mask them; "no contact" is not known there).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from egopress_core.errors import ConfigError, DataError
from egopress_core.rosbag import accounting
from egopress_core.rosbag.topics import COLOR_TOPIC

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_KEY = "observation.images.color"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
VIDEO_CODECS = {"av1": "libsvtav1", "h264": "libx264"}
# LeRobot computes image statistics on at most this many frames per episode.
_VIDEO_STAT_SAMPLES = 100


@dataclass(frozen=True)
class LeRobotExportOptions:
    """How labelled bags become a LeRobot dataset.

    Attributes:
        camera_topic: colour image topic of the bags.
        namespace: prefix of the labeller's topics (``<ns>/hand_mesh``, ...).
        task: the task string of every episode (LeRobot's ``task``).
        uv_size: (h, w) of the exported UV map; maps larger than this are area-downsampled,
            smaller ones are kept at their size.
        max_gap_s: a longer stamp jump starts a new episode.
        fps: frame rate of the data set (None: the bags' median rate, rounded).
        video_codec: "av1" (SVT-AV1, LeRobot's default) or "h264".
        crf, gop: encoder quality and keyframe interval (LeRobot's defaults: 30, 2).
        robot_type: ``info.json``'s robot_type (None for human demonstrations).
    """

    camera_topic: str = COLOR_TOPIC
    namespace: str = "/egopress"
    task: str = "hand manipulation demonstration"
    uv_size: tuple[int, int] = (32, 32)
    max_gap_s: float = 1.0
    fps: int | None = None
    video_codec: str = "av1"
    crf: int = 30
    gop: int = 2
    robot_type: str | None = None

    def __post_init__(self) -> None:
        if self.video_codec not in VIDEO_CODECS:
            raise ConfigError(f"video_codec must be one of {tuple(VIDEO_CODECS)}. Got {self.video_codec!r}")
        size = tuple(self.uv_size)
        if len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size):
            raise ConfigError(f"uv_size must be two positive integers (h, w). Got {self.uv_size!r}")
        object.__setattr__(self, "uv_size", size)
        if self.fps is not None and (not isinstance(self.fps, int) or self.fps < 1):
            raise ConfigError(f"fps must be a positive integer or None. Got {self.fps!r}")
        if not (isinstance(self.max_gap_s, (int, float)) and self.max_gap_s > 0):
            raise ConfigError(f"max_gap_s must be a positive number. Got {self.max_gap_s!r}")
        if not isinstance(self.crf, int) or not 0 <= self.crf <= 63:
            raise ConfigError(f"crf must be an integer in [0, 63]. Got {self.crf!r}")
        if not isinstance(self.gop, int) or self.gop < 1:
            raise ConfigError(f"gop must be a positive integer. Got {self.gop!r}")
        if not self.task or not isinstance(self.task, str):
            raise ConfigError(f"task must be a non-empty string. Got {self.task!r}")

    def topic(self, name: str) -> str:
        return ("" if self.namespace == "/" else self.namespace.rstrip("/")) + "/" + name


@dataclass
class ExportReport:
    """What :func:`export_lerobot` wrote."""

    output: str
    episodes: int = 0
    frames: int = 0
    fps: int = 0
    image_size: tuple[int, int] = (0, 0)
    uv_size: tuple[int, int] = (0, 0)
    num_vertices: int = 0
    frames_without_colour: int = 0
    bags: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Reading a labelled bag
# ----------------------------------------------------------------------------------------------


@dataclass
class _FrameLabels:
    stamp_ns: int
    present: bool
    joints: np.ndarray
    vertex_kpa: np.ndarray | None = None
    vertex_contact: np.ndarray | None = None
    uv_kpa: np.ndarray | None = None
    total_force_n: float = 0.0
    contact_area_m2: float = 0.0
    center_of_pressure: np.ndarray | None = None
    in_contact: bool = False


def _read_labels(reader, store, options: LeRobotExportOptions, progress: bool,
                 decoded: dict[str, int]) -> tuple[dict[int, _FrameLabels], dict]:
    """stamp -> labels of one labelled bag, and what the labels look like (sizes, layout);
    ``decoded`` counts the messages read and decoded per topic."""
    import torch
    from tqdm.auto import tqdm

    from egopress_core import messages as m
    from egopress_core.data.windows import area_resize

    topics = {options.topic("hand_mesh"): "hand_mesh", options.topic("hand_contact"): "hand_contact",
              options.topic("uv_pressure"): "uv_pressure"}
    present = reader.topics
    missing = [topic for topic in topics if topic not in present]
    if missing:
        raise DataError(f"{reader.path}: not a labelled bag, it lacks {missing} (label it with `egopress label-bag` first, "
                        "or pass the --namespace it was labelled with)")
    connections = [c for topic in topics for c in reader.connections_of(topic)]
    labels: dict[int, _FrameLabels] = {}
    contact: dict[int, Any] = {}
    pressure: dict[int, np.ndarray] = {}
    shape: dict[str, Any] = {}
    for connection, _, data in tqdm(reader.messages(connections), total=sum(c.msgcount for c in connections) or None,
                                    desc=f"labels {reader.path.name}", unit="msg", disable=not progress, leave=False):
        try:
            msg = store.deserialize_cdr(data, connection.msgtype)
        except Exception:  # noqa: BLE001 - a damaged message is left out, and counted as lost
            continue
        decoded[connection.topic] = decoded.get(connection.topic, 0) + 1
        stamp = m.stamp_to_ns(msg.header.stamp)
        kind = topics[connection.topic]
        if kind == "hand_mesh":
            fields = m.hand_mesh_from_msg(msg)
            labels[stamp] = _FrameLabels(stamp, fields.has_hand, np.nan_to_num(fields.joints).astype(np.float32))
            shape.setdefault("topology_id", fields.topology_id)
        elif kind == "hand_contact":
            contact[stamp] = msg
        else:
            uv_map = m.uv_pressure_from_msg(msg)
            target = tuple(min(a, b) for a, b in zip(options.uv_size, uv_map.shape))
            if shape.setdefault("uv_layout_id", str(msg.uv_layout_id)) != str(msg.uv_layout_id):
                raise DataError(f"{reader.path}: UV maps of several layouts ({shape['uv_layout_id']}, {msg.uv_layout_id})")
            shape.setdefault("uv_native", uv_map.shape)
            pressure[stamp] = uv_map if target == uv_map.shape else area_resize(torch.from_numpy(uv_map.astype(np.float64)), target).numpy()
    for stamp, frame in labels.items():
        if not frame.present:
            continue
        if stamp not in contact or stamp not in pressure:
            frame.present = False  # the labeller writes all three for a hand; keep the frame consistent
            continue
        msg = contact[stamp]
        frame.vertex_kpa = np.asarray(msg.vertex_pressure_kpa, dtype=np.float32)
        frame.vertex_contact = np.asarray(msg.vertex_contact, dtype=bool)
        frame.total_force_n = float(msg.total_force_n)
        frame.contact_area_m2 = float(msg.contact_area_m2)
        centre = np.array([msg.center_of_pressure.x, msg.center_of_pressure.y, msg.center_of_pressure.z], dtype=np.float32)
        frame.center_of_pressure = np.nan_to_num(centre)
        frame.in_contact = bool(msg.in_contact)
        frame.uv_kpa = pressure[stamp].astype(np.float32)
        shape.setdefault("num_vertices", len(frame.vertex_kpa))
        shape.setdefault("uv_size", frame.uv_kpa.shape)
    return labels, shape


def _episodes(stamps: list[int], max_gap_s: float) -> list[list[int]]:
    episodes: list[list[int]] = []
    for stamp in stamps:
        if episodes and stamp - episodes[-1][-1] <= max_gap_s * 1e9:
            episodes[-1].append(stamp)
        else:
            episodes.append([stamp])
    return episodes


# ----------------------------------------------------------------------------------------------
# Statistics (LeRobot's per-feature statistics)
# ----------------------------------------------------------------------------------------------


def feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """min, max, mean, std, count and q01..q99 over axis 0 (frames), per element."""
    array = np.asarray(values)
    numeric = array.astype(np.float64)
    stats = {
        "min": array.min(axis=0), "max": array.max(axis=0), "mean": numeric.mean(axis=0), "std": numeric.std(axis=0),
        "count": np.array([len(array)]),
    }  # fmt: skip
    for quantile, value in zip(QUANTILES, np.quantile(numeric, QUANTILES, axis=0)):
        stats[f"q{int(round(quantile * 100)):02d}"] = value
    return stats


def image_stats(images: np.ndarray, total_count: int) -> dict[str, np.ndarray]:
    """Per-channel statistics of (N, H, W, 3) uint8 images, in [0, 1], shaped (3, 1, 1) as LeRobot's."""
    channels = np.moveaxis(np.asarray(images, dtype=np.float64) / 255.0, -1, 0).reshape(3, -1)
    stats = {"min": channels.min(axis=1), "max": channels.max(axis=1), "mean": channels.mean(axis=1),
             "std": channels.std(axis=1)}
    for quantile, value in zip(QUANTILES, np.quantile(channels, QUANTILES, axis=1)):
        stats[f"q{int(round(quantile * 100)):02d}"] = value
    stats = {key: value.reshape(3, 1, 1) for key, value in stats.items()}
    stats["count"] = np.array([total_count])
    return stats


def aggregate_stats(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """Data-set statistics from per-episode ones, as LeRobot aggregates them (count-weighted
    means and quantiles, pooled variance)."""
    result: dict[str, dict[str, np.ndarray]] = {}
    for key in per_episode[0]:
        items = [stats[key] for stats in per_episode]
        counts = np.stack([item["count"] for item in items]).astype(np.float64)
        total = counts.sum(axis=0)
        means = np.stack([item["mean"] for item in items])
        weights = counts.reshape(counts.shape + (1,) * (means.ndim - counts.ndim))
        mean = (means * weights).sum(axis=0) / total.reshape(total.shape + (1,) * (means.ndim - 1 - total.ndim))
        variance = ((np.stack([item["std"] for item in items]) ** 2 + (means - mean) ** 2) * weights).sum(axis=0)
        variance = variance / total.reshape(total.shape + (1,) * (means.ndim - 1 - total.ndim))
        merged = {"min": np.min(np.stack([item["min"] for item in items]), axis=0),
                  "max": np.max(np.stack([item["max"] for item in items]), axis=0),
                  "mean": mean, "std": np.sqrt(variance), "count": total.astype(np.int64)}
        for quantile_key in (k for k in items[0] if k.startswith("q")):
            values = np.stack([item[quantile_key] for item in items])
            merged[quantile_key] = (values * weights).sum(axis=0) / total.reshape(total.shape + (1,) * (values.ndim - 1 - total.ndim))
        result[key] = merged
    return result


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {key: {name: np.asarray(value).tolist() for name, value in values.items()} for key, values in stats.items()}


# ----------------------------------------------------------------------------------------------
# Parquet (the column types ``datasets`` writes for LeRobot's features)
# ----------------------------------------------------------------------------------------------


def hf_feature_types(features: dict[str, dict]) -> dict[str, dict]:
    """The ``datasets.Features`` JSON of LeRobot's ``get_hf_features_from_features`` (video excluded)."""
    result = {}
    for key, feature in features.items():
        dtype, shape = feature["dtype"], tuple(feature["shape"])
        if dtype == "video":
            continue
        if shape == (1,):
            result[key] = {"dtype": dtype, "_type": "Value"}
        elif len(shape) == 1:
            result[key] = {"feature": {"dtype": dtype, "_type": "Value"}, "length": shape[0], "_type": "List"}
        elif len(shape) == 2:
            result[key] = {"shape": list(shape), "dtype": dtype, "_type": "Array2D"}
        else:
            raise ConfigError(f"feature {key} has shape {shape}; only 1-D and 2-D features are written")
    return result


def _arrow_column(values: np.ndarray, feature: dict):
    """(N, *shape) values -> (pyarrow field type, array), as ``datasets`` stores the feature."""
    import pyarrow as pa

    dtype, shape = feature["dtype"], tuple(feature["shape"])
    arrow_type = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}[dtype]
    flat = pa.array(np.ascontiguousarray(values, dtype=np.dtype(dtype)).reshape(-1), type=arrow_type)
    if shape == (1,):
        return flat.type, flat, None
    if len(shape) == 1:
        array = pa.FixedSizeListArray.from_arrays(flat, shape[0])
        return array.type, array, None
    rows, columns = shape
    inner = pa.ListArray.from_arrays(pa.array(np.arange(0, len(flat) + 1, columns, dtype=np.int32)), flat)
    outer = pa.ListArray.from_arrays(pa.array(np.arange(0, len(inner) + 1, rows, dtype=np.int32)), inner)
    metadata = {b"ARROW:extension:name": b"datasets.features.features.Array2DExtensionType",
                b"ARROW:extension:metadata": json.dumps([list(shape), dtype]).encode()}
    return outer.type, outer, metadata


def frame_table(columns: dict[str, np.ndarray], features: dict[str, dict]):
    """A pyarrow table of per-frame columns in the feature order, with the ``huggingface`` schema
    metadata ``datasets`` writes."""
    import pyarrow as pa

    fields, arrays = [], []
    for key, feature in features.items():
        if feature["dtype"] == "video":
            continue
        arrow_type, array, metadata = _arrow_column(columns[key], feature)
        fields.append(pa.field(key, arrow_type, metadata=metadata))
        arrays.append(array)
    metadata = {b"huggingface": json.dumps({"info": {"features": hf_feature_types(features)}}).encode()}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def _tasks_table(tasks: list[str]):
    """meta/tasks.parquet as pandas writes ``DataFrame({"task_index": ...}, index=tasks)``."""
    import pyarrow as pa

    pandas_metadata = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "str",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
                    {"name": None, "field_name": "__index_level_0__", "pandas_type": "object", "numpy_type": "str", "metadata": None}],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "3.1.1",
    }  # fmt: skip
    schema = pa.schema([pa.field("task_index", pa.int64()), pa.field("__index_level_0__", pa.large_string())],
                       metadata={b"pandas": json.dumps(pandas_metadata).encode()})
    return pa.Table.from_arrays([pa.array(range(len(tasks)), pa.int64()), pa.array(tasks, pa.large_string())], schema=schema)


def _episodes_table(rows: list[dict]):
    import pyarrow as pa

    columns: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(np.asarray(value).tolist() if isinstance(value, np.ndarray) else value)
    return pa.Table.from_pydict(columns)


# ----------------------------------------------------------------------------------------------
# Video
# ----------------------------------------------------------------------------------------------


class _VideoFile:
    """One mp4 of consecutive episodes; frame k is shown at k / fps."""

    def __init__(self, path: Path, fps: int, size_hw: tuple[int, int], codec: str, crf: int, gop: int) -> None:
        import av

        # SVT-AV1 prints its configuration banner at info level unless told otherwise (1 = errors).
        os.environ.setdefault("SVT_LOG", "1")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.container = av.open(str(path), "w")
        encoder = VIDEO_CODECS[codec]
        options = {"g": str(gop), "crf": str(crf)}
        if encoder == "libsvtav1":
            options["preset"] = "12"
        self.stream = self.container.add_stream(encoder, rate=fps, options=options)
        self.stream.width, self.stream.height = size_hw[1], size_hw[0]
        self.stream.pix_fmt = "yuv420p"
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def video_info(codec: str, fps: int, size_hw: tuple[int, int]) -> dict:
    """The ``info`` entry LeRobot records for a video feature."""
    return {"video.height": size_hw[0], "video.width": size_hw[1], "video.codec": codec, "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False, "video.fps": fps, "video.channels": 3, "has_audio": False}


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------


def _features(image_hw: tuple[int, int], num_vertices: int, uv_size: tuple[int, int], fps: int, codec: str) -> dict:
    features = {
        VIDEO_KEY: {"dtype": "video", "shape": [image_hw[0], image_hw[1], 3], "names": ["height", "width", "channels"],
                    "info": video_info(codec, fps, image_hw)},
        "observation.pressure.vertex_kpa": {"dtype": "float32", "shape": [num_vertices], "names": None},
        "observation.pressure.vertex_contact": {"dtype": "bool", "shape": [num_vertices], "names": None},
        "observation.pressure.uv_kpa": {"dtype": "float32", "shape": list(uv_size), "names": ["v", "u"]},
        "observation.pressure.total_force_n": {"dtype": "float32", "shape": [1], "names": None},
        "observation.pressure.contact_area_m2": {"dtype": "float32", "shape": [1], "names": None},
        "observation.pressure.center_of_pressure": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
        "observation.pressure.in_contact": {"dtype": "bool", "shape": [1], "names": None},
        "observation.hand.present": {"dtype": "bool", "shape": [1], "names": None},
        "observation.hand.joints": {"dtype": "float32", "shape": [21, 3], "names": ["joint", "xyz"]},
        "stamp_ns": {"dtype": "int64", "shape": [1], "names": None},
    }  # fmt: skip
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        features[key] = {"dtype": "float32" if key == "timestamp" else "int64", "shape": [1], "names": None}
    return features


def _episode_columns(frames: list[_FrameLabels], num_vertices: int, uv_size: tuple[int, int]) -> dict[str, np.ndarray]:
    count = len(frames)
    columns = {
        "observation.pressure.vertex_kpa": np.zeros((count, num_vertices), np.float32),
        "observation.pressure.vertex_contact": np.zeros((count, num_vertices), bool),
        "observation.pressure.uv_kpa": np.zeros((count, *uv_size), np.float32),
        "observation.pressure.total_force_n": np.zeros((count, 1), np.float32),
        "observation.pressure.contact_area_m2": np.zeros((count, 1), np.float32),
        "observation.pressure.center_of_pressure": np.zeros((count, 3), np.float32),
        "observation.pressure.in_contact": np.zeros((count, 1), bool),
        "observation.hand.present": np.zeros((count, 1), bool),
        "observation.hand.joints": np.zeros((count, 21, 3), np.float32),
        "stamp_ns": np.array([[frame.stamp_ns] for frame in frames], np.int64).reshape(count, 1),
    }  # fmt: skip
    for row, frame in enumerate(frames):
        if not frame.present:
            continue
        if frame.vertex_kpa.shape != (num_vertices,) or frame.uv_kpa.shape != tuple(uv_size):
            raise DataError(f"frame at stamp {frame.stamp_ns} has {frame.vertex_kpa.shape[0]} vertices and a "
                            f"{frame.uv_kpa.shape} UV map; the data set has {num_vertices} and {tuple(uv_size)}")
        columns["observation.pressure.vertex_kpa"][row] = frame.vertex_kpa
        columns["observation.pressure.vertex_contact"][row] = frame.vertex_contact
        columns["observation.pressure.uv_kpa"][row] = frame.uv_kpa
        columns["observation.pressure.total_force_n"][row] = frame.total_force_n
        columns["observation.pressure.contact_area_m2"][row] = frame.contact_area_m2
        columns["observation.pressure.center_of_pressure"][row] = frame.center_of_pressure
        columns["observation.pressure.in_contact"][row] = frame.in_contact
        columns["observation.hand.present"][row] = True
        columns["observation.hand.joints"][row] = frame.joints
    return columns


class _Exporter:
    def __init__(self, root: Path, options: LeRobotExportOptions, progress: bool, accept_loss: bool = False) -> None:
        self.accept_loss = accept_loss
        self.root, self.options, self.progress = root, options, progress
        self.features: dict | None = None
        self.fps: int | None = options.fps
        self.image_hw: tuple[int, int] | None = None
        self.num_vertices: int | None = None
        self.uv_size: tuple[int, int] | None = None
        self.uv_layout_id: str | None = None
        self.episode_rows: list[dict] = []
        self.episode_stats: list[dict] = []
        self.total_frames = 0
        self.data_file = 0
        self.data_writer = None
        self.data_file_frames = 0
        self.video_file_number = 0
        self.video: _VideoFile | None = None
        self.missing_colour = 0

    # -- files -------------------------------------------------------------------------------

    @staticmethod
    def _chunked(pattern: str, number: int, **keys) -> str:
        return pattern.format(chunk_index=number // CHUNKS_SIZE, file_index=number % CHUNKS_SIZE, **keys)

    def _video(self) -> _VideoFile:
        if self.video is None:
            path = self.root / self._chunked(VIDEO_PATH, self.video_file_number, video_key=VIDEO_KEY)
            self.video = _VideoFile(path, self.fps, self.image_hw, self.options.video_codec, self.options.crf, self.options.gop)
        return self.video

    def _write_frames(self, table) -> None:
        import pyarrow.parquet as pq

        if self.data_writer is None:
            path = self.root / self._chunked(DATA_PATH, self.data_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.data_writer = pq.ParquetWriter(path, table.schema, compression="snappy", use_dictionary=True)
            self.data_file_frames = 0
        self.data_writer.write_table(table)
        self.data_file_frames += table.num_rows

    def _roll_files(self) -> None:
        """After an episode: start new data / video files once the current ones are full."""
        if self.data_writer is not None:
            path = self.root / self._chunked(DATA_PATH, self.data_file)
            if path.exists() and path.stat().st_size >= DATA_FILES_SIZE_IN_MB * 1e6:
                self.data_writer.close()
                self.data_writer = None
                self.data_file += 1
        if self.video is not None and self.video.path.exists() and self.video.path.stat().st_size >= VIDEO_FILES_SIZE_IN_MB * 1e6:
            self.video.close()
            self.video = None
            self.video_file_number += 1

    def close(self) -> None:
        if self.data_writer is not None:
            self.data_writer.close()
            self.data_writer = None
        if self.video is not None:
            self.video.close()
            self.video = None

    # -- bags --------------------------------------------------------------------------------

    def add_bag(self, path: Path) -> dict:
        from egopress_core.rosbag.reader import BagReader
        from egopress_core.rosbag.typestore import egopress_typestore

        store = egopress_typestore()
        with BagReader(path) as reader:
            if self.options.camera_topic not in reader.topics:
                raise DataError(f"{path}: no colour topic {self.options.camera_topic!r} (pass --camera-topic)")
            decoded: dict[str, int] = {}
            labels, shape = _read_labels(reader, store, self.options, self.progress, decoded)
            if not labels:
                raise DataError(f"{path}: no HandMesh message on {self.options.topic('hand_mesh')}; nothing to export")
            stamps = sorted(labels)
            if self.fps is None:
                steps = np.diff(np.array(stamps, dtype=np.int64))
                self.fps = int(round(1e9 / float(np.median(steps)))) if len(steps) else 30
            self._check_shapes(path, shape)
            episodes = _episodes(stamps, self.options.max_gap_s)
            before = (len(self.episode_rows), self.total_frames)
            self._export_episodes(reader, store, labels, episodes, decoded)
            unreadable = reader.unreadable_report()
            # Every message of the topics the data set is made of is read, or the export says so.
            used = {topic: counts for topic, counts in reader.topic_counts().items() if topic in decoded
                    or topic in {self.options.camera_topic, *(self.options.topic(k) for k in ("hand_mesh", "hand_contact",
                                                                                              "uv_pressure"))}}
            accounts = accounting.account(used, read=decoded, written=decoded)
            summary = accounting.check(accounts, self.accept_loss, f"{path}: nothing was exported; pass --accept-loss "
                                       "to export without them")
        return {"bag": str(path), "episodes": len(self.episode_rows) - before[0], "frames": self.total_frames - before[1],
                "unreadable": unreadable, "accounting": [item.to_dict() for item in accounts], "accepted_loss": summary}

    def _check_shapes(self, path: Path, shape: dict) -> None:
        num_vertices = shape.get("num_vertices")
        uv_size = shape.get("uv_size")
        if num_vertices is None:  # no frame with a hand: sizes from the mesh topology id "<name>:<V>v:<hash>"
            topology = str(shape.get("topology_id", ""))
            parts = topology.split(":")
            num_vertices = int(parts[1][:-1]) if len(parts) == 3 and parts[1].endswith("v") and parts[1][:-1].isdigit() else None
            native = shape.get("uv_native") or self.options.uv_size
            uv_size = tuple(min(a, b) for a, b in zip(self.options.uv_size, native))
        if num_vertices is None:
            raise DataError(f"{path}: cannot tell the hand mesh's vertex count (no hand in any frame, topology "
                            f"{shape.get('topology_id')!r})")
        if self.num_vertices is None:
            self.num_vertices, self.uv_size, self.uv_layout_id = num_vertices, tuple(uv_size), shape.get("uv_layout_id")
        elif (self.num_vertices, self.uv_size) != (num_vertices, tuple(uv_size)):
            raise DataError(f"{path}: labels with {num_vertices} vertices and {tuple(uv_size)} UV maps cannot join a data set "
                            f"of {self.num_vertices} vertices and {self.uv_size} maps")
        elif shape.get("uv_layout_id") and self.uv_layout_id and shape["uv_layout_id"] != self.uv_layout_id:
            raise DataError(f"{path}: UV layout {shape['uv_layout_id']} differs from the data set's {self.uv_layout_id}")

    def _export_episodes(self, reader, store, labels: dict[int, _FrameLabels], episodes: list[list[int]],
                         decoded: dict[str, int]) -> None:
        from tqdm.auto import tqdm

        from egopress_core import messages as m
        from egopress_core.rosbag.messages import color_to_rgb

        wanted = {stamp for episode in episodes for stamp in episode}
        order = [stamp for episode in episodes for stamp in episode]
        episode_of = {stamp: number for number, episode in enumerate(episodes) for stamp in episode}
        pending: dict[int, np.ndarray] = {}
        cursor = 0
        current: list[_FrameLabels] = []
        samples: list[np.ndarray] = []
        max_pending = 4 * (self.fps or 30)
        connections = reader.connections_of(self.options.camera_topic)

        def finish_episode(number: int) -> None:
            if current:
                self._finish_episode(current, samples)
            current.clear()
            samples.clear()

        def emit(stamp: int, rgb: np.ndarray | None) -> None:
            nonlocal cursor
            number = episode_of[stamp]
            if current and episode_of[current[-1].stamp_ns] != number:
                finish_episode(number)
            if rgb is None:
                self.missing_colour += 1
            else:
                if self.image_hw is None:
                    self.image_hw = rgb.shape[:2]
                    if self.image_hw[0] % 2 or self.image_hw[1] % 2:
                        raise DataError(f"colour images are {self.image_hw[1]}x{self.image_hw[0]}; yuv420p video needs even sizes")
                elif rgb.shape[:2] != self.image_hw:
                    raise DataError(f"colour image of stamp {stamp} is {rgb.shape[1]}x{rgb.shape[0]}; the data set's video is "
                                    f"{self.image_hw[1]}x{self.image_hw[0]}")
                video = self._video()
                if not current:
                    self._episode_video_start = (self.video_file_number, video.frames)
                video.add(rgb)
                current.append(labels[stamp])
                samples.append(rgb)
            cursor += 1

        with tqdm(total=len(order), desc=f"video {reader.path.name}", unit="frame", disable=not self.progress, leave=False) as bar:
            for connection, _, data in reader.messages(connections):
                try:
                    msg = store.deserialize_cdr(data, connection.msgtype)
                except Exception:  # noqa: BLE001 - counted as lost
                    continue
                decoded[connection.topic] = decoded.get(connection.topic, 0) + 1
                stamp = m.stamp_to_ns(msg.header.stamp)
                if stamp not in wanted or stamp in pending:
                    continue
                try:
                    pending[stamp] = color_to_rgb(msg, connection.msgtype)
                except DataError:
                    continue
                while cursor < len(order) and (order[cursor] in pending or len(pending) > max_pending):
                    emit(order[cursor], pending.pop(order[cursor], None))
                    bar.update()
            while cursor < len(order):
                emit(order[cursor], pending.pop(order[cursor], None))
                bar.update()
        finish_episode(-1)

    def _finish_episode(self, frames: list[_FrameLabels], images: list[np.ndarray]) -> None:
        number = len(self.episode_rows)
        count = len(frames)
        if self.features is None:
            self.features = _features(self.image_hw, self.num_vertices, self.uv_size, self.fps, self.options.video_codec)
        columns = _episode_columns(frames, self.num_vertices, self.uv_size)
        frame_index = np.arange(count, dtype=np.int64)
        columns.update(
            timestamp=(frame_index / self.fps).astype(np.float32).reshape(count, 1),
            frame_index=frame_index.reshape(count, 1), episode_index=np.full((count, 1), number, np.int64),
            index=np.arange(self.total_frames, self.total_frames + count, dtype=np.int64).reshape(count, 1),
            task_index=np.zeros((count, 1), np.int64),
        )  # fmt: skip
        data_file = self.data_file
        self._write_frames(frame_table(columns, self.features))
        picks = np.round(np.linspace(0, count - 1, min(count, _VIDEO_STAT_SAMPLES))).astype(int)
        stats = {VIDEO_KEY: image_stats(np.stack([images[i] for i in picks]), count)}
        for key, feature in self.features.items():
            if feature["dtype"] != "video":
                stats[key] = feature_stats(columns[key])
        video_file, first_video_frame = self._episode_video_start
        row = {
            "episode_index": number, "tasks": [self.options.task], "length": count,
            "data/chunk_index": data_file // CHUNKS_SIZE, "data/file_index": data_file % CHUNKS_SIZE,
            "dataset_from_index": self.total_frames, "dataset_to_index": self.total_frames + count,
            f"videos/{VIDEO_KEY}/chunk_index": video_file // CHUNKS_SIZE, f"videos/{VIDEO_KEY}/file_index": video_file % CHUNKS_SIZE,
            f"videos/{VIDEO_KEY}/from_timestamp": first_video_frame / self.fps,
            f"videos/{VIDEO_KEY}/to_timestamp": (first_video_frame + count) / self.fps,
        }  # fmt: skip
        for key, values in stats.items():
            for name, value in values.items():
                row[f"stats/{key}/{name}"] = np.asarray(value)
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        self.episode_rows.append(row)
        self.episode_stats.append(stats)
        self.total_frames += count
        self._roll_files()

    def finish(self, bags: list[dict]) -> None:
        import pyarrow.parquet as pq

        self.close()
        if not self.episode_rows:
            raise DataError("no frame with a colour image could be exported")
        meta = self.root / "meta"
        (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(_episodes_table(self.episode_rows), self.root / EPISODES_PATH.format(chunk_index=0, file_index=0),
                       compression="snappy")
        pq.write_table(_tasks_table([self.options.task]), meta / "tasks.parquet")
        (meta / "stats.json").write_text(json.dumps(_jsonable(aggregate_stats(self.episode_stats)), indent=4) + "\n")
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": self.options.robot_type,
            "total_episodes": len(self.episode_rows), "total_frames": self.total_frames, "total_tasks": 1,
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB, "fps": self.fps,
            "splits": {"train": f"0:{len(self.episode_rows)}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
            "features": self.features,
        }  # fmt: skip
        (meta / "info.json").write_text(json.dumps(info, indent=4) + "\n")
        (self.root / "README.md").write_text(_dataset_card(info, self.options, bags, self.uv_layout_id))


def _dataset_card(info: dict, options: LeRobotExportOptions, bags: list[dict], uv_layout_id: str | None) -> str:
    lines = [
        "---", "task_categories:", "- robotics", "tags:", "- LeRobot", "- tactile", "- hand-pressure", "---", "",
        "# Hand-pressure demonstrations (EgoPress)", "",
        f"LeRobot dataset format {CODEBASE_VERSION}, written by `egopress export-lerobot` from rosbag2 recordings labelled",
        "with `egopress label-bag` (EgoPressDiff pressure on the hand mesh).", "",
        f"- episodes: {info['total_episodes']}, frames: {info['total_frames']}, fps: {info['fps']}",
        f"- task: {options.task!r}", f"- UV layout: {uv_layout_id}", "",
        "Units: pressure kPa, force N, area m², positions metres in the colour camera's optical frame",
        "(+x right, +y down, +z forward). Frames without a detected hand have `observation.hand.present = False`",
        "and zeros in every pressure and hand feature. `stamp_ns` is the source image's header stamp;",
        "`timestamp` is `frame_index / fps`.", "", "Sources:", "",
    ]  # fmt: skip
    lines.extend(f"- `{item['bag']}`: {item['episodes']} episode(s), {item['frames']} frames" for item in bags)
    lines.extend(["", "Features:", ""])
    lines.extend(f"- `{key}`: {value['dtype']} {tuple(value['shape'])}" for key, value in info["features"].items())
    return "\n".join(lines) + "\n"


def export_lerobot(bags: list[str | os.PathLike], out: str | os.PathLike, options: LeRobotExportOptions | None = None,
                   progress: bool = True, accept_loss: bool = False) -> ExportReport:
    """Writes the labelled ``bags`` as one LeRobot v3.0 dataset folder ``out`` (created
    atomically: written under a temporary name, renamed when complete).

    Every message of the topics the data set is made of (colour, hand mesh, contact, UV
    pressure) is accounted for per bag (:mod:`egopress_core.rosbag.accounting`): one that could
    not be read makes the export fail unless ``accept_loss``; the report lists them either way.

    Raises:
        DataError: an input is not a labelled bag, sizes differ between bags, or nothing to export.
        MessageLossError: input messages could not be read and the loss was not accepted.
    """
    options = options or LeRobotExportOptions()
    out = Path(out)
    if not bags:
        raise ConfigError("give at least one labelled bag")
    if out.exists():
        raise DataError(f"{out} exists already; choose another output folder")
    if not out.parent.is_dir():
        raise DataError(f"{out.parent}: the output's folder does not exist")
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    exporter = _Exporter(staging, options, progress, accept_loss)
    try:
        summaries = [exporter.add_bag(Path(bag)) for bag in bags]
        exporter.finish(summaries)
        os.replace(staging, out)
    except BaseException:
        exporter.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportReport(output=str(out), episodes=len(exporter.episode_rows), frames=exporter.total_frames, fps=exporter.fps,
                        image_size=tuple(exporter.image_hw), uv_size=tuple(exporter.uv_size), num_vertices=exporter.num_vertices,
                        frames_without_colour=exporter.missing_colour, bags=summaries)
