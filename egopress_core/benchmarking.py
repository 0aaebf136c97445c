"""Speed of EgoPressDiff inference, and what the fast settings cost in quality (`egopress bench`).

What is measured, on held-out synthetic sequences (``egopress demo``'s seed range, generated
on the fly unless ``data`` names a folder):

- **U-Net forward**: one bare ``model.predict`` on one window (B = 1, T frames). It is the
  yardstick: it is timed again right before every measurement below, and the ratios to that
  local value (``*_in_unet_forwards``) stay meaningful on a shared, noisy machine when the
  absolute times do not. Process CPU time (``cpu_s``) is reported too: with one torch thread it
  is the work done, whatever the machine's load.
- **Sampling** (per scheduler and step count): one window from noise: encoders, the sampler loop
  (U-Net plus scheduler arithmetic), decoding; seconds per denoising step.
- **Streaming** (per setting): the live path frame by frame, exactly as the pressure node runs it:
  hand-mesh estimation (``hand_backend``: the keypoints backend fitting the hand model to the
  frame's 3-D joints, or the annotated mesh), crop and resize
  (:class:`~egopress_core.live.LivePressureEstimator`), the
  :class:`~egopress_core.inference.StreamingPressureEstimator` stages (conditions, per-frame
  encoders, window encoder, sampler, decoding), per-vertex contact, and the numpy side of the
  ROS messages (the library never imports rclpy; ``benchmarks/speed.py --ros`` times the real
  message construction). Per-frame means per stage, frames per second, and each stage's share.
  Settings: every scheduler x step count warm-started, the live node's previous defaults ("before"),
  and variants of the headline setting: no warm start, no feature cache, other precisions,
  channels-last, ``torch.compile``.
- **Offline throughput** (``egopress eval``, ``egopress label-bag``): whole held-out sequences in
  overlapping windows with :class:`~egopress_core.evaluation.EvalOptions`' sampler, by the number
  of windows denoised together (``window_batch_sizes``).
- **Memory**: peak resident set size of the process, and on CUDA the peak allocated per setting.
- **Quality**: Volumetric / Contact IoU and MAE (:mod:`egopress_core.metrics`) of each fast setting
  against the full-step reference (DDIM, ``reference_steps``), offline through
  :func:`~egopress_core.evaluation.estimate_sequence_pressure` and streaming through the live
  estimator, on the same preprocessed held-out windows as ``egopress eval``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import json
import math
import os
import platform
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from egopress_core.errors import CheckpointError, ConfigError, DataError
from egopress_core.inference import COMPILE_MODES
from egopress_core.metrics import DEFAULT_CONTACT_THRESHOLD_KPA

REPORT_VERSION = 1
# Hand-mesh stage of the streaming rows: the live default (a fit to the frame's 3-D keypoints),
# or the record's annotated mesh, which leaves the pressure node's own cost (as when the hand-mesh
# node runs in its own process) and needs no open3d.
HAND_BACKENDS = ("keypoints", "ground_truth")
# torch.compile traces on the first call of each input shape, and with CUDA graphs records them
# on later calls (the cold window and the warm-started ones differ): a compiled setting is timed
# only once those calls are behind it.
COMPILED_EXTRA_WARMUP_FRAMES = 4


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer. Got {value!r}")
    return value


@dataclass(frozen=True)
class BenchOptions:
    """What `egopress bench` runs.

    Attributes:
        checkpoint: EgoPressDiff checkpoint folder; or
        config: a model preset ("tiny", "compact", "paper") built untrained with ``seed``: speed
            only, its quality figures are meaningless. Exactly one of the two.
        device: "cpu", "cuda", "cuda:1", ...
        schedulers, steps: the sampler grid (every scheduler at every step count).
        headline: (scheduler, steps) of the streaming setting that is profiled by component, varied
            (no warm start, no cache, precisions, ...) and scored for streaming quality; added
            to the grid's rows if it is not one of them. The default is the fastest setting that
            kept the full-step quality in ``benchmarks/speed.md``.
        warm_start_strength: warm start of the streaming settings (fraction of the steps re-run).
        warmup_frames, stream_frames: streaming frames pushed before measuring / measured
            (compiled settings get :data:`COMPILED_EXTRA_WARMUP_FRAMES` more).
        hand_backend: hand-mesh estimation of the streaming rows, one of :data:`HAND_BACKENDS`.
        unet_repeats, sampling_repeats: repetitions of the bare U-Net forward / of each window.
        precisions: streaming precisions to compare ("fp32", "fp16", "bf16"); None: fp32 on a CPU,
            every one the GPU supports on CUDA.
        channels_last, compile: also measure these variants (None: on CUDA only).
        compile_mode: ``torch.compile`` mode of the compile variant ("default", "reduce-overhead":
            CUDA graphs, "max-autotune").
        window_batch_sizes: offline throughput is timed at each of these numbers of windows
            denoised together (None: 1 on a CPU, where batching only adds work; 1, 4, 8 on CUDA).
        threads: torch intra-op threads (None: torch's default).
        profile: profile one U-Net forward by operator (:func:`unet_operator_profile`).
        quality: run the quality check.
        quality_sequences, quality_frames: held-out sequences scored, frames per sequence.
        reference_scheduler, reference_steps: the full-step setting the fast ones are held to.
        quality_streaming_steps: step counts of the headline scheduler whose streaming quality
            is scored (None: the headline's).
        streaming_reference: also stream the reference setting from noise every frame (no warm
            start): the causal full-step yardstick of the streaming rows, which see no future
            frames while the offline reference does. ``reference_steps`` U-Net passes per frame.
        data: held-out data folder; generated there if missing (None: a temporary folder).
        image_size: (H, W) camera images of generated data.
        seed: noise and untrained-weight seed.
    """

    checkpoint: str | None = None
    config: str | None = None
    device: str = "cpu"
    schedulers: tuple[str, ...] = ("ddim", "dpmsolver++", "euler")
    steps: tuple[int, ...] = (4, 8, 25)
    headline: tuple[str, int] = ("dpmsolver++", 8)
    warm_start_strength: float = 0.25
    warmup_frames: int = 2
    stream_frames: int = 8
    hand_backend: str = "keypoints"
    unet_repeats: int = 5
    sampling_repeats: int = 2
    precisions: tuple[str, ...] | None = None
    channels_last: bool | None = None
    compile: bool | None = None
    compile_mode: str = "default"
    window_batch_sizes: tuple[int, ...] | None = None
    threads: int | None = None
    profile: bool = True
    quality: bool = True
    quality_sequences: int = 3
    quality_frames: int = 48
    reference_scheduler: str = "ddim"
    reference_steps: int = 25
    quality_streaming_steps: tuple[int, ...] | None = None
    streaming_reference: bool = False
    data: str | None = None
    image_size: tuple[int, int] = (256, 256)
    seed: int = 0

    def __post_init__(self) -> None:
        from egopress_core.inference import PRECISIONS
        from egopress_core.model.config import PRESETS
        from egopress_core.model.egopressdiff import SCHEDULERS

        if (self.checkpoint is None) == (self.config is None):
            raise ConfigError("give exactly one of checkpoint (a trained model) and config (an untrained preset)")
        if self.config is not None and self.config not in PRESETS:
            raise ConfigError(f"config must be one of {list(PRESETS)}. Got {self.config!r}")
        if not self.schedulers:
            raise ConfigError("schedulers must name at least one scheduler")
        if not isinstance(self.headline, (tuple, list)) or len(self.headline) != 2:
            raise ConfigError(f"headline must be (scheduler, steps). Got {self.headline!r}")
        for name in (*self.schedulers, self.reference_scheduler, self.headline[0]):
            if name not in SCHEDULERS:
                raise ConfigError(f"scheduler must be one of {list(SCHEDULERS)}. Got {name!r}")
        if not self.steps:
            raise ConfigError("steps must hold at least one step count")
        for value in (*self.steps, self.reference_steps, self.headline[1], *(self.quality_streaming_steps or ())):
            _positive_int("steps", value)
        if isinstance(self.warm_start_strength, bool) or not 0.0 < float(self.warm_start_strength) <= 1.0:
            raise ConfigError(f"warm_start_strength must be in (0, 1]. Got {self.warm_start_strength!r}")
        if isinstance(self.warmup_frames, bool) or not isinstance(self.warmup_frames, int) or self.warmup_frames < 0:
            raise ConfigError(f"warmup_frames must be an integer >= 0. Got {self.warmup_frames!r}")
        for name in ("stream_frames", "unet_repeats", "sampling_repeats", "quality_sequences", "quality_frames"):
            _positive_int(name, getattr(self, name))
        if self.hand_backend not in HAND_BACKENDS:
            raise ConfigError(f"hand_backend must be one of {list(HAND_BACKENDS)}. Got {self.hand_backend!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"compile_mode must be one of {list(COMPILE_MODES)}. Got {self.compile_mode!r}")
        if self.threads is not None:
            _positive_int("threads", self.threads)
        for size in self.window_batch_sizes or ():
            _positive_int("window_batch_sizes", size)
        if self.window_batch_sizes is not None and not self.window_batch_sizes:
            raise ConfigError("window_batch_sizes must hold at least one size (or be None)")
        for precision in self.precisions or ():
            if precision not in PRECISIONS:
                raise ConfigError(f"precision must be one of {list(PRECISIONS)}. Got {precision!r}")
        if len(self.image_size) != 2 or any(_positive_int("image_size", v) < 16 for v in self.image_size):
            raise ConfigError(f"image_size must be (H, W) of at least 16 pixels. Got {self.image_size!r}")

    @property
    def headline_scheduler(self) -> str:
        return self.headline[0]

    @property
    def headline_steps(self) -> int:
        return int(self.headline[1])

    @property
    def headline_name(self) -> str:
        """The name of the headline's streaming row."""
        return f"{self.headline_scheduler} {self.headline_steps}"


def quick_options(**overrides: Any) -> BenchOptions:
    """The ``--quick`` grid: a few minutes on a 2-core CPU with the compact model."""
    values: dict[str, Any] = dict(
        schedulers=("ddim", "dpmsolver++"),
        steps=(4, 8),
        warmup_frames=1,
        stream_frames=3,
        unet_repeats=3,
        sampling_repeats=1,
        quality_sequences=1,
        quality_frames=24,
    )
    values.update(overrides)
    return BenchOptions(**values)


# ----------------------------------------------------------------------------------------------
# Machine and memory
# ----------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine_info(device: torch.device) -> dict[str, Any]:
    """The machine line every result carries."""
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "load_average_start": _load_average(),
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info["gpu"] = properties.name
        info["gpu_memory_gib"] = round(properties.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def rss_mb() -> float:
    """Current resident set size of this process, MiB (psutil if installed, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, function, *args, **kwargs) -> tuple[Any, float]:
    _synchronize(device)
    started = time.perf_counter()
    result = function(*args, **kwargs)
    _synchronize(device)
    return result, time.perf_counter() - started


# ----------------------------------------------------------------------------------------------
# Message payload (the numpy half of the ROS conversions)
# ----------------------------------------------------------------------------------------------


def message_payload(
    uv_pressure_kpa: np.ndarray,
    uv_mask: np.ndarray,
    vertex_pressure_kpa: np.ndarray,
    vertex_contact: np.ndarray,
    vertices: np.ndarray,
    faces: np.ndarray,
    vmax_kpa: float = 50.0,
) -> dict[str, bytes]:
    """The byte payloads the pressure node's messages carry, built with numpy only.

    UVPressure's 32FC1 map, the colourised UV image, the contact PointCloud2 (x, y, z, pressure,
    contact) and the mesh Marker's triangle corners and per-corner colours. What this leaves out
    is the rclpy message objects themselves (e.g. one ``geometry_msgs/Point`` per triangle corner
    in the Marker), which the library cannot import.

    Args:
        uv_pressure_kpa: (Hu, Wu) kPa; uv_mask: (Hu, Wu) bool.
        vertex_pressure_kpa: (V,) kPa; vertex_contact: (V,) bool; vertices: (V, 3) metres.
        faces: (F, 3) vertex indices.
    """
    from egopress_core.visualize import colorize

    uv_map = np.ascontiguousarray(uv_pressure_kpa, dtype="<f4").tobytes()
    uv_colours = colorize(uv_pressure_kpa, vmax_kpa, mask=np.asarray(uv_mask, dtype=bool)).tobytes()
    points = np.zeros(len(vertices), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("pressure", "<f4"), ("contact", "u1")])
    points["x"], points["y"], points["z"] = np.asarray(vertices, dtype=np.float32).T
    points["pressure"] = vertex_pressure_kpa
    points["contact"] = vertex_contact
    corners = np.asarray(faces, dtype=np.int64).reshape(-1)
    marker_points = np.asarray(vertices, dtype=np.float64)[corners].tobytes()
    marker_colours = (colorize(vertex_pressure_kpa, vmax_kpa)[corners] / 255.0).tobytes()
    return {"uv_map": uv_map, "uv_image": uv_colours, "point_cloud": points.tobytes(),
            "marker_points": marker_points, "marker_colours": marker_colours}


# ----------------------------------------------------------------------------------------------
# Model and data
# ----------------------------------------------------------------------------------------------


@dataclass
class _Setup:
    """The model under test, its hand and UV mask, and the held-out data it runs on."""

    model: Any
    mask: Any  # HandUVMask
    hand: Any  # HandModel
    description: str
    trained: bool
    sequences: list
    batches: list[dict[str, Any]] = field(default_factory=list)  # window batches, B = 1
    batch_names: list[str] = field(default_factory=list)


def _load_model(options: BenchOptions, device: torch.device):
    from egopress_core.data.sources import HandUVMask, hand_uv_mask
    from egopress_core.evaluation import load_pressure_model
    from egopress_core.live import UV_MASK_FILE
    from egopress_core.model.config import preset_config
    from egopress_core.model.egopressdiff import EgoPressDiff

    if options.checkpoint is not None:
        path = Path(options.checkpoint)
        model = load_pressure_model(path, map_location=device)
        if not isinstance(model, EgoPressDiff):
            raise CheckpointError(f"{path} holds a {type(model).__name__}; the benchmark times EgoPressDiff")
        mask_file = path / UV_MASK_FILE
        mask = HandUVMask.load(mask_file) if mask_file.is_file() else hand_uv_mask(tuple(model.config.uv_size))
        if not mask.matches(model.config.uv_layout):
            raise CheckpointError(f"{path} was trained on UV layout {model.config.uv_layout!r}; "
                                  f"the bundled hand's atlas is {mask.layout_id!r}")
        return model.eval(), mask, f"checkpoint {path}", True
    uv_size = tuple(preset_config(options.config).uv_size)
    mask = hand_uv_mask(uv_size)
    torch.manual_seed(options.seed)
    model = EgoPressDiff(preset_config(options.config, uv_layout=mask.layout_id)).to(device).eval()
    return model, mask, f"preset {options.config!r}, untrained (seed {options.seed})", False


def _held_out_sequences(options: BenchOptions, workdir: Path, frames_needed: int) -> list:
    """Sequences of ``options.data``; generated there first (``egopress demo``'s held-out seed)
    when the folder does not exist."""
    from egopress_core.cli.demo import HELD_OUT_SEED
    from egopress_core.data.sources import open_data_source

    root = Path(options.data) if options.data is not None else workdir / "held_out"
    if not root.exists():
        # The renderer (open3d) is imported only when data must be made: timing given data needs
        # none of it, e.g. on an accelerator machine without open3d.
        from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset

        config = SynthConfig(sequences=options.quality_sequences, frames=frames_needed, seed=HELD_OUT_SEED,
                             image_sizes=(tuple(options.image_size),))
        root = generate_dataset(config, root, progress=False)
    sequences = open_data_source(root, split="all").sequences()
    if not sequences:
        raise DataError(f"{root} holds no sequence")
    return sequences


def _sequence_batches(setup: _Setup, options: BenchOptions) -> tuple[list[dict[str, Any]], list[str]]:
    """The first ``quality_frames`` frames of the first ``quality_sequences`` held-out sequences,
    as (B = 1) window batches preprocessed exactly as ``egopress eval`` preprocesses them."""
    from egopress_core.evaluation import sequence_batch

    from egopress_core.conditioning import UVGeometryBuilder

    config = setup.model.config
    uv_geometry = UVGeometryBuilder.for_model(setup.mask.model_atlas(), config)
    batches, names = [], []
    for sequence in setup.sequences[: options.quality_sequences]:
        batch = sequence_batch(sequence, setup.model.config, setup.mask.tensor(), "hand", uv_geometry)
        length = batch["rgb"].shape[1]
        keep = min(options.quality_frames, length)
        # Per-frame fields are (1, N, ...); the UV mask is shared by all frames.
        batches.append({key: value[:, :keep] if key != "uv_mask" and isinstance(value, torch.Tensor)
                        and value.ndim >= 2 and value.shape[1] == length else value
                        for key, value in batch.items()})
        names.append(sequence.name)
    return batches, names


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------


def _stats(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples, dtype=np.float64)
    return {"mean": float(values.mean()), "median": float(np.median(values)), "min": float(values.min()),
            "p90": float(np.percentile(values, 90)), "n": int(values.size)}


@torch.no_grad()
def time_unet_forward(model, features, repeats: int, seed: int = 0, warm_up: bool = True) -> dict[str, float]:
    """Seconds of one bare U-Net forward on one window (after one untimed warm-up call), and the
    process CPU seconds of it (``cpu_median``)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (features.batch_size, features.num_frames, model.config.latent_channels, *model.codec.latent_size)
    noisy = torch.randn(shape, generator=generator).to(model.device)
    timestep = torch.tensor(model.config.num_train_timesteps // 2, device=model.device)
    if warm_up:
        model.predict(noisy, timestep, features)
    samples, cpu = [], []
    for _ in range(repeats):
        cpu_started = time.process_time()
        samples.append(_timed(model.device, model.predict, noisy, timestep, features)[1])
        cpu.append(time.process_time() - cpu_started)
    return {**_stats(samples), "cpu_median": float(np.median(cpu))}


# Operator families of a profile, matched in this order against the profiler's operator names.
OPERATOR_GROUPS = (
    ("convolution", ("conv", "mkldnn_convolution")),
    ("matrix product", ("addmm", "aten::mm", "bmm", "matmul", "linear", "gemm")),
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention", "softmax")),
    ("normalisation", ("group_norm", "layer_norm", "var_mean", "batch_norm")),
    ("activation", ("gelu", "silu")),
    ("memory", ("copy_", "aten::cat", "contiguous", "clone", "_to_copy")),
)


@torch.no_grad()
def unet_operator_profile(model, features, top: int = 10, seed: int = 0) -> dict[str, Any]:
    """Which operators bound one U-Net forward: self time by family and the top operators
    (``torch.profiler``; device time on CUDA, CPU time otherwise)."""
    from torch.profiler import ProfilerActivity, profile

    generator = torch.Generator().manual_seed(seed)
    shape = (features.batch_size, features.num_frames, model.config.latent_channels, *model.codec.latent_size)
    noisy = torch.randn(shape, generator=generator).to(model.device)
    timestep = torch.tensor(model.config.num_train_timesteps // 2, device=model.device)
    model.predict(noisy, timestep, features)
    cuda = model.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        model.predict(noisy, timestep, features)
        _synchronize(model.device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [event for event in profiler.key_averages() if getattr(event, key) > 0]
    total = sum(getattr(event, key) for event in events)
    groups = {name: 0.0 for name, _ in OPERATOR_GROUPS} | {"other": 0.0}
    for event in events:
        group = next((name for name, needles in OPERATOR_GROUPS if any(n in event.key for n in needles)), "other")
        groups[group] += getattr(event, key) / total
    ranked = sorted(events, key=lambda event: getattr(event, key), reverse=True)[:top]
    return {
        "time": "device" if cuda else "cpu",
        "total_ms": total / 1000.0,
        "shares": dict(sorted(groups.items(), key=lambda item: -item[1])),
        "top_operators": [{"name": event.key, "self_ms": getattr(event, key) / 1000.0, "calls": int(event.count)}
                          for event in ranked],
    }


class _Yardstick:
    """The bare U-Net forward, re-timed before each measurement (one call, no warm-up): (wall
    seconds, process CPU seconds)."""

    def __init__(self, model, features, seed: int) -> None:
        self.model, self.features, self.seed = model, features, seed

    def __call__(self) -> tuple[float, float]:
        timed = time_unet_forward(self.model, self.features, 1, self.seed, warm_up=False)
        return timed["median"], timed["cpu_median"]


@torch.no_grad()
def time_window_sampling(model, conditions, scheduler: str, steps: int, repeats: int, seed: int,
                         yardstick: _Yardstick) -> dict[str, Any]:
    """One window from noise: encoders, sampler, decoding."""
    device = model.device
    unet_s, unet_cpu_s = yardstick()
    encode, denoise, denoise_cpu, decode = [], [], [], []
    for repeat in range(repeats):
        features, seconds = _timed(device, model.encode_conditions, conditions)
        encode.append(seconds)
        cpu_started = time.process_time()
        latents, seconds = _timed(device, model.denoise, features, steps, scheduler, 1.0, seed + repeat)
        denoise_cpu.append(time.process_time() - cpu_started)
        denoise.append(seconds)
        decode.append(_timed(device, model.decode_latents, latents, features.uv_mask)[1])
    window = float(np.mean(encode) + np.mean(denoise) + np.mean(decode))
    return {
        "scheduler": scheduler, "steps": steps,
        "encode_s": float(np.mean(encode)), "denoise_s": float(np.mean(denoise)), "decode_s": float(np.mean(decode)),
        "window_s": window, "step_s": float(np.mean(denoise)) / steps, "step_cpu_s": float(np.mean(denoise_cpu)) / steps,
        "yardstick_s": unet_s,
        "yardstick_cpu_s": unet_cpu_s, "yardstick_cpu_s": unet_cpu_s,
        "step_in_unet_forwards": float(np.mean(denoise)) / steps / unet_s,
        "step_cpu_in_unet_forwards": float(np.mean(denoise_cpu)) / steps / unet_cpu_s,
        "window_in_unet_forwards": window / unet_s,
        "frames_per_s": conditions.num_frames / window,
    }


@dataclass(frozen=True)
class StreamSetting:
    """One streaming configuration of the benchmark."""

    name: str
    scheduler: str
    steps: int
    warm_start_strength: float | None
    cache_frame_features: bool = True
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"

    def estimator_options(self) -> dict[str, Any]:
        return dict(num_inference_steps=self.steps, warm_start_strength=self.warm_start_strength,
                    scheduler=self.scheduler, cache_frame_features=self.cache_frame_features,
                    precision=self.precision, record_timings=True)


# (scheduler, steps, warm_start_strength) the live pressure node ran before the speed work of
# issue 9: the "before" row every run keeps, so before/after stay comparable on any machine.
PREVIOUS_LIVE_DEFAULTS = ("ddim", 10, 0.4)
BEFORE_NAME = "before: previous live defaults"


def resolved_precisions(options: BenchOptions, device: torch.device) -> tuple[str, ...]:
    """``options.precisions``, or when unset fp32 plus every half precision the device supports."""
    if options.precisions is not None:
        return tuple(options.precisions)
    if device.type != "cuda":
        return ("fp32",)
    return ("fp32", "fp16", "bf16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")


def stream_settings(options: BenchOptions, device: torch.device) -> list[StreamSetting]:
    """The grid, the live node's defaults, and the headline setting's variants."""
    from egopress_core.inference import check_precision

    warm = float(options.warm_start_strength)
    settings = [StreamSetting(f"{scheduler} {steps}", scheduler, steps, warm)
                for scheduler in options.schedulers for steps in options.steps]
    head = StreamSetting(options.headline_name, options.headline_scheduler, options.headline_steps, warm)
    if head.name not in {setting.name for setting in settings}:
        settings.append(head)
    scheduler, steps, strength = PREVIOUS_LIVE_DEFAULTS
    if (scheduler, steps, strength) not in {(s.scheduler, s.steps, s.warm_start_strength) for s in settings}:
        settings.append(StreamSetting(BEFORE_NAME, scheduler, steps, strength))
    settings.append(dataclasses.replace(head, name="headline without warm start", warm_start_strength=None))
    settings.append(dataclasses.replace(head, name="headline without feature cache", cache_frame_features=False))
    for precision in resolved_precisions(options, device):
        if precision != "fp32":
            settings.append(dataclasses.replace(head, name=f"headline {precision}", precision=precision))
    cuda = device.type == "cuda"
    if options.channels_last if options.channels_last is not None else cuda:
        settings.append(dataclasses.replace(head, name="headline channels-last", channels_last=True))
    if options.compile if options.compile is not None else cuda:
        settings.append(dataclasses.replace(head, name=f"headline torch.compile ({options.compile_mode})",
                                            compile=True, compile_mode=options.compile_mode))
    for setting in settings:  # refuse unsupported precisions up front, naming them
        check_precision(setting.precision, device)
    return settings


def _camera_frames(sequence, count: int) -> list:
    """``count`` annotated frames of the sequence, cycling through it if it is shorter."""
    annotated = [index for index in range(len(sequence)) if sequence.frame(index).joints is not None]
    if not annotated:
        raise DataError(f"sequence {sequence.name} has no frame with a hand for the streaming benchmark")
    return [sequence.frame(annotated[i % len(annotated)]) for i in range(count)]


@torch.no_grad()
def time_streaming(setup: _Setup, setting: StreamSetting, options: BenchOptions, records: list,
                   yardstick: _Yardstick) -> dict[str, Any]:
    """The live path frame by frame (see the module docstring); per-frame stage means."""
    from egopress_core.inference import StreamingPressureEstimator, prepare_model_for_inference
    from egopress_core.live import LivePressureEstimator
    from egopress_core.perception import HandKeypoints, RGBDFrame, build_estimator

    model = setup.model
    device = model.device
    if setting.channels_last or setting.compile:
        model = prepare_model_for_inference(copy.deepcopy(model), channels_last=setting.channels_last,
                                            compile=setting.compile, compile_options={"mode": setting.compile_mode})
    live = LivePressureEstimator(model, setup.mask, hand=setup.hand)
    live.streaming = StreamingPressureEstimator(model, setup.mask.tensor(), seed=options.seed,
                                                **setting.estimator_options())
    live.reset("benchmark setting")
    hand_estimator = build_estimator(options.hand_backend, side=setup.mask.side)
    faces = np.asarray(live.faces)
    uv_mask = np.asarray(setup.mask.mask, dtype=bool)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    unet_s, unet_cpu_s = yardstick()

    rows: list[dict[str, float]] = []
    cpu: list[float] = []
    warmup = options.warmup_frames + (COMPILED_EXTRA_WARMUP_FRAMES if setting.compile else 0)
    records = records[: warmup + options.stream_frames]
    for number, record in enumerate(records):
        stamp = number / 30.0
        cpu_started = time.process_time()
        started = time.perf_counter()
        estimate = hand_estimator.estimate(RGBDFrame(record.rgb, record.depth_m, record.intrinsics, stamp=stamp,
                                                     keypoints=HandKeypoints(points_3d=record.joints),
                                                     source_record=record))
        fitted = time.perf_counter()
        if estimate is None:
            raise DataError(f"the {options.hand_backend} backend found no hand in frame {record.index} of "
                            f"{record.sequence}: {hand_estimator.last_failure}")
        result = live.push(record.rgb, record.depth_m, record.intrinsics, stamp, estimate.vertices, estimate.joints)
        pushed = time.perf_counter()
        message_payload(result.uv_pressure_kpa, uv_mask, result.contact.vertex_pressure_kpa,
                        result.contact.vertex_contact, estimate.vertices, faces)
        finished = time.perf_counter()
        cpu_seconds = time.process_time() - cpu_started
        if number < warmup:
            continue
        cpu.append(cpu_seconds)
        stages = dict(live.streaming.last_timings)
        row = {"hand_mesh": fitted - started, "preprocess": result.timings_s["preprocess"], **stages,
               "inference_other": max(0.0, result.timings_s["inference"] - sum(stages.values())),
               "contact": result.timings_s["contact"], "message_payload": finished - pushed}
        row["total"] = finished - started
        rows.append(row)

    names = [name for name in rows[0] if name != "total"]
    stages_s = {name: float(np.mean([row[name] for row in rows])) for name in names}
    total = [row["total"] for row in rows]
    model_s = sum(stages_s[name] for name in ("conditions", "encode_frames", "encode_window", "denoise", "decode"))
    mean_total = float(np.mean(total))
    entry = {
        **asdict(setting),
        "unet_passes_per_frame": live.streaming.warm_steps,
        "frames_measured": len(rows),
        "stages_s": stages_s,
        "shares": {name: value / mean_total for name, value in stages_s.items()},
        "total_s": _stats(total),
        "cpu_s": float(np.mean(cpu)),
        "model_s": model_s,
        "yardstick_s": unet_s,
        "yardstick_cpu_s": unet_cpu_s,
        "end_to_end_fps": 1.0 / mean_total,
        "model_fps": 1.0 / model_s,
        "frame_in_unet_forwards": mean_total / unet_s,
        "frame_cpu_in_unet_forwards": float(np.mean(cpu)) / unet_cpu_s,
        "model_in_unet_forwards": model_s / unet_s,
        "rss_mb": rss_mb(),
    }
    if device.type == "cuda":
        entry["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return entry


@torch.no_grad()
def time_window_batches(model, batches: list[dict[str, Any]], sizes: tuple[int, ...],
                        seed: int) -> list[dict[str, Any]]:
    """Offline throughput over whole sequences (``egopress eval`` / ``label-bag``'s path, their
    default sampler) for each number of windows denoised together, after one warm-up sequence."""
    from egopress_core.evaluation import EvalOptions, estimate_sequence_pressure

    conditions = [model.build_conditions(batch, check_window=False) for batch in batches]
    frames = sum(item.num_frames for item in conditions)
    rows = []
    for size in sizes:
        options = EvalOptions(seed=seed, window_batch_size=size)
        estimate_sequence_pressure(model, conditions[0], options)
        cpu_started = time.process_time()
        _, seconds = _timed(model.device, lambda: [estimate_sequence_pressure(model, item, options)
                                                   for item in conditions])
        rows.append({"window_batch_size": size, "scheduler": options.scheduler, "steps": options.num_inference_steps,
                     "frames": frames, "seconds": seconds, "cpu_s": time.process_time() - cpu_started,
                     "frames_per_s": frames / seconds})
    single = next((row for row in rows if row["window_batch_size"] == 1), None)
    for row in rows:
        row["speedup_vs_one_window"] = None if single is None else single["seconds"] / row["seconds"]
    return rows


def resolved_window_batch_sizes(options: BenchOptions, device: torch.device) -> tuple[int, ...]:
    """``options.window_batch_sizes``, or when unset 1 on a CPU and 1, 4, 8 on CUDA."""
    if options.window_batch_sizes is not None:
        return tuple(options.window_batch_sizes)
    return (1, 4, 8) if device.type == "cuda" else (1,)


# ----------------------------------------------------------------------------------------------
# Quality
# ----------------------------------------------------------------------------------------------


def _score(predictions: list[np.ndarray], batches: list[dict[str, Any]]) -> dict[str, float | None]:
    """Pooled UV metrics over the sequences' annotated frames (as ``egopress eval`` pools them)."""
    from egopress_core.metrics import PressureMetrics

    metrics = PressureMetrics(contact_threshold_kpa=DEFAULT_CONTACT_THRESHOLD_KPA)
    for predicted, batch in zip(predictions, batches):
        valid = batch["valid"][0].numpy().astype(bool)
        if valid.any():
            metrics.update(predicted[valid], batch["uv_pressure_kpa"][0, :, 0].float().numpy()[valid])
    computed = metrics.compute()
    keys = ("volumetric_iou", "contact_iou", "mae_kpa", "temporal_accuracy")
    return {key: (None if computed[key] is None or math.isnan(computed[key]) else float(computed[key])) for key in keys}


@torch.no_grad()
def _offline_predictions(model, batches, scheduler: str, steps: int, seed: int) -> tuple[list[np.ndarray], float, int]:
    from egopress_core.evaluation import EvalOptions, estimate_sequence_pressure

    options = EvalOptions(num_inference_steps=steps, scheduler=scheduler, seed=seed)
    predictions, seconds, frames = [], 0.0, 0
    for batch in batches:
        conditions = model.build_conditions(batch, check_window=False)
        pressure, elapsed = _timed(model.device, estimate_sequence_pressure, model, conditions, options)
        predictions.append(pressure[0, :, 0].float().cpu().numpy())
        seconds += elapsed
        frames += conditions.num_frames
    return predictions, seconds, frames


@torch.no_grad()
def _streaming_predictions(model, mask_tensor, batches, scheduler: str, steps: int, warm: float,
                           seed: int, precision: str = "fp32") -> tuple[list[np.ndarray], float, int]:
    from egopress_core.inference import StreamingPressureEstimator

    estimator = StreamingPressureEstimator(model, mask_tensor, num_inference_steps=steps, warm_start_strength=warm,
                                           scheduler=scheduler, seed=seed, precision=precision)
    frame_keys = ("rgb", "depth_m", "intrinsics", "joints", "vertices", "valid", "uv_geometry")
    predictions, seconds, frames = [], 0.0, 0
    for batch in batches:
        keys = [key for key in frame_keys if key in batch]  # uv_geometry only for models that take it
        estimator.reset()
        maps = []
        count = batch["rgb"].shape[1]
        for index in range(count):
            frame = {key: batch[key][0, index] for key in keys}
            pressure, elapsed = _timed(model.device, estimator.push, frame)
            maps.append(pressure[0].float().cpu().numpy())
            seconds += elapsed
        predictions.append(np.stack(maps))
        frames += count
    return predictions, seconds, frames


def quality_settings(options: BenchOptions,
                     device: torch.device | None = None) -> list[tuple[str, str, int, float | None, str]]:
    """(mode, scheduler, steps, warm_start_strength, precision) of each fast setting scored: the
    offline grid and the headline scheduler's streaming step counts in fp32, then the headline
    streamed in each half precision that ``device`` is timed in (they round differently, so they
    are scored too; the reference stays fp32)."""
    settings = [("offline", scheduler, steps, None, "fp32") for scheduler in options.schedulers
                for steps in options.steps
                if (scheduler, steps) != (options.reference_scheduler, options.reference_steps)]
    warm = float(options.warm_start_strength)
    if options.streaming_reference:
        settings.append(("streaming", options.reference_scheduler, options.reference_steps, None, "fp32"))
    streaming_steps = options.quality_streaming_steps or (options.headline_steps,)
    settings += [("streaming", options.headline_scheduler, steps, warm, "fp32") for steps in streaming_steps]
    half = [p for p in resolved_precisions(options, device or torch.device("cpu")) if p != "fp32"]
    settings += [("streaming", options.headline_scheduler, options.headline_steps, warm, p) for p in half]
    return settings


def run_quality(setup: _Setup, options: BenchOptions, bar) -> dict[str, Any]:
    """Reference and fast settings on the held-out windows; Vol IoU ratios to the reference."""
    batches = setup.batches
    model = setup.model

    def entry(mode, scheduler, steps, warm, precision, predictions, seconds, frames):
        return {"mode": mode, "scheduler": scheduler, "steps": steps, "warm_start_strength": warm,
                "precision": precision, **_score(predictions, batches), "seconds": seconds,
                "frames_per_s": frames / seconds}

    bar.set_description(f"quality: reference {options.reference_scheduler} {options.reference_steps}")
    reference = entry("offline", options.reference_scheduler, options.reference_steps, None, "fp32",
                      *_offline_predictions(model, batches, options.reference_scheduler, options.reference_steps,
                                            options.seed))
    bar.update(1)
    results = []
    for mode, scheduler, steps, warm, precision in quality_settings(options, model.device):
        bar.set_description(f"quality: {mode} {scheduler} {steps} {precision}")
        if mode == "offline":
            produced = _offline_predictions(model, batches, scheduler, steps, options.seed)
        else:
            produced = _streaming_predictions(model, setup.mask.tensor(), batches, scheduler, steps, warm,
                                              options.seed, precision)
        result = entry(mode, scheduler, steps, warm, precision, *produced)
        reference_iou, iou = reference["volumetric_iou"], result["volumetric_iou"]
        ratio = iou / reference_iou if reference_iou and iou is not None else None
        result["vol_iou_ratio"] = ratio
        result["within_5_percent"] = None if ratio is None else bool(ratio >= 0.95)
        results.append(result)
        bar.update(1)
    causal = next((row for row in results if row["mode"] == "streaming" and row["warm_start_strength"] is None
                   and (row["scheduler"], row["steps"]) == (reference["scheduler"], reference["steps"])), None)
    for row in results:
        if row["mode"] == "streaming" and causal is not None and row is not causal:
            base, iou = causal["volumetric_iou"], row["volumetric_iou"]
            row["vol_iou_ratio_to_streaming_reference"] = iou / base if base and iou is not None else None
    return {
        "sequences": list(setup.batch_names),
        "frames": int(sum(batch["rgb"].shape[1] for batch in batches)),
        "annotated_frames": int(sum(int(batch["valid"].sum()) for batch in batches)),
        "contact_threshold_kpa": DEFAULT_CONTACT_THRESHOLD_KPA,
        "reference": reference,
        "settings": results,
        "note": None if setup.trained else "untrained model: quality figures are meaningless (smoke run)",
    }


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------


def run_benchmark(options: BenchOptions, progress: bool = True) -> dict[str, Any]:
    """Run every measurement of ``options``; returns the report (see :func:`write_report`)."""
    from egopress_core.hand.hand_model import load_hand_model
    from egopress_core.live import resolve_device

    started = time.perf_counter()
    device = resolve_device(options.device)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    machine = machine_info(device)
    model, mask, description, trained = _load_model(options, device)
    settings = stream_settings(options, device)
    stream_count = options.warmup_frames + options.stream_frames + COMPILED_EXTRA_WARMUP_FRAMES * any(
        setting.compile for setting in settings)
    quality_count = 1 + len(quality_settings(options, device)) if options.quality else 0
    grid = [(scheduler, steps) for scheduler in options.schedulers for steps in options.steps]

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="egopress-bench-")))
        bar = stack.enter_context(tqdm(total=3 + len(grid) + len(settings) + quality_count, unit="task",
                                       disable=not progress))
        bar.set_description("held-out data")
        frames_needed = max(options.quality_frames, model.config.num_frames)
        sequences = _held_out_sequences(options, workdir, frames_needed)
        hand = load_hand_model(mask.side, mask.hand_model_path, mask.uv_obj_path)
        setup = _Setup(model, mask, hand, description, trained, sequences)
        setup.batches, setup.batch_names = _sequence_batches(setup, options)
        bar.update(1)

        bar.set_description("bare U-Net forward")
        window_conditions = model.build_conditions(setup.batches[0], check_window=False)
        if window_conditions.num_frames < model.config.num_frames:
            raise DataError(f"held-out sequences have {window_conditions.num_frames} frames; the benchmark needs "
                            f"a full window of {model.config.num_frames}")
        window_conditions = window_conditions.window(0, model.config.num_frames)
        with torch.no_grad():
            features = model.encode_conditions(window_conditions)
        unet = time_unet_forward(model, features, options.unet_repeats, options.seed)
        yardstick = _Yardstick(model, features, options.seed)
        profile = unet_operator_profile(model, features, seed=options.seed) if options.profile else None
        bar.update(1)

        sampling = []
        for scheduler, steps in grid:
            bar.set_description(f"window from noise: {scheduler} {steps}")
            sampling.append(time_window_sampling(model, window_conditions, scheduler, steps, options.sampling_repeats,
                                                 options.seed, yardstick))
            bar.update(1)

        records = _camera_frames(sequences[0], stream_count)
        streaming = []
        for setting in settings:
            bar.set_description(f"streaming: {setting.name}")
            streaming.append(time_streaming(setup, setting, options, records, yardstick))
            bar.update(1)

        bar.set_description("offline throughput by window batch")
        offline = time_window_batches(model, setup.batches, resolved_window_batch_sizes(options, device), options.seed)
        bar.update(1)

        quality = run_quality(setup, options, bar) if options.quality else None

    report = {
        "benchmark": "egopress bench",
        "version": REPORT_VERSION,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_end": _load_average()},
        "options": asdict(options),
        "headline": options.headline_name,
        "model": {
            "source": description,
            "trained": trained,
            "parameters": sum(p.numel() for p in model.parameters()),
            "num_frames": model.config.num_frames,
            "image_size": list(model.config.image_size),
            "uv_size": list(model.config.uv_size),
            "latent_space": model.config.latent_space,
            "latent_size": list(model.codec.latent_size),
        },
        "unet_forward_s": unet,
        "unet_profile": profile,
        "sampling": sampling,
        "streaming": streaming,
        "offline_window_batches": offline,
        "quality": quality,
        "memory": {"rss_peak_mb": peak_rss_mb(),
                   **({"cuda_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20} if device.type == "cuda" else {})},
        "seconds": time.perf_counter() - started,
    }
    return report


def write_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """The report as JSON, written atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    os.replace(temporary, path)
    return path


# ----------------------------------------------------------------------------------------------
# Printed tables
# ----------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{1000.0 * seconds:.1f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    """Plain-text tables of a report (what the command prints)."""
    machine, model = report["machine"], report["model"]
    lines = [
        f"machine: {machine.get('gpu') or machine['cpu']}, {machine['cpu_count']} CPUs, {machine['torch_threads']} "
        f"torch thread(s), torch {machine['torch']}, device {machine['device']}, load average "
        f"{machine['load_average_start']} -> {machine['load_average_end']}",
        f"model: {model['source']}, {model['parameters'] / 1e6:.2f} M parameters, window {model['num_frames']} "
        f"frames, UV {model['uv_size'][0]}x{model['uv_size'][1]}, latents {model['latent_space']} "
        f"{model['latent_size'][0]}x{model['latent_size'][1]}",
        f"bare U-Net forward (one window): median {_ms(report['unet_forward_s']['median'])} ms, "
        f"min {_ms(report['unet_forward_s']['min'])} ms, CPU {_ms(report['unet_forward_s']['cpu_median'])} ms "
        "(re-timed before each row below: 'fwd' columns are ratios to that)",
        "",
        "window from noise (offline)",
        f"{'scheduler':<12s} {'steps':>5s} {'ms/step':>8s} {'x fwd':>6s} {'cpu x fwd':>9s} {'ms/window':>10s} "
        f"{'frames/s':>9s}",
    ]
    for row in report["sampling"]:
        lines.append(f"{row['scheduler']:<12s} {row['steps']:>5d} {_ms(row['step_s']):>8s} "
                     f"{row['step_in_unet_forwards']:>6.2f} {row['step_cpu_in_unet_forwards']:>9.2f} "
                     f"{_ms(row['window_s']):>10s} {row['frames_per_s']:>9.2f}")
    lines += [
        "",
        f"streaming, per new frame, hand mesh from {report['options']['hand_backend']} (passes: U-Net passes per "
        "frame; x fwd: frame wall time / bare U-Net forward; cpu x fwd: the same in process CPU time)",
        f"{'setting':<34s} {'sched':<11s} {'steps':>5s} {'warm':>5s} {'passes':>6s} {'ms/frame':>9s} "
        f"{'cpu ms':>8s} {'x fwd':>6s} {'cpu x fwd':>9s} {'fps':>6s} {'model fps':>9s} {'RSS MB':>7s}",
    ]
    for row in report["streaming"]:
        warm = "-" if row["warm_start_strength"] is None else f"{row['warm_start_strength']:.2f}"
        lines.append(
            f"{row['name']:<34s} {row['scheduler']:<11s} {row['steps']:>5d} {warm:>5s} {row['unet_passes_per_frame']:>6d} "
            f"{_ms(row['total_s']['mean']):>9s} {_ms(row['cpu_s']):>8s} {row['frame_in_unet_forwards']:>6.2f} "
            f"{row['frame_cpu_in_unet_forwards']:>9.2f} {row['end_to_end_fps']:>6.2f} "
            f"{row['model_fps']:>9.2f} {row['rss_mb']:>7.0f}"
            + (f"  CUDA peak {row['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in row else "")
        )
    profile = report.get("unet_profile")
    if profile:
        shares = ", ".join(f"{name} {100.0 * share:.0f}%" for name, share in profile["shares"].items() if share >= 0.005)
        lines += ["", f"U-Net forward by operator ({profile['time']} self time {profile['total_ms']:.0f} ms): {shares}"]
        lines += [f"  {op['name']:<48s} {op['self_ms']:>8.1f} ms  x{op['calls']}" for op in profile["top_operators"][:5]]
    headline = next((row for row in report["streaming"] if row["name"] == report["headline"]), report["streaming"][0])
    lines += ["", f"components of one streaming frame ({headline['name']}): mean ms and share"]
    for name, seconds in headline["stages_s"].items():
        lines.append(f"  {name:<18s} {_ms(seconds):>9s}  {100.0 * headline['shares'][name]:5.1f}%")
    offline = report.get("offline_window_batches")
    if offline:
        lines += ["", f"offline throughput (egopress eval / label-bag path, {offline[0]['scheduler']} "
                      f"{offline[0]['steps']}, overlapping windows of {offline[0]['frames']} frames) by window batch",
                  f"{'windows':>7s} {'seconds':>8s} {'frames/s':>9s} {'x one window':>12s}"]
        for row in offline:
            lines.append(f"{row['window_batch_size']:>7d} {row['seconds']:>8.2f} {row['frames_per_s']:>9.2f} "
                         f"{_num(row['speedup_vs_one_window'], 2):>12s}")
    quality = report.get("quality")
    if quality:
        reference = quality["reference"]
        lines += [
            "",
            f"quality on {len(quality['sequences'])} held-out sequence(s), {quality['annotated_frames']} annotated frames"
            + (f" ({quality['note']})" if quality.get("note") else ""),
            "(ratio: Vol IoU / the offline reference's; causal: / the streamed reference's, if scored)",
            f"{'mode':<10s} {'sched':<11s} {'steps':>5s} {'warm':>5s} {'prec':>4s} {'vol IoU':>8s} {'ratio':>6s} "
            f"{'causal':>6s} {'contact IoU':>11s} {'MAE kPa':>8s} {'frames/s':>9s}",
            f"{'reference':<10s} {reference['scheduler']:<11s} {reference['steps']:>5d} {'-':>5s} {'fp32':>4s} "
            f"{_num(reference['volumetric_iou']):>8s} {'1.00':>6s} {'-':>6s} {_num(reference['contact_iou']):>11s} "
            f"{_num(reference['mae_kpa']):>8s} {reference['frames_per_s']:>9.2f}",
        ]
        for row in quality["settings"]:
            warm = "-" if row["warm_start_strength"] is None else f"{row['warm_start_strength']:.2f}"
            lines.append(
                f"{row['mode']:<10s} {row['scheduler']:<11s} {row['steps']:>5d} {warm:>5s} {row['precision']:>4s} "
                f"{_num(row['volumetric_iou']):>8s} "
                f"{_num(row['vol_iou_ratio'], 2):>6s} {_num(row.get('vol_iou_ratio_to_streaming_reference'), 2):>6s} "
                f"{_num(row['contact_iou']):>11s} {_num(row['mae_kpa']):>8s} "
                f"{row['frames_per_s']:>9.2f}"
            )
    lines += ["", f"peak RSS {report['memory']['rss_peak_mb']:.0f} MB"
              + (f", CUDA peak {report['memory']['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in report["memory"] else "")
              + f"; {report['seconds']:.0f} s in all"]
    return "\n".join(lines)

