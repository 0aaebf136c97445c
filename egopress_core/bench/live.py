"""`egopress bench --live`: held-out sequences played at camera rate into the live stream.

The pipeline is warmed up first (:func:`warm_up`, untimed), as a running node is.

A player thread adds each frame (with its hand mesh from the annotation) at its wall-clock time,
``1 / camera_fps`` apart, as a camera driver would; the main thread runs the model whenever it is
free (:meth:`~egopress_core.stream.PressureStream.step`) and collects every estimate. Measured:
the camera rate achieved, frames with pressure per second, the latency from a frame's arrival to
its estimate, window restarts, frames that left the window before a pass reached them, and the
Volumetric IoU of the streamed estimates over the offline pipeline's (context both ways) on the
same frames, both against ground truth.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from egopress_core.errors import ConfigError
from egopress_core.options import LIVE_SAMPLING, SamplingOptions


@dataclass(frozen=True)
class LiveBenchOptions:
    """What `egopress bench --live` plays.

    Attributes:
        camera_fps: frames per second of wall clock the player adds.
        sequences: held-out sequences played one after another (a new stream each).
        frames: frames played per sequence.
        sampling: the stream's sampler (default: the pressure node's, :data:`LIVE_SAMPLING`).
    """

    camera_fps: float = 30.0
    sequences: int = 3
    frames: int = 150
    sampling: SamplingOptions = LIVE_SAMPLING

    def __post_init__(self) -> None:
        if isinstance(self.camera_fps, bool) or not isinstance(self.camera_fps, (int, float)) or not 0 < self.camera_fps <= 1000:
            raise ConfigError(f"LiveBenchOptions.camera_fps must be a number in (0, 1000]. Got {self.camera_fps!r}")
        for name in ("sequences", "frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"LiveBenchOptions.{name} must be an integer >= 1. Got {value!r}")


def quick_live_options() -> LiveBenchOptions:
    """``--quick``: one sequence of four seconds."""
    return LiveBenchOptions(sequences=1, frames=120)


def _play(stream, records: list, camera_fps: float, arrivals: dict[float, float], done: threading.Event) -> None:
    started = time.perf_counter()
    for number, record in enumerate(records):
        delay = started + number / camera_fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        stamp = number / camera_fps
        arrivals[stamp] = time.perf_counter()
        stream.add(record.rgb, record.depth_m, record.intrinsics, stamp, record.vertices, record.joints)
    done.set()


def warm_up(pipeline, sequence, options: LiveBenchOptions) -> None:
    """Passes of every kind the live stream makes (one frame from noise, a whole new window, a
    window one frame ahead), untimed: a running node has paid the one-time costs of its first
    passes (allocations, first runs of each kernel), which took the first pass from 1.7 s to 3.1 s
    on the 2-core machine."""
    stream = pipeline.stream(options.sampling)
    records = [sequence.frame(index) for index in range(min(pipeline.window_length + 2, len(sequence)))]
    for groups in (records[:1], records[1:-1], records[-1:]):
        for record in groups:
            stream.add(record.rgb, record.depth_m, record.intrinsics, record.index / options.camera_fps, record.vertices,
                       record.joints)
        stream.step()


def play_sequence(pipeline, sequence, options: LiveBenchOptions) -> dict[str, Any]:
    """One sequence at camera rate through a fresh stream; per-frame maps and timings."""
    records = [sequence.frame(index) for index in range(min(options.frames, len(sequence)))]
    stream = pipeline.stream(options.sampling)
    arrivals: dict[float, float] = {}
    done = threading.Event()
    player = threading.Thread(target=_play, args=(stream, records, options.camera_fps, arrivals, done), daemon=True)
    started = time.perf_counter()
    player.start()
    estimates, latencies, emitted_at = {}, [], []
    while not (done.is_set() and stream.pending == 0):
        if not stream.pending:
            time.sleep(0.002)
            continue
        for estimate in stream.step():
            now = time.perf_counter()
            estimates[round(estimate.stamp_s * options.camera_fps)] = estimate.uv_pressure_kpa
            latencies.append(now - arrivals[estimate.stamp_s])
            emitted_at.append(now)
    player.join()
    elapsed = time.perf_counter() - started
    played = len(arrivals)
    return {"name": sequence.name, "frames_played": played, "frames_estimated": len(estimates),
            "frames_skipped": stream.frames_skipped, "window_resets": stream.resets, "elapsed_s": elapsed,
            "camera_fps": (played - 1) / (max(arrivals.values()) - min(arrivals.values())) if played > 1 else 0.0,
            "latencies_s": latencies, "maps": estimates}


def _vol_iou(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float | None:
    low = sum(float(np.minimum(a, b).sum()) for a, b in pairs)
    high = sum(float(np.maximum(a, b).sum()) for a, b in pairs)
    return None if high == 0 else low / high


def run_live(pipeline, sequences: list, options: LiveBenchOptions, progress: bool = True) -> dict[str, Any]:
    """The ``live`` section of the report (see the module docstring)."""
    from tqdm.auto import tqdm

    sequences = sequences[: options.sequences]
    warm_up(pipeline, sequences[0], options)
    played = [play_sequence(pipeline, sequence, options)
              for sequence in tqdm(sequences, desc="live", unit="seq", disable=not progress)]
    return live_section(pipeline, sequences, played, options)


def live_section(pipeline, sequences: list, played: list[dict[str, Any]], options: LiveBenchOptions) -> dict[str, Any]:
    """Figures of sequences played live, scored against the offline pipeline on the same frames.

    Args:
        pipeline: gives the offline reference (its own sampler, context both ways).
        sequences: the sequences played, in order.
        played: one row per sequence as :func:`play_sequence` returns it (``maps`` by frame
            index, ``latencies_s``, counts); ``benchmarks/ros_latency.py`` builds the same rows
            from what the ROS nodes published.
        options: what was played.
    """
    rows, streamed, offline = [], [], []
    for sequence, row in zip(sequences, played):
        reference = pipeline(sequence)
        truth = reference.inputs["uv_pressure_kpa"][0, :, 0].float().numpy()
        valid = reference.inputs["valid"][0].numpy().astype(bool)
        for index, uv_map in row["maps"].items():
            if index < len(valid) and valid[index]:
                streamed.append((uv_map, truth[index]))
                offline.append((reference.uv_pressure_kpa[0, index], truth[index]))
        rows.append({key: value for key, value in row.items() if key != "maps"})
    latencies = np.concatenate([row["latencies_s"] for row in rows]) if rows else np.zeros(0)
    elapsed = sum(row["elapsed_s"] for row in rows)
    streamed_iou, offline_iou = _vol_iou(streamed), _vol_iou(offline)
    for row in rows:
        row.pop("latencies_s")
    return {
        "camera_fps": float(np.mean([row["camera_fps"] for row in rows])),
        "output_fps": sum(row["frames_estimated"] for row in rows) / elapsed if elapsed else 0.0,
        "latency_p50_ms": float(np.percentile(latencies, 50) * 1000) if len(latencies) else None,
        "latency_p95_ms": float(np.percentile(latencies, 95) * 1000) if len(latencies) else None,
        "window_resets": int(sum(row["window_resets"] for row in rows)),
        "frames_played": int(sum(row["frames_played"] for row in rows)),
        "frames_estimated": int(sum(row["frames_estimated"] for row in rows)),
        "frames_skipped": int(sum(row["frames_skipped"] for row in rows)),
        "vol_iou_streamed": streamed_iou,
        "vol_iou_offline": offline_iou,
        "vol_iou_ratio_to_offline": None if not (streamed_iou is not None and offline_iou) else streamed_iou / offline_iou,
        "scored_frames": len(streamed),
        "sampling": asdict(options.sampling),
        "offline_sampling": asdict(pipeline.sampling),
        "options": {key: value for key, value in asdict(options).items() if key != "sampling"},
        "sequences": rows,
    }


def run_live_benchmark(options, live: LiveBenchOptions, progress: bool = True) -> dict[str, Any]:
    """The whole ``--live`` report: the machine, the model and the ``live`` section.

    Args:
        options: the benchmark's :class:`~egopress_core.bench.options.BenchOptions` (checkpoint,
            device, threads, held-out data, image size, seed).
        live: what is played.
    """
    import datetime
    import tempfile
    from pathlib import Path

    from egopress_core.bench.setup import held_out_sequences, start_run
    from egopress_core.bench.timing import load_average

    started = time.perf_counter()
    # Torch's own thread count unless --threads says otherwise: adding a frame is cheap since the
    # encoders moved into the pass, so the pass gets the cores (on the idle 2-core machine two
    # threads gave 4.6 frames/s, one 3.9).
    _, machine, pipeline, description, trained = start_run(options)
    with tempfile.TemporaryDirectory(prefix="egopress_live_") as workdir:
        data_options = options if options.quality_sequences >= live.sequences else \
            type(options)(**{**asdict(options), "quality_sequences": live.sequences})
        sequences = held_out_sequences(data_options, Path(workdir), live.frames)
        section = run_live(pipeline, sequences, live, progress)
    if not trained:
        section["note"] = "untrained model: quality figures are meaningless (smoke run)"
    return {
        "benchmark": "egopress bench --live",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_end": load_average()},
        "model": {"source": description, "trained": trained, "num_frames": pipeline.window_length},
        "live": section,
        "seconds": time.perf_counter() - started,
    }


def format_live(live: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    def number(value, digits=2):
        return "n/a" if value is None else f"{value:.{digits}f}"

    return "\n".join([
        f"live: camera {number(live['camera_fps'], 1)} fps -> pressure {number(live['output_fps'], 2)} frames/s; "
        f"latency p50 {number(live['latency_p50_ms'], 0)} ms, p95 {number(live['latency_p95_ms'], 0)} ms",
        f"      {live['frames_estimated']} of {live['frames_played']} frames estimated ({live['frames_skipped']} left the "
        f"window before a pass), {live['window_resets']} window restart(s)",
        f"      Vol IoU streamed {number(live['vol_iou_streamed'], 3)} / offline {number(live['vol_iou_offline'], 3)} = "
        f"{number(live['vol_iou_ratio_to_offline'], 3)} on {live['scored_frames']} annotated frames",
    ])
