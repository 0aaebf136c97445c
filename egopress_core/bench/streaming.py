"""The live path of `egopress bench`, frame by frame, as the pressure node runs it.

Per frame: hand-mesh estimation (``hand_backend``), then
:meth:`PressureStream.push <egopress_core.stream.PressureStream.push>` (crop and resize, the
model-level policy's stages: conditions, per-frame encoders, window encoder, sampler, decoding;
per-vertex contact), then the numpy side of the ROS messages
(:func:`~egopress_core.bench.payload.message_payload`). Each setting streams through its own
:meth:`EgoPressPipeline.stream <egopress_core.pipeline.EgoPressPipeline.stream>`; settings with
channels-last or ``torch.compile`` run a pipeline over a deep copy of the model
(:meth:`~egopress_core.bench.setup.BenchSetup.pipeline_for`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from egopress_core.bench.options import COMPILED_EXTRA_WARMUP_FRAMES, BenchOptions, StreamSetting
from egopress_core.bench.payload import message_payload
from egopress_core.bench.setup import BenchSetup
from egopress_core.bench.timing import Yardstick, rss_mb, stats
from egopress_core.errors import DataError

# The model's own stages of a streamed frame (the policy's ``last_timings``).
MODEL_STAGES = ("conditions", "encode_frames", "encode_window", "denoise", "decode")


@torch.no_grad()
def time_streaming(setup: BenchSetup, setting: StreamSetting, options: BenchOptions, records: list,
                   yardstick: Yardstick) -> dict[str, Any]:
    """The live path frame by frame (see the module docstring); per-frame stage means."""
    from egopress_core.perception import HandKeypoints, RGBDFrame, build_estimator

    pipeline = setup.pipeline_for(setting.runtime(setup.pipeline.runtime))
    device = pipeline.device
    stream = pipeline.stream(sampling=setting.sampling(options.seed), record_timings=True,
                             cache_frame_features=setting.cache_frame_features)
    hand_estimator = build_estimator(options.hand_backend, side=pipeline.hand_side)
    faces = np.asarray(pipeline.faces)
    uv_mask = np.asarray(pipeline.uv_mask.mask, dtype=bool)
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
        result = stream.push(record.rgb, record.depth_m, record.intrinsics, stamp, estimate.vertices, estimate.joints)
        pushed = time.perf_counter()
        message_payload(result.uv_pressure_kpa, uv_mask, result.contact.vertex_pressure_kpa,
                        result.contact.vertex_contact, estimate.vertices, faces)
        finished = time.perf_counter()
        cpu_seconds = time.process_time() - cpu_started
        if number < warmup:
            continue
        cpu.append(cpu_seconds)
        stages = dict(stream.last_timings)
        row = {"hand_mesh": fitted - started, "preprocess": result.timings_s["preprocess"], **stages,
               "inference_other": max(0.0, result.timings_s["inference"] - sum(stages.values())),
               "contact": result.timings_s["contact"], "message_payload": finished - pushed}
        row["total"] = finished - started
        rows.append(row)

    names = [name for name in rows[0] if name != "total"]
    stages_s = {name: float(np.mean([row[name] for row in rows])) for name in names}
    total = [row["total"] for row in rows]
    model_s = sum(stages_s[name] for name in MODEL_STAGES)
    mean_total = float(np.mean(total))
    entry = {
        **asdict(setting),
        "unet_passes_per_frame": stream.warm_steps,
        "frames_measured": len(rows),
        "stages_s": stages_s,
        "shares": {name: value / mean_total for name, value in stages_s.items()},
        "total_s": stats(total),
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
