"""The hand meshes an evaluation gives the model (egopress_core/data/hands.py)."""

import numpy as np
import pytest

from egopress_core.data.hands import HAND_SOURCES, HandPerturbation, HandsReplaced, estimated_hands, perturbed_hands, with_hands
from egopress_core.data.records import FrameRecord
from egopress_core.errors import ConfigError, DataError


class Sequence:
    """A few frames of a hand-made sequence; frame 2 has no annotation."""

    name, fps, hand_model, uv_layout = "seq_test", 30.0, "egopress_hand", "layout"

    def __init__(self, frames: int = 6) -> None:
        rng = np.random.default_rng(1)
        self.records = []
        for index in range(frames):
            joints = (rng.normal(0, 0.03, (21, 3)) + [0, 0, 0.4]).astype(np.float32)
            vertices = (rng.normal(0, 0.04, (50, 3)) + [0, 0, 0.4]).astype(np.float32)
            annotated = index != 2
            self.records.append(FrameRecord(
                sequence=self.name, index=index, timestamp_s=index / 30, rgb=np.zeros((8, 8, 3), np.uint8),
                depth_m=np.zeros((8, 8), np.float32), intrinsics=np.eye(3), hand_side="right",
                has_annotation=annotated, mano=None, vertices=vertices if annotated else None,
                joints=joints if annotated else None, uv_pressure_kpa=np.full((4, 4), index, np.float32)))

    def __len__(self):
        return len(self.records)

    def frame(self, index):
        return self.records[index]

    def __iter__(self):
        return iter(self.records)


def test_the_perturbation_drifts_smoothly_with_its_stated_size():
    perturbation = HandPerturbation(translation_mm=3.0, rotation_deg=2.0, correlation_frames=10.0)
    translations, rotations = perturbation.displacements("seq", 20000)
    assert translations.std(axis=0) * 1000 == pytest.approx([3.0] * 3, rel=0.1)
    assert np.degrees(rotations.std(axis=0)) == pytest.approx([2.0] * 3, rel=0.1)
    lag_one = np.corrcoef(translations[1:, 0], translations[:-1, 0])[0, 1]
    assert lag_one == pytest.approx(np.exp(-1 / 10), abs=0.02)  # smooth in time, not frame-to-frame noise
    again, _ = perturbation.displacements("seq", 20000)
    other, _ = HandPerturbation(seed=1).displacements("seq", 20000)
    np.testing.assert_array_equal(again, translations)
    assert not np.allclose(other, translations)


def test_perturbed_hands_move_rigidly_and_keep_everything_else():
    sequence = Sequence()
    perturbed = perturbed_hands(sequence)
    assert len(perturbed) == len(sequence) and perturbed.frames_with_hand == 5
    for index in (0, 1, 3):
        original, moved = sequence.frame(index), perturbed.frame(index)
        assert not np.allclose(moved.vertices, original.vertices)
        # Rigid: distances within the hand (vertices to joints) are kept to float precision.
        before = np.linalg.norm(original.vertices[:, None] - original.joints[None], axis=-1)
        after = np.linalg.norm(moved.vertices[:, None] - moved.joints[None], axis=-1)
        np.testing.assert_allclose(after, before, atol=2e-6)
        np.testing.assert_array_equal(moved.uv_pressure_kpa, original.uv_pressure_kpa)
        assert moved.mano is None  # the parameters described the annotation's mesh
    shift = np.linalg.norm(perturbed.frame(0).joints[0] - sequence.frame(0).joints[0]) * 1000
    assert 0.1 < shift < 20  # millimetres, not centimetres
    assert not perturbed.frame(2).has_annotation and perturbed.frame(2).vertices is None


def test_estimated_hands_run_the_detector_in_order_and_keep_its_misses(monkeypatch):
    import egopress_core.perception as perception

    seen, closed = [], []

    class Estimate:
        has_hand = True

        def __init__(self, stamp):
            self.vertices = np.full((50, 3), stamp, np.float32)
            self.joints = np.full((21, 3), stamp, np.float32)

    class Detector:
        def estimate(self, frame):
            seen.append(frame.stamp)
            return None if len(seen) % 2 == 0 else Estimate(frame.stamp)

        def close(self):
            closed.append(True)

    monkeypatch.setattr(perception, "build_estimator", lambda name, side: Detector())
    sequence = Sequence()
    estimated = estimated_hands(sequence)
    assert seen == [index / 30 for index in range(len(sequence))] and closed == [True]
    assert estimated.frames_with_hand == 3
    assert estimated.annotation_flags().tolist() == [True, False, False, False, True, False]
    assert estimated.frame(0).has_annotation and estimated.frame(0).vertices[0, 0] == 0.0
    assert not estimated.frame(1).has_annotation and estimated.frame(1).vertices is None
    # Frame 2 gets the detector's mesh but stays unannotated: there is no ground truth to score.
    assert estimated.frame(2).vertices[0, 0] == pytest.approx(2 / 30) and not estimated.frame(2).has_annotation


def test_a_sequence_where_no_hand_was_found_still_makes_windows():
    # The camera-only path can miss the hand in every frame of a sequence: its windows stack, with
    # no frame scored, instead of refusing the sequence (which stopped `egopress eval` midway).
    from egopress_core.data.windows import ClipWindowDataset, WindowConfig

    sequence = Sequence(frames=8)
    none_found = HandsReplaced(sequence, [None] * 8, [record.has_annotation for record in sequence], "estimated")
    assert none_found.frames_with_hand == 0 and none_found.num_vertices == 50
    window = ClipWindowDataset([none_found], WindowConfig(window=4, stride=4, image_size=(8, 8), uv_size=(4, 4), skip_invalid=False))[0]
    assert window["vertices"].shape == (4, 50, 3) and not window["valid"].any()


def test_hand_sources_and_bad_values():
    sequence = Sequence()
    assert with_hands(sequence, "annotated") is sequence
    assert HAND_SOURCES == ("annotated", "estimated", "perturbed")
    with pytest.raises(ConfigError, match=r"hands must be one of \['annotated', 'estimated', 'perturbed'\]"):
        with_hands(sequence, "fitted")
    with pytest.raises(ConfigError, match="HandPerturbation.translation_mm"):
        HandPerturbation(translation_mm=-1)
    with pytest.raises(DataError, match="2 hand meshes and 2 annotation flags for the 6 frames"):
        HandsReplaced(sequence, [None, None], [True, True], "estimated")
