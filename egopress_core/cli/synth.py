"""`egopress synth`: generate a synthetic egocentric RGB-D hand-pressure data set."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from egopress_core.data.synthetic import ranges

    parser = subparsers.add_parser(
        "synth",
        help="generate synthetic RGB-D hand-pressure sequences",
        description=(
            "Generate synthetic egocentric RGB-D sequences of a hand pressing on a pad, with "
            "physically simulated ground-truth pressure. Deterministic per seed; re-running "
            "the same command resumes an interrupted run."
        ),
    )
    parser.add_argument("--out", required=True, help="output data folder")
    parser.add_argument("--sequences", type=int, default=8, help="number of sequences (default 8)")
    parser.add_argument("--frames", type=int, default=64, help="frames per sequence at 30 Hz (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument("--uv-resolution", type=int, default=224, help="UV-pressure map size (default 224)")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        action="append",
        help="image size; repeat to sample among several (default: 256x256, 240x320, 288x288)",
    )
    parser.add_argument("--gestures", nargs="+",
                        help="gestures to cycle through (default: the default mix); 'weak' stands for the weak-evidence "
                             "gestures, 'all' for every gesture; an unknown name lists them")
    parser.add_argument("--hand-model", help="MANO-format .pkl (default: the bundled hand)")
    parser.add_argument("--hand-distance", type=float, nargs=2, metavar=("MIN", "MAX"), default=ranges.HAND_DISTANCE_M,
                        help="camera-to-hand distance range, metres (default %g %g)" % ranges.HAND_DISTANCE_M)
    parser.add_argument("--pitch", type=float, nargs=2, metavar=("MIN", "MAX"), default=ranges.PITCH_DEG,
                        help="view angle below the horizon, degrees (default %g %g)" % ranges.PITCH_DEG)
    parser.add_argument("--shape-std", type=float, default=ranges.SHAPE_STD,
                        help="standard deviation of the hand's shape parameters (MANO betas); larger gives more very "
                             "small and very large hands (default %g)" % ranges.SHAPE_STD)
    parser.add_argument("--preview", action="store_true", help="also write a contact sheet PNG per sequence to OUT/previews/")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from egopress_core.data.synthetic.generator import GESTURES, IMAGE_SIZES, SynthConfig, expand_gestures, generate_dataset

    config = SynthConfig(
        sequences=args.sequences,
        frames=args.frames,
        seed=args.seed,
        image_sizes=tuple(tuple(size) for size in args.image_size) if args.image_size else IMAGE_SIZES,
        uv_resolution=args.uv_resolution,
        gestures=expand_gestures(args.gestures) if args.gestures else GESTURES,
        hand_model_path=args.hand_model,
        hand_distance_m=tuple(args.hand_distance),
        pitch_deg=tuple(args.pitch),
        shape_std=args.shape_std,
    )
    root = generate_dataset(config, args.out, workers=args.workers, progress=not args.no_progress)
    if args.preview:
        write_previews(root, config)
    print(f"wrote {config.sequences} sequences to {root}")
    return 0


def write_previews(root, config) -> None:
    from tqdm import tqdm

    from egopress_core.data.preview import write_contact_sheet
    from egopress_core.data.synthetic.generator import hand_and_atlas
    from egopress_core.data.synthetic.storage import SyntheticDataset

    hand, _ = hand_and_atlas(config.hand_model_path, config.hand_side, config.uv_resolution)
    for sequence in tqdm(SyntheticDataset(root).sequences(), desc="previews", unit="seq"):
        write_contact_sheet(sequence, hand.faces, root / "previews" / f"{sequence.name}.png")
