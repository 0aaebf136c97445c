"""Known hands for measuring the estimators: random plausible hands in front of a camera and
their ray-cast RGB-D images.

Test support, not library code: the tests import it by bare name (``test/conftest.py`` puts
``test/support`` on ``sys.path``); ``benchmarks/hand_fitting.py`` adds the folder itself.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from egopress_core.errors import DataError
from egopress_core.hand.hand_model import HandModel, load_hand_model
from egopress_core.hand.poses import joint_axes, sample_plausible_poses
from egopress_core.perception.fitting import MANO_JOINTS_IN_OPENPOSE
from egopress_core.perception.types import validate_intrinsics

# Right-hand axis-angle -> the mirrored left model's (x, y, z) -> (x, -y, -z), per joint.
MIRROR_POSE = np.tile([1.0, -1.0, -1.0], 15)
PARAM_NAMES = ("global_orient", "hand_pose", "betas", "transl")


def sample_hand_params(hand: HandModel, count: int, seed: int, depth_range_m: tuple[float, float] = (0.35, 0.6)) -> dict[str, np.ndarray]:
    """Random hands: everyday poses (:func:`sample_plausible_poses` about the right model's
    rest axes, mirrored for a left model), betas ~ N(0, 1) clipped to +-2, uniformly random
    orientation, the root 35-60 cm in front of the camera near the optical axis.

    Returns:
        (count, 3) global_orient, (count, 45) hand_pose, (count, 10) betas, (count, 3) transl.
    """
    if count < 1:
        raise DataError(f"count must be positive; got {count}")
    rng = np.random.default_rng(seed)
    right = hand if hand.is_right else load_hand_model("right")
    with torch.no_grad():
        rest = right.rest().joints[0].double().numpy()
    joints16 = rest[list(MANO_JOINTS_IN_OPENPOSE)]
    normal = np.cross(joints16[1] - joints16[0], joints16[7] - joints16[0])
    pose = sample_plausible_poses(rng, count, joint_axes(joints16, normal / np.linalg.norm(normal)))
    if not hand.is_right:
        pose = pose * MIRROR_POSE
    low, high = depth_range_m
    transl = np.stack([rng.uniform(-0.08, 0.08, count), rng.uniform(-0.06, 0.06, count), rng.uniform(low, high, count)], 1)
    return {
        "global_orient": Rotation.random(count, random_state=seed).as_rotvec(),
        "hand_pose": pose,
        "betas": np.clip(rng.normal(0.0, 1.0, (count, 10)), -2.0, 2.0),
        "transl": transl,
    }


def open_hand_params(hand: HandModel, distance_m: float = 0.45, facing: str = "palm") -> dict[str, np.ndarray]:
    """A relaxed open hand (half the model's mean pose), fingers up, its palm (``facing="palm"``)
    or its back (``"back"``, as a head-mounted camera sees its wearer's hands) to the camera, the
    palm centred on the optical axis ``distance_m`` away; arrays with batch 1."""
    if facing not in ("palm", "back"):
        raise DataError(f"facing must be 'palm' or 'back'; got {facing!r}")
    with torch.no_grad():
        rest = hand.rest().joints[0].double().numpy()
    fingers = rest[9] - rest[0]
    palm = np.cross(rest[5] - rest[0], rest[17] - rest[0]) * (1.0 if hand.is_right else -1.0)
    model_axes = np.stack([fingers / np.linalg.norm(fingers), palm / np.linalg.norm(palm)])
    towards_camera = -1.0 if facing == "palm" else 1.0
    camera_axes = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, towards_camera]])  # fingers up (-y); palm normal along z
    rotation, _ = Rotation.align_vectors(camera_axes, model_axes)
    params = {
        "global_orient": rotation.as_rotvec()[None],
        "hand_pose": 0.5 * np.asarray(hand.hands_mean)[None],
        "betas": np.zeros((1, 10)),
        "transl": np.zeros((1, 3)),
    }
    _, joints = pose_hands(hand, params)
    params["transl"] = (np.array([0.0, 0.0, distance_m]) - 0.5 * (joints[0, 0] + joints[0, 9]))[None]
    return params


def pose_hands(hand: HandModel, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(B, V, 3) vertices and (B, 21, 3) joints (float64, metres) of parameter arrays."""
    tensors = [torch.as_tensor(np.asarray(params[name]), dtype=torch.float32) for name in PARAM_NAMES]
    with torch.no_grad():
        output = hand(*tensors)
    return output.vertices.double().numpy(), output.joints.double().numpy()


def project(points: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(..., 2) pixels of (..., 3) camera points."""
    homogeneous = np.asarray(points) @ np.asarray(intrinsics).T
    return homogeneous[..., :2] / homogeneous[..., 2:]


def render_rgbd(
    vertices: np.ndarray,
    faces: np.ndarray,
    intrinsics: np.ndarray,
    image_size: tuple[int, int],
    background_depth_m: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast (open3d) image of a mesh in the camera frame.

    Returns:
        rgb (H, W, 3) uint8 (Lambert-shaded skin on a blue background) and depth (H, W) float32
        metres along the optical axis: 0 off the mesh, or a fronto-parallel wall at
        ``background_depth_m``.
    """
    import open3d as o3d

    intrinsics = validate_intrinsics(intrinsics)
    height, width = image_size
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, dtype=np.float32)), o3d.core.Tensor(np.asarray(faces, dtype=np.uint32)))
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    directions = np.stack(
        [(u - intrinsics[0, 2]) / intrinsics[0, 0], (v - intrinsics[1, 2]) / intrinsics[1, 1], np.ones(u.shape)], -1
    ).reshape(-1, 3)
    rays = np.concatenate([np.zeros_like(directions), directions], 1).astype(np.float32)
    hits = scene.cast_rays(o3d.core.Tensor(rays))
    t_hit = hits["t_hit"].numpy()
    hit = np.isfinite(t_hit)
    background = 0.0 if background_depth_m is None else background_depth_m
    depth = np.where(hit, t_hit, background).reshape(height, width)  # the rays have z = 1, so t = z
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    shade = np.abs((hits["primitive_normals"].numpy() * unit).sum(1))
    rgb = np.tile(np.array([40.0, 60.0, 90.0]), (height * width, 1))
    rgb[hit] = np.array([224.0, 172.0, 140.0]) * (0.35 + 0.65 * shade[hit, None])
    return rgb.reshape(height, width, 3).astype(np.uint8), depth.astype(np.float32)
