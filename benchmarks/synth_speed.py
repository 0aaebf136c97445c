"""Synthetic generator throughput and disk footprint.

    python benchmarks/synth_speed.py --sequences 4 --frames 64 --workers 2 --size 256 256

Prints frames generated per second (wall clock, all workers), disk bytes per frame, the time a
200-sequence x 64-frame training set would take at that rate, and a per-stage profile of one
sequence (hand FK and contact solve, rendering, writing).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from egopress_core.data.synthetic import generator, render
from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--uv-resolution", type=int, default=224)
    args = parser.parse_args()
    config = SynthConfig(
        sequences=args.sequences, frames=args.frames, image_sizes=(tuple(args.size),), uv_resolution=args.uv_resolution
    )
    generator.hand_and_atlas(None, config.hand_side, config.uv_resolution)  # warm caches/imports

    # Per-stage profile of one sequence in this process.
    original_render = render.render_rgbd
    render_seconds = [0.0]

    def timed_render(*a, **k):
        start = time.perf_counter()
        result = original_render(*a, **k)
        render_seconds[0] += time.perf_counter() - start
        return result

    generator.render_rgbd = timed_render
    start = time.perf_counter()
    generator.generate_sequence(config, 0)
    one_sequence = time.perf_counter() - start
    generator.render_rgbd = original_render

    out = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    try:
        start = time.perf_counter()
        generate_dataset(config, out / "data", workers=args.workers, progress=False)
        elapsed = time.perf_counter() - start
        disk = sum(path.stat().st_size for path in (out / "data").rglob("*.npy"))
    finally:
        shutil.rmtree(out)
    frames = args.sequences * args.frames
    fps = frames / elapsed
    result = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {__import__('os').cpu_count()} cores",
        "image_size": list(args.size),
        "uv_resolution": args.uv_resolution,
        "workers": args.workers,
        "frames": frames,
        "frames_per_second": round(fps, 2),
        "disk_bytes_per_frame": int(disk / frames),
        "hours_for_200x64": round(200 * 64 / fps / 3600, 3),
        "one_sequence_profile_s": {
            "total": round(one_sequence, 2),
            "render": round(render_seconds[0], 2),
            "hand_contact_and_rest": round(one_sequence - render_seconds[0], 2),
        },
    }
    print(json.dumps(result, indent=2))
    print(
        f"\n{fps:.1f} frames/s at {args.size[0]}x{args.size[1]} with {args.workers} workers; "
        f"{disk / frames / 1e6:.2f} MB/frame; 200 x 64 frames in {200 * 64 / fps / 60:.1f} min"
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
