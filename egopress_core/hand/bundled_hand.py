"""Generates the bundled MANO-format hand (``egopress_core/assets/hand``).

    python -m egopress_core.hand.bundled_hand --out egopress_core/assets/hand

Writes, for the right hand and its mirror image (the left hand):
- ``MANO_EGOPRESS_HAND_<SIDE>.pkl``: a plain NumPy pickle with MANO's keys (``v_template``, ``f``,
  ``J_regressor``, ``weights``, ``kintree_table``, ``shapedirs``, ``posedirs``,
  ``hands_components``, ``hands_mean``, ``bs_style``, ``bs_type``), loadable by ``smplx.MANO``
  (the ``MANO_`` prefix is how ``smplx.create`` recognises the format; the hand is not MANO);
- ``MANO_EGOPRESS_HAND_<SIDE>.json``: the sidecar (model name, fingertip vertex ids, UV OBJ, shape
  component meanings, pose PCA standard deviations);
- ``EGOPRESS_HAND_UV_<SIDE>.obj``: the template with its UV atlas (``v``, ``vt``, ``f v/vt``).

How each part is made:
- mesh: :mod:`egopress_core.hand.template_mesh` (palm, five three-segment fingers, closed);
- UV atlas: 13 charts (palmar and dorsal side of the palm and of each finger, wrist cap),
  conformally flattened and packed; palmar charts get 1.5x the texel density of dorsal ones,
  the wrist cap 0.3x;
- joints: MANO's 16 joints and tree; the regressor averages the vertex ring around each finger
  joint and solves non-negative weights of nearby vertices for the thumb's CMC (inside the palm);
- skinning weights: smooth ramps across each joint along the finger axis, a thenar region moved
  by the thumb's CMC, then three steps of graph smoothing;
- shape blend shapes: central differences of the template w.r.t. the 10 anatomical parameters of
  :class:`~egopress_core.hand.template_mesh.HandDimensions`, one standard deviation each;
- pose PCA (``hands_mean``, ``hands_components``): PCA of 4000 sampled everyday poses;
- pose blend shapes: per vertex, the linear map from the joint rotation features (R - I) of the
  joints that move it to the rest-space offset that makes linear blend skinning reproduce dual
  quaternion skinning (which keeps the volume at bent joints), fitted by ridge regression over
  1200 sampled poses.

The left hand mirrors x: template and shape blend shapes x -> -x, faces reversed, pose blend
shapes and the pose PCA mirrored with the rotations (axis-angle (x, y, z) -> (x, -y, -z)).
The output is deterministic.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.optimize
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from egopress_core.files import write_bytes_atomic
from egopress_core.hand.mano_io import NUM_MANO_JOINTS, dumps_mano
from egopress_core.hand.poses import joint_axes, sample_plausible_poses
from egopress_core.hand.skeleton import MANO_FINGER_JOINTS
from egopress_core.hand.template_mesh import (
    FINGER_NAMES,
    PARTS,
    SHAPE_NAMES,
    SHAPE_STD,
    HandDimensions,
    HandMesh,
    build_hand_mesh,
)
from egopress_core.hand.uv_unwrap import UVLayout, unwrap_charts

MODEL_NAME = "egopress_hand_v1"
UV_LAYOUT_NAME = "egopress_hand_v1_uv"
GENERATOR_VERSION = "1"
SEED = 20240607
PALMAR_DENSITY = 1.5  # texel density of palmar charts relative to dorsal ones (pressure lives there)
WRIST_DENSITY = 0.3  # the wrist cap is where the forearm was cut off: few texels
NUM_PCA_POSES = 4000
NUM_CORRECTIVE_POSES = 1200
CORRECTIVE_RIDGE = 1e-3
# MANO's kinematic tree: wrist root, then three-joint chains (parent of each joint).
MANO_PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14])
FILE_NAMES = {
    "right": ("MANO_EGOPRESS_HAND_RIGHT.pkl", "MANO_EGOPRESS_HAND_RIGHT.json", "EGOPRESS_HAND_UV_RIGHT.obj"),
    "left": ("MANO_EGOPRESS_HAND_LEFT.pkl", "MANO_EGOPRESS_HAND_LEFT.json", "EGOPRESS_HAND_UV_LEFT.obj"),
}
_MIRROR = np.array([-1.0, 1.0, 1.0])


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


# ---------------------------------------------------------------------------------------------
# Joints and skinning


def joint_regressor(mesh: HandMesh) -> np.ndarray:
    """(16, V) regressor reproducing ``mesh.joints`` from the template vertices."""
    vertices = mesh.vertices
    regressor = np.zeros((NUM_MANO_JOINTS, len(vertices)))
    for joint in range(NUM_MANO_JOINTS):
        ring = mesh.joint_rings[joint]
        if ring is not None:
            regressor[joint, ring] = 1.0 / len(ring)
            continue
        # Non-negative weights of the 40 nearest palm/thumb vertices, summing to one, that
        # reproduce the joint; a small pull towards uniform weights spreads them out.
        candidates = np.where(np.isin(mesh.vertex_part, [PARTS.index("palm"), PARTS.index("thumb")]))[0]
        distance = np.linalg.norm(vertices[candidates] - mesh.joints[joint], axis=1)
        chosen = candidates[np.argsort(distance, kind="stable")[:40]]
        count = len(chosen)
        ridge, unity = 1e-3, 10.0
        system = np.vstack([vertices[chosen].T, unity * np.ones((1, count)), ridge * np.eye(count)])
        target = np.concatenate([mesh.joints[joint], [unity], ridge * np.full(count, 1.0 / count)])
        weights, _ = scipy.optimize.nnls(system, target)
        regressor[joint, chosen] = weights / weights.sum()
    error = np.abs(regressor @ vertices - mesh.joints).max()
    if error > 5e-4:
        raise RuntimeError(f"joint regressor misses the designed joints by {error * 1000:.2f} mm")
    return regressor


def _vertex_neighbours(faces: np.ndarray, count: int):
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(count, count)).tocsr()
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return adjacency, degree


def skinning_weights(mesh: HandMesh, smoothing_steps: int = 3) -> np.ndarray:
    """(V, 16) smooth skinning weights (rows sum to 1)."""
    vertices, axial, part = mesh.vertices, mesh.axial, mesh.vertex_part
    weights = np.zeros((len(vertices), NUM_MANO_JOINTS))
    mcp_half_width = 0.010
    joint_half_width = 0.0045
    palm = part == PARTS.index("palm")

    def chain_weights(s, lengths, start):
        l1, l2, _ = lengths
        w3 = _smoothstep((s - (l1 + l2) + joint_half_width) / (2 * joint_half_width))
        w2 = _smoothstep((s - l1 + joint_half_width) / (2 * joint_half_width)) - w3
        w1 = 1.0 - w2 - w3
        base = _smoothstep((s - start) / (2 * mcp_half_width))
        return base, w1, w2, w3

    for f_index, name in enumerate(FINGER_NAMES):
        j1, j2, j3 = MANO_FINGER_JOINTS[name]
        lengths = mesh.bone_lengths[name]
        # Finger vertices, and palm vertices of the columns under this finger (knuckle skin).
        members = (part == PARTS.index(name)) | (palm & (mesh.finger_of_vertex == f_index) & (axial > -1.0))
        base, w1, w2, w3 = chain_weights(axial[members], lengths, -mcp_half_width)
        weights[members, 0] = 1.0 - base
        weights[members, j1] = base * w1
        weights[members, j2] = base * w2
        weights[members, j3] = base * w3
    wrist_center = palm & (axial <= -1.0)  # the wrist cap's centre (template_mesh marks it -1)
    weights[wrist_center, 0] = 1.0

    # Thumb: CMC (13) moves the thumb and, fading with distance, the thenar skin around its base.
    thumb = part == PARTS.index("thumb")
    t1, t2, t3 = MANO_FINGER_JOINTS["thumb"]
    tl1, tl2, _ = mesh.bone_lengths["thumb"]
    s = axial[thumb]
    w3 = _smoothstep((s - (tl1 + tl2) + joint_half_width) / (2 * joint_half_width))
    w2 = _smoothstep((s - tl1 + joint_half_width) / (2 * joint_half_width)) - w3
    weights[thumb] = 0.0
    weights[thumb, t1] = 1.0 - w2 - w3
    weights[thumb, t2] = w2
    weights[thumb, t3] = w3
    thumb_base = mesh.vertices[thumb][np.argsort(s, kind="stable")[:12]]
    distance = np.min(np.linalg.norm(vertices[palm][:, None] - thumb_base[None], axis=2), axis=1)
    thenar = 0.75 * np.exp(-((distance / 0.016) ** 2))
    weights[palm] *= (1.0 - thenar)[:, None]
    weights[palm, t1] += thenar

    adjacency, degree = _vertex_neighbours(mesh.faces, len(vertices))
    for _ in range(smoothing_steps):
        weights = 0.5 * weights + 0.5 * (adjacency @ weights) / degree[:, None]
    weights[weights < 0.01] = 0.0
    return weights / weights.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Blend shapes


def shape_blend_shapes(dims: HandDimensions = HandDimensions()) -> np.ndarray:
    """(V, 3, 10) template change per one standard deviation of each shape parameter."""
    reference = build_hand_mesh(dims)
    columns = []
    for name in SHAPE_NAMES:
        plus = build_hand_mesh(dims.perturbed(name, SHAPE_STD[name]))
        minus = build_hand_mesh(dims.perturbed(name, -SHAPE_STD[name]))
        if not (np.array_equal(plus.faces, reference.faces) and np.array_equal(minus.faces, reference.faces)):
            raise RuntimeError(f"shape parameter {name} changed the mesh topology")
        columns.append((plus.vertices - minus.vertices) / 2.0)
    return np.stack(columns, axis=2)


def _quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (..., 4) quaternions stored (w, x, y, z)."""
    aw, av = a[..., :1], a[..., 1:]
    bw, bv = b[..., :1], b[..., 1:]
    w = aw * bw - np.sum(av * bv, axis=-1, keepdims=True)
    v = aw * bv + bw * av + np.cross(av, bv)
    return np.concatenate([w, v], axis=-1)


def _rigid_transforms(poses: np.ndarray, v_template: np.ndarray, regressor: np.ndarray) -> np.ndarray:
    """(B, 16, 4, 4) rest-to-posed transform of each joint (smplx's kinematic chain)."""
    from smplx.lbs import batch_rigid_transform, batch_rodrigues

    full = torch.from_numpy(np.concatenate([np.zeros((len(poses), 3)), poses], axis=1))
    rotations = batch_rodrigues(full.reshape(-1, 3)).reshape(len(poses), NUM_MANO_JOINTS, 3, 3)
    joints = torch.from_numpy(regressor @ v_template).expand(len(poses), -1, -1)
    _, transforms = batch_rigid_transform(rotations, joints, torch.from_numpy(MANO_PARENTS))
    return transforms.numpy()


def _dual_quaternion_skinning(vertices: np.ndarray, weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """(B, V, 3) vertices skinned by blended unit dual quaternions (Kavan et al. 2007)."""
    batch = transforms.shape[0]
    xyzw = Rotation.from_matrix(transforms[..., :3, :3].reshape(-1, 3, 3)).as_quat()
    real = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1).reshape(batch, NUM_MANO_JOINTS, 4)
    translation = np.concatenate([np.zeros((batch, NUM_MANO_JOINTS, 1)), transforms[..., :3, 3]], axis=-1)
    dual = 0.5 * _quaternion_multiply(translation, real)
    # Antipodality: align every joint's quaternion with the vertex's dominant joint.
    dominant = np.argmax(weights, axis=1)
    sign = np.sign(np.einsum("bjq,bvq->bvj", real, real[:, dominant]))
    sign[sign == 0] = 1.0
    blended_real = np.einsum("vj,bvj,bjq->bvq", weights, sign, real)
    blended_dual = np.einsum("vj,bvj,bjq->bvq", weights, sign, dual)
    norm = np.linalg.norm(blended_real, axis=-1, keepdims=True)
    c0, ce = blended_real / norm, blended_dual / norm
    w0, v0 = c0[..., 0], c0[..., 1:]
    we, ve = ce[..., 0], ce[..., 1:]
    translation = 2.0 * (w0[..., None] * ve - we[..., None] * v0 + np.cross(v0, ve))
    rotation = Rotation.from_quat(np.concatenate([v0, w0[..., None]], axis=-1).reshape(-1, 4)).as_matrix()
    rotated = np.einsum("nij,nj->ni", rotation, np.broadcast_to(vertices, (batch,) + vertices.shape).reshape(-1, 3))
    return rotated.reshape(batch, -1, 3) + translation


def pose_blend_shapes(
    v_template: np.ndarray, regressor: np.ndarray, weights: np.ndarray, poses: np.ndarray, chunk: int = 100
) -> np.ndarray:
    """(V, 3, 135) pose correctives: LBS(template + P feat(pose)) ~ DQS(template), ridge fit.

    Only vertices with several influencing joints have a residual; each is fitted on the
    (R - I) features of its influencing non-root joints.
    """
    num_vertices = len(v_template)
    features, targets = [], []
    for start in tqdm(range(0, len(poses), chunk), desc="pose correctives", leave=False):
        batch_poses = poses[start : start + chunk]
        transforms = _rigid_transforms(batch_poses, v_template, regressor)
        blended = np.einsum("vj,bjmn->bvmn", weights, transforms)
        target = _dual_quaternion_skinning(v_template, weights, transforms)
        # The rest-space offset that LBS maps onto the DQS result.
        rest_target = np.linalg.solve(blended[..., :3, :3], (target - blended[..., :3, 3])[..., None])[..., 0]
        targets.append(rest_target - v_template[None])
        rotations = Rotation.from_rotvec(batch_poses.reshape(-1, 3)).as_matrix().reshape(len(batch_poses), 15, 9)
        features.append(rotations - np.eye(3).reshape(1, 1, 9))
    features = np.concatenate(features)  # (B, 15, 9)
    targets = np.concatenate(targets)  # (B, V, 3)
    posedirs = np.zeros((num_vertices, 3, 135))
    for vertex in range(num_vertices):
        influencing = [j for j in range(1, NUM_MANO_JOINTS) if weights[vertex, j] > 0]
        if np.count_nonzero(weights[vertex]) < 2 or not influencing:
            continue
        design = np.concatenate([features[:, j - 1] for j in influencing], axis=1)  # (B, 9m)
        gram = design.T @ design + CORRECTIVE_RIDGE * len(design) * np.eye(design.shape[1])
        coefficients = np.linalg.solve(gram, design.T @ targets[:, vertex])  # (9m, 3)
        for k, joint in enumerate(influencing):
            posedirs[vertex, :, (joint - 1) * 9 : joint * 9] = coefficients[9 * k : 9 * (k + 1)].T
    return posedirs


# ---------------------------------------------------------------------------------------------
# Assembly


def build_right_hand() -> tuple[dict, dict, UVLayout, HandMesh]:
    """(pickle dict, sidecar dict, UV layout, template mesh) of the right hand."""
    mesh = build_hand_mesh()
    density = np.array(
        [
            WRIST_DENSITY if name == "wrist" else PALMAR_DENSITY if palmar else 1.0
            for name, palmar in zip(mesh.chart_names, mesh.chart_is_palmar)
        ]
    )
    layout = unwrap_charts(mesh.vertices, mesh.faces, mesh.face_chart, density)
    regressor = joint_regressor(mesh)
    weights = skinning_weights(mesh)
    shapedirs = shape_blend_shapes()

    rng = np.random.default_rng(SEED)
    axes = joint_axes(mesh.joints, mesh.palm_normal, thumb_pad_normal=mesh.thumb_frame[1])
    pca_poses = sample_plausible_poses(rng, NUM_PCA_POSES, axes)
    hands_mean = pca_poses.mean(axis=0)
    _, singular, components = np.linalg.svd(pca_poses - hands_mean, full_matrices=False)
    components *= np.where(components[np.arange(45), np.argmax(np.abs(components), axis=1)] < 0, -1.0, 1.0)[:, None]
    pca_std = singular / np.sqrt(len(pca_poses) - 1)
    corrective_poses = sample_plausible_poses(rng, NUM_CORRECTIVE_POSES, axes)
    posedirs = pose_blend_shapes(mesh.vertices, regressor, weights, corrective_poses)

    kintree = np.stack([MANO_PARENTS, np.arange(NUM_MANO_JOINTS)]).astype(np.int64)
    kintree[0, 0] = 2**32 - 1  # MANO stores the root's parent as uint32 -1
    data = {
        "v_template": mesh.vertices.astype(np.float64),
        "f": mesh.faces.astype(np.uint32),
        "J_regressor": regressor.astype(np.float64),
        "weights": weights.astype(np.float64),
        "kintree_table": kintree.astype(np.uint32),
        "shapedirs": shapedirs.astype(np.float64),
        "posedirs": posedirs.astype(np.float32),
        "hands_components": components.astype(np.float64),
        "hands_mean": hands_mean.astype(np.float64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    sidecar = {
        "hand_model": MODEL_NAME,
        "side": "right",
        "tip_vertex_ids": {finger: int(mesh.tip_vertex_ids[finger]) for finger in ("thumb",) + FINGER_NAMES},
        "uv_obj": FILE_NAMES["right"][2],
        "uv_layout": UV_LAYOUT_NAME,
        "uv_charts": list(mesh.chart_names),
        "shape_components": [
            {"name": name, "one_std": f"{100 * SHAPE_STD[name]:.0f}% change"} for name in SHAPE_NAMES
        ],
        "hands_pca_std": [round(float(value), 6) for value in pca_std],
        "frame": "metres; right hand: fingers along -x, thumb side +z, palm faces -y; wrist joint at the origin",
        "generator": "python -m egopress_core.hand.bundled_hand",
        "generator_version": GENERATOR_VERSION,
    }
    return data, sidecar, layout, mesh


def mirror_pose_vectors(poses: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (..., 3k) of a right hand -> the mirrored (x -> -x) hand's."""
    shape = poses.shape
    return (poses.reshape(shape[:-1] + (-1, 3)) * np.array([1.0, -1.0, -1.0])).reshape(shape)


def mirror_model(data: dict) -> dict:
    """The left-hand model of a right-hand model dict (x -> -x)."""
    mirrored = dict(data)
    mirrored["v_template"] = data["v_template"] * _MIRROR
    mirrored["f"] = data["f"][:, [0, 2, 1]].copy()
    mirrored["shapedirs"] = data["shapedirs"] * _MIRROR[None, :, None]
    # (R - I) of a mirrored rotation S R S is S (R - I) S: feature (a, b) flips by s_a s_b, and
    # the offset's x component flips with the mesh.
    feature_sign = np.outer(_MIRROR, _MIRROR).reshape(9)
    feature_sign = np.tile(feature_sign, NUM_MANO_JOINTS - 1)
    mirrored["posedirs"] = (data["posedirs"] * _MIRROR[None, :, None] * feature_sign[None, None, :]).astype(
        data["posedirs"].dtype
    )
    mirrored["hands_components"] = mirror_pose_vectors(data["hands_components"])
    mirrored["hands_mean"] = mirror_pose_vectors(data["hands_mean"])
    return mirrored


def obj_text(vertices: np.ndarray, faces: np.ndarray, layout: UVLayout, face_uv: np.ndarray, title: str) -> str:
    lines = [f"# {title}", "# generated by python -m egopress_core.hand.bundled_hand; vertex order = model order"]
    lines += [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in vertices]
    lines += [f"vt {u:.7f} {v:.7f}" for u, v in layout.uvs]
    lines += [
        f"f {a + 1}/{ta + 1} {b + 1}/{tb + 1} {c + 1}/{tc + 1}" for (a, b, c), (ta, tb, tc) in zip(faces, face_uv)
    ]
    return "\n".join(lines) + "\n"


def write_bundled_hand(out_dir: str | Path) -> dict[str, Path]:
    """Generates and writes both hands into ``out_dir``; returns the written paths."""
    out_dir = Path(out_dir)
    right, sidecar, layout, _ = build_right_hand()
    models = {"right": right, "left": mirror_model(right)}
    written = {}
    for side, data in models.items():
        pkl_name, json_name, obj_name = FILE_NAMES[side]
        side_sidecar = dict(sidecar, side=side, uv_obj=obj_name)
        face_uv = layout.face_uv if side == "right" else layout.face_uv[:, [0, 2, 1]]
        write_bytes_atomic(out_dir / pkl_name, dumps_mano(data))
        write_bytes_atomic(out_dir / json_name, (json.dumps(side_sidecar, indent=2) + "\n").encode())
        title = f"{MODEL_NAME} {side} hand, UV atlas {UV_LAYOUT_NAME}"
        text = obj_text(data["v_template"], data["f"].astype(np.int64), layout, face_uv, title)
        write_bytes_atomic(out_dir / obj_name, text.encode())
        written[f"{side}_pkl"] = out_dir / pkl_name
        written[f"{side}_json"] = out_dir / json_name
        written[f"{side}_obj"] = out_dir / obj_name
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (e.g. egopress_core/assets/hand)")
    args = parser.parse_args(argv)
    for name, path in write_bundled_hand(args.out).items():
        print(f"{name}: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
