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
HandMesh carries the colour stamp exactly). Each set goes through
:class:`egopress_core.live.LivePressureEstimator`: the streaming EgoPressDiff window warm-starts
from the previous frame. A HandMesh without a hand (confidence 0) produces no pressure message:
a hand the tracker lost may still be pressing, so "no contact" would be a false label for a
recorder; the HandMesh itself already says "no hand". A hand lost for longer than
``hand_lost_reset_s``, a gap longer than ``max_gap_s`` or a stamp going backwards restarts the
window (and the warm start).
"""

from __future__ import annotations

from typing import Any, Sequence

from egopress_core.assets import SHIPPED_CHECKPOINT
from egopress_core.errors import ConfigError, DataError
from egopress_ros.conversions import (
    colorize,
    contact_point_cloud,
    contact_to_msg,
    delete_marker,
    hand_mesh_from_msg,
    mesh_marker,
    numpy_to_image,
    stamp_to_seconds,
    uv_pressure_to_msg,
)
from egopress_ros.node_base import (
    CAMERA_INFO_TOPIC,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    InputProblem,
    InputSpec,
    PipelineNode,
    run,
)
from egopress_ros.parameters import COMMON_PARAMETERS, ParameterSpec

NODE_NAME = "pressure_node"
HAND_MESH_TOPIC = "hand_mesh"
MARKER_NAMESPACE = "hand_contact"
# egopress_core.model.egopressdiff.SCHEDULERS and egopress_core.inference.PRECISIONS, repeated
# here so that reading this table does not import diffusers; the sampling defaults below are
# StreamingPressureEstimator's (test_launch_file.py checks all of them agree).
SCHEDULER_CHOICES = ("ddim", "dpmsolver++", "euler")
PRECISION_CHOICES = ("fp32", "fp16", "bf16")
COMPILE_CHOICES = ("off", "default", "reduce-overhead", "max-autotune")

PARAMETERS = COMMON_PARAMETERS + (
    ParameterSpec("device", "cpu", "Torch device of the model: cpu, cuda, cuda:<index>, mps, or auto (CUDA when "
                  "available). Deactivating the node moves the model to the CPU and frees accelerator memory."),
    ParameterSpec("checkpoint", "", "EgoPressDiff checkpoint folder (config.json, model.safetensors, "
                  "hand_uv_mask.json). Empty: the compact checkpoint shipped in egopress_core/assets/checkpoints."),
    ParameterSpec("hand_model_path", "", "MANO-format .pkl of the checkpoint's hand when the folder has no "
                  "hand_uv_mask.json (empty: the bundled EgoPress hand)."),
    ParameterSpec("num_inference_steps", 8, "Sampler steps of a full denoising run (the first window, and after a "
                  "reset).", minimum=1, maximum=1000),
    ParameterSpec("scheduler", "dpmsolver++", "Diffusion sampler.", choices=SCHEDULER_CHOICES),
    ParameterSpec("warm_start_strength", 0.25, "Fraction of the steps re-run for each later window, which starts from "
                  "the previous window's result shifted by one frame (lower: faster, smoother).",
                  minimum=0.01, maximum=1.0),
    ParameterSpec("guidance_scale", 1.0, "Classifier-free guidance weight (1: off, one U-Net pass per step).",
                  minimum=1.0, maximum=20.0),
    ParameterSpec("seed", 0, "Seed of the sampler noise (reset with the window).", minimum=0, maximum=2**31 - 1),
    ParameterSpec("precision", "fp32", "Autocast precision of the model on the device: fp32, fp16 (GPU only) or bf16 "
                  "(GPUs with bf16; CPUs with AVX512-BF16/AMX).", choices=PRECISION_CHOICES),
    ParameterSpec("channels_last", False, "Channels-last convolution weights (faster tensor-core kernels on GPUs)."),
    ParameterSpec("compile_mode", "off", "torch.compile the U-Net on activate: off, default, reduce-overhead (CUDA "
                  "graphs: what makes the compact model real-time on a GPU) or max-autotune. The first frames "
                  "after activation compile (up to a minute); on a CPU it needs a C++ compiler.",
                  choices=COMPILE_CHOICES),
    ParameterSpec("crop", "hand", "Model input crop: hand (box around the hand mesh, as in training) or full.",
                  choices=("hand", "full")),
    ParameterSpec("hand_margin", 0.3, "Margin around the hand box, fraction of its larger side (as in training).",
                  minimum=0.0, maximum=5.0),
    ParameterSpec("hold_crop", True, "Keep the crop box while the hand stays inside it (training windows share one "
                  "box); false: a fresh box every frame."),
    ParameterSpec("max_gap_s", 1.0, "A longer gap between processed frames restarts the window, seconds.",
                  minimum=0.001),
    ParameterSpec("hand_lost_reset_s", 0.5, "A hand missing for longer than this restarts the window, seconds.",
                  minimum=0.0),
    ParameterSpec("contact_threshold_kpa", 1.0, "A vertex is in contact above this pressure, kPa.", minimum=0.0),
    ParameterSpec("visualization_max_kpa", 50.0, "Pressure shown as the top colour of uv_pressure/image and the "
                  "markers, kPa.", minimum=0.001),
    ParameterSpec("colormap", "inferno", "Matplotlib colour map of the visualisation mirrors."),
)


class PressureNode(PipelineNode):
    """Lifecycle node running streaming EgoPressDiff on synchronised RGB-D + hand mesh sets."""

    PARAMETERS = PARAMETERS
    EXECUTABLE = NODE_NAME

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.live = None
        self.outputs: dict[str, Any] = {}
        self.frames_without_hand = 0
        self.checkpoint_path = ""

    def input_specs(self) -> list[InputSpec]:
        from sensor_msgs.msg import CameraInfo, Image

        from egopress_ros.msg import HandMesh

        return [InputSpec("color", COLOR_TOPIC, Image), InputSpec("depth", DEPTH_TOPIC, Image),
                InputSpec("camera_info", CAMERA_INFO_TOPIC, CameraInfo), InputSpec("hand_mesh", HAND_MESH_TOPIC, HandMesh)]

    # -- lifecycle hooks -------------------------------------------------------------------

    def load(self) -> None:
        from matplotlib import colormaps

        from egopress_core.inference import check_compile, check_precision
        from egopress_core.live import COMPILE_OFF, LiveConfig, LivePressureEstimator, resolve_device

        config = self.config
        if config["colormap"] not in colormaps:
            raise ConfigError(f"colormap {config['colormap']!r} is not a matplotlib colour map")
        checkpoint = config["checkpoint"] or str(SHIPPED_CHECKPOINT)
        if not config["checkpoint"] and not SHIPPED_CHECKPOINT.is_dir():
            raise ConfigError(f"no checkpoint parameter given and the shipped checkpoint {SHIPPED_CHECKPOINT} is missing; "
                              "set checkpoint to a trained EgoPressDiff folder")
        live_config = LiveConfig(crop=config["crop"], hand_margin=config["hand_margin"], hold_crop=config["hold_crop"],
                                 max_gap_s=config["max_gap_s"], hand_lost_reset_s=config["hand_lost_reset_s"],
                                 contact_threshold_kpa=config["contact_threshold_kpa"])
        # Fail at configure, not at activate, if the device, its precision or compiling is not usable.
        device = resolve_device(config["device"])
        check_precision(config["precision"], device)
        if config["compile_mode"] != COMPILE_OFF:
            check_compile(device, {"mode": config["compile_mode"]})
        # Loaded on the CPU in fp32; activate moves it to the device at its precision (and
        # deactivate back).
        self.live = LivePressureEstimator.from_checkpoint(
            checkpoint, device="cpu", hand_side=config["hand_side"], hand_model_path=config["hand_model_path"] or None,
            config=live_config, num_inference_steps=config["num_inference_steps"],
            warm_start_strength=config["warm_start_strength"], scheduler=config["scheduler"],
            guidance_scale=config["guidance_scale"], seed=config["seed"], precision="fp32",
            channels_last=config["channels_last"])
        self.checkpoint_path = checkpoint
        model = self.live.model.config
        self.get_logger().info(f"loaded {checkpoint}: window {model.num_frames} frames, images {tuple(model.image_size)}, "
                               f"UV {tuple(model.uv_size)}, {self.live.hand_side} hand ({self.live.topology_id})")

    def to_device(self) -> None:
        if self.live is not None:
            self.live.to(self.config["device"], precision=self.config["precision"],
                         compile_mode=self.config["compile_mode"])

    def release(self) -> None:
        from egopress_core.live import release_accelerator_memory

        if self.live is not None and self.live.device.type != "cpu":
            self.live.to("cpu", precision="fp32", compile_mode="off")
            release_accelerator_memory()

    def unload(self) -> None:
        from egopress_core.live import release_accelerator_memory

        self.live = None
        release_accelerator_memory()

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

    def process(self, messages: dict[str, Any]) -> None:
        live = self.live
        if live is None:
            return
        names = self.topic_names()
        camera = self.camera_input(messages, without_depth="the model sees no depth for this frame")
        try:
            mesh = hand_mesh_from_msg(messages["hand_mesh"])
        except DataError as error:
            raise InputProblem("hand_mesh", f"HandMesh on '{names['hand_mesh']}': {error}") from None
        if mesh.hand_side != live.hand_side:
            raise InputProblem("hand_side", f"HandMesh on '{names['hand_mesh']}' is of the {mesh.hand_side} hand; "
                               f"the checkpoint estimates the {live.hand_side} hand")
        has_hand = mesh.has_hand
        if has_hand and mesh.topology_id != live.topology_id:
            raise InputProblem("topology", f"HandMesh on '{names['hand_mesh']}' has topology {mesh.topology_id!r}; the "
                               f"checkpoint's hand is {live.topology_id!r} (set the same hand_model_path on both nodes)")
        stamp_s = stamp_to_seconds(camera.header.stamp)
        try:
            estimate = live.push(camera.rgb, camera.depth_m, camera.intrinsics, stamp_s,
                                 mesh.vertices if has_hand else None, mesh.joints if has_hand else None)
        except DataError as error:
            raise InputProblem("frame", f"frame at {stamp_s:.3f} s skipped: {error}") from None
        reason = live.last_reset_reason
        if reason is not None:
            if "backwards" in reason:
                self.problems.report("time_backwards", f"input stamps went backwards ({reason}); the window was restarted")
            else:
                self.get_logger().info(f"window restarted: {reason}")
        if estimate is None:
            self.frames_without_hand += 1
            if self.wanted(self.outputs["marker"]):
                self.outputs["marker"].publish(delete_marker(camera.header, MARKER_NAMESPACE))
            return
        self._publish(estimate, camera.header, mesh.vertices)

    def _publish(self, estimate, header, vertices) -> None:
        live, config, outputs = self.live, self.config, self.outputs
        side = live.hand_side
        outputs["uv_pressure"].publish(uv_pressure_to_msg(
            estimate.uv_pressure_kpa, header, side, live.uv_layout_id, config["contact_threshold_kpa"],
            estimate.uv_total_force_n))
        outputs["hand_contact"].publish(contact_to_msg(estimate.contact, header, side, live.topology_id))
        self.record_output(header.stamp)
        vmax = config["visualization_max_kpa"]
        if self.wanted(outputs["image"]):
            colours = colorize(estimate.uv_pressure_kpa, vmax, config["colormap"], mask=live.uv_mask.mask)
            outputs["image"].publish(numpy_to_image(colours, "rgb8", header))
        if self.wanted(outputs["image_raw"]):
            outputs["image_raw"].publish(numpy_to_image(estimate.uv_pressure_kpa, "32FC1", header))
        if self.wanted(outputs["points"]):
            outputs["points"].publish(contact_point_cloud(vertices, estimate.contact, header))
        if self.wanted(outputs["marker"]):
            colours = colorize(estimate.contact.vertex_pressure_kpa, vmax, config["colormap"])
            outputs["marker"].publish(mesh_marker(vertices, live.faces, header, MARKER_NAMESPACE, colours=colours))

    def diagnostic_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {"checkpoint": self.checkpoint_path, "frames_without_hand": self.frames_without_hand}
        live = self.live
        if live is not None:
            values.update(window_length=live.window_length, window_resets=live.resets, model_device=str(live.device),
                          last_reset_reason=live.last_reset_reason or "")
        return values


def main(argv: Sequence[str] | None = None) -> int:
    return run(PressureNode, argv, __doc__.splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(main())
