"""A moving hand a real hand detector can see, as rendered frames and as a camera-only rosbag.

MediaPipe finds no hand in the default sample bag (``egopress sample-bag``: its single press is
seen along the forearm, which hides the hand; ``docs/design.md``, "Synthetic renders"), and in
60% of default ``egopress synth`` frames. These are frames it finds the hand in every time: the
bundled hand, open, seen from the back as a head-mounted camera sees it, 640 x 480, turning
(+-25 deg about the optical axis), tilting (+-15 deg), sliding (+-4 cm) and flexing its fingers in
front of a wall, ray-cast with :func:`synthetic_hands.render_rgbd`, so every frame has its
ground-truth mesh. ``benchmarks/hand_stage.py`` times the hand stage on them; the end-to-end
tests label them (``egopress label-bag``) and replay them into the launched nodes.

Test support, not library code (on ``sys.path`` for the tests; the benchmark adds the folder).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation
from synthetic_hands import open_hand_params, pose_hands, render_rgbd

K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])
IMAGE_SIZE = (480, 640)
FPS = 30.0
WALL_M = 0.9
START_STAMP_NS = 1_700_000_000 * 1_000_000_000


def moving_hand_params(hand, frames: int, fps: float = FPS, distance_m: float = 0.45) -> list[dict[str, np.ndarray]]:
    """Per frame the MANO parameters (batch 1) of the moving open hand described above."""
    base = open_hand_params(hand, distance_m=distance_m, facing="back")
    _, joints = pose_hands(hand, base)
    centre = 0.5 * (joints[0, 0] + joints[0, 9])
    sequence = []
    for index in range(frames):
        t = index / fps
        turn = Rotation.from_rotvec([np.radians(15) * np.sin(2 * np.pi * t / 3.1), 0.0, np.radians(25) * np.sin(2 * np.pi * t / 2.3)])
        params = {name: value.copy() for name, value in base.items()}
        params["hand_pose"] = (0.35 + 0.25 * np.sin(2 * np.pi * t / 1.7)) * np.asarray(hand.hands_mean)[None]
        params["global_orient"] = (turn * Rotation.from_rotvec(base["global_orient"][0])).as_rotvec()[None]
        # Turn about the palm centre (MANO rotates about its root): move the translation to match.
        _, moved = pose_hands(hand, {**params, "transl": np.zeros((1, 3))})
        palm = 0.5 * (moved[0, 0] + moved[0, 9])
        slide = np.array([0.04 * np.sin(2 * np.pi * t / 2.7), 0.02 * np.sin(2 * np.pi * t / 1.9), 0.0])
        params["transl"] = (centre - palm + slide)[None]
        sequence.append(params)
    return sequence


def scaled_camera(scale: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The intrinsics and (H, W) of the 640 x 480 camera with its image scaled by ``scale`` (the
    same view; pixel-centred convention)."""
    intrinsics = K.copy()
    intrinsics[:2, :2] *= scale
    intrinsics[:2, 2] = (K[:2, 2] + 0.5) * scale - 0.5
    return intrinsics, (round(IMAGE_SIZE[0] * scale), round(IMAGE_SIZE[1] * scale))


def render_moving_hand(hand, frames: int, fps: float = FPS, scale: float = 1.0) -> list[dict]:
    """Per frame: rgb (H, W, 3) uint8, depth (H, W) float32 metres, the intrinsics (3, 3), the
    MANO parameters and the true vertices (V, 3) and joints (21, 3). ``scale`` shrinks the
    640 x 480 image (0.5: 320 x 240, a quarter of the bytes per message)."""
    intrinsics, image_size = scaled_camera(scale)
    rendered = []
    for params in moving_hand_params(hand, frames, fps):
        vertices, joints = pose_hands(hand, params)
        rgb, depth = render_rgbd(vertices[0], hand.faces, intrinsics, image_size, background_depth_m=WALL_M)
        rendered.append({"rgb": rgb, "depth": depth, "intrinsics": intrinsics, "params": params, "vertices": vertices[0],
                         "joints": joints[0]})  # fmt: skip
    return rendered


def write_camera_bag(out: Path, hand, rendered: list[dict], fps: float = FPS, storage: str = "mcap") -> list[int]:
    """A rosbag2 ``out`` with RealSense-style camera topics only (colour rgb8, aligned depth
    16UC1 mm, both camera_infos; the sample bag's names), plus the ground truth
    ``/ground_truth/hand_mesh`` for comparison, which no default consumer reads. Returns the
    frames' stamps (ns)."""
    from egopress_core import messages as m
    from egopress_core.data.records import ManoParams
    from egopress_core.perception.types import HandMeshEstimate
    from egopress_core.rosbag.messages import bag_factory
    from egopress_core.rosbag.sample import CAMERA_INFO_TOPIC, COLOR_FRAME_ID, COLOR_TOPIC, DEPTH_CAMERA_INFO_TOPIC, DEPTH_TOPIC, GROUND_TRUTH_MESH_TOPIC
    from egopress_core.rosbag.typestore import CAMERA_INFO, HAND_MESH, IMAGE, egopress_typestore
    from egopress_core.rosbag.writer import BagWriter

    store = egopress_typestore()
    factory = bag_factory(store)
    stamps = [START_STAMP_NS + round(index * 1e9 / fps) for index in range(len(rendered))]
    staging = out.parent / f".{out.name}.partial"  # rosbags names the storage file after the folder
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with BagWriter(staging / out.name, store, storage=storage, compression="none") as writer:
        color = writer.add_topic(COLOR_TOPIC, IMAGE)
        depth = writer.add_topic(DEPTH_TOPIC, IMAGE)
        info = writer.add_topic(CAMERA_INFO_TOPIC, CAMERA_INFO)
        depth_info = writer.add_topic(DEPTH_CAMERA_INFO_TOPIC, CAMERA_INFO)
        mesh = writer.add_topic(GROUND_TRUTH_MESH_TOPIC, HAND_MESH)
        for frame, stamp in zip(rendered, stamps):
            header = m.header(factory, stamp, COLOR_FRAME_ID)
            depth_mm = np.round(frame["depth"] * 1000.0).astype(np.uint16)
            params = {name: np.asarray(value[0], dtype=np.float64) for name, value in frame["params"].items()}
            estimate = HandMeshEstimate(
                mano=ManoParams(global_orient=params["global_orient"], hand_pose=params["hand_pose"], betas=params["betas"],
                                transl=params["transl"]),
                vertices=frame["vertices"].astype(np.float32), joints=frame["joints"].astype(np.float32), confidence=1.0,
                estimator="ground_truth", hand_side=hand.side, hand_model=hand.name, topology_id=hand.topology_id, stamp=stamp / 1e9,
            )  # fmt: skip
            # Logged a few milliseconds after capture, as a recorder receives them.
            writer.write_message(color, stamp + 8_000_000, m.image(factory, frame["rgb"], "rgb8", header))
            image_size = tuple(frame["rgb"].shape[:2])
            writer.write_message(info, stamp + 8_200_000, m.camera_info(factory, frame["intrinsics"], image_size, header))
            writer.write_message(depth_info, stamp + 8_200_000, m.camera_info(factory, frame["intrinsics"], image_size, header))
            writer.write_message(depth, stamp + 9_000_000, m.image(factory, depth_mm, "16UC1", header))
            writer.write_message(mesh, stamp + 9_500_000, m.hand_mesh(factory, header, hand.side, hand.name, hand.topology_id,
                                                                      hand.num_vertices, "ground_truth", estimate))
    os.replace(staging / out.name, out)
    shutil.rmtree(staging, ignore_errors=True)
    return stamps
