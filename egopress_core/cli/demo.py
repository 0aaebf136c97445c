"""`egopress demo`: the whole path on a freshly generated held-out sequence, with the shipped model,
then the rosbag path: a sample bag of a held-out sequence, labelled offline."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from egopress_core.assets import SHIPPED_CHECKPOINT
from egopress_core.data.synthetic import HELD_OUT_SEED
from egopress_core.options import OFFLINE_SAMPLING


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate held-out sequences, estimate pressure with the shipped model, write metrics and pictures, label a sample rosbag",
        description=(
            "Generates synthetic egocentric RGB-D sequences the shipped model never saw (contact sheets "
            "included), estimates hand pressure on them with the shipped EgoPressDiff checkpoint, and "
            "writes the evaluation report and figure, then writes a sample rosbag of one held-out sequence "
            "(`egopress sample-bag`) and labels it offline (`egopress label-bag`, ground-truth hands). Re-running "
            "reuses the generated data."
        ),
    )
    parser.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    parser.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT), help="checkpoint folder (default: the shipped one)")
    parser.add_argument("--sequences", type=int, default=3, help="held-out sequences to generate (default 3)")
    parser.add_argument("--frames", type=int, default=48, help="frames per sequence (default 48)")
    parser.add_argument("--steps", type=int, default=OFFLINE_SAMPLING.num_inference_steps,
                        help=f"sampler steps (default {OFFLINE_SAMPLING.num_inference_steps})")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help=f"data seed (default {HELD_OUT_SEED})")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from egopress_core.cli.synth import write_previews
    from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset
    from egopress_core.errors import CheckpointError
    from egopress_core.evaluation import EvalOptions, evaluate

    out = Path(args.out)
    if not (Path(args.checkpoint) / "config.json").is_file():
        raise CheckpointError(f"no checkpoint at {args.checkpoint}; pass --checkpoint RUN/model (see `egopress train`)")
    config = SynthConfig(sequences=args.sequences, frames=args.frames, seed=args.seed, image_sizes=((256, 256),))
    print(f"1/4 generating {args.sequences} held-out sequences into {out / 'data'}")
    data = generate_dataset(config, out / "data")
    print("2/4 contact sheets")
    write_previews(data, config)
    print(f"3/4 estimating pressure with {args.checkpoint}")
    sampling = dataclasses.replace(OFFLINE_SAMPLING, num_inference_steps=args.steps)
    report = evaluate(args.checkpoint, data, out / "report.json", EvalOptions(sampling=sampling), split="all")
    print(json.dumps(report["metrics"], indent=2))
    print(f"wrote {out / 'report.json'}, {out / 'report.png'} and contact sheets in {data / 'previews'}")
    print(f"4/4 sample rosbag ({args.frames} frames) labelled offline with {args.checkpoint}")
    labelled = label_sample_bag(out, args.checkpoint, args.frames, args.steps, args.seed)
    print(labelled.summary())
    return 0


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
