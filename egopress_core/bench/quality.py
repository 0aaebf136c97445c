"""What the fast settings of `egopress bench` cost in quality.

Volumetric / Contact IoU and MAE (:mod:`egopress_core.metrics`) of each fast setting against the
full-step reference (DDIM, ``reference_steps``), on the same preprocessed held-out windows as
``egopress eval``: offline through :meth:`EgoPressPipeline.estimate
<egopress_core.pipeline.EgoPressPipeline.estimate>` (overlapping windows, context both ways),
streaming frame by frame through the model-level policy of :meth:`EgoPressPipeline.stream
<egopress_core.pipeline.EgoPressPipeline.stream>` (the windows are already cropped as in
training, so the stream's own crop is not used).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from egopress_core.bench.options import BenchOptions, quality_settings
from egopress_core.bench.setup import BenchSetup
from egopress_core.bench.timing import timed
from egopress_core.metrics import DEFAULT_CONTACT_THRESHOLD_KPA
from egopress_core.options import OFFLINE_SAMPLING, SamplingOptions


def score(predictions: list[np.ndarray], batches: list[dict[str, Any]]) -> dict[str, float | None]:
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


def offline_predictions(pipeline, batches, scheduler: str, steps: int,
                        seed: int) -> tuple[list[np.ndarray], float, int]:
    """(UV maps per sequence, seconds, frames) of the offline estimate (``egopress eval``'s path
    with ``scheduler`` and ``steps``)."""
    sampling = dataclasses.replace(OFFLINE_SAMPLING, scheduler=scheduler, num_inference_steps=steps, seed=seed)
    predictions, seconds, frames = [], 0.0, 0
    for batch in batches:
        pressure, elapsed = timed(pipeline.device, pipeline.estimate, batch, sampling)
        predictions.append(pressure[0, :, 0].float().cpu().numpy())
        seconds += elapsed
        frames += int(batch["rgb"].shape[1])
    return predictions, seconds, frames


@torch.no_grad()
def streaming_predictions(pipeline, batches, scheduler: str, steps: int, warm: float | None,
                          seed: int) -> tuple[list[np.ndarray], float, int]:
    """(UV maps per sequence, seconds, frames) of the preprocessed frames streamed one at a time
    (the window restarted for each sequence) with ``pipeline``'s precision."""
    sampling = SamplingOptions(scheduler=scheduler, num_inference_steps=steps, warm_start_strength=warm, seed=seed)
    policy = pipeline.stream(sampling=sampling).policy
    frame_keys = ("rgb", "depth_m", "intrinsics", "joints", "vertices", "valid", "uv_geometry")
    predictions, seconds, frames = [], 0.0, 0
    for batch in batches:
        keys = [key for key in frame_keys if key in batch]  # uv_geometry only for models that take it
        policy.reset()
        maps = []
        count = batch["rgb"].shape[1]
        for index in range(count):
            frame = {key: batch[key][0, index] for key in keys}
            pressure, elapsed = timed(pipeline.device, policy.push, frame)
            maps.append(pressure[0].float().cpu().numpy())
            seconds += elapsed
        predictions.append(np.stack(maps))
        frames += count
    return predictions, seconds, frames


def run_quality(setup: BenchSetup, options: BenchOptions, bar) -> dict[str, Any]:
    """Reference and fast settings on the held-out windows; Vol IoU ratios to the reference."""
    batches = setup.batches
    pipeline = setup.pipeline

    def entry(mode, scheduler, steps, warm, precision, predictions, seconds, frames):
        return {"mode": mode, "scheduler": scheduler, "steps": steps, "warm_start_strength": warm,
                "precision": precision, **score(predictions, batches), "seconds": seconds,
                "frames_per_s": frames / seconds}

    bar.set_description(f"quality: reference {options.reference_scheduler} {options.reference_steps}")
    reference = entry("offline", options.reference_scheduler, options.reference_steps, None, "fp32",
                      *offline_predictions(pipeline, batches, options.reference_scheduler, options.reference_steps,
                                           options.seed))
    bar.update(1)
    results = []
    for mode, scheduler, steps, warm, precision in quality_settings(options, pipeline.device):
        bar.set_description(f"quality: {mode} {scheduler} {steps} {precision}")
        if mode == "offline":
            produced = offline_predictions(pipeline, batches, scheduler, steps, options.seed)
        else:
            runtime = dataclasses.replace(pipeline.runtime, precision=precision)
            produced = streaming_predictions(setup.pipeline_for(runtime), batches, scheduler, steps, warm, options.seed)
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
