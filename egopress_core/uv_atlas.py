"""UV atlas of a triangle mesh: texel lookup, UV maps <-> per-vertex values, areas, projection.

EgoPress lays pressure out on the hand mesh's UV atlas (224 x 224 maps for MANO's official
layout). This module holds every operation between that UV domain and the mesh. Topology and
layout are data: any triangle mesh with per-corner UVs works, nothing assumes 778 vertices
(``docs/hand_model.md``, "UV atlas conventions").

Conventions
-----------
- A UV map has shape ``(H, W)`` (or ``(H, W, C)``). Row 0 is v = 1 (the map shows upright),
  column 0 is u = 0. Texel ``(i, j)`` has its centre at ``u = (j + 0.5) / W``,
  ``v = 1 - (i + 0.5) / H``.
- A texel belongs to the face whose UV triangle (closed) contains the texel's centre. Where
  several do (a centre on an edge shared by two faces, or overlapping charts), the face that
  contains it most deeply wins: the one with the largest smallest barycentric coordinate, ties
  going to the lower face id. Texels whose centre is in no face are outside the mask, which is
  exact, not dilated: a texel partly covered by a chart but whose centre is outside it stays
  outside (zero in every map this module writes).
- Barycentric coordinates ``(b0, b1, b2)`` refer to the face's corners in order: the value at a
  texel is ``b0 x[f0] + b1 x[f1] + b2 x[f2]``.
- Seams: UVs are stored per face corner, so a vertex on a seam has one UV per chart it lies on
  (:meth:`UVAtlas.vertex_uvs`). :meth:`UVAtlas.vertex_to_uv` needs nothing special for that;
  :meth:`UVAtlas.uv_to_vertex` pools the texels a vertex influences in every chart.
- Vertex positions are metres; for :meth:`UVAtlas.project_texels` they are in the camera frame
  (OpenCV/ROS optical frame: x right, y down, z forward, camera centre at the origin).
- Pixel coordinates follow OpenCV: ``(x, y)`` with x right and y down, integer values at pixel
  centres, so pixel ``(r, c)`` spans ``[c - 0.5, c + 0.5) x [r - 0.5, r + 0.5)``.

Methods accept numpy arrays or torch tensors and return the same kind (torch results on the
input's device and dtype). Leading batch dimensions ``...`` are kept. Torch versions of
:meth:`~UVAtlas.vertex_to_uv`, :meth:`~UVAtlas.uv_to_vertex`, :meth:`~UVAtlas.texel_area`,
:meth:`~UVAtlas.vertex_area`, :meth:`~UVAtlas.total_force`, :meth:`~UVAtlas.texel_points`,
:meth:`~UVAtlas.texel_normals` and the pixels/depth of :meth:`~UVAtlas.project_texels` are
differentiable.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from scipy.spatial import cKDTree

from egopress_core.errors import ConfigError, DataError

Array = Union[np.ndarray, torch.Tensor]

# UVs this far outside [0, 1] are rounding from the writer of the file and are clipped; further
# out (tiling, UDIM) is rejected because a map cannot hold them.
_UV_RANGE_TOLERANCE = 1e-6
# A texel centre counts as inside a face down to this barycentric coordinate, so that a centre on
# an edge shared by two faces is found by both (and then given to one) instead of by neither.
_INSIDE_TOLERANCE = 1e-9
# A centre deeper than this inside two or more faces means the charts overlap there.
_OVERLAP_DEPTH = 1e-6
# UV triangles with less than this area (in texel units squared) cover no texel centre.
_DEGENERATE_UV_AREA = 1e-12
# Rasterisation handles at most this many (face, texel) candidates at once, bounding memory.
_CANDIDATES_PER_CHUNK = 1 << 21
# Default weight of the bilinear-sample prior in the least-squares uv_to_vertex, relative to the
# median per-vertex coverage (sum of squared barycentric weights of the texels it influences).
DEFAULT_PRIOR_WEIGHT = 1e-3


@dataclass(frozen=True)
class ObjUVMesh:
    """A triangle mesh read from an OBJ file with texture coordinates.

    Attributes:
        vertices: (V, 3) float64 positions in file order.
        faces: (F, 3) int64 zero-based vertex ids; polygons are fan-triangulated.
        face_uvs: (F, 3, 2) float64 UV of every face corner.
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_uvs: np.ndarray


def read_obj_uv_mesh(path: str | os.PathLike) -> ObjUVMesh:
    """Reads ``v``, ``vt`` and ``f v/vt[/vn] ...`` statements of a Wavefront OBJ file.

    Vertex order is kept exactly as in the file (open3d's reader drops unreferenced vertices,
    reorders them and skips quads, which would break the correspondence with a hand model's
    vertices). Polygons with more than three corners are fan-triangulated around their first
    corner, as tinyobjloader does, which is correct for convex polygons. Every face corner must
    carry a texture coordinate. Other statements (``vn``, ``o``, ``g``, ``usemtl``, ...) are
    ignored.

    Raises:
        DataError: the file is missing or unreadable, a statement is malformed, an index is out
            of range, a face corner has no texture coordinate, or there is no face.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise DataError(f"cannot read OBJ file {path}: {error}") from error

    positions: list[list[float]] = []
    texcoords: list[list[float]] = []
    # (line number, [(zero-based vertex id, zero-based texcoord id or None), ...]) per polygon.
    polygons: list[tuple[int, list[tuple[int, int | None]]]] = []

    def zero_based(index: int, count_so_far: int) -> int:
        # OBJ indices are 1-based; negative ones count back from the latest element so far.
        if index == 0:
            raise ValueError("index 0 (OBJ indices start at 1)")
        return index - 1 if index > 0 else count_so_far + index

    for line_number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        keyword, *fields = line.split()
        try:
            if keyword == "v":
                if len(fields) < 3:
                    raise ValueError("a vertex needs x y z")
                positions.append([float(value) for value in fields[:3]])
            elif keyword == "vt":
                if len(fields) < 2:
                    raise ValueError("a texture coordinate needs u v")
                texcoords.append([float(value) for value in fields[:2]])
            elif keyword == "f":
                if len(fields) < 3:
                    raise ValueError("a face needs at least three corners")
                corners = []
                for field in fields:
                    parts = field.split("/")
                    vertex = zero_based(int(parts[0]), len(positions))
                    texcoord = (
                        zero_based(int(parts[1]), len(texcoords))
                        if len(parts) > 1 and parts[1]
                        else None
                    )
                    corners.append((vertex, texcoord))
                polygons.append((line_number, corners))
        except ValueError as error:
            raise DataError(
                f"{path}:{line_number}: malformed '{keyword}' statement: {error}"
            ) from None

    if not polygons:
        raise DataError(f"OBJ file {path} has no faces ('f' statements)")

    faces: list[tuple[int, int, int]] = []
    face_texcoords: list[tuple[int, int, int]] = []
    for line_number, corners in polygons:
        for vertex, texcoord in corners:
            if texcoord is None:
                raise DataError(
                    f"{path}:{line_number}: face corner has no texture coordinate "
                    "(expected 'f v/vt ...'); the UV atlas needs a UV for every corner"
                )
            for what, index, count in (
                ("vertex", vertex, len(positions)),
                ("texture coordinate", texcoord, len(texcoords)),
            ):
                if not 0 <= index < count:
                    raise DataError(
                        f"{path}:{line_number}: {what} index out of range: refers to element "
                        f"{index + 1} of {count}"
                    )
        vertex_ids = [vertex for vertex, _ in corners]
        texcoord_ids = [texcoord for _, texcoord in corners]
        for k in range(1, len(corners) - 1):
            faces.append((vertex_ids[0], vertex_ids[k], vertex_ids[k + 1]))
            face_texcoords.append((texcoord_ids[0], texcoord_ids[k], texcoord_ids[k + 1]))

    texcoord_array = np.asarray(texcoords, dtype=np.float64).reshape(-1, 2)
    return ObjUVMesh(
        vertices=np.asarray(positions, dtype=np.float64).reshape(-1, 3),
        faces=np.asarray(faces, dtype=np.int64),
        face_uvs=texcoord_array[np.asarray(face_texcoords, dtype=np.int64)],
    )


@dataclass(frozen=True)
class TexelProjection:
    """Where each texel of the UV atlas lands in a camera image.

    Arrays are numpy or torch like the vertices given to :meth:`UVAtlas.project_texels`.

    Attributes:
        pixels: (..., H, W, 2) pixel coordinates (x right, y down, OpenCV convention); zero for
            texels outside the mask or not in front of the camera.
        depth: (..., H, W) z of the texel's surface point in the camera frame, metres (what a
            depth image holds, not the distance along the ray); zero outside the mask.
        visible: (..., H, W) bool: inside the mask, in front of the camera, inside the image,
            front-facing (unless culling was off) and not occluded by the mesh.
    """

    pixels: Array
    depth: Array
    visible: Array


class _SymmetricSolve(torch.autograd.Function):
    """x = A^-1 b for a fixed symmetric A factorised by scipy; the gradient is A^-1 grad_x."""

    @staticmethod
    def forward(ctx, rhs: torch.Tensor, solve: Callable[[np.ndarray], np.ndarray]):
        ctx.solve = solve
        result = solve(rhs.detach().to(device="cpu", dtype=torch.float64).numpy())
        return torch.from_numpy(np.ascontiguousarray(result)).to(device=rhs.device, dtype=rhs.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return _SymmetricSolve.apply(grad_output, ctx.solve), None


def _to_numpy_int(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise DataError(f"{name} must be an integer array, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise DataError(f"{name} must hold whole vertex ids, got non-integer values")
    return array.astype(np.int64)


def _to_numpy_float(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{name} must be a numeric array: {error}") from None
    return array


def _validated_resolution(resolution) -> tuple[int, int]:
    if isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool):
        height = width = int(resolution)
    elif (
        isinstance(resolution, (tuple, list))
        and len(resolution) == 2
        and all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in resolution)
    ):
        height, width = (int(r) for r in resolution)
    else:
        raise ConfigError(
            f"resolution must be an int or a (height, width) pair of ints, got {resolution!r}"
        )
    if height < 1 or width < 1:
        raise ConfigError(f"resolution must be positive, got {(height, width)}")
    return height, width


def _rasterise(face_uvs: np.ndarray, height: int, width: int):
    """Finds for every texel centre the face covering it and its barycentric coordinates.

    Per-face bounding-box rasterisation in float64, vectorised over (face, texel) candidates
    and chunked to bound memory.

    Returns:
        texel_face: (H * W,) int64, -1 where no face covers the centre.
        barycentric: (H * W, 3) float64, zero outside.
        overlap: (H * W,) bool, centre strictly inside two or more faces.
    """
    # Texel-grid coordinates: column x and row y, with texel centres at whole numbers.
    x = face_uvs[..., 0] * width - 0.5
    y = (1.0 - face_uvs[..., 1]) * height - 0.5
    x0, x1, x2 = x[:, 0], x[:, 1], x[:, 2]
    y0, y1, y2 = y[:, 0], y[:, 1], y[:, 2]
    twice_area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    usable = np.abs(twice_area) > 2.0 * _DEGENERATE_UV_AREA

    col_lo = np.clip(np.ceil(x.min(axis=1) - 1e-9), 0, width - 1).astype(np.int64)
    col_hi = np.clip(np.floor(x.max(axis=1) + 1e-9), 0, width - 1).astype(np.int64)
    row_lo = np.clip(np.ceil(y.min(axis=1) - 1e-9), 0, height - 1).astype(np.int64)
    row_hi = np.clip(np.floor(y.max(axis=1) + 1e-9), 0, height - 1).astype(np.int64)
    n_cols = np.maximum(col_hi - col_lo + 1, 0)
    n_rows = np.maximum(row_hi - row_lo + 1, 0)
    counts = np.where(usable, n_cols * n_rows, 0)

    num_texels = height * width
    best_face = np.full(num_texels, -1, dtype=np.int64)
    best_depth = np.full(num_texels, -np.inf)
    best_bary = np.zeros((num_texels, 3))
    strict_hits = np.zeros(num_texels, dtype=np.int64)

    face_ids = np.flatnonzero(counts)
    cumulative = np.cumsum(counts[face_ids])
    start = 0
    while start < len(face_ids):
        # Take faces until the chunk holds _CANDIDATES_PER_CHUNK candidates (at least one face).
        base = cumulative[start - 1] if start > 0 else 0
        stop = int(np.searchsorted(cumulative, base + _CANDIDATES_PER_CHUNK, side="right"))
        stop = max(stop, start + 1)
        chunk = face_ids[start:stop]
        start = stop

        chunk_counts = counts[chunk]
        face = np.repeat(chunk, chunk_counts)
        offsets = np.cumsum(chunk_counts) - chunk_counts
        local = np.arange(face.size) - np.repeat(offsets, chunk_counts)
        row = row_lo[face] + local // n_cols[face]
        col = col_lo[face] + local % n_cols[face]

        px = col - x0[face]
        py = row - y0[face]
        area = twice_area[face]
        b1 = (px * (y2 - y0)[face] - (x2 - x0)[face] * py) / area
        b2 = ((x1 - x0)[face] * py - px * (y1 - y0)[face]) / area
        b0 = 1.0 - b1 - b2
        depth = np.minimum(np.minimum(b0, b1), b2)

        inside = depth >= -_INSIDE_TOLERANCE
        face, depth = face[inside], depth[inside]
        texel = (row * width + col)[inside]
        bary = np.stack([b0[inside], b1[inside], b2[inside]], axis=1)
        strict_hits += np.bincount(texel[depth > _OVERLAP_DEPTH], minlength=num_texels)

        # Deepest candidate per texel within the chunk (stable sort: ties keep face order).
        order = np.lexsort((-depth, texel))
        _, first = np.unique(texel[order], return_index=True)
        winner = order[first]
        winner_texel = texel[winner]
        better = depth[winner] > best_depth[winner_texel]
        winner, winner_texel = winner[better], winner_texel[better]
        best_face[winner_texel] = face[winner]
        best_depth[winner_texel] = depth[winner]
        best_bary[winner_texel] = bary[winner]

    # Centres admitted by the edge tolerance have tiny negative coordinates: clamp, renormalise.
    covered = best_face >= 0
    clamped = np.clip(best_bary[covered], 0.0, None)
    best_bary[covered] = clamped / clamped.sum(axis=1, keepdims=True)
    return best_face, best_bary, strict_hits >= 2


class UVAtlas:
    """A mesh's UV layout rasterised at a fixed resolution, and the maps between UV and mesh.

    Args:
        faces: (F, 3) int vertex ids of the triangles.
        face_uvs: (F, 3, 2) float UV of every face corner, in [0, 1].
        resolution: map size, an int for square maps or (height, width).
        name: short layout name used in :attr:`layout_id` (no ':').
        num_vertices: vertex count V of the mesh; defaults to ``faces.max() + 1``. Larger values
            allow vertices that no face uses (they read as zero from UV maps).

    Raises:
        DataError: faces or face_uvs have the wrong shape or values, or no face covers a texel
            centre at this resolution.
        ConfigError: resolution, name or num_vertices is invalid.
    """

    def __init__(
        self,
        faces,
        face_uvs,
        resolution: int | tuple[int, int] = 224,
        name: str = "uv_atlas",
        num_vertices: int | None = None,
    ) -> None:
        faces_np = _to_numpy_int(faces, "faces")
        if faces_np.ndim != 2 or faces_np.shape[1] != 3 or faces_np.shape[0] == 0:
            raise DataError(f"faces must have shape (F, 3) with F >= 1, got {faces_np.shape}")
        if faces_np.min() < 0:
            raise DataError(f"faces holds negative vertex ids (min {faces_np.min()})")
        uvs_np = _to_numpy_float(face_uvs, "face_uvs")
        if uvs_np.shape != (faces_np.shape[0], 3, 2):
            raise DataError(
                f"face_uvs must have shape (F, 3, 2) = ({faces_np.shape[0]}, 3, 2) to match "
                f"faces, got {uvs_np.shape}"
            )
        if not np.all(np.isfinite(uvs_np)):
            raise DataError("face_uvs contains NaN or infinite values")
        low, high = uvs_np.min(), uvs_np.max()
        if low < -_UV_RANGE_TOLERANCE or high > 1.0 + _UV_RANGE_TOLERANCE:
            raise DataError(
                f"face_uvs must lie in [0, 1] (one UV tile), got values in [{low:.6g}, {high:.6g}]"
            )
        uvs_np = np.clip(uvs_np, 0.0, 1.0)
        height, width = _validated_resolution(resolution)
        if not isinstance(name, str) or not name or ":" in name:
            raise ConfigError(f"name must be a non-empty string without ':', got {name!r}")
        used_vertices = int(faces_np.max()) + 1
        if num_vertices is None:
            num_vertices = used_vertices
        elif (
            not isinstance(num_vertices, (int, np.integer))
            or isinstance(num_vertices, bool)
            or num_vertices < used_vertices
        ):
            raise ConfigError(
                f"num_vertices must be an int >= {used_vertices} (faces.max() + 1), "
                f"got {num_vertices!r}"
            )

        self._faces = faces_np
        self._face_uvs = uvs_np
        self._faces.flags.writeable = False
        self._face_uvs.flags.writeable = False
        self._name = name
        self._height = height
        self._width = width
        self._num_vertices = int(num_vertices)
        digest = hashlib.sha1()
        digest.update(faces_np.astype("<i8").tobytes())
        digest.update(uvs_np.astype("<f4").tobytes())
        self._layout_id = f"{name}:{height}x{width}:{digest.hexdigest()[:12]}"

        texel_face, barycentric, overlap = _rasterise(uvs_np, height, width)
        masked_index = np.flatnonzero(texel_face >= 0)
        if masked_index.size == 0:
            raise DataError(
                f"no face of the UV layout covers a texel centre at resolution {height}x{width}"
            )
        self._texel_face = texel_face.reshape(height, width)
        self._texel_barycentric = barycentric.astype(np.float32).reshape(height, width, 3)
        self._mask = self._texel_face >= 0
        self._overlap_texel_count = int(np.count_nonzero(overlap))
        for array in (self._texel_face, self._texel_barycentric, self._mask):
            array.flags.writeable = False

        # Masked texels, row-major; everything below works on these N texels only.
        self._masked_index = masked_index
        self._masked_face = texel_face[masked_index]
        self._masked_vertices = faces_np[self._masked_face]
        self._masked_weights = barycentric[masked_index]
        masked_rows, masked_cols = np.divmod(masked_index, width)
        self._masked_tree = cKDTree(np.column_stack([masked_rows, masked_cols]).astype(np.float64))

        # Texel areas: each face's 3D area is split equally among the texels it covers; a face
        # covering no texel centre gives its area to the masked texel nearest its UV centroid.
        faces_texel_count = np.bincount(self._masked_face, minlength=len(faces_np))
        self._inverse_face_texel_count = np.where(
            faces_texel_count > 0, 1.0 / np.maximum(faces_texel_count, 1), 0.0
        )
        self._uncovered_faces = np.flatnonzero(faces_texel_count == 0)
        centroid = uvs_np[self._uncovered_faces].mean(axis=1)
        centroid_grid = np.column_stack(
            [(1.0 - centroid[:, 1]) * height - 0.5, centroid[:, 0] * width - 0.5]
        )
        self._uncovered_receiver = (
            self._masked_tree.query(centroid_grid)[1].astype(np.int64)
            if len(self._uncovered_faces)
            else np.zeros(0, dtype=np.int64)
        )

        # Distinct UVs of every vertex (several for seam vertices), sorted by vertex.
        pairs = np.column_stack(
            [faces_np.reshape(-1).astype(np.float64), np.round(uvs_np.reshape(-1, 2), 9)]
        )
        pairs = np.unique(pairs, axis=0)
        self._pair_vertex = pairs[:, 0].astype(np.int64)
        self._pair_uv = pairs[:, 1:]
        self._pair_start = np.searchsorted(self._pair_vertex, np.arange(self._num_vertices + 1))

        self._solvers: dict[float, tuple[float, Callable[[np.ndarray], np.ndarray]]] = {}
        self._torch_cache: dict[tuple, dict[str, torch.Tensor]] = {}
        self._sparse_cache: dict[str, scipy.sparse.csr_matrix] = {}

    @classmethod
    def from_obj(
        cls,
        path: str | os.PathLike,
        resolution: int | tuple[int, int] = 224,
        name: str | None = None,
        num_vertices: int | None = None,
    ) -> "UVAtlas":
        """Builds the atlas of an OBJ file's ``vt`` layout (see :func:`read_obj_uv_mesh`).

        ``name`` defaults to the file's stem; ``num_vertices`` defaults to the file's ``v``
        count, so vertex ids match the file's vertex order.
        """
        mesh = read_obj_uv_mesh(path)
        if name is None:
            name = Path(path).stem.replace(":", "_") or "uv_atlas"
        if num_vertices is None:
            num_vertices = len(mesh.vertices)
        try:
            return cls(mesh.faces, mesh.face_uvs, resolution, name, num_vertices)
        except DataError as error:
            raise DataError(f"{path}: {error}") from None

    # ------------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        return self._name

    @property
    def layout_id(self) -> str:
        """``"<name>:<H>x<W>:<12 hex of sha1(faces, face_uvs)>"``: identifies maps made on it."""
        return self._layout_id

    @property
    def resolution(self) -> tuple[int, int]:
        """(H, W) of the maps."""
        return self._height, self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def width(self) -> int:
        return self._width

    @property
    def num_vertices(self) -> int:
        return self._num_vertices

    @property
    def num_faces(self) -> int:
        return len(self._faces)

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) int64 vertex ids (read-only)."""
        return self._faces

    @property
    def face_uvs(self) -> np.ndarray:
        """(F, 3, 2) float64 UV per face corner (read-only)."""
        return self._face_uvs

    @property
    def texel_face(self) -> np.ndarray:
        """(H, W) int64 face covering each texel centre, -1 outside the mask (read-only)."""
        return self._texel_face

    @property
    def texel_barycentric(self) -> np.ndarray:
        """(H, W, 3) float32 barycentric coordinates of texel centres in their face, 0 outside."""
        return self._texel_barycentric

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: texel centre lies on the mesh (the UV hand mask), read-only."""
        return self._mask

    @property
    def texel_uv(self) -> np.ndarray:
        """(H, W, 2) float64 UV of every texel centre."""
        u = (np.arange(self._width) + 0.5) / self._width
        v = 1.0 - (np.arange(self._height) + 0.5) / self._height
        return np.stack(np.meshgrid(u, v, indexing="xy"), axis=-1)

    @property
    def coverage(self) -> float:
        """Fraction of texels inside the mask."""
        return len(self._masked_index) / (self._height * self._width)

    @property
    def overlap_texel_count(self) -> int:
        """Texels whose centre lies strictly inside two or more faces (overlapping charts)."""
        return self._overlap_texel_count

    @property
    def uncovered_faces(self) -> np.ndarray:
        """Ids of faces too small in UV to contain any texel centre at this resolution."""
        return self._uncovered_faces

    @property
    def seam_vertices(self) -> np.ndarray:
        """Ids of vertices with more than one distinct UV (they lie on a seam)."""
        return np.flatnonzero(np.diff(self._pair_start) > 1)

    def vertex_uvs(self, vertex: int) -> np.ndarray:
        """(k, 2) distinct UVs of one vertex: one per chart it lies on, none if unused."""
        if not 0 <= int(vertex) < self._num_vertices:
            raise DataError(f"vertex must be in [0, {self._num_vertices}), got {vertex}")
        return self._pair_uv[self._pair_start[vertex] : self._pair_start[vertex + 1]].copy()

    def __repr__(self) -> str:
        return (
            f"UVAtlas({self._layout_id!r}, vertices={self._num_vertices}, faces={self.num_faces}, "
            f"coverage={self.coverage:.3f})"
        )

    def __getstate__(self) -> dict:
        # Caches hold scipy factorisations (not picklable) and device tensors; they are rebuilt
        # on first use, so an atlas can go to DataLoader workers.
        state = self.__dict__.copy()
        state["_solvers"], state["_torch_cache"], state["_sparse_cache"] = {}, {}, {}
        return state

    # ------------------------------------------------------------------ UV <-> vertices

    def vertex_to_uv(self, values: Array, channels: bool | None = None) -> Array:
        """Barycentric interpolation of per-vertex values into a UV map.

        Args:
            values: (..., V) or (..., V, C) per-vertex values, numpy or torch. Shapes are read as
                (..., V) when the last dimension is V, else as (..., V, C); pass ``channels`` to
                decide explicitly.
            channels: True for (..., V, C), False for (..., V); None to infer.

        Returns:
            (..., H, W) or (..., H, W, C), same kind and float dtype as ``values``; zero
            outside the mask.
        """
        values, has_channels = self._vertex_values(values, "values", channels)
        sampled = self._interpolate_masked(values)  # (..., N, C)
        result = self._scatter_masked(sampled)  # (..., H, W, C)
        return result if has_channels else result[..., 0]

    def uv_to_vertex(
        self,
        uv_map: Array,
        channels: bool | None = None,
        method: str = "lstsq",
        prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    ) -> Array:
        """Per-vertex values from a UV map: the inverse of :meth:`vertex_to_uv`.

        Only texels inside the mask are read.

        - ``"lstsq"`` (default): the per-vertex field whose interpolation best reproduces the
          map, ``argmin_x ||B x - m||^2 + lambda ||x - s(m)||^2``, where B holds the texels'
          barycentric weights and s(m) samples the map bilinearly at each vertex's UV(s)
          (averaged over a seam vertex's charts, reading masked texels only). For a map made by
          :meth:`vertex_to_uv` this recovers the values up to the small prior bias; vertices
          no texel centre falls near get s(m). ``lambda`` is ``prior_weight`` times the median
          of diag(B^T B) (the per-vertex coverage), so it does not depend on the resolution.
          The result can overshoot the map's range at sharp edges (clamp pressure if needed).
        - ``"average"``: each vertex gets the barycentric-weighted mean of the texels it
          influences (in every chart), s(m) where it influences none. Stays within the
          map's range but blurs (about a one-ring average).

        Args:
            uv_map: (..., H, W) or (..., H, W, C), numpy or torch.
            channels: True for (..., H, W, C), False for (..., H, W); None to infer (a shape
                ending in (H, W) is read as without channels).
            method: "lstsq" or "average".
            prior_weight: relative weight of the bilinear-sample prior for "lstsq"; > 0.

        Returns:
            (..., V) or (..., V, C), same kind and float dtype as ``uv_map``.
        """
        if method not in ("lstsq", "average"):
            raise ConfigError(f"method must be one of 'lstsq', 'average'. Got {method!r}")
        if not (isinstance(prior_weight, (int, float)) and math.isfinite(prior_weight)) or (
            prior_weight <= 0
        ):
            raise ConfigError(
                f"prior_weight must be a positive finite number, got {prior_weight!r}"
            )
        uv_map, has_channels = self._uv_values(uv_map, "uv_map", channels)
        lead = uv_map.shape[:-3]
        flat = uv_map.reshape(*lead, self._height * self._width, uv_map.shape[-1])
        masked = flat[..., self._masked_index_for(flat), :]  # (..., N, C)

        prior = self._apply_sparse("prior", masked)  # (..., V, C)
        if method == "average":
            numerator = self._apply_sparse("adjoint", masked)
            weight_sum = self._vertex_weight_sum(masked)  # (V, 1)
            result = _where(weight_sum > 0, numerator / _clamp_min(weight_sum, 1e-30), prior)
        else:
            lam, solve = self._solver(float(prior_weight))
            rhs = self._apply_sparse("adjoint", masked) + lam * prior
            result = self._solve(rhs, solve)
        return result if has_channels else result[..., 0]

    # ------------------------------------------------------------------ areas and force

    def face_area(self, vertices: Array) -> Array:
        """(..., F) 3D area of every face, m², from vertices (..., V, 3)."""
        vertices = self._vertex_positions(vertices, "vertices")
        return _face_areas(vertices, self._faces_for(vertices))

    def texel_area(self, vertices: Array) -> Array:
        """Surface area each texel stands for on the posed mesh.

        Each face's 3D area is split equally among the texels whose centre it covers (the
        midpoint-rule estimate area_3D/area_UV x texel size, renormalised per face so that no
        area is lost or counted twice). A face covering no texel centre (too small in UV at this
        resolution, see :attr:`uncovered_faces`) gives its whole area to the masked texel
        nearest its UV centroid. So the map sums to the mesh's total area exactly, and
        ``sum(pressure * texel_area)`` integrates pressure over the whole surface.

        Args:
            vertices: (..., V, 3) posed vertices, metres, numpy or torch.

        Returns:
            (..., H, W) m² per texel, zero outside the mask.
        """
        vertices = self._vertex_positions(vertices, "vertices")
        areas = _face_areas(vertices, self._faces_for(vertices))  # (..., F)
        if isinstance(areas, torch.Tensor):
            cache = self._torch(areas.device, areas.dtype)
            masked = areas[..., cache["masked_face"]] * cache["masked_inverse_count"]
            if len(self._uncovered_faces):
                masked = masked.index_add(
                    -1, cache["uncovered_receiver"], areas[..., cache["uncovered_faces"]]
                )
        else:
            masked = areas[..., self._masked_face] * self._inverse_face_texel_count[
                self._masked_face
            ].astype(areas.dtype)
            if len(self._uncovered_faces):
                moved = np.moveaxis(masked, -1, 0)  # view: add.at writes through to masked
                np.add.at(
                    moved,
                    self._uncovered_receiver,
                    np.moveaxis(areas, -1, 0)[self._uncovered_faces],
                )
        return self._scatter_masked(masked[..., None])[..., 0]

    def vertex_area(self, vertices: Array) -> Array:
        """(..., V) area per vertex, m²: a third of the area of every face around it.

        Sums to the mesh's total area; per-vertex force is ``pressure_kpa * 1000 * area``.
        """
        vertices = self._vertex_positions(vertices, "vertices")
        faces = self._faces_for(vertices)
        areas = _face_areas(vertices, faces) / 3.0  # (..., F)
        if isinstance(areas, torch.Tensor):
            result = areas.new_zeros(*areas.shape[:-1], self._num_vertices)
            return result.index_add(-1, faces.reshape(-1), areas.repeat_interleave(3, dim=-1))
        lead = areas.shape[:-1]
        per_face = areas.reshape(-1, areas.shape[-1])
        matrix = self._sparse("vertex_face")
        return (
            np.asarray(matrix @ per_face.T)
            .T.reshape(*lead, self._num_vertices)
            .astype(areas.dtype, copy=False)
        )

    def total_force(self, pressure_kpa: Array, vertices: Array) -> Array:
        """Total normal force, newtons: ``sum(pressure_kpa * 1000 * texel_area(vertices))``.

        Args:
            pressure_kpa: (..., H, W) UV pressure map, kPa.
            vertices: (..., V, 3) posed vertices, metres; leading dims broadcast with the map's.

        Returns:
            (...) newtons, same kind as ``pressure_kpa``.
        """
        pressure, _ = self._uv_values(pressure_kpa, "pressure_kpa", channels=False)
        pressure = pressure[..., 0]
        area = self.texel_area(vertices)
        if isinstance(pressure, torch.Tensor) != isinstance(area, torch.Tensor):
            raise DataError("pressure_kpa and vertices must both be numpy arrays or both tensors")
        try:
            product = pressure * 1000.0 * area
        except (RuntimeError, ValueError) as error:
            raise DataError(
                f"pressure_kpa {tuple(pressure.shape)} and vertices' texel areas "
                f"{tuple(area.shape)} do not broadcast: {error}"
            ) from None
        return (
            product.sum(axis=(-2, -1)) if isinstance(product, np.ndarray) else product.sum((-2, -1))
        )

    # ------------------------------------------------------------------ geometry per texel

    def texel_points(self, vertices: Array) -> Array:
        """(..., H, W, 3) surface point of every texel centre, zero outside the mask."""
        vertices = self._vertex_positions(vertices, "vertices")
        return self._scatter_masked(self._interpolate_masked(vertices))

    def texel_normals(self, vertices: Array) -> Array:
        """(..., H, W, 3) unit normal of each texel's face (right-hand rule over the corner
        order, so outward for counter-clockwise faces), zero outside the mask and for faces of
        zero area."""
        vertices = self._vertex_positions(vertices, "vertices")
        normals = _face_normals(vertices, self._faces_for(vertices))  # (..., F, 3)
        masked_face = (
            self._torch(normals.device, normals.dtype)["masked_face"]
            if isinstance(normals, torch.Tensor)
            else self._masked_face
        )
        return self._scatter_masked(normals[..., masked_face, :])

    def project_texels(
        self,
        vertices: Array,
        intrinsics: Array,
        image_size: tuple[int, int],
        occlusion: bool = True,
        cull_backfaces: bool = True,
        relative_tolerance: float = 1e-3,
        absolute_tolerance_m: float = 1e-4,
    ) -> TexelProjection:
        """Projects every texel's surface point into a pinhole camera, with visibility.

        A texel is visible when it is inside the mask, in front of the camera (z > 0), its pixel
        lies inside the image, its face points toward the camera (``cull_backfaces``), and
        (``occlusion``) the mesh does not hide it: a ray cast with open3d's RaycastingScene from
        the camera centre toward the texel's point first hits the mesh no nearer than the
        point's distance minus ``relative_tolerance * distance + absolute_tolerance_m``.

        Args:
            vertices: (V, 3) or (..., V, 3) posed vertices in the camera frame, metres.
            intrinsics: (3, 3) or (..., 3, 3) pinhole matrix K (fx, fy > 0, last row 0 0 1);
                leading dims broadcast with the vertices'.
            image_size: (height, width) of the image in pixels.
            occlusion: test occlusion by the mesh itself (ray casting).
            cull_backfaces: treat texels on faces turned away from the camera as hidden; turn
                off for meshes whose winding is not consistently outward.
            relative_tolerance, absolute_tolerance_m: occlusion test tolerance.

        Returns:
            :class:`TexelProjection` with pixels (..., H, W, 2), depth (..., H, W) and visible
            (..., H, W), numpy or torch like ``vertices``; pixels and depth are differentiable.
        """
        vertices = self._vertex_positions(vertices, "vertices")
        is_torch = isinstance(vertices, torch.Tensor)
        k_matrix = self._intrinsics(intrinsics, vertices)
        image_height, image_width = _validated_image_size(image_size)
        for tolerance_name, tolerance in (
            ("relative_tolerance", relative_tolerance),
            ("absolute_tolerance_m", absolute_tolerance_m),
        ):
            if (
                not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance))
                or tolerance < 0
            ):
                raise ConfigError(
                    f"{tolerance_name} must be a finite number >= 0, got {tolerance!r}"
                )
        vertices_np = _numpy64(vertices)
        if not np.all(np.isfinite(vertices_np)):
            raise DataError("vertices contains NaN or infinite values")

        lead = _broadcast_lead(vertices.shape[:-2], k_matrix.shape[:-2], "vertices", "intrinsics")
        points = self._interpolate_masked(vertices)  # (..., N, 3)
        k_expanded = k_matrix[..., None, :, :]  # (..., 1, 3, 3)
        camera = (k_expanded @ points[..., None])[..., 0]  # (..., N, 3)
        z = points[..., 2]
        in_front = z > 0
        safe_z = _where(in_front, z, _ones_like(z))
        pixel_x = _where(in_front, camera[..., 0] / safe_z, _zeros_like(z))
        pixel_y = _where(in_front, camera[..., 1] / safe_z, _zeros_like(z))
        pixels_masked = _stack([pixel_x, pixel_y], axis=-1)

        # Visibility is a hard decision: numpy, float64, batch flattened.
        points_np = np.broadcast_to(_numpy64(points), (*lead, *points.shape[-2:]))
        pixel_np = np.broadcast_to(_numpy64(pixels_masked), (*lead, *pixels_masked.shape[-2:]))
        z_np = points_np[..., 2]
        visible = (
            (z_np > 0)
            & (pixel_np[..., 0] >= -0.5)
            & (pixel_np[..., 0] < image_width - 0.5)
            & (pixel_np[..., 1] >= -0.5)
            & (pixel_np[..., 1] < image_height - 0.5)
        )
        vertex_batch = np.broadcast_to(vertices_np, (*lead, *vertices_np.shape[-2:]))
        if cull_backfaces:
            normals = _face_normals(vertex_batch, self._faces)[..., self._masked_face, :]
            visible &= np.einsum("...i,...i->...", normals, points_np) < 0
        if occlusion:
            visible = self._unoccluded(
                vertex_batch, points_np, visible, relative_tolerance, absolute_tolerance_m
            )

        depth_masked = _where(in_front, z, _zeros_like(z))
        if isinstance(depth_masked, torch.Tensor):
            depth_masked = depth_masked.expand(*lead, depth_masked.shape[-1])
        else:
            depth_masked = np.broadcast_to(depth_masked, (*lead, depth_masked.shape[-1]))
        pixels = self._scatter_masked(pixels_masked)
        depth = self._scatter_masked(depth_masked[..., None])[..., 0]
        visible_map = np.zeros((*lead, self._height * self._width), dtype=bool)
        visible_map[..., self._masked_index] = visible
        visible_map = visible_map.reshape(*lead, self._height, self._width)
        if is_torch:
            visible_map = torch.from_numpy(visible_map).to(vertices.device)
        return TexelProjection(pixels=pixels, depth=depth, visible=visible_map)

    # ------------------------------------------------------------------ internals

    def _unoccluded(self, vertex_batch, points, candidates, relative_tolerance, absolute_tolerance):
        """Ray-casts from the camera centre to every candidate texel point, frame by frame."""
        import open3d as o3d  # slow to import; only projection needs it

        lead = candidates.shape[:-1]
        flat_vertices = vertex_batch.reshape(-1, *vertex_batch.shape[-2:])
        flat_points = points.reshape(-1, *points.shape[-2:])
        flat_candidates = candidates.reshape(-1, candidates.shape[-1]).copy()
        triangles = o3d.core.Tensor(self._faces.astype(np.uint32))
        for frame in range(flat_candidates.shape[0]):
            index = np.flatnonzero(flat_candidates[frame])
            if index.size == 0:
                continue
            target = flat_points[frame, index]
            distance = np.linalg.norm(target, axis=1)
            rays = np.concatenate([np.zeros_like(target), target / distance[:, None]], axis=1)
            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(o3d.core.Tensor(flat_vertices[frame].astype(np.float32)), triangles)
            hit = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()
            # No hit (inf) means the ray slipped past the texel's own face edge: nothing nearer.
            occluded = hit < distance - (relative_tolerance * distance + absolute_tolerance)
            flat_candidates[frame, index[occluded]] = False
        return flat_candidates.reshape(*lead, -1)

    def _vertex_values(self, values, name: str, channels: bool | None):
        values = _as_float(values, name)
        shape = tuple(values.shape)
        vertex_count = self._num_vertices
        if channels is None:
            channels = not (len(shape) >= 1 and shape[-1] == vertex_count)
        if channels:
            if len(shape) < 2 or shape[-2] != vertex_count:
                raise DataError(
                    f"{name} must have shape (..., V) or (..., V, C) with V = {vertex_count}, "
                    f"got {shape}"
                )
            return values, True
        if len(shape) < 1 or shape[-1] != vertex_count:
            raise DataError(f"{name} must have shape (..., V) with V = {vertex_count}, got {shape}")
        return values[..., None], False

    def _vertex_positions(self, vertices, name: str):
        values = _as_float(vertices, name)
        shape = tuple(values.shape)
        if len(shape) < 2 or shape[-2:] != (self._num_vertices, 3):
            raise DataError(
                f"{name} must have shape (..., V, 3) with V = {self._num_vertices}, got {shape}"
            )
        return values

    def _uv_values(self, uv_map, name: str, channels: bool | None):
        values = _as_float(uv_map, name)
        shape = tuple(values.shape)
        size = (self._height, self._width)
        if channels is None:
            channels = not (len(shape) >= 2 and shape[-2:] == size)
        if channels:
            if len(shape) < 3 or shape[-3:-1] != size:
                raise DataError(
                    f"{name} must have shape (..., H, W) or (..., H, W, C) with (H, W) = {size}, "
                    f"got {shape}"
                )
            return values, True
        if len(shape) < 2 or shape[-2:] != size:
            raise DataError(f"{name} must have shape (..., H, W) with (H, W) = {size}, got {shape}")
        return values[..., None], False

    def _intrinsics(self, intrinsics, vertices):
        k_matrix = _as_float(intrinsics, "intrinsics")
        if isinstance(k_matrix, torch.Tensor) != isinstance(vertices, torch.Tensor):
            k_matrix = (
                torch.as_tensor(k_matrix, dtype=vertices.dtype, device=vertices.device)
                if isinstance(vertices, torch.Tensor)
                else k_matrix.detach().cpu().numpy().astype(vertices.dtype)
            )
        elif isinstance(k_matrix, torch.Tensor):
            k_matrix = k_matrix.to(device=vertices.device, dtype=vertices.dtype)
        else:
            k_matrix = k_matrix.astype(vertices.dtype, copy=False)
        if tuple(k_matrix.shape[-2:]) != (3, 3):
            raise DataError(
                f"intrinsics must have shape (3, 3) or (..., 3, 3), got {tuple(k_matrix.shape)}"
            )
        k_np = _numpy64(k_matrix)
        if not np.all(np.isfinite(k_np)):
            raise DataError("intrinsics contains NaN or infinite values")
        if np.any(k_np[..., 0, 0] <= 0) or np.any(k_np[..., 1, 1] <= 0):
            raise DataError(
                "intrinsics must have positive focal lengths fx = K[0, 0], fy = K[1, 1]"
            )
        if not np.allclose(k_np[..., 2, :], [0.0, 0.0, 1.0]):
            raise DataError("intrinsics must have last row (0, 0, 1) (a pinhole matrix K)")
        return k_matrix

    def _interpolate_masked(self, values):
        """values (..., V, C) -> (..., N, C) at the masked texel centres."""
        # Three gathers and an explicit weighted sum: several times faster than one gather of
        # (..., N, 3, C) followed by einsum or sum, in numpy and torch alike.
        if isinstance(values, torch.Tensor):
            cache = self._torch(values.device, values.dtype)
            corners, weights = cache["masked_corner_vertices"], cache["masked_corner_weights"]
            result = values.index_select(-2, corners[0]) * weights[0]
            for corner in (1, 2):
                result = result + values.index_select(-2, corners[corner]) * weights[corner]
            return result
        weights = self._masked_weights.astype(values.dtype, copy=False)
        result = values[..., self._masked_vertices[:, 0], :] * weights[:, 0, None]
        for corner in (1, 2):
            result += values[..., self._masked_vertices[:, corner], :] * weights[:, corner, None]
        return result

    def _scatter_masked(self, masked):
        """masked (..., N, C) -> (..., H, W, C) with zeros outside the mask."""
        lead, channel_count = tuple(masked.shape[:-2]), masked.shape[-1]
        if isinstance(masked, torch.Tensor):
            cache = self._torch(masked.device, masked.dtype)
            full = masked.new_zeros(*lead, self._height * self._width, channel_count)
            full = full.index_copy(-2, cache["masked_index"], masked)
        else:
            full = np.zeros((*lead, self._height * self._width, channel_count), dtype=masked.dtype)
            full[..., self._masked_index, :] = masked
        return full.reshape(*lead, self._height, self._width, channel_count)

    def _masked_index_for(self, values):
        if isinstance(values, torch.Tensor):
            return self._torch(values.device, values.dtype)["masked_index"]
        return self._masked_index

    def _faces_for(self, values):
        if isinstance(values, torch.Tensor):
            return self._torch(values.device, values.dtype)["faces"]
        return self._faces

    def _torch(self, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Index and weight tensors on a device, built once per (device, dtype)."""
        key = (str(device), dtype)
        cache = self._torch_cache.get(key)
        if cache is None:

            def long(array):
                return torch.tensor(np.asarray(array), dtype=torch.long, device=device)

            def real(array):
                return torch.tensor(np.asarray(array), dtype=dtype, device=device)

            cache = {
                "faces": long(self._faces),
                "masked_index": long(self._masked_index),
                "masked_face": long(self._masked_face),
                "masked_corner_vertices": long(self._masked_vertices.T),  # (3, N)
                "masked_corner_weights": real(self._masked_weights.T[:, :, None]),  # (3, N, 1)
                "masked_inverse_count": real(self._inverse_face_texel_count[self._masked_face]),
                "uncovered_faces": long(self._uncovered_faces),
                "uncovered_receiver": long(self._uncovered_receiver),
            }
            for name in ("adjoint", "prior"):
                coo = self._sparse(name).tocoo()
                cache[f"{name}_rows"] = long(coo.row)
                cache[f"{name}_cols"] = long(coo.col)
                cache[f"{name}_values"] = real(coo.data)
            cache["vertex_weight_sum"] = real(self._vertex_weight_sum_np()[:, None])
            self._torch_cache[key] = cache
        return cache

    def _sparse(self, name: str) -> scipy.sparse.csr_matrix:
        """Sparse operators, built on first use:

        - "adjoint": B^T, (V, N): texel values -> barycentric-weighted sums per vertex.
        - "prior": S, (V, N): masked bilinear sampling at each vertex's UVs, averaged over them.
        - "vertex_face": (V, F) with a one per face corner: face values summed per vertex.
        """
        matrix = self._sparse_cache.get(name)
        if matrix is not None:
            return matrix
        vertex_count, masked_count = self._num_vertices, len(self._masked_index)
        if name == "adjoint":
            matrix = scipy.sparse.csr_matrix(
                (
                    self._masked_weights.reshape(-1),
                    (self._masked_vertices.reshape(-1), np.repeat(np.arange(masked_count), 3)),
                ),
                shape=(vertex_count, masked_count),
            )
        elif name == "prior":
            matrix = self._bilinear_prior()
        elif name == "vertex_face":
            face_count = len(self._faces)
            matrix = scipy.sparse.csr_matrix(
                (
                    np.ones(3 * face_count),
                    (self._faces.reshape(-1), np.repeat(np.arange(face_count), 3)),
                ),
                shape=(vertex_count, face_count),
            )
        else:
            raise KeyError(name)
        self._sparse_cache[name] = matrix
        return matrix

    def _bilinear_prior(self) -> scipy.sparse.csr_matrix:
        """S (V, N): for each vertex, the mean over its UVs of a bilinear sample of the map that
        reads masked texels only (weights renormalised over them); a UV with no masked texel
        among its four neighbours reads the nearest masked texel."""
        height, width = self._height, self._width
        flat_to_masked = np.full(height * width, -1, dtype=np.int64)
        flat_to_masked[self._masked_index] = np.arange(len(self._masked_index))

        x = self._pair_uv[:, 0] * width - 0.5
        y = (1.0 - self._pair_uv[:, 1]) * height - 0.5
        col0, row0 = np.floor(x), np.floor(y)
        frac_x, frac_y = x - col0, y - row0
        pair_count = len(self._pair_vertex)
        rows, cols, weights = [], [], []
        for d_row, d_col, weight in (
            (0, 0, (1 - frac_x) * (1 - frac_y)),
            (0, 1, frac_x * (1 - frac_y)),
            (1, 0, (1 - frac_x) * frac_y),
            (1, 1, frac_x * frac_y),
        ):
            row = (row0 + d_row).astype(np.int64)
            col = (col0 + d_col).astype(np.int64)
            inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
            masked = np.full(pair_count, -1, dtype=np.int64)
            masked[inside] = flat_to_masked[row[inside] * width + col[inside]]
            keep = (masked >= 0) & (weight > 0)
            rows.append(np.flatnonzero(keep))
            cols.append(masked[keep])
            weights.append(weight[keep])
        rows, cols, weights = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
        total = np.bincount(rows, weights, minlength=pair_count)
        stranded = np.flatnonzero(total <= 1e-12)
        if stranded.size:
            nearest = self._masked_tree.query(np.column_stack([y[stranded], x[stranded]]))[1]
            rows = np.concatenate([rows, stranded])
            cols = np.concatenate([cols, nearest.astype(np.int64)])
            weights = np.concatenate([weights, np.ones(stranded.size)])
            total[stranded] += 1.0
        uvs_per_vertex = np.diff(self._pair_start)[self._pair_vertex]
        scale = 1.0 / (total * uvs_per_vertex)
        return scipy.sparse.csr_matrix(
            (weights * scale[rows], (self._pair_vertex[rows], cols)),
            shape=(self._num_vertices, len(self._masked_index)),
        )

    def _vertex_weight_sum_np(self) -> np.ndarray:
        return np.bincount(
            self._masked_vertices.reshape(-1),
            self._masked_weights.reshape(-1),
            minlength=self._num_vertices,
        )

    def _vertex_weight_sum(self, like):
        if isinstance(like, torch.Tensor):
            return self._torch(like.device, like.dtype)["vertex_weight_sum"]
        return self._vertex_weight_sum_np()[:, None].astype(like.dtype)

    def _apply_sparse(self, name: str, masked):
        """Applies a (V, N) operator to masked texel values (..., N, C) -> (..., V, C)."""
        if isinstance(masked, torch.Tensor):
            cache = self._torch(masked.device, masked.dtype)
            rows, cols = cache[f"{name}_rows"], cache[f"{name}_cols"]
            contributions = masked[..., cols, :] * cache[f"{name}_values"][:, None]
            result = masked.new_zeros(*masked.shape[:-2], self._num_vertices, masked.shape[-1])
            return result.index_add(-2, rows, contributions)
        lead, channel_count = masked.shape[:-2], masked.shape[-1]
        columns = np.moveaxis(masked, -2, 0).reshape(masked.shape[-2], -1)  # (N, L)
        result = np.asarray(self._sparse(name) @ columns)  # (V, L)
        result = np.moveaxis(result.reshape(self._num_vertices, *lead, channel_count), 0, -2)
        return result.astype(masked.dtype, copy=False)

    def _solver(self, prior_weight: float):
        """(lambda, solve) for (B^T B + lambda I) x = b, factorised once per prior weight."""
        cached = self._solvers.get(prior_weight)
        if cached is None:
            adjoint = self._sparse("adjoint")
            normal = (adjoint @ adjoint.T).tocsc()
            coverage = normal.diagonal()
            positive = coverage[coverage > 0]
            lam = prior_weight * float(np.median(positive))
            factor = scipy.sparse.linalg.splu(
                (normal + lam * scipy.sparse.identity(self._num_vertices, format="csc")).tocsc()
            )
            cached = (lam, factor.solve)
            self._solvers[prior_weight] = cached
        return cached

    def _solve(self, rhs, solve):
        """x = A^-1 rhs along the vertex axis; rhs (..., V, C)."""
        lead, channel_count = tuple(rhs.shape[:-2]), rhs.shape[-1]
        vertex_count = self._num_vertices
        if isinstance(rhs, torch.Tensor):
            columns = rhs.movedim(-2, 0).reshape(vertex_count, -1)
            solved = _SymmetricSolve.apply(columns, solve)
            return solved.reshape(vertex_count, *lead, channel_count).movedim(0, -2)
        columns = np.moveaxis(rhs, -2, 0).reshape(vertex_count, -1).astype(np.float64)
        solved = solve(np.ascontiguousarray(columns))
        solved = np.moveaxis(solved.reshape(vertex_count, *lead, channel_count), 0, -2)
        return solved.astype(rhs.dtype, copy=False)


# ---------------------------------------------------------------------- array helpers


def _as_float(value, name: str):
    """A float numpy array or torch tensor (integers and bools become float)."""
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else value.to(torch.get_default_dtype())
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise DataError(f"{name} must be a numeric array: {error}") from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise DataError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return array


def _numpy64(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def _face_areas(vertices, faces):
    """(..., V, 3), (F, 3) -> (..., F) triangle areas."""
    corner0 = vertices[..., faces[:, 0], :]
    edge1 = vertices[..., faces[:, 1], :] - corner0
    edge2 = vertices[..., faces[:, 2], :] - corner0
    if isinstance(vertices, torch.Tensor):
        return 0.5 * torch.linalg.vector_norm(torch.cross(edge1, edge2, dim=-1), dim=-1)
    return 0.5 * np.linalg.norm(np.cross(edge1, edge2), axis=-1)


def _face_normals(vertices, faces):
    """(..., V, 3), (F, 3) -> (..., F, 3) unit normals (zero for degenerate faces)."""
    corner0 = vertices[..., faces[:, 0], :]
    edge1 = vertices[..., faces[:, 1], :] - corner0
    edge2 = vertices[..., faces[:, 2], :] - corner0
    if isinstance(vertices, torch.Tensor):
        normal = torch.cross(edge1, edge2, dim=-1)
        length = torch.linalg.vector_norm(normal, dim=-1, keepdim=True)
        return normal / length.clamp_min(torch.finfo(normal.dtype).tiny)
    normal = np.cross(edge1, edge2)
    length = np.linalg.norm(normal, axis=-1, keepdims=True)
    return normal / np.maximum(length, np.finfo(normal.dtype).tiny)


def _where(condition, a, b):
    if isinstance(a, torch.Tensor):
        return torch.where(condition, a, b)
    return np.where(condition, a, b)


def _clamp_min(value, minimum: float):
    if isinstance(value, torch.Tensor):
        return value.clamp_min(minimum)
    return np.maximum(value, minimum)


def _ones_like(value):
    return torch.ones_like(value) if isinstance(value, torch.Tensor) else np.ones_like(value)


def _zeros_like(value):
    return torch.zeros_like(value) if isinstance(value, torch.Tensor) else np.zeros_like(value)


def _stack(values, axis: int):
    if isinstance(values[0], torch.Tensor):
        return torch.stack(values, dim=axis)
    return np.stack(values, axis=axis)


def _broadcast_lead(first, second, first_name: str, second_name: str) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(tuple(first), tuple(second)))
    except ValueError:
        raise DataError(
            f"leading dimensions of {first_name} {tuple(first)} and {second_name} "
            f"{tuple(second)} do not broadcast"
        ) from None


def _validated_image_size(image_size) -> tuple[int, int]:
    if (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in image_size)
        and all(s > 0 for s in image_size)
    ):
        return int(image_size[0]), int(image_size[1])
    raise DataError(
        f"image_size must be a (height, width) pair of positive ints, got {image_size!r}"
    )
