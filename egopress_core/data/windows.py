"""Fixed-length clip windows over any :class:`~egopress_core.data.records.SequenceSource`.

:class:`ClipWindowDataset` cuts every sequence into windows of ``window`` frames every
``stride`` frames and turns each into model-resolution tensors (``T = window``)::

    rgb              (T, 3, H, W)     float32 in [0, 1]
    depth_m          (T, 1, H, W)     float32 metres, 0 = no reading
    intrinsics       (T, 3, 3)        float32, K of the cropped and resized images
    joints           (T, 21, 3)       float32 metres, colour camera frame
    vertices         (T, V, 3)        float32 metres, colour camera frame
    uv_pressure_kpa  (T, 1, Hu, Wu)   float32 kPa
    valid            (T,)             bool: frame has hand annotation and UV pressure
    frame_index      (T,)             int64 positions in the sequence
    sequence, hand_side, uv_layout (str), start (int)

Frames without annotation have ``valid = False`` and zeros in joints, vertices and UV pressure.
Pose maps, the UV hand mask (a property of ``uv_layout``) and other conditions are made
model-side from these tensors. Sources mixed in one batch must share the hand model (V).

Design choices:

- The window index is built from sequence lengths alone. Sources that also offer
  ``annotation_flags() -> (N,) bool`` (cheap metadata, e.g. one parquet column) let the index
  drop windows with fewer than ``min_valid_frames`` annotated frames; sources without it are
  indexed as if every frame were annotated and the ``valid`` mask tells at read time.
- One crop box per window (temporal consistency): ``crop="full"`` takes the largest centred box
  with the output aspect ratio; ``crop="hand"`` a box around the hand's projected vertices
  (joints if no vertices) over the window's valid frames, enlarged by ``hand_margin`` on each
  side, never smaller than ``min_crop_fraction`` of the image's short side, falling back to the
  full box when no frame is valid. Parts of the box outside the image are zero (RGB black,
  depth hole). The intrinsics follow exactly: ``K' = A @ K`` with
  ``A = [[sx, 0, sx/2 - 1/2 - sx x0], [0, sy, sy/2 - 1/2 - sy y0], [0, 0, 1]]`` (pixel-centred
  coordinates, box corner ``(x0, y0)``, scale ``s = output / box`` per axis).
- RGB is resized bilinearly with antialiasing. Depth is resized with ``depth_resize="min"``
  (default: each output pixel takes the nearest valid surface in its footprint, as a z-buffer
  would; it is a hole only if its whole footprint is) or ``"nearest"`` (one sample per output
  pixel; holes keep their proportion). Averaging depth would invent surfaces between the hand and
  the pad and blend holes (0) into valid readings, so neither mode averages.
- UV pressure is resized by exact area averaging (:func:`area_resize`): every output texel is
  the area-weighted mean of the input texels it overlaps, so the mean pressure (force per UV
  area) is preserved for any size ratio.
- Augmentation (:class:`AugmentConfig`) keeps geometry consistent: colour jitter shared by the
  window's frames, depth noise growing with z^2 and random holes per frame, and crop jitter whose
  box change is carried into the intrinsics. No flips: a mirrored image is the other hand.
  Random draws are seeded by ``(seed, epoch, item)``, so runs are reproducible with any number of
  ``DataLoader`` workers; call :meth:`ClipWindowDataset.set_epoch` to vary them per epoch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from egopress_core.data.records import FrameRecord, SequenceSource
from egopress_core.errors import ConfigError, DataError
from egopress_core.files import write_json_atomic
from egopress_core.options import CROP_MODES, DEPTH_RESIZE_MODES
from egopress_core.preprocessing import crop_extent, preprocess_frame, project_edge_coordinates, round_box

NUM_JOINTS = 21
STATISTICS_VERSION = 1


# ----------------------------------------------------------------------------- configuration


def _check_fraction(name: str, value: float, upper: float = 1.0) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < upper:
        raise ConfigError(f"{name} must be a number in [0, {upper:g}). Got {value!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Geometry-consistent augmentation for training windows (all zero = off).

    Attributes:
        brightness, contrast, saturation: maximum relative change, drawn once per window.
        depth_noise_m_at_1m: standard deviation of depth noise at 1 m; it grows with z^2 like a
            time-of-flight sensor's (0.0015 is about Azure Kinect's).
        depth_dropout: probability that a valid depth pixel becomes a hole, per frame.
        crop_shift: maximum shift of the crop centre, as a fraction of the crop side.
        crop_scale: maximum relative change of the crop side.
    """

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    depth_noise_m_at_1m: float = 0.0015
    depth_dropout: float = 0.01
    crop_shift: float = 0.05
    crop_scale: float = 0.1

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation", "depth_dropout", "crop_shift",
                     "crop_scale"):
            _check_fraction(name, getattr(self, name))
        value = self.depth_noise_m_at_1m
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 0.1:
            raise ConfigError(f"depth_noise_m_at_1m must be a number in [0, 0.1]. Got {value!r}")


def _size_pair(name: str, value: Any) -> tuple[int, int]:
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a (height, width) pair of ints. Got {value!r}") from None
    if len(pair) != 2 or min(pair) < 1 or any(int(v) != v for v in value):
        raise ConfigError(f"{name} must be a (height, width) pair of positive ints. Got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class WindowConfig:
    """How sequences are cut into windows and brought to model resolution.

    Attributes:
        window: frames per window (T).
        stride: frames between the starts of consecutive windows.
        image_size: (H, W) of rgb and depth.
        uv_size: (Hu, Wu) of the UV pressure maps.
        crop: ``"hand"`` or ``"full"`` (see the module docstring).
        hand_margin: added on each side of the hand box, as a fraction of its larger side.
        min_crop_fraction: smallest hand crop side, as a fraction of the image's short side.
        depth_resize: ``"min"`` or ``"nearest"``.
        skip_invalid: drop windows with too few annotated frames when building the index (for
            sources that offer ``annotation_flags``).
        min_valid_frames: the "too few" above.
        cover_tail: add a last window ending at the sequence's last frame when the stride
            leaves frames uncovered (evaluation wants every frame).
        augment: augmentation, or None for none.
        seed: seed of the augmentation draws.
    """

    window: int = 16
    stride: int = 8
    image_size: tuple[int, int] = (64, 64)
    uv_size: tuple[int, int] = (32, 32)
    crop: str = "hand"
    hand_margin: float = 0.3
    min_crop_fraction: float = 0.1
    depth_resize: str = "min"
    skip_invalid: bool = True
    min_valid_frames: int = 1
    cover_tail: bool = False
    augment: AugmentConfig | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("window", "stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1. Got {value!r}")
        object.__setattr__(self, "image_size", _size_pair("image_size", self.image_size))
        object.__setattr__(self, "uv_size", _size_pair("uv_size", self.uv_size))
        if self.crop not in CROP_MODES:
            raise ConfigError(f"crop must be one of {CROP_MODES}. Got {self.crop!r}")
        if self.depth_resize not in DEPTH_RESIZE_MODES:
            raise ConfigError(f"depth_resize must be one of {DEPTH_RESIZE_MODES}. "
                              f"Got {self.depth_resize!r}")
        if not isinstance(self.hand_margin, (int, float)) or not 0.0 <= self.hand_margin <= 5.0:
            raise ConfigError(f"hand_margin must be a number in [0, 5]. Got {self.hand_margin!r}")
        value = self.min_crop_fraction
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"min_crop_fraction must be a number in [0, 1]. Got {value!r}")
        value = self.min_valid_frames
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= self.window:
            raise ConfigError(f"min_valid_frames must be an int in [0, window={self.window}]. "
                              f"Got {value!r}")
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig(**self.augment))
        if self.augment is not None and not isinstance(self.augment, AugmentConfig):
            raise ConfigError(f"augment must be an AugmentConfig, a dict or None. "
                              f"Got {type(self.augment).__name__}")
        if not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an int. Got {self.seed!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "WindowConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown WindowConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


# ----------------------------------------------------------------------------- resizing


@lru_cache(maxsize=64)
def _area_weights(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) overlap of output bins with input pixels, divided by the bin width."""
    edges = np.arange(size_out + 1, dtype=np.float64) * size_in / size_out
    pixels = np.arange(size_in, dtype=np.float64)[None, :]
    overlap = np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels)
    return torch.from_numpy(np.clip(overlap, 0.0, None) * size_out / size_in)


def area_resize(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Exact area-weighted resampling: the mean over the image is preserved for any ratio.

    Args:
        values: (..., H, W) float tensor.
        size: (Ho, Wo).
    Returns:
        (..., Ho, Wo) tensor of the same dtype.
    """
    rows = _area_weights(values.shape[-2], size[0]).to(values.dtype)
    cols = _area_weights(values.shape[-1], size[1]).to(values.dtype)
    return rows @ values @ cols.T


def window_starts(length: int, window: int, stride: int, cover_tail: bool = False) -> np.ndarray:
    """Start positions of the windows of one sequence (no frame is read).

    Returns:
        (K,) int64: ``0, stride, 2 stride, ...`` while a whole window fits; with ``cover_tail``
        also ``length - window`` if the last frames would otherwise be left out.
    """
    if length < window:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, length - window + 1, stride, dtype=np.int64)
    if cover_tail and starts[-1] + window < length:
        starts = np.append(starts, length - window)
    return starts


def frame_is_valid(record: FrameRecord) -> bool:
    """A frame can supervise the model: annotated, with hand geometry and UV pressure."""
    return bool(record.has_annotation and record.vertices is not None
                and record.joints is not None and record.uv_pressure_kpa is not None)


# ----------------------------------------------------------------------------- dataset


class ClipWindowDataset(Dataset):
    """Windows of ``window`` frames from one or more sources, as model-resolution tensors.

    Args:
        sources: sequences (:class:`SequenceSource`), or an object with ``sequences()``.
        config: a :class:`WindowConfig`; keyword arguments override its fields (or build one:
            ``ClipWindowDataset(seqs, window=16, stride=8, crop="hand")``).

    Attributes:
        report: counts from building the index: sequences, too short, windows kept, windows
            skipped for too few annotated frames.
    """

    def __init__(self, sources: Sequence[SequenceSource] | Any, config: WindowConfig | None = None,
                 **overrides: Any):
        if hasattr(sources, "sequences") and callable(sources.sequences):
            sources = sources.sequences()
        self.sources = list(sources)
        if not self.sources:
            raise ConfigError("sources must hold at least one sequence. Got none")
        for position, source in enumerate(self.sources):
            for attribute in ("frame", "__len__"):
                if not hasattr(source, attribute):
                    raise ConfigError(f"sources[{position}] ({type(source).__name__}) is not a "
                                      f"SequenceSource: it has no {attribute}")
        if config is None:
            config = WindowConfig(**overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self._epoch = 0
        self._vertex_counts: dict[int, int] = {}
        self._index, self.report = self._build_index()

    def _build_index(self) -> tuple[np.ndarray, dict[str, int]]:
        cfg = self.config
        rows = []
        report = {"sequences": len(self.sources), "too_short": 0, "windows": 0,
                  "skipped_invalid": 0}
        for position, source in enumerate(self.sources):
            length = len(source)
            starts = window_starts(length, cfg.window, cfg.stride, cfg.cover_tail)
            if starts.size == 0:
                report["too_short"] += 1
                continue
            flags_of = getattr(source, "annotation_flags", None)
            if cfg.skip_invalid and callable(flags_of):
                flags = np.asarray(flags_of(), dtype=bool)
                if flags.shape != (length,):
                    raise DataError(f"{getattr(source, 'name', position)}: annotation_flags() "
                                    f"has shape {flags.shape}, expected ({length},)")
                per_window = np.convolve(flags.astype(np.int64), np.ones(cfg.window, np.int64),
                                         mode="valid")[starts]
                keep = per_window >= cfg.min_valid_frames
                report["skipped_invalid"] += int((~keep).sum())
                starts = starts[keep]
            rows.extend((position, int(start)) for start in starts)
        report["windows"] = len(rows)
        index = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        return index, report

    def __len__(self) -> int:
        return int(self._index.shape[0])

    @property
    def window_index(self) -> np.ndarray:
        """(N, 2) int64 rows of (source position, start frame)."""
        return self._index.copy()

    def set_epoch(self, epoch: int) -> None:
        """Vary the augmentation draws per epoch (each worker holds a copy: call before
        creating the ``DataLoader`` iterator, or use ``persistent_workers=False``)."""
        self._epoch = int(epoch)

    def without_augmentation(self) -> "ClipWindowDataset":
        """A copy with the same windows and no augmentation (for statistics, evaluation)."""
        clone = object.__new__(ClipWindowDataset)
        clone.__dict__.update(self.__dict__)
        clone.config = dataclasses.replace(self.config, augment=None)
        clone._vertex_counts = dict(self._vertex_counts)
        return clone

    # -- items ------------------------------------------------------------------------------

    def __getitem__(self, item: int) -> dict[str, Any]:
        if not -len(self) <= item < len(self):
            raise IndexError(f"window {item} out of range [0, {len(self)})")
        item = item % len(self)
        cfg = self.config
        position, start = (int(v) for v in self._index[item])
        source = self.sources[position]
        records = [source.frame(start + t) for t in range(cfg.window)]
        valid = [frame_is_valid(r) for r in records]
        rng = (np.random.default_rng([cfg.seed, self._epoch, item])
               if cfg.augment is not None else None)
        box = self._crop_box(records, valid, rng)

        rgb, depth, intrinsics = [], [], []
        for record in records:
            inputs = preprocess_frame(record.rgb, record.depth_m, record.intrinsics, box, cfg.image_size,
                                      cfg.depth_resize)
            rgb.append(inputs.rgb)
            depth.append(inputs.depth_m)
            intrinsics.append(inputs.intrinsics)
        rgb_t = torch.stack(rgb)
        depth_t = torch.stack(depth)

        num_vertices = self._num_vertices(position, records, valid)
        joints = torch.zeros(cfg.window, NUM_JOINTS, 3)
        vertices = torch.zeros(cfg.window, num_vertices, 3)
        uv = torch.zeros(cfg.window, 1, *cfg.uv_size)
        for t, (record, ok) in enumerate(zip(records, valid)):
            if not ok:
                continue
            joints[t] = torch.from_numpy(np.array(record.joints, dtype=np.float32))
            if record.vertices.shape[0] != num_vertices:
                raise DataError(f"{record.sequence}: frame {record.index} has "
                                f"{record.vertices.shape[0]} vertices, the window expects "
                                f"{num_vertices}")
            vertices[t] = torch.from_numpy(np.array(record.vertices, dtype=np.float32))
            uv_map = torch.from_numpy(np.array(record.uv_pressure_kpa, dtype=np.float32))
            uv[t, 0] = area_resize(uv_map, cfg.uv_size)

        if rng is not None:
            rgb_t = _jitter_colour(rgb_t, cfg.augment, rng)
            depth_t = _corrupt_depth(depth_t, cfg.augment, rng)

        return {
            "rgb": rgb_t,
            "depth_m": depth_t,
            "intrinsics": torch.stack(intrinsics),
            "joints": joints,
            "vertices": vertices,
            "uv_pressure_kpa": uv,
            "valid": torch.tensor(valid, dtype=torch.bool),
            "frame_index": torch.arange(start, start + cfg.window, dtype=torch.int64),
            "sequence": str(getattr(source, "name", records[0].sequence)),
            "hand_side": records[0].hand_side,
            "uv_layout": str(getattr(source, "uv_layout", "")),
            "start": start,
        }

    def _num_vertices(self, position: int, records: list[FrameRecord], valid: list[bool]) -> int:
        """Vertex count of a source's hand model, so windows without valid frames still stack."""
        if position not in self._vertex_counts:
            count = next((r.vertices.shape[0] for r, ok in zip(records, valid) if ok), None)
            if count is None:
                count = getattr(self.sources[position], "num_vertices", None)
            if count is None:  # rare: scan the sequence for any annotated frame
                source = self.sources[position]
                for index in range(len(source)):
                    record = source.frame(index)
                    if frame_is_valid(record):
                        count = record.vertices.shape[0]
                        break
            if count is None:
                raise DataError(f"{getattr(self.sources[position], 'name', position)}: no "
                                "annotated frame, cannot tell the hand model's vertex count")
            self._vertex_counts[position] = int(count)
        return self._vertex_counts[position]

    def _crop_box(self, records: list[FrameRecord], valid: list[bool],
                  rng: np.random.Generator | None) -> tuple[int, int, int, int]:
        """(x0, y0, w, h) integer crop box in pixels of the window's first frame: one box for the
        whole window (:func:`~egopress_core.preprocessing.crop_box`), jittered when augmenting."""
        cfg = self.config
        image_hw = np.asarray(records[0].rgb).shape[:2]
        points = None
        if cfg.crop == "hand":
            projected = [project_edge_coordinates(r.vertices if r.vertices is not None else r.joints, r.intrinsics)
                         for r, ok in zip(records, valid) if ok]
            projected = [p for p in projected if len(p)]
            points = np.concatenate(projected) if projected else None
        centre, box_w, box_h = crop_extent(image_hw, cfg.image_size, points, cfg.hand_margin, cfg.min_crop_fraction)
        if rng is not None:
            augment = cfg.augment
            side = max(box_w, box_h)
            centre = centre + rng.uniform(-1.0, 1.0, size=2) * augment.crop_shift * side
            scale = 1.0 + rng.uniform(-1.0, 1.0) * augment.crop_scale
            box_w, box_h = box_w * scale, box_h * scale
        return round_box(centre, box_w, box_h)


def _jitter_colour(rgb: torch.Tensor, augment: AugmentConfig, rng: np.random.Generator
                   ) -> torch.Tensor:
    """Brightness, contrast and saturation, one draw for the whole window. rgb: (T, 3, H, W)."""
    brightness, contrast, saturation = 1.0 + rng.uniform(-1.0, 1.0, size=3) * np.array(
        [augment.brightness, augment.contrast, augment.saturation])
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    rgb = rgb * float(brightness)
    grey = (rgb * luma).sum(dim=1, keepdim=True)
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    rgb = (rgb - mean) * float(contrast) + mean
    grey = (rgb * luma).sum(dim=1, keepdim=True)
    rgb = grey + (rgb - grey) * float(saturation)
    return rgb.clamp(0.0, 1.0)


def _corrupt_depth(depth: torch.Tensor, augment: AugmentConfig, rng: np.random.Generator
                   ) -> torch.Tensor:
    """Sensor-like noise (sigma = k z^2) and random holes, per frame. depth: (T, 1, H, W)."""
    values = depth.numpy().astype(np.float64)
    valid = values > 0
    noise = rng.standard_normal(values.shape) * augment.depth_noise_m_at_1m * values**2
    dropped = rng.random(values.shape) < augment.depth_dropout
    noisy = np.where(valid & ~dropped, np.clip(values + noise, 1e-4, None), 0.0)
    return torch.from_numpy(noisy.astype(np.float32))


# ----------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class DataStatistics:
    """Depth and pressure statistics of a training set, for the model's normaliser.

    Means, standard deviations, extremes and fractions are exact; percentiles come from a
    uniform random subsample of the values (``samples_per_frame`` per frame). Depth statistics
    cover valid (non-zero) depth pixels at model resolution; pressure statistics cover the UV
    texels of valid frames, percentiles only the texels with pressure > 0.
    """

    num_windows: int
    num_frames: int
    num_valid_frames: int
    image_size: tuple[int, int]
    uv_size: tuple[int, int]
    depth_valid_fraction: float
    depth_mean_m: float
    depth_std_m: float
    depth_min_m: float
    depth_max_m: float
    depth_percentiles_m: dict[str, float]
    pressure_mean_kpa: float
    pressure_max_kpa: float
    pressure_positive_fraction: float
    contact_fraction: float
    contact_threshold_kpa: float
    pressure_percentiles_kpa: dict[str, float]
    version: int = STATISTICS_VERSION
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "statistics") -> "DataStatistics":
        if not isinstance(values, dict):
            raise DataError(f"{source}: expected a JSON object of statistics")
        if values.get("version") != STATISTICS_VERSION:
            raise DataError(f"{source}: statistics version {values.get('version')!r} is not "
                            f"the supported {STATISTICS_VERSION}")
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in values]
        if missing:
            raise DataError(f"{source}: missing statistics field(s) {missing}")
        kwargs = {n: values[n] for n in names if n in values}
        kwargs["image_size"] = tuple(kwargs["image_size"])
        kwargs["uv_size"] = tuple(kwargs["uv_size"])
        return cls(**kwargs)

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically (temporary file, then rename)."""
        return write_json_atomic(path, self.to_dict(), sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DataStatistics":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: statistics file is missing")
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: not a readable JSON file ({error})") from error
        return cls.from_dict(values, source=str(path))


PERCENTILES = (1.0, 5.0, 50.0, 95.0, 99.0, 99.9)


def compute_statistics(
    dataset: ClipWindowDataset,
    max_windows: int | None = None,
    samples_per_frame: int = 2048,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
) -> DataStatistics:
    """Depth and pressure statistics over a window dataset (each frame counted once).

    Augmentation is switched off for the pass. Overlapping windows share frames; a frame is
    counted the first time it is seen.

    Args:
        dataset: the windows to summarise.
        max_windows: use a random subset of this many windows (None: all).
        samples_per_frame: values per frame kept for the percentiles.
        seed: seed of the window subset and the percentile subsample.
        num_workers: ``DataLoader`` workers reading the windows.
        progress: show a progress bar.
    """
    from tqdm import tqdm

    from egopress_core.metrics import DEFAULT_CONTACT_THRESHOLD_KPA

    plain = dataset.without_augmentation()
    rng = np.random.default_rng(seed)
    indices = np.arange(len(plain))
    if max_windows is not None and max_windows < len(indices):
        indices = np.sort(rng.choice(indices, size=max_windows, replace=False))
    if indices.size == 0:
        raise DataError("compute_statistics: the dataset has no windows")
    loader = torch.utils.data.DataLoader(plain, batch_size=None, sampler=indices.tolist(),
                                         num_workers=num_workers)
    seen: set[tuple[int, int]] = set()
    window_rows = plain.window_index
    depth_sum = depth_sq = 0.0
    depth_count = depth_pixels = 0
    depth_min, depth_max = math.inf, -math.inf
    pressure_sum = 0.0
    pressure_count = positive_count = contact_count = 0
    pressure_max = 0.0
    frames = valid_frames = 0
    depth_samples: list[np.ndarray] = []
    pressure_samples: list[np.ndarray] = []
    for window_number, item in zip(indices, tqdm(loader, total=len(indices), disable=not progress,
                                                 desc="statistics", unit="window")):
        position = int(window_rows[window_number, 0])
        for t, frame_index in enumerate(item["frame_index"].tolist()):
            if (position, frame_index) in seen:
                continue
            seen.add((position, frame_index))
            frames += 1
            depth = item["depth_m"][t].numpy().astype(np.float64).ravel()
            depth_pixels += depth.size
            depth = depth[depth > 0]
            if depth.size:
                depth_sum += depth.sum()
                depth_sq += np.square(depth).sum()
                depth_count += depth.size
                depth_min, depth_max = min(depth_min, depth.min()), max(depth_max, depth.max())
                depth_samples.append(rng.choice(depth, size=min(samples_per_frame, depth.size),
                                                replace=False))
            if not bool(item["valid"][t]):
                continue
            valid_frames += 1
            pressure = item["uv_pressure_kpa"][t].numpy().astype(np.float64).ravel()
            pressure_sum += pressure.sum()
            pressure_count += pressure.size
            pressure_max = max(pressure_max, float(pressure.max()))
            contact_count += int((pressure > DEFAULT_CONTACT_THRESHOLD_KPA).sum())
            positive = pressure[pressure > 0]
            positive_count += positive.size
            if positive.size:
                pressure_samples.append(rng.choice(positive, size=min(samples_per_frame,
                                                                      positive.size),
                                                   replace=False))

    def percentiles(samples: list[np.ndarray]) -> dict[str, float]:
        if not samples:
            return {f"{p:g}": 0.0 for p in PERCENTILES}
        values = np.percentile(np.concatenate(samples), PERCENTILES)
        return {f"{p:g}": float(v) for p, v in zip(PERCENTILES, values)}

    depth_mean = depth_sum / depth_count if depth_count else 0.0
    depth_var = max(depth_sq / depth_count - depth_mean**2, 0.0) if depth_count else 0.0
    cfg = plain.config
    return DataStatistics(
        num_windows=int(indices.size),
        num_frames=frames,
        num_valid_frames=valid_frames,
        image_size=tuple(cfg.image_size),
        uv_size=tuple(cfg.uv_size),
        depth_valid_fraction=depth_count / depth_pixels if depth_pixels else 0.0,
        depth_mean_m=float(depth_mean),
        depth_std_m=float(math.sqrt(depth_var)),
        depth_min_m=float(depth_min) if depth_count else 0.0,
        depth_max_m=float(depth_max) if depth_count else 0.0,
        depth_percentiles_m=percentiles(depth_samples),
        pressure_mean_kpa=pressure_sum / pressure_count if pressure_count else 0.0,
        pressure_max_kpa=float(pressure_max),
        pressure_positive_fraction=positive_count / pressure_count if pressure_count else 0.0,
        contact_fraction=contact_count / pressure_count if pressure_count else 0.0,
        contact_threshold_kpa=float(DEFAULT_CONTACT_THRESHOLD_KPA),
        pressure_percentiles_kpa=percentiles(pressure_samples),
        extra=json.loads(json.dumps({"window_config": cfg.to_dict()})),  # JSON-normal form
    )
