"""Inference speed of EgoPressDiff on this machine, per torch thread count, with its profile.

    . scripts/env.sh                                  # only for --ros (message objects need ROS)
    python benchmarks/speed.py --quick --threads 1 2 --ros --out outputs/speed

1. ``egopress bench`` (``--quick`` or the full grid) once per thread count, each in a fresh process
   with ``OMP_NUM_THREADS`` set, so thread pools start the way a node started with that
   setting would; one JSON report per count (``bench_t<N>.json``), each with the operator
   profile of the U-Net forward at that thread count.
2. ``--ros``: the rclpy message objects the pressure node publishes per frame (UVPressure,
   HandContact, the contact PointCloud2, the mesh Marker and the colourised image), built by
   ``egopress_core.messages`` with ``egopress_ros.conversions.RCLPY`` from one frame's real
   outputs (the pipeline's stream on the CPU): the part of "message conversion"
   the library benchmark cannot time (it never imports rclpy).

Prints a Markdown summary (the tables of ``benchmarks/speed.md``) and writes ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run_bench(threads: int, args, out: Path) -> dict | None:
    """One `egopress bench` in a fresh process with OMP_NUM_THREADS=threads (None: it ran past
    ``--timeout-min``, e.g. threads spinning against other jobs on a shared machine)."""
    report = out / f"bench_t{threads}.json"
    command = [sys.executable, "-m", "egopress_core.cli.main", "bench", "--threads", str(threads), "--out", str(report)]
    command += ["--quick"] if args.quick else []
    command += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    command += ["--device", args.device, "--data", str(out / "held_out")]
    command += list(args.bench_args)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    timeout = None if args.timeout_min is None else 60.0 * args.timeout_min
    try:
        subprocess.run(command, env=env, check=True, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"bench with {threads} thread(s): stopped after {args.timeout_min} min (load average "
              f"{os.getloadavg()[0]:.1f})", flush=True)
        return None
    print(f"bench with {threads} thread(s): {time.perf_counter() - started:.0f} s wall", flush=True)
    return json.loads(report.read_text())


def time_ros_messages(held_out: Path, checkpoint: str | None, repeats: int = 20) -> dict:
    """Per-frame cost of the pressure node's message objects, from one frame's real outputs."""
    try:
        from std_msgs.msg import Header

        from egopress_ros.conversions import RCLPY
    except ImportError as error:
        return {"skipped": f"ROS messages not importable ({error}); source scripts/env.sh after `make setup`"}
    import dataclasses

    from egopress_core import messages
    from egopress_core.data.sources import open_data_source
    from egopress_core.options import LIVE_SAMPLING, RuntimeOptions
    from egopress_core.pipeline import EgoPressPipeline
    from egopress_core.visualize import colorize

    # None: the shipped compact checkpoint.
    pipeline = EgoPressPipeline.from_checkpoint(checkpoint, runtime=RuntimeOptions(device="cpu"))
    stream = pipeline.stream(sampling=dataclasses.replace(LIVE_SAMPLING, num_inference_steps=2))
    sequence = open_data_source(held_out, split="all").sequences()[0]
    record = next(sequence.frame(i) for i in range(len(sequence)) if sequence.frame(i).joints is not None)
    vertices = np.array(record.vertices, dtype=np.float32)
    estimate = stream.push(record.rgb, record.depth_m, record.intrinsics, 0.0, vertices, np.array(record.joints))
    header = Header(frame_id="camera_color_optical_frame")
    vmax = max(float(estimate.uv_pressure_kpa.max()), 1.0)
    builders = {
        "UVPressure": lambda: messages.uv_pressure(RCLPY, estimate.uv_pressure_kpa, header, pipeline.hand_side,
                                                   pipeline.uv_layout_id, 1.0, estimate.uv_total_force_n),
        "HandContact": lambda: messages.hand_contact(RCLPY, estimate.contact, header, pipeline.hand_side,
                                                     pipeline.topology_id),
        "PointCloud2 (contact)": lambda: messages.contact_point_cloud(RCLPY, vertices, estimate.contact, header),
        "Marker (mesh, coloured)": lambda: messages.mesh_marker(
            RCLPY, vertices, pipeline.faces, header, "egopress",
            colours=colorize(estimate.contact.vertex_pressure_kpa, vmax)),
        "Image (colourised UV)": lambda: messages.image(
            RCLPY, colorize(estimate.uv_pressure_kpa, vmax, mask=pipeline.uv_mask.mask), "rgb8", header),
    }
    result = {}
    for name, build in builders.items():
        build()
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            build()
            samples.append(time.perf_counter() - started)
        result[name] = float(np.median(samples))
    result["all"] = sum(result.values())
    return {"median_s": result, "vertices": int(len(vertices)), "faces": int(len(pipeline.faces))}


def markdown(reports: dict[int, dict], ros: dict | None) -> str:
    """The tables of benchmarks/speed.md."""
    lines = []
    for threads, report in reports.items():
        machine = report["machine"]
        lines += [f"### {threads} torch thread(s): load average {machine['load_average_start']} -> "
                  f"{machine['load_average_end']}, bare U-Net forward {1000 * report['unet_forward_s']['median']:.0f} ms "
                  f"(CPU {1000 * report['unet_forward_s']['cpu_median']:.0f} ms)", "",
                  "| setting | scheduler | steps | warm | U-Net passes/frame | ms/frame | CPU ms/frame | frame / U-Net fwd "
                  "| CPU frame / U-Net fwd | end-to-end fps | model fps |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in report["streaming"]:
            warm = "-" if row["warm_start_strength"] is None else f"{row['warm_start_strength']:.2f}"
            lines.append(f"| {row['name']} | {row['scheduler']} | {row['steps']} | {warm} | {row['unet_passes_per_frame']} "
                         f"| {1000 * row['total_s']['mean']:.0f} | {1000 * row['cpu_s']:.0f} | "
                         f"{row['frame_in_unet_forwards']:.2f} | {row['frame_cpu_in_unet_forwards']:.2f} | "
                         f"{row['end_to_end_fps']:.2f} | {row['model_fps']:.2f} |")
        lines += ["", "| window from noise | steps | ms/step | step / U-Net fwd | CPU step / U-Net fwd | ms/window | frames/s |",
                  "|---|---|---|---|---|---|---|"]
        for row in report["sampling"]:
            lines.append(f"| {row['scheduler']} | {row['steps']} | {1000 * row['step_s']:.0f} | "
                         f"{row['step_in_unet_forwards']:.2f} | {row['step_cpu_in_unet_forwards']:.2f} | "
                         f"{1000 * row['window_s']:.0f} | {row['frames_per_s']:.2f} |")
        headline = next(row for row in report["streaming"] if row["name"] == report["headline"])
        lines += ["", f"Components of one streaming frame ({headline['name']}):", "",
                  "| component | ms | share |", "|---|---|---|"]
        lines += [f"| {name} | {1000 * seconds:.1f} | {100 * headline['shares'][name]:.1f}% |"
                  for name, seconds in headline["stages_s"].items()]
        profile = report.get("unet_profile")
        if profile:
            lines += ["", f"U-Net forward by operator family ({profile['time']} self time, {profile['total_ms']:.0f} ms):", "",
                      "| family | share |", "|---|---|"]
            lines += [f"| {name} | {100 * share:.1f}% |" for name, share in profile["shares"].items()]
            lines += ["", "| top operator | self ms | calls |", "|---|---|---|"]
            lines += [f"| `{op['name']}` | {op['self_ms']:.1f} | {op['calls']} |" for op in profile["top_operators"]]
        quality = report.get("quality")
        if quality:
            reference = quality["reference"]
            lines += ["", f"Quality, {len(quality['sequences'])} held-out sequence(s), {quality['annotated_frames']} "
                      "annotated frames:", "",
                      "| mode | scheduler | steps | warm | Vol IoU | ratio to reference | Contact IoU | MAE kPa |",
                      "|---|---|---|---|---|---|---|---|",
                      f"| reference | {reference['scheduler']} | {reference['steps']} | - | "
                      f"{reference['volumetric_iou']:.4f} | 1.00 | {reference['contact_iou']:.4f} | {reference['mae_kpa']:.3f} |"]
            for row in quality["settings"]:
                warm = "-" if row["warm_start_strength"] is None else f"{row['warm_start_strength']:.2f}"
                ratio = "-" if row["vol_iou_ratio"] is None else f"{row['vol_iou_ratio']:.2f}"
                lines.append(f"| {row['mode']} | {row['scheduler']} | {row['steps']} | {warm} | {row['volumetric_iou']:.4f} "
                             f"| {ratio} | {row['contact_iou']:.4f} | {row['mae_kpa']:.3f} |")
        lines.append("")
    if ros:
        if "skipped" in ros:
            lines.append(f"ROS message objects: skipped ({ros['skipped']})")
        else:
            lines += [f"ROS message objects per frame ({ros['vertices']} vertices, {ros['faces']} faces):", "",
                      "| message | ms |", "|---|---|"]
            lines += [f"| {name} | {1000 * seconds:.2f} |" for name, seconds in ros["median_s"].items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="EgoPressDiff checkpoint (default: the shipped compact model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts to run (default 1)")
    parser.add_argument("--quick", action="store_true", help="egopress bench --quick")
    parser.add_argument("--ros", action="store_true", help="time the ROS message objects too")
    parser.add_argument("--timeout-min", type=float, help="stop a thread count's run after this many minutes")
    parser.add_argument("--out", default="outputs/speed", help="output folder (default outputs/speed)")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="after --: more `egopress bench` arguments")
    args = parser.parse_args()
    args.bench_args = [a for a in args.bench_args if a != "--"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results = {threads: run_bench(threads, args, out) for threads in args.threads}
    reports = {threads: report for threads, report in results.items() if report is not None}
    for threads in sorted(set(results) - set(reports)):
        print(f"{threads} thread(s): no result (stopped after {args.timeout_min} min)")
    ros = time_ros_messages(out / "held_out", args.checkpoint) if args.ros else None
    summary = {"reports": {str(k): v for k, v in results.items()}, "ros_messages": ros}
    from egopress_core.files import write_json_atomic

    write_json_atomic(out / "summary.json", summary)
    print(markdown(reports, ros))
    print(f"\nreports in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
