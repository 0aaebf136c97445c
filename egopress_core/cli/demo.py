"""`egopress demo`: the whole path on a freshly generated held-out sequence, with the default model,
given the annotation's hand meshes and the camera-only path's, then the rosbag path: a sample bag
of a held-out sequence, labelled offline."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from egopress_core.assets import DEFAULT_CHECKPOINT
from egopress_core.data.synthetic import DEMO_FRAMES, DEMO_IMAGE_SIZE, DEMO_SEQUENCES, HELD_OUT_SEED
from egopress_core.options import OFFLINE_SAMPLING


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate held-out sequences, estimate pressure with the default model, write metrics and pictures, label a sample rosbag",
        description=(
            "Generates synthetic egocentric RGB-D sequences the shipped models never saw (contact sheets "
            "included), estimates hand pressure on them with the default checkpoint (the per-frame baseline; "
            "--checkpoint egopress_core/assets/checkpoints/egopressdiff_compact for EgoPressDiff), given the "
            "annotation's hand meshes and then the camera-only path's (MediaPipe, depth, fit: what users "
            "have), writes both evaluation reports and figures side by side, then writes a sample rosbag of one held-out sequence "
            "(`egopress sample-bag`) and labels it offline (`egopress label-bag`, ground-truth hands). Re-running "
            "reuses the generated data."
        ),
    )
    parser.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint folder of either model kind (default: the package's default, %(default)s)")
    parser.add_argument("--sequences", type=int, default=DEMO_SEQUENCES, help="held-out sequences to generate (default %(default)s)")
    parser.add_argument("--frames", type=int, default=DEMO_FRAMES, help="frames per sequence (default %(default)s)")
    parser.add_argument("--steps", type=int, default=OFFLINE_SAMPLING.num_inference_steps,
                        help=f"sampler steps of an EgoPressDiff checkpoint (default {OFFLINE_SAMPLING.num_inference_steps})")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help=f"data seed (default {HELD_OUT_SEED})")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from egopress_core.cli.synth import write_previews
    from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset
    from egopress_core.errors import CheckpointError, DataError
    from egopress_core.evaluation import EvalOptions, evaluate

    out = Path(args.out)
    if not (Path(args.checkpoint) / "config.json").is_file():
        raise CheckpointError(f"no checkpoint at {args.checkpoint}; pass --checkpoint RUN/model (see `egopress train`)")
    config = SynthConfig(sequences=args.sequences, frames=args.frames, seed=args.seed, image_sizes=(DEMO_IMAGE_SIZE,))
    print(f"1/5 generating {args.sequences} held-out sequences into {out / 'data'}")
    data = generate_dataset(config, out / "data")
    print("2/5 contact sheets")
    write_previews(data, config)
    print(f"3/5 estimating pressure with {args.checkpoint}, given the annotation's hand meshes")
    sampling = dataclasses.replace(OFFLINE_SAMPLING, num_inference_steps=args.steps)
    report = evaluate(args.checkpoint, data, out / "report.json", EvalOptions(sampling=sampling), split="all")
    print(json.dumps(report["metrics"], indent=2))
    print(f"wrote {out / 'report.json'}, {out / 'report.png'} and contact sheets in {data / 'previews'}")
    print("4/5 the same, given the camera-only path's hand meshes (MediaPipe landmarks, depth, fit; as live and in bags)")
    try:
        camera_only = evaluate(args.checkpoint, data, out / CAMERA_ONLY_REPORT, EvalOptions(sampling=sampling, hands="estimated"),
                               split="all")  # fmt: skip
    except DataError as error:
        camera_only = None
        print(f"camera-only path: nothing to score ({error})")
    print(side_by_side(report, camera_only))
    if camera_only is not None:
        print(f"wrote {out / CAMERA_ONLY_REPORT} and {(out / CAMERA_ONLY_REPORT).with_suffix('.png')}")
    print(f"5/5 sample rosbag ({args.frames} frames) labelled offline with {args.checkpoint}")
    labelled = label_sample_bag(out, args.checkpoint, args.frames, args.steps, args.seed)
    print(labelled.summary())
    return 0


CAMERA_ONLY_REPORT = "report_camera_only.json"
# Shown side by side: (report key, title).
SIDE_BY_SIDE = (("contact_iou", "contact IoU"), ("volumetric_iou", "Vol IoU"), ("mae_kpa", "MAE (kPa)"),
                ("temporal_accuracy", "temporal acc."), ("force_mae_n", "force MAE (N)"))


def side_by_side(annotated: dict, camera_only: dict | None) -> str:
    """The two evaluations' headline metrics as a small table, with the frames each scored."""
    def cell(report, key):
        value = None if report is None else report["metrics"].get(key)
        return "n/a" if value is None else f"{value:.3f}"

    lines = [f"{'':22s} {'annotation meshes':>18s} {'camera-only path':>18s}"]
    lines += [f"{title:22s} {cell(annotated, key):>18s} {cell(camera_only, key):>18s}" for key, title in SIDE_BY_SIDE]
    scored = lambda report: "none" if report is None else f"{report['frames_with_hand']} of {report['frames_total']}"  # noqa: E731
    lines.append(f"{'frames with a hand':22s} {scored(annotated):>18s} {scored(camera_only):>18s}")
    return "\n".join(lines)


def label_sample_bag(out: Path, checkpoint: str, frames: int, steps: int, seed: int):
    """Writes ``out/sample_bag`` (``frames`` of a held-out synthetic sequence) and labels it into
    ``out/sample_bag_labelled`` with the ground-truth hand meshes it carries (both replaced if
    there); returns the :class:`~egopress_core.rosbag.label_plan.LabelReport`."""
    import shutil

    from egopress_core.data.synthetic.generator import FPS
    from egopress_core.rosbag.index import TopicSelection
    from egopress_core.rosbag.label_options import LabelOptions, work_dir_for
    from egopress_core.rosbag.labeller import label_bag
    from egopress_core.rosbag.sample import GROUND_TRUTH_MESH_TOPIC, write_sample_bag

    bag, labelled = out / "sample_bag", out / "sample_bag_labelled"
    # The demo's own outputs of an earlier (or interrupted) run: made again, in under a minute.
    for previous in (bag, labelled, work_dir_for(labelled)):
        shutil.rmtree(previous, ignore_errors=True)
    write_sample_bag(bag, seconds=frames / FPS, seed=seed)
    options = LabelOptions(checkpoint=checkpoint, backend="ground_truth", topics=TopicSelection(hand_mesh=GROUND_TRUTH_MESH_TOPIC),
                           sampling=dataclasses.replace(OFFLINE_SAMPLING, num_inference_steps=steps))
    return label_bag(bag, labelled, options)
