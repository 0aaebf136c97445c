"""Head-mounted camera placement over the pad.

World frame: the pad plane z = 0, +z pointing down into the pad, x/y spanning the pad.
Camera frame: optical (+x right, +y down, +z forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import transforms3d

from egopress_core.data.synthetic.ranges import HAND_DISTANCE_M, PITCH_DEG


# Horizontal field of view of head-mounted RGB-D colour cameras (RealSense D415 65 deg, D435 69,
# L515 70; EgoPressure's 1920 x 1080 head camera about 70), degrees.
HORIZONTAL_FOV_DEG = (55.0, 75.0)
# How far round from straight behind the hand the camera looks at it, towards the thumb's side,
# degrees: the head is behind the working hand and inside its arm (the arm comes into the picture
# from the little finger's side, see forearm.py), so the hand points away from the camera, up the
# picture, and the forearm does not hide it. Hands seen side-on, pointing across the picture, or
# from straight along the forearm are what MediaPipe's palm detector missed in every frame of a
# sequence (benchmarks/render_detection.py).
AZIMUTH_DEG = (10.0, 35.0)


@dataclass(frozen=True)
class CameraRig:
    """A pinhole camera for one sequence and its per-frame pose."""

    intrinsics: np.ndarray  # (3, 3)
    image_size: tuple[int, int]  # (H, W)
    camera_from_world: np.ndarray  # (T, 4, 4)


def look_at_camera_from_world(eye: np.ndarray, target: np.ndarray, world_up: np.ndarray) -> np.ndarray:
    """(4, 4) rigid transform mapping world points into an optical camera at ``eye`` looking at
    ``target``; ``world_up`` is the direction that appears up in the image."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, world_up)
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = -rotation @ eye
    return transform


def sample_camera_rig(
    rng: np.random.Generator,
    hand_centre_world: np.ndarray,
    num_frames: int,
    image_size: tuple[int, int],
    hand_heading: float = 0.0,
    thumb_side: np.ndarray | None = None,
    distance_m: tuple[float, float] = HAND_DISTANCE_M,
    pitch_deg: tuple[float, float] = PITCH_DEG,
) -> CameraRig:
    """An egocentric camera: ``distance_m`` from the hand, looking down at ``pitch_deg`` below the
    horizon from behind the hand (turned :data:`AZIMUTH_DEG` towards its thumb),
    :data:`HORIZONTAL_FOV_DEG` horizontal field of view, with slow head sway.

    Args:
        hand_centre_world: (3,) where the gesture happens, world frame.
        image_size: (H, W) in pixels.
        hand_heading: the hand's turn about the vertical from pointing along +y (away from the
            wearer), radians, as :meth:`~egopress_core.data.synthetic.gestures.HandPoser.world_orientation`'s yaw.
        thumb_side: (3,) world direction from the hand's little finger to its index (None: the
            camera turns either way).
        distance_m: (min, max) camera-to-hand distance, metres, sampled uniformly.
        pitch_deg: (min, max) angle below the horizon, degrees, sampled uniformly.
    """
    height, width = image_size
    horizontal_fov = np.deg2rad(rng.uniform(*HORIZONTAL_FOV_DEG))
    focal = 0.5 * width / np.tan(0.5 * horizontal_fov)
    intrinsics = np.array(
        [
            [focal * rng.uniform(0.99, 1.01), 0.0, 0.5 * width + rng.uniform(-4, 4)],
            [0.0, focal * rng.uniform(0.99, 1.01), 0.5 * height + rng.uniform(-4, 4)],
            [0.0, 0.0, 1.0],
        ]
    )
    distance = rng.uniform(*distance_m)
    pitch = np.deg2rad(rng.uniform(*pitch_deg))  # below the horizon
    # The wearer stands on the -y side of the pad, behind the hand; d(back)/d(azimuth) is level
    # and at right angles to the heading, so its sign against the thumb side says which way round.
    turn = np.deg2rad(rng.uniform(*AZIMUTH_DEG))
    if thumb_side is None:
        towards_thumb = 1.0 if rng.uniform() < 0.5 else -1.0
    else:
        towards_thumb = 1.0 if float(np.dot(thumb_side[:2], [np.cos(hand_heading), np.sin(hand_heading)])) >= 0 else -1.0
    azimuth = hand_heading + towards_thumb * turn
    back = np.array([np.sin(azimuth), -np.cos(azimuth), 0.0])
    up = np.array([0.0, 0.0, -1.0])
    base_eye = hand_centre_world + distance * (np.cos(pitch) * back + np.sin(pitch) * up)

    # Head sway: smooth random walk of a few millimetres and a fraction of a degree per second.
    times = np.arange(num_frames) / 30.0
    phases = rng.uniform(0, 2 * np.pi, size=6)
    frequencies = rng.uniform(0.1, 0.5, size=6)
    sway = 0.006 * np.sin(2 * np.pi * frequencies[:3, None] * times + phases[:3, None]).T
    look_jitter = 0.01 * np.sin(2 * np.pi * frequencies[3:, None] * times + phases[3:, None]).T
    roll = np.deg2rad(rng.uniform(-8.0, 8.0))

    poses = np.empty((num_frames, 4, 4))
    for frame in range(num_frames):
        eye = base_eye + sway[frame]
        target = hand_centre_world + look_jitter[frame]
        camera_from_world = look_at_camera_from_world(eye, target, world_up=-back)
        roll_matrix = np.eye(4)
        roll_matrix[:3, :3] = transforms3d.axangles.axangle2mat([0.0, 0.0, 1.0], roll)
        poses[frame] = roll_matrix @ camera_from_world
    return CameraRig(intrinsics=intrinsics, image_size=(height, width), camera_from_world=poses)


def project(points_camera: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame points -> (..., 2) pixel coordinates (u right, v down)."""
    z = points_camera[..., 2:3]
    homogeneous = points_camera / np.where(np.abs(z) < 1e-9, 1e-9, z)
    return homogeneous @ intrinsics[:2].T
