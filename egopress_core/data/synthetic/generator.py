"""The synthetic egocentric RGB-D hand-pressure generator (`egopress synth`).

One sequence: a MANO-format hand performs a gesture over the pad (plane z = 0, +z down) while a
head-mounted camera watches. Contact is resolved physically (local Hertz pressure from the
penetration the hand would have, see ``contact.py``): the hand is pushed into the pad until the
pressure integrated over its surface equals the gesture's force at that instant. Ground truth
comes from that one pressure field, sampled three ways that agree on total force:

- the UV-pressure map: pressure at each texel's surface point on the posed mesh;
- the pad image: each texel's force (pressure x texel area) deposited into the 1.25 mm pad cell
  under it, divided by the cell area (so both integrate to the same newtons);
- per-vertex pressure: the texel forces lumped onto the mesh vertices by barycentric weight,
  divided by each vertex's area (a third of its faces'), so sum(pressure x vertex area) is the
  same force.
  (Sampling pressure at the vertices instead over-counts: a vertex's penetration stands for
  its whole one-ring, though the surface between a touching vertex and its untouched
  neighbours mostly is not in contact.)

Sequences are independent and seeded by (seed, index), so the output does not depend on the
number of workers or on resuming.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from egopress_core.data.records import HAND_LEFT, HAND_RIGHT
from egopress_core.data.synthetic import contact, ranges, storage
from egopress_core.data.synthetic.camera import sample_camera_rig
from egopress_core.data.synthetic.gestures import (
    ALL_GESTURES,
    GESTURES,
    WEAK_EVIDENCE_GESTURES,
    HandPoser,
    orientation_to_axis_angle,
    sample_gesture,
)
from egopress_core.data.synthetic.forearm import Forearm
from egopress_core.data.synthetic.render import Appearance, Scenery, SkinTexture, forearm_albedo, render_rgbd
from egopress_core.errors import ConfigError, DataError
from egopress_core.files import write_json_atomic
from egopress_core.hand.skeleton import OPENPOSE_FINGER_JOINTS
from egopress_core.options import config_differences

GENERATOR_VERSION = "2.2.0"  # 2: renders a real hand detector sees (skin, lighting, forearm, framing, poses); 2.1: camera behind the hand, from its thumb side; 2.2: thumb presses press with the thumb
FPS = 30.0
# Sensel Morph pad grid: 185 x 105 cells of 1.25 mm (EgoPressure's `force` images).
PAD_CELLS = (105, 185)  # (rows along y, columns along x)
PAD_PITCH_M = 0.00125
# Curvature radii outside this range are clamped: below, the mesh is too coarse to resolve it;
# above, the surface is flat for contact purposes.
MIN_CURVATURE_RADIUS_M = 0.004
MAX_CURVATURE_RADIUS_M = 0.06
IMAGE_SIZES = ((256, 256), (240, 320), (288, 288))


# Names that stand for a group of gestures where a list of gestures is given by name.
GESTURE_GROUPS = {"default": GESTURES, "weak": WEAK_EVIDENCE_GESTURES, "all": ALL_GESTURES}


def expand_gestures(names) -> tuple[str, ...]:
    """Gesture names with the :data:`GESTURE_GROUPS` names replaced by their gestures, in order,
    each once (unknown names are left for :class:`SynthConfig` to refuse)."""
    expanded: list[str] = []
    for name in names:
        for gesture in GESTURE_GROUPS.get(name, (name,)):
            if gesture not in expanded:
                expanded.append(gesture)
    return tuple(expanded)


@dataclass(frozen=True)
class SynthConfig:
    """What `egopress synth` generates."""

    sequences: int
    frames: int = 64
    seed: int = 0
    image_sizes: tuple[tuple[int, int], ...] = IMAGE_SIZES
    uv_resolution: int = 224
    gestures: tuple[str, ...] = GESTURES
    hand_side: str = HAND_RIGHT
    hand_model_path: str | None = None  # None: the bundled hand
    shape_std: float = ranges.SHAPE_STD  # std of the sampled betas (clipped to +-ranges.MAX_ABS_BETA)
    hand_distance_m: tuple[float, float] = ranges.HAND_DISTANCE_M  # camera to hand, metres, uniform
    pitch_deg: tuple[float, float] = ranges.PITCH_DEG  # view below the horizon, degrees, uniform
    effective_modulus_pa: float = contact.DEFAULT_EFFECTIVE_MODULUS_PA

    def __post_init__(self) -> None:
        if self.sequences < 1:
            raise ConfigError(f"sequences must be >= 1. Got {self.sequences}")
        if self.frames < 2:
            raise ConfigError(f"frames must be >= 2. Got {self.frames}")
        if self.uv_resolution < 16:
            raise ConfigError(f"uv_resolution must be >= 16. Got {self.uv_resolution}")
        unknown = [g for g in self.gestures if g not in ALL_GESTURES]
        if unknown or not self.gestures:
            raise ConfigError(f"gestures must be a non-empty subset of {ALL_GESTURES}. Got {self.gestures}")
        if self.hand_side not in (HAND_RIGHT, HAND_LEFT):
            raise ConfigError(f"hand_side must be one of ('right', 'left'). Got {self.hand_side!r}")
        for size in self.image_sizes:
            if len(size) != 2 or min(size) < 32:
                raise ConfigError(f"image_sizes must be (H, W) pairs of at least 32. Got {size}")
        if not 0.0 <= self.shape_std <= ranges.MAX_SHAPE_STD:
            raise ConfigError(f"shape_std must be in [0, {ranges.MAX_SHAPE_STD}]. Got {self.shape_std}")
        _check_range("hand_distance_m", self.hand_distance_m, ranges.MIN_HAND_DISTANCE_M, ranges.MAX_HAND_DISTANCE_M)
        _check_range("pitch_deg", self.pitch_deg, ranges.MIN_PITCH_DEG, ranges.MAX_PITCH_DEG)


def _check_range(name: str, value, low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ConfigError(f"{name} must be a (min, max) pair with {low} <= min <= max <= {high}. Got {tuple(value)}")


@lru_cache(maxsize=4)
def hand_and_atlas(model_path: str | None, side: str, uv_resolution: int):
    # Imported here: workers build their own copies once (cached per process).
    from egopress_core.hand.hand_model import load_hand_model
    from egopress_core.uv_atlas import UVAtlas

    hand = load_hand_model(side=side, model_path=model_path)
    atlas = UVAtlas.from_obj(hand.uv_obj_path, resolution=uv_resolution, name=hand.uv_layout_name)
    return hand, atlas


def vertex_curvature_radius(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) posed vertices -> (V,) local radius of curvature, metres, clamped.

    Discrete mean curvature from the normal's change along each edge:
    kappa_ij = 2 n_i . (x_i - x_j) / |x_i - x_j|^2, averaged over a vertex's edges (exact on
    a sphere). Flat or concave regions get the maximum radius.
    """
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    offset = vertices[edges[:, 0]] - vertices[edges[:, 1]]
    kappa = 2.0 * np.einsum("ij,ij->i", normals[edges[:, 0]], offset) / np.maximum(
        np.einsum("ij,ij->i", offset, offset), 1e-12
    )
    count = np.bincount(edges[:, 0], minlength=len(vertices))
    mean_kappa = np.bincount(edges[:, 0], weights=kappa, minlength=len(vertices)) / np.maximum(count, 1)
    radius = 1.0 / np.maximum(mean_kappa, 1.0 / MAX_CURVATURE_RADIUS_M)
    return np.clip(radius, MIN_CURVATURE_RADIUS_M, MAX_CURVATURE_RADIUS_M)


def lump_texels_to_vertices(
    atlas, texel_pressure_kpa: np.ndarray, texel_area_m2: np.ndarray, vertex_area_m2: np.ndarray
) -> np.ndarray:
    """(Hu, Wu) pressure and texel areas, (V,) vertex areas -> (V,) per-vertex pressure, kPa.

    Texel t's force f_t = p_t a_t goes to the corners of its face by barycentric weight w_tv;
    vertex v's pressure is the force it gathers over its area (a third of its faces'), so
    sum_v p_v A_v equals sum_t f_t exactly.
    """
    mask = atlas.mask
    corners = atlas.faces[atlas.texel_face[mask]]  # (N, 3)
    weights = atlas.texel_barycentric[mask].astype(np.float64)  # (N, 3)
    force = (texel_pressure_kpa[mask].astype(np.float64) * texel_area_m2[mask])[:, None] * weights
    gathered = np.bincount(corners.ravel(), weights=force.ravel(), minlength=len(vertex_area_m2))
    pressure = np.divide(gathered, vertex_area_m2, out=np.zeros(len(vertex_area_m2)), where=vertex_area_m2 > 0)
    return pressure.astype(np.float32)


def pad_pressure_image(points_xy: np.ndarray, force_n: np.ndarray) -> np.ndarray:
    """Deposits point forces on the pad grid. (N, 2) world x/y, (N,) newtons ->
    (105, 185) kPa, row 0 at the pad's +y edge.

    Each force is shared bilinearly among the four cells around its point (texels are about as
    far apart as pad cells, so nearest-cell deposit would alias into stripes). Forces off the
    pad are not measured, as on the real sensor.
    """
    rows, cols = PAD_CELLS
    col_f = points_xy[:, 0] / PAD_PITCH_M + cols / 2 - 0.5  # cell-centre coordinates
    row_f = rows / 2 - points_xy[:, 1] / PAD_PITCH_M - 0.5
    col0, row0 = np.floor(col_f).astype(np.int64), np.floor(row_f).astype(np.int64)
    dc, dr = col_f - col0, row_f - row0
    cell_force = np.zeros(rows * cols)
    for r_off, c_off, weight in ((0, 0, (1 - dr) * (1 - dc)), (0, 1, (1 - dr) * dc), (1, 0, dr * (1 - dc)), (1, 1, dr * dc)):
        row, col = row0 + r_off, col0 + c_off
        inside = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        cell_force += np.bincount(row[inside] * cols + col[inside], weights=(force_n * weight)[inside], minlength=rows * cols)
    return (cell_force.reshape(rows, cols) / PAD_PITCH_M**2 / 1000.0).astype(np.float32)


def _camera_from_model_params(
    rotation_cw: np.ndarray,
    translation_cw: np.ndarray,
    global_rotation_world: np.ndarray,
    transl_world: np.ndarray,
    root_rest: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """MANO global orientation and translation re-expressed in the camera frame.

    MANO rotates about the rest root joint J0: v = R (x - J0) + J0 + t. With v_c = Rcw v + tcw,
    R_c = Rcw R and t_c = Rcw (J0 + t) + tcw - J0.
    """
    rotation_camera = rotation_cw @ global_rotation_world
    transl_camera = rotation_cw @ (root_rest + transl_world) + translation_cw - root_rest
    return orientation_to_axis_angle(rotation_camera), transl_camera


def generate_sequence(config: SynthConfig, index: int) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays and metadata of sequence ``index`` (deterministic in (config.seed, index))."""
    rng = np.random.default_rng([config.seed, index])
    hand, atlas = hand_and_atlas(config.hand_model_path, config.hand_side, config.uv_resolution)
    frames = config.frames
    gesture_name = config.gestures[index % len(config.gestures)]
    betas = np.clip(rng.normal(0.0, config.shape_std, size=10), -ranges.MAX_ABS_BETA, ranges.MAX_ABS_BETA)
    faces = np.asarray(hand.faces, dtype=np.int64)

    def forward(global_orient, hand_pose, transl):
        count = len(global_orient)
        with torch.no_grad():
            output = hand(
                global_orient=torch.as_tensor(global_orient, dtype=torch.float32),
                hand_pose=torch.as_tensor(hand_pose, dtype=torch.float32),
                betas=torch.as_tensor(np.repeat(betas[None], count, axis=0), dtype=torch.float32),
                transl=torch.as_tensor(transl, dtype=torch.float32),
            )
        return output.vertices.numpy().astype(np.float64), output.joints.numpy().astype(np.float64)

    # 1. Gesture: finger curls and hand orientation per frame, in the world frame.
    rest_vertices, rest_joints = forward(np.zeros((1, 3)), np.zeros((1, 45)), np.zeros((1, 3)))
    poser = HandPoser(rest_joints[0], hand.hands_mean)
    motion = sample_gesture(rng, gesture_name, frames, poser)
    hand_pose = np.stack([poser.pose(curls, motion.spread) for curls in motion.curls])
    global_orient = np.stack([orientation_to_axis_angle(r) for r in motion.orientation])
    vertices, joints = forward(global_orient, hand_pose, np.zeros((frames, 3)))

    # 2. Contact: place each frame's lowest texel at the gesture's x/y, then push the hand
    #    down until the integrated Hertz pressure equals the profile's force (or hold the gap).
    texel_points = atlas.texel_points(vertices)  # (T, Hu, Wu, 3)
    texel_area = atlas.texel_area(vertices)  # (T, Hu, Wu)
    vertex_area = atlas.vertex_area(vertices)  # (T, V)
    mask = atlas.mask
    transl = np.zeros((frames, 3))
    uv_pressure = np.zeros((frames, *mask.shape), dtype=np.float32)
    vertex_pressure = np.zeros((frames, hand.num_vertices), dtype=np.float32)
    pad_pressure = np.zeros((frames, *PAD_CELLS), dtype=np.float32)
    force = np.zeros(frames, dtype=np.float32)
    for t in range(frames):
        points = texel_points[t][mask]
        areas = texel_area[t][mask]
        radius_vertex = vertex_curvature_radius(vertices[t], faces)
        radius = atlas.vertex_to_uv(radius_vertex)[mask]
        lowest = int(np.argmax(points[:, 2]))
        height = points[:, 2] - points[lowest, 2]  # <= 0: distance above the lowest point

        def force_of_push(push_m: float) -> float:
            pressure = contact.hertz_pressure_kpa(height + push_m, radius, config.effective_modulus_pa)
            return float((pressure.astype(np.float64) * 1000.0 * areas).sum())

        target = float(motion.profile.force_n[t])
        push = contact.solve_push_depth(force_of_push, target) if target > 0 else -float(motion.profile.gap_m[t])
        transl[t, :2] = motion.lateral_m[t] - points[lowest, :2]
        transl[t, 2] = push - points[lowest, 2]

        penetration = height + push
        texel_pressure = contact.hertz_pressure_kpa(penetration, radius, config.effective_modulus_pa)
        uv_pressure[t][mask] = texel_pressure
        pad_pressure[t] = pad_pressure_image(points[:, :2] + transl[t, :2], texel_pressure * 1000.0 * areas)
        force[t] = float((texel_pressure.astype(np.float64) * 1000.0 * areas).sum())
        vertex_pressure[t] = lump_texels_to_vertices(atlas, uv_pressure[t], texel_area[t], vertex_area[t])
    vertices_world = vertices + transl[:, None, :]
    joints_world = joints + transl[:, None, :]

    # 3. Camera and appearance, then render every frame.
    image_size = tuple(config.image_sizes[int(rng.integers(len(config.image_sizes)))])
    centre = np.array([*motion.lateral_m.mean(axis=0), -0.03])
    middle = frames // 2
    rig = sample_camera_rig(rng, centre, frames, image_size, hand_heading=motion.heading,
                            thumb_side=joints_world[middle, OPENPOSE_FINGER_JOINTS["index"][0]] - joints_world[middle, OPENPOSE_FINGER_JOINTS["little"][0]],
                            distance_m=config.hand_distance_m, pitch_deg=config.pitch_deg)
    appearance = Appearance.sample(rng)
    skin = SkinTexture.sample(rng, appearance, rest_vertices[0], faces, rest_joints[0], poser.palm_normal)
    forearm = Forearm.sample(rng, rest_vertices[0], rest_joints[0])
    arm_albedo = arm_specular = None
    rgb = np.empty((frames, *image_size, 3), dtype=np.uint8)
    depth = np.empty((frames, *image_size), dtype=np.uint16)
    for t in range(frames):
        arm_vertices, arm_faces, arm_local = forearm.mesh(joints_world[t])
        if arm_albedo is None:
            arm_albedo, arm_specular = forearm_albedo(appearance, arm_local)
        scenery = Scenery(arm_vertices, arm_faces, arm_albedo, arm_local, arm_specular)
        rgb[t], depth[t] = render_rgbd(
            vertices_world[t], faces, vertex_pressure[t], rig.camera_from_world[t], rig.intrinsics, image_size, appearance, rng,
            skin, scenery=scenery,
        )

    # 4. Everything geometric into the camera frame.
    rotation_cw = rig.camera_from_world[:, :3, :3]
    translation_cw = rig.camera_from_world[:, :3, 3]
    vertices_camera = np.einsum("tij,tvj->tvi", rotation_cw, vertices_world) + translation_cw[:, None]
    joints_camera = np.einsum("tij,tvj->tvi", rotation_cw, joints_world) + translation_cw[:, None]
    root_rest = rest_joints[0, 0]
    orient_camera = np.empty((frames, 3))
    transl_camera = np.empty((frames, 3))
    for t in range(frames):
        orient_camera[t], transl_camera[t] = _camera_from_model_params(
            rotation_cw[t], translation_cw[t], motion.orientation[t], transl[t], root_rest
        )

    name = storage.sequence_dir_name(index)
    arrays = {
        "rgb": rgb,
        "depth_mm": depth,
        "uv_pressure_kpa": uv_pressure,
        "vertex_pressure_kpa": vertex_pressure,
        "pad_pressure_kpa": pad_pressure,
        "vertices": vertices_camera.astype(np.float32),
        "joints": joints_camera.astype(np.float32),
        "global_orient": orient_camera.astype(np.float32),
        "hand_pose": hand_pose.astype(np.float32),
        "betas": np.repeat(betas[None], frames, axis=0).astype(np.float32),
        "transl": transl_camera.astype(np.float32),
        "camera_from_world": rig.camera_from_world,
        "intrinsics": rig.intrinsics,
        "force_n": force,
        "target_force_n": motion.profile.force_n.astype(np.float32),
    }
    meta = {
        "name": name,
        "format_version": storage.FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "seed": [config.seed, index],
        "frames": frames,
        "fps": FPS,
        "gesture": gesture_name,
        "force_profile": motion.profile.description,
        "peak_force_n": float(force.max()),
        "image_size": list(image_size),
        "hand_side": config.hand_side,
        "hand_model": hand.name,
        "topology_id": hand.topology_id,
        "uv_layout": atlas.layout_id,
        "skin_rgb": appearance.skin_rgb.round(4).tolist(),
        "effective_modulus_pa": config.effective_modulus_pa,
    }
    return arrays, meta


def _init_worker() -> None:
    torch.set_num_threads(1)


def _generate_and_write(config: SynthConfig, root: str, index: int) -> str:
    arrays, meta = generate_sequence(config, index)
    storage.write_sequence(Path(root), index, arrays, meta)
    return meta["name"]


def generate_dataset(config: SynthConfig, out: str | os.PathLike, workers: int = 1, progress: bool = True) -> Path:
    """Generates ``config.sequences`` sequences into ``out``, resuming a previous run.

    Complete sequences already in ``out`` are kept (never regenerated or overwritten); an
    interrupted sequence's partial folder is discarded and redone. A folder generated with other
    settings is refused rather than mixed.
    """
    root = Path(out)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise DataError(f"{root}: output folder is not writable ({error.strerror})") from error
    info = {
        "format": storage.FORMAT_NAME,
        "format_version": storage.FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "config": {k: v for k, v in asdict(config).items() if k != "sequences"},
    }
    info_path = root / "dataset.json"
    if info_path.exists():
        existing = json.loads(info_path.read_text())
        differences = config_differences({k: existing.get(k) for k in info}, json.loads(json.dumps(info)))
        if differences:
            named = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in list(differences.items())[:4])
            more = f" and {len(differences) - 4} more" if len(differences) > 4 else ""
            raise DataError(
                f"{root} holds data generated with other settings ({info_path}: {named}{more}); "
                "choose another --out or delete it"
            )
    elif any(root.iterdir()):
        raise DataError(f"{root} is not empty and holds no synthetic data set; choose another --out")
    write_json_atomic(info_path, {**info, "sequences": config.sequences}, sort_keys=True)

    for partial in root.glob("seq_*.partial"):
        shutil.rmtree(partial)
    todo = [i for i in range(config.sequences) if not (root / storage.sequence_dir_name(i)).is_dir()]
    bar = tqdm(total=config.sequences, initial=config.sequences - len(todo), unit="seq", desc="synth", disable=not progress)
    if workers <= 1:
        for index in todo:
            _generate_and_write(config, str(root), index)
            bar.update()
    else:
        # Spawned, not forked: a fork of a process whose torch/open3d thread pools are running
        # can deadlock in the child. Each worker renders single-threaded.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
            for _ in pool.map(_generate_and_write, [config] * len(todo), [str(root)] * len(todo), todo):
                bar.update()
    bar.close()
    return root

