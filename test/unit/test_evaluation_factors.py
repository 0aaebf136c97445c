"""Quality per factor (egopress_core/evaluation_factors.py) on hand-made sequences and scores."""

import numpy as np
import pytest

from egopress_core.data.records import FrameRecord
from egopress_core.evaluation_factors import FACTOR_BINS, factor_breakdown, sequence_factors


class OneFrame:
    meta = {"skin_rgb": [1.0, 1.0, 1.0]}

    def __init__(self, camera_from_world):
        self.record = FrameRecord(
            sequence="s", index=0, timestamp_s=0.0, rgb=np.zeros((48, 64, 3), np.uint8), depth_m=np.zeros((48, 64)),
            intrinsics=np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]), hand_side="right", has_annotation=True,
            mano=None, vertices=None, joints=None, uv_pressure_kpa=None, camera_from_world=camera_from_world)

    def frame(self, index):
        return self.record


def test_factors_of_a_sequence():
    joints = np.zeros((2, 21, 3))
    joints[:, :, 2] = 0.5  # every joint 0.5 m in front of the camera...
    joints[:, 9, 0] = 0.08  # ...the middle knuckle 8 cm from the wrist
    joints[:, 0, 0] = 0.0
    # A camera looking straight down the world z axis onto the pad.
    factors = sequence_factors(OneFrame(np.eye(4)), joints, 0)
    assert factors["hand_size_m"] == pytest.approx(0.08)
    assert factors["camera_distance_m"] == pytest.approx(np.hypot(0.5, 0.08 / 21))
    assert factors["hand_size_px"] == pytest.approx(0.08 / factors["camera_distance_m"] * 100.0)
    assert factors["image_width_px"] == 64 and factors["skin_luminance"] == pytest.approx(1.0)
    assert factors["view_pitch_deg"] == pytest.approx(90.0)
    # Tilted 30 degrees away from straight down: 60 degrees to the pad.
    angle = np.radians(30)
    tilted = np.eye(4)
    tilted[:3, :3] = [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    assert sequence_factors(OneFrame(tilted), joints, 0)["view_pitch_deg"] == pytest.approx(60.0)
    assert "view_pitch_deg" not in sequence_factors(OneFrame(None), joints, 0)


def test_breakdown_pools_each_third_of_the_sequences():
    rows = []
    for number in range(6):
        gt = np.zeros((4, 2, 2))
        gt[:, 0, 0] = 4.0
        # Quality falls with distance: far hands get half the pressure.
        pred = gt * (1.0 if number < 2 else 0.75 if number < 4 else 0.5)
        rows.append({"factors": {"camera_distance_m": 0.3 + 0.05 * number, "image_width_px": 640.0},
                     "pred": pred, "gt": gt, "pred_vertex": pred.reshape(4, -1), "gt_vertex": gt.reshape(4, -1),
                     "pred_force": pred.sum(axis=(1, 2)), "gt_force": gt.sum(axis=(1, 2))})
    breakdown = factor_breakdown(rows, contact_threshold_kpa=1.0)
    assert list(breakdown) == ["camera_distance_m"]  # one image width: nothing to compare
    groups = breakdown["camera_distance_m"]
    assert len(groups) == FACTOR_BINS and [g["sequences"] for g in groups] == [2, 2, 2]
    assert groups[0]["range"] == pytest.approx([0.3, 0.35]) and groups[2]["range"] == pytest.approx([0.5, 0.55])
    assert [g["volumetric_iou"] for g in groups] == pytest.approx([1.0, 0.75, 0.5])
    assert groups[2]["force_mae_n"] == pytest.approx(2.0)
    assert [g["force_ratio"] for g in groups] == pytest.approx([1.0, 0.75, 0.5])  # far hands under-predicted


class PressedPatch:
    """Frames of four pressed vertices 0.5 m in front of the camera; the depth image shows them
    (the first two frames) or an occluder 5 cm nearer over the last two vertices' pixels."""

    meta = {}

    def __init__(self):
        intrinsics = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
        vertices = np.array([[0.0, 0.0, 0.5], [0.05, 0.0, 0.5], [0.0, 0.05, 0.5], [0.05, 0.05, 0.5], [0.1, 0.1, 0.5]])
        pressure = np.array([1.0, 1.0, 2.0, 2.0, 0.0])  # the last vertex does not press
        self.records = []
        for index in range(4):
            depth = np.full((48, 64), 0.5)
            if index >= 2:
                depth[34, 42] = 0.45  # the occluder over vertex 3 (u 42, v 34)...
                depth[34, 32] = 0.45  # ...and over vertex 2
            self.records.append(FrameRecord(
                sequence="s", index=index, timestamp_s=index / 30, rgb=np.zeros((48, 64, 3), np.uint8), depth_m=depth,
                intrinsics=intrinsics, hand_side="right", has_annotation=True, mano=None, vertices=vertices, joints=None,
                uv_pressure_kpa=None, vertex_pressure_kpa=pressure))  # fmt: skip

    def frame(self, index):
        return self.records[index]


def test_contact_visible_share_weighs_what_the_depth_image_shows():
    joints = np.full((4, 21, 3), 0.5)
    sequence = PressedPatch()
    share = lambda frames: sequence_factors(sequence, joints, 0, frames)["contact_visible_share"]  # noqa: E731
    assert share([0, 1]) == pytest.approx(1.0)
    assert share([2, 3]) == pytest.approx(2.0 / 6.0)  # the hidden vertices carry 4 of the 6 kPa
    assert share([0, 1, 2, 3]) == pytest.approx(8.0 / 12.0)
    assert "contact_visible_share" not in sequence_factors(sequence, joints, 0)  # no contact frames given
    assert "contact_visible_share" not in sequence_factors(OneFrame(None), joints[:1], 0, [0])  # no ground truth
