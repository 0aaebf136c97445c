"""Sensel Morph touch pad: unit conversion and pad geometry, as used by EgoPressure.

EgoPressure's pad readings (``force``, and the UV map once denormalised) are raw Sensel counts
per sensor cell. The dataset's official conversion (eth-siplab/EgoPressure ``senselpad.py`` and
``docs/DATA.md``) is

    newtons = counts / 1736,      kPa = newtons / (0.00125 m)^2 / 1000,

so one count on one 1.25 mm cell is 0.36866 kPa and 1736 counts (1 N) are 640 kPa.

Pad geometry (world frame of EgoPressure: the pad is the plane z = 0, centred at the origin,
+z pointing down through the pad): the calibrated pad rectangle spans x in [-0.120, 0.120] m and
y in [-0.06875, 0.06875] m; grid columns run along +x and rows along +y, so cell (row 0, col 0)
is the (-x, -y) corner.
"""

from __future__ import annotations

import numpy as np

SENSEL_COUNTS_PER_NEWTON = 1736.0
SENSEL_CELL_PITCH_M = 0.00125
SENSEL_GRID_SHAPE: tuple[int, int] = (105, 185)  # (rows, cols)

# Calibrated pad rectangle in the EgoPressure world frame, metres.
PAD_X_RANGE_M: tuple[float, float] = (-0.120, 0.120)
PAD_Y_RANGE_M: tuple[float, float] = (-0.06875, 0.06875)

_KPA_PER_COUNT = 1.0 / SENSEL_COUNTS_PER_NEWTON / SENSEL_CELL_PITCH_M**2 / 1000.0


def sensel_counts_to_kpa(counts: np.ndarray) -> np.ndarray:
    """Pressure in kPa from raw Sensel counts (EgoPressure's documented conversion).

    Args:
        counts: (...,) raw counts; negative readings (sensor offset) are clipped to 0.
    Returns:
        (...,) float32 kPa, >= 0.
    """
    counts = np.clip(np.asarray(counts, dtype=np.float64), 0.0, None)
    return (counts * _KPA_PER_COUNT).astype(np.float32)
