"""UV-pressure maps -> per-vertex pressure, contact, force and centre of pressure.

The one post-processing step of every runtime path (live stream, bag labeller, evaluation):
``docs/design.md`` ("Pressure readout") gives the conventions, :mod:`egopress_core.contact` the
per-frame summary. Least squares (:meth:`UVAtlas.uv_to_vertex`) can undershoot next to sharp
contact edges; pressure is never negative, so per-vertex values are clamped at 0 before anything
is summed. The per-frame readout (:meth:`PressureReadout.__call__`) works in float64; the batch
helpers keep the precision they are given (evaluation scores float32 maps as it always has).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egopress_core.contact import ContactSummary, summarize_contact
from egopress_core.options import ContactOptions


@dataclass(frozen=True)
class FramePressure:
    """Pressure of one frame on the hand.

    Attributes:
        uv_pressure_kpa: (Hu, Wu) float32 kPa on the model's UV atlas, >= 0, zero outside the
            hand's UV mask; row 0 is v = 1.
        uv_total_force_n: sum of pressure x texel area on the posed mesh, N.
        contact: per-vertex pressure and its summary (contact flags, area, force, centre of
            pressure).
    """

    uv_pressure_kpa: np.ndarray
    uv_total_force_n: float
    contact: ContactSummary

    @property
    def max_pressure_kpa(self) -> float:
        return float(self.uv_pressure_kpa.max()) if self.uv_pressure_kpa.size else 0.0


class PressureReadout:
    """Reads UV maps out onto the posed hand mesh.

    Args:
        atlas: :class:`~egopress_core.uv_atlas.UVAtlas` of the hand at the model's UV resolution.
        options: :class:`~egopress_core.options.ContactOptions`.
    """

    def __init__(self, atlas, options: ContactOptions | None = None) -> None:
        self.atlas = atlas
        self.options = options or ContactOptions()

    def vertex_pressure(self, uv_maps: np.ndarray) -> np.ndarray:
        """(N, Hu, Wu) kPa -> (N, V) kPa, >= 0, in the maps' precision."""
        return np.clip(self.atlas.uv_to_vertex(np.asarray(uv_maps)), 0.0, None)

    def uv_force(self, uv_maps: np.ndarray, vertices: np.ndarray) -> np.ndarray:
        """(N, Hu, Wu) kPa and (N, V, 3) m -> (N,) total force, N, in the inputs' precision."""
        return np.asarray(self.atlas.total_force(np.asarray(uv_maps), np.asarray(vertices)))

    def __call__(self, uv_maps: np.ndarray, vertices: np.ndarray) -> list[FramePressure]:
        """Per-frame pressure of N frames.

        Args:
            uv_maps: (N, Hu, Wu) kPa.
            vertices: (N, V, 3) posed vertices, metres (camera frame; the centre of pressure is
                in it).
        """
        uv_maps = np.asarray(uv_maps)
        vertices = np.asarray(vertices, dtype=np.float64)
        if not len(uv_maps):
            return []
        maps64 = uv_maps.astype(np.float64)
        vertex_pressure = self.vertex_pressure(maps64)
        areas = self.atlas.vertex_area(vertices)
        forces = self.uv_force(maps64, vertices)
        threshold = self.options.contact_threshold_kpa
        return [
            FramePressure(uv_pressure_kpa=np.asarray(uv_maps[k], dtype=np.float32), uv_total_force_n=float(forces[k]),
                          contact=summarize_contact(vertex_pressure[k], vertices[k], areas[k], threshold))
            for k in range(len(uv_maps))
        ]
