"""Contact sheets: one PNG per sequence showing what a data source holds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from egopress_core.data.records import SequenceSource
from egopress_core.files import replacing
from egopress_core.visualize import colorize, hand_views


def write_contact_sheet(sequence: SequenceSource, faces: np.ndarray, out_png: str | os.PathLike, rows: int = 4) -> Path:
    """Writes a contact sheet of ``rows`` frames of ``sequence``: RGB, depth, pad pressure,
    UV-pressure map, the hand coloured by pressure (both sides), and force over time.

    Frames are chosen around the force peak so contact is visible. ``faces`` (F, 3) is the
    hand model's topology the sequence's vertices follow.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(sequence)
    records = [sequence.frame(i) for i in range(count)]
    uv_peak = np.array([r.uv_pressure_kpa.max() if r.uv_pressure_kpa is not None else 0.0 for r in records])
    force = np.array([r.extras.get("force_n", np.nan) for r in records], dtype=np.float64)
    peak = int(np.argmax(uv_peak))
    chosen = sorted(set(np.clip(np.linspace(0, count - 1, rows).round().astype(int), 0, count - 1)) | {peak})[:rows]
    if peak not in chosen:
        chosen[-1] = peak
    vmax = max(float(uv_peak.max()), 1.0)

    figure = plt.figure(figsize=(16, 3.2 * len(chosen) + 2.6))
    grid = figure.add_gridspec(len(chosen) + 1, 5, height_ratios=[3.2] * len(chosen) + [2.2])
    for row, index in enumerate(chosen):
        record = records[index]
        panels = [
            (record.rgb, f"frame {index}: RGB"),
            (colorize(record.depth_m, float(np.percentile(record.depth_m[record.depth_m > 0], 99)) if (record.depth_m > 0).any() else 1.0, "viridis", record.depth_m > 0), "depth (grey: hole)"),
            (colorize(record.pad_pressure_kpa, vmax) if record.pad_pressure_kpa is not None else None, "pad pressure"),
            (colorize(record.uv_pressure_kpa, vmax), f"UV pressure (max {record.uv_pressure_kpa.max():.1f} kPa)"),
        ]
        for column, (image, title) in enumerate(panels):
            axis = figure.add_subplot(grid[row, column])
            axis.axis("off")
            axis.set_title(title, fontsize=9)
            if image is not None:
                axis.imshow(image)
        axis = figure.add_subplot(grid[row, 4])
        axis.axis("off")
        axis.set_title("hand coloured by pressure", fontsize=9)
        if record.vertices is not None and record.vertex_pressure_kpa is not None:
            axis.imshow(hand_views(record.vertices, faces, record.vertex_pressure_kpa, 192, vmax))
    axis = figure.add_subplot(grid[len(chosen), :])
    times = np.arange(count) / sequence.fps
    if np.isfinite(force).any():
        axis.plot(times, force, label="total force (N)")
    axis.plot(times, uv_peak, label="peak pressure (kPa)")
    axis.set_xlabel("time (s)")
    axis.legend(loc="upper right")
    gesture = records[0].extras.get("gesture", "")
    figure.suptitle(f"{sequence.name} {gesture}")
    figure.tight_layout()
    out = Path(out_png)
    with replacing(out) as temporary:
        figure.savefig(temporary, dpi=80)
    plt.close(figure)
    return out
