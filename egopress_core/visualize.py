"""Pictures people look at: pressure colour maps and the hand mesh coloured by pressure."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

NEUTRAL_SKIN_RGB = (205.0, 192.0, 182.0)
# Grey of entries outside the mask (off the hand's UV islands, depth holes): mid-grey stays apart
# from both ends of the sequential colour maps used here (inferno, viridis run near-black to pale).
MASKED_GREY = 128


@lru_cache(maxsize=8)
def _colormap_table(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colour map (imported on first use only)."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)


def colorize(values: np.ndarray, vmax: float, cmap: str = "inferno", mask: np.ndarray | None = None,
             background: int = MASKED_GREY) -> np.ndarray:
    """(...,) values -> (..., 3) uint8 colours on [0, vmax].

    The one colour mapping of the package: the live ``uv_pressure/image`` and marker, the labelled
    bag's mirrors, the benchmarks' message payload and the previews all use it, so the same frame
    looks the same everywhere.

    Args:
        values: NaN counts as 0 (no pressure), not as a colour of its own.
        vmax: value of the top colour; larger values clip to it.
        mask: same shape as ``values``; entries where it is False get ``background``.
        background: grey level of masked-out entries.
    """
    table = _colormap_table(cmap)
    scaled = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)) / max(float(vmax), 1e-9), 0.0, 1.0)
    colours = table[np.round(scaled * 255.0).astype(np.intp)]
    if mask is not None:
        colours[~np.asarray(mask, dtype=bool)] = background
    return colours


def render_mesh_values(
    vertices: np.ndarray,
    faces: np.ndarray,
    vertex_values: np.ndarray,
    view_direction: np.ndarray,
    image_size: int = 256,
    vmax: float | None = None,
    cmap: str = "inferno",
) -> np.ndarray:
    """Orthographic view of a mesh with per-vertex values as colours, Lambert-shaded.

    Args:
        vertices: (V, 3); faces: (F, 3); vertex_values: (V,).
        view_direction: (3,) direction the virtual camera looks along.
    Returns:
        (image_size, image_size, 3) uint8, white background.
    """
    import open3d as o3d  # slow to import; the colour maps (used by the live nodes) need none of it

    view = np.asarray(view_direction, dtype=np.float64)
    view /= np.linalg.norm(view)
    helper = np.array([0.0, 0.0, 1.0]) if abs(view[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    right = np.cross(view, helper)
    right /= np.linalg.norm(right)
    up = np.cross(right, view)
    centre = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    extent = 1.15 * np.max(np.abs((vertices - centre) @ np.stack([right, up], axis=1)))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    grid = (np.arange(image_size) + 0.5) / image_size * 2.0 - 1.0
    gx, gy = np.meshgrid(grid * extent, -grid * extent)
    origins = centre + gx.reshape(-1, 1) * right + gy.reshape(-1, 1) * up - view * 10.0 * extent
    rays = np.concatenate([origins, np.broadcast_to(view, origins.shape)], axis=1).astype(np.float32)
    hits = scene.cast_rays(o3d.core.Tensor(rays))
    hit = np.isfinite(hits["t_hit"].numpy())
    primitive = np.where(hit, hits["primitive_ids"].numpy().astype(np.int64), 0)
    uv = hits["primitive_uvs"].numpy()
    weights = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
    values = (np.asarray(vertex_values)[faces[primitive]] * weights).sum(axis=1)
    vmax = float(np.max(vertex_values)) if vmax is None else vmax
    colour = colorize(values, vmax if vmax > 0 else 1.0, cmap).astype(np.float64)
    # Unpressed skin (below 2 % of the scale) in a neutral tone, so the hand's shape reads and
    # contact stands out.
    colour[values <= 0.02 * (vmax if vmax > 0 else 1.0)] = NEUTRAL_SKIN_RGB
    normals = hits["primitive_normals"].numpy()
    shade = 0.45 + 0.55 * np.abs(normals @ view)
    colour = colour * shade[:, None]
    image = np.where(hit[:, None], colour, 255.0)
    return image.reshape(image_size, image_size, 3).astype(np.uint8)


def hand_views(vertices: np.ndarray, faces: np.ndarray, vertex_values: np.ndarray, image_size: int = 256, vmax: float | None = None) -> np.ndarray:
    """Both sides of a hand side by side: (image_size, 2 * image_size, 3) uint8.

    The views look along the axis of least spread of the vertices, which for a hand is the
    palm normal, so one of the two shows the palm wherever the hand is.
    """
    centred = vertices - vertices.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    normal = axes[2]
    return np.concatenate(
        [
            render_mesh_values(vertices, faces, vertex_values, normal, image_size, vmax),
            render_mesh_values(vertices, faces, vertex_values, -normal, image_size, vmax),
        ],
        axis=1,
    )
