"""Quality per factor of the scene: which cameras, hands and images a model holds up on.

``egopress eval`` measures, for every scored sequence, the factors users' recordings vary in
(``docs/design.md``, "Metrics"):

- ``camera_distance_m``: median distance from the camera to the hand's joint centroid;
- ``view_pitch_deg``: the angle between the camera's optical axis and the surface the hand
  touches (the extrinsics' world z = 0 plane, the pad): 90 looks straight down; sources without
  extrinsics have no value;
- ``hand_size_m``: median wrist to middle-knuckle length (a big or a small hand);
- ``hand_size_px``: that length as the camera sees it (pixels): camera distance, focal length and
  image size together;
- ``image_width_px``: the camera image's width;
- ``skin_luminance``: relative luminance of the hand's base skin colour, where the source
  records it (synthetic data);
- ``contact_visible_share``: how much of the true contact the camera sees: the pressure-weighted
  share of pressed vertices whose depth matches the depth image at their pixel (within
  :data:`VISIBLE_TOLERANCE_M`), over up to :data:`VISIBILITY_FRAMES` frames with contact spread
  over the scored ones; low where fingertips press behind the knuckles, as a head camera behind
  the hand sees many presses. Sequences without contact (or without ground-truth vertices and
  pressure) have no value.

Sequences are then split into :data:`FACTOR_BINS` groups of about equal size by each factor's
value, and each group's frames are pooled into the usual metrics, so a model that loses quality
with a distant camera or a small hand shows it as a falling row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from egopress_core.metrics import PressureMetrics

# Groups per factor (low / middle / high thirds of the scored sequences).
FACTOR_BINS = 3
# OpenPose hand order: the wrist and the middle finger's knuckle (MCP).
WRIST, MIDDLE_KNUCKLE = 0, 9
# The normal of the surface in the extrinsics' world frame (the pad is z = 0; its sign differs
# between sources, so only the angle's size is used).
SURFACE_NORMAL = np.array([0.0, 0.0, 1.0])
# A pressed vertex counts as seen when the depth image at its pixel is this close to its depth.
VISIBLE_TOLERANCE_M = 0.006
# Frames with contact read per sequence for contact_visible_share (evenly spread).
VISIBILITY_FRAMES = 12
# Metrics shown per group.
GROUP_METRICS = ("volumetric_iou", "contact_iou", "mae_kpa", "force_mae_n", "force_ratio", "temporal_accuracy")


def sequence_factors(sequence, joints: np.ndarray, first_scored: int, contact_frames=None) -> dict[str, float]:
    """The factors of one sequence.

    Args:
        sequence: the data-set sequence as it was read (its own frames, meta and extrinsics).
        joints: (n, 21, 3) joints of the scored frames, metres, camera frame.
        first_scored: index of the first scored frame (its record gives the camera).
        contact_frames: indices (into ``sequence``) of scored frames with true contact, for
            ``contact_visible_share``; None leaves that factor out.
    """
    record = sequence.frame(first_scored)
    distance = float(np.median(np.linalg.norm(joints.mean(axis=1), axis=-1)))
    hand_size = float(np.median(np.linalg.norm(joints[:, MIDDLE_KNUCKLE] - joints[:, WRIST], axis=-1)))
    factors = {
        "camera_distance_m": distance,
        "hand_size_m": hand_size,
        "hand_size_px": hand_size / distance * float(record.intrinsics[0, 0]) if distance > 0 else float("nan"),
        "image_width_px": float(record.rgb.shape[1]),
    }
    if record.camera_from_world is not None:
        optical_axis_world = np.asarray(record.camera_from_world, dtype=np.float64)[:3, :3].T @ [0.0, 0.0, 1.0]
        factors["view_pitch_deg"] = float(np.degrees(np.arcsin(min(abs(float(optical_axis_world @ SURFACE_NORMAL)), 1.0))))
    skin = (getattr(sequence, "meta", None) or {}).get("skin_rgb")
    if skin is not None:
        factors["skin_luminance"] = float(np.dot([0.2126, 0.7152, 0.0722], np.asarray(skin, dtype=np.float64)))
    if contact_frames is not None and len(contact_frames):
        share = contact_visible_share(sequence, contact_frames)
        if share is not None:
            factors["contact_visible_share"] = share
    return factors


def contact_visible_share(sequence, frames) -> float | None:
    """Pressure-weighted share of the pressed ground-truth vertices the depth image shows
    (module docstring), over up to :data:`VISIBILITY_FRAMES` of ``frames`` (indices of frames
    with contact); None without ground-truth vertices, pressure or depth."""
    frames = np.asarray(frames)
    picked = frames[np.unique(np.linspace(0, len(frames) - 1, min(len(frames), VISIBILITY_FRAMES)).round().astype(int))]
    seen = total = 0.0
    for index in picked:
        record = sequence.frame(int(index))
        if record.vertices is None or record.vertex_pressure_kpa is None or record.depth_m is None:
            return None
        pressure = np.asarray(record.vertex_pressure_kpa, dtype=np.float64)
        pressed = pressure > 0
        if not pressed.any():
            continue
        points = np.asarray(record.vertices, dtype=np.float64)[pressed]
        weights = pressure[pressed]
        depth = np.asarray(record.depth_m, dtype=np.float64)
        intrinsics = np.asarray(record.intrinsics, dtype=np.float64)
        z = np.clip(points[:, 2], 1e-6, None)
        u = np.round(intrinsics[0, 0] * points[:, 0] / z + intrinsics[0, 2]).astype(int)
        v = np.round(intrinsics[1, 1] * points[:, 1] / z + intrinsics[1, 2]).astype(int)
        inside = (u >= 0) & (u < depth.shape[1]) & (v >= 0) & (v < depth.shape[0])
        reading = np.zeros_like(z)
        reading[inside] = depth[v[inside], u[inside]]
        visible = inside & (reading > 0) & (np.abs(reading - points[:, 2]) <= VISIBLE_TOLERANCE_M)
        seen += float(weights[visible].sum())
        total += float(weights.sum())
    return seen / total if total > 0 else None


def factor_breakdown(rows: list[dict[str, Any]], contact_threshold_kpa: float) -> dict[str, list[dict[str, Any]]]:
    """Pooled metrics per third of the sequences by each factor.

    Args:
        rows: one per scored sequence: ``factors`` (:func:`sequence_factors`) and the scored
            arrays ``pred``, ``gt``, ``pred_vertex``, ``gt_vertex``, ``pred_force``, ``gt_force``.
        contact_threshold_kpa: of the metrics.

    Returns:
        factor -> groups in increasing order, each with ``range`` [lowest, highest] value,
        ``sequences``, ``frames`` and :data:`GROUP_METRICS`. Factors with fewer distinct values
        than groups are left out (nothing to compare).
    """
    names = sorted({name for row in rows for name in row["factors"]})
    breakdown: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        measured = [row for row in rows if np.isfinite(row["factors"].get(name, np.nan))]
        values = np.array([row["factors"][name] for row in measured])
        if len(np.unique(values)) < FACTOR_BINS:
            continue
        order = np.argsort(values, kind="stable")
        groups = []
        for members in np.array_split(order, FACTOR_BINS):
            metrics = PressureMetrics(contact_threshold_kpa=contact_threshold_kpa)
            for index in members:
                row = measured[index]
                metrics.update(row["pred"], row["gt"], pred_vertex_kpa=row["pred_vertex"], gt_vertex_kpa=row["gt_vertex"],
                               pred_force_n=row["pred_force"], gt_force_n=row["gt_force"])
            result = metrics.compute()
            groups.append({"range": [float(values[members].min()), float(values[members].max())],
                           "sequences": int(len(members)), "frames": int(result["frames"]),
                           **{key: _finite_or_none(result.get(key)) for key in GROUP_METRICS}})
        breakdown[name] = groups
    return breakdown


def format_breakdown(breakdown: dict[str, list[dict[str, Any]]]) -> str:
    """A few lines for the terminal: Vol IoU and force error per group of each factor."""
    lines = []
    for name, groups in breakdown.items():
        cells = []
        for group in groups:
            low, high = group["range"]
            iou = "n/a" if group["volumetric_iou"] is None else f"{group['volumetric_iou']:.3f}"
            force = "n/a" if group["force_mae_n"] is None else f"{group['force_mae_n']:.2f} N"
            ratio = "n/a" if group.get("force_ratio") is None else f"x{group['force_ratio']:.2f}"
            cells.append(f"[{low:.3g}, {high:.3g}]: Vol IoU {iou}, force MAE {force}, force {ratio} of true")
        lines.append(f"{name}: " + "; ".join(cells))
    return "\n".join(lines)


def _finite_or_none(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
