"""`egopress eval`: score a checkpoint on a data set."""

from __future__ import annotations

import argparse
import json


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
    parser.add_argument("--steps", type=int, default=10, help="sampler steps (default 10)")
    parser.add_argument("--scheduler", default="ddim", help="ddim, dpmsolver++ or euler (default ddim)")
    parser.add_argument("--guidance-scale", type=float, default=1.0)
    parser.add_argument("--stride", type=int, help="window step of the offline estimate (default: half a window)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--window-batch-size", type=int, default=1,
                        help="windows denoised together (GPU throughput; same result up to rounding)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                        help="autocast precision (fp16 needs a GPU)")
    parser.add_argument("--threshold", type=float, default=1.0, help="contact threshold, kPa (default 1.0)")
    parser.add_argument("--max-sequences", type=int, help="evaluate only the first N sequences")
    parser.add_argument("--hand-model", help="MANO-format .pkl the data was made with (default: bundled hand)")
    parser.add_argument("--uv-obj", help="UV atlas OBJ of that hand model")
    parser.add_argument("--no-figure", action="store_true", help="skip the PNG")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from egopress_core.evaluation import EvalOptions, evaluate

    options = EvalOptions(
        num_inference_steps=args.steps, scheduler=args.scheduler, guidance_scale=args.guidance_scale,
        stride=args.stride, seed=args.seed, contact_threshold_kpa=args.threshold, max_sequences=args.max_sequences,
        device=args.device, window_batch_size=args.window_batch_size, precision=args.precision,
    )
    report = evaluate(args.checkpoint, args.data, args.out, options, split=args.split, hand_model_path=args.hand_model,
                      uv_obj_path=args.uv_obj, figure=not args.no_figure)
    print(json.dumps(report["metrics"], indent=2))
    print(f"report: {args.out}")
    return 0
