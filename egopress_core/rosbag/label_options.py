"""What a bag labelling run is asked to do: :class:`LabelOptions` (the ``egopress label-bag``
options) and where its outputs go. Kept apart from the run (:mod:`egopress_core.rosbag.labeller`) so
that the command line reads it without loading the labeller."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from egopress_core.errors import ConfigError
from egopress_core.options import (
    OFFLINE_SAMPLING,
    ContactOptions,
    CropOptions,
    RuntimeOptions,
    SamplingOptions,
    StreamOptions,
)
from egopress_core.rosbag.index import TopicSelection

# Hand-mesh estimators a bag can be labelled with.
BACKENDS = ("ground_truth", "keypoints", "mediapipe")
OUTPUT_TOPICS = {
    "hand_mesh": "hand_mesh",
    "uv_pressure": "uv_pressure",
    "hand_contact": "hand_contact",
    "image": "uv_pressure/image",
    "image_raw": "uv_pressure/image_raw",
    "points": "hand_contact/points",
}
MIRRORS = ("image", "image_raw", "points")



def work_dir_for(output: str | os.PathLike) -> Path:
    """The work folder of a labelling run writing ``output``: results per batch, the bag being written."""
    output = Path(output)
    return output.parent / f".{output.name}.labelling"


def report_path_for(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.parent / f"{output.name}.report.json"


def _positive_number(name: str, value: Any, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number. Got {value!r}")


def _optional_int(name: str, value: Any, minimum: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ConfigError(f"{name} must be an integer >= {minimum} or None. Got {value!r}")


@dataclass(frozen=True)
class LabelOptions:
    """How a bag is labelled (the ``egopress label-bag`` options).

    Attributes:
        checkpoint: checkpoint folder of either model kind; None: the package's default
            (:data:`~egopress_core.assets.DEFAULT_CHECKPOINT`).
        backend: hand-mesh estimator, one of ``BACKENDS``. ``ground_truth`` reads ``topics.hand_mesh``,
            ``keypoints`` fits to ``topics.keypoints``, ``mediapipe`` detects in the colour image.
        topics: input topics.
        hand_model_path: MANO-format hand of the estimator (default: the checkpoint's hand).
        depth_refinement, min_hand_confidence: keypoint-fitting options (keypoints, mediapipe).
        sampling: the offline sampler (stride, window batching; the seed is offset by the batch
            number).
        runtime: device, precision, channels-last, compile.
        crop: model input crop, as the live node.
        contact: per-vertex contact threshold.
        chunk_frames: frames per chunk (None: 8 model windows).
        context_frames: context on each side of a chunk (None: half a window).
        batch_size: chunks of equal length per model call.
        sync_slop_s: largest stamp difference of frames matched across topics.
        max_gap_s: a longer stamp jump starts a new segment (as it restarts a live stream's window).
        namespace: prefix of the output topics.
        mirrors: also write the visualisation mirrors (UV images, point cloud).
        visualization_max_kpa, colormap: colour scale of ``uv_pressure/image``.
        storage: output storage, "sqlite3" or "mcap" (None: as the input).
        compression: output compression: "none", "message", "file" or "storage" (mcap chunks).
        bag_version: rosbag2 metadata version of the output, 8 or 9.
    """

    checkpoint: str | None = None
    backend: str = "mediapipe"
    topics: TopicSelection = field(default_factory=TopicSelection)
    hand_model_path: str | None = None
    depth_refinement: bool = False
    min_hand_confidence: float = 0.25
    sampling: SamplingOptions = OFFLINE_SAMPLING
    runtime: RuntimeOptions = RuntimeOptions()
    crop: CropOptions = CropOptions()
    contact: ContactOptions = ContactOptions()
    chunk_frames: int | None = None
    context_frames: int | None = None
    batch_size: int = 1
    sync_slop_s: float = 0.02
    max_gap_s: float = StreamOptions().max_gap_s
    namespace: str = "/egopress"
    mirrors: bool = True
    visualization_max_kpa: float = 50.0
    colormap: str = "inferno"
    storage: str | None = None
    compression: str = "none"
    bag_version: int = 8

    def __post_init__(self) -> None:
        from egopress_core.rosbag.writer import check_output_options

        for name, cls in (("sampling", SamplingOptions), ("runtime", RuntimeOptions), ("crop", CropOptions),
                          ("contact", ContactOptions)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"LabelOptions.{name} must be a {cls.__name__}. Got {type(getattr(self, name)).__name__}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}. Got {self.backend!r}")
        if self.backend == "ground_truth" and not self.topics.hand_mesh:
            raise ConfigError("the ground_truth backend reads hand meshes from a HandMesh topic: set the hand-mesh topic")
        if self.backend == "keypoints" and not self.topics.keypoints:
            raise ConfigError("the keypoints backend reads 21 keypoints per frame from a PointCloud2 topic: set the keypoints topic")
        _optional_int("chunk_frames", self.chunk_frames, 1)
        _optional_int("context_frames", self.context_frames, 0)
        if self.batch_size is None:
            raise ConfigError("batch_size must be an integer >= 1. Got None")
        _optional_int("batch_size", self.batch_size, 1)
        for name in ("sync_slop_s", "max_gap_s", "visualization_max_kpa"):
            _positive_number(name, getattr(self, name))
        _positive_number("min_hand_confidence", self.min_hand_confidence, allow_zero=True)
        if self.min_hand_confidence > 1:
            raise ConfigError(f"min_hand_confidence must be in [0, 1]. Got {self.min_hand_confidence!r}")
        if not isinstance(self.namespace, str) or not self.namespace.startswith("/") or (
            self.namespace.endswith("/") and self.namespace != "/"
        ):
            raise ConfigError(f"namespace must be an absolute ROS name like '/egopress'. Got {self.namespace!r}")
        from matplotlib import colormaps

        if self.colormap not in colormaps:
            raise ConfigError(f"colormap must be a matplotlib colour map name. Got {self.colormap!r}")
        check_output_options(self.storage or "mcap", self.compression, self.bag_version)
        if self.compression == "storage" and self.storage not in (None, "mcap"):
            raise ConfigError("compression 'storage' (zstd mcap chunks) needs storage 'mcap'")

    def output_topic(self, key: str) -> str:
        return ("" if self.namespace == "/" else self.namespace) + "/" + OUTPUT_TOPICS[key]

    def output_topics(self) -> dict[str, str]:
        keys = [k for k in OUTPUT_TOPICS if self.mirrors or k not in MIRRORS]
        return {key: self.output_topic(key) for key in keys}

    def to_dict(self) -> dict:
        return asdict(self)
