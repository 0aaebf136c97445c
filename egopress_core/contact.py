"""Per-vertex contact of one frame: which vertices press, over what area, with what force, where.

The live node publishes this as ``msg/HandContact.msg`` and the rosbag labeller records the same
numbers, so both call :func:`summarize_contact`. Conventions (``docs/design.md``, "Pressure
readout"):

- pressure is kPa, >= 0 (negative estimates, e.g. least-squares overshoot of
  :meth:`UVAtlas.uv_to_vertex`, are clamped to 0 before anything is summed);
- each vertex stands for a third of the area of every face around it
  (:meth:`UVAtlas.vertex_area`), so per-vertex force is ``pressure_kpa * 1000 * area_m2``;
- the total force sums every vertex (pressure under the contact threshold still pushes), the
  contact area only the vertices above the threshold;
- the centre of pressure is the force-weighted mean position of the contact vertices, i.e. the
  point where the resultant of the contact forces acts; NaN (all three) without contact, as the
  message prescribes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from egopress_core.errors import ConfigError, DataError
from egopress_core.metrics import DEFAULT_CONTACT_THRESHOLD_KPA

PASCAL_PER_KPA = 1000.0


@dataclass(frozen=True)
class ContactSummary:
    """Contact on the hand mesh for one frame (the fields of ``msg/HandContact.msg``).

    Attributes:
        vertex_pressure_kpa: (V,) float32 kPa, >= 0.
        vertex_contact: (V,) bool, ``vertex_pressure_kpa > contact_threshold_kpa``.
        contact_threshold_kpa: the threshold of ``vertex_contact``.
        in_contact: any vertex in contact.
        contact_area_m2: area of the contact vertices, m².
        total_force_n: sum of pressure x area over all vertices, N.
        center_of_pressure: (3,) float64 metres in the vertices' frame; NaN without contact.
    """

    vertex_pressure_kpa: np.ndarray
    vertex_contact: np.ndarray
    contact_threshold_kpa: float
    in_contact: bool
    contact_area_m2: float
    total_force_n: float
    center_of_pressure: np.ndarray


def _vector(value, name: str, length: int | None = None) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 1 or (length is not None and array.shape[0] != length):
        expected = "(V,)" if length is None else f"({length},)"
        raise DataError(f"{name} must have shape {expected}; got {tuple(array.shape)}")
    return array


def summarize_contact(
    vertex_pressure_kpa,
    vertices,
    vertex_area_m2,
    contact_threshold_kpa: float = DEFAULT_CONTACT_THRESHOLD_KPA,
) -> ContactSummary:
    """Contact flags, area, force and centre of pressure from per-vertex pressure.

    Args:
        vertex_pressure_kpa: (V,) kPa; NaN is not allowed, negative values count as 0.
        vertices: (V, 3) posed vertices, metres (any frame; the centre of pressure is in it).
        vertex_area_m2: (V,) surface area each vertex stands for (``UVAtlas.vertex_area``).
        contact_threshold_kpa: a vertex is in contact above this pressure.

    Returns:
        :class:`ContactSummary`.

    Raises:
        DataError: shapes disagree, or pressure, vertices or areas hold NaN / infinity, or an
            area is negative.
        ConfigError: the threshold is not a finite number >= 0.
    """
    if isinstance(contact_threshold_kpa, bool) or not isinstance(contact_threshold_kpa, (int, float)) or not (
        math.isfinite(contact_threshold_kpa) and contact_threshold_kpa >= 0
    ):
        raise ConfigError(f"contact_threshold_kpa must be a finite number >= 0. Got {contact_threshold_kpa!r}")
    pressure = _vector(vertex_pressure_kpa, "vertex_pressure_kpa")
    count = pressure.shape[0]
    area = _vector(vertex_area_m2, "vertex_area_m2", count)
    points = np.asarray(vertices, dtype=np.float64)
    if points.shape != (count, 3):
        raise DataError(f"vertices must have shape ({count}, 3) to match vertex_pressure_kpa; got {tuple(points.shape)}")
    for name, value in (("vertex_pressure_kpa", pressure), ("vertex_area_m2", area), ("vertices", points)):
        if not np.isfinite(value).all():
            raise DataError(f"{name} holds NaN or infinite values")
    if (area < 0).any():
        raise DataError(f"vertex_area_m2 must be >= 0; got a minimum of {area.min()}")

    pressure = np.clip(pressure, 0.0, None)
    contact = pressure > contact_threshold_kpa
    force = pressure * PASCAL_PER_KPA * area  # (V,) newtons
    contact_force = float(force[contact].sum())
    if contact.any() and contact_force > 0:
        centre = (force[contact, None] * points[contact]).sum(axis=0) / contact_force
    elif contact.any():
        # Contact vertices of zero area (degenerate faces): their plain mean is the best guess.
        centre = points[contact].mean(axis=0)
    else:
        centre = np.full(3, np.nan)
    return ContactSummary(
        vertex_pressure_kpa=pressure.astype(np.float32),
        vertex_contact=contact,
        contact_threshold_kpa=float(contact_threshold_kpa),
        in_contact=bool(contact.any()),
        contact_area_m2=float(area[contact].sum()),
        total_force_n=float(force.sum()),
        center_of_pressure=centre,
    )
