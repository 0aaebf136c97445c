"""`egopress label-bag` (also `ros2 run egopress_ros label_bag`): label a rosbag2 recording
offline with hand meshes and EgoPressDiff pressure."""

from __future__ import annotations

import argparse

from egopress_core import options
from egopress_core.assets import DEFAULT_CHECKPOINT
from egopress_core.options import (
    OFFLINE_SAMPLING,
    ContactOptions,
    CropOptions,
    RuntimeOptions,
    SamplingOptions,
    StreamOptions,
)
from egopress_core.rosbag.label_options import BACKENDS
from egopress_core.rosbag.topics import (
    CAMERA_INFO_TOPIC,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    GROUND_TRUTH_KEYPOINTS_TOPIC,
    GROUND_TRUTH_MESH_TOPIC,
    TOPIC_OPTIONS,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "label-bag",
        help="label a rosbag2 (sqlite3 / mcap) with hand meshes and pressure, offline",
        description=(
            "Read a rosbag2 recording of RGB-D video (sqlite3 or mcap, compressed or not), estimate the hand mesh "
            "of every synchronised frame and the pressure on it with EgoPressDiff over whole segments (context from "
            "both directions), and write a new bag with every original message untouched plus HandMesh, UVPressure, "
            "HandContact and visualisation topics stamped with the source image times. The bag is written under a "
            "temporary name and renamed when complete; a report of what was skipped and why is saved as "
            "OUT.report.json. An interrupted run continues with --resume."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("input", metavar="IN", help="input rosbag2 folder (or a .mcap / .db3 file); only read")
    parser.add_argument("output", metavar="OUT", help="output bag folder to create")
    add_label_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    parser.add_argument("--accept-loss", action="store_true",
                        help="keep the output even if some input messages could not be read into it (damaged regions); "
                             "without it such a run fails, naming the topics and counts, and stays resumable")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)


def add_label_arguments(parser) -> None:
    """How a bag is labelled (the LabelOptions flags; `egopress label-bags` takes the same)."""
    parser.add_argument("--checkpoint", help="checkpoint folder of either model kind (default: the package's default, "
                        f"{DEFAULT_CHECKPOINT})")
    parser.add_argument("--backend", choices=BACKENDS, default="mediapipe",
                        help="hand-mesh estimator: ground_truth (HandMesh topic), keypoints (21-point PointCloud2 topic) "
                             "or mediapipe (from the colour image; optional dependency)")
    topics = parser.add_argument_group("input topics")
    topics.add_argument(TOPIC_OPTIONS["color"], dest="camera_topic", default=COLOR_TOPIC,
                        help="colour image (sensor_msgs/Image, or a JPEG / PNG CompressedImage)")
    topics.add_argument(TOPIC_OPTIONS["depth"], dest="depth_topic", default=DEPTH_TOPIC,
                        help="depth aligned to colour (16UC1 mm or 32FC1 m; or the .../compressedDepth CompressedImage "
                             "of compressed_depth_image_transport)")
    topics.add_argument(TOPIC_OPTIONS["camera_info"], dest="info_topic", default=CAMERA_INFO_TOPIC, help="colour camera_info")
    topics.add_argument(TOPIC_OPTIONS["hand_mesh"], dest="hand_mesh_topic", default=GROUND_TRUTH_MESH_TOPIC,
                        help="egopress_ros/HandMesh read by --backend ground_truth")
    topics.add_argument(TOPIC_OPTIONS["keypoints"], dest="keypoints_topic", default=GROUND_TRUTH_KEYPOINTS_TOPIC,
                        help="21 OpenPose-order keypoints (PointCloud2 x, y, z / u, v) read by --backend keypoints")
    topics.add_argument("--sync-slop", type=float, default=0.02, help="largest stamp difference of matched messages, s")
    topics.add_argument("--max-gap", type=float, default=StreamOptions().max_gap_s, help="a longer stamp jump starts a new segment, s")
    estimation = parser.add_argument_group("estimation")
    estimation.add_argument("--hand-model", help="MANO-format .pkl of the estimator (default: the checkpoint's hand)")
    estimation.add_argument("--depth-refinement", action="store_true", help="fit the hand surface to the depth (keypoints, mediapipe)")
    estimation.add_argument("--chunk-frames", type=int, help="frames per resumable chunk (default: 8 model windows)")
    estimation.add_argument("--context-frames", type=int, help="context frames each side of a chunk (default: half a window)")
    estimation.add_argument("--batch-size", type=int, default=1, help="chunks per model call")
    options.add_arguments(parser, SamplingOptions, OFFLINE_SAMPLING, title="sampling")
    options.add_arguments(parser, RuntimeOptions, title="runtime")
    options.add_arguments(parser, CropOptions, title="model input crop")
    options.add_arguments(parser, ContactOptions, title="contact")
    output = parser.add_argument_group("output")
    output.add_argument("--namespace", default="/egopress", help="prefix of the output topics")
    output.add_argument("--no-mirrors", action="store_true", help="leave out uv_pressure/image(_raw) and hand_contact/points")
    output.add_argument("--visualization-max-kpa", type=float, default=50.0, help="top of the colour scale, kPa")
    output.add_argument("--colormap", default="inferno", help="matplotlib colour map of uv_pressure/image")
    output.add_argument("--storage", choices=("sqlite3", "mcap"), help="output storage (default: as the input)")
    output.add_argument("--compression", choices=("none", "message", "file", "storage"), default="none",
                        help="zstd per message, per file, or per mcap chunk (storage)")
    output.add_argument("--bag-version", type=int, choices=(8, 9), default=8, help="rosbag2 metadata version")


def label_options_from(args: argparse.Namespace):
    """The LabelOptions of the flags :func:`add_label_arguments` added."""
    from egopress_core.rosbag.index import TopicSelection
    from egopress_core.rosbag.label_options import LabelOptions

    topics = TopicSelection(
        color=args.camera_topic, depth=args.depth_topic, camera_info=args.info_topic,
        hand_mesh=args.hand_mesh_topic if args.backend == "ground_truth" else None,
        keypoints=args.keypoints_topic if args.backend == "keypoints" else None,
    )  # fmt: skip
    return LabelOptions(
        checkpoint=args.checkpoint, backend=args.backend, topics=topics, hand_model_path=args.hand_model,
        depth_refinement=args.depth_refinement,
        sampling=options.from_arguments(args, SamplingOptions, OFFLINE_SAMPLING),
        runtime=options.from_arguments(args, RuntimeOptions), crop=options.from_arguments(args, CropOptions),
        contact=options.from_arguments(args, ContactOptions),
        chunk_frames=args.chunk_frames, context_frames=args.context_frames, batch_size=args.batch_size,
        sync_slop_s=args.sync_slop, max_gap_s=args.max_gap,
        namespace=args.namespace, mirrors=not args.no_mirrors, visualization_max_kpa=args.visualization_max_kpa,
        colormap=args.colormap, storage=args.storage, compression=args.compression, bag_version=args.bag_version,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from egopress_core.errors import EgoPressError
    from egopress_core.rosbag.label_options import report_path_for
    from egopress_core.rosbag.labeller import label_bag

    settings = label_options_from(args)
    try:
        report = label_bag(args.input, args.output, settings, resume=args.resume, progress=not args.no_progress,
                           accept_loss=args.accept_loss)
    except (EgoPressError, KeyboardInterrupt):
        path = report_path_for(args.output)
        if path.is_file():
            print(f"report: {path}")
        raise
    print(report.summary())
    print(f"report: {report_path_for(args.output)}")
    return 0
