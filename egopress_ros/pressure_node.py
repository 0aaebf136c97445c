"""Pressure node: colour + aligned depth + camera_info + HandMesh in, hand pressure out.

Inputs (relative names; the colour/depth/camera_info ones are remapped to the camera's):
    color/image_raw, aligned_depth_to_color/image_raw, color/camera_info   as the hand mesh node
    hand_mesh                                                               egopress_ros/HandMesh
Outputs (all with the source colour image's header; reliable QoS):
    uv_pressure             egopress_ros/UVPressure (32FC1 kPa map on the hand's UV atlas)
    hand_contact            egopress_ros/HandContact (per-vertex pressure, contact, force, CoP)
    uv_pressure/image       sensor_msgs/Image rgb8, the map colour-mapped (when subscribed)
    uv_pressure/image_raw   sensor_msgs/Image 32FC1 kPa, the map itself (when subscribed)
    hand_contact/points     sensor_msgs/PointCloud2 x, y, z, pressure, contact (when subscribed)
    hand_contact/marker     visualization_msgs/Marker, the mesh coloured by pressure (when subscribed)
    /diagnostics            diagnostic_msgs/DiagnosticArray

The four inputs are matched by stamp (the hand mesh node copies the colour image's header, so its
HandMesh carries the colour stamp exactly). Every set is added to the pipeline's stream
(:meth:`egopress_core.pipeline.EgoPressPipeline.stream`) as it arrives; a worker brings the sets
added since its previous pass into the model's window, runs the model on the newest window
whenever it is free and publishes every one of those frames, in order, each with its own image's
header. A slower machine publishes larger blocks further apart (frames that left the T-frame
window before a pass are counted as dropped) and the window always holds consecutive frames. A
HandMesh without a hand (confidence 0) produces no pressure message: a hand the tracker lost may
still be pressing, so "no contact" would be a false label for a recorder; the HandMesh itself
already says "no hand". A hand lost for longer than ``hand_lost_reset_s``, a gap longer than
``max_gap_s`` or a stamp going backwards restarts the window (and the warm start).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from egopress_core import messages as msgs
from egopress_core.assets import DEFAULT_CHECKPOINT
from egopress_core.errors import ConfigError, DataError
from egopress_core.options import (
    COMPILE_OFF,
    LIVE_SAMPLING,
    ContactOptions,
    CropOptions,
    RuntimeOptions,
    SamplingOptions,
    StreamOptions,
)
from egopress_core.visualize import colorize
from egopress_ros.conversions import RCLPY
from egopress_ros.node_base import (
    CAMERA_INFO_TOPIC,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    InputProblem,
    InputSpec,
    PipelineNode,
    run,
)
from egopress_ros.parameters import COMMON_PARAMETERS, ParameterSpec, option_parameters

NODE_NAME = "pressure_node"
HAND_MESH_TOPIC = "hand_mesh"
MARKER_NAMESPACE = "hand_contact"

# Model options come from egopress_core.options (names, defaults, help, choices and ranges), so
# the node, `egopress label-bag` / `eval` and config/pressure.yaml cannot disagree; the options
# module imports no torch, so reading this table stays cheap.
PARAMETERS = COMMON_PARAMETERS + (
    ParameterSpec("checkpoint", "", "Checkpoint folder of either model kind (config.json, model.safetensors, "
                  f"hand_uv_mask.json). Empty: the package's default, egopress_core/assets/checkpoints/"
                  f"{DEFAULT_CHECKPOINT.name} (README, \"Which model is the default\")."),
    ParameterSpec("hand_model_path", "", "MANO-format .pkl of the checkpoint's hand when the folder has no "
                  "hand_uv_mask.json (empty: the bundled EgoPress hand)."),
    *option_parameters(RuntimeOptions),
    *option_parameters(SamplingOptions, LIVE_SAMPLING),
    *option_parameters(CropOptions),
    *option_parameters(StreamOptions),
    *option_parameters(ContactOptions),
    ParameterSpec("visualization_max_kpa", 50.0, "Pressure shown as the top colour of uv_pressure/image and the "
                  "markers, kPa.", minimum=0.001),
    ParameterSpec("colormap", "inferno", "Matplotlib colour map of the visualisation mirrors."),
)


def options_of(config: dict[str, Any], cls: type) -> Any:
    """The ``cls`` options of the node's checked parameter values."""
    return cls(**{item.name: config[item.name] for item in dataclasses.fields(cls) if item.name in config})


class PressureNode(PipelineNode):
    """Lifecycle node running streaming EgoPressDiff on synchronised RGB-D + hand mesh sets."""

    PARAMETERS = PARAMETERS
    EXECUTABLE = NODE_NAME
    # The hand mesh node's /diagnostics tell why no HandMesh arrives (missing_input_message).
    WATCH_DIAGNOSTICS = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.pipeline = None
        self.stream = None
        self.outputs: dict[str, Any] = {}
        self.frames_without_hand = 0
        self.frames_never_estimated = 0
        self._skipped_seen = 0
        self._hand_lost_header = None
        self.checkpoint_path = ""

    def input_specs(self) -> list[InputSpec]:
        from sensor_msgs.msg import CameraInfo, Image

        from egopress_ros.msg import HandMesh

        return [InputSpec("color", COLOR_TOPIC, Image), InputSpec("depth", DEPTH_TOPIC, Image),
                InputSpec("camera_info", CAMERA_INFO_TOPIC, CameraInfo), InputSpec("hand_mesh", HAND_MESH_TOPIC, HandMesh)]

    # -- lifecycle hooks -------------------------------------------------------------------

    def load(self) -> None:
        from matplotlib import colormaps

        from egopress_core.pipeline import EgoPressPipeline
        from egopress_core.runtime import check_runtime

        config = self.config
        if config["colormap"] not in colormaps:
            raise ConfigError(f"colormap {config['colormap']!r} is not a matplotlib colour map")
        if not config["checkpoint"] and not DEFAULT_CHECKPOINT.is_dir():
            raise ConfigError(f"no checkpoint parameter given and the default checkpoint {DEFAULT_CHECKPOINT} is missing; "
                              "set checkpoint to a trained model folder")
        # Every option set is built (and validated) now, and the device checked, so that a bad
        # value fails configure, not activate.
        self.runtime = options_of(config, RuntimeOptions)
        self.sampling = options_of(config, SamplingOptions)
        self.stream_options = options_of(config, StreamOptions)
        check_runtime(self.runtime)
        # Loaded on the CPU in fp32; activate moves it to the device at its precision (and
        # deactivate back).
        self.pipeline = EgoPressPipeline.from_checkpoint(
            config["checkpoint"] or None, runtime=RuntimeOptions(device="cpu"), sampling=self.sampling,
            crop=options_of(config, CropOptions), contact=options_of(config, ContactOptions),
            hand_side=config["hand_side"], hand_model_path=config["hand_model_path"] or None)
        self._replace_stream()
        self.checkpoint_path = str(self.pipeline.checkpoint)
        self.get_logger().info(f"loaded {self.checkpoint_path}: window {self.pipeline.window_length} frames, images "
                               f"{self.pipeline.image_size}, UV {self.pipeline.uv_size}, {self.pipeline.hand_side} hand "
                               f"({self.pipeline.topology_id})")
        if not self.pipeline.is_video_model:
            self.get_logger().info(f"{type(self.pipeline.model).__name__} is the per-frame baseline: each frame is "
                                   "estimated on its own, the sampler parameters do not apply")

    def to_device(self) -> None:
        if self.pipeline is not None:
            self.pipeline.to(self.runtime)
            self._replace_stream()

    def release(self) -> None:
        if self.pipeline is not None and self.pipeline.device.type != "cpu":
            self.pipeline.to(RuntimeOptions(device="cpu", compile_mode=COMPILE_OFF))
            self._replace_stream()

    def unload(self) -> None:
        from egopress_core.runtime import release_accelerator_memory

        self.pipeline = None
        self._replace_stream()
        release_accelerator_memory()

    def _replace_stream(self) -> None:
        """A fresh stream on the pipeline as it is now (None without one); the frames the old
        stream had not estimated count as dropped."""
        old = self.stream
        if old is not None:
            self.frames_never_estimated += old.frames_skipped - self._skipped_seen + old.pending
        self.stream = None if self.pipeline is None else self.pipeline.stream(self.sampling, self.stream_options)
        self._skipped_seen = 0

    def create_outputs(self, qos) -> None:
        from sensor_msgs.msg import Image, PointCloud2
        from visualization_msgs.msg import Marker

        from egopress_ros.msg import HandContact, UVPressure

        self.outputs = {
            "uv_pressure": self.lifecycle_publisher(UVPressure, "uv_pressure", qos),
            "hand_contact": self.lifecycle_publisher(HandContact, "hand_contact", qos),
            "image": self.lifecycle_publisher(Image, "uv_pressure/image", qos),
            "image_raw": self.lifecycle_publisher(Image, "uv_pressure/image_raw", qos),
            "points": self.lifecycle_publisher(PointCloud2, "hand_contact/points", qos),
            "marker": self.lifecycle_publisher(Marker, "hand_contact/marker", qos),
        }

    # -- per frame -------------------------------------------------------------------------

    def accept(self, messages: dict[str, Any]) -> None:
        """Every synchronised set is decoded and added to the stream at camera rate (on the
        executor thread: checks and bookkeeping only, so that it holds Python's GIL briefly beside
        a pass); the worker's next pass prepares, encodes and estimates all the frames added since
        its previous one, so the window keeps consecutive frames however slow the model is
        (``docs/design.md``, "Live streaming")."""
        from egopress_core.stream import ResetCause

        pipeline, stream = self.pipeline, self.stream
        if pipeline is None or stream is None:
            return
        names = self.topic_names()
        camera = self.camera_input(messages, without_depth="the model sees no depth for this frame")
        try:
            mesh = msgs.hand_mesh_from_msg(messages["hand_mesh"])
        except DataError as error:
            raise InputProblem("hand_mesh", f"HandMesh on '{names['hand_mesh']}': {error}") from None
        if mesh.hand_side != pipeline.hand_side:
            raise InputProblem("hand_side", f"HandMesh on '{names['hand_mesh']}' is of the {mesh.hand_side} hand; "
                               f"the checkpoint estimates the {pipeline.hand_side} hand")
        has_hand = mesh.has_hand
        if has_hand and mesh.topology_id != pipeline.topology_id:
            raise InputProblem("topology", f"HandMesh on '{names['hand_mesh']}' has topology {mesh.topology_id!r}; the "
                               f"checkpoint's hand is {pipeline.topology_id!r} (set the same hand_model_path on both nodes)")
        stamp_s = msgs.stamp_to_seconds(camera.header.stamp)
        try:
            entered = stream.add(camera.rgb, camera.depth_m, camera.intrinsics, stamp_s,
                                 mesh.vertices if has_hand else None, mesh.joints if has_hand else None,
                                 tag=(camera.header, mesh.vertices))
        except DataError as error:
            raise InputProblem("frame", f"frame at {stamp_s:.3f} s skipped: {error}") from None
        reset = stream.last_reset
        if reset is not None:
            if reset.cause is ResetCause.TIME_BACKWARDS:
                self.problems.report("time_backwards", f"input stamps went backwards ({reset.message}); the window was restarted")
            else:
                self.problems.report("window_restart", f"window restarted: {reset.message}")
        if not entered:
            self.frames_without_hand += 1
        # The newest frame's hand state, for the worker: after the frames before it, its marker
        # is deleted when it shows no hand.
        self._hand_lost_header = None if entered else camera.header
        self.slot.put(stream)

    def process(self, stream) -> None:
        """One model pass over the newest window; publishes every frame it estimated, in order."""
        if stream is not self.stream:
            return  # the stream was rebuilt (deactivate / activate) since this wake-up
        estimates = stream.step()
        skipped, self._skipped_seen = stream.frames_skipped - self._skipped_seen, stream.frames_skipped
        self.frames_never_estimated += skipped
        for _ in range(skipped):
            self.drops.add(True)
        for estimate in estimates:
            header, vertices = estimate.tag
            self._publish(estimate, header, vertices)
            self.drops.add(False)
        lost = self._hand_lost_header
        if lost is not None and stream.pending == 0 and self.wanted(self.outputs["marker"]):
            self._hand_lost_header = None
            self.outputs["marker"].publish(msgs.delete_marker(RCLPY, lost, MARKER_NAMESPACE))

    def sets_dropped(self) -> int:
        return self.frames_never_estimated

    def _publish(self, estimate, header, vertices) -> None:
        pipeline, config, outputs = self.pipeline, self.config, self.outputs
        side = pipeline.hand_side
        outputs["uv_pressure"].publish(msgs.uv_pressure(
            RCLPY, estimate.uv_pressure_kpa, header, side, pipeline.uv_layout_id, config["contact_threshold_kpa"],
            estimate.uv_total_force_n))
        outputs["hand_contact"].publish(msgs.hand_contact(RCLPY, estimate.contact, header, side, pipeline.topology_id))
        self.record_output(header.stamp)
        vmax = config["visualization_max_kpa"]
        if self.wanted(outputs["image"]):
            colours = colorize(estimate.uv_pressure_kpa, vmax, config["colormap"], mask=pipeline.uv_mask.mask)
            outputs["image"].publish(msgs.image(RCLPY, colours, "rgb8", header))
        if self.wanted(outputs["image_raw"]):
            outputs["image_raw"].publish(msgs.image(RCLPY, estimate.uv_pressure_kpa, "32FC1", header))
        if self.wanted(outputs["points"]):
            outputs["points"].publish(msgs.contact_point_cloud(RCLPY, vertices, estimate.contact, header))
        if self.wanted(outputs["marker"]):
            colours = colorize(estimate.contact.vertex_pressure_kpa, vmax, config["colormap"])
            outputs["marker"].publish(msgs.mesh_marker(RCLPY, vertices, pipeline.faces, header, MARKER_NAMESPACE,
                                                       colours=colours))

    # -- when no HandMesh arrives -------------------------------------------------------------

    def missing_input_message(self, key: str, age_s: float, flowing: str, flowing_count: int) -> str | None:
        """No HandMesh while the camera streams: say what the hand mesh side is doing (who
        publishes the topic, that node's lifecycle state and /diagnostics), not only topic names."""
        if key != "hand_mesh":
            return None
        names = self.topic_names()
        topic = names["hand_mesh"]
        return (f"no HandMesh on '{topic}' for {age_s:.1f} s while {flowing_count} messages arrived on '{names[flowing]}': "
                f"{self.hand_mesh_producers(topic)}; no pressure is estimated without it")

    def hand_mesh_producers(self, topic: str) -> str:
        """What the ROS graph and /diagnostics say about the nodes that should publish ``topic``."""
        try:
            publishers = [_node_fqn(info.node_namespace, info.node_name) for info in self.get_publishers_info_by_topic(topic)]
        except Exception:  # noqa: BLE001 - graph queries fail during shutdown
            publishers = []
        if publishers:
            described = []
            for fqn in sorted(set(publishers)):
                state, summary = self._peer_summary(fqn)
                hint = {"inactive": f": activate it (ros2 lifecycle set {fqn} activate)",
                        "active": ": it runs but produces no HandMesh (see its /diagnostics)"}.get(state, "")
                described.append(summary + hint)
            return "the hand mesh node publishes none: " + "; ".join(described)
        try:
            running = sorted(_node_fqn(namespace, name) for name, namespace in self.get_node_names_and_namespaces()
                             if name == "hand_mesh_node")
        except Exception:  # noqa: BLE001 - see above
            running = []
        running = running or sorted(fqn for fqn in self._peer_statuses if fqn.rsplit("/", 1)[-1] == "hand_mesh_node")
        if not running:
            return ("no node publishes it and no hand_mesh_node runs: start it in this node's namespace "
                    "(launch/pressure.launch.py starts both), or remap hand_mesh to the HandMesh topic")
        described = []
        for fqn in running:
            state, summary = self._peer_summary(fqn)
            if state == "unconfigured":
                summary += ": an unconfigured node has no publisher; configure and activate it"
            elif state in ("inactive", "active"):
                summary += f": it publishes elsewhere (check its namespace and the remapping of hand_mesh to '{topic}')"
            described.append(summary)
        return "no node publishes it; " + "; ".join(described)

    def _peer_summary(self, fqn: str) -> tuple[str, str]:
        """(lifecycle state, "<fqn> is <state> (its /diagnostics: LEVEL 'message')") from the
        node's latest /diagnostics status."""
        status = self.peer_status(fqn)
        if status is None:
            return "unknown", f"{fqn} (its state is unknown: no /diagnostics from it)"
        values = {item.key: item.value for item in status.values}
        state = values.get("state", "unknown")
        level = status.level if isinstance(status.level, int) else int.from_bytes(status.level, "little")
        level_name = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}.get(level, str(level))
        return state, f"{fqn} is {state} (its /diagnostics: {level_name} '{status.message}')"

    def diagnostic_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {"checkpoint": self.checkpoint_path, "frames_without_hand": self.frames_without_hand}
        stream = self.stream
        if stream is not None:
            last = stream.last_reset
            values.update(window_length=stream.window_length, window_resets=stream.resets,
                          model_device=str(self.pipeline.device), last_reset_reason="" if last is None else last.message)
        return values


def _node_fqn(namespace: str, name: str) -> str:
    return f"{namespace.rstrip('/')}/{name}"


def main(argv: Sequence[str] | None = None) -> int:
    return run(PressureNode, argv, __doc__.splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(main())
