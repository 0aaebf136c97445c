"""RGB-D rendering of a hand over the pad with open3d's CPU ray casting.

What makes pressure inferable from the pictures is rendered on purpose, as on real skin:
the soft tissue that would penetrate the pad is flattened onto it (the fingertip's contact
patch widens with force), and skin blanches where it is pressed (blood is pushed out, the
tone shifts towards pale yellow), more so at higher pressure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

# Sensel Morph active area (metres), the pad EgoPressure recorded with, centred at the origin.
PAD_HALF_EXTENT_M = (0.115, 0.0675)
# Pressure at which blanching is ~63 % of its full strength (capillary refill is suppressed
# from a few tens of kPa on).
BLANCHING_PRESSURE_KPA = 25.0
BLANCHED_SKIN_RGB = np.array([0.95, 0.88, 0.80])
WALL_RGB = np.array([0.78, 0.78, 0.74])


@dataclass(frozen=True)
class Appearance:
    """Per-sequence look: skin tone, lighting, pad and table colours, sensor noise."""

    skin_rgb: np.ndarray  # (3,) in [0, 1]
    light_direction_world: np.ndarray  # (3,) unit vector the light travels along
    ambient: float
    pad_rgb: np.ndarray  # (3,)
    table_rgb: np.ndarray  # (3,)
    depth_noise_mm_at_half_metre: float
    dropout_probability: float

    @staticmethod
    def sample(rng: np.random.Generator) -> "Appearance":
        light_skin, dark_skin = np.array([0.93, 0.76, 0.66]), np.array([0.42, 0.28, 0.20])
        tone = rng.uniform(0.0, 1.0)
        light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0])  # mostly down
        return Appearance(
            skin_rgb=(1 - tone) * light_skin + tone * dark_skin,
            light_direction_world=light / np.linalg.norm(light),
            ambient=rng.uniform(0.25, 0.45),
            pad_rgb=np.array([0.12, 0.12, 0.13]) + rng.uniform(-0.04, 0.04),
            table_rgb=np.array([0.55, 0.42, 0.30]) + rng.uniform(-0.1, 0.1, size=3),
            depth_noise_mm_at_half_metre=rng.uniform(1.0, 2.5),
            dropout_probability=rng.uniform(0.002, 0.01),
        )


def flatten_onto_pad(vertices_world: np.ndarray) -> np.ndarray:
    """(V, 3) -> (V, 3): tissue that would penetrate the pad (z > 0) rests on it (z = 0)."""
    flattened = vertices_world.copy()
    flattened[:, 2] = np.minimum(flattened[:, 2], 0.0)
    return flattened


def _pad_colour(points_world: np.ndarray, appearance: Appearance) -> np.ndarray:
    """(N, 3) pad-plane points -> (N, 3) colours: dark pad with a faint 1 cm grid inside the
    active area, table texture outside it."""
    x, y = points_world[:, 0], points_world[:, 1]
    inside = (np.abs(x) <= PAD_HALF_EXTENT_M[0]) & (np.abs(y) <= PAD_HALF_EXTENT_M[1])
    grid = (np.minimum(np.abs(np.mod(x, 0.01) - 0.005), np.abs(np.mod(y, 0.01) - 0.005)) > 0.0045)
    pad = appearance.pad_rgb[None, :] + 0.06 * grid[:, None]
    grain = 0.06 * np.sin(180.0 * y + 12.0 * np.sin(40.0 * x))
    table = appearance.table_rgb[None, :] * (1.0 + grain[:, None])
    return np.where(inside[:, None], pad, table)


def _rays_hit_box(origins: np.ndarray, directions: np.ndarray, box_min: np.ndarray, box_max: np.ndarray) -> np.ndarray:
    """(N,) bool: whether each ray (t >= 0) passes through the axis-aligned box (slab test)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / directions
        t0 = (box_min - origins) * inverse
        t1 = (box_max - origins) * inverse
    t_near = np.nanmax(np.minimum(t0, t1), axis=1)
    t_far = np.nanmin(np.maximum(t0, t1), axis=1)
    return (t_far >= np.maximum(t_near, 0.0)) & np.isfinite(t_far)


def _cast(scene, origins: np.ndarray, directions: np.ndarray, selected: np.ndarray) -> dict[str, np.ndarray]:
    """Casts only the selected rays; the others report no hit (t_hit = inf)."""
    count = len(origins)
    result = {
        "t_hit": np.full(count, np.inf),
        "primitive_ids": np.zeros(count, dtype=np.int64),
        "primitive_uvs": np.zeros((count, 2)),
        "primitive_normals": np.zeros((count, 3)),
    }
    if selected.any():
        rays = np.concatenate([origins[selected], directions[selected]], axis=1).astype(np.float32)
        hits = scene.cast_rays(o3d.core.Tensor(rays))
        result["t_hit"][selected] = hits["t_hit"].numpy()
        result["primitive_ids"][selected] = np.where(np.isfinite(hits["t_hit"].numpy()), hits["primitive_ids"].numpy().astype(np.int64), 0)
        result["primitive_uvs"][selected] = hits["primitive_uvs"].numpy()
        result["primitive_normals"][selected] = hits["primitive_normals"].numpy()
    return result


def render_rgbd(
    vertices_world: np.ndarray,
    faces: np.ndarray,
    vertex_pressure_kpa: np.ndarray,
    camera_from_world: np.ndarray,
    intrinsics: np.ndarray,
    image_size: tuple[int, int],
    appearance: Appearance,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Renders one frame.

    Args:
        vertices_world: (V, 3) posed hand vertices, world frame (may penetrate the pad).
        faces: (F, 3) triangle vertex indices.
        vertex_pressure_kpa: (V,) contact pressure, drives blanching.
        camera_from_world: (4, 4); intrinsics: (3, 3); image_size: (H, W).
    Returns:
        rgb (H, W, 3) uint8 and depth (H, W) uint16 millimetres along the optical axis,
        0 where the simulated sensor has no reading.
    """
    height, width = image_size
    surface = flatten_onto_pad(vertices_world).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(surface), o3d.core.Tensor(faces.astype(np.uint32)))

    # 1. Primary rays through pixel centres, in world coordinates.
    rotation, translation = camera_from_world[:3, :3], camera_from_world[:3, 3]
    origin = -rotation.T @ translation
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    directions_camera = pixels @ np.linalg.inv(intrinsics).T
    directions = directions_camera @ rotation  # == (rotation.T @ d.T).T
    box_min, box_max = surface.min(axis=0) - 1e-3, surface.max(axis=0) + 1e-3
    origins = np.broadcast_to(origin, directions.shape)
    # Only rays that pass through the hand's bounding box can hit it (typically a few percent).
    near_hand = _rays_hit_box(origins, directions, box_min, box_max)
    hits = _cast(scene, origins, directions, near_hand)
    hand_t = hits["t_hit"]
    # The pad plane z = 0 is intersected analytically (rays point down into it: d_z > 0).
    pad_t = np.where(directions[:, 2] > 1e-9, -origin[2] / np.maximum(directions[:, 2], 1e-9), np.inf)
    on_hand = hand_t < pad_t
    t = np.where(on_hand, hand_t, pad_t)
    # Rays above the horizon hit neither: a far wall, out of the depth sensor's range.
    background = ~np.isfinite(t)
    t = np.where(background, 0.0, t)
    points = origin + t[:, None] * directions

    # 2. Surface attributes: normals, and pressure interpolated inside each hit triangle.
    normals = np.zeros_like(points)
    normals[:, 2] = -1.0  # the pad faces up (-z)
    normals[on_hand] = hits["primitive_normals"][on_hand]
    flip = np.einsum("ij,ij->i", normals, directions) > 0  # light both sides of thin parts
    normals[flip] *= -1.0
    primitive = np.where(on_hand, hits["primitive_ids"], 0)
    barycentric_uv = hits["primitive_uvs"]
    corner_pressure = vertex_pressure_kpa[faces[primitive]]  # (N, 3)
    weights = np.stack(
        [1.0 - barycentric_uv[:, 0] - barycentric_uv[:, 1], barycentric_uv[:, 0], barycentric_uv[:, 1]],
        axis=1,
    )
    pressure = np.where(on_hand, (corner_pressure * weights).sum(axis=1), 0.0)

    # 3. Shading: Lambert + ambient, with cast shadows from the hand.
    towards_light = -appearance.light_direction_world
    shadow_origins = points + 1e-4 * normals
    shadow_directions = np.broadcast_to(towards_light, points.shape)
    may_be_shadowed = _rays_hit_box(shadow_origins, shadow_directions, box_min, box_max) & ~background
    shadowed = np.isfinite(_cast(scene, shadow_origins, shadow_directions, may_be_shadowed)["t_hit"])
    diffuse = np.clip(normals @ towards_light, 0.0, None) * ~shadowed
    shading = appearance.ambient + (1.0 - appearance.ambient) * diffuse
    blanching = 1.0 - np.exp(-pressure / BLANCHING_PRESSURE_KPA)
    skin = (1.0 - 0.7 * blanching[:, None]) * appearance.skin_rgb + 0.7 * blanching[:, None] * BLANCHED_SKIN_RGB
    albedo = np.where(on_hand[:, None], skin, _pad_colour(points, appearance))
    albedo[background] = WALL_RGB
    shading[background] = 1.0
    colour = albedo * shading[:, None] + rng.normal(0.0, 0.012, size=albedo.shape)
    rgb = (np.clip(colour, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(height, width, 3)

    # 4. Depth as a structured-light / ToF sensor sees it: axial noise growing with distance
    #    squared, drop-outs at depth edges and at random.
    depth_m = (t * directions_camera[:, 2]).reshape(height, width)
    noise_mm = appearance.depth_noise_mm_at_half_metre * (depth_m / 0.5) ** 2
    depth_mm = depth_m * 1000.0 + rng.normal(size=depth_m.shape) * noise_mm
    edge = np.zeros_like(depth_m, dtype=bool)
    jump = np.abs(np.diff(depth_m, axis=1)) > 0.015
    edge[:, 1:] |= jump
    edge[:, :-1] |= jump
    jump = np.abs(np.diff(depth_m, axis=0)) > 0.015
    edge[1:] |= jump
    edge[:-1] |= jump
    holes = (edge & (rng.random(depth_m.shape) < 0.6)) | (rng.random(depth_m.shape) < appearance.dropout_probability)
    holes |= background.reshape(height, width)
    depth = np.where(holes | ~np.isfinite(depth_mm), 0.0, np.clip(depth_mm, 0.0, 65535.0))
    return rgb, np.round(depth).astype(np.uint16)
