"""`egopress export-lerobot`: labelled bags -> a Hugging Face LeRobot dataset (format v3.0)."""

from __future__ import annotations

import argparse

from egopress_core.rosbag.topics import COLOR_TOPIC


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export-lerobot",
        help="write labelled bags as a LeRobot dataset (v3.0: parquet + mp4)",
        description=(
            "Turn bags labelled by `egopress label-bag` into one Hugging Face LeRobot dataset (format v3.0): the colour "
            "stream as mp4 video, and per frame the per-vertex pressure and contact flags, the downsampled UV-pressure "
            "map, total force, contact area, centre of pressure and hand joints. Each contiguous stretch of a bag is one "
            "episode. Load it with lerobot's LeRobotDataset(repo_id, root=OUT)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("bags", metavar="BAG", nargs="+",
                        help="labelled bag folder(s), or folders of them such as an `egopress label-bags` output folder "
                             "(every bag its manifest lists, which must all be labelled)")
    parser.add_argument("output", metavar="OUT", help="data set folder to create")
    parser.add_argument("--camera-topic", default=COLOR_TOPIC, help="colour image topic")
    parser.add_argument("--namespace", default="/egopress", help="namespace the bags were labelled with")
    parser.add_argument("--task", default="hand manipulation demonstration", help="task string of the episodes")
    parser.add_argument("--uv-size", type=int, nargs=2, metavar=("H", "W"), default=(32, 32),
                        help="size of the exported UV-pressure map (area-downsampled; smaller maps are kept)")
    parser.add_argument("--max-gap", type=float, default=1.0, help="a longer stamp jump starts a new episode, s")
    parser.add_argument("--fps", type=int, help="frame rate of the data set (default: the bags' median rate)")
    parser.add_argument("--video-codec", choices=("av1", "h264"), default="av1", help="mp4 video codec")
    parser.add_argument("--crf", type=int, default=30, help="video quality (lower is better)")
    parser.add_argument("--robot-type", help="info.json robot_type (default: none, human demonstrations)")
    parser.add_argument("--accept-loss", action="store_true",
                        help="export even if some messages of a bag cannot be read (damaged regions); the report lists them")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from egopress_core.export.lerobot import LeRobotExportOptions, export_lerobot
    from egopress_core.rosbag.fleet import labelled_bags_of

    options = LeRobotExportOptions(
        camera_topic=args.camera_topic, namespace=args.namespace, task=args.task, uv_size=tuple(args.uv_size),
        max_gap_s=args.max_gap, fps=args.fps, video_codec=args.video_codec, crf=args.crf, robot_type=args.robot_type,
    )  # fmt: skip
    bags = [bag for item in args.bags for bag in labelled_bags_of(item)]
    report = export_lerobot(bags, args.output, options, progress=not args.no_progress, accept_loss=args.accept_loss)
    print(f"wrote {report.output}: {report.episodes} episode(s), {report.frames} frames at {report.fps} fps, "
          f"video {report.image_size[1]}x{report.image_size[0]}, UV maps {report.uv_size[0]}x{report.uv_size[1]}, "
          f"{report.num_vertices} vertices")
    if report.frames_without_colour:
        print(f"  left out {report.frames_without_colour} labelled frame(s) whose colour image is missing from the bag")
    for bag in report.bags:
        for item in bag["unreadable"]:
            print(f"  {bag['bag']}: unreadable bag time {item['start_ns']}..{item['stop_ns']}: {item['error']}")
    return 0
