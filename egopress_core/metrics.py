"""Pressure metrics as PressureVision defines them (used by EgoPressure and EgoPressDiff).

P is ground truth, P^ the prediction, both in kPa; contact is C = [P > threshold] with the
threshold 1.0 kPa by default (``docs/design.md``, "Metrics").

- Contact IoU     = sum |C^ and C| / sum |C^ or C|, pooled over the whole evaluation set.
- Volumetric IoU  = sum min(P^, P) / sum max(P^, P), pooled.
- MAE             = mean |P^ - P| over all texels (or vertices), kPa.
- Temporal acc.   = accuracy of the per-frame any-contact decision any(C^) vs any(C).

Extras: the same IoUs and MAE on per-vertex pressure, the mean absolute total-force error (N),
and temporal smoothness: mean |P^_t - P^_{t-1}| minus mean |P_t - P_{t-1}| (kPa; positive
means the prediction flickers more than the ground truth).

Temporal figures, where a video model should differ from a per-frame one:

- Flicker         = mean |P^_t - P^_{t-1}| over the texels whose ground truth does not change
                    between the two frames (by at most :data:`STATIC_TRUTH_KPA`), kPa.
- Onset / release timing error = mean |frame of the predicted event - frame of the true one|
                    over matched events; an event is the any-contact decision switching on
                    (onset) or off (release), matched one to one to the nearest of the same kind
                    within :data:`EVENT_MATCH_FRAMES`; unmatched true events are missed,
                    unmatched predicted ones spurious (both counted).
- Force correlation = Pearson correlation of predicted and true total force over all frames.
- Force ratio = predicted over true total force, each summed over all frames (above 1: the model
  over-predicts; a systematic ratio shows up per hand size in the per-factor report).

"Pooled" matters: the IoUs are ratios of sums over every texel of every frame, not means of
per-frame ratios, so frames without contact do not count as perfect scores. A ratio whose
denominator is zero over the whole set (no contact anywhere) is undefined and reported as NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from egopress_core.errors import DataError

DEFAULT_CONTACT_THRESHOLD_KPA = 1.0
# Ground truth changing by at most this much between consecutive frames counts as unchanged (flicker).
STATIC_TRUTH_KPA = 0.05
# A predicted contact onset or release is matched to a true one at most this many frames away
# (half a second at 30 Hz).
EVENT_MATCH_FRAMES = 15


def _as_float_array(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise DataError(f"{name} contains NaN or infinite values")
    return array


def _check_pair(pred: np.ndarray, gt: np.ndarray, what: str) -> None:
    if pred.shape != gt.shape:
        raise DataError(
            f"prediction and ground truth {what} differ in shape: {pred.shape} vs {gt.shape}"
        )


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def _pearson(moments: np.ndarray, count: int) -> float:
    """Pearson correlation from the sums of x, y, x^2, y^2, xy over ``count`` pairs."""
    sx, sy, sxx, syy, sxy = moments
    covariance = sxy - sx * sy / count
    variance_x, variance_y = sxx - sx * sx / count, syy - sy * sy / count
    scale = math.sqrt(max(variance_x, 0.0) * max(variance_y, 0.0))
    return covariance / scale if scale > 1e-12 * max(1.0, abs(sxx), abs(syy)) else math.nan


@dataclass
class _PooledSums:
    """Running sums behind the pooled IoUs and the MAE of one kind of map (texels or vertices)."""

    contact_intersection: float = 0.0
    contact_union: float = 0.0
    volume_min: float = 0.0
    volume_max: float = 0.0
    abs_error: float = 0.0
    count: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, threshold: float) -> None:
        pred_contact = pred > threshold
        gt_contact = gt > threshold
        self.contact_intersection += float(np.count_nonzero(pred_contact & gt_contact))
        self.contact_union += float(np.count_nonzero(pred_contact | gt_contact))
        self.volume_min += float(np.minimum(pred, gt).sum())
        self.volume_max += float(np.maximum(pred, gt).sum())
        self.abs_error += float(np.abs(pred - gt).sum())
        self.count += pred.size

    def results(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}contact_iou": _ratio(self.contact_intersection, self.contact_union),
            f"{prefix}volumetric_iou": _ratio(self.volume_min, self.volume_max),
            f"{prefix}mae_kpa": _ratio(self.abs_error, self.count),
        }


def contact_events(any_contact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(onsets, releases): frame indices where a (T,) boolean contact decision switches on / off.
    A sequence that starts in contact has no onset at frame 0 (its start is not seen)."""
    steps = np.diff(np.asarray(any_contact, dtype=np.int8))
    return np.flatnonzero(steps == 1) + 1, np.flatnonzero(steps == -1) + 1


def match_events(true_frames: np.ndarray, predicted_frames: np.ndarray,
                 max_offset: int = EVENT_MATCH_FRAMES) -> tuple[list[int], int, int]:
    """One-to-one matching of predicted to true event frames, nearest pairs first.

    Returns:
        (|offset| in frames of each matched pair, true events missed, predicted events spurious).
    """
    pairs = sorted((abs(int(p) - int(t)), i, j) for i, t in enumerate(true_frames)
                   for j, p in enumerate(predicted_frames) if abs(int(p) - int(t)) <= max_offset)
    used_true, used_predicted, offsets = set(), set(), []
    for offset, i, j in pairs:
        if i not in used_true and j not in used_predicted:
            used_true.add(i)
            used_predicted.add(j)
            offsets.append(offset)
    return offsets, len(true_frames) - len(used_true), len(predicted_frames) - len(used_predicted)


@dataclass
class _EventSums:
    """Matched offsets and misses of one kind of contact event (onset or release)."""

    offsets: list[int] = field(default_factory=list)
    true_events: int = 0
    missed: int = 0
    spurious: int = 0

    def add(self, true_frames: np.ndarray, predicted_frames: np.ndarray) -> None:
        offsets, missed, spurious = match_events(true_frames, predicted_frames)
        self.offsets += offsets
        self.true_events += len(true_frames)
        self.missed += missed
        self.spurious += spurious

    def results(self, name: str) -> dict[str, float]:
        return {
            f"{name}_error_frames": float(np.mean(self.offsets)) if self.offsets else math.nan,
            f"{name}s_true": self.true_events,
            f"{name}s_missed": self.missed,
            f"{name}s_spurious": self.spurious,
        }


@dataclass
class PressureMetrics:
    """Accumulates the metrics over sequences; :meth:`compute` pools them.

    Call :meth:`update` once per sequence (or per contiguous, ordered chunk of one): the
    temporal figures compare consecutive frames within a call only.
    """

    contact_threshold_kpa: float = DEFAULT_CONTACT_THRESHOLD_KPA
    _uv: _PooledSums = field(default_factory=_PooledSums, init=False, repr=False)
    _vertex: _PooledSums = field(default_factory=_PooledSums, init=False, repr=False)
    _frames: int = field(default=0, init=False, repr=False)
    _any_contact_correct: int = field(default=0, init=False, repr=False)
    _force_abs_error: float = field(default=0.0, init=False, repr=False)
    _force_frames: int = field(default=0, init=False, repr=False)
    _pred_change: float = field(default=0.0, init=False, repr=False)
    _gt_change: float = field(default=0.0, init=False, repr=False)
    _change_count: int = field(default=0, init=False, repr=False)
    _flicker_sum: float = field(default=0.0, init=False, repr=False)
    _flicker_count: int = field(default=0, init=False, repr=False)
    _onsets: _EventSums = field(default_factory=_EventSums, init=False, repr=False)
    _releases: _EventSums = field(default_factory=_EventSums, init=False, repr=False)
    # Sums of x, y, x^2, y^2, xy of predicted (x) and true (y) total force: the pooled correlation.
    _force_moments: np.ndarray = field(default_factory=lambda: np.zeros(5), init=False, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.contact_threshold_kpa) and self.contact_threshold_kpa >= 0):
            raise DataError(
                f"contact_threshold_kpa must be a finite number >= 0. Got {self.contact_threshold_kpa}"
            )

    def update(
        self,
        pred_uv_kpa,
        gt_uv_kpa,
        *,
        pred_vertex_kpa=None,
        gt_vertex_kpa=None,
        pred_force_n=None,
        gt_force_n=None,
    ) -> None:
        """Adds one ordered sequence of frames.

        Args:
            pred_uv_kpa, gt_uv_kpa: (T, H, W) UV-pressure maps, kPa.
            pred_vertex_kpa, gt_vertex_kpa: optional (T, V) per-vertex pressure, kPa.
            pred_force_n, gt_force_n: optional (T,) total normal force, newtons.
        """
        pred = _as_float_array("pred_uv_kpa", pred_uv_kpa)
        gt = _as_float_array("gt_uv_kpa", gt_uv_kpa)
        _check_pair(pred, gt, "UV maps")
        if pred.ndim != 3:
            raise DataError(f"UV maps must be (T, H, W); got shape {pred.shape}")
        threshold = self.contact_threshold_kpa
        self._uv.add(pred, gt, threshold)

        frames = pred.shape[0]
        pred_any = (pred > threshold).reshape(frames, -1).any(axis=1)
        gt_any = (gt > threshold).reshape(frames, -1).any(axis=1)
        self._any_contact_correct += int(np.count_nonzero(pred_any == gt_any))
        self._frames += frames

        if frames > 1:
            pred_step, gt_step = np.abs(np.diff(pred, axis=0)), np.abs(np.diff(gt, axis=0))
            self._pred_change += float(pred_step.sum())
            self._gt_change += float(gt_step.sum())
            self._change_count += pred[1:].size
            static = gt_step <= STATIC_TRUTH_KPA
            self._flicker_sum += float(pred_step[static].sum())
            self._flicker_count += int(np.count_nonzero(static))
        for events, true_frames, predicted_frames in zip(
                (self._onsets, self._releases), contact_events(gt_any), contact_events(pred_any)):
            events.add(true_frames, predicted_frames)

        if (pred_vertex_kpa is None) != (gt_vertex_kpa is None):
            raise DataError("per-vertex pressure must be given for both prediction and ground truth")
        if pred_vertex_kpa is not None:
            pred_vertex = _as_float_array("pred_vertex_kpa", pred_vertex_kpa)
            gt_vertex = _as_float_array("gt_vertex_kpa", gt_vertex_kpa)
            _check_pair(pred_vertex, gt_vertex, "per-vertex pressure")
            if pred_vertex.ndim != 2 or pred_vertex.shape[0] != frames:
                raise DataError(
                    f"per-vertex pressure must be (T={frames}, V); got shape {pred_vertex.shape}"
                )
            self._vertex.add(pred_vertex, gt_vertex, threshold)

        if (pred_force_n is None) != (gt_force_n is None):
            raise DataError("total force must be given for both prediction and ground truth")
        if pred_force_n is not None:
            pred_force = _as_float_array("pred_force_n", pred_force_n)
            gt_force = _as_float_array("gt_force_n", gt_force_n)
            _check_pair(pred_force, gt_force, "forces")
            if pred_force.shape != (frames,):
                raise DataError(f"total force must be (T={frames},); got shape {pred_force.shape}")
            self._force_abs_error += float(np.abs(pred_force - gt_force).sum())
            self._force_frames += frames
            self._force_moments += (pred_force.sum(), gt_force.sum(), (pred_force ** 2).sum(), (gt_force ** 2).sum(),
                                    (pred_force * gt_force).sum())

    def compute(self) -> dict[str, float]:
        """The pooled metrics. Keys: ``contact_iou``, ``volumetric_iou``, ``mae_kpa``,
        ``temporal_accuracy``, ``temporal_smoothness_kpa``, ``flicker_kpa``,
        ``onset_error_frames`` / ``release_error_frames`` with their ``*s_true``, ``*s_missed``
        and ``*s_spurious`` counts, where given ``vertex_*``, ``force_mae_n``,
        ``force_correlation`` and ``force_ratio`` (predicted over true force summed over the
        frames: above 1 the model over-predicts), plus ``frames``. Undefined figures (no static
        texel, no matched event, a constant force, no true force) are NaN."""
        if self._frames == 0:
            raise DataError("no frames were added to the metrics")
        results = self._uv.results("")
        results["temporal_accuracy"] = self._any_contact_correct / self._frames
        results["temporal_smoothness_kpa"] = (
            (self._pred_change - self._gt_change) / self._change_count
            if self._change_count
            else math.nan
        )
        results["flicker_kpa"] = _ratio(self._flicker_sum, self._flicker_count)
        results.update(self._onsets.results("onset"))
        results.update(self._releases.results("release"))
        if self._vertex.count:
            results.update(self._vertex.results("vertex_"))
        if self._force_frames:
            results["force_mae_n"] = self._force_abs_error / self._force_frames
            results["force_correlation"] = _pearson(self._force_moments, self._force_frames)
            results["force_ratio"] = _ratio(self._force_moments[0], self._force_moments[1])
        results["frames"] = self._frames
        return results


def contact_iou(pred_kpa, gt_kpa, threshold_kpa: float = DEFAULT_CONTACT_THRESHOLD_KPA) -> float:
    """Pooled contact IoU of two arrays of any (equal) shape."""
    pred, gt = _as_float_array("pred_kpa", pred_kpa), _as_float_array("gt_kpa", gt_kpa)
    _check_pair(pred, gt, "arrays")
    sums = _PooledSums()
    sums.add(pred, gt, threshold_kpa)
    return sums.results("")["contact_iou"]


def volumetric_iou(pred_kpa, gt_kpa) -> float:
    """Pooled volumetric IoU of two arrays of any (equal) shape."""
    pred, gt = _as_float_array("pred_kpa", pred_kpa), _as_float_array("gt_kpa", gt_kpa)
    _check_pair(pred, gt, "arrays")
    return _ratio(float(np.minimum(pred, gt).sum()), float(np.maximum(pred, gt).sum()))


# PressureVision's discrete pressure classes (kPa bin edges) and the values they decode to.
PRESSURE_BIN_EDGES_KPA = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
PRESSURE_BIN_CENTRES_KPA = (0.0, 0.75, 1.5, 3.0, 6.0, 12.0, 24.0, 48.0, 80.0)


def pressure_to_bins(pressure_kpa) -> np.ndarray:
    """Class index in [0, 8] of each pressure value: bin i holds edges[i] <= p < edges[i+1]
    (p < 0.5 kPa is class 0; p >= 64 kPa is class 8)."""
    pressure = np.asarray(pressure_kpa)
    return np.clip(np.searchsorted(PRESSURE_BIN_EDGES_KPA, pressure, side="right") - 1, 0, 8)


def bins_to_pressure(classes) -> np.ndarray:
    """Decodes class indices to the bin-centre pressures, kPa."""
    return np.asarray(PRESSURE_BIN_CENTRES_KPA, dtype=np.float32)[np.asarray(classes)]
