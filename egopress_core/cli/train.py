"""``egopress train``: train EgoPressDiff or the per-frame baseline (also ``ros2 run egopress_ros train``).

Examples::

    egopress train --config tiny --data /data/synth_small --out runs/tiny --max-steps 20
    egopress train --config compact --data /data/synth --out runs/compact --set optim.lr=2e-4
    egopress train --config baseline_compact --data /data/synth --out runs/baseline
    egopress train --config compact --data /data/synth --out runs/compact --resume
    accelerate launch --num_processes 4 -m egopress_core.cli.main train --config paper \\
        --data /data/EgoPressure --out runs/paper --set data.hand_side=right
    torchrun --nproc_per_node 2 -m egopress_core.cli.main train --config tiny --data D --out O
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train EgoPressDiff (or the per-frame baseline) on synthetic or EgoPressure data",
        description="Train EgoPressDiff, or with model.kind=bin_classifier (configs baseline_tiny, "
                    "baseline_compact) the PressureVision-style per-frame baseline on the same data and "
                    "schedule. Runs the same under `accelerate launch` / `torchrun` (DDP).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every config key can be set: --set optim.lr=1e-4 --set data.window.stride=4 "
               "--set model.overrides.pressure_max_kpa=150 --set validation.every_steps=200",
    )
    parser.add_argument("--config", default="compact",
                        help="tiny | compact | paper | baseline_tiny | baseline_compact | PATH.yaml "
                             "(default: compact)")
    parser.add_argument("--data", action="append", default=None, metavar="DIR",
                        help="training data folder (synthetic or EgoPressure root); repeat for several")
    parser.add_argument("--val-data", action="append", default=None, metavar="DIR",
                        help="validation data folder; repeat for several (default: held out of --data)")
    parser.add_argument("--out", required=True, metavar="OUT", help="run folder (checkpoints, logs, final model)")
    parser.add_argument("--max-steps", type=int, default=None, metavar="N", help="optimizer steps (optim.max_steps)")
    parser.add_argument("--until-step", type=int, default=None, metavar="K",
                        help="checkpoint and stop after step K, keeping the schedule of max_steps "
                             "(time-limited jobs; continue with --resume)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (YAML-typed), repeatable")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging

    import yaml

    from egopress_core.training.config import load_train_config

    updates: dict = {}
    if args.data:
        updates["data.train"] = list(args.data)
    if args.val_data:
        updates["data.val"] = list(args.val_data)
    if args.max_steps is not None:
        updates["optim.max_steps"] = args.max_steps
    config = load_train_config(args.config, args.overrides, updates)
    if args.print_config:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0

    from egopress_core.training.trainer import train

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("egopress_core").setLevel(logging.INFO)
    result = train(config, args.out, resume=args.resume, until_step=args.until_step, progress=not args.no_progress)
    from accelerate import PartialState

    if PartialState().is_main_process:
        where = result.model_dir if result.finished else result.checkpoint
        status = "finished" if result.finished else "stopped"
        print(f"egopress train: {status} at step {result.step} ({result.steps_per_second:.3g} steps/s); "
              f"loss {result.last_loss if result.last_loss is None else round(result.last_loss, 5)}; "
              f"{'model' if result.finished else 'checkpoint'}: {where}")
    return 0
