"""Timers, machine and memory figures, and the model-level measurements of `egopress bench`: the
bare U-Net forward (the yardstick), its operator profile, one window from noise by stage, and
offline throughput by window batch.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def load_average() -> float | None:
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
        "load_average_start": load_average(),
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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, function, *args, **kwargs) -> tuple[Any, float]:
    """(result, wall seconds) of ``function(*args, **kwargs)``, the device synchronised around it."""
    synchronize(device)
    started = time.perf_counter()
    result = function(*args, **kwargs)
    synchronize(device)
    return result, time.perf_counter() - started


def stats(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples, dtype=np.float64)
    return {"mean": float(values.mean()), "median": float(np.median(values)), "min": float(values.min()),
            "p90": float(np.percentile(values, 90)), "n": int(values.size)}


# ----------------------------------------------------------------------------------------------
# The U-Net forward
# ----------------------------------------------------------------------------------------------


def _unet_inputs(model, features, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (features.batch_size, features.num_frames, model.config.latent_channels, *model.codec.latent_size)
    noisy = torch.randn(shape, generator=generator).to(model.device)
    timestep = torch.tensor(model.config.num_train_timesteps // 2, device=model.device)
    return noisy, timestep


@torch.no_grad()
def time_unet_forward(model, features, repeats: int, seed: int = 0, warm_up: bool = True) -> dict[str, float]:
    """Seconds of one bare U-Net forward on one window (after one untimed warm-up call), and the
    process CPU seconds of it (``cpu_median``)."""
    noisy, timestep = _unet_inputs(model, features, seed)
    if warm_up:
        model.predict(noisy, timestep, features)
    samples, cpu = [], []
    for _ in range(repeats):
        cpu_started = time.process_time()
        samples.append(timed(model.device, model.predict, noisy, timestep, features)[1])
        cpu.append(time.process_time() - cpu_started)
    return {**stats(samples), "cpu_median": float(np.median(cpu))}


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

    noisy, timestep = _unet_inputs(model, features, seed)
    model.predict(noisy, timestep, features)
    cuda = model.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        model.predict(noisy, timestep, features)
        synchronize(model.device)
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


class Yardstick:
    """The bare U-Net forward, re-timed before each measurement (one call, no warm-up): (wall
    seconds, process CPU seconds)."""

    def __init__(self, model, features, seed: int) -> None:
        self.model, self.features, self.seed = model, features, seed

    def __call__(self) -> tuple[float, float]:
        measured = time_unet_forward(self.model, self.features, 1, self.seed, warm_up=False)
        return measured["median"], measured["cpu_median"]


# ----------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def time_window_sampling(model, conditions, scheduler: str, steps: int, repeats: int, seed: int,
                         yardstick: Yardstick) -> dict[str, Any]:
    """One window from noise by stage: encoders, sampler, decoding (``conditions``: one window's,
    :meth:`~egopress_core.pipeline.EgoPressPipeline.conditions`)."""
    device = model.device
    unet_s, unet_cpu_s = yardstick()
    encode, denoise, denoise_cpu, decode = [], [], [], []
    for repeat in range(repeats):
        features, seconds = timed(device, model.encode_conditions, conditions)
        encode.append(seconds)
        cpu_started = time.process_time()
        latents, seconds = timed(device, model.denoise, features, steps, scheduler, 1.0, seed + repeat)
        denoise_cpu.append(time.process_time() - cpu_started)
        denoise.append(seconds)
        decode.append(timed(device, model.decode_latents, latents, features.uv_mask)[1])
    window = float(np.mean(encode) + np.mean(denoise) + np.mean(decode))
    return {
        "scheduler": scheduler, "steps": steps,
        "encode_s": float(np.mean(encode)), "denoise_s": float(np.mean(denoise)), "decode_s": float(np.mean(decode)),
        "window_s": window, "step_s": float(np.mean(denoise)) / steps, "step_cpu_s": float(np.mean(denoise_cpu)) / steps,
        "yardstick_s": unet_s,
        "yardstick_cpu_s": unet_cpu_s,
        "step_in_unet_forwards": float(np.mean(denoise)) / steps / unet_s,
        "step_cpu_in_unet_forwards": float(np.mean(denoise_cpu)) / steps / unet_cpu_s,
        "window_in_unet_forwards": window / unet_s,
        "frames_per_s": conditions.num_frames / window,
    }


def time_window_batches(pipeline, batches: list[dict[str, Any]], sizes: tuple[int, ...],
                        seed: int) -> list[dict[str, Any]]:
    """Offline throughput over whole sequences (``egopress eval`` / ``label-bag``'s path, their
    default sampler :data:`~egopress_core.options.OFFLINE_SAMPLING`) for each number of windows
    denoised together, after one warm-up sequence."""
    from egopress_core.options import OFFLINE_SAMPLING

    frames = sum(int(batch["rgb"].shape[1]) for batch in batches)
    device = pipeline.device
    rows = []
    for size in sizes:
        sampling = dataclasses.replace(OFFLINE_SAMPLING, seed=seed, window_batch_size=size)
        pipeline.estimate(batches[0], sampling)
        cpu_started = time.process_time()
        _, seconds = timed(device, lambda: [pipeline.estimate(batch, sampling) for batch in batches])
        rows.append({"window_batch_size": size, "scheduler": sampling.scheduler,
                     "steps": sampling.num_inference_steps, "frames": frames, "seconds": seconds,
                     "cpu_s": time.process_time() - cpu_started, "frames_per_s": frames / seconds})
    single = next((row for row in rows if row["window_batch_size"] == 1), None)
    for row in rows:
        row["speedup_vs_one_window"] = None if single is None else single["seconds"] / row["seconds"]
    return rows
