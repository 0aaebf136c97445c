"""UVAtlas on procedural meshes whose layouts, areas and projections are known analytically.

Meshes built here: flat grids (any size, UV rectangle, facing), an axis-aligned box unwrapped
into six square charts (every corner vertex has three UVs: seams everywhere), and an open
cylinder whose UV seam duplicates one column of vertices. The bundled hand's OBJ atlases, when
present under egopress_core/assets/hand/, get generic checks at the end.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from egopress_core.errors import ConfigError, DataError
from egopress_core.uv_atlas import UVAtlas, read_obj_uv_mesh

# --------------------------------------------------------------------------- mesh builders


def grid_mesh(
    n_cols=4,
    n_rows=3,
    x_range=(0.0, 0.2),
    y_range=(0.0, 0.1),
    z=0.0,
    uv_rect=((0.0, 0.0), (1.0, 1.0)),
    normal_sign=+1,
):
    """Planar grid at height z; UV is the affine map of (x, y) onto uv_rect (u with x, v with y).

    Returns vertices (V, 3), faces (F, 3), face_uvs (F, 3, 2). The face normals point to
    normal_sign * z.
    """
    xs = np.linspace(*x_range, n_cols + 1)
    ys = np.linspace(*y_range, n_rows + 1)
    grid_x, grid_y = np.meshgrid(xs, ys, indexing="xy")
    vertices = np.stack([grid_x.ravel(), grid_y.ravel(), np.full(grid_x.size, z)], axis=1)
    (u0, v0), (u1, v1) = uv_rect
    uv = np.stack(
        [
            u0 + (grid_x.ravel() - x_range[0]) / (x_range[1] - x_range[0]) * (u1 - u0),
            v0 + (grid_y.ravel() - y_range[0]) / (y_range[1] - y_range[0]) * (v1 - v0),
        ],
        axis=1,
    )
    faces = []
    for row in range(n_rows):
        for col in range(n_cols):
            a = row * (n_cols + 1) + col
            b, d = a + 1, a + n_cols + 1
            e = d + 1
            faces += [(a, b, e), (a, e, d)] if normal_sign > 0 else [(a, e, b), (a, d, e)]
    faces = np.array(faces)
    return vertices, faces, uv[faces]


# Charts of the box's sides: a 3 x 2 grid of 0.3-wide squares with gaps between them.
_BOX_CHART_ORIGINS = [
    (0.02, 0.05),
    (0.35, 0.05),
    (0.68, 0.05),
    (0.02, 0.55),
    (0.35, 0.55),
    (0.68, 0.55),
]
_BOX_CHART_SIZE = 0.3


def box_mesh(size=(0.03, 0.05, 0.02), chart_sizes=None):
    """Closed box centred at the origin, outward-wound, each side its own square UV chart.

    Vertex id = ix + 2 iy + 4 iz. Returns vertices (8, 3), faces (12, 3), face_uvs (12, 3, 2).
    """
    size = np.asarray(size, dtype=np.float64)
    corners = np.array([[ix, iy, iz] for iz in (0, 1) for iy in (0, 1) for ix in (0, 1)])
    vertices = (corners - 0.5) * size
    faces, face_uvs = [], []
    side = 0
    for axis in range(3):
        for sign in (0, 1):
            others = [a for a in range(3) if a != axis]
            quad = []
            for p, q in ((0, 0), (1, 0), (1, 1), (0, 1)):
                corner = [0, 0, 0]
                corner[axis], corner[others[0]], corner[others[1]] = sign, p, q
                quad.append(corner[0] + 2 * corner[1] + 4 * corner[2])
            normal = np.cross(
                vertices[quad[1]] - vertices[quad[0]], vertices[quad[2]] - vertices[quad[0]]
            )
            if normal[axis] * (1 if sign else -1) < 0:
                quad = quad[::-1]
            (u0, v0) = _BOX_CHART_ORIGINS[side]
            s = _BOX_CHART_SIZE if chart_sizes is None else chart_sizes[side]
            quad_uv = [(u0, v0), (u0 + s, v0), (u0 + s, v0 + s), (u0, v0 + s)]
            for tri in ((0, 1, 2), (0, 2, 3)):
                faces.append([quad[t] for t in tri])
                face_uvs.append([quad_uv[t] for t in tri])
            side += 1
    return vertices, np.array(faces), np.array(face_uvs)


def box_area(size):
    a, b, c = size
    return 2 * (a * b + b * c + c * a)


def cylinder_mesh(n_around=24, n_height=12, radius=0.01, height=0.08):
    """Open cylinder around z, outward-wound; its UV seam duplicates vertex column 0
    (u = 0.05 and u = 0.95). Vertex id = level * n_around + k."""
    theta = 2 * np.pi * np.arange(n_around) / n_around
    levels = np.linspace(0.0, height, n_height + 1)
    vertices = np.stack(
        [
            np.tile(radius * np.cos(theta), n_height + 1),
            np.tile(radius * np.sin(theta), n_height + 1),
            np.repeat(levels, n_around),
        ],
        axis=1,
    )
    faces, face_uvs = [], []
    for level in range(n_height):
        for k in range(n_around):
            k1 = (k + 1) % n_around
            a, b = level * n_around + k, level * n_around + k1
            c, d = b + n_around, a + n_around
            ua, ub = k / n_around, (k + 1) / n_around
            va, vb = level / n_height, (level + 1) / n_height
            faces += [(a, b, c), (a, c, d)]
            face_uvs += [[(ua, va), (ub, va), (ub, vb)], [(ua, va), (ub, vb), (ua, vb)]]
    return vertices, np.array(faces), 0.05 + 0.9 * np.array(face_uvs)


def combine(*meshes):
    """One mesh from several, their UV layouts packed side by side in disjoint strips."""
    vertices, faces, face_uvs = [], [], []
    offset = 0
    count = len(meshes)
    for index, (v, f, uv) in enumerate(meshes):
        vertices.append(v)
        faces.append(f + offset)
        packed = uv.copy()
        packed[..., 0] = (index + 0.02 + 0.96 * uv[..., 0]) / count
        face_uvs.append(packed)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(faces), np.concatenate(face_uvs)


def rotation(angles):
    """Rotation matrix from x, y, z angles (radians)."""
    result = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        r = np.eye(3)
        i, j = [a for a in range(3) if a != axis]
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        result = r @ result
    return result


def pinhole(fx=500.0, fy=480.0, cx=320.0, cy=240.0):
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


# --------------------------------------------------------------------------- layout


def test_texel_convention_mask_and_barycentrics_on_one_triangle():
    # Triangle (0,0) (1,0) (0,1): its barycentrics at UV (u, v) are (1 - u - v, u, v).
    atlas = UVAtlas([[0, 1, 2]], [[[0, 0], [1, 0], [0, 1]]], resolution=(6, 10))
    rows, cols = np.mgrid[0:6, 0:10]
    u = (cols + 0.5) / 10
    v = 1 - (rows + 0.5) / 6
    inside = u + v <= 1 + 1e-12
    np.testing.assert_array_equal(atlas.mask, inside)
    np.testing.assert_array_equal(atlas.texel_face, np.where(inside, 0, -1))
    expected = np.where(inside[..., None], np.stack([1 - u - v, u, v], axis=-1), 0.0)
    np.testing.assert_allclose(atlas.texel_barycentric, expected, atol=1e-6)
    assert atlas.texel_barycentric.dtype == np.float32
    assert atlas.texel_face.dtype == np.int64
    np.testing.assert_allclose(atlas.texel_uv, np.stack([u, v], axis=-1))
    # Row 0 is v near 1, so only the top row's first texel is inside (u + v <= 1), while the
    # bottom row (v near 0) is inside up to u = 0.9.
    np.testing.assert_array_equal(np.flatnonzero(atlas.mask[0]), [0])
    np.testing.assert_array_equal(np.flatnonzero(atlas.mask[-1]), np.arange(9))


def test_mask_of_a_rectangle_chart_on_a_non_square_map():
    # UV rectangle [0.25, 0.75] x [0.5, 1]: centres (j + .5)/16 in it -> j = 4..11;
    # 1 - (i + .5)/10 >= 0.5 -> i = 0..4 (top half of the map, since row 0 is v = 1).
    _, faces, face_uvs = grid_mesh(uv_rect=((0.25, 0.5), (0.75, 1.0)))
    atlas = UVAtlas(faces, face_uvs, resolution=(10, 16))
    expected = np.zeros((10, 16), dtype=bool)
    expected[0:5, 4:12] = True
    np.testing.assert_array_equal(atlas.mask, expected)
    assert atlas.coverage == pytest.approx(40 / 160)
    assert atlas.resolution == (10, 16) and atlas.height == 10 and atlas.width == 16
    assert atlas.overlap_texel_count == 0


def test_every_texel_of_a_fully_covered_grid_is_in_the_mask_without_holes():
    # Many centres lie exactly on shared diagonals (square grid, 8 x 8 cells on 64 x 64 texels
    # is offset by half a texel, so use 7 x 5 cells): none may fall through.
    _, faces, face_uvs = grid_mesh(n_cols=7, n_rows=5)
    atlas = UVAtlas(faces, face_uvs, resolution=64)
    assert atlas.mask.all()
    np.testing.assert_allclose(atlas.texel_barycentric.sum(-1), 1.0, atol=1e-6)
    assert (atlas.texel_barycentric >= 0).all()


def test_rasterisation_in_small_chunks_gives_the_same_lookup(monkeypatch):
    vertices, faces, face_uvs = combine(box_mesh(), cylinder_mesh(n_around=12, n_height=4))
    whole = UVAtlas(faces, face_uvs, resolution=(40, 56))
    monkeypatch.setattr("egopress_core.uv_atlas._CANDIDATES_PER_CHUNK", 37)
    chunked = UVAtlas(faces, face_uvs, resolution=(40, 56))
    np.testing.assert_array_equal(chunked.texel_face, whole.texel_face)
    np.testing.assert_array_equal(chunked.texel_barycentric, whole.texel_barycentric)


def test_atlas_pickles_after_use():
    vertices, faces, face_uvs = box_mesh()
    atlas = UVAtlas(faces, face_uvs, resolution=16, name="box")
    uv_map = np.random.default_rng(3).random((16, 16))
    expected = atlas.uv_to_vertex(torch.from_numpy(uv_map))  # fills every cache
    copy = pickle.loads(pickle.dumps(atlas))
    assert copy.layout_id == atlas.layout_id
    np.testing.assert_allclose(copy.uv_to_vertex(uv_map), expected.numpy(), rtol=1e-12)


def test_layout_id_format_and_what_changes_it():
    _, faces, face_uvs = box_mesh()
    atlas = UVAtlas(faces, face_uvs, resolution=(32, 48), name="box")
    assert re.fullmatch(r"box:32x48:[0-9a-f]{12}", atlas.layout_id)
    same = UVAtlas(faces.tolist(), face_uvs.astype(np.float32), resolution=(32, 48), name="box")
    assert same.layout_id == atlas.layout_id
    torch_input = UVAtlas(torch.as_tensor(faces), torch.as_tensor(face_uvs), (32, 48), name="box")
    assert torch_input.layout_id == atlas.layout_id
    moved = face_uvs.copy()
    moved[0, 0, 0] += 0.01
    assert UVAtlas(faces, moved, (32, 48), name="box").layout_id != atlas.layout_id
    assert UVAtlas(faces, face_uvs, 32, name="box").layout_id.startswith("box:32x32:")


def test_overlapping_charts_are_counted_and_resolved_deterministically():
    # Two faces with the same UV triangle (a mirrored layout would do this).
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1]], float)
    tri = [[0.1, 0.1], [0.9, 0.1], [0.1, 0.9]]
    atlas = UVAtlas([[0, 1, 2], [3, 4, 5]], [tri, tri], resolution=16)
    assert atlas.overlap_texel_count > 0
    assert set(np.unique(atlas.texel_face)) == {-1, 0}  # the lower face id wins ties
    np.testing.assert_array_equal(atlas.uncovered_faces, [1])
    # Face 1 covers no texel of its own, but its area is not lost.
    assert atlas.texel_area(vertices).sum() == pytest.approx(1.0)


# --------------------------------------------------------------------------- seams


def test_box_seam_vertices_have_three_uvs_and_linear_fields_interpolate_exactly():
    vertices, faces, face_uvs = box_mesh()
    atlas = UVAtlas(faces, face_uvs, resolution=96)
    np.testing.assert_array_equal(atlas.seam_vertices, np.arange(8))
    for vertex in range(8):
        assert atlas.vertex_uvs(vertex).shape == (3, 2)
    # A field linear in 3D is linear on every planar face, so barycentric interpolation is exact
    # and every chart a seam vertex lies on reads the same vertex value.
    coefficients = np.array([3.0, -2.0, 5.0])
    field = vertices @ coefficients
    uv_map = atlas.vertex_to_uv(field)
    points = atlas.texel_points(vertices)
    np.testing.assert_allclose(uv_map[atlas.mask], points[atlas.mask] @ coefficients, atol=1e-12)
    assert np.all(uv_map[~atlas.mask] == 0)
    # Each face's texels lie on the face's plane (e.g. the -x side's at x = -0.015).
    for face in range(len(faces)):
        texels = atlas.texel_face == face
        assert texels.any()
        plane_axis = np.flatnonzero(np.ptp(vertices[faces[face]], axis=0) == 0)[0]
        np.testing.assert_allclose(
            points[texels][:, plane_axis], vertices[faces[face][0], plane_axis]
        )


def test_cylinder_seam_column_reads_the_same_value_on_both_sides_of_the_atlas():
    vertices, faces, face_uvs = cylinder_mesh()
    atlas = UVAtlas(faces, face_uvs, resolution=64)
    seam = atlas.seam_vertices
    np.testing.assert_array_equal(seam, np.arange(0, len(vertices), 24))  # column k = 0
    np.testing.assert_allclose(np.sort(atlas.vertex_uvs(0)[:, 0]), [0.05, 0.95])
    field = np.cos(np.arctan2(vertices[:, 1], vertices[:, 0])) + 10 * vertices[:, 2]
    uv_map = atlas.vertex_to_uv(field)
    # Leftmost and rightmost covered columns sit next to the seam from either side: same values
    # up to the change across half a texel.
    left = uv_map[:, np.flatnonzero(atlas.mask.any(0))[0]]
    right = uv_map[:, np.flatnonzero(atlas.mask.any(0))[-1]]
    rows = atlas.mask[:, np.flatnonzero(atlas.mask.any(0))[0]]
    np.testing.assert_allclose(left[rows], right[rows], atol=0.05)
    back = atlas.uv_to_vertex(uv_map)
    np.testing.assert_allclose(back[seam], field[seam], atol=1e-3)


# --------------------------------------------------------------------------- UV <-> vertex


def test_vertex_to_uv_shapes_kinds_and_dtypes():
    vertices, faces, face_uvs = box_mesh()
    atlas = UVAtlas(faces, face_uvs, resolution=(20, 30))
    rng = np.random.default_rng(0)
    assert atlas.vertex_to_uv(rng.random(8)).shape == (20, 30)
    assert atlas.vertex_to_uv(rng.random((2, 5, 8))).shape == (2, 5, 20, 30)
    assert atlas.vertex_to_uv(rng.random((2, 8, 4))).shape == (2, 20, 30, 4)
    # (V, V) is ambiguous: inferred as a batch of V scalar fields unless told otherwise.
    square = rng.random((8, 8))
    assert atlas.vertex_to_uv(square).shape == (8, 20, 30)
    assert atlas.vertex_to_uv(square, channels=True).shape == (20, 30, 8)
    as_float32 = atlas.vertex_to_uv(rng.random(8).astype(np.float32))
    assert as_float32.dtype == np.float32
    from_ints = atlas.vertex_to_uv(np.arange(8))
    assert from_ints.dtype == np.float64
    tensor = atlas.vertex_to_uv(torch.rand(3, 8, 2))
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (3, 20, 30, 2)
    assert tensor.dtype == torch.float32
    assert atlas.uv_to_vertex(np.zeros((2, 20, 30))).shape == (2, 8)
    assert atlas.uv_to_vertex(np.zeros((20, 30, 3))).shape == (8, 3)
    assert atlas.uv_to_vertex(torch.zeros(4, 20, 30, 3)).shape == (4, 8, 3)


def test_round_trip_vertex_uv_vertex_on_a_smooth_field():
    vertices, faces, face_uvs = cylinder_mesh(n_around=32, n_height=16)
    atlas = UVAtlas(faces, face_uvs, resolution=128)
    theta = np.arctan2(vertices[:, 1], vertices[:, 0])
    z = vertices[:, 2] / 0.08
    fields = np.stack(
        [np.sin(theta) * z, np.cos(2 * theta) + z**2, 20.0 * np.exp(-((z - 0.5) ** 2) * 8)]
    )
    field_range = np.ptp(fields, axis=1, keepdims=True)

    # Least squares recovers a map it made exactly but for the prior's pull toward the bilinear
    # sample s at the vertex UV: bias ~ lambda / (coverage + lambda) * |s - x|, with lambda
    # 1e-3 of the median coverage and |s - x| at most the field's change across one texel
    # (< 1/10 of its range here), so the error is far below 1e-3 of the range.
    recovered = atlas.uv_to_vertex(atlas.vertex_to_uv(fields))
    relative = np.abs(recovered - fields) / field_range
    assert relative.max() < 1e-3
    # Without the prior the fit is exact: what is left is floating-point error.
    exact = atlas.uv_to_vertex(atlas.vertex_to_uv(fields), prior_weight=1e-10)
    assert (np.abs(exact - fields) / field_range).max() < 1e-6

    # The weighted average is a convex combination of texels in the faces around each vertex,
    # and each of those is a convex combination of the face's vertex values, so every vertex
    # lands between the min and max of its one-ring (a bound the blur can never exceed).
    averaged = atlas.uv_to_vertex(atlas.vertex_to_uv(fields), method="average")
    neighbours = [set() for _ in range(len(vertices))]
    for face in faces:
        for corner in face:
            neighbours[corner].update(face.tolist())
    for vertex, ring in enumerate(neighbours):
        ring = sorted(ring)
        low, high = fields[:, ring].min(1), fields[:, ring].max(1)
        assert np.all(averaged[:, vertex] >= low - 1e-9) and np.all(
            averaged[:, vertex] <= high + 1e-9
        )
    assert np.abs(averaged - fields).max() > np.abs(recovered - fields).max()


def test_round_trip_uv_vertex_uv_on_maps():
    vertices, faces, face_uvs = cylinder_mesh(n_around=32, n_height=16)
    atlas = UVAtlas(faces, face_uvs, resolution=128)
    rng = np.random.default_rng(1)
    # A map in the range of vertex_to_uv comes back unchanged (up to the prior's bias).
    in_range = atlas.vertex_to_uv(rng.normal(size=(2, len(vertices))))
    again = atlas.vertex_to_uv(atlas.uv_to_vertex(in_range))
    assert np.abs(again - in_range).max() < 1e-2 * np.abs(in_range).max()

    # A smooth analytic map, continuous across the seam (u = 0.05 meets u = 0.95).
    uv = atlas.texel_uv
    phase = 2 * np.pi * (uv[..., 0] - 0.05) / 0.9
    analytic = np.where(atlas.mask, np.sin(phase) * uv[..., 1] + 0.5 * np.cos(2 * phase), 0.0)
    fitted = atlas.vertex_to_uv(atlas.uv_to_vertex(analytic))
    # Compare with the linear interpolant of the exact vertex values: least squares minimises
    # ||B x - m||^2 + lambda ||x - s||^2, so its texel residual cannot exceed the interpolant's
    # by more than the (tiny) prior term.
    vertex_uv = np.stack([atlas.vertex_uvs(v)[0] for v in range(len(vertices))])
    vertex_phase = 2 * np.pi * (vertex_uv[:, 0] - 0.05) / 0.9
    interpolant = atlas.vertex_to_uv(
        np.sin(vertex_phase) * vertex_uv[:, 1] + 0.5 * np.cos(2 * vertex_phase)
    )
    residual_fit = np.sqrt(np.mean((fitted - analytic)[atlas.mask] ** 2))
    residual_interpolant = np.sqrt(np.mean((interpolant - analytic)[atlas.mask] ** 2))
    assert residual_fit <= residual_interpolant * 1.01 + 1e-9
    # And the interpolation error itself is second order: h^2 / 8 * max|m''| with h one cell
    # (1/32 of 0.9 in u, 1/16 of 0.9 in v) and |m''| <= (2 pi / 0.9)^2 * 2.
    bound = (0.9 / 16) ** 2 / 8 * (2 * np.pi / 0.9) ** 2 * 2 * 2
    assert np.abs(fitted - analytic)[atlas.mask].max() < bound
    assert np.all(fitted[~atlas.mask] == 0)


def test_constant_maps_give_constant_vertices_including_vertices_without_texels():
    # A closed cylinder whose cap fan lives in a UV chart far smaller than a texel: its centre
    # vertex influences no texel and must take the bilinear sample of the map at its UV.
    vertices, faces, face_uvs = cylinder_mesh(n_around=16, n_height=6)
    centre = len(vertices)
    top = np.arange(16) + 6 * 16
    cap_faces = np.stack([np.full(16, centre), top, np.roll(top, -1)], axis=1)
    tiny = np.array([0.5, 0.5]) + 1e-4 * np.stack([np.cos(np.arange(16)), np.sin(np.arange(16))], 1)
    cap_uvs = np.stack([np.tile([0.5, 0.5], (16, 1)), tiny, np.roll(tiny, -1, axis=0)], axis=1)
    cap_uvs[..., 1] = 0.97 + (cap_uvs[..., 1] - 0.5)  # above the wall's chart
    all_vertices = np.concatenate([vertices, [[0.0, 0.0, 0.08]]])
    atlas = UVAtlas(
        np.concatenate([faces, cap_faces]), np.concatenate([face_uvs, cap_uvs]), resolution=64
    )
    assert len(atlas.uncovered_faces) == 16
    constant = np.where(atlas.mask, 7.5, 0.0)
    for method in ("lstsq", "average"):
        np.testing.assert_allclose(atlas.uv_to_vertex(constant, method=method), 7.5, rtol=1e-9)
    # Texel areas still add up to the whole surface: the cap's area went to the nearest texel.
    wall = 16 * 2 * 0.01 * np.sin(np.pi / 16) * 0.08  # 16-gon prism wall: perimeter x height
    cap = 0.5 * 16 * 0.01**2 * np.sin(2 * np.pi / 16)
    assert atlas.texel_area(all_vertices).sum() == pytest.approx(wall + cap, rel=1e-3)
    assert atlas.texel_area(all_vertices).sum() == pytest.approx(
        atlas.face_area(all_vertices).sum(), rel=1e-12
    )


# --------------------------------------------------------------------------- areas and force


def test_grid_texel_points_areas_and_uniform_force():
    size_x, size_y = 0.2, 0.1
    vertices, faces, face_uvs = grid_mesh(
        n_cols=5, n_rows=3, x_range=(0, size_x), y_range=(0, size_y)
    )
    atlas = UVAtlas(faces, face_uvs, resolution=(12, 20))
    assert atlas.mask.all()
    uv = atlas.texel_uv
    points = atlas.texel_points(vertices)
    np.testing.assert_allclose(points[..., 0], uv[..., 0] * size_x, atol=1e-15)
    np.testing.assert_allclose(points[..., 1], uv[..., 1] * size_y, atol=1e-15)
    np.testing.assert_allclose(points[..., 2], 0.0)
    np.testing.assert_allclose(
        atlas.texel_normals(vertices), np.broadcast_to([0, 0, 1.0], (12, 20, 3))
    )
    area = atlas.texel_area(vertices)
    assert area.shape == (12, 20)
    assert area.sum() == pytest.approx(size_x * size_y, rel=1e-12)
    # Each texel stands for roughly one texel's share of the plane.
    np.testing.assert_allclose(area, size_x * size_y / 240, rtol=0.5)
    # 10 kPa over 0.02 m^2 -> 200 N.
    assert atlas.total_force(np.full((12, 20), 10.0), vertices) == pytest.approx(200.0, rel=1e-12)
    # A pressure rising linearly along x: the exact integral is 10 kPa * 1.5 * area; the
    # per-face equal split is a midpoint rule per face, within a texel's share of the ramp.
    ramp = 10.0 * (1.0 + uv[..., 0])
    force = atlas.total_force(ramp, vertices)
    assert force == pytest.approx(10e3 * 1.5 * size_x * size_y, rel=1 / 20)
    assert atlas.vertex_area(vertices).sum() == pytest.approx(size_x * size_y, rel=1e-12)


def test_box_areas_are_pose_invariant_and_sum_to_the_surface_in_batches():
    size = (0.03, 0.05, 0.02)
    vertices, faces, face_uvs = box_mesh(size)
    atlas = UVAtlas(faces, face_uvs, resolution=64)
    poses = np.stack(
        [
            vertices,
            vertices @ rotation([0.3, -1.1, 2.0]).T + [0.1, -0.2, 0.5],
            2.0 * vertices @ rotation([1.0, 0.2, -0.4]).T,
        ]
    )
    area = atlas.texel_area(poses)
    assert area.shape == (3, 64, 64)
    expected = box_area(size) * np.array([1.0, 1.0, 4.0])
    np.testing.assert_allclose(area.sum(axis=(-2, -1)), expected, rtol=1e-12)
    np.testing.assert_allclose(area[0], area[1], rtol=1e-9, atol=1e-15)
    assert np.all(area[:, ~atlas.mask] == 0)
    force = atlas.total_force(np.full((64, 64), 10.0), poses)
    np.testing.assert_allclose(force, 10e3 * expected, rtol=1e-12)
    vertex_area = atlas.vertex_area(poses)
    assert vertex_area.shape == (3, 8)
    np.testing.assert_allclose(vertex_area.sum(-1), expected, rtol=1e-12)
    # Per-vertex force for a per-vertex pressure: a third of each adjacent face's area.
    np.testing.assert_allclose(atlas.face_area(poses[0]).sum(), box_area(size), rtol=1e-12)
    # Broadcasting: one pressure map per pose, one pose.
    maps = np.stack([np.full((64, 64), p) for p in (1.0, 2.0, 3.0)])
    np.testing.assert_allclose(
        atlas.total_force(maps, vertices), 1e3 * box_area(size) * np.array([1, 2, 3])
    )


def test_stretching_one_side_moves_area_only_into_that_side_s_texels():
    size = (0.03, 0.05, 0.02)
    vertices, faces, face_uvs = box_mesh(size)
    atlas = UVAtlas(faces, face_uvs, resolution=64)
    stretched = vertices * [2.0, 1.0, 1.0]  # sides normal to x keep their area
    before, after = atlas.texel_area(vertices), atlas.texel_area(stretched)
    for face in range(len(faces)):
        texels = atlas.texel_face == face
        normal_axis = np.flatnonzero(np.ptp(vertices[faces[face]], axis=0) == 0)[0]
        ratio = after[texels].sum() / before[texels].sum()
        assert ratio == pytest.approx(1.0 if normal_axis == 0 else 2.0)


# --------------------------------------------------------------------------- numpy vs torch


def test_numpy_and_torch_give_the_same_numbers():
    vertices, faces, face_uvs = combine(box_mesh(), cylinder_mesh(n_around=12, n_height=4))
    atlas = UVAtlas(faces, face_uvs, resolution=(40, 56))
    rng = np.random.default_rng(2)
    poses = np.stack([vertices @ rotation(rng.normal(size=3)).T + [0, 0, 0.3] for _ in range(2)])
    values = rng.normal(size=(2, len(vertices), 3))
    maps = rng.random((2, 40, 56))
    t = torch.from_numpy

    def same(numpy_result, torch_result, atol=1e-12):
        assert isinstance(torch_result, torch.Tensor)
        np.testing.assert_allclose(torch_result.numpy(), numpy_result, rtol=1e-10, atol=atol)

    same(atlas.vertex_to_uv(values), atlas.vertex_to_uv(t(values)))
    for method in ("lstsq", "average"):
        same(atlas.uv_to_vertex(maps, method=method), atlas.uv_to_vertex(t(maps), method=method))
    same(atlas.texel_area(poses), atlas.texel_area(t(poses)), atol=1e-18)
    same(atlas.vertex_area(poses), atlas.vertex_area(t(poses)), atol=1e-18)
    same(atlas.total_force(maps, poses), atlas.total_force(t(maps), t(poses)))
    same(atlas.texel_points(poses), atlas.texel_points(t(poses)))
    same(atlas.texel_normals(poses), atlas.texel_normals(t(poses)))
    k_matrix = pinhole()
    from_numpy = atlas.project_texels(poses, k_matrix, (480, 640))
    from_torch = atlas.project_texels(t(poses), t(k_matrix), (480, 640))
    same(from_numpy.pixels, from_torch.pixels, atol=1e-9)
    same(from_numpy.depth, from_torch.depth)
    np.testing.assert_array_equal(from_numpy.visible, from_torch.visible.numpy())
    assert from_numpy.visible.any()


def test_torch_gradients():
    vertices, faces, face_uvs = box_mesh()
    atlas = UVAtlas(faces, face_uvs, resolution=8)
    positions = torch.tensor(vertices, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: atlas.texel_area(v), (positions,))
    assert torch.autograd.gradcheck(lambda v: atlas.texel_points(v), (positions,))
    assert torch.autograd.gradcheck(lambda v: atlas.texel_normals(v), (positions,))
    values = torch.rand(2, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: atlas.vertex_to_uv(x), (values,))
    uv_map = torch.rand(8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: atlas.uv_to_vertex(m), (uv_map,))
    assert torch.autograd.gradcheck(lambda m: atlas.uv_to_vertex(m, method="average"), (uv_map,))
    k_matrix = torch.tensor(pinhole(), dtype=torch.float64)
    shifted = (
        positions.detach() + torch.tensor([0.0, 0.0, 0.2], dtype=torch.float64)
    ).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v: atlas.project_texels(v, k_matrix, (480, 640), occlusion=False).pixels, (shifted,)
    )


# --------------------------------------------------------------------------- projection


def test_projection_matches_the_pinhole_model_on_a_plane_facing_the_camera():
    # Plane z = 2 m, x in [-0.4, 0.6], y in [-0.3, 0.3], wound to face the camera (-z).
    vertices, faces, face_uvs = grid_mesh(
        n_cols=4, n_rows=3, x_range=(-0.4, 0.6), y_range=(-0.3, 0.3), z=2.0, normal_sign=-1
    )
    atlas = UVAtlas(faces, face_uvs, resolution=(24, 32))
    k_matrix = pinhole(fx=500.0, fy=480.0, cx=320.0, cy=240.0)
    projection = atlas.project_texels(vertices, k_matrix, (480, 640))
    uv = atlas.texel_uv
    x, y = -0.4 + uv[..., 0] * 1.0, -0.3 + uv[..., 1] * 0.6
    np.testing.assert_allclose(projection.pixels[..., 0], 500.0 * x / 2.0 + 320.0, atol=1e-9)
    np.testing.assert_allclose(projection.pixels[..., 1], 480.0 * y / 2.0 + 240.0, atol=1e-9)
    np.testing.assert_allclose(projection.depth, 2.0)
    assert projection.visible.all()

    # A narrower image cuts the plane at the right edge: x pixel >= width - 0.5 is outside.
    narrow = atlas.project_texels(vertices, k_matrix, (480, 400))
    np.testing.assert_array_equal(narrow.visible, projection.pixels[..., 0] < 399.5)
    assert 0 < narrow.visible.sum() < narrow.visible.size

    # Behind the camera: nothing visible, depth and pixels zero.
    behind = atlas.project_texels(vertices * [1, 1, -1], k_matrix, (480, 640), cull_backfaces=False)
    assert not behind.visible.any()
    assert np.all(behind.depth == 0) and np.all(behind.pixels == 0)


def test_backfacing_texels_are_culled_unless_asked_not_to():
    vertices, faces, face_uvs = grid_mesh(
        x_range=(-0.2, 0.2), y_range=(-0.1, 0.1), z=1.0, normal_sign=+1
    )
    atlas = UVAtlas(faces, face_uvs, resolution=16)
    k_matrix = pinhole()
    assert not atlas.project_texels(vertices, k_matrix, (480, 640)).visible.any()
    # Nothing occludes a single plane, so without culling all of it is visible.
    assert atlas.project_texels(vertices, k_matrix, (480, 640), cull_backfaces=False).visible.all()


def test_a_plane_in_front_hides_half_of_the_plane_behind():
    # Back plane z = 2, x in [-1, 1]; front plane z = 1, x in [-0.5, 0], y in [-0.5, 0.5].
    # A ray to (X, Y, 2) crosses z = 1 at (X/2, Y/2): the back plane is hidden exactly for X < 0.
    back = grid_mesh(
        n_cols=8, n_rows=6, x_range=(-1, 1), y_range=(-0.8, 0.8), z=2.0, normal_sign=-1
    )
    front = grid_mesh(
        n_cols=2, n_rows=4, x_range=(-0.5, 0), y_range=(-0.5, 0.5), z=1.0, normal_sign=-1
    )
    vertices, faces, face_uvs = combine(back, front)
    atlas = UVAtlas(faces, face_uvs, resolution=(48, 96))
    projection = atlas.project_texels(vertices, pinhole(fx=200.0, fy=200.0), (480, 640))
    points = atlas.texel_points(vertices)
    on_back = atlas.mask & (atlas.texel_face < len(back[1]))
    on_front = atlas.mask & ~on_back
    assert projection.visible[on_front].all()
    clear = on_back & (np.abs(points[..., 0]) > 0.02)
    np.testing.assert_array_equal(projection.visible[clear], points[clear][:, 0] > 0)
    assert 0.4 < projection.visible[on_back].mean() < 0.6
    # Without the occlusion test the back plane is all "visible".
    assert (
        atlas.project_texels(vertices, pinhole(fx=200.0, fy=200.0), (480, 640), occlusion=False)
        .visible[on_back]
        .all()
    )


def test_visibility_agrees_with_an_open3d_render():
    """Ground truth: open3d ray casting through every pixel centre, which gives the face seen at
    each pixel (an item buffer). A texel is visible exactly when the pixel it projects to sees
    the texel's own face. Texels whose 3 x 3 pixel neighbourhood sees more than one face (face
    edges, silhouettes) are left out: there the nearest pixel may legitimately see a neighbour."""
    import open3d as o3d

    box = box_mesh((0.06, 0.08, 0.05))
    box_vertices = box[0] @ rotation([0.5, 0.7, 0.2]).T + [0.0, 0.0, 0.5]
    occluder = grid_mesh(
        n_cols=2, n_rows=2, x_range=(-0.05, 0.0), y_range=(-0.02, 0.03), z=0.38, normal_sign=-1
    )
    vertices, faces, face_uvs = combine((box_vertices, box[1], box[2]), occluder)
    atlas = UVAtlas(faces, face_uvs, resolution=(96, 192))
    k_matrix = pinhole(fx=600.0, fy=600.0, cx=160.0, cy=120.0)
    height, width = 240, 320
    projection = atlas.project_texels(vertices, k_matrix, (height, width))

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32))
    )
    rows, cols = np.mgrid[0:height, 0:width]
    directions = np.stack(
        [(cols - 160.0) / 600.0, (rows - 120.0) / 600.0, np.ones_like(cols, float)], -1
    )
    rays = np.concatenate([np.zeros_like(directions), directions], axis=-1).astype(np.float32)
    hits = scene.cast_rays(o3d.core.Tensor(rays))
    seen_face = np.where(
        np.isfinite(hits["t_hit"].numpy()), hits["primitive_ids"].numpy().astype(np.int64), -1
    )

    pixel = np.round(projection.pixels).astype(int)
    in_image = atlas.mask & (projection.depth > 0)
    in_image &= (
        (pixel[..., 0] >= 1)
        & (pixel[..., 0] < width - 1)
        & (pixel[..., 1] >= 1)
        & (pixel[..., 1] < height - 1)
    )
    compared = agree = 0
    for i, j in zip(*np.nonzero(in_image), strict=True):
        c, r = pixel[i, j]
        window = seen_face[r - 1 : r + 2, c - 1 : c + 2]
        if np.any(window != window[1, 1]):
            continue
        compared += 1
        agree += (seen_face[r, c] == atlas.texel_face[i, j]) == projection.visible[i, j]
    assert compared > 0.5 * in_image.sum()
    assert agree == compared
    # Both the occluder and the box's back sides hide texels.
    assert 0.2 < projection.visible[in_image].mean() < 0.8
    facing = (
        np.einsum("hwc,hwc->hw", atlas.texel_normals(vertices), atlas.texel_points(vertices)) < 0
    )
    assert (in_image & facing & ~projection.visible).sum() > 100  # hidden by the occluder


def test_projection_batches_and_broadcasts():
    vertices, faces, face_uvs = box_mesh()
    atlas = UVAtlas(faces, face_uvs, resolution=16)
    poses = np.stack(
        [
            vertices + [0, 0, 0.3],
            vertices + [0.01, 0, 0.4],
            vertices @ rotation([0, 3.0, 0]).T + [0, 0, 0.3],
        ]
    )
    k_batch = np.stack([pinhole(), pinhole(fx=300.0, fy=300.0), pinhole()])
    batched = atlas.project_texels(poses, k_batch, (480, 640))
    assert batched.pixels.shape == (3, 16, 16, 2)
    assert batched.depth.shape == batched.visible.shape == (3, 16, 16)
    for index in range(3):
        single = atlas.project_texels(poses[index], k_batch[index], (480, 640))
        np.testing.assert_allclose(batched.pixels[index], single.pixels)
        np.testing.assert_array_equal(batched.visible[index], single.visible)
    # One mesh, several cameras.
    broadcast = atlas.project_texels(poses[0], k_batch, (480, 640))
    assert broadcast.pixels.shape == (3, 16, 16, 2) and broadcast.depth.shape == (3, 16, 16)
    np.testing.assert_allclose(broadcast.depth[1], batched.depth[0])
    # A closed convex box: exactly the texels on sides facing the camera are visible.
    normals = atlas.texel_normals(poses[0])
    facing = np.einsum("hwc,hwc->hw", normals, atlas.texel_points(poses[0])) < 0
    np.testing.assert_array_equal(batched.visible[0], atlas.mask & facing)
    culled_off = atlas.project_texels(poses[0], pinhole(), (480, 640), cull_backfaces=False)
    np.testing.assert_array_equal(culled_off.visible, atlas.mask & facing)


# --------------------------------------------------------------------------- OBJ files


def test_from_obj_keeps_vertex_order_and_triangulates_polygons(tmp_path: Path):
    path = tmp_path / "quad_strip.obj"
    path.write_text(
        "# two quads sharing an edge, plus an unused vertex first\n"
        "mtllib none.mtl\n"
        "v 9 9 9\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 0 0\nv 2 1 0\n"
        "vt 0.0 0.0\nvt 0.5 0.0\nvt 0.5 1.0\nvt 0.0 1.0\nvt 1.0 0.0\nvt 1.0 1.0\n"
        "vn 0 0 1\n"
        "o strip\ns off\n"
        "f 2/1/1 3/2/1 4/3/1 5/4/1\n"
        "f -5/-5 -2/-2 -1/-1 -4/-4  # negative indices\n"
    )
    mesh = read_obj_uv_mesh(path)
    np.testing.assert_array_equal(mesh.vertices[0], [9, 9, 9])
    np.testing.assert_array_equal(mesh.faces, [[1, 2, 3], [1, 3, 4], [2, 5, 6], [2, 6, 3]])
    np.testing.assert_allclose(mesh.face_uvs[2], [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0]])
    atlas = UVAtlas.from_obj(path, resolution=(8, 16))
    assert atlas.num_vertices == 7 and atlas.name == "quad_strip"
    assert (
        atlas.layout_id.split(":")[2]
        == UVAtlas(mesh.faces, mesh.face_uvs, (8, 16)).layout_id.split(":")[2]
    )
    assert atlas.mask.all()
    # Vertex 0 is in no face: it reads as zero and has no UV.
    assert atlas.vertex_uvs(0).shape == (0, 2)
    values = atlas.uv_to_vertex(np.ones((8, 16)))
    assert values[0] == 0 and np.allclose(values[1:], 1.0)
    points = atlas.texel_points(mesh.vertices)
    np.testing.assert_allclose(points[..., 0], 2 * atlas.texel_uv[..., 0], atol=1e-12)


@pytest.mark.parametrize(
    "content, message",
    [
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "no texture coordinate"),
        (
            "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 4/1\n",
            "vertex index out of range: refers to element 4 of 3",
        ),
        (
            "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/2 3/1\n",
            "texture coordinate index out of range",
        ),
        ("v 0 0\n", "malformed 'v'"),
        ("v 0 0 0\nvt a b\n", "malformed 'vt'"),
        ("v 0 0 0\nvt 0 0\nf 1/1 1/1\n", "at least three corners"),
        ("v 0 0 0\n", "no faces"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 0/1 1/1 2/1\n", "index 0"),
        # Negative indices count back from the elements read so far, not from the file's end.
        ("vt 0 0\nf -1/1 -2/1 -3/1\nv 0 0 0\nv 1 0 0\nv 0 1 0\n", "vertex index out of range"),
        (
            "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 3 0\nvt 0 1\nf 1/1 2/2 3/3\n",
            "face_uvs must lie in [0, 1]",
        ),
    ],
)
def test_bad_obj_files_are_rejected_with_the_line(tmp_path: Path, content: str, message: str):
    path = tmp_path / "bad.obj"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(message)) as raised:
        UVAtlas.from_obj(path, resolution=8)
    assert "bad.obj" in str(raised.value)


def test_missing_obj_file(tmp_path: Path):
    with pytest.raises(DataError, match="cannot read OBJ file"):
        UVAtlas.from_obj(tmp_path / "missing.obj")


# --------------------------------------------------------------------------- bad input


TRIANGLE = [[0, 1, 2]]
TRIANGLE_UV = [[[0.1, 0.1], [0.9, 0.1], [0.1, 0.9]]]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"faces": [[0, 1]]}, DataError, "faces must have shape (F, 3)"),
        ({"faces": np.zeros((0, 3), int), "face_uvs": np.zeros((0, 3, 2))}, DataError, "F >= 1"),
        ({"faces": [[0, -1, 2]]}, DataError, "negative vertex ids"),
        ({"faces": [[0, 1.5, 2]]}, DataError, "whole vertex ids"),
        ({"faces": [["a", "b", "c"]]}, DataError, "faces must be an integer array"),
        ({"face_uvs": [[[0.1, 0.1], [0.9, 0.1]]]}, DataError, "face_uvs must have shape (F, 3, 2)"),
        ({"face_uvs": [[[0.1, np.nan], [0.9, 0.1], [0.1, 0.9]]]}, DataError, "NaN"),
        ({"face_uvs": [[[0.1, 0.1], [1.5, 0.1], [0.1, 0.9]]]}, DataError, "[0, 1]"),
        ({"resolution": 0}, ConfigError, "resolution must be positive"),
        ({"resolution": 22.5}, ConfigError, "resolution must be an int"),
        ({"resolution": True}, ConfigError, "resolution must be an int"),
        ({"resolution": (8, 8, 8)}, ConfigError, "resolution must be an int"),
        ({"name": "a:b"}, ConfigError, "name must be"),
        ({"name": ""}, ConfigError, "name must be"),
        ({"num_vertices": 2}, ConfigError, "num_vertices must be an int >= 3"),
        (
            {"face_uvs": [[[0.5, 0.5], [0.5001, 0.5], [0.5, 0.5001]]], "resolution": 4},
            DataError,
            "no face",
        ),
    ],
)
def test_constructor_rejects_bad_input(kwargs, error, message):
    arguments = {"faces": TRIANGLE, "face_uvs": TRIANGLE_UV, "resolution": 8}
    arguments.update(kwargs)
    with pytest.raises(error, match=re.escape(message)):
        UVAtlas(**arguments)


def test_methods_reject_bad_input():
    vertices, faces, face_uvs = box_mesh()
    atlas = UVAtlas(faces, face_uvs, resolution=16)
    with pytest.raises(
        DataError, match=r"values must have shape \(\.\.\., V\) or \(\.\.\., V, C\) with V = 8"
    ):
        atlas.vertex_to_uv(np.zeros((7, 2)))
    with pytest.raises(DataError, match="with V = 8, got \\(7,\\)"):
        atlas.vertex_to_uv(np.zeros(7), channels=False)
    with pytest.raises(DataError, match="numeric array"):
        atlas.vertex_to_uv(np.array(["x"] * 8))
    with pytest.raises(DataError, match=r"uv_map must have shape .* \(H, W\) = \(16, 16\)"):
        atlas.uv_to_vertex(np.zeros((16, 15)))
    with pytest.raises(ConfigError, match="method must be one of 'lstsq', 'average'"):
        atlas.uv_to_vertex(np.zeros((16, 16)), method="mean")
    with pytest.raises(ConfigError, match="prior_weight must be a positive"):
        atlas.uv_to_vertex(np.zeros((16, 16)), prior_weight=0.0)
    with pytest.raises(DataError, match=r"vertices must have shape \(\.\.\., V, 3\) with V = 8"):
        atlas.texel_area(np.zeros((8, 2)))
    with pytest.raises(DataError, match="pressure_kpa must have shape"):
        atlas.total_force(np.zeros((15, 16)), vertices)
    with pytest.raises(DataError, match="do not broadcast"):
        atlas.total_force(np.zeros((2, 16, 16)), np.stack([vertices] * 3))
    with pytest.raises(DataError, match="both be numpy arrays or both tensors"):
        atlas.total_force(torch.zeros(16, 16), vertices)
    with pytest.raises(DataError, match="vertex must be in"):
        atlas.vertex_uvs(8)
    shifted = vertices + [0, 0, 0.5]
    with pytest.raises(DataError, match=r"intrinsics must have shape \(3, 3\)"):
        atlas.project_texels(shifted, np.eye(4), (480, 640))
    with pytest.raises(DataError, match="positive focal lengths"):
        atlas.project_texels(shifted, pinhole(fx=-1.0), (480, 640))
    with pytest.raises(DataError, match="last row"):
        atlas.project_texels(
            shifted, pinhole() + np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]]), (480, 640)
        )
    with pytest.raises(DataError, match="NaN"):
        atlas.project_texels(np.where(np.eye(8, 3) > 0, np.nan, shifted), pinhole(), (480, 640))
    with pytest.raises(DataError, match="image_size must be a"):
        atlas.project_texels(shifted, pinhole(), (480, 0))
    with pytest.raises(DataError, match="do not broadcast"):
        atlas.project_texels(np.stack([shifted] * 2), np.stack([pinhole()] * 3), (480, 640))
    with pytest.raises(ConfigError, match="relative_tolerance"):
        atlas.project_texels(shifted, pinhole(), (480, 640), relative_tolerance=-1.0)


# --------------------------------------------------------------------------- bundled hand


HAND_DIR = Path(__file__).resolve().parents[2] / "egopress_core" / "assets" / "hand"


@pytest.mark.parametrize("obj_path", sorted(HAND_DIR.glob("*.obj")), ids=lambda path: path.stem)
def test_bundled_hand_uv_layout(obj_path: Path):
    mesh = read_obj_uv_mesh(obj_path)
    atlas = UVAtlas.from_obj(obj_path, resolution=224)
    assert atlas.num_vertices == len(mesh.vertices)
    assert 0.2 < atlas.coverage < 0.95
    assert atlas.overlap_texel_count == 0
    # Every face's area is accounted for, whether or not it covers a texel centre.
    total = atlas.face_area(mesh.vertices).sum()
    assert atlas.texel_area(mesh.vertices).sum() == pytest.approx(total, rel=1e-9)
    # A smooth field survives the round trip through the atlas; vertices covered by few texels
    # (fingertip poles) lean on the bilinear prior, hence a looser bound than on the cylinder.
    field = mesh.vertices @ np.array([0.3, 1.0, -0.5])
    recovered = atlas.uv_to_vertex(atlas.vertex_to_uv(field))
    assert np.abs(recovered - field).max() < 1e-2 * np.ptp(field)
    # Seen from 0.4 m in front, a closed hand shows some but far from all of its surface.
    camera_frame = mesh.vertices - mesh.vertices.mean(0) + [0.0, 0.0, 0.4]
    projection = atlas.project_texels(camera_frame, pinhole(), (480, 640))
    assert 0.1 < projection.visible[atlas.mask].mean() < 0.7
