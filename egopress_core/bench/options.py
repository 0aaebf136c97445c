"""What `egopress bench` runs: :class:`BenchOptions`, and the streaming and quality settings it
derives from them.

Scheduler, precision and compile-mode names are those of :mod:`egopress_core.options`; the
defaults of the headline streaming setting are the live node's
(:data:`~egopress_core.options.LIVE_SAMPLING`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from egopress_core.errors import ConfigError
from egopress_core.options import (
    COMPILE_MODES,
    COMPILE_OFF,
    LIVE_SAMPLING,
    PRECISIONS,
    SCHEDULERS,
    RuntimeOptions,
    SamplingOptions,
)

REPORT_VERSION = 1
# Hand-mesh stage of the streaming rows: the live default (a fit to the frame's 3-D keypoints),
# or the record's annotated mesh, which leaves the pressure node's own cost (as when the hand-mesh
# node runs in its own process) and needs no open3d.
HAND_BACKENDS = ("keypoints", "ground_truth")
# torch.compile modes of the compile variant: every mode but "off" (the variant is the compiled one).
BENCH_COMPILE_MODES = tuple(mode for mode in COMPILE_MODES if mode != COMPILE_OFF)
# torch.compile traces on the first call of each input shape, and with CUDA graphs records them
# on later calls (the cold window and the warm-started ones differ): a compiled setting is timed
# only once those calls are behind it.
COMPILED_EXTRA_WARMUP_FRAMES = 4
# (scheduler, steps, warm_start_strength) the live pressure node ran before the speed work of
# issue 9: the "before" row every run keeps, so before/after stay comparable on any machine.
PREVIOUS_LIVE_DEFAULTS = ("ddim", 10, 0.4)
BEFORE_NAME = "before: previous live defaults"


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer. Got {value!r}")
    return value


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}. Got {value!r}")


@dataclass(frozen=True)
class BenchOptions:
    """What `egopress bench` runs.

    Attributes:
        checkpoint: EgoPressDiff checkpoint folder (either model kind for ``--live``); or
        config: a model preset ("tiny", "compact", "paper") built untrained with ``seed``: speed
            only, its quality figures are meaningless. Exactly one of the two.
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ... (as
            :class:`~egopress_core.options.RuntimeOptions`).
        schedulers, steps: the sampler grid (every scheduler at every step count).
        headline: (scheduler, steps) of the streaming setting that is profiled by component, varied
            (no warm start, no cache, precisions, ...) and scored for streaming quality; added
            to the grid's rows if it is not one of them. The default is the live node's
            (:data:`~egopress_core.options.LIVE_SAMPLING`), the fastest setting that kept the
            full-step quality in ``benchmarks/speed.md``.
        warm_start_strength: warm start of the streaming settings (fraction of the steps re-run).
        warmup_frames, stream_frames: streaming frames pushed before measuring / measured
            (compiled settings get :data:`COMPILED_EXTRA_WARMUP_FRAMES` more).
        hand_backend: hand-mesh estimation of the streaming rows, one of :data:`HAND_BACKENDS`.
        unet_repeats, sampling_repeats: repetitions of the bare U-Net forward / of each window.
        precisions: streaming precisions to compare ("fp32", "fp16", "bf16"); None: fp32 on a CPU,
            every one the GPU supports on CUDA.
        channels_last, compile: also measure these variants (None: on CUDA only).
        compile_mode: ``torch.compile`` mode of the compile variant, one of
            :data:`BENCH_COMPILE_MODES` ("default", "reduce-overhead": CUDA graphs,
            "max-autotune").
        window_batch_sizes: offline throughput is timed at each of these numbers of windows
            denoised together (None: 1 on a CPU, where batching only adds work; 1, 4, 8 on CUDA).
        threads: torch intra-op threads (None: torch's default).
        profile: profile one U-Net forward by operator (:func:`~egopress_core.bench.timing.unet_operator_profile`).
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
    device: str = RuntimeOptions().device
    schedulers: tuple[str, ...] = SCHEDULERS
    steps: tuple[int, ...] = (4, 8, 25)
    headline: tuple[str, int] = (LIVE_SAMPLING.scheduler, LIVE_SAMPLING.num_inference_steps)
    warm_start_strength: float = LIVE_SAMPLING.warm_start_strength
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
        from egopress_core.model.config import PRESETS

        if (self.checkpoint is None) == (self.config is None):
            raise ConfigError("give exactly one of checkpoint (a trained model) and config (an untrained preset)")
        if self.config is not None and self.config not in PRESETS:
            raise ConfigError(f"config must be one of {list(PRESETS)}. Got {self.config!r}")
        if not isinstance(self.device, str) or not self.device.strip():
            raise ConfigError(f"device must name a device (auto, cpu, cuda, ...). Got {self.device!r}")
        if not self.schedulers:
            raise ConfigError("schedulers must name at least one scheduler")
        if not isinstance(self.headline, (tuple, list)) or len(self.headline) != 2:
            raise ConfigError(f"headline must be (scheduler, steps). Got {self.headline!r}")
        for name in (*self.schedulers, self.reference_scheduler, self.headline[0]):
            _check_choice("scheduler", name, SCHEDULERS)
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
        _check_choice("hand_backend", self.hand_backend, HAND_BACKENDS)
        _check_choice("compile_mode", self.compile_mode, BENCH_COMPILE_MODES)
        if self.threads is not None:
            _positive_int("threads", self.threads)
        for size in self.window_batch_sizes or ():
            _positive_int("window_batch_sizes", size)
        if self.window_batch_sizes is not None and not self.window_batch_sizes:
            raise ConfigError("window_batch_sizes must hold at least one size (or be None)")
        for precision in self.precisions or ():
            _check_choice("precision", precision, PRECISIONS)
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
# Streaming settings
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSetting:
    """One streaming configuration of the benchmark (its fields are the report row's)."""

    name: str
    scheduler: str
    steps: int
    warm_start_strength: float | None
    cache_frame_features: bool = True
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"

    def sampling(self, seed: int) -> SamplingOptions:
        """The stream's sampler."""
        return SamplingOptions(scheduler=self.scheduler, num_inference_steps=self.steps,
                               warm_start_strength=self.warm_start_strength, seed=seed)

    def runtime(self, base: RuntimeOptions) -> RuntimeOptions:
        """``base`` (the device) with this setting's precision, layout and compile mode."""
        return dataclasses.replace(base, precision=self.precision, channels_last=self.channels_last,
                                   compile_mode=self.compile_mode if self.compile else COMPILE_OFF)


def resolved_precisions(options: BenchOptions, device: torch.device) -> tuple[str, ...]:
    """``options.precisions``, or when unset fp32 plus every half precision the device supports."""
    if options.precisions is not None:
        return tuple(options.precisions)
    if device.type != "cuda":
        return ("fp32",)
    return tuple(p for p in PRECISIONS if p != "bf16" or torch.cuda.is_bf16_supported())


def stream_settings(options: BenchOptions, device: torch.device) -> list[StreamSetting]:
    """The grid, the live node's defaults, and the headline setting's variants."""
    from egopress_core.runtime import check_precision

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


def resolved_window_batch_sizes(options: BenchOptions, device: torch.device) -> tuple[int, ...]:
    """``options.window_batch_sizes``, or when unset 1 on a CPU and 1, 4, 8 on CUDA."""
    if options.window_batch_sizes is not None:
        return tuple(options.window_batch_sizes)
    return (1, 4, 8) if device.type == "cuda" else (1,)


# ----------------------------------------------------------------------------------------------
# Quality settings
# ----------------------------------------------------------------------------------------------


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
