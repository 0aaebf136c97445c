"""Offline labelling speed: frames per second of `egopress label-bag`, and how much of it is bag
I/O and message conversion rather than inference.

    python benchmarks/label_bag_speed.py --checkpoint egopress_core/assets/checkpoints/egopressdiff_compact
    python benchmarks/label_bag_speed.py --tiny            # the toy-size model of the tests

Two runs over the same frames and the same chunk plan:

1. **labelling**: `label_bag` on a bag (default: a freshly written sample bag, ground-truth
   hands), start to finish: index, read and decode, hand meshes, preprocessing, EgoPressDiff,
   contact summaries, writing every message of the output bag;
2. **bare inference**: the same frames already decoded in memory, cropped and resized as the
   labeller does, through the same pipeline calls (`EgoPressPipeline.__call__` on the same
   chunks, context and seeds as the labeller's ``_label_group``).

The two runs alternate ``--repeats`` times and the fastest of each counts. Printed: wall and
process CPU time of both, labelling throughput (frames/s), the ratio
labelling / bare inference, and the share of the labelling time that is not inference
(goal: bag I/O and conversion under 10 %), with the labeller's own per-stage timings and the
ratio of each labelling run to the bare run after it. On a machine busy with other work, wall
time varies from run to run; CPU time and the per-stage split of one run are steadier.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def tiny_checkpoint(directory: Path) -> Path:
    from egopress_core.data.sources import hand_uv_mask
    from egopress_core.pipeline import UV_MASK_FILE
    from egopress_core.model import EgoPressDiff, tiny_config

    mask = hand_uv_mask((16, 16), "right")
    torch.manual_seed(0)
    EgoPressDiff(tiny_config(uv_layout=mask.layout_id)).save_pretrained(directory)
    mask.save(directory / UV_MASK_FILE)
    return directory


def decoded_frames(bag: Path, topics, sync_slop_s: float, max_gap_s: float):
    """The bag's synchronised frames in memory: (index, [(rgb, depth_m, K, vertices, joints)])."""
    from egopress_core import messages as m
    from egopress_core.rosbag.index import build_index
    from egopress_core.rosbag.messages import color_to_rgb, depth_to_metres
    from egopress_core.rosbag.reader import BagReader
    from egopress_core.rosbag.typestore import egopress_typestore

    store = egopress_typestore()
    with BagReader(bag) as reader:
        index = build_index(reader, store, topics, sync_slop_s, max_gap_s, progress=False)
        wanted = {(ref.topic, ref.stamp_ns): (position, role) for position, frame in enumerate(index.frames)
                  for role, ref in (("color", frame.color), ("depth", frame.depth), ("mesh", frame.hand_mesh)) if ref}
        parts: dict[int, dict] = {}
        connections = [c for topic in {t for t, _ in wanted} for c in reader.connections_of(topic)]
        for connection, _, data in reader.messages(connections):
            message = store.deserialize_cdr(data, connection.msgtype)
            key = (connection.topic, m.stamp_to_ns(message.header.stamp))
            if key in wanted:
                position, role = wanted[key]
                parts.setdefault(position, {})[role] = (connection.msgtype, message)
    frames = []
    for position, frame in enumerate(index.frames):
        item = parts[position]
        mesh = m.hand_mesh_from_msg(item["mesh"][1])
        frames.append((color_to_rgb(item["color"][1], item["color"][0]),
                       depth_to_metres(item["depth"][1], item["depth"][0]),
                       index.calibrations[frame.calibration].intrinsics, mesh.vertices if mesh.has_hand else None,
                       mesh.joints if mesh.has_hand else None))
    return index, frames


def bare_inference(pipeline, frames, groups, options) -> tuple[float, float]:
    """Wall and CPU seconds of preprocessing + EgoPressDiff over the chunk plan, frames in memory,
    with the labeller's model calls (``BagLabeller._label_group``: one pipeline call per group
    of chunks, seeded with the group's number; a group without a hand is not estimated)."""
    from egopress_core.pipeline import FRAME_FIELDS
    from egopress_core.preprocessing import HandCropTracker, preprocess_frame, project_edge_coordinates

    wall, cpu = time.perf_counter(), time.process_time()
    for group in groups:
        spans = []
        for chunk in group.chunks:
            tracker = HandCropTracker(pipeline.image_size, pipeline.crop)
            rows = {key: [] for key in FRAME_FIELDS}
            for rgb, depth, intrinsics, vertices, joints in frames[chunk.span_start: chunk.span_stop]:
                points = None if vertices is None else project_edge_coordinates(vertices, intrinsics)
                box = tracker.update(rgb.shape[:2], points)
                inputs = preprocess_frame(rgb, depth, intrinsics, box, pipeline.image_size, pipeline.crop.depth_resize)
                rows["rgb"].append(inputs.rgb)
                rows["depth_m"].append(inputs.depth_m)
                rows["intrinsics"].append(inputs.intrinsics)
                rows["joints"].append(torch.zeros(21, 3) if joints is None else torch.from_numpy(joints))
                rows["vertices"].append(torch.zeros(pipeline.hand.num_vertices, 3) if vertices is None
                                        else torch.from_numpy(vertices))
                rows["valid"].append(torch.tensor(vertices is not None))
            spans.append({key: torch.stack(values) for key, values in rows.items()})
        if any(span["valid"].any() for span in spans):
            batch = {key: torch.stack([span[key] for span in spans]) for key in FRAME_FIELDS}
            pipeline(batch, seed=options.sampling.seed + group.number)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    from egopress_core.assets import DEFAULT_CHECKPOINT
    from egopress_core.options import OFFLINE_SAMPLING, RuntimeOptions
    from egopress_core.rosbag.index import TopicSelection
    from egopress_core.rosbag.label_options import LabelOptions
    from egopress_core.rosbag.label_plan import plan_chunks
    from egopress_core.rosbag.labeller import BagLabeller
    from egopress_core.rosbag.sample import GROUND_TRUTH_MESH_TOPIC, write_sample_bag

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", type=Path, help=f"checkpoint of either kind (default {DEFAULT_CHECKPOINT})")
    model.add_argument("--tiny", action="store_true", help="a toy-size untrained EgoPressDiff (the tests' model)")
    parser.add_argument("--bag", type=Path, help="bag to label with --backend ground_truth (default: a new sample bag)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the generated sample bag")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=(108, 144),
                        help="image size of the generated sample bag (480 640 for a RealSense-sized stream)")
    parser.add_argument("--steps", type=int, default=10, help="sampler steps")
    parser.add_argument("--batch-size", type=int, default=1, help="chunks per model call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2,
                        help="alternate both runs this many times and keep the fastest of each (damps other jobs' noise)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice); 1 is steadier on a busy machine")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    scratch = Path(tempfile.mkdtemp(prefix="label_bag_speed_"))
    try:
        checkpoint = tiny_checkpoint(scratch / "tiny") if args.tiny else (args.checkpoint or DEFAULT_CHECKPOINT)
        bag = args.bag
        if bag is None:
            bag = write_sample_bag(scratch / "sample", seconds=args.seconds, image_size=tuple(args.image_size), progress=False).path
        options = LabelOptions(checkpoint=str(checkpoint), backend="ground_truth",
                               topics=TopicSelection(hand_mesh=GROUND_TRUTH_MESH_TOPIC),
                               runtime=RuntimeOptions(device=args.device),
                               sampling=dataclasses.replace(OFFLINE_SAMPLING, num_inference_steps=args.steps),
                               batch_size=args.batch_size)

        # Warm-up: the first model call pays one-off costs (allocator, kernels) that neither run should.
        labeller = BagLabeller(bag, scratch / "warmup", options, progress=False)
        labeller._load_model()
        pipeline = labeller.pipeline
        index, frames = decoded_frames(bag, options.topics, options.sync_slop_s, options.max_gap_s)
        window = pipeline.window_length
        groups = plan_chunks(index.segments, options.chunk_frames or 8 * window,
                             window // 2 if options.context_frames is None else options.context_frames, options.batch_size)
        bare_inference(pipeline, frames[: window], plan_chunks([(0, min(window, len(frames)))], window, 0, 1), options)

        label_runs, bare_runs = [], []
        for repeat in range(args.repeats):
            output = scratch / f"labelled_{repeat}"
            wall, cpu = time.perf_counter(), time.process_time()
            report = BagLabeller(bag, output, options, progress=False).run()
            label_runs.append((time.perf_counter() - wall, time.process_time() - cpu, report.timings_s))
            shutil.rmtree(output)
            bare_runs.append(bare_inference(pipeline, frames, groups, options))
        label_wall, label_cpu, stages = min(label_runs, key=lambda run: run[0])
        bare_wall, bare_cpu = min(bare_runs)

        count = len(frames)
        config = pipeline.model.config
        figures = {
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
                       f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}",
            "checkpoint": str(checkpoint), "model": {"window": config.num_frames, "image_size": list(config.image_size),
                                                     "uv_size": list(config.uv_size)},
            "frames": count, "bag": str(bag), "steps": args.steps, "batches": len(groups), "batch_size": args.batch_size,
            "labelling": {"wall_s": label_wall, "cpu_s": label_cpu, "frames_per_s": count / label_wall,
                          "stages_s": stages, "all_runs_wall_s": [run[0] for run in label_runs]},
            "bare_inference": {"wall_s": bare_wall, "cpu_s": bare_cpu, "frames_per_s": count / bare_wall,
                               "all_runs_wall_s": [run[0] for run in bare_runs]},
            "ratio_wall": label_wall / bare_wall, "ratio_cpu": label_cpu / bare_cpu,
            # Each labelling run against the bare run right after it: other jobs' load is shared more evenly.
            "paired_ratios_wall": [label[0] / bare[0] for label, bare in zip(label_runs, bare_runs)],
            "non_inference_share_wall": 1 - bare_wall / label_wall, "non_inference_share_cpu": 1 - bare_cpu / label_cpu,
            # Within the same labelling run, so not affected by other jobs slowing one run more than the other.
            "non_model_share_of_labelling_stages": 1 - stages.get("model", 0.0) / stages["total"],
        }  # fmt: skip
        print(f"machine      {figures['machine']}")
        print(f"checkpoint   {checkpoint} (window {config.num_frames}, images {tuple(config.image_size)}, UV {tuple(config.uv_size)})")
        print(f"frames       {count} from {bag}, {len(groups)} batches, {args.steps} sampler steps, device {args.device}")
        print(f"labelling    wall {label_wall:7.2f} s ({count / label_wall:6.2f} frames/s)   cpu {label_cpu:7.2f} s")
        print("             stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
              + f"; everything but the model: {100 * figures['non_model_share_of_labelling_stages']:.1f} %")
        print(f"             all runs (wall): labelling {', '.join(f'{r[0]:.2f}' for r in label_runs)} s; "
              f"bare {', '.join(f'{r[0]:.2f}' for r in bare_runs)} s")
        print(f"bare infer.  wall {bare_wall:7.2f} s ({count / bare_wall:6.2f} frames/s)   cpu {bare_cpu:7.2f} s")
        print("paired wall ratios (labelling run / the bare run after it): "
              + ", ".join(f"{ratio:.3f}" for ratio in figures["paired_ratios_wall"])
              + f"; median {float(np.median(figures['paired_ratios_wall'])):.3f}")
        print(f"labelling / bare inference: {figures['ratio_wall']:.3f} (wall), {figures['ratio_cpu']:.3f} (cpu); "
              f"non-inference share {100 * figures['non_inference_share_wall']:.1f} % (wall), "
              f"{100 * figures['non_inference_share_cpu']:.1f} % (cpu); goal < 10 %")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
