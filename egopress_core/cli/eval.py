"""`egopress eval`: score a checkpoint on a data set."""

from __future__ import annotations

import argparse
import json

from egopress_core import options
from egopress_core.data.hands import HAND_SOURCES
from egopress_core.options import OFFLINE_SAMPLING, ContactOptions, RuntimeOptions, SamplingOptions


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint: metrics JSON and a figure",
        description=(
            "Estimate every sequence of a data set with a checkpoint (EgoPressDiff or the per-frame "
            "baseline) and write the PressureVision metrics (contact IoU, volumetric IoU, MAE, temporal "
            "accuracy, per-vertex and force extras), per sequence and pooled, to a JSON report, with a "
            "figure of predicted vs ground-truth pressure next to it (same name, .png)."
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder (e.g. RUN/model)")
    parser.add_argument("--data", required=True, help="synthetic data folder or EgoPressure root")
    parser.add_argument("--out", required=True, help="report JSON path")
    parser.add_argument("--split", default="test", help="EgoPressure split (default test; synthetic folders are read whole)")
    options.add_arguments(parser, SamplingOptions, OFFLINE_SAMPLING, title="sampling")
    options.add_arguments(parser, RuntimeOptions, title="runtime")
    options.add_arguments(parser, ContactOptions, title="scoring")
    parser.add_argument("--max-sequences", type=int, help="evaluate only the first N sequences")
    parser.add_argument("--hands", choices=HAND_SOURCES, default="annotated",
                        help="hand meshes given to the model: the annotation's (default), estimated by the camera-only "
                             "path (mediapipe) on the sequence's frames, or the annotation's perturbed like a fit's "
                             "(a smooth rigid drift of 3 mm / 2 degrees per axis)")
    parser.add_argument("--hand-model", help="MANO-format .pkl the data was made with (default: bundled hand)")
    parser.add_argument("--uv-obj", help="UV atlas OBJ of that hand model")
    parser.add_argument("--no-figure", action="store_true", help="skip the PNG")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from egopress_core.evaluation import EvalOptions, evaluate

    settings = EvalOptions(
        sampling=options.from_arguments(args, SamplingOptions, OFFLINE_SAMPLING),
        runtime=options.from_arguments(args, RuntimeOptions),
        contact=options.from_arguments(args, ContactOptions),
        max_sequences=args.max_sequences,
        hands=args.hands,
    )
    report = evaluate(args.checkpoint, args.data, args.out, settings, split=args.split, hand_model_path=args.hand_model,
                      uv_obj_path=args.uv_obj, figure=not args.no_figure)
    from egopress_core.evaluation_factors import format_breakdown

    print(json.dumps(report["metrics"], indent=2))
    if report["per_factor"]:
        print("per factor (thirds of the sequences):\n" + format_breakdown(report["per_factor"]))
    print(f"report: {args.out}")
    return 0
