"""The camera side of test_ros_nodes.py, run as its own process: plays a synthetic sequence to the
live nodes as RealSense-style topics, injects bad input, and records what the nodes publish.

    python ros_node_driver.py --namespace /egopress_t1 --data DATA/seq_00000 \
        --checkpoint CKPT --out report.json

The nodes must run in the same namespace (``-r __ns:=...``); the hand mesh node with the
``keypoints`` backend (the driver publishes the sequence's ground-truth joints as the keypoints a
tracker would), the pressure node started with a checkpoint that does not exist, which the
driver fixes through the lifecycle and parameter services.

Phases (each recorded under ``phases`` with the stamps published and what came back):
    lifecycle   pressure node unconfigured -> set checkpoint -> configure -> activate
    lockstep    good frames one at a time, waiting for each frame's HandContact
    burst       frames published back to back (stale sets must be dropped, not queued)
    bad_*       one bad input each, confirmed by the node's diagnostics, then a good frame
The report (JSON) holds per-message summaries (stamps, sizes, value ranges) and the latest
/diagnostics of both nodes. Every wait is bounded; a wait that expires is recorded, not fatal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

FPS = 30.0
NS = 1_000_000_000
BASE_STAMP_NS = 1_700_000_000 * NS
LENS_DISTORTION = (-0.0551, 0.0663, 0.0003, 0.0007, -0.0212)
FRAME_ID = "camera_color_optical_frame"
NODES = ("hand_mesh_node", "pressure_node")


def _nan_to_none(value: float):
    return None if isinstance(value, float) and math.isnan(value) else value


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * NS + int(header.stamp.nanosec)


class Driver:
    def __init__(self, namespace: str, data: Path, timeout_s: float) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from visualization_msgs.msg import Marker

        from egopress_ros.msg import HandContact, HandMesh, UVPressure

        self.rclpy = rclpy
        self.deadline = time.monotonic() + timeout_s
        self.rgb = np.load(data / "rgb.npy", mmap_mode="r")
        self.depth_mm = np.load(data / "depth_mm.npy", mmap_mode="r")
        self.joints = np.load(data / "joints.npy", mmap_mode="r")
        self.vertices = np.load(data / "vertices.npy", mmap_mode="r")
        self.intrinsics = np.load(data / "intrinsics.npy")
        self.namespace = namespace
        rclpy.init()
        self.node = Node("egopress_test_camera", namespace=namespace)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = {
            "color": self.node.create_publisher(Image, "color/image_raw", qos),
            "depth": self.node.create_publisher(Image, "aligned_depth_to_color/image_raw", qos),
            "info": self.node.create_publisher(CameraInfo, "color/camera_info", qos),
            "keypoints": self.node.create_publisher(PointCloud2, "hand_keypoints", qos),
        }
        from rosgraph_msgs.msg import Clock

        # Simulated time for nodes run with use_sim_time: the newest frame's stamp, like a bag
        # replayed with --clock.
        self.clock_pub = self.node.create_publisher(Clock, "/clock", 10)
        self.received: dict[str, list] = defaultdict(list)
        self.frame_of_stamp: dict[int, int] = {}
        self.diagnostics: dict[str, dict] = {}
        outputs = {
            "hand_mesh": (HandMesh, self._hand_mesh), "uv_pressure": (UVPressure, self._uv_pressure),
            "hand_contact": (HandContact, self._hand_contact), "uv_pressure/image": (Image, self._image),
            "uv_pressure/image_raw": (Image, self._image), "hand_contact/points": (PointCloud2, self._points),
            "hand_contact/marker": (Marker, self._marker), "hand_mesh/marker": (Marker, self._marker),
        }
        for topic, (msg_type, summarise) in outputs.items():
            self.node.create_subscription(msg_type, topic, lambda msg, t=topic, f=summarise: self._record(t, f(msg)),
                                          QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.published_at: dict[int, float] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, 50)

    # -- summaries of what the nodes publish -------------------------------------------------

    def _record(self, topic: str, summary: dict) -> None:
        summary["received_after_s"] = time.monotonic() - self.published_at.get(summary["stamp"], float("nan"))
        self.received[topic].append(summary)

    def _hand_mesh(self, msg) -> dict:
        vertices = np.array([(p.x, p.y, p.z) for p in msg.vertices], dtype=np.float64)
        stamp = _stamp_ns(msg.header)
        frame = self.frame_of_stamp.get(stamp)
        error = None
        if frame is not None and msg.confidence > 0 and vertices.shape == self.vertices[frame].shape:
            error = float(np.abs(vertices - self.vertices[frame]).max())
        return {"stamp": stamp, "frame_id": msg.header.frame_id, "confidence": float(msg.confidence),
                "num_vertices": len(vertices), "all_nan": bool(np.isnan(vertices).all()),
                "max_vertex_error_m": error, "estimator": msg.estimator, "topology_id": msg.topology_id,
                "hand_side": int(msg.hand_side)}

    def _uv_pressure(self, msg) -> dict:
        image = msg.map
        pressure = np.frombuffer(bytes(image.data), dtype="<f4").reshape(image.height, image.width) if image.encoding == "32FC1" else np.zeros((0, 0))
        return {"stamp": _stamp_ns(msg.header), "frame_id": msg.header.frame_id, "map_stamp": _stamp_ns(image.header),
                "encoding": image.encoding, "shape": [int(image.height), int(image.width)], "step": int(image.step),
                "min": float(pressure.min()), "max": float(pressure.max()), "finite": bool(np.isfinite(pressure).all()),
                "max_pressure_kpa": float(msg.max_pressure_kpa), "total_force_n": float(msg.total_force_n),
                "uv_layout_id": msg.uv_layout_id, "threshold": float(msg.contact_threshold_kpa),
                "data_hash": hash(bytes(image.data))}

    def _hand_contact(self, msg) -> dict:
        pressure = np.asarray(msg.vertex_pressure_kpa, dtype=np.float64)
        contact = np.asarray(msg.vertex_contact, dtype=bool)
        centre = [msg.center_of_pressure.x, msg.center_of_pressure.y, msg.center_of_pressure.z]
        return {"stamp": _stamp_ns(msg.header), "frame_id": msg.header.frame_id, "num_vertices": len(pressure),
                "num_flags": len(contact), "min": float(pressure.min()), "max": float(pressure.max()),
                "finite": bool(np.isfinite(pressure).all()),
                "flags_match_threshold": bool(np.array_equal(contact, pressure > msg.contact_threshold_kpa)),
                "num_contact": int(contact.sum()), "in_contact": bool(msg.in_contact),
                "contact_area_m2": float(msg.contact_area_m2), "total_force_n": float(msg.total_force_n),
                "center_of_pressure": [_nan_to_none(float(v)) for v in centre], "topology_id": msg.topology_id}

    def _image(self, msg) -> dict:
        return {"stamp": _stamp_ns(msg.header), "encoding": msg.encoding, "shape": [int(msg.height), int(msg.width)],
                "step": int(msg.step), "bytes": len(msg.data), "data_hash": hash(bytes(msg.data))}

    def _points(self, msg) -> dict:
        return {"stamp": _stamp_ns(msg.header), "width": int(msg.width), "height": int(msg.height),
                "fields": [field.name for field in msg.fields], "point_step": int(msg.point_step),
                "bytes": len(msg.data)}

    def _marker(self, msg) -> dict:
        return {"stamp": _stamp_ns(msg.header), "type": int(msg.type), "action": int(msg.action),
                "num_points": len(msg.points), "num_colors": len(msg.colors)}

    def _diagnostics(self, msg) -> None:
        for status in msg.status:
            for node in NODES:
                if status.name.startswith(f"{self.namespace}/{node}:"):
                    values = {kv.key: kv.value for kv in status.values}
                    self.diagnostics[node] = {"level": int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
                                              else int(status.level), "message": status.message, "values": values}

    # -- waiting ---------------------------------------------------------------------------

    def spin_until(self, predicate, timeout_s: float) -> bool:
        end = min(time.monotonic() + timeout_s, self.deadline)
        while not predicate():
            if time.monotonic() > end:
                return False
            self.rclpy.spin_once(self.node, timeout_sec=0.05)
        return True

    def spin_for(self, seconds: float) -> None:
        end = min(time.monotonic() + seconds, self.deadline)
        while time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=0.05)

    def stamps(self, topic: str) -> set[int]:
        return {item["stamp"] for item in self.received[topic]}

    def diagnostic_count(self, node: str, key: str) -> int:
        value = self.diagnostics.get(node, {}).get("values", {}).get(key)
        return int(float(value)) if value not in (None, "", "nan") else 0

    # -- publishing ------------------------------------------------------------------------

    def wait_for_subscribers(self, camera_subscribers: int, timeout_s: float) -> bool:
        """Until the keypoints reach the hand mesh node and the camera topics ``camera_subscribers``
        nodes (1: only the hand mesh node is active, 2: both)."""
        return self.spin_until(lambda: self.pub["keypoints"].get_subscription_count() >= 1
                               and all(self.pub[k].get_subscription_count() >= camera_subscribers
                                       for k in ("color", "depth", "info")), timeout_s)

    def _header(self, stamp_ns: int):
        from std_msgs.msg import Header

        from builtin_interfaces.msg import Time

        return Header(stamp=Time(sec=stamp_ns // NS, nanosec=stamp_ns % NS), frame_id=FRAME_ID)

    def _image_msg(self, pixels: np.ndarray, encoding: str, header, bytes_per_pixel: int):
        from sensor_msgs.msg import Image

        msg = Image(header=header, height=int(pixels.shape[0]), width=int(pixels.shape[1]), encoding=encoding,
                    is_bigendian=0, step=int(pixels.shape[1] * bytes_per_pixel))
        msg.data = np.ascontiguousarray(pixels).tobytes()
        return msg

    def publish_frame(self, frame: int, stamp_ns: int, color: str = "rgb8", depth: str = "16UC1",
                      depth_size: tuple[int, int] | None = None, nan_depth: bool = False, camera_info: bool = True,
                      hand: bool = True) -> None:
        """One frame of the sequence on every input topic (or a bad variant of it)."""
        from sensor_msgs.msg import CameraInfo, PointCloud2, PointField

        from rosgraph_msgs.msg import Clock

        header = self._header(stamp_ns)
        self.frame_of_stamp[stamp_ns] = frame
        self.published_at[stamp_ns] = time.monotonic()
        self.clock_pub.publish(Clock(clock=header.stamp))
        rgb = np.asarray(self.rgb[frame])
        if color == "rgb8":
            color_msg = self._image_msg(rgb, "rgb8", header, 3)
        elif color == "bgr8":
            color_msg = self._image_msg(rgb[:, :, ::-1], "bgr8", header, 3)
        else:  # a wrongly remapped topic: the depth stream on the colour topic
            color_msg = self._image_msg(np.asarray(self.depth_mm[frame], dtype="<u2"), color, header, 2)
        depth_mm = np.asarray(self.depth_mm[frame])
        if depth_size is not None:
            depth_mm = depth_mm[: depth_size[0], : depth_size[1]]
        if depth == "32FC1" or nan_depth:
            metres = depth_mm.astype("<f4") / 1000.0
            metres[depth_mm == 0] = np.nan
            if nan_depth:
                metres[:] = np.nan
            depth_msg = self._image_msg(metres, "32FC1", header, 4)
        else:
            depth_msg = self._image_msg(depth_mm.astype("<u2"), "16UC1", header, 2)
        info = CameraInfo(header=header, height=int(rgb.shape[0]), width=int(rgb.shape[1]), distortion_model="plumb_bob")
        info.k = self.intrinsics.astype(np.float64).ravel()
        # Small lens coefficients, as a driver publishes them for a near-pinhole colour camera (the
        # renders have none; ignored here, but the nodes must say once that they take images as rectified).
        info.d = np.array(LENS_DISTORTION)
        points = np.asarray(self.joints[frame], dtype="<f4") if hand else np.full((21, 3), np.nan, dtype="<f4")
        cloud = PointCloud2(header=header, height=1, width=21, is_bigendian=False, point_step=12, row_step=12 * 21,
                            is_dense=bool(hand))
        cloud.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, name in enumerate("xyz")]
        cloud.data = points.tobytes()
        self.pub["keypoints"].publish(cloud)
        if camera_info:
            self.pub["info"].publish(info)
        self.pub["depth"].publish(depth_msg)
        self.pub["color"].publish(color_msg)

    # -- lifecycle services ----------------------------------------------------------------

    def call(self, service_type, name: str, request, timeout_s: float = 20.0):
        client = self.node.create_client(service_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                return None
            future = client.call_async(request)
            self.rclpy.spin_until_future_complete(self.node, future, timeout_sec=timeout_s)
            return future.result() if future.done() else None
        finally:
            self.node.destroy_client(client)

    def _fqn(self, node: str) -> str:
        """A node's full name: ``node`` itself when absolute, else in this driver's namespace."""
        return node if node.startswith("/") else f"{self.namespace}/{node}"

    def lifecycle_state(self, node: str) -> str | None:
        from lifecycle_msgs.srv import GetState

        response = self.call(GetState, f"{self._fqn(node)}/get_state", GetState.Request())
        return None if response is None else response.current_state.label

    def change_state(self, node: str, transition_id: int) -> bool | None:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(id=transition_id))
        response = self.call(ChangeState, f"{self._fqn(node)}/change_state", request, timeout_s=60.0)
        return None if response is None else bool(response.success)

    def set_parameter(self, node: str, name: str, value: str | int) -> bool | None:
        """Set a string or integer parameter through the node's parameter service."""
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        typed = (ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value) if isinstance(value, str)
                 else ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=int(value)))
        request = SetParameters.Request(parameters=[Parameter(name=name, value=typed)])
        response = self.call(SetParameters, f"{self._fqn(node)}/set_parameters", request)
        return None if response is None else bool(response.results[0].successful)


def run(args: argparse.Namespace) -> dict:
    from lifecycle_msgs.msg import Transition

    driver = Driver(args.namespace, args.data, args.timeout)
    report: dict = {"phases": {}, "timeouts": []}
    clock = {"ns": BASE_STAMP_NS, "frame": 0}
    num_frames = driver.rgb.shape[0]

    def next_stamp(step: int = 1) -> tuple[int, int]:
        clock["ns"] += int(step * NS / FPS)
        clock["frame"] = (clock["frame"] + 1) % num_frames
        return clock["frame"], clock["ns"]

    def wait(name: str, predicate, timeout_s: float) -> bool:
        ok = driver.spin_until(predicate, timeout_s)
        if not ok:
            report["timeouts"].append(name)
        return ok

    def good_frame(phase: dict | None, timeout_s: float = 15.0, **options) -> int:
        frame, stamp = next_stamp()
        driver.publish_frame(frame, stamp, **options)
        if phase is not None:
            phase.setdefault("published", []).append(stamp)
        wait(f"HandContact for {stamp}", lambda: stamp in driver.stamps("hand_contact"), timeout_s)
        return stamp

    def bad_frame(name: str, node: str, counter: str, expect_contact: bool = False, **options) -> None:
        """A bad input, confirmed by the node's diagnostics counter, then a good frame."""
        phase = report["phases"].setdefault(name, {"published": []})
        before = driver.diagnostic_count(node, counter)
        frame, stamp = next_stamp()
        driver.publish_frame(frame, stamp, **options)
        phase["bad_stamp"] = stamp
        phase["counter"] = {"node": node, "key": counter, "before": before}
        wait(f"{name}: {node} {counter}", lambda: driver.diagnostic_count(node, counter) > before, 20.0)
        if expect_contact:
            wait(f"{name}: HandContact for {stamp}", lambda: stamp in driver.stamps("hand_contact"), 15.0)
        phase["counter"]["after"] = driver.diagnostic_count(node, counter)
        phase["recovery_stamp"] = good_frame(phase)

    # -- lifecycle: the pressure node started with a missing checkpoint ----------------------
    lifecycle: dict = {}
    report["phases"]["lifecycle"] = lifecycle
    lifecycle["connected"] = driver.wait_for_subscribers(1, 90.0)
    wait("pressure_node diagnostics", lambda: "pressure_node" in driver.diagnostics, 30.0)
    lifecycle["initial_state"] = driver.lifecycle_state("pressure_node")
    lifecycle["initial_diagnostics"] = driver.diagnostics.get("pressure_node")
    lifecycle["set_checkpoint"] = driver.set_parameter("pressure_node", "checkpoint", str(args.checkpoint))
    lifecycle["configure"] = driver.change_state("pressure_node", Transition.TRANSITION_CONFIGURE)
    lifecycle["activate"] = driver.change_state("pressure_node", Transition.TRANSITION_ACTIVATE)
    lifecycle["final_state"] = driver.lifecycle_state("pressure_node")
    lifecycle["hand_mesh_state"] = driver.lifecycle_state("hand_mesh_node")
    lifecycle["all_connected"] = driver.wait_for_subscribers(2, 30.0)

    # -- lockstep: every frame processed, in order ------------------------------------------
    lockstep: dict = {}
    report["phases"]["lockstep"] = lockstep
    for index in range(args.lockstep_frames):
        good_frame(lockstep, timeout_s=60.0 if index == 0 else 20.0)

    # -- burst: frames stamped 30 Hz apart, published back to back (faster than any model) ----
    burst: dict = {"published": []}
    report["phases"]["burst"] = burst
    started = time.monotonic()
    for _ in range(args.burst_frames):
        frame, stamp = next_stamp()
        driver.publish_frame(frame, stamp)
        burst["published"].append(stamp)
    burst["publish_seconds"] = time.monotonic() - started
    driver.spin_for(args.settle_s)
    # Then one lockstep frame: the pipeline is idle again afterwards.
    burst["after_stamp"] = good_frame(None)

    # -- bad input, each followed by a good frame ---------------------------------------------
    bad_frame("bad_color_encoding", "hand_mesh_node", "problems_color_image", color="16UC1")
    bad_frame("bad_size_mismatch", "hand_mesh_node", "problems_size_mismatch", depth_size=(64, 64))
    bad_frame("bad_nan_depth", "pressure_node", "problems_depth_invalid", expect_contact=True, nan_depth=True)
    bad_frame("bad_hand_lost", "pressure_node", "frames_without_hand", hand=False)
    # A missing camera_info: frames keep coming without it for longer than input_timeout_s.
    phase = report["phases"].setdefault("bad_missing_camera_info", {"published": []})
    before = driver.diagnostic_count("hand_mesh_node", "problems_missing_camera_info")
    phase["counter"] = {"node": "hand_mesh_node", "key": "problems_missing_camera_info", "before": before}
    phase["bad_stamps"] = []
    end = time.monotonic() + args.missing_info_s
    while time.monotonic() < end:
        frame, stamp = next_stamp()
        driver.publish_frame(frame, stamp, camera_info=False)
        phase["bad_stamps"].append(stamp)
        driver.spin_for(0.1)
    wait("missing camera_info reported", lambda: driver.diagnostic_count("hand_mesh_node", "problems_missing_camera_info") > before, 10.0)
    phase["counter"]["after"] = driver.diagnostic_count("hand_mesh_node", "problems_missing_camera_info")
    phase["recovery_stamp"] = good_frame(phase)
    # Time going backwards (a bag loop): 5 s back, then good frames on the new timeline.
    phase = report["phases"].setdefault("bad_time_backwards", {"published": []})
    before = driver.diagnostic_count("pressure_node", "problems_time_backwards")
    phase["counter"] = {"node": "pressure_node", "key": "problems_time_backwards", "before": before}
    clock["ns"] -= 5 * NS
    phase["bad_stamp"] = good_frame(phase)
    wait("time going backwards reported", lambda: driver.diagnostic_count("pressure_node", "problems_time_backwards") > before, 10.0)
    phase["counter"]["after"] = driver.diagnostic_count("pressure_node", "problems_time_backwards")
    phase["recovery_stamp"] = good_frame(phase)
    # Valid alternative encodings: bgr8 colour, 32FC1 depth in metres.
    phase = report["phases"].setdefault("alternative_encodings", {"published": []})
    phase["recovery_stamp"] = good_frame(phase, color="bgr8", depth="32FC1")
    # Final good frames, then the latest diagnostics.
    final: dict = {}
    report["phases"]["final"] = final
    for _ in range(2):
        good_frame(final)
    driver.spin_for(1.5)
    report["diagnostics_before_cycle"] = json.loads(json.dumps(driver.diagnostics))

    # Lifecycle cycle: deactivate (unsubscribed: no output), clean up (model dropped), configure
    # and activate again (output again).
    cycle: dict = {}
    report["phases"]["lifecycle_cycle"] = cycle
    cycle["deactivate"] = driver.change_state("pressure_node", Transition.TRANSITION_DEACTIVATE)
    cycle["state_after_deactivate"] = driver.lifecycle_state("pressure_node")
    frame, stamp = next_stamp()
    driver.publish_frame(frame, stamp)
    cycle["inactive_stamp"] = stamp
    wait("HandMesh while the pressure node is inactive", lambda: stamp in driver.stamps("hand_mesh"), 20.0)
    driver.spin_for(2.0)
    cycle["cleanup"] = driver.change_state("pressure_node", Transition.TRANSITION_CLEANUP)
    cycle["state_after_cleanup"] = driver.lifecycle_state("pressure_node")
    cycle["configure"] = driver.change_state("pressure_node", Transition.TRANSITION_CONFIGURE)
    cycle["activate"] = driver.change_state("pressure_node", Transition.TRANSITION_ACTIVATE)
    cycle["state_after_activate"] = driver.lifecycle_state("pressure_node")
    cycle["reconnected"] = driver.wait_for_subscribers(2, 30.0)
    cycle["active_stamp"] = good_frame(cycle)
    driver.spin_for(1.0)

    report["received"] = {topic: items for topic, items in driver.received.items()}
    report["diagnostics"] = driver.diagnostics
    report["frame_of_stamp"] = {str(stamp): frame for stamp, frame in driver.frame_of_stamp.items()}
    driver.node.destroy_node()
    driver.rclpy.try_shutdown()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--data", type=Path, required=True, help="a synthetic sequence folder (seq_XXXXX)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the good checkpoint to configure with")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds for the whole scenario")
    parser.add_argument("--lockstep-frames", type=int, default=8)
    parser.add_argument("--burst-frames", type=int, default=12)
    parser.add_argument("--settle-s", type=float, default=4.0)
    parser.add_argument("--missing-info-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    write_report(run(args), args.out)
    return 0


def write_report(report: dict, path: Path) -> None:
    """The driver's JSON report, written atomically (the test reads it after the driver exits)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(descriptor, "w") as stream:
        json.dump(report, stream)
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
