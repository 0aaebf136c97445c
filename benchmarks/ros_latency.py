"""End-to-end latency of the live ROS pipeline against the bare library on the same frames.

    . scripts/env.sh
    python benchmarks/ros_latency.py --seconds 20                      # tiny untrained checkpoint
    python benchmarks/ros_latency.py --checkpoint egopress_core/assets/checkpoints/egopressdiff_compact

1. Bare library: every frame of a synthetic sequence through exactly what the two nodes run
   (keypoints hand fit -> the pipeline's PressureStream.push, which includes the crop, the
   streaming EgoPressDiff window and the per-vertex contact), in this process, one frame after
   another.
2. ROS, 30 Hz stream: hand_mesh_node and pressure_node as separate processes (real rclpy, Fast
   DDS, localhost); this process publishes colour (rgb8), aligned depth (16UC1), camera_info and
   the frame's ground-truth joints as keypoints at ``--rate`` Hz, stamped with the current time,
   and times each HandContact's arrival. Latency = arrival - stamp. Frames the pipeline cannot keep
   up with are dropped by the nodes (latest set wins), so the latency includes waiting for the
   frame in progress.
3. ROS, lockstep: the next frame is published only when the previous one's HandContact arrived,
   stamped --rate Hz apart like the bare run (the hand fit and the pressure window warm-start as
   there), so there is no waiting: latency minus bare time is the ROS overhead (messages,
   conversions, synchronisation, the hop between the two nodes).

Prints a table and writes JSON (``--out``). The figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NS = 1_000_000_000


def _percentiles(values, quantiles=(50, 95)) -> dict[str, float]:
    if not len(values):
        return {f"p{q}": float("nan") for q in quantiles}
    return {f"p{q}": float(np.percentile(values, q)) for q in quantiles}


def prepare_data(args, workdir: Path) -> Path:
    if args.data is not None:
        return Path(args.data)
    from egopress_core.cli.main import main as egopress

    out = workdir / "synthetic"
    egopress(["synth", "--out", str(out), "--sequences", "1", "--frames", str(args.frames), "--image-size",
              str(args.image_size[0]), str(args.image_size[1]), "--no-progress"])
    return out / "seq_00000"


def prepare_checkpoint(args, workdir: Path) -> tuple[Path, str]:
    if args.checkpoint is not None:
        return Path(args.checkpoint), "given"
    import torch

    from egopress_core.data.sources import hand_uv_mask
    from egopress_core.pipeline import UV_MASK_FILE
    from egopress_core.model import EgoPressDiff, tiny_config

    mask = hand_uv_mask((16, 16), "right")
    torch.manual_seed(0)
    directory = workdir / "tiny_checkpoint"
    EgoPressDiff(tiny_config(uv_layout=mask.layout_id)).save_pretrained(directory)
    mask.save(directory / UV_MASK_FILE)
    return directory, "tiny (untrained, tiny_config)"


def load_frames(data: Path) -> dict[str, np.ndarray]:
    return {"rgb": np.load(data / "rgb.npy"), "depth_mm": np.load(data / "depth_mm.npy"),
            "joints": np.load(data / "joints.npy"), "intrinsics": np.load(data / "intrinsics.npy")}


def bare_library(frames: dict, checkpoint: Path, args) -> dict:
    """Per-frame seconds of the nodes' library work, in this process."""
    import dataclasses

    import torch

    from egopress_core.options import LIVE_SAMPLING, RuntimeOptions
    from egopress_core.perception import HandKeypoints, RGBDFrame, build_estimator
    from egopress_core.pipeline import EgoPressPipeline

    torch.set_num_threads(args.torch_threads)
    estimator = build_estimator("keypoints", side="right")
    # As the pressure node runs it: its default runtime (device auto), the sampler start_nodes gives it.
    pipeline = EgoPressPipeline.from_checkpoint(checkpoint, runtime=RuntimeOptions())
    live = pipeline.stream(sampling=dataclasses.replace(LIVE_SAMPLING, num_inference_steps=args.steps,
                                                        warm_start_strength=args.warm_start))
    fit_s, pressure_s = [], []
    count = len(frames["rgb"])
    for index in range(args.warmup_frames + args.bare_frames):
        frame = index % count
        rgb, depth = frames["rgb"][frame], frames["depth_mm"][frame].astype(np.float32) / 1000.0
        stamp = index / args.rate
        started = time.perf_counter()
        estimate = estimator.estimate(RGBDFrame(rgb, depth, frames["intrinsics"], stamp=stamp,
                                                keypoints=HandKeypoints(points_3d=frames["joints"][frame])))
        fitted = time.perf_counter()
        live.push(rgb, depth, frames["intrinsics"], stamp, estimate.vertices, estimate.joints)
        done = time.perf_counter()
        if index >= args.warmup_frames:
            fit_s.append(fitted - started)
            pressure_s.append(done - fitted)
    total = np.asarray(fit_s) + np.asarray(pressure_s)
    return {"frames": len(total), "hand_fit_s": _percentiles(fit_s), "pressure_s": _percentiles(pressure_s),
            "total_s": _percentiles(total), "mean_total_s": float(total.mean())}


class Camera:
    """Publishes the sequence as camera topics and times the HandContact replies."""

    def __init__(self, namespace: str, frames: dict) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from egopress_ros.msg import HandContact

        self.rclpy = rclpy
        self.frames = frames
        self.node = Node("egopress_latency_camera", namespace=namespace)
        self.namespace = namespace
        self.pub = {
            "color": self.node.create_publisher(Image, "color/image_raw", qos_profile_sensor_data),
            "depth": self.node.create_publisher(Image, "aligned_depth_to_color/image_raw", qos_profile_sensor_data),
            "info": self.node.create_publisher(CameraInfo, "color/camera_info", qos_profile_sensor_data),
            "keypoints": self.node.create_publisher(PointCloud2, "hand_keypoints", qos_profile_sensor_data),
        }
        self.arrivals: dict[int, int] = {}
        self.arrived_at: dict[int, float] = {}
        self.diagnostics: dict[str, dict] = {}
        self.node.create_subscription(HandContact, "hand_contact", self._on_contact,
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _on_contact(self, msg) -> None:
        stamp = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
        self.arrivals[stamp] = self.now_ns()
        self.arrived_at[stamp] = time.perf_counter()

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(self.namespace + "/"):
                node = status.name[len(self.namespace) + 1:].split(":")[0]
                self.diagnostics[node] = {kv.key: kv.value for kv in status.values}

    def spin_until(self, predicate, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > end:
                return False
            self.rclpy.spin_once(self.node, timeout_sec=0.01)
        return True

    def publish(self, index: int, stamp: int | None = None) -> int:
        """Frame ``index`` stamped ``stamp`` (default: now); returns the stamp."""
        stamp = self.now_ns() if stamp is None else stamp
        for key, msg in camera_messages(self.frames, index % len(self.frames["rgb"]), stamp).items():
            self.pub[key].publish(msg)
        return stamp


def camera_messages(frames: dict, frame: int, stamp_ns: int) -> dict:
    """The messages a RealSense-style driver (plus a keypoint tracker) publishes for one frame."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from egopress_core import messages
    from egopress_ros.conversions import RCLPY

    header = Header(stamp=Time(sec=stamp_ns // NS, nanosec=stamp_ns % NS), frame_id="camera_color_optical_frame")
    rgb = frames["rgb"][frame]
    info = CameraInfo(header=header, height=rgb.shape[0], width=rgb.shape[1], distortion_model="plumb_bob")
    info.k = frames["intrinsics"].astype(np.float64).ravel()
    return {"keypoints": messages.keypoints_point_cloud(RCLPY, frames["joints"][frame], header), "info": info,
            "depth": messages.image(RCLPY, frames["depth_mm"][frame].astype(np.uint16), "16UC1", header),
            "color": messages.image(RCLPY, rgb, "rgb8", header)}


def start_nodes(namespace: str, checkpoint: Path, args, workdir: Path, env: dict) -> dict:
    import yaml

    common = {"torch_threads": args.torch_threads, "diagnostics_period_s": 1.0}
    parameters = {
        "/**/hand_mesh_node": {"ros__parameters": {**common, "backend": "keypoints"}},
        "/**/pressure_node": {"ros__parameters": {**common, "checkpoint": str(checkpoint),
                                                  "num_inference_steps": args.steps,
                                                  "warm_start_strength": args.warm_start}},
    }
    path = workdir / "parameters.yaml"
    path.write_text(yaml.safe_dump(parameters))
    processes = {}
    for name in ("hand_mesh_node", "pressure_node"):
        command = [sys.executable, "-m", f"egopress_ros.{name}", "--ros-args", "-r", f"__ns:={namespace}",
                   "--params-file", str(path)]
        processes[name] = subprocess.Popen(command, env=env, stdout=(workdir / f"{name}.log").open("w"),
                                           stderr=subprocess.STDOUT)
    return processes


def stream(camera: Camera, args) -> dict:
    """--rate Hz for --warmup-s + --seconds; statistics over the measured part."""
    period = 1.0 / args.rate
    published: list[tuple[int, bool]] = []  # (stamp, measured)
    started = time.monotonic()
    next_time = started
    index = 0
    while time.monotonic() < started + args.warmup_s + args.seconds:
        camera.spin_until(lambda: time.monotonic() >= next_time, period + 1.0)
        measured = time.monotonic() >= started + args.warmup_s
        published.append((camera.publish(index), measured))
        index += 1
        next_time += period
    camera.spin_until(lambda: False, 3.0)  # the last frames in flight
    measured = [stamp for stamp, flag in published if flag]
    latencies = [(camera.arrivals[s] - s) / NS for s in measured if s in camera.arrivals]
    window = (measured[-1] - measured[0]) / NS if len(measured) > 1 else float("nan")
    return {"published": len(measured), "published_rate_hz": (len(measured) - 1) / window,
            "outputs": len(latencies), "output_rate_hz": len(latencies) / window,
            "dropped": len(measured) - len(latencies), "latency_s": _percentiles(latencies)}


def lockstep(camera: Camera, args) -> dict:
    """Frames stamped --rate Hz apart, as in the bare run (so the hand fit and the pressure window
    warm-start exactly as there), each published once the previous one came back; latency is
    wall time from publishing to the HandContact's arrival."""
    latencies = []
    base = camera.now_ns()
    for index in range(args.lockstep_frames):
        stamp = base + int(index * NS / args.rate)
        published = time.perf_counter()
        camera.publish(index, stamp)
        if camera.spin_until(lambda: stamp in camera.arrived_at, 30.0):
            latencies.append(camera.arrived_at[stamp] - published)
    return {"frames": args.lockstep_frames, "outputs": len(latencies), "latency_s": _percentiles(latencies),
            "mean_latency_s": float(np.mean(latencies)) if latencies else float("nan")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="EgoPressDiff checkpoint (default: a tiny untrained one)")
    parser.add_argument("--data", help="a synthetic sequence folder (default: generate one)")
    parser.add_argument("--frames", type=int, default=30, help="frames of the generated sequence")
    parser.add_argument("--image-size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate, Hz")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured streaming time")
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--lockstep-frames", type=int, default=20)
    parser.add_argument("--bare-frames", type=int, default=30)
    parser.add_argument("--warmup-frames", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="num_inference_steps")
    parser.add_argument("--warm-start", type=float, default=0.4, help="warm_start_strength")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="egopress_latency_") as scratch:
        workdir = Path(scratch)
        data = prepare_data(args, workdir)
        checkpoint, checkpoint_kind = prepare_checkpoint(args, workdir)
        frames = load_frames(data)
        print(f"frames {frames['rgb'].shape[1]}x{frames['rgb'].shape[2]}, checkpoint {checkpoint} ({checkpoint_kind})")
        bare = bare_library(frames, checkpoint, args)
        print(f"bare library: {bare['total_s']['p50'] * 1000:.0f} ms per frame (p50)")

        import rclpy

        env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        os.environ.update(ROS_DOMAIN_ID=env["ROS_DOMAIN_ID"], ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        namespace = f"/egopress_latency_{uuid.uuid4().hex[:8]}"
        processes = start_nodes(namespace, checkpoint, args, workdir, env)
        rclpy.init()
        try:
            camera = Camera(namespace, frames)
            ready = camera.spin_until(lambda: all(camera.diagnostics.get(n, {}).get("state") == "active"
                                                  for n in ("hand_mesh_node", "pressure_node"))
                                      and camera.pub["color"].get_subscription_count() >= 2, 120.0)
            if not ready:
                raise RuntimeError("the nodes did not become active within 120 s; see "
                                   + ", ".join(str(workdir / f"{n}.log") for n in processes))
            streamed = stream(camera, args)
            camera.spin_until(lambda: False, 2.0)
            node_diagnostics = dict(camera.diagnostics)
            stepped = lockstep(camera, args)
        finally:
            for process in processes.values():
                process.send_signal(2)
            for process in processes.values():
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            rclpy.try_shutdown()

    report = {
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "frame_size": list(frames["rgb"].shape[1:3]), "checkpoint": checkpoint_kind,
        "steps": args.steps, "warm_start_strength": args.warm_start, "torch_threads": args.torch_threads,
        "bare_library": bare, "stream": streamed, "lockstep": stepped,
        "ratio_stream_latency_p50_to_bare_p50": streamed["latency_s"]["p50"] / bare["total_s"]["p50"],
        "ratio_lockstep_latency_p50_to_bare_p50": stepped["latency_s"]["p50"] / bare["total_s"]["p50"],
        "ros_overhead_lockstep_p50_s": stepped["latency_s"]["p50"] - bare["total_s"]["p50"],
        "node_diagnostics": {node: {key: values.get(key) for key in (
            "sets_complete", "frames_published", "sets_dropped_stale", "processing_p50_ms", "processing_p95_ms",
            "latency_p50_ms", "latency_p95_ms", "output_rate_hz")} for node, values in node_diagnostics.items()},
    }
    ms = lambda seconds: f"{seconds * 1000:.0f} ms"  # noqa: E731
    print(f"\nmachine: {report['machine']['cpus']} CPUs, load average {report['machine']['load_average']}")
    print(f"bare library per frame   p50 {ms(bare['total_s']['p50'])}  p95 {ms(bare['total_s']['p95'])} "
          f"(hand fit p50 {ms(bare['hand_fit_s']['p50'])}, pressure p50 {ms(bare['pressure_s']['p50'])})")
    print(f"{args.rate:.0f} Hz stream          latency p50 {ms(streamed['latency_s']['p50'])}  "
          f"p95 {ms(streamed['latency_s']['p95'])}; output {streamed['output_rate_hz']:.2f} Hz of "
          f"{streamed['published_rate_hz']:.1f} Hz published; dropped {streamed['dropped']} of {streamed['published']}")
    print(f"lockstep                 latency p50 {ms(stepped['latency_s']['p50'])}  p95 {ms(stepped['latency_s']['p95'])}")
    print(f"latency / bare (p50)     stream {report['ratio_stream_latency_p50_to_bare_p50']:.2f}, "
          f"lockstep {report['ratio_lockstep_latency_p50_to_bare_p50']:.2f}; ROS overhead (lockstep p50 - bare p50) "
          f"{ms(report['ros_overhead_lockstep_p50_s'])}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.out.with_name(args.out.name + ".tmp")
        temporary.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(temporary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
