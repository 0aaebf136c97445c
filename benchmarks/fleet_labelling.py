"""Fleet labelling throughput: `egopress label-bags` on a local Ray instance with 1 and 2 workers
against single-process `egopress label-bag` on the same bags.

    python benchmarks/fleet_labelling.py --tiny --bags 4 --seconds 2     # the toy-size model of the tests
    python benchmarks/fleet_labelling.py --bags 8 --seconds 10 --device cuda --workers 1 2 4 8

Runs, in this order, over copies of one generated sample bag (ground-truth hands):

1. **label-bag**: one `egopress label-bag` process per bag, one after the other, as a user
   would run them (each pays Python's start and the model's load); on a CPU with one torch
   thread (``OMP_NUM_THREADS=1``), as each one-CPU fleet worker runs, so that the outputs can be
   compared byte for byte;
2. **label-bags** with 1, 2, ... workers (``--workers``): one `label_bags` call each, on a local
   Ray instance it starts (one CPU, or one GPU, per worker).

Printed and saved (JSON in benchmarks/results/): for each run the wall time, frames/s, and for
the fleet its start-up (Ray and the workers' model loads, until the first worker was ready);
the ratios

* **steady overhead at one worker** = (fleet wall - start-up) / the label-bag runs' own labelling
  time (their reports' totals less the model load: index, read, model, write; no process start):
  the cost of the fleet's machinery once it runs (goal <= 1.10);
* **end to end** = fleet wall / the label-bag processes' wall (start-ups included on both sides);
* **speed-up** of each worker count over one worker;

and whether every fleet output is byte-identical to label-bag's. On a machine shared with other
jobs the figures vary from run to run; the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def tree_bytes(path: Path) -> dict[str, bytes]:
    return {str(item.relative_to(path)): item.read_bytes() for item in sorted(path.rglob("*")) if item.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", type=Path, help="checkpoint of either kind (default: the package's default)")
    model.add_argument("--tiny", action="store_true", help="a toy-size untrained EgoPressDiff (the tests' model)")
    parser.add_argument("--bags", type=int, default=4, help="number of bags (copies of one sample bag)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the sample bag")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=(108, 144))
    parser.add_argument("--steps", type=int, default=4, help="sampler steps")
    parser.add_argument("--chunk-frames", type=int, default=16, help="frames per work unit (label-bag's --chunk-frames)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="fleet sizes to run")
    parser.add_argument("--json", type=Path, help="where to write the figures (default: benchmarks/results/<device>_<date>_fleet_labelling.json)")
    args = parser.parse_args()

    # Ray's token authentication, with a token of this run's own (nothing is written to ~/.ray).
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from label_bag_speed import tiny_checkpoint

    from egopress_core.assets import DEFAULT_CHECKPOINT
    from egopress_core.options import OFFLINE_SAMPLING, RuntimeOptions
    from egopress_core.rosbag.fleet import label_bags
    from egopress_core.rosbag.index import TopicSelection
    from egopress_core.rosbag.label_options import LabelOptions, report_path_for
    from egopress_core.rosbag.sample import GROUND_TRUTH_MESH_TOPIC, write_sample_bag

    scratch = Path(tempfile.mkdtemp(prefix="fleet_labelling_"))
    try:
        checkpoint = tiny_checkpoint(scratch / "tiny") if args.tiny else (args.checkpoint or DEFAULT_CHECKPOINT)
        sample = write_sample_bag(scratch / "sample", seconds=args.seconds, image_size=tuple(args.image_size), progress=False).path
        inputs = scratch / "inputs"
        names = [f"bag_{number:03d}" for number in range(args.bags)]
        for name in names:
            shutil.copytree(sample, inputs / name)
        options = LabelOptions(checkpoint=str(checkpoint), backend="ground_truth",
                               topics=TopicSelection(hand_mesh=GROUND_TRUTH_MESH_TOPIC),
                               runtime=RuntimeOptions(device=args.device),
                               sampling=dataclasses.replace(OFFLINE_SAMPLING, num_inference_steps=args.steps),
                               chunk_frames=args.chunk_frames)

        # 1. label-bag, one process per bag.
        single = scratch / "label_bag"
        single.mkdir()
        flags = ["--checkpoint", str(checkpoint), "--backend", "ground_truth", "--hand-mesh-topic", GROUND_TRUTH_MESH_TOPIC,
                 "--device", args.device, "--steps", str(args.steps), "--chunk-frames", str(args.chunk_frames), "--no-progress"]
        env = dict(os.environ, OMP_NUM_THREADS="1") if args.device == "cpu" else dict(os.environ)
        egopress = [sys.executable, "-m", "egopress_core.cli.main"]
        started = time.perf_counter()
        for name in names:
            subprocess.run([*egopress, "label-bag", str(inputs / name), str(single / name), *flags], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        single_wall = time.perf_counter() - started
        reports = [json.loads(report_path_for(single / name).read_text()) for name in names]
        frames = sum(report["frames"]["synchronised"] for report in reports)
        # Each run's own time less its model load: what a fleet worker does per bag once started.
        single_labelling = sum(report["timings_s"]["total"] - report["timings_s"].get("load", 0.0) for report in reports)
        figures: dict = {
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load average "
                       + " ".join(f"{value:.1f}" for value in os.getloadavg()),
            "checkpoint": str(checkpoint), "device": args.device, "bags": args.bags, "frames": frames,
            "frames_per_bag": frames // args.bags, "image_size": list(args.image_size), "steps": args.steps,
            "chunk_frames": args.chunk_frames,
            "label_bag": {"processes_wall_s": single_wall, "frames_per_s": frames / single_wall,
                          "labelling_s": single_labelling, "labelling_frames_per_s": frames / single_labelling,
                          "torch_threads": 1 if args.device == "cpu" else None},
            "label_bags": {},
        }  # fmt: skip
        print(f"machine     {figures['machine']}")
        print(f"bags        {args.bags} x {frames // args.bags} frames ({tuple(args.image_size)}), {args.steps} steps, "
              f"{checkpoint}, device {args.device}")
        print(f"label-bag   {single_wall:7.1f} s for {args.bags} processes ({frames / single_wall:6.2f} frames/s); "
              f"their labelling alone {single_labelling:7.1f} s ({frames / single_labelling:6.2f} frames/s)")

        # 2. label-bags with each fleet size.
        for count in args.workers:
            out = scratch / f"label_bags_{count}"
            started = time.perf_counter()
            report = label_bags([inputs], out, options, workers=count, progress=False)
            wall = time.perf_counter() - started
            if report.failed:
                raise SystemExit(report.summary())
            identical = all(tree_bytes(out / name) == tree_bytes(single / name) for name in names)
            steady = wall - report.startup_s
            figures["label_bags"][str(count)] = {
                "wall_s": wall, "frames_per_s": frames / wall, "startup_s": report.startup_s, "steady_s": steady,
                "steady_frames_per_s": frames / steady, "frames_per_s_per_worker": frames / steady / count,
                "identical_to_label_bag": identical, "workers": report.workers,
            }  # fmt: skip
            print(f"label-bags  {count} worker(s): {wall:7.1f} s ({frames / wall:6.2f} frames/s), start-up "
                  f"{report.startup_s:5.1f} s, then {steady:7.1f} s ({frames / steady:6.2f} frames/s); outputs "
                  f"{'identical to' if identical else 'DIFFERENT from'} label-bag's")

        ratios: dict = {}
        if "1" in figures["label_bags"]:
            one = figures["label_bags"]["1"]
            ratios["steady_overhead_one_worker"] = one["steady_s"] / single_labelling
            ratios["end_to_end_one_worker"] = one["wall_s"] / single_wall
            for count, run in figures["label_bags"].items():
                if count != "1":
                    ratios[f"speedup_{count}_workers_steady"] = one["steady_s"] / run["steady_s"]
                    ratios[f"speedup_{count}_workers_end_to_end"] = one["wall_s"] / run["wall_s"]
        for count, run in figures["label_bags"].items():
            ratios[f"end_to_end_{count}_workers_vs_label_bag"] = single_wall / run["wall_s"]
        figures["ratios"] = ratios
        print("ratios      " + ", ".join(f"{name} {value:.3f}" for name, value in ratios.items()))
        figures["load_average_after"] = list(os.getloadavg())

        path = args.json or RESULTS / f"{args.device.split(':')[0]}_{datetime.date.today().isoformat()}_fleet_labelling.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {path}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
