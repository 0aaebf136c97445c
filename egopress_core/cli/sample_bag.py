"""`egopress sample-bag`: write a small rosbag2 of synthetic egocentric RGB-D (RealSense topic
names, ground-truth hand and pressure), for the demo and for trying `egopress label-bag`."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from egopress_core.rosbag.sample import DEFAULT_IMAGE_SIZE

    parser = subparsers.add_parser(
        "sample-bag",
        help="write a small synthetic RGB-D rosbag2 (RealSense topics, ground truth)",
        description=(
            "Generate one synthetic sequence (the `egopress synth` generator, or a sequence of an existing synthetic "
            "data set) and write it as a rosbag2 with RealSense-style topics: /camera/color/image_raw (rgb8), "
            "/camera/aligned_depth_to_color/image_raw (16UC1 mm), /camera/color/camera_info, "
            "/camera/aligned_depth_to_color/camera_info, and the ground truth /ground_truth/hand_mesh "
            "(egopress_ros/HandMesh, for label-bag --backend ground_truth), /ground_truth/hand_keypoints "
            "(PointCloud2, for --backend keypoints) and /ground_truth/hand_contact (egopress_ros/HandContact)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out", metavar="OUT", help="bag folder to create (must not exist)")
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="mcap")
    parser.add_argument("--compression", choices=("none", "message", "file", "storage"), default="none",
                        help="zstd per message, per file, or per mcap chunk (storage)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the recording (30 Hz)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=DEFAULT_IMAGE_SIZE,
                        help="image size of the generated frames")
    parser.add_argument("--gesture", help="gesture of the generated sequence (default single_press)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from-synth", metavar="DIR", help="take the frames from this `egopress synth` folder")
    parser.add_argument("--sequence", help="sequence of --from-synth (default: the first)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from egopress_core.rosbag.sample import write_sample_bag

    info = write_sample_bag(
        args.out, seconds=args.seconds, storage=args.storage, compression=args.compression,
        image_size=tuple(args.image_size), gesture=args.gesture, seed=args.seed, synthetic_data=args.from_synth,
        sequence_name=args.sequence, progress=not args.no_progress,
    )  # fmt: skip
    print(f"wrote {info.path}: {info.frames} frames at {info.fps:g} Hz, {info.image_size[1]}x{info.image_size[0]}, "
          f"{info.storage} ({info.compression}), {info.size_bytes / 1e6:.1f} MB")
    for topic, msgtype in info.topics.items():
        print(f"  {topic}  {msgtype}")
    return 0
