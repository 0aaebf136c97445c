"""Hand mesh node: synchronised colour + aligned depth + camera_info in, ``HandMesh`` out.

Inputs (relative names, remap them to the camera's):
    color/image_raw                   sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8)
    aligned_depth_to_color/image_raw  sensor_msgs/Image (16UC1 mm or 32FC1 m), aligned to colour
    color/camera_info                 sensor_msgs/CameraInfo
    hand_keypoints                    sensor_msgs/PointCloud2, only with backend "keypoints":
                                      21 points in OpenPose order from another tracker, fields
                                      x, y, z (metres, colour optical frame) and / or u, v
                                      (pixels), optional confidence; NaN = not found
Outputs:
    hand_mesh         egopress_ros/HandMesh, header = the colour image's header; a frame without
                      a hand gets confidence 0 and NaN geometry (fixed array sizes for recorders)
    hand_mesh/marker  visualization_msgs/Marker, the mesh as a triangle list (when subscribed)
    /diagnostics      diagnostic_msgs/DiagnosticArray

Backends (``backend`` parameter, :func:`egopress_core.perception.build_estimator`): "mediapipe"
(the default: MediaPipe hand landmarks from the colour image, tracked between frames, lifted with
depth, then a warm-started MANO-format fit; its models are built by ``make setup``) or
"keypoints" (the same fit to keypoints another tracker publishes). The "ground_truth"
backend replays data-set annotations and needs data-set records, which a camera stream does not
carry: it is for offline tools, not this node.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from egopress_core import messages as msgs
from egopress_core.assets.hand_landmarker import DEFAULT_HANDEDNESS, HANDEDNESS_MODES
from egopress_core.errors import ConfigError
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
from egopress_ros.parameters import COMMON_PARAMETERS, ParameterSpec

NODE_NAME = "hand_mesh_node"
KEYPOINTS_TOPIC = "hand_keypoints"
BACKENDS = ("mediapipe", "keypoints")
MARKER_NAMESPACE = "hand_mesh"

PARAMETERS = COMMON_PARAMETERS + (
    ParameterSpec("backend", "mediapipe", "Hand-mesh estimator: mediapipe (landmarks from the colour image; its models "
                  "are built by make setup) or keypoints (fit to the 21 keypoints on the hand_keypoints topic).",
                  choices=BACKENDS),
    ParameterSpec("hand_model_path", "", "MANO-format .pkl of the hand model to fit (empty: the bundled EgoPress hand). "
                  "Must be the hand the pressure checkpoint was trained with."),
    ParameterSpec("depth_refinement", False, "Also fit the visible hand surface to the depth point cloud (slower, "
                  "better translation)."),
    ParameterSpec("min_confidence", 0.25, "A fit explaining fewer keypoints than this fraction is 'no hand'.",
                  minimum=0.0, maximum=1.0),
    ParameterSpec("mediapipe_handedness", DEFAULT_HANDEDNESS, "How MediaPipe's Left/Right labels map to hands: as_labelled "
                  "(non-mirrored egocentric or robot cameras, which see the backs of the hands), swapped (mirrored images, "
                  "cameras looking at the palms) or ignore (the most confident hand, one-handed scenes).",
                  choices=HANDEDNESS_MODES),
)


class HandMeshNode(PipelineNode):
    """Lifecycle node estimating a MANO-format hand mesh per synchronised RGB-D frame."""

    PARAMETERS = PARAMETERS
    EXECUTABLE = NODE_NAME

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.estimator = None
        self.hand_publisher = None
        self.marker_publisher = None
        self.frames_without_hand = 0
        self.last_failure = ""
        self._last_stamp_s: float | None = None
        self._faces: np.ndarray | None = None

    def input_specs(self) -> list[InputSpec]:
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        specs = [InputSpec("color", COLOR_TOPIC, Image), InputSpec("depth", DEPTH_TOPIC, Image),
                 InputSpec("camera_info", CAMERA_INFO_TOPIC, CameraInfo)]
        if self.config.get("backend") == "keypoints":
            specs.append(InputSpec("keypoints", KEYPOINTS_TOPIC, PointCloud2))
        return specs

    # -- lifecycle hooks -------------------------------------------------------------------

    def load(self) -> None:
        from egopress_core.perception import build_estimator

        config = self.config
        model_path = config["hand_model_path"] or None
        if model_path is not None and not os.path.exists(model_path):
            raise ConfigError(f"hand_model_path {model_path!r} does not exist")
        options: dict[str, Any] = dict(side=config["hand_side"], model_path=model_path,
                                       depth_refinement=config["depth_refinement"], min_confidence=config["min_confidence"])
        if config["backend"] == "mediapipe":
            options.update(landmarker={"handedness": config["mediapipe_handedness"]})
        self.estimator = build_estimator(config["backend"], **options)
        self._faces = np.asarray(self.estimator.hand.faces)
        self._last_stamp_s = None
        self.get_logger().info(f"hand-mesh backend {config['backend']!r} ready: {self.estimator.hand.topology_id}, "
                               f"{config['hand_side']} hand")

    def to_device(self) -> None:
        # The fit runs on the CPU (small batched least squares); nothing to move.
        if self.estimator is not None:
            self.estimator.reset()
        self._last_stamp_s = None

    def release(self) -> None:
        if self.estimator is not None:
            self.estimator.reset()

    def unload(self) -> None:
        if self.estimator is not None:
            self.estimator.close()  # MediaPipe's graphs
        self.estimator = None
        self._faces = None

    def create_outputs(self, qos) -> None:
        from visualization_msgs.msg import Marker

        from egopress_ros.msg import HandMesh

        self.hand_publisher = self.lifecycle_publisher(HandMesh, "hand_mesh", qos)
        self.marker_publisher = self.lifecycle_publisher(Marker, "hand_mesh/marker", qos)

    # -- per frame -------------------------------------------------------------------------

    def process(self, messages: dict[str, Any]) -> None:
        from egopress_core.perception import HandKeypoints, RGBDFrame

        estimator = self.estimator
        if estimator is None:
            return
        names = self.topic_names()
        camera = self.camera_input(messages, without_depth="estimating from colour and keypoints alone")
        stamp_s = msgs.stamp_to_seconds(camera.header.stamp)
        if self._last_stamp_s is not None and stamp_s < self._last_stamp_s:
            self.problems.report("time_backwards", (
                f"input stamps went backwards by {self._last_stamp_s - stamp_s:.3f} s (bag loop or clock reset); "
                "the tracker's temporal state was reset"))
            estimator.reset()
        self._last_stamp_s = stamp_s

        keypoints = None
        if "keypoints" in messages:
            try:
                data = msgs.keypoints_from_point_cloud(messages["keypoints"])
                if data.points_3d is not None and not np.isfinite(data.points_3d).any() and data.points_2d is None:
                    keypoints = None  # the tracker found no hand
                else:
                    keypoints = HandKeypoints(points_3d=data.points_3d, points_2d=data.points_2d,
                                              confidence=data.confidence)
            except Exception as error:  # noqa: BLE001 - DataError from either reader
                raise InputProblem("keypoints", f"keypoints on '{names['keypoints']}': {error}") from None

        if self.config["backend"] == "keypoints" and keypoints is None:
            estimate = None
            estimator.last_failure = "the keypoint tracker reported no hand"
        else:
            frame = RGBDFrame(rgb=camera.rgb, depth_m=camera.depth_m, intrinsics=camera.intrinsics, stamp=stamp_s,
                              keypoints=keypoints)
            estimate = estimator.estimate(frame)
        hand = estimator.hand
        if estimate is None:
            self.frames_without_hand += 1
            self.last_failure = estimator.last_failure or ""
        msg = msgs.hand_mesh(RCLPY, camera.header, hand.side, hand.name, hand.topology_id, hand.num_vertices,
                             estimator.name, estimate)
        self.hand_publisher.publish(msg)
        self.record_output(camera.header.stamp)
        if self.wanted(self.marker_publisher):
            if estimate is None:
                self.marker_publisher.publish(msgs.delete_marker(RCLPY, camera.header, MARKER_NAMESPACE))
            else:
                self.marker_publisher.publish(msgs.mesh_marker(RCLPY, estimate.vertices, self._faces, camera.header,
                                                               MARKER_NAMESPACE))

    def diagnostic_values(self) -> dict[str, Any]:
        return {"backend": self.config.get("backend", ""), "frames_without_hand": self.frames_without_hand,
                "last_no_hand_reason": self.last_failure}


def main(argv: Sequence[str] | None = None) -> int:
    return run(HandMeshNode, argv, __doc__.splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(main())
