"""How much of a model's error is faint pressure under the contact threshold.

    . scripts/env.sh
    OMP_NUM_THREADS=1 python benchmarks/pressure_floor.py --data DIR [--checkpoint CKPT] \
        [--hands estimated] [--floors 0 0.25 0.5 1] [--out floor.json]

Estimates every held-out sequence once (as `egopress eval` does: offline sampler, the given hand
meshes), then scores the estimates with everything below each floor set to zero: the pooled
PressureVision metrics, force error and predicted over true total force. Floor 0 is
`egopress eval`'s own score. A diffusion model that regresses pressure leaves a faint haze over
the hand (the per-frame baseline's lowest non-zero bin is 0.75 kPa, so it has none): this shows
what the haze costs. The floor is an experiment here, not an option of the pipeline.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from egopress_core.assets import EGOPRESSDIFF_CHECKPOINT
    from egopress_core.data.hands import HAND_SOURCES, with_hands
    from egopress_core.data.sources import open_data_source
    from egopress_core.evaluation import scored_frames
    from egopress_core.files import write_json_atomic
    from egopress_core.metrics import PressureMetrics
    from egopress_core.options import OFFLINE_SAMPLING
    from egopress_core.pipeline import EgoPressPipeline

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="held-out data folder")
    parser.add_argument("--checkpoint", default=str(EGOPRESSDIFF_CHECKPOINT), help="model checkpoint (default: the shipped EgoPressDiff)")
    parser.add_argument("--hands", default="estimated", choices=HAND_SOURCES, help="hand meshes (default estimated)")
    parser.add_argument("--floors", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0], help="floors, kPa")
    parser.add_argument("--out", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if any(not np.isfinite(floor) or floor < 0 for floor in args.floors):
        parser.error(f"--floors must be finite numbers >= 0. Got {args.floors}")

    pipeline = EgoPressPipeline.from_checkpoint(args.checkpoint, sampling=OFFLINE_SAMPLING)
    metrics = {floor: PressureMetrics() for floor in args.floors}
    for source in open_data_source(args.data).sequences():
        valid, scored, vertices = scored_frames(pipeline(with_hands(source, args.hands)))
        if not valid.any():
            continue
        true_force = pipeline.readout.uv_force(scored["gt"], vertices)
        for floor, pooled in metrics.items():
            floored = np.where(scored["pred"] < floor, 0.0, scored["pred"]).astype(np.float32)
            pooled.update(floored, scored["gt"], pred_force_n=pipeline.readout.uv_force(floored, vertices),
                          gt_force_n=true_force)
    keys = ("volumetric_iou", "contact_iou", "mae_kpa", "force_mae_n", "force_ratio", "temporal_accuracy")
    results = {str(floor): {key: float(pooled.compute()[key]) for key in keys} for floor, pooled in metrics.items()}
    print("floor (kPa) | " + " | ".join(keys))
    for floor, row in results.items():
        print(f"{floor:>11s} | " + " | ".join(f"{row[key]:.3f}" for key in keys))
    if args.out:
        write_json_atomic(args.out, {"command": " ".join(sys.argv), "checkpoint": args.checkpoint, "data": args.data,
                                     "hands": args.hands, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
