"""Procedural template of the bundled hand: a closed triangle mesh built from tubes.

Frame (right hand, metres, like the flat MANO template): fingers point along -x, the thumb
side is +z, the palm faces -y; the wrist joint is at the origin.

Construction. The palm is a flattened tube of ``PALM_ROWS`` rings (2 * 4K vertices each) from
the wrist to the knuckles. Its last ring *is* the base rings of the four fingers (2K vertices
each): palm column ``f*K + m`` on the palmar side is vertex ``m`` of finger ``f``'s ring. Between
neighbouring fingers a single quad closes the gap (the web). Each finger is a tube of rings along
its axis ending in a rounded cap with one pole vertex (the fingertip vertex). The thumb is a tube
whose first ring is the boundary of a 3 x 3 quad hole cut into the palm's radial side; a flat fan
closes the wrist. All rings run in the same rotational sense about their tube's distal axis, so
the quads of every part agree on orientation and the mesh is a closed, oriented 2-manifold.

Everything is a smooth function of :class:`HandDimensions`, with a topology that does not depend
on them: the shape blend shapes are differences of meshes built with perturbed dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from egopress_core.hand.skeleton import MANO_FINGER_JOINTS

K = 5  # vertices per half ring of a finger (a finger ring has 2K)
PALM_COLUMNS = 4 * K  # palm vertices per side (a palm ring has 2 * PALM_COLUMNS)
PALM_ROWS = 11  # palm rings 0..PALM_ROWS-1; the finger base rings follow as row PALM_ROWS
THUMB_HALF = 6  # thumb ring = 2 * THUMB_HALF = boundary of a 3 x 3 quad hole
THUMB_HOLE_ROWS = (3, 6)  # palm rows bounding the thumb hole
THUMB_HOLE_FIRST_INDEX = 0  # first palm ring index of the hole (radial-most palmar column)
THUMB_HOLE_WIDTH = 3  # quads around the palm ring

FINGER_NAMES = ("index", "middle", "ring", "little")
# MANO joint ids (proximal, middle, distal) per finger; thumb last.
PARTS = ("palm", "index", "middle", "ring", "little", "thumb")


@dataclass(frozen=True)
class HandDimensions:
    """Shape parameters (multipliers around an average adult hand; 1 = average).

    The bundled model's 10 shape blend shapes are these, one standard deviation each
    (``SHAPE_STD``), in this order.
    """

    scale: float = 1.0  # every length
    finger_length: float = 1.0  # phalanges of the four fingers and the thumb
    palm_width: float = 1.0
    finger_thickness: float = 1.0  # finger and thumb radii
    palm_length: float = 1.0  # wrist to knuckles
    palm_thickness: float = 1.0
    thumb_length: float = 1.0  # thumb segments (on top of finger_length)
    little_length: float = 1.0  # little finger (on top of finger_length)
    index_ring_ratio: float = 1.0  # index longer, ring shorter by the same factor
    finger_taper: float = 1.0  # tip radius relative to base radius

    def perturbed(self, name: str, delta: float) -> "HandDimensions":
        return replace(self, **{name: getattr(self, name) + delta})


SHAPE_NAMES = tuple(f.name for f in fields(HandDimensions))
# One standard deviation of each shape parameter (anthropometric spread of adult hands).
SHAPE_STD = {
    "scale": 0.06,
    "finger_length": 0.04,
    "palm_width": 0.05,
    "finger_thickness": 0.07,
    "palm_length": 0.04,
    "palm_thickness": 0.08,
    "thumb_length": 0.05,
    "little_length": 0.05,
    "index_ring_ratio": 0.03,
    "finger_taper": 0.06,
}


@dataclass(frozen=True)
class _FingerSpec:
    mcp: tuple[float, float, float]  # joint position, metres
    spread_deg: float  # direction in the palm plane, towards the thumb positive
    lengths: tuple[float, float, float]  # MCP->PIP, PIP->DIP, DIP->tip
    radii: tuple[float, float, float, float]  # half-width at MCP, PIP, DIP, tip


_FINGERS = {
    "index": _FingerSpec((-0.0880, 0.0010, 0.0298), 4.0, (0.0430, 0.0250, 0.0230), (0.0110, 0.0099, 0.0090, 0.0083)),
    "middle": _FingerSpec((-0.0915, 0.0012, 0.0070), 0.0, (0.0470, 0.0290, 0.0250), (0.0112, 0.0102, 0.0093, 0.0086)),
    "ring": _FingerSpec((-0.0875, 0.0000, -0.0154), -4.0, (0.0440, 0.0280, 0.0240), (0.0106, 0.0097, 0.0087, 0.0081)),
    "little": _FingerSpec((-0.0790, -0.0025, -0.0361), -9.0, (0.0350, 0.0205, 0.0220), (0.0095, 0.0086, 0.0078, 0.0072)),
}
_THUMB_CMC = (-0.0200, -0.0040, 0.0200)
_THUMB_DIRECTION = (-0.70, -0.18, 0.69)
_THUMB_PAD_ROLL_DEG = 50.0  # pad normal: palm normal rolled about the thumb axis towards the fingers
_THUMB_LENGTHS = (0.0460, 0.0320, 0.0270)  # CMC->MCP, MCP->IP, IP->tip
_THUMB_RADII = (0.0175, 0.0125, 0.0110, 0.0098)  # thenar base, MCP, IP, tip
_FINGER_THICKNESS_RATIO = 0.86  # palmar-dorsal half-thickness / half-width
_PALM_EXPONENT = 2.6  # superellipse exponent of the palm cross-section (2 = ellipse)
# Palm cross-section along its length (t = 0 at the wrist, 1 at the knuckles).
_PALM_T = np.array([0.0, 0.25, 0.5, 0.8, 1.0])
_PALM_HALF_WIDTH = np.array([0.0290, 0.0375, 0.0415, 0.0430, 0.0430])
_PALM_HALF_THICKNESS = np.array([0.0185, 0.0170, 0.0155, 0.0140, 0.0110])
_CAP_ANGLES_DEG = (0.0, 40.0, 70.0)  # rings of the rounded fingertip, then the pole
_TIP_ELONGATION = 1.15  # the fingertip cap is a slightly elongated half-ellipsoid


@dataclass
class HandMesh:
    """The template mesh and what the model generator needs to know about it.

    Attributes:
        vertices: (V, 3) float64, metres.
        faces: (F, 3) int64, outward (counter-clockwise seen from outside).
        face_chart: (F,) int64 UV chart of each face, index into ``chart_names``.
        chart_names: names of the UV charts.
        chart_is_palmar: per chart, True for the palmar (pressure-bearing) side.
        vertex_part: (V,) int64 index into ``PARTS``.
        joints: (16, 3) designed MANO joint positions.
        joint_rings: per MANO joint, vertex ids of the ring around it (None: regress from
            nearby vertices).
        axial: (V,) position along the vertex's finger axis from its proximal joint, metres
            (palm vertices: along the nearest finger from its MCP; negative inside the palm).
        finger_of_vertex: (V,) 0..3 finger of a palm/finger vertex, 4 thumb.
        tip_vertex_ids: fingertip (pole) vertex per finger name.
        palm_normal: (3,) unit vector out of the palm.
        bone_lengths: per finger name, its three segment lengths.
        thumb_frame: (3, 3) rows: thumb axis, pad normal, flexion axis.
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_chart: np.ndarray
    chart_names: list[str]
    chart_is_palmar: list[bool]
    vertex_part: np.ndarray
    joints: np.ndarray
    joint_rings: list
    axial: np.ndarray
    finger_of_vertex: np.ndarray
    tip_vertex_ids: dict[str, int]
    palm_normal: np.ndarray
    bone_lengths: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    thumb_frame: np.ndarray | None = None


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _bump(x: np.ndarray, z: np.ndarray, center: tuple[float, float], width: tuple[float, float]) -> np.ndarray:
    return np.exp(-(((x - center[0]) / width[0]) ** 2) - ((z - center[1]) / width[1]) ** 2)


def _superellipse(theta: np.ndarray, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    cos, sin = np.cos(theta), np.sin(theta)
    power = 2.0 / exponent
    return np.sign(cos) * np.abs(cos) ** power, np.sign(sin) * np.abs(sin) ** power


class _MeshBuilder:
    def __init__(self) -> None:
        self.vertices: list[np.ndarray] = []
        self.part: list[int] = []
        self.axial: list[float] = []
        self.finger: list[int] = []
        self.faces: list[tuple[int, int, int]] = []
        self.face_chart: list[int] = []
        self.chart_names: list[str] = []
        self.chart_is_palmar: list[bool] = []

    def add_vertices(self, points: np.ndarray, part: int, axial, finger: int) -> np.ndarray:
        start = len(self.vertices)
        points = np.atleast_2d(points)
        axial = np.broadcast_to(np.asarray(axial, dtype=np.float64), (len(points),))
        finger = np.broadcast_to(np.asarray(finger, dtype=np.int64), (len(points),))
        for point, s, f in zip(points, axial, finger):
            self.vertices.append(np.asarray(point, dtype=np.float64))
            self.part.append(part)
            self.axial.append(float(s))
            self.finger.append(int(f))
        return np.arange(start, start + len(points))

    def chart(self, name: str, palmar: bool) -> int:
        self.chart_names.append(name)
        self.chart_is_palmar.append(palmar)
        return len(self.chart_names) - 1

    def quad(self, a: int, b: int, c: int, d: int, chart: int) -> None:
        """Quad a-b-c-d (consistent winding) as two triangles."""
        self.faces.append((a, b, c))
        self.faces.append((a, c, d))
        self.face_chart.extend((chart, chart))

    def triangle(self, a: int, b: int, c: int, chart: int) -> None:
        self.faces.append((a, b, c))
        self.face_chart.append(chart)

    def strip(self, lower: np.ndarray, upper: np.ndarray, charts: list[int], skip=None) -> None:
        """Quads between two rings of equal size; ``charts[i]`` for the quad starting at i."""
        count = len(lower)
        for i in range(count):
            if skip is not None and skip(i):
                continue
            j = (i + 1) % count
            self.quad(lower[i], lower[j], upper[j], upper[i], charts[i])


def _finger_frame(spec: _FingerSpec, palm_normal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    angle = np.deg2rad(spec.spread_deg)
    direction = np.array([-np.cos(angle), 0.0, np.sin(angle)])
    palmar = _unit(palm_normal - np.dot(palm_normal, direction) * direction)
    radial = _unit(np.cross(palmar, direction))  # +z side for the right hand
    if radial[2] < 0:
        radial = -radial
    return direction, palmar, radial


def _ring_points(center, radial, palmar, half_width, half_thickness, theta, palmar_scale=1.0, dorsal_scale=1.0):
    cos, sin = np.cos(theta), np.sin(theta)
    thickness = np.where(sin > 0, half_thickness * palmar_scale, half_thickness * dorsal_scale)
    return center[None] + (half_width * cos)[:, None] * radial[None] + (thickness * sin)[:, None] * palmar[None]


def build_hand_mesh(dims: HandDimensions = HandDimensions()) -> HandMesh:
    """The right-hand template for ``dims`` (same topology for every ``dims``)."""
    s = dims.scale
    palm_normal = np.array([0.0, -1.0, 0.0])
    mb = _MeshBuilder()
    joints = np.zeros((16, 3))
    joint_rings: list = [None] * 16
    tip_ids: dict[str, int] = {}
    bone_lengths: dict[str, tuple[float, float, float]] = {}

    # ---- finger geometry (needed first: the palm's last row is the finger bases) ----
    finger_theta = np.pi * (np.arange(2 * K) + 0.5) / K
    finger_frames = {}
    finger_base_points = {}
    for f_index, name in enumerate(FINGER_NAMES):
        spec = _FINGERS[name]
        mcp = np.array(spec.mcp) * np.array([dims.palm_length, dims.palm_thickness, dims.palm_width]) * s
        direction, palmar, radial = _finger_frame(spec, palm_normal)
        length_factor = dims.finger_length * s
        if name == "little":
            length_factor *= dims.little_length
        if name == "index":
            length_factor *= dims.index_ring_ratio
        if name == "ring":
            length_factor /= dims.index_ring_ratio
        lengths = tuple(length * length_factor for length in spec.lengths)
        radius_factor = dims.finger_thickness * s
        r_mcp, r_pip, r_dip, r_tip = spec.radii
        taper = dims.finger_taper
        radii = (
            r_mcp * radius_factor,
            r_pip * radius_factor * (1 + 0.5 * (taper - 1)),
            r_dip * radius_factor * taper,
            r_tip * radius_factor * taper,
        )
        finger_frames[name] = (mcp, direction, palmar, radial, lengths, radii)
        bone_lengths[name] = lengths
        finger_base_points[name] = _ring_points(
            mcp, radial, palmar, radii[0], radii[0] * _FINGER_THICKNESS_RATIO, finger_theta
        )

    # ---- palm ----
    ring_size = 2 * PALM_COLUMNS
    theta = np.pi * (np.arange(ring_size) + 0.5) / PALM_COLUMNS
    # Finger base ring vertex standing at each palm ring index of the last row.
    base_owner = []
    for i in range(ring_size):
        if i < PALM_COLUMNS:
            column = i
            f_index, m = divmod(column, K)
            base_owner.append((f_index, m))
        else:
            column = ring_size - 1 - i
            f_index, within = divmod(column, K)
            base_owner.append((f_index, K + (K - 1 - within)))
    base_points = np.array([finger_base_points[FINGER_NAMES[f]][m] for f, m in base_owner])
    se_z, se_y = _superellipse(theta, _PALM_EXPONENT)
    palmar_side = np.clip(np.sin(theta), 0.0, 1.0)
    owners = np.array([f for f, _ in base_owner])
    owner_mcp = np.array([finger_frames[FINGER_NAMES[f]][0] for f in owners])
    owner_direction = np.array([finger_frames[FINGER_NAMES[f]][1] for f in owners])
    palm_rings = []
    for row in range(PALM_ROWS):
        t = row / PALM_ROWS
        half_width = np.interp(t, _PALM_T, _PALM_HALF_WIDTH) * dims.palm_width * s
        half_thickness = np.interp(t, _PALM_T, _PALM_HALF_THICKNESS) * dims.palm_thickness * s
        x = t * base_points[:, 0]
        z = -0.0008 * t * s + half_width * se_z
        y = -half_thickness * se_y  # sin > 0 is the palmar side (-y)
        if row > 0:
            # Palm hollow (the centre of the palm sits higher) and hypothenar pad (ulnar side).
            hollow = 0.0032 * s * _bump(x, z, (-0.052 * s, 0.004 * s), (0.022 * s, 0.020 * s))
            hypothenar = 0.0030 * s * _bump(x, z, (-0.040 * s, -0.028 * s), (0.020 * s, 0.014 * s))
            y = y + palmar_side * (hollow - hypothenar)
        blend = _smoothstep((t - 0.55) / 0.45) ** 1.5
        y = (1 - blend) * y + blend * base_points[:, 1]
        z = (1 - blend) * z + blend * base_points[:, 2]
        points = np.stack([x, y, z], axis=1)
        # Palm vertices take the axial coordinate of their finger (MCP at 0, negative inside).
        axial = np.einsum("ij,ij->i", points - owner_mcp, owner_direction)
        palm_rings.append(mb.add_vertices(points, PARTS.index("palm"), axial, owners))
    # Wrist joint: centroid of the symmetric wrist ring (the origin).
    joints[0] = np.mean([mb.vertices[i] for i in palm_rings[0]], axis=0)
    joint_rings[0] = palm_rings[0]

    # Finger base rings become the palm's last row.
    finger_rings: dict[str, list[np.ndarray]] = {}
    for f_index, name in enumerate(FINGER_NAMES):
        ids = mb.add_vertices(finger_base_points[name], PARTS.index(name), 0.0, f_index)
        finger_rings[name] = [ids]
    last_row = np.array([finger_rings[FINGER_NAMES[f]][0][m] for f, m in base_owner])

    palm_palmar = mb.chart("palm_palmar", True)
    palm_dorsal = mb.chart("palm_dorsal", False)
    wrist_chart = mb.chart("wrist", False)
    palm_charts = [palm_palmar if i < PALM_COLUMNS else palm_dorsal for i in range(ring_size)]
    hole_indices = {(THUMB_HOLE_FIRST_INDEX + q) % ring_size for q in range(THUMB_HOLE_WIDTH)}
    all_palm_rows = palm_rings + [last_row]
    for row in range(PALM_ROWS):
        in_hole_rows = THUMB_HOLE_ROWS[0] <= row < THUMB_HOLE_ROWS[1]

        def skip(i, in_hole_rows=in_hole_rows):
            return in_hole_rows and i in hole_indices

        mb.strip(all_palm_rows[row], all_palm_rows[row + 1], palm_charts, skip=skip)

    # Webs between neighbouring fingers (quad a, b, b', a').
    for f_index in range(3):
        a = finger_rings[FINGER_NAMES[f_index]][0][K - 1]
        a_dorsal = finger_rings[FINGER_NAMES[f_index]][0][K]
        b = finger_rings[FINGER_NAMES[f_index + 1]][0][0]
        b_dorsal = finger_rings[FINGER_NAMES[f_index + 1]][0][2 * K - 1]
        mb.quad(a, b, b_dorsal, a_dorsal, palm_palmar)

    # Wrist cap: a fan, slightly domed; its centre gets the axial mark -1 (skinned to the wrist).
    wrist_center = mb.add_vertices(np.array([[0.006 * s, 0.0, 0.0]]), PARTS.index("palm"), -1.0, 1)[0]
    ring0 = palm_rings[0]
    for i in range(ring_size):
        mb.triangle(wrist_center, ring0[(i + 1) % ring_size], ring0[i], wrist_chart)

    # ---- fingers ----
    for f_index, name in enumerate(FINGER_NAMES):
        mcp, direction, palmar, radial, lengths, radii = finger_frames[name]
        l1, l2, l3 = lengths
        r_mcp, r_pip, r_dip, r_tip = radii
        cap_length = r_tip * _TIP_ELONGATION
        cap_start = l1 + l2 + l3 - cap_length
        stations = [l1 * f for f in (0.22, 0.45, 0.68, 0.86, 1.0)]
        stations += [l1 + l2 * f for f in (0.2, 0.5, 0.8, 1.0)]
        stations += [l1 + l2 + (cap_start - l1 - l2) * f for f in (0.35, 0.7)]
        station_radius = np.interp(stations, [0, l1, l1 + l2, cap_start], [r_mcp, r_pip, r_dip, r_tip])
        # Knuckle bulges at the PIP and DIP joints, slimmer shafts between.
        for joint_s, bulge in ((l1, 0.05), (l1 + l2, 0.04)):
            station_radius *= 1 + bulge * np.exp(-(((np.array(stations) - joint_s) / (0.25 * l2)) ** 2))
        charts = [mb.chart(f"{name}_palmar", True), mb.chart(f"{name}_dorsal", False)]
        ring_charts = [charts[0] if i < K else charts[1] for i in range(2 * K)]
        rings = finger_rings[name]
        distal_start = l1 + l2
        for station, radius in zip(stations, station_radius):
            pad = 1.0 + 0.10 * _smoothstep((station - distal_start) / (0.4 * l3))  # fleshy pad
            nail = 1.0 - 0.12 * _smoothstep((station - distal_start) / (0.5 * l3))  # flatter nail side
            points = _ring_points(
                mcp + station * direction, radial, palmar, radius, radius * _FINGER_THICKNESS_RATIO, finger_theta, pad, nail
            )
            rings.append(mb.add_vertices(points, PARTS.index(name), station, f_index))
        for angle in _CAP_ANGLES_DEG:
            phi = np.deg2rad(angle)
            station = cap_start + cap_length * np.sin(phi)
            radius = r_tip * np.cos(phi)
            points = _ring_points(
                mcp + station * direction, radial, palmar, radius, radius * _FINGER_THICKNESS_RATIO, finger_theta, 1.10, 0.88
            )
            rings.append(mb.add_vertices(points, PARTS.index(name), station, f_index))
        tip = mb.add_vertices(mcp + (l1 + l2 + l3) * direction, PARTS.index(name), l1 + l2 + l3, f_index)[0]
        tip_ids[name] = int(tip)
        for lower, upper in zip(rings[:-1], rings[1:]):
            mb.strip(lower, upper, ring_charts)
        last = rings[-1]
        for i in range(2 * K):
            mb.triangle(last[i], last[(i + 1) % (2 * K)], tip, ring_charts[i])
        j1, j2, j3 = MANO_FINGER_JOINTS[name]
        joints[j1] = mcp
        joints[j2] = mcp + l1 * direction
        joints[j3] = mcp + (l1 + l2) * direction
        joint_rings[j1] = rings[0]
        joint_rings[j2] = rings[5]
        joint_rings[j3] = rings[9]

    # ---- thumb ----
    thumb_part = PARTS.index("thumb")
    cmc = np.array(_THUMB_CMC) * np.array([dims.palm_length, dims.palm_thickness, dims.palm_width]) * s
    t_dir = _unit(_THUMB_DIRECTION)
    base_pad = _unit(palm_normal - np.dot(palm_normal, t_dir) * t_dir)
    towards_fingers = _unit(np.cross(t_dir, base_pad))
    if np.dot(towards_fingers, [0.0, 0.0, -1.0]) < 0:
        towards_fingers = -towards_fingers
    roll = np.deg2rad(_THUMB_PAD_ROLL_DEG)
    t_pad = _unit(np.cos(roll) * base_pad + np.sin(roll) * towards_fingers)
    t_side = _unit(np.cross(t_pad, t_dir))
    thumb_factor = s * dims.finger_length * dims.thumb_length
    tl1, tl2, tl3 = (length * thumb_factor for length in _THUMB_LENGTHS)
    tr_base, tr_mcp, tr_ip, tr_tip = (r * s * dims.finger_thickness for r in _THUMB_RADII)
    tr_ip *= 1 + 0.5 * (dims.finger_taper - 1)
    tr_tip *= dims.finger_taper

    # Hole boundary loop in the palm grid, walked around the removed quads.
    r0, r1 = THUMB_HOLE_ROWS
    cols = [(THUMB_HOLE_FIRST_INDEX + q) % ring_size for q in range(THUMB_HOLE_WIDTH + 1)]
    loop = [all_palm_rows[r0][c] for c in cols[:-1]]
    loop += [all_palm_rows[r][cols[-1]] for r in range(r0, r1)]
    loop += [all_palm_rows[r1][c] for c in reversed(cols[1:])]
    loop += [all_palm_rows[r][cols[0]] for r in range(r1, r0, -1)]
    loop = np.array(loop)
    assert len(loop) == 2 * THUMB_HALF
    # The thumb's first quads must run the hole's edges opposite to the palm's quads.
    palm_edges = {edge for a, b, c in mb.faces for edge in ((a, b), (b, c), (c, a))}
    if (loop[0], loop[1]) in palm_edges:
        loop = loop[::-1]
    loop_points = np.array([mb.vertices[i] for i in loop])
    s0 = float(np.mean((loop_points - cmc) @ t_dir))
    rel = loop_points - cmc
    loop_angles = np.unwrap(np.arctan2(rel @ t_pad, rel @ t_side))
    sense = 1.0 if loop_angles[-1] > loop_angles[0] else -1.0
    uniform = loop_angles[0] + sense * 2 * np.pi * np.arange(2 * THUMB_HALF) / (2 * THUMB_HALF)
    # Rotate the uniform angles to best match the loop's (least squares on the offset).
    uniform = uniform + np.mean(loop_angles - uniform)

    t_stations = [s0 + (tl1 - s0) * f for f in (0.3, 0.65, 1.0)]
    t_stations += [tl1 + tl2 * f for f in (0.25, 0.5, 0.75, 1.0)]
    t_cap_length = tr_tip * _TIP_ELONGATION
    t_cap_start = tl1 + tl2 + tl3 - t_cap_length
    t_stations += [tl1 + tl2 + (t_cap_start - tl1 - tl2) * f for f in (0.35, 0.7)]
    t_radius = np.interp(t_stations, [s0, tl1, tl1 + tl2, t_cap_start], [tr_base, tr_mcp, tr_ip, tr_tip])
    t_radius *= 1 + 0.05 * np.exp(-(((np.array(t_stations) - tl1 - tl2) / (0.25 * tl2)) ** 2))
    mid_angles = uniform + sense * np.pi / (2 * THUMB_HALF)
    thumb_charts = [mb.chart("thumb_palmar", True), mb.chart("thumb_dorsal", False)]
    thumb_ring_charts = [thumb_charts[0] if np.sin(a) > 0 else thumb_charts[1] for a in mid_angles]

    def thumb_ring(center, radius, angles, pad=1.0, nail=1.0):
        sin = np.sin(angles)
        thickness = radius * _FINGER_THICKNESS_RATIO * np.where(sin > 0, pad, nail)
        return center[None] + (radius * np.cos(angles))[:, None] * t_side[None] + (thickness * sin)[:, None] * t_pad[None]

    thumb_rings = [loop]
    for k, (station, radius) in enumerate(zip(t_stations, t_radius)):
        blend = {0: 0.25, 1: 0.7}.get(k, 1.0)
        angles = (1 - blend) * loop_angles + blend * uniform
        pad = 1.0 + 0.10 * _smoothstep((station - tl1 - tl2) / (0.4 * tl3))
        nail = 1.0 - 0.12 * _smoothstep((station - tl1 - tl2) / (0.5 * tl3))
        # The thenar pad: the first rings are fuller on the palmar side.
        pad *= 1.0 + 0.18 * (1 - _smoothstep((station - s0) / (tl1 - s0)))
        points = thumb_ring(cmc + station * t_dir, radius, angles, pad, nail)
        thumb_rings.append(mb.add_vertices(points, thumb_part, station, 4))
    for angle in _CAP_ANGLES_DEG:
        phi = np.deg2rad(angle)
        station = t_cap_start + t_cap_length * np.sin(phi)
        points = thumb_ring(cmc + station * t_dir, tr_tip * np.cos(phi), uniform, 1.10, 0.88)
        thumb_rings.append(mb.add_vertices(points, thumb_part, station, 4))
    thumb_tip = mb.add_vertices(cmc + (tl1 + tl2 + tl3) * t_dir, thumb_part, tl1 + tl2 + tl3, 4)[0]
    tip_ids["thumb"] = int(thumb_tip)
    for lower, upper in zip(thumb_rings[:-1], thumb_rings[1:]):
        mb.strip(lower, upper, thumb_ring_charts)
    last = thumb_rings[-1]
    for i in range(2 * THUMB_HALF):
        mb.triangle(last[i], last[(i + 1) % (2 * THUMB_HALF)], thumb_tip, thumb_ring_charts[i])
    joints[13] = cmc
    joints[14] = cmc + tl1 * t_dir
    joints[15] = cmc + (tl1 + tl2) * t_dir
    joint_rings[14] = thumb_rings[3]
    joint_rings[15] = thumb_rings[7]
    bone_lengths["thumb"] = (tl1, tl2, tl3)

    vertices = np.array(mb.vertices)
    faces = np.array(mb.faces, dtype=np.int64)
    # Palm vertices near the thumb take the thumb's axial coordinate for skinning.
    axial = np.array(mb.axial)
    finger_of_vertex = np.array(mb.finger, dtype=np.int64)
    mesh = HandMesh(
        vertices=vertices,
        faces=faces,
        face_chart=np.array(mb.face_chart, dtype=np.int64),
        chart_names=mb.chart_names,
        chart_is_palmar=mb.chart_is_palmar,
        vertex_part=np.array(mb.part, dtype=np.int64),
        joints=joints,
        joint_rings=joint_rings,
        axial=axial,
        finger_of_vertex=finger_of_vertex,
        tip_vertex_ids=tip_ids,
        palm_normal=palm_normal,
        bone_lengths=bone_lengths,
        thumb_frame=np.stack([t_dir, t_pad, _unit(np.cross(t_dir, t_pad))]),
    )
    _drop_unused_vertices(mesh)
    _orient_outwards(mesh)
    return mesh


def _drop_unused_vertices(mesh: HandMesh) -> None:
    """Removes vertices no face uses (the palm grid points inside the thumb hole)."""
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[mesh.faces.ravel()] = True
    new_index = np.cumsum(used) - 1
    mesh.vertices = mesh.vertices[used]
    mesh.vertex_part = mesh.vertex_part[used]
    mesh.axial = mesh.axial[used]
    mesh.finger_of_vertex = mesh.finger_of_vertex[used]
    mesh.faces = new_index[mesh.faces]
    mesh.joint_rings = [None if ring is None else new_index[np.asarray(ring)] for ring in mesh.joint_rings]
    mesh.tip_vertex_ids = {name: int(new_index[index]) for name, index in mesh.tip_vertex_ids.items()}


def check_closed_manifold(faces: np.ndarray) -> None:
    """Raises AssertionError unless every directed edge occurs once with its reverse once."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    keys = directed[:, 0] * (faces.max() + 1) + directed[:, 1]
    unique, counts = np.unique(keys, return_counts=True)
    if np.any(counts != 1):
        raise AssertionError(f"{int(np.sum(counts != 1))} directed edges are used more than once")
    reverse = directed[:, 1] * (faces.max() + 1) + directed[:, 0]
    if not np.all(np.isin(reverse, unique)):
        raise AssertionError(f"{int(np.sum(~np.isin(reverse, unique)))} edges are on a boundary")


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    corners = vertices[faces]
    return float(np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6.0)


def _orient_outwards(mesh: HandMesh) -> None:
    check_closed_manifold(mesh.faces)
    if signed_volume(mesh.vertices, mesh.faces) < 0:
        mesh.faces = mesh.faces[:, [0, 2, 1]].copy()
