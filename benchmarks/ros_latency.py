"""The live chain through both ROS nodes, measured as `egopress bench --live` measures the library.

    . scripts/env.sh
    python benchmarks/ros_latency.py --quick --out benchmarks/results/cpu_DATE_ros_live.json
    python benchmarks/ros_latency.py --live-sequences 3 --live-frames 150   # the full bench's size
    python benchmarks/ros_latency.py --quick --backend mediapipe   # the camera-only path on both sides
    python benchmarks/ros_latency.py --quick --backend annotated   # no hand stage on either side

1. Library: `egopress bench --live` (:func:`egopress_core.bench.live.run_live_benchmark`) on the
   held-out sequences, in this process: frames added at 30 Hz wall clock with their annotated hand
   meshes, the model stepping whenever it is free.
2. ROS: ``hand_mesh_node`` (keypoints backend: the annotation's 21 joints published as a keypoint
   tracker would, fitted by the node) and ``pressure_node`` run as separate processes (real rclpy,
   Fast DDS, localhost) with the same checkpoint, sampler and torch threads. This process plays the
   same frames at the same rate as colour (rgb8), aligned depth (16UC1 mm, as a RealSense driver
   publishes it), camera_info and keypoints, stamped with the current time, and records each
   UVPressure's arrival. Latency = arrival - stamp. Twenty frames are played first, untimed (the
   library run warms up too). Between sequences it waits longer than the node's ``max_gap_s``, so
   that each sequence starts a fresh window as the library's fresh stream does; those expected
   restarts are not counted (the nodes' own /diagnostics counters include them and the warm-up).
3. The same figures from both (:func:`egopress_core.bench.live.live_section`: camera and output
   rate, latency p50 / p95, window restarts, frames without an estimate, Vol IoU against the
   offline pipeline on the same frames) side by side, with the ratio ROS / library.

What differs, by design: with ``--backend keypoints`` (the default) the ROS chain fits its hand
meshes from keypoints while the library uses the annotation's; with ``--backend annotated`` the
player publishes the annotation's ``HandMesh`` itself, stamped like the images, and only the
pressure node runs, so both sides carry the same work as `egopress bench --live`'s default (the
pressure stream alone); with ``--backend mediapipe`` both
run the camera-only path (the hand-mesh node on the colour and depth topics; the library with
``--live-hands estimated``, the hand stage in its camera thread), so both carry the same hand
stage and are scored against the offline estimate on that path's meshes. The ROS chain also
decodes and encodes messages, and its two nodes and this player share the machine's cores.

Prints a table and writes JSON (``--out``). The figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NS = 1_000_000_000
NODES = ("hand_mesh_node", "pressure_node")
# --backend choices: the hand-mesh node's backends this benchmark drives, and "annotated" (no
# hand-mesh node: the player publishes the annotation's mesh), with the library's --live-hands
# that does the same work.
BACKENDS = {"keypoints": "annotated", "mediapipe": "estimated", "annotated": "annotated"}


def nodes_of(backend: str) -> tuple[str, ...]:
    return ("pressure_node",) if backend == "annotated" else NODES
# Figures compared between the two runs (keys of the ``live`` section).
COMPARED = ("camera_fps", "output_fps", "latency_p50_ms", "latency_p95_ms", "window_resets", "frames_skipped",
            "vol_iou_ratio_to_offline", "mae_to_offline_kpa")


class Player:
    """Publishes frames as camera + keypoint topics and collects UVPressure maps by stamp.

    Its subscriptions are served by an executor on a thread of their own, which sleeps until a
    message arrives, and the caller publishes on its own clock: a loop of short ``spin_once``
    calls polls instead (a wait set rebuilt every 2 ms took 19-26 % of a core while waiting), on
    the cores the nodes it measures share."""

    def __init__(self, namespace: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from egopress_ros.msg import HandMesh, UVPressure

        self.node = Node("egopress_live_player", namespace=namespace)
        self.namespace = namespace
        self.publishers = {
            "color": self.node.create_publisher(Image, "color/image_raw", qos_profile_sensor_data),
            "depth": self.node.create_publisher(Image, "aligned_depth_to_color/image_raw", qos_profile_sensor_data),
            "info": self.node.create_publisher(CameraInfo, "color/camera_info", qos_profile_sensor_data),
            "keypoints": self.node.create_publisher(PointCloud2, "hand_keypoints", qos_profile_sensor_data),
            # Reliable, as the hand-mesh node publishes it.
            "hand_mesh": self.node.create_publisher(HandMesh, "hand_mesh", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)),
        }
        # Written by the executor thread, read by the caller's.
        self._lock = threading.Lock()
        self.maps: dict[int, np.ndarray] = {}
        self.arrived_ns: dict[int, int] = {}
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.node.create_subscription(UVPressure, "uv_pressure", self._on_pressure,
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, args=(rclpy,), name="player-executor", daemon=True)
        self._spinner.start()

    def _spin(self, rclpy) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except (ExternalShutdownException, rclpy.executors.ShutdownException):
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self._spinner.join(timeout=5.0)
        self.node.destroy_node()

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _on_pressure(self, msg) -> None:
        from egopress_core.messages import stamp_to_ns, uv_pressure_from_msg

        stamp, arrived = stamp_to_ns(msg.header.stamp), self.now_ns()
        uv_map = uv_pressure_from_msg(msg)
        with self._lock:
            self.arrived_ns[stamp] = arrived
            self.maps[stamp] = uv_map

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(self.namespace + "/"):
                node = status.name[len(self.namespace) + 1:].split(":")[0]
                with self._lock:
                    self.diagnostics[node] = {item.key: item.value for item in status.values}

    def received(self) -> tuple[dict[int, np.ndarray], dict[int, int], dict[str, dict[str, str]]]:
        """Copies of (maps by stamp, arrival time by stamp, the nodes' last /diagnostics values)."""
        with self._lock:
            return dict(self.maps), dict(self.arrived_ns), dict(self.diagnostics)

    def diagnostic(self, node: str, key: str, default: str = "") -> str:
        with self._lock:
            return self.diagnostics.get(node, {}).get(key, default)

    def wait_until(self, predicate, timeout_s: float, poll_s: float = 0.01) -> bool:
        """Sleep until ``predicate()`` holds (True) or ``timeout_s`` passes (False)."""
        end = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > end:
                return False
            time.sleep(poll_s)
        return True

    def sleep_until_ns(self, due_ns: int) -> None:
        left_ns = due_ns - self.now_ns()
        if left_ns > 0:
            time.sleep(left_ns / NS)

    def publish(self, record, stamp_ns: int, hand_mesh: bool = False) -> None:
        for key, msg in camera_messages(record, stamp_ns, hand_mesh).items():
            self.publishers[key].publish(msg)


def camera_messages(record, stamp_ns: int, hand_mesh: bool = False) -> dict:
    """What a RealSense-style driver and a keypoint tracker publish for one frame, and with
    ``hand_mesh`` what the hand-mesh node would, given the annotation's mesh."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from egopress_core import messages
    from egopress_ros.conversions import RCLPY

    header = Header(stamp=Time(sec=stamp_ns // NS, nanosec=stamp_ns % NS), frame_id="camera_color_optical_frame")
    height, width = record.rgb.shape[:2]
    info = CameraInfo(header=header, height=height, width=width, distortion_model="plumb_bob")
    info.k = np.asarray(record.intrinsics, dtype=np.float64).ravel()
    depth_mm = np.clip(np.nan_to_num(record.depth_m) * 1000.0 + 0.5, 0, 65535).astype(np.uint16)
    published = {"keypoints": messages.keypoints_point_cloud(RCLPY, record.joints, header), "info": info,
                 "depth": messages.image(RCLPY, depth_mm, "16UC1", header),
                 "color": messages.image(RCLPY, record.rgb, "rgb8", header)}
    if hand_mesh:
        published["hand_mesh"] = annotation_hand_mesh(record, header, stamp_ns)
    return published


@functools.lru_cache(maxsize=2)
def bundled_hand(side: str):
    """The bundled hand of ``side``, loaded once: the player publishes at camera rate, and loading
    it takes ~14 ms."""
    from egopress_core.hand.hand_model import load_hand_model

    return load_hand_model(side=side)


def annotation_hand_mesh(record, header, stamp_ns: int):
    """The HandMesh of a frame's annotation (its MANO parameters, vertices and joints)."""
    from egopress_core import messages
    from egopress_core.perception.types import HandMeshEstimate
    from egopress_ros.conversions import RCLPY

    hand = bundled_hand(record.hand_side)
    estimate = HandMeshEstimate(mano=record.mano, vertices=record.vertices, joints=record.joints, confidence=1.0,
                                estimator="ground_truth", hand_side=record.hand_side, hand_model=hand.name,
                                topology_id=hand.topology_id, stamp=stamp_ns / NS)  # fmt: skip
    return messages.hand_mesh(RCLPY, header, record.hand_side, hand.name, hand.topology_id, hand.num_vertices,
                              "ground_truth", estimate)


def start_nodes(namespace: str, checkpoint: str, sampling, threads: int, workdir: Path, env: dict,
                backend: str = "keypoints") -> dict:
    import yaml

    common = {"torch_threads": threads or 0, "diagnostics_period_s": 0.5}
    parameters = {
        "/**/hand_mesh_node": {"ros__parameters": {**common, "backend": backend}},
        "/**/pressure_node": {"ros__parameters": {
            **common, "checkpoint": checkpoint, "scheduler": sampling.scheduler,
            "num_inference_steps": sampling.num_inference_steps,
            "warm_start_strength": sampling.warm_start_strength}},
    }
    path = workdir / "parameters.yaml"
    path.write_text(yaml.safe_dump(parameters))
    processes = {}
    for name in nodes_of(backend):
        command = [sys.executable, "-m", f"egopress_ros.{name}", "--ros-args", "-r", f"__ns:={namespace}",
                   "--params-file", str(path)]
        processes[name] = subprocess.Popen(command, env=env, stdout=(workdir / f"{name}.log").open("w"),
                                           stderr=subprocess.STDOUT)
    return processes


def play_through_nodes(player: Player, sequence, live, max_gap_s: float, first: bool, hand_mesh: bool = False) -> dict:
    """One sequence at ``live.camera_fps`` through the nodes: a row as
    :func:`~egopress_core.bench.live.play_sequence` returns it. ``first``: the nodes have seen no
    frame before (no restart is expected at this sequence's first frame). ``hand_mesh``: publish
    the annotation's HandMesh with each frame (``--backend annotated``)."""
    records = [sequence.frame(index) for index in range(min(live.frames, len(sequence)))]
    # A gap longer than max_gap_s before the first frame: a fresh window, as the library's fresh stream.
    time.sleep(max_gap_s + 0.5)
    resets_before = int(player.diagnostic("pressure_node", "window_resets", "0"))
    # What the hand mesh node did with this sequence's frames: counted as the library's hand stage
    # counts them, so that frames_played / frames_skipped mean the same on both sides (the frames
    # that reached the pressure model, and those of them it never estimated).
    hand_stage_before = _hand_stage_counts(player, hand_mesh)
    period_ns = int(NS / live.camera_fps)
    started = player.now_ns()
    stamps = []
    for number, record in enumerate(records):
        player.sleep_until_ns(started + number * period_ns)
        stamp = player.now_ns()
        player.publish(record, stamp, hand_mesh=hand_mesh)
        stamps.append(stamp)
    # Outputs still in flight: until one model pass with no new output, at most 60 s.
    quiet_ns = 5 * NS
    player.wait_until(lambda: player.now_ns() - max([stamps[-1], *player.received()[1].values()]) > quiet_ns, 60.0)
    time.sleep(1.5)  # the diagnostics after the last pass
    maps, arrived_ns, _ = player.received()
    received = [stamp for stamp in stamps if stamp in maps]
    last = max([stamps[-1], *(arrived_ns[stamp] for stamp in received)])
    resets = int(player.diagnostic("pressure_node", "window_resets", "0")) - resets_before
    dropped, without_hand = (after - before for after, before in zip(_hand_stage_counts(player, hand_mesh),
                                                                      hand_stage_before))
    reached = len(stamps) - dropped - without_hand
    return {"name": sequence.name, "frames_played": reached, "frames_estimated": len(received),
            "frames_skipped": max(0, reached - len(received)),
            "frames_dropped_by_hand_stage": dropped, "frames_without_hand": without_hand,
            # The restart at a later sequence's first frame (after the gap) is the fresh stream's.
            "window_resets": resets if first else resets - 1,
            "elapsed_s": (last - stamps[0]) / NS,
            "camera_fps": (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / NS) if len(stamps) > 1 else 0.0,
            "latencies_s": [(arrived_ns[stamp] - stamp) / NS for stamp in received],
            "maps": {stamps.index(stamp): maps[stamp] for stamp in received}}


def _hand_stage_counts(player: Player, hand_mesh_published: bool) -> tuple[int, int]:
    """(sets dropped stale, sets without a hand) so far by the hand mesh node; (0, 0) when the
    player publishes the meshes itself."""
    if hand_mesh_published:
        return 0, 0
    return (int(player.diagnostic("hand_mesh_node", "sets_dropped_stale", "0")),
            int(player.diagnostic("hand_mesh_node", "frames_without_hand", "0")))


def run_ros(options, live, workdir: Path, progress: bool, backend: str = "keypoints") -> tuple[dict, dict]:
    """(the ``live`` section of the ROS run, the nodes' last /diagnostics values)."""
    import rclpy
    from tqdm.auto import tqdm

    from egopress_core.bench.live import live_section
    from egopress_core.bench.setup import held_out_sequences, load_pipeline
    from egopress_core.options import StreamOptions
    from egopress_core.runtime import resolve_device

    sequences = held_out_sequences(options, workdir, live.frames)[: live.sequences]
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    os.environ.update(ROS_DOMAIN_ID=env["ROS_DOMAIN_ID"], ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    namespace = f"/egopress_live_{uuid.uuid4().hex[:8]}"
    processes = start_nodes(namespace, options.checkpoint, live.sampling, options.threads, workdir, env, backend)
    nodes = nodes_of(backend)
    hand_mesh = backend == "annotated"
    rclpy.init()
    player = None
    try:
        player = Player(namespace)
        ready = player.wait_until(lambda: all(player.diagnostic(name, "state") == "active" for name in nodes)
                                  and player.publishers["color"].get_subscription_count() >= len(nodes), 180.0)
        if not ready:
            raise RuntimeError("the nodes did not become active within 180 s; see "
                               + ", ".join(str(workdir / f"{name}.log") for name in processes))
        # Untimed warm-up, as bench --live warms its pipeline up: 20 frames through both nodes.
        play_through_nodes(player, sequences[0], dataclasses.replace(live, frames=20), StreamOptions().max_gap_s,
                           first=True, hand_mesh=hand_mesh)
        played = [play_through_nodes(player, sequence, live, StreamOptions().max_gap_s, first=False, hand_mesh=hand_mesh)
                  for sequence in tqdm(sequences, desc="ros live", unit="seq", disable=not progress)]
        diagnostics = player.received()[2]
    finally:
        for process in processes.values():
            process.send_signal(2)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if player is not None:
            player.close()
        rclpy.try_shutdown()
    pipeline, _, _ = load_pipeline(options, resolve_device(options.device), video_model_only=False)
    if backend == "mediapipe":
        # Scored against the offline estimate on the camera-only path's meshes, as the library's.
        from egopress_core.data.hands import with_hands

        sequences = [with_hands(sequence, "estimated") for sequence in sequences]
    return live_section(pipeline, sequences, played, live), diagnostics


def main() -> int:
    from egopress_core.assets import DEFAULT_CHECKPOINT
    from egopress_core.files import write_json_atomic
    from egopress_core.bench import BenchOptions
    from egopress_core.bench.live import LiveBenchOptions, format_live, quick_live_options, run_live_benchmark
    from egopress_core.cli.bench import LIVE_SIZE_HELP

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="checkpoint of either kind (default: the package's default)")
    parser.add_argument("--quick", action="store_true", help="as bench --live --quick: `egopress demo`'s held-out set")
    parser.add_argument("--live-sequences", type=int, help=f"sequences played ({LIVE_SIZE_HELP['sequences']})")
    parser.add_argument("--live-frames", type=int, help=f"frames per sequence ({LIVE_SIZE_HELP['frames']})")
    parser.add_argument("--data", help="held-out data folder (generated there if missing; default: a temporary one)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of each process (default: torch's own, as the nodes' torch_threads: 0)")
    parser.add_argument("--backend", choices=tuple(BACKENDS), default="keypoints",
                        help="the hand-mesh node's backend (mediapipe runs the library with --live-hands estimated), "
                             "or annotated: no hand-mesh node, the player publishes the annotation's meshes")
    parser.add_argument("--skip-library", action="store_true", help="only the ROS run")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    live = quick_live_options() if args.quick else LiveBenchOptions()
    changes = {"sequences": args.live_sequences, "frames": args.live_frames, "hands": BACKENDS[args.backend]}
    live = dataclasses.replace(live, **{key: value for key, value in changes.items() if value is not None})
    with tempfile.TemporaryDirectory(prefix="egopress_ros_live_") as scratch:
        workdir = Path(scratch)
        options = BenchOptions(checkpoint=args.checkpoint, device="cpu", threads=args.threads,
                               data=args.data or str(workdir / "held_out"), quality_sequences=live.sequences)
        library = None
        if not args.skip_library:
            library = run_live_benchmark(options, live, progress=not args.no_progress)
            print("library (egopress bench --live):\n" + format_live(library["live"]))
        ros, diagnostics = run_ros(options, live, workdir, progress=not args.no_progress, backend=args.backend)
    print(f"ROS ({' + '.join(nodes_of(args.backend))}):\n" + format_live(ros))
    report = {
        "benchmark": "benchmarks/ros_latency.py",
        "machine": library["machine"] if library else {"cpu_count": os.cpu_count()},
        "load_average_end": os.getloadavg(),
        "checkpoint": args.checkpoint, "threads": args.threads, "backend": args.backend,
        "library": None if library is None else library["live"], "ros": ros,
        "ros_over_library": {} if library is None else {
            key: (None if not library["live"][key] or ros[key] is None else ros[key] / library["live"][key])
            for key in COMPARED},
        "node_diagnostics": {node: {key: values.get(key) for key in (
            "sets_complete", "frames_published", "sets_dropped_stale", "frames_without_hand", "window_resets",
            "processing_p50_ms", "processing_p95_ms", "intake_p50_ms", "intake_p95_ms", "latency_p50_ms",
            "latency_p95_ms", "output_rate_hz")} for node, values in diagnostics.items()},
    }
    if library is not None:
        print(f"\n{'figure':28s} {'library':>10s} {'ROS':>10s} {'ROS/lib':>8s}")
        for key in COMPARED:
            mine, theirs, ratio = library["live"][key], ros[key], report["ros_over_library"][key]
            show = lambda value: "n/a" if value is None else f"{value:10.3g}"  # noqa: E731
            print(f"{key:28s} {show(mine):>10s} {show(theirs):>10s} {'n/a' if ratio is None else f'{ratio:8.2f}'}")
    if args.out:
        write_json_atomic(args.out, report, default=str)
        print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
