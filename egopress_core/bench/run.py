"""`egopress bench` from start to finish: :func:`run_benchmark` (see :mod:`egopress_core.bench`)."""

from __future__ import annotations

import contextlib
import datetime
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from egopress_core.bench.options import (
    COMPILED_EXTRA_WARMUP_FRAMES,
    REPORT_VERSION,
    BenchOptions,
    quality_settings,
    resolved_window_batch_sizes,
    stream_settings,
)
from egopress_core.bench.quality import run_quality
from egopress_core.bench.setup import BenchSetup, camera_frames, held_out_sequences, sequence_batches, start_run
from egopress_core.bench.streaming import time_streaming
from egopress_core.bench.timing import (
    Yardstick,
    load_average,
    peak_rss_mb,
    time_unet_forward,
    time_window_batches,
    time_window_sampling,
    unet_operator_profile,
)
from egopress_core.errors import DataError


def run_benchmark(options: BenchOptions, progress: bool = True) -> dict[str, Any]:
    """Run every measurement of ``options``; returns the report (see
    :func:`~egopress_core.bench.report.write_report`)."""
    started = time.perf_counter()
    device, machine, pipeline, description, trained = start_run(options, video_model_only=True)
    model = pipeline.model
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
        frames_needed = max(options.quality_frames, pipeline.window_length)
        setup = BenchSetup(pipeline, description, trained, held_out_sequences(options, workdir, frames_needed))
        setup.batches, setup.batch_names = sequence_batches(setup, options)
        bar.update(1)

        bar.set_description("bare U-Net forward")
        window_conditions = pipeline.conditions(setup.batches[0])
        if window_conditions.num_frames < pipeline.window_length:
            raise DataError(f"held-out sequences have {window_conditions.num_frames} frames; the benchmark needs "
                            f"a full window of {pipeline.window_length}")
        window_conditions = window_conditions.window(0, pipeline.window_length)
        with torch.no_grad():
            features = model.encode_conditions(window_conditions)
        unet = time_unet_forward(model, features, options.unet_repeats, options.seed)
        yardstick = Yardstick(model, features, options.seed)
        profile = unet_operator_profile(model, features, seed=options.seed) if options.profile else None
        bar.update(1)

        sampling = []
        for scheduler, steps in grid:
            bar.set_description(f"window from noise: {scheduler} {steps}")
            sampling.append(time_window_sampling(model, window_conditions, scheduler, steps, options.sampling_repeats,
                                                 options.seed, yardstick))
            bar.update(1)

        records = camera_frames(setup.sequences[0], stream_count)
        streaming = []
        for setting in settings:
            bar.set_description(f"streaming: {setting.name}")
            streaming.append(time_streaming(setup, setting, options, records, yardstick))
            bar.update(1)

        bar.set_description("offline throughput by window batch")
        offline = time_window_batches(pipeline, setup.batches, resolved_window_batch_sizes(options, device),
                                      options.seed)
        bar.update(1)

        quality = run_quality(setup, options, bar) if options.quality else None

    report = {
        "benchmark": "egopress bench",
        "version": REPORT_VERSION,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_end": load_average()},
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
