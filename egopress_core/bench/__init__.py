"""Speed of EgoPressDiff inference, and what the fast settings cost in quality (`egopress bench`).

What is measured, on held-out synthetic sequences (``egopress demo``'s seed range, generated
on the fly unless ``data`` names a folder), with the model loaded as an
:class:`~egopress_core.pipeline.EgoPressPipeline`:

- **U-Net forward**: one bare ``model.predict`` on one window (B = 1, T frames). It is the
  yardstick: it is timed again right before every measurement below, and the ratios to that
  local value (``*_in_unet_forwards``) stay meaningful on a shared, noisy machine when the
  absolute times do not. Process CPU time (``cpu_s``) is reported too: with one torch thread it
  is the work done, whatever the machine's load.
- **Sampling** (per scheduler and step count): one window from noise: encoders, the sampler loop
  (U-Net plus scheduler arithmetic), decoding; seconds per denoising step.
- **Streaming** (per setting): the live path frame by frame, exactly as the pressure node runs it:
  hand-mesh estimation (``hand_backend``: the keypoints backend fitting the hand model to the
  frame's 3-D joints, or the annotated mesh), then the pipeline's
  :class:`~egopress_core.stream.PressureStream` (crop and resize, the
  :class:`~egopress_core.inference.StreamingPressureEstimator` stages: conditions, per-frame
  encoders, window encoder, sampler, decoding; per-vertex contact), and the numpy side of the
  ROS messages (the library never imports rclpy; ``benchmarks/speed.py --ros`` times the real
  message construction). Per-frame means per stage, frames per second, and each stage's share.
  Settings: every scheduler x step count warm-started, the live node's previous defaults ("before"),
  and variants of the headline setting: no warm start, no feature cache, other precisions,
  channels-last, ``torch.compile``.
- **Offline throughput** (``egopress eval``, ``egopress label-bag``): whole held-out sequences in
  overlapping windows with :data:`~egopress_core.options.OFFLINE_SAMPLING`, by the number of
  windows denoised together (``window_batch_sizes``).
- **Memory**: peak resident set size of the process, and on CUDA the peak allocated per setting.
- **Quality**: Volumetric / Contact IoU and MAE (:mod:`egopress_core.metrics`) of each fast setting
  against the full-step reference (DDIM, ``reference_steps``), offline through
  :meth:`EgoPressPipeline.estimate <egopress_core.pipeline.EgoPressPipeline.estimate>` and
  streaming through the pipeline's streaming policy, on the same preprocessed held-out windows
  as ``egopress eval``.

Modules: :mod:`~egopress_core.bench.options` (what runs), :mod:`~egopress_core.bench.setup`
(pipeline and data), :mod:`~egopress_core.bench.timing` (timers, U-Net, windows),
:mod:`~egopress_core.bench.streaming`, :mod:`~egopress_core.bench.payload`,
:mod:`~egopress_core.bench.quality`, :mod:`~egopress_core.bench.report` and
:mod:`~egopress_core.bench.run`.
"""

from egopress_core.bench.options import (
    BEFORE_NAME,
    BENCH_COMPILE_MODES,
    COMPILED_EXTRA_WARMUP_FRAMES,
    HAND_BACKENDS,
    PREVIOUS_LIVE_DEFAULTS,
    REPORT_VERSION,
    BenchOptions,
    StreamSetting,
    quality_settings,
    quick_options,
    resolved_precisions,
    resolved_window_batch_sizes,
    stream_settings,
)
from egopress_core.bench.payload import message_payload
from egopress_core.bench.report import format_report, write_report
from egopress_core.bench.run import run_benchmark

__all__ = [
    "BEFORE_NAME",
    "BENCH_COMPILE_MODES",
    "COMPILED_EXTRA_WARMUP_FRAMES",
    "HAND_BACKENDS",
    "PREVIOUS_LIVE_DEFAULTS",
    "REPORT_VERSION",
    "BenchOptions",
    "StreamSetting",
    "format_report",
    "message_payload",
    "quality_settings",
    "quick_options",
    "resolved_precisions",
    "resolved_window_batch_sizes",
    "run_benchmark",
    "stream_settings",
    "write_report",
]
