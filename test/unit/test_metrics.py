"""Metrics on hand-made arrays whose answers are worked out by hand."""

import math

import numpy as np
import pytest

from egopress_core.errors import DataError
from egopress_core.metrics import (
    PressureMetrics,
    bins_to_pressure,
    contact_events,
    contact_iou,
    match_events,
    pressure_to_bins,
    volumetric_iou,
)


def test_contact_and_volumetric_iou_by_hand():
    gt = np.array([[0.0, 2.0], [4.0, 0.5]])
    pred = np.array([[1.5, 1.0], [2.0, 0.0]])
    # contact (> 1 kPa): gt {(0,1), (1,0)}, pred {(0,0), (1,0)} -> 1 shared of 3
    assert contact_iou(pred, gt) == pytest.approx(1 / 3)
    # min: 0 + 1 + 2 + 0 = 3 ; max: 1.5 + 2 + 4 + 0.5 = 8
    assert volumetric_iou(pred, gt) == pytest.approx(3 / 8)


def test_threshold_is_strict_and_configurable():
    gt = np.array([1.0, 2.0])
    pred = np.array([1.0, 2.0])
    # 1.0 kPa is not contact at the default threshold (C = P > 1.0)
    metrics = PressureMetrics()
    metrics.update(pred[None, None], gt[None, None])
    assert metrics.compute()["contact_iou"] == 1.0
    assert contact_iou(np.array([1.0]), np.array([1.5])) == 0.0
    assert contact_iou(np.array([1.0]), np.array([1.5]), threshold_kpa=0.5) == 1.0


def test_pooled_not_averaged_over_frames():
    # frame 0: perfect small contact (1 texel); frame 1: 1 of 3 texels right.
    gt = np.zeros((2, 1, 3))
    pred = np.zeros((2, 1, 3))
    gt[0, 0, 0] = pred[0, 0, 0] = 5.0
    gt[1, 0, :2] = 5.0
    pred[1, 0, 1:] = 5.0
    metrics = PressureMetrics()
    metrics.update(pred, gt)
    result = metrics.compute()
    # pooled: intersections 1 + 1 = 2, unions 1 + 3 = 4 -> 0.5 (mean of frames would be 0.667)
    assert result["contact_iou"] == pytest.approx(0.5)
    assert result["volumetric_iou"] == pytest.approx(10 / 20)
    assert result["mae_kpa"] == pytest.approx(10 / 6)


def test_pooling_across_updates_equals_one_update():
    rng = np.random.default_rng(0)
    gt = rng.gamma(0.5, 3.0, size=(6, 4, 5))
    pred = np.clip(gt + rng.normal(0, 1.5, size=gt.shape), 0, None)
    whole = PressureMetrics()
    whole.update(pred, gt)
    split = PressureMetrics()
    split.update(pred[:2], gt[:2])
    split.update(pred[2:], gt[2:])
    for key in ("contact_iou", "volumetric_iou", "mae_kpa", "temporal_accuracy"):
        assert split.compute()[key] == pytest.approx(whole.compute()[key])


def test_temporal_accuracy_and_smoothness():
    gt = np.zeros((4, 1, 2))
    gt[1:3, 0, 0] = 3.0  # contact in frames 1, 2
    pred = np.zeros((4, 1, 2))
    pred[1, 0, 1] = 3.0  # contact in frame 1 only, at another texel: still "any contact"
    metrics = PressureMetrics()
    metrics.update(pred, gt)
    result = metrics.compute()
    assert result["temporal_accuracy"] == pytest.approx(3 / 4)  # frame 2 wrong
    # frame-to-frame change: pred |3| + |3| = 6, gt 3 + 0 + 3 = 6 -> smoothness 0 over 6 values
    assert result["temporal_smoothness_kpa"] == pytest.approx(0.0)
    flicker = gt.copy()
    flicker[2, 0, 0] = 0.0  # on-off-on: more change than ground truth
    flicker[3, 0, 0] = 3.0
    metrics = PressureMetrics()
    metrics.update(flicker, gt)
    assert metrics.compute()["temporal_smoothness_kpa"] > 0


def test_flicker_counts_prediction_changes_only_where_the_truth_holds_still():
    gt = np.zeros((3, 1, 2))
    gt[:, 0, 0] = [0.0, 5.0, 5.0]  # texel 0 changes once (frames 0->1), texel 1 never
    pred = np.zeros((3, 1, 2))
    pred[:, 0, 0] = [0.0, 4.0, 6.0]  # follows the press, then moves by 2 while the truth holds
    pred[:, 0, 1] = [1.0, 0.0, 1.0]  # flickers by 1 twice where the truth is always 0
    metrics = PressureMetrics()
    metrics.update(pred, gt)
    # Static truth pairs: texel 0 frames 1->2 (|6-4| = 2), texel 1 both pairs (1 and 1): 4 / 3.
    assert metrics.compute()["flicker_kpa"] == pytest.approx(4 / 3)
    steady = PressureMetrics()
    steady.update(gt, gt)
    assert steady.compute()["flicker_kpa"] == 0.0


def test_contact_events_and_their_matching():
    onsets, releases = contact_events(np.array([1, 1, 0, 0, 1, 1, 1, 0], dtype=bool))
    assert onsets.tolist() == [4] and releases.tolist() == [2, 7]  # frame 0 in contact: no onset seen
    # Nearest pairs first, one to one, within the limit; the rest missed / spurious.
    # 10 takes 9 (1 frame) over 12 (2 frames); 40 has nothing within 5; 12 and 70 are spurious.
    assert match_events(np.array([10, 40]), np.array([12, 9, 70]), max_offset=5) == ([1], 1, 2)


def test_onset_and_release_timing_errors_in_frames():
    gt = np.zeros((20, 1, 1))
    gt[5:12] = 3.0  # onset at 5, release at 12
    late = np.zeros_like(gt)
    late[7:15] = 3.0  # onset 2 frames late, release 3 frames late
    late[18] = 3.0  # a spurious blip: onset 18, release 19
    metrics = PressureMetrics()
    metrics.update(late, gt)
    result = metrics.compute()
    assert result["onset_error_frames"] == 2.0 and result["release_error_frames"] == 3.0
    assert (result["onsets_true"], result["onsets_missed"], result["onsets_spurious"]) == (1, 0, 1)
    assert (result["releases_true"], result["releases_missed"], result["releases_spurious"]) == (1, 0, 1)
    never = PressureMetrics()
    never.update(np.zeros_like(gt), gt)
    result = never.compute()
    assert math.isnan(result["onset_error_frames"]) and result["onsets_missed"] == 1


def test_force_correlation_is_pooled_over_sequences():
    metrics = PressureMetrics()
    uv = np.zeros((3, 1, 1))
    metrics.update(uv, uv, pred_force_n=np.array([0.0, 1.0, 2.0]), gt_force_n=np.array([0.0, 2.0, 4.0]))
    metrics.update(uv, uv, pred_force_n=np.array([3.0, 3.0, 3.0]), gt_force_n=np.array([6.0, 6.0, 6.0]))
    assert metrics.compute()["force_correlation"] == pytest.approx(1.0)  # y = 2x across both
    assert metrics.compute()["force_ratio"] == pytest.approx(0.5)  # half the true force: under-predicted
    flipped = PressureMetrics()
    flipped.update(uv, uv, pred_force_n=np.array([2.0, 1.0, 0.0]), gt_force_n=np.array([0.0, 1.0, 2.0]))
    assert flipped.compute()["force_correlation"] == pytest.approx(-1.0)
    constant = PressureMetrics()
    constant.update(uv, uv, pred_force_n=np.ones(3), gt_force_n=np.array([0.0, 1.0, 2.0]))
    assert math.isnan(constant.compute()["force_correlation"])
    untouched = PressureMetrics()
    untouched.update(uv, uv, pred_force_n=np.ones(3), gt_force_n=np.zeros(3))
    assert math.isnan(untouched.compute()["force_ratio"])  # no true force: no ratio


def test_vertex_and_force_extras():
    gt_uv = np.zeros((2, 2, 2))
    metrics = PressureMetrics()
    metrics.update(
        gt_uv,
        gt_uv,
        pred_vertex_kpa=np.array([[2.0, 0.0], [0.0, 0.0]]),
        gt_vertex_kpa=np.array([[2.0, 2.0], [0.0, 0.0]]),
        pred_force_n=np.array([1.0, 0.0]),
        gt_force_n=np.array([3.0, 0.0]),
    )
    result = metrics.compute()
    assert result["vertex_contact_iou"] == pytest.approx(0.5)
    assert result["vertex_volumetric_iou"] == pytest.approx(0.5)
    assert result["vertex_mae_kpa"] == pytest.approx(0.5)
    assert result["force_mae_n"] == pytest.approx(1.0)
    # no contact anywhere in the UV maps: IoU undefined
    assert math.isnan(result["contact_iou"])


def test_bad_input_is_rejected_with_clear_errors():
    metrics = PressureMetrics()
    with pytest.raises(DataError, match="differ in shape"):
        metrics.update(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))
    with pytest.raises(DataError, match="NaN"):
        metrics.update(np.full((1, 2, 2), np.nan), np.zeros((1, 2, 2)))
    with pytest.raises(DataError, match=r"\(T, H, W\)"):
        metrics.update(np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(DataError, match="both"):
        metrics.update(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), pred_force_n=np.zeros(1))
    with pytest.raises(DataError, match="no frames"):
        PressureMetrics().compute()
    with pytest.raises(DataError, match="contact_threshold_kpa"):
        PressureMetrics(contact_threshold_kpa=-1.0)


def test_pressure_bins_follow_pressurevision():
    pressures = np.array([0.0, 0.49, 0.5, 0.99, 1.0, 3.9, 4.0, 63.9, 64.0, 500.0])
    classes = pressure_to_bins(pressures)
    assert classes.tolist() == [0, 0, 1, 1, 2, 3, 4, 7, 8, 8]
    assert bins_to_pressure(classes).tolist() == pytest.approx(
        [0, 0, 0.75, 0.75, 1.5, 3, 6, 48, 80, 80]
    )
