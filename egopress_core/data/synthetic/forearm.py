"""The forearm the hand is attached to, for rendering only.

A MANO-format hand ends at the wrist. Rendered alone it shows a cut wrist to the camera, which no
real egocentric frame does: the forearm always enters the picture, and hand detectors use it
(MediaPipe's palm detector found the hand in far fewer of the generator's frames without it).
The forearm here is a tapered elliptic tube from inside the wrist towards the wearer's elbow,
rising from the table, following the hand's wrist every frame. It is scenery: it is drawn in
colour and depth (a depth sensor sees it too) and casts shadows, but it is not part of the hand
model, the ground-truth mesh, the hand mask or the contact simulation (the pressure is the
hand's, as before).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# OpenPose joint indices of the wrist, the middle finger's knuckle and the index and little
# fingers' knuckles (the hand's forward and sideways directions).
_WRIST, _MIDDLE_MCP, _INDEX_MCP, _LITTLE_MCP = 0, 9, 5, 17
RINGS, SEGMENTS = 14, 20
WORLD_UP = np.array([0.0, 0.0, -1.0])


@dataclass(frozen=True)
class Forearm:
    """One sequence's forearm.

    Attributes:
        half_width_m, half_thickness_m: the cross-section's semi-axes at the wrist (across the
            palm and through it), taken from the hand mesh so the tube starts inside the wrist.
        length_m: wrist to where the tube ends (short of the elbow, which a head camera rarely
            sees; a longer arm passes right under the camera).
        elevation: how steeply it rises from the table towards the elbow, radians.
        deviation: its turn about the vertical away from the hand's own direction, towards the
            little finger's side, radians: the elbow is outside the wrist (a right arm comes
            into a head camera's picture from the lower right), so the arm rarely lies along the
            camera's line of sight to the hand.
        taper: how much wider and thicker it gets towards the elbow (relative).
    """

    half_width_m: float
    half_thickness_m: float
    length_m: float
    elevation: float
    deviation: float
    taper: float

    @staticmethod
    def sample(rng: np.random.Generator, rest_vertices: np.ndarray, rest_joints: np.ndarray) -> "Forearm":
        """A forearm matched to the hand's wrist (rest-pose vertices (V, 3) and joints (21, 3))."""
        forward, side, normal = _hand_axes(rest_joints)
        offset = rest_vertices - rest_joints[_WRIST]
        # The wrist's cross-section: mesh vertices within a centimetre of the wrist joint's plane.
        ring = np.abs(offset @ forward) < 0.01
        if ring.sum() < 8:
            ring = np.argsort(np.abs(offset @ forward))[:32]
        half_width = 0.5 * float(np.ptp(offset[ring] @ side))
        half_thickness = 0.5 * float(np.ptp(offset[ring] @ normal))
        return Forearm(
            half_width_m=0.9 * half_width,
            half_thickness_m=0.9 * half_thickness,
            length_m=float(rng.uniform(0.2, 0.26)),
            elevation=float(np.deg2rad(rng.uniform(5.0, 20.0))),
            deviation=float(np.deg2rad(rng.uniform(5.0, 25.0))),
            taper=float(rng.uniform(0.25, 0.45)),
        )

    def mesh(self, joints_world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The forearm under posed joints (21, 3), world frame.

        Returns:
            vertices (RINGS * SEGMENTS + 1, 3), faces (F, 3) (indices into these vertices; the
            far end is capped), and per vertex its coordinates in the forearm's own frame (m;
            the first is the distance along it from the wrist): the same in every frame, for
            textures that stay on the skin.
        """
        forward, side, _ = _hand_axes(joints_world)
        level = forward - (forward @ WORLD_UP) * WORLD_UP
        level = level / max(np.linalg.norm(level), 1e-9)
        outward = -(side - (side @ WORLD_UP) * WORLD_UP)  # towards the little finger, level
        outward /= max(np.linalg.norm(outward), 1e-9)
        back = -np.cos(self.deviation) * level + np.sin(self.deviation) * outward
        axis = np.cos(self.elevation) * back + np.sin(self.elevation) * WORLD_UP
        width_axis = side - (side @ axis) * axis
        width_axis /= max(np.linalg.norm(width_axis), 1e-9)
        thickness_axis = np.cross(axis, width_axis)
        # Starts a centimetre inside the hand so that the seam hides in the palm's mesh.
        start = joints_world[_WRIST] + 0.01 * forward
        along = np.linspace(-0.01, self.length_m, RINGS)
        growth = 1.0 + self.taper * np.clip(along / self.length_m, 0.0, 1.0)
        angles = np.linspace(0.0, 2.0 * np.pi, SEGMENTS, endpoint=False)
        centres = start[None] + along[:, None] * axis[None]
        ring = (np.cos(angles)[:, None] * width_axis * self.half_width_m + np.sin(angles)[:, None] * thickness_axis * self.half_thickness_m)
        vertices = (centres[:, None, :] + growth[:, None, None] * ring[None]).reshape(-1, 3)
        vertices = np.concatenate([vertices, centres[-1:]])
        faces = []
        for r in range(RINGS - 1):
            for k in range(SEGMENTS):
                a, b = r * SEGMENTS + k, r * SEGMENTS + (k + 1) % SEGMENTS
                faces += [(a, b, a + SEGMENTS), (b, b + SEGMENTS, a + SEGMENTS)]
        cap = len(vertices) - 1
        last = (RINGS - 1) * SEGMENTS
        faces += [(last + (k + 1) % SEGMENTS, last + k, cap) for k in range(SEGMENTS)]
        local_ring = np.stack([np.zeros(SEGMENTS), np.cos(angles) * self.half_width_m, np.sin(angles) * self.half_thickness_m], axis=1)
        local = np.concatenate([(np.array([1.0, 0.0, 0.0]) * along[:, None, None] + growth[:, None, None] * local_ring[None]).reshape(-1, 3),
                                [[along[-1], 0.0, 0.0]]])  # fmt: skip
        return vertices, np.asarray(faces, dtype=np.int64), local


def _hand_axes(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit forward (wrist -> middle knuckle), side (little -> index knuckle, made orthogonal)
    and their normal."""
    forward = joints[_MIDDLE_MCP] - joints[_WRIST]
    forward = forward / np.linalg.norm(forward)
    side = joints[_INDEX_MCP] - joints[_LITTLE_MCP]
    side = side - (side @ forward) * forward
    side = side / np.linalg.norm(side)
    return forward, side, np.cross(forward, side)
