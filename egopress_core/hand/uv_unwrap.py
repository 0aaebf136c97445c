"""UV atlas of a mesh already cut into charts: conformal flattening and packing into [0, 1]^2.

Each chart (a set of faces forming a topological disc) is flattened by least-squares conformal
maps (LSCM, Lévy et al. 2002) refined as-rigid-as-possible (ARAP, Liu et al. 2008) so texel
density is even across the chart (LSCM alone shrinks rounded fingertips), scaled so its UV area is proportional to its surface area times a
per-chart density weight, turned to its smallest bounding box, and packed into the unit square
by bottom-left skyline packing with a gutter of a few texels at the target resolution. Deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.linalg


@dataclass(frozen=True)
class UVLayout:
    """Per-corner UVs of a mesh.

    Attributes:
        uvs: (T, 2) float64 texture coordinates in [0, 1]^2 (u right, v up).
        face_uv: (F, 3) int64 index into ``uvs`` of each face corner.
        uv_vertex: (T,) int64 mesh vertex of each texture coordinate (seam vertices have several).
        chart_of_uv: (T,) int64 chart of each texture coordinate.
    """

    uvs: np.ndarray
    face_uv: np.ndarray
    uv_vertex: np.ndarray
    chart_of_uv: np.ndarray


def lscm(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Conformal flattening of one disc-like chart.

    Args:
        vertices: (n, 3) chart vertices.
        faces: (m, 3) triangles indexing ``vertices``, consistently oriented.
    Returns:
        (n, 2) UVs, orientation-preserving (counter-clockwise faces stay counter-clockwise).
    """
    n = len(vertices)
    p0, p1, p2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    e1 = p1 - p0
    length1 = np.linalg.norm(e1, axis=1)
    axis_x = e1 / length1[:, None]
    normal = np.cross(e1, p2 - p0)
    double_area = np.linalg.norm(normal, axis=1)
    normal /= double_area[:, None]
    axis_y = np.cross(normal, axis_x)
    # Local 2D coordinates of the three corners: q0 = 0, q1 on the x axis.
    q = np.zeros((len(faces), 3, 2))
    q[:, 1, 0] = length1
    q[:, 2, 0] = np.einsum("ij,ij->i", p2 - p0, axis_x)
    q[:, 2, 1] = np.einsum("ij,ij->i", p2 - p0, axis_y)
    # W_j = edge opposite corner j as a complex number; the conformal residual of a face is
    # sum_j W_j U_j / sqrt(2 area) (the d/dz-bar of the linear map, times the area).
    weight = 1.0 / np.sqrt(double_area)
    rows, cols, values = [], [], []
    for j in range(3):
        edge = q[:, (j + 2) % 3] - q[:, (j + 1) % 3]
        a, b = edge[:, 0] * weight, edge[:, 1] * weight
        face_rows = np.arange(len(faces))
        vertex = faces[:, j]
        # real part: a u - b v ; imaginary part: b u + a v
        rows += [face_rows, face_rows, face_rows + len(faces), face_rows + len(faces)]
        cols += [vertex, vertex + n, vertex, vertex + n]
        values += [a, -b, b, a]
    matrix = scipy.sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(2 * len(faces), 2 * n)
    )
    # Pin the two vertices farthest apart (approximately) to fix translation, rotation, scale.
    first = int(np.argmax(np.linalg.norm(vertices - vertices.mean(axis=0), axis=1)))
    second = int(np.argmax(np.linalg.norm(vertices - vertices[first], axis=1)))
    pinned = np.array([first, second, first + n, second + n])
    pinned_values = np.array([0.0, np.linalg.norm(vertices[second] - vertices[first]), 0.0, 0.0])
    free = np.setdiff1d(np.arange(2 * n), pinned)
    rhs = -matrix[:, pinned] @ pinned_values
    system = matrix[:, free]
    solution = scipy.sparse.linalg.spsolve((system.T @ system).tocsc(), system.T @ rhs)
    flat = np.zeros(2 * n)
    flat[pinned] = pinned_values
    flat[free] = solution
    return np.stack([flat[:n], flat[n:]], axis=1)


def _local_triangle_coordinates(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(m, 3, 2) isometric 2D coordinates of each triangle's corners (corner 0 at the origin)."""
    p0, p1, p2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    e1 = p1 - p0
    axis_x = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    normal = np.cross(e1, p2 - p0)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    axis_y = np.cross(normal, axis_x)
    local = np.zeros((len(faces), 3, 2))
    local[:, 1, 0] = np.linalg.norm(e1, axis=1)
    local[:, 2, 0] = np.einsum("ij,ij->i", p2 - p0, axis_x)
    local[:, 2, 1] = np.einsum("ij,ij->i", p2 - p0, axis_y)
    return local


def arap_refine(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, iterations: int = 30) -> np.ndarray:
    """As-rigid-as-possible refinement of a chart's UVs (Liu et al. 2008, local/global).

    LSCM preserves angles but can shrink areas a lot (a rounded fingertip cap comes out small);
    ARAP, started from it, trades a little angle distortion for near-isometry, so texel density
    stays even across the chart. Cotangent weights are clamped positive to keep the global
    system definite.

    Args:
        vertices: (n, 3); faces: (m, 3); uv: (n, 2) initial UVs (orientation-preserving).
    Returns:
        (n, 2) refined UVs, in the same orientation, in surface units (metres).
    """
    n = len(vertices)
    local = _local_triangle_coordinates(vertices, faces)
    # Edge (i, j) opposite corner k, weighted by half the cotangent of the angle at k.
    weights, edge_index = [], []
    for k in range(3):
        i, j = (k + 1) % 3, (k + 2) % 3
        a = local[:, i] - local[:, k]
        b = local[:, j] - local[:, k]
        cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
        cot = np.einsum("ij,ij->i", a, b) / np.maximum(np.abs(cross), 1e-18)
        weights.append(np.clip(0.5 * cot, 1e-4, None))
        edge_index.append((i, j))
    weights = np.stack(weights, axis=1)  # (m, 3): weight of the edge opposite corner k
    diagonal = np.zeros(n)
    rows, cols, values = [], [], []
    for k, (i, j) in enumerate(edge_index):
        vi, vj, w = faces[:, i], faces[:, j], weights[:, k]
        np.add.at(diagonal, vi, w)
        np.add.at(diagonal, vj, w)
        rows += [vi, vj]
        cols += [vj, vi]
        values += [-w, -w]
    off_diagonal = scipy.sparse.coo_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    laplacian = (off_diagonal + scipy.sparse.diags(diagonal)).tocsc()
    # Pin vertex 0 (translation); the rest of the energy fixes rotation and scale.
    free = np.arange(1, n)
    solver = scipy.sparse.linalg.splu(laplacian[free][:, free].tocsc())
    uv = uv.copy()
    for _ in range(iterations):
        # Local step: best rotation of each triangle's rest shape onto its current UVs.
        covariance = np.zeros((len(faces), 2, 2))
        for k, (i, j) in enumerate(edge_index):
            du = uv[faces[:, i]] - uv[faces[:, j]]
            dx = local[:, i] - local[:, j]
            covariance += weights[:, k, None, None] * du[:, :, None] * dx[:, None, :]
        left, _, right = np.linalg.svd(covariance)
        flip = np.linalg.det(left @ right) < 0
        left[flip, :, 1] *= -1
        rotation = left @ right
        # Global step: the UVs whose edges best match the rotated rest edges.
        rhs = np.zeros((n, 2))
        for k, (i, j) in enumerate(edge_index):
            target = weights[:, k, None] * np.einsum("tab,tb->ta", rotation, local[:, i] - local[:, j])
            np.add.at(rhs, faces[:, i], target)
            np.add.at(rhs, faces[:, j], -target)
        rhs_free = rhs[free] - laplacian[free][:, [0]] @ uv[[0]]
        uv[free] = np.stack([solver.solve(rhs_free[:, 0]), solver.solve(rhs_free[:, 1])], axis=1)
    return uv


def signed_uv_areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) signed areas of UV triangles (positive = counter-clockwise)."""
    a, b, c = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _min_area_rotation(points: np.ndarray) -> np.ndarray:
    """Rotates 2D points so their axis-aligned box is smallest, then stands it upright."""
    best = None
    for degrees in np.arange(0.0, 180.0, 1.0):
        angle = np.deg2rad(degrees)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        rotated = points @ rotation.T
        extent = rotated.max(axis=0) - rotated.min(axis=0)
        area = extent[0] * extent[1]
        if best is None or area < best[0] - 1e-12:
            best = (area, rotated, extent)
    _, rotated, extent = best
    if extent[0] > extent[1]:  # tall charts pack better on shelves
        rotated = rotated @ np.array([[0.0, -1.0], [1.0, 0.0]]).T
    return rotated - rotated.min(axis=0)


def _skyline_pack(sizes: np.ndarray, width: float, gutter: float) -> tuple[np.ndarray, float, float]:
    """Bottom-left skyline packing of boxes (tallest first) into a strip of ``width``.

    Each box goes where its bottom edge is lowest (then leftmost), resting on the skyline of
    the boxes placed so far. Returns offsets, used width and used height.
    """
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i][1], -sizes[i][0], i))
    # Skyline as sorted breakpoints: xs[k] starts a segment of height hs[k] up to xs[k + 1].
    xs, hs = [0.0], [0.0]
    offsets = np.zeros((len(sizes), 2))
    for i in order:
        w, h = sizes[i]
        best = None
        for k, x in enumerate(xs):
            if x + w > width + 1e-12:
                break
            # Highest skyline level under [x, x + w + gutter).
            level = max(
                hs[m]
                for m in range(len(xs))
                if xs[m] < x + w + gutter - 1e-12 and (m + 1 == len(xs) or xs[m + 1] > x + 1e-12)
            )
            y = level + (gutter if level > 0 else 0.0)
            if best is None or y < best[1] - 1e-12:
                best = (x, y)
        if best is None:  # wider than the strip: start at the left on top of everything
            best = (0.0, max(hs) + gutter)
        x, y = best
        offsets[i] = (x, y)
        # Raise the skyline over [x, x + w + gutter) to y + h.
        right = x + w + gutter
        points = sorted(set([p for p in xs if p < x or p >= right] + [x, right]))
        new_hs = []
        for p in points:
            if x <= p < right:
                new_hs.append(y + h)
            else:
                m = max(m for m in range(len(xs)) if xs[m] <= p)
                new_hs.append(hs[m])
        xs, hs = points, new_hs
    used = offsets + sizes
    return offsets, float(used[:, 0].max()), float(used[:, 1].max())


def unwrap_charts(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_chart: np.ndarray,
    density: np.ndarray,
    resolution: int = 224,
    gutter_texels: float = 3.0,
) -> UVLayout:
    """Flattens and packs the charts of a mesh.

    Args:
        vertices: (V, 3); faces: (F, 3) outward-oriented; face_chart: (F,) chart of each face.
        density: (C,) relative texel density per chart (UV area ~ density * surface area).
        resolution: UV map size the gutter is measured at.
        gutter_texels: empty texels kept between charts and around the border.
    """
    num_charts = int(face_chart.max()) + 1
    charts = []
    for chart in range(num_charts):
        chart_faces = faces[face_chart == chart]
        chart_vertices, local_faces = np.unique(chart_faces, return_inverse=True)
        local_faces = local_faces.reshape(-1, 3)
        uv = lscm(vertices[chart_vertices], local_faces)
        if signed_uv_areas(uv, local_faces).sum() < 0:
            uv[:, 0] *= -1
        refined = arap_refine(vertices[chart_vertices], local_faces, uv)
        if np.all(signed_uv_areas(refined, local_faces) > 0):  # keep LSCM if ARAP would fold
            uv = refined
        corners = vertices[chart_faces]
        cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        surface = 0.5 * np.linalg.norm(cross, axis=1).sum()
        uv *= np.sqrt(density[chart] * surface / signed_uv_areas(uv, local_faces).sum())
        charts.append((chart_vertices, local_faces, _min_area_rotation(uv)))

    sizes = np.array([uv.max(axis=0) for _, _, uv in charts])
    # Gutter in chart units depends on the final scale: fix it by iterating.
    scale = 1.0
    for _ in range(8):
        gutter = gutter_texels / resolution / scale
        best = None
        for width in np.linspace(sizes[:, 0].max(), sizes[:, 0].sum() + gutter * num_charts, 120):
            offsets, used_w, used_h = _skyline_pack(sizes, width, gutter)
            side = max(used_w, used_h)
            if best is None or side < best[0] - 1e-12:
                best = (side, offsets, used_w, used_h)
        side, offsets, used_w, used_h = best
        new_scale = 1.0 / (side + 2 * gutter)
        if abs(new_scale - scale) < 1e-9 * new_scale:
            break
        scale = new_scale
    gutter = gutter_texels / resolution / scale
    # Centre the packing in the unit square.
    margin = np.array([(side - used_w) / 2 + gutter, (side - used_h) / 2 + gutter])

    uvs, uv_vertex, chart_of_uv = [], [], []
    face_uv = np.zeros_like(faces)
    start = 0
    for chart, (chart_vertices, local_faces, uv) in enumerate(charts):
        placed = (uv + offsets[chart] + margin) * scale
        uvs.append(placed)
        uv_vertex.append(chart_vertices)
        chart_of_uv.append(np.full(len(chart_vertices), chart))
        face_uv[face_chart == chart] = local_faces + start
        start += len(chart_vertices)
    return UVLayout(
        uvs=np.concatenate(uvs),
        face_uv=face_uv,
        uv_vertex=np.concatenate(uv_vertex).astype(np.int64),
        chart_of_uv=np.concatenate(chart_of_uv).astype(np.int64),
    )
