"""`egopress bench --live`: held-out sequences played at camera rate into the live stream.

The pipeline is warmed up first (:func:`warm_up`, untimed), as a running node is.

A player thread takes each frame at its wall-clock time, ``1 / camera_fps`` apart, as a camera
driver would, and adds it with its hand mesh (:attr:`LiveBenchOptions.hands`): the annotation's,
the annotation's displaced as a fit is (``perturbed``), or the camera-only path's (``estimated``:
the hand stage runs in the camera thread on each frame, as the hand-mesh node does; when it falls
behind, the frames whose time passed meanwhile are dropped, latest only, and a frame where it
finds no hand is not added). The main thread runs the model whenever it is free
(:meth:`~egopress_core.stream.PressureStream.step`) and collects every estimate. Measured: the
camera rate, frames with pressure per second, the latency from a frame's capture to its
estimate, window restarts, frames that left the window before a pass reached them, frames the
hand stage dropped or found no hand in, and the Volumetric IoU of the streamed estimates over the
offline pipeline's (context both ways, the same kind of hand meshes) on the same frames, both
against ground truth, and the mean absolute difference between the two estimates.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from egopress_core.data.hands import HAND_SOURCES, with_hands
from egopress_core.data.synthetic import DEMO_FRAMES, DEMO_SEQUENCES
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
        hands: the hand meshes added with the frames, one of
            :data:`~egopress_core.data.hands.HAND_SOURCES` (module docstring).
    """

    camera_fps: float = 30.0
    sequences: int = 3
    frames: int = 150
    sampling: SamplingOptions = LIVE_SAMPLING
    hands: str = "annotated"

    def __post_init__(self) -> None:
        if isinstance(self.camera_fps, bool) or not isinstance(self.camera_fps, (int, float)) or not 0 < self.camera_fps <= 1000:
            raise ConfigError(f"LiveBenchOptions.camera_fps must be a number in (0, 1000]. Got {self.camera_fps!r}")
        for name in ("sequences", "frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"LiveBenchOptions.{name} must be an integer >= 1. Got {value!r}")
        if self.hands not in HAND_SOURCES:
            raise ConfigError(f"LiveBenchOptions.hands must be one of {HAND_SOURCES}. Got {self.hands!r}")


def quick_live_options() -> LiveBenchOptions:
    """``--quick``: ``egopress demo``'s held-out set (3 sequences of 48 frames, 4.8 s of camera).

    Several short sequences rather than one long one: the per-frame baseline (the default model)
    finds contact in a sequence or misses all of it, so on a single sequence the streamed /
    offline Vol IoU ratio is often 0 / 0 (on the 120-frame sequence ``--quick`` played until
    2026-12-07 it was).
    """
    return LiveBenchOptions(sequences=DEMO_SEQUENCES, frames=DEMO_FRAMES)


@dataclass
class _Played:
    """What the camera thread did with one sequence's frames."""

    captured: dict[float, float]  # stamp -> capture time (perf_counter) of every frame added
    taken_at: list[float]  # when the camera thread took each frame it did not drop
    added: int = 0
    dropped: int = 0  # frames whose time passed while the hand stage ran
    without_hand: int = 0  # frames the hand stage found no hand in
    hand_stage_s: list[float] | None = None
    error: BaseException | None = None  # what stopped the camera thread, raised in the caller's


def _play(stream, records: list, camera_fps: float, played: _Played, done: threading.Event, estimator=None) -> None:
    from egopress_core.perception import RGBDFrame

    started = time.perf_counter()
    number = 0
    try:
        while number < len(records):
            delay = started + number / camera_fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif estimator is not None:
                # Latest only, as the hand-mesh node: what the camera delivered meanwhile is dropped.
                newest = min(len(records) - 1, int((time.perf_counter() - started) * camera_fps))
                played.dropped += newest - number
                number = newest
            record, stamp = records[number], number / camera_fps
            played.taken_at.append(time.perf_counter())
            vertices, joints = record.vertices, record.joints
            if estimator is not None:
                stage_started = time.perf_counter()
                estimate = estimator.estimate(RGBDFrame(rgb=record.rgb, depth_m=record.depth_m, intrinsics=record.intrinsics,
                                                        stamp=stamp))  # fmt: skip
                played.hand_stage_s.append(time.perf_counter() - stage_started)
                if estimate is None or not estimate.has_hand:
                    played.without_hand += 1
                    number += 1
                    continue
                vertices, joints = estimate.vertices, estimate.joints
            played.captured[stamp] = started + stamp
            played.added += 1
            stream.add(record.rgb, record.depth_m, record.intrinsics, stamp, vertices, joints)
            number += 1
    except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
        played.error = error
    finally:
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


class _Prefix:
    """The first ``frames`` frames of a sequence (a :class:`~egopress_core.data.records.SequenceSource`)."""

    def __init__(self, sequence, frames: int) -> None:
        self.sequence, self.frames = sequence, min(frames, len(sequence))
        self.name, self.fps = sequence.name, sequence.fps
        self.hand_model, self.uv_layout = sequence.hand_model, sequence.uv_layout

    def __len__(self) -> int:
        return self.frames

    def frame(self, index: int):
        if not 0 <= index < self.frames:
            raise IndexError(index)
        return self.sequence.frame(index)

    def __iter__(self):
        return (self.frame(index) for index in range(self.frames))


def play_sequence(pipeline, sequence, options: LiveBenchOptions, estimator=None) -> dict[str, Any]:
    """One sequence at camera rate through a fresh stream; per-frame maps and timings.
    ``sequence`` carries the hand meshes to add unless ``estimator`` (the camera-only path) is
    given, which then runs on each frame in the camera thread."""
    records = [sequence.frame(index) for index in range(min(options.frames, len(sequence)))]
    stream = pipeline.stream(options.sampling)
    played = _Played(captured={}, taken_at=[], hand_stage_s=[] if estimator is not None else None)
    if estimator is not None:
        estimator.reset()
    done = threading.Event()
    player = threading.Thread(target=_play, args=(stream, records, options.camera_fps, played, done, estimator), daemon=True)
    arrivals = played.captured
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
    if played.error is not None:
        raise played.error
    elapsed = time.perf_counter() - started
    taken = played.taken_at
    span = taken[-1] - taken[0] if len(taken) > 1 else 0.0
    row = {"name": sequence.name, "frames_played": played.added, "frames_estimated": len(estimates),
           "frames_skipped": stream.frames_skipped, "window_resets": stream.resets, "elapsed_s": elapsed,
           # The camera's rate: frames the camera thread took, and those it dropped in between.
           "camera_fps": (len(taken) + played.dropped - 1) / span if span else 0.0,
           "frames_dropped_by_hand_stage": played.dropped, "frames_without_hand": played.without_hand,
           "latencies_s": latencies, "maps": estimates}
    if played.hand_stage_s:
        row["hand_stage_s"] = played.hand_stage_s
    return row


def _vol_iou(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float | None:
    low = sum(float(np.minimum(a, b).sum()) for a, b in pairs)
    high = sum(float(np.maximum(a, b).sum()) for a, b in pairs)
    return None if high == 0 else low / high


def run_live(pipeline, sequences: list, options: LiveBenchOptions, progress: bool = True) -> dict[str, Any]:
    """The ``live`` section of the report (see the module docstring)."""
    from tqdm.auto import tqdm

    sequences = sequences[: options.sequences]
    estimator = None
    if options.hands == "estimated":
        from egopress_core.perception import build_estimator

        estimator = build_estimator("mediapipe", side=sequences[0].frame(0).hand_side)
        estimator.warm_up()
    else:
        sequences = [with_hands(_Prefix(sequence, options.frames), options.hands) for sequence in sequences]
    try:
        warm_up(pipeline, sequences[0], options)
        played = [play_sequence(pipeline, sequence, options, estimator)
                  for sequence in tqdm(sequences, desc="live", unit="seq", disable=not progress)]
    finally:
        if estimator is not None:
            estimator.close()
    if options.hands == "estimated":
        # The offline reference is given the camera-only path's meshes of every frame.
        sequences = [with_hands(_Prefix(sequence, options.frames), "estimated") for sequence in sequences]
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
    # How far the streamed maps are from the offline ones, defined where the Vol IoU ratio is not
    # (neither estimate overlapping the truth).
    mae_to_offline = float(np.mean([np.abs(a[0] - b[0]).mean() for a, b in zip(streamed, offline)])) if streamed else None
    latencies = np.concatenate([row["latencies_s"] for row in rows]) if rows else np.zeros(0)
    hand_stage = np.concatenate([row.pop("hand_stage_s", []) for row in rows]) if rows else np.zeros(0)
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
        "frames_dropped_by_hand_stage": int(sum(row.get("frames_dropped_by_hand_stage", 0) for row in rows)),
        "frames_without_hand": int(sum(row.get("frames_without_hand", 0) for row in rows)),
        "hand_stage_p50_ms": float(np.percentile(hand_stage, 50) * 1000) if len(hand_stage) else None,
        "hands": options.hands,
        "vol_iou_streamed": streamed_iou,
        "vol_iou_offline": offline_iou,
        "vol_iou_ratio_to_offline": None if not (streamed_iou is not None and offline_iou) else streamed_iou / offline_iou,
        "mae_to_offline_kpa": mae_to_offline,
        "scored_frames": len(streamed),
        # The per-frame baseline has no sampler.
        "sampling": asdict(options.sampling) if pipeline.is_video_model else None,
        "offline_sampling": asdict(pipeline.sampling) if pipeline.is_video_model else None,
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
    _, machine, pipeline, description, trained = start_run(options, video_model_only=False)
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
        "model": {"source": description, "kind": type(pipeline.model).__name__, "trained": trained,
                  "num_frames": pipeline.window_length},
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
        f"window before a pass), {live['window_resets']} window restart(s); hand meshes: {live.get('hands', 'annotated')}"
        + (f", hand stage {number(live['hand_stage_p50_ms'], 0)} ms p50" if live.get("hand_stage_p50_ms") is not None else "")
        + (f", {live['frames_dropped_by_hand_stage']} frames dropped behind the hand stage, {live['frames_without_hand']} "
           "without a hand" if live.get("hand_stage_p50_ms") is not None or live.get("frames_dropped_by_hand_stage")
           or live.get("frames_without_hand") else ""),
        f"      Vol IoU streamed {number(live['vol_iou_streamed'], 3)} / offline {number(live['vol_iou_offline'], 3)} = "
        f"{number(live['vol_iou_ratio_to_offline'], 3)} on {live['scored_frames']} annotated frames; streamed - offline "
        f"{number(live.get('mae_to_offline_kpa'), 4)} kPa mean absolute",
    ])
