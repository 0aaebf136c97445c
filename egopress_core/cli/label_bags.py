"""`egopress label-bags`: label a fleet of rosbag2 recordings on a Ray cluster (local by
default), each bag exactly as `egopress label-bag` would."""

from __future__ import annotations

import argparse

from egopress_core.cli.label_bag import add_label_arguments, label_options_from


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "label-bags",
        help="label many bags on a Ray cluster (local or --address), as label-bag would each",
        description=(
            "Label every bag of the inputs (bag folders, .mcap / .db3 files, folders of bags, glob patterns, or text "
            "files listing one bag or folder per line) into OUT_DIR/<relative path>, with the same options and the "
            "same output bytes as `egopress label-bag`. Runs on Ray: a local instance by default, or an existing "
            "cluster with --address; one worker per GPU (or per --cpus-per-worker CPUs) holds a loaded model, and "
            "each bag is split into batches that any worker labels, so one long bag spreads over all of them. A "
            "worker that dies is restarted and its batch run again elsewhere; a bag that fails is reported and the "
            "others go on. OUT_DIR/manifest.json lists each bag's status, counts, report and error. Rerunning the "
            "same command skips finished bags and resumes the others. Every node must see the inputs and OUT_DIR "
            "at the same paths (a shared file system)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", metavar="INPUT", nargs="+",
                        help="bag, folder of bags, glob pattern (quote it) or text file listing bags; only read")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created); a rerun into it resumes")
    add_label_arguments(parser)
    fleet = parser.add_argument_group("cluster")
    fleet.add_argument("--address", help="Ray cluster to join: auto (the one started on this machine with `ray start`) "
                                         "or HOST:PORT of its head (default: start a local Ray instance)")
    fleet.add_argument("--workers", type=int, help="workers (default: one per GPU of the cluster, or one per "
                                                   "--cpus-per-worker CPUs without GPUs)")
    fleet.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs each worker reserves (its torch threads)")
    parser.add_argument("--accept-loss", action="store_true",
                        help="keep each output even if some of its input messages could not be read into it (as label-bag)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from egopress_core.errors import ConfigError, DataError
    from egopress_core.rosbag.fleet import label_bags

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1. Got {args.workers}")
    if args.cpus_per_worker <= 0:
        raise ConfigError(f"--cpus-per-worker must be positive. Got {args.cpus_per_worker}")
    from egopress_core.rosbag.fleet import MANIFEST_NAME

    try:
        report = label_bags(args.inputs, args.out_dir, label_options_from(args), address=args.address,
                            workers=args.workers, cpus_per_worker=args.cpus_per_worker, accept_loss=args.accept_loss,
                            progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"rerun the same command to resume (the saved batches are kept; {args.out_dir}/{MANIFEST_NAME} lists "
              "each bag's state)")
        raise
    print(report.summary())
    failed = report.failed
    if failed:
        names = ", ".join(entry["output"] for entry in failed[:5]) + (", ..." if len(failed) > 5 else "")
        raise DataError(f"{len(failed)} of {len(report.bags)} bags were not labelled ({names}); see {report.manifest}, fix "
                        "them and rerun the same command (the finished bags are skipped)")
    return 0
