"""Visual check of a hand model: posed renders, the UV atlas and a UV texture on the mesh.

Rendering casts one ray per pixel with open3d's ``RaycastingScene`` (CPU, headless): the hit
triangle and barycentric coordinates give a smoothly interpolated normal for Lambert shading and
the texture coordinate for texturing, with correct occlusion.
"""

from __future__ import annotations

import colorsys
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from egopress_core.errors import DataError
from egopress_core.hand.hand_model import HandModel, read_obj_topology
from egopress_core.hand.poses import joint_axes, pose_from_angles

SKIN = np.array([0.86, 0.67, 0.56])
BACKGROUND = np.array([1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Camera:
    """Look-at pinhole camera."""

    eye: np.ndarray  # (3,)
    center: np.ndarray  # (3,)
    up: np.ndarray  # (3,)
    fov_deg: float = 30.0


def read_obj_uvs(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """((T, 2) texture coordinates, (F, 3) per-corner texture indices) of an OBJ's ``f v/vt``."""
    uvs, face_uv = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("vt "):
                uvs.append([float(value) for value in line.split()[1:3]])
            elif line.startswith("f "):
                corners = line.split()[1:]
                if any(len(corner.split("/")) < 2 or not corner.split("/")[1] for corner in corners):
                    raise DataError(f"{path}: face without texture coordinates: {line.strip()!r}")
                face_uv.append([int(corner.split("/")[1]) - 1 for corner in corners])
    return np.asarray(uvs, dtype=np.float64), np.asarray(face_uv, dtype=np.int64)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit vertex normals."""
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    camera: Camera,
    size: tuple[int, int] = (320, 320),
    corner_uvs: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    color: np.ndarray = SKIN,
) -> np.ndarray:
    """(H, W, 3) float image in [0, 1] of a triangle mesh.

    Args:
        vertices: (V, 3); faces: (F, 3).
        corner_uvs: (F, 3, 2) UV of each face corner, with ``texture`` (Ht, Wt, 3) in [0, 1]
            whose row 0 is v = 1; None: plain ``color``.
    """
    import open3d as o3d

    height, width = size
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32))
    )
    rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
        fov_deg=camera.fov_deg,
        center=camera.center.astype(np.float32).tolist(),
        eye=camera.eye.astype(np.float32).tolist(),
        up=camera.up.astype(np.float32).tolist(),
        width_px=width,
        height_px=height,
    )
    # open3d's pinhole rays put row 0 at the bottom and column 0 at the right of the view:
    # turn them half a turn so row 0 is the top and column 0 the left.
    rays = o3d.core.Tensor(np.ascontiguousarray(rays.numpy()[::-1, ::-1]))
    hits = scene.cast_rays(rays)
    triangle = hits["primitive_ids"].numpy().astype(np.int64)
    barycentric = hits["primitive_uvs"].numpy().astype(np.float64)
    hit = np.isfinite(hits["t_hit"].numpy())
    image = np.broadcast_to(BACKGROUND, (height, width, 3)).copy()
    if not hit.any():
        return image
    tri = triangle[hit]
    b1, b2 = barycentric[hit, 0], barycentric[hit, 1]
    weights = np.stack([1 - b1 - b2, b1, b2], axis=1)
    normals = vertex_normals(vertices, faces)
    normal = np.einsum("nk,nkc->nc", weights, normals[faces[tri]])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    view = rays.numpy()[..., 3:6][hit]
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    normal = np.where((np.sum(normal * view, axis=1) > 0)[:, None], -normal, normal)  # back faces
    # Lights in camera terms: key from upper left, fill from the right, both towards the scene.
    forward = camera.center - camera.eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, camera.up)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    key = -(forward - 0.6 * right + 0.8 * up)
    key /= np.linalg.norm(key)
    fill = -(forward + 0.8 * right - 0.2 * up)
    fill /= np.linalg.norm(fill)
    diffuse = 0.75 * np.clip(normal @ key, 0, None) + 0.25 * np.clip(normal @ fill, 0, None)
    half = key - forward
    half /= np.linalg.norm(half)
    specular = 0.12 * np.clip(normal @ half, 0, None) ** 24
    if corner_uvs is not None and texture is not None:
        uv = np.einsum("nk,nkc->nc", weights, corner_uvs[tri])
        tex_h, tex_w = texture.shape[:2]
        col = np.clip((uv[:, 0] * tex_w).astype(np.int64), 0, tex_w - 1)
        row = np.clip(((1.0 - uv[:, 1]) * tex_h).astype(np.int64), 0, tex_h - 1)
        albedo = texture[row, col]
    else:
        albedo = np.broadcast_to(color, (len(tri), 3))
    shade = 0.28 + diffuse
    image[hit] = np.clip(albedo * shade[:, None] + specular[:, None], 0, 1)
    return image


def uv_test_texture(resolution: int = 224, cells: int = 8) -> np.ndarray:
    """(H, W, 3) texture, row 0 at v = 1: hue varies with u, lightness with v, a checker on top."""
    centres = (np.arange(resolution) + 0.5) / resolution
    v, u = np.meshgrid(centres[::-1], centres, indexing="ij")
    rgb = np.array(
        [colorsys.hls_to_rgb(0.85 * hue, 0.35 + 0.35 * light, 0.75) for hue, light in zip(u.ravel(), v.ravel())]
    )
    rgb = rgb.reshape(resolution, resolution, 3)
    checker = ((np.floor(u * cells) + np.floor(v * cells)) % 2).astype(bool)
    rgb[checker] *= 0.72
    return rgb


def named_poses(hand: HandModel) -> dict[str, np.ndarray]:
    """Flat, the model's mean pose, fist, pinch (thumb tip solved onto the index tip) and
    pointing, as (45,) poses relative to the flat hand."""
    rest = hand.rest()
    joints16 = _mano_joints(rest)
    palm_normal = _palm_normal(hand, joints16)
    axes = joint_axes(joints16, palm_normal)
    curled = {finger: (1.45, 1.65, 1.0) for finger in ("index", "middle", "ring", "little")}
    poses = {
        "flat": np.zeros(45),
        "mean (hands_mean)": np.asarray(hand.hands_mean, dtype=np.float64),
    }
    fist = pose_from_angles(axes, dict(curled, thumb=(0.35, 0.55, 0.6)))
    poses["fist"] = _solve_thumb(hand, fist, target="index_pip", distance=0.016)
    pointing = pose_from_angles(axes, dict(curled, index=(0.05, 0.05, 0.0), thumb=(0.35, 0.55, 0.6)))
    poses["pointing"] = _solve_thumb(hand, pointing, target="middle_pip", distance=0.016)
    pinch = pose_from_angles(
        axes,
        {
            "index": (0.75, 0.7, 0.35),
            "middle": (0.35, 0.45, 0.25),
            "ring": (0.3, 0.4, 0.25),
            "little": (0.25, 0.35, 0.2),
        },
    )
    poses["pinch"] = _solve_thumb(hand, pinch, target="index_tip", distance=0.014)
    return poses


def _mano_joints(output) -> np.ndarray:
    joints21 = output.joints[0].detach().cpu().numpy().astype(np.float64)
    order = [0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3]  # OpenPose rows of MANO joints
    return joints21[order]


def _palm_normal(hand: HandModel, joints16: np.ndarray) -> np.ndarray:
    """Out of the palm: (index MCP - wrist) x (little MCP - wrist) for a right hand."""
    normal = np.cross(joints16[1] - joints16[0], joints16[7] - joints16[0])
    normal /= np.linalg.norm(normal)
    return normal if hand.is_right else -normal


_TARGET_ROWS = {"index_tip": 8, "index_pip": 6, "middle_pip": 10}


def _solve_thumb(hand: HandModel, pose: np.ndarray, target: str, distance: float) -> np.ndarray:
    """Adjusts the thumb's three joints (and nothing else) so its tip lies ``distance`` from a
    target joint, staying close to the given thumb rotations."""
    dtype = hand.mano.v_template.dtype
    base = torch.tensor(pose, dtype=dtype)
    delta = torch.zeros(9, dtype=dtype, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=0.03)
    zeros = lambda n: torch.zeros(1, n, dtype=dtype)  # noqa: E731
    for _ in range(200):
        full = torch.cat([base[:36], base[36:] + delta])[None]
        out = hand(zeros(3), full, zeros(10), zeros(3))
        gap = torch.linalg.norm(out.joints[0, 4] - out.joints[0, _TARGET_ROWS[target]])
        loss = (gap - distance) ** 2 * 1e4 + 1e-3 * (delta**2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result = pose.copy()
    result[36:] += delta.detach().numpy()
    return result


def crop_to_content(image: np.ndarray, margin: float = 0.08) -> np.ndarray:
    """Square crop of an (H, W, 3) render around its non-background pixels."""
    mask = np.any(np.abs(image - BACKGROUND) > 1e-3, axis=2)
    if not mask.any():
        return image
    rows, cols = np.where(mask)
    center = np.array([(rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2])
    half = (1 + margin) * max(rows.max() - rows.min(), cols.max() - cols.min()) / 2 + 2
    top, left = (center - half).astype(int)
    size = int(2 * half)
    padded = np.pad(image, ((size, size), (size, size), (0, 0)), constant_values=1.0)
    return padded[top + size : top + 2 * size, left + size : left + 2 * size]


def _look_at(center: np.ndarray, direction: np.ndarray, up: np.ndarray, distance: float) -> Camera:
    direction = direction / np.linalg.norm(direction)
    return Camera(eye=center + distance * direction, center=center, up=up)


def make_hand_preview(hand: HandModel, out_path: str | os.PathLike, panel_px: int = 300) -> Path:
    """Writes a PNG: the hand in five poses from the back and the palm side, the UV atlas, the
    test texture and the textured hand. Returns the path."""
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    if hand.uv_obj_path is None:
        raise DataError(f"hand model {hand.name} has no UV atlas OBJ to preview")
    uvs, face_uv = read_obj_uvs(hand.uv_obj_path)
    _, obj_faces = read_obj_topology(hand.uv_obj_path)
    if len(face_uv) != hand.num_faces:
        raise DataError(f"{hand.uv_obj_path}: {len(face_uv)} faces with UVs, the model has {hand.num_faces}")
    faces = obj_faces  # the OBJ's corner order matches its UV corners
    corner_uvs = uvs[face_uv]
    texture = uv_test_texture()

    poses = named_poses(hand)
    rest = hand.rest()
    joints16 = _mano_joints(rest)
    normal = _palm_normal(hand, joints16)
    forward = joints16[4] - joints16[0]
    forward /= np.linalg.norm(forward)
    side = np.cross(forward, normal)
    dtype = hand.mano.v_template.dtype
    renders = {}
    with torch.no_grad():
        for name, pose in poses.items():
            out = hand(
                torch.zeros(1, 3, dtype=dtype),
                torch.tensor(pose, dtype=dtype)[None],
                torch.zeros(1, 10, dtype=dtype),
                torch.zeros(1, 3, dtype=dtype),
            )
            renders[name] = out.vertices[0].numpy().astype(np.float64)

    def views(vertices):
        center = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
        extent = np.linalg.norm(vertices.max(axis=0) - vertices.min(axis=0))
        distance = 0.62 * extent / np.tan(np.deg2rad(15.0))
        back = _look_at(center, -normal + 0.35 * side - 0.25 * forward, forward, distance)
        palm = _look_at(center, normal + 0.45 * side - 0.3 * forward, forward, distance)
        return back, palm

    names = list(poses)
    fig = Figure(figsize=(len(names) * 2.6, 3 * 2.6 + 0.4), dpi=110)
    grid = fig.add_gridspec(3, len(names), hspace=0.12, wspace=0.04)
    size = (panel_px, panel_px)
    for column, name in enumerate(names):
        back, palm = views(renders[name])
        for row, camera in enumerate((back, palm)):
            ax = fig.add_subplot(grid[row, column])
            ax.imshow(crop_to_content(render_mesh(renders[name], hand.faces, camera, size)))
            ax.set_axis_off()
            if row == 0:
                ax.set_title(name, fontsize=10)
    ax = fig.add_subplot(grid[2, 0:2])
    triangles = uvs[face_uv]
    colors = texture[
        np.clip(((1 - triangles[:, :, 1].mean(axis=1)) * texture.shape[0]).astype(int), 0, texture.shape[0] - 1),
        np.clip((triangles[:, :, 0].mean(axis=1) * texture.shape[1]).astype(int), 0, texture.shape[1] - 1),
    ]
    ax.add_collection(PolyCollection(triangles, facecolors=colors, edgecolors="0.25", linewidths=0.2))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_title(f"UV atlas ({len(uvs)} UVs, {hand.num_faces} faces)", fontsize=9)
    ax.tick_params(labelsize=6)
    ax = fig.add_subplot(grid[2, 2])
    ax.imshow(texture, extent=(0, 1, 0, 1))
    ax.set_title("test UV map", fontsize=9)
    ax.tick_params(labelsize=6)
    for offset, name in enumerate(("flat", names[-1])):
        if 3 + offset >= len(names):
            break
        back, palm = views(renders[name])
        ax = fig.add_subplot(grid[2, 3 + offset])
        camera = palm if offset == 0 else back
        textured = render_mesh(renders[name], faces, camera, size, corner_uvs=corner_uvs, texture=texture)
        ax.imshow(crop_to_content(textured))
        ax.set_axis_off()
        ax.set_title(f"UV map on {name} ({'palm' if offset == 0 else 'back'})", fontsize=9)
    fig.suptitle(
        f"{hand.name}, {hand.side} hand, {hand.num_vertices} vertices: poses seen from the back (top row) "
        "and the palm side (middle row)",
        fontsize=11,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    from egopress_core.files import write_bytes_atomic

    write_bytes_atomic(out_path, buffer.getvalue())
    return out_path
