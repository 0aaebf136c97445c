"""The per-frame baseline's readouts compared on the same estimates.

    . scripts/env.sh
    OMP_NUM_THREADS=2 python benchmarks/baseline_readout.py --data DIR [DIR ...] \
        [--checkpoint CKPT] [--hands estimated] [--out readout.json]

Loads the baseline checkpoint once per readout of ``model.bin_classifier.READOUTS`` (the same
weights; ``BinClassifierConfig.readout`` only changes how class probabilities become kPa), runs
each held-out sequence's inputs once (the camera-only path's hand meshes by default, as `egopress
eval --hands estimated`), and scores every readout on them: pooled PressureVision metrics, force,
the per-sequence Volumetric IoU, how many sequences get a Vol IoU below 0.01, and the paired
bootstrap of each readout's per-sequence Vol IoU against the checkpoint's own readout, per data
folder and over all of them.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

KEYS = ("volumetric_iou", "contact_iou", "mae_kpa", "force_mae_n", "force_ratio", "temporal_accuracy")
NOTHING = 0.01  # Vol IoU below which a sequence counts as getting nothing right


def main(argv: list[str] | None = None) -> int:
    from tqdm.auto import tqdm

    from egopress_core.assets import BASELINE_CHECKPOINT
    from egopress_core.data.hands import HAND_SOURCES, with_hands
    from egopress_core.data.sources import open_data_source
    from egopress_core.evaluation import scored_frames
    from egopress_core.files import write_json_atomic
    from egopress_core.metrics import PressureMetrics
    from egopress_core.model.bin_classifier import READOUTS, PerFrameBinClassifier
    from egopress_core.pipeline import EgoPressPipeline
    from quality import paired_bootstrap

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, nargs="+", help="held-out data folders")
    parser.add_argument("--checkpoint", default=str(BASELINE_CHECKPOINT), help="per-frame baseline checkpoint "
                        "(default: the shipped one)")
    parser.add_argument("--hands", default="estimated", choices=HAND_SOURCES, help="hand meshes (default estimated)")
    parser.add_argument("--out", help="also write the figures as JSON")
    args = parser.parse_args(argv)

    loaded = EgoPressPipeline.from_checkpoint(args.checkpoint)
    if not isinstance(loaded.model, PerFrameBinClassifier):
        parser.error(f"{args.checkpoint} holds a {type(loaded.model).__name__}, not the per-frame baseline")
    own = loaded.model.config.readout
    pipelines = {}
    for readout in READOUTS:
        model = PerFrameBinClassifier(loaded.model.config.replace(readout=readout))
        model.load_state_dict(loaded.model.state_dict())
        pipelines[readout] = EgoPressPipeline(model.eval(), loaded.uv_mask, hand=loaded.hand, runtime=loaded.runtime,
                                              crop=loaded.crop, contact=loaded.contact)

    results: dict[str, dict] = {}
    everywhere = ({readout: PressureMetrics() for readout in READOUTS}, {readout: {} for readout in READOUTS})
    for folder in args.data:
        pooled = {readout: PressureMetrics() for readout in READOUTS}
        per_sequence: dict[str, dict[str, dict]] = {readout: {} for readout in READOUTS}
        for source in tqdm(open_data_source(folder).sequences(), desc=folder, unit="seq"):
            batch = loaded.prepare_sequence(with_hands(source, args.hands))  # the hand stage runs once
            for readout, pipeline in pipelines.items():
                valid, scored, vertices = scored_frames(pipeline(batch))
                if not valid.any():
                    continue
                forces = dict(pred_force_n=pipeline.readout.uv_force(scored["pred"], vertices),
                              gt_force_n=pipeline.readout.uv_force(scored["gt"], vertices))
                alone = PressureMetrics()
                for metrics in (pooled[readout], everywhere[0][readout], alone):
                    metrics.update(scored["pred"], scored["gt"], **forces)
                row = {"volumetric_iou": alone.compute()["volumetric_iou"]}
                per_sequence[readout][source.name] = everywhere[1][readout][f"{folder}/{source.name}"] = row
        results[folder] = _summary(pooled, per_sequence, own, paired_bootstrap)
    if len(args.data) > 1:
        results["all folders"] = _summary(*everywhere, own, paired_bootstrap)

    _print(results, own)
    if args.out:
        write_json_atomic(args.out, {"command": " ".join(sys.argv), "checkpoint": args.checkpoint, "hands": args.hands,
                                     "checkpoint_readout": own, "results": results})
    return 0


def _summary(pooled, per_sequence, own: str, paired_bootstrap) -> dict:
    summary = {}
    for readout, metrics in pooled.items():
        computed = metrics.compute()
        values = np.array([row["volumetric_iou"] for row in per_sequence[readout].values()
                           if row["volumetric_iou"] is not None], dtype=float)
        summary[readout] = {
            **{key: computed[key] for key in KEYS},
            "per_sequence_mean_vol_iou": float(values.mean()) if len(values) else None,
            "sequences_scored": int(len(values)),
            f"sequences_below_{NOTHING}": int((values < NOTHING).sum()),
            "vs_checkpoint_readout": None if readout == own else paired_bootstrap(per_sequence[readout],
                                                                                  per_sequence[own]),
            "per_sequence": per_sequence[readout],
        }
    return summary


def _print(results: dict, own: str) -> None:
    for folder, summary in results.items():
        print(f"\n{folder}")
        print(f"{'readout':22s} " + " ".join(f"{key:>17s}" for key in KEYS) + "  per-seq mean  nothing  vs " + own)
        for readout, row in summary.items():
            paired = row["vs_checkpoint_readout"]
            versus = "" if paired is None else (f"{paired['mean_difference']:+.3f} "
                                                f"[{paired['ci95'][0]:+.3f}, {paired['ci95'][1]:+.3f}]")
            figures = " ".join("n/a".rjust(17) if row[key] is None else f"{row[key]:17.3f}" for key in KEYS)
            mean = row["per_sequence_mean_vol_iou"]
            print(f"{readout:22s} {figures}  {'n/a' if mean is None else f'{mean:12.3f}'}  "
                  f"{row[f'sequences_below_{NOTHING}']:3d}/{row['sequences_scored']:<3d}  {versus}")


if __name__ == "__main__":
    sys.exit(main())
