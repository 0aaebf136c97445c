"""Keypoint offsets: a detector's landmarks as points carried by the hand model's segments, the
solver that measures them, the shipped measurement and its use by the mediapipe backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from egopress_core.errors import ConfigError, DataError
from egopress_core.hand.hand_model import load_hand_model
from egopress_core.hand.skeleton import MANO_FINGER_JOINTS, OPENPOSE_FINGER_JOINTS, OPENPOSE_PARENTS
from egopress_core.perception import FitTargets, HandFitter
from egopress_core.perception.fitting import KeypointLayer
from egopress_core.perception.landmark_offsets import (
    OFFSETS_PATH,
    load_keypoint_offsets,
    reprojection_errors,
    solve_keypoint_offsets,
    write_keypoint_offsets,
)

from synthetic_hands import pose_hands, sample_hand_params

K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])
NAMES = ("global_orient", "hand_pose", "betas", "transl")


@pytest.fixture(scope="module")
def right_hand():
    return load_hand_model("right")


def _tensors(params, dtype=torch.float64):
    return [torch.as_tensor(np.asarray(params[name]), dtype=dtype) for name in NAMES]


def _offsets(seed=0, scale=0.015):
    return np.random.default_rng(seed).normal(0.0, scale, (21, 3))


def test_parents_follow_the_finger_chains():
    assert OPENPOSE_PARENTS[0] == 0
    for chain in OPENPOSE_FINGER_JOINTS.values():
        assert [OPENPOSE_PARENTS[joint] for joint in chain] == [0, *chain[:-1]]


def test_offsets_are_carried_by_the_segment_each_keypoint_ends(right_hand):
    offsets = _offsets()
    plain = KeypointLayer(right_hand, dtype=torch.float64)
    moved = KeypointLayer(right_hand, dtype=torch.float64, keypoint_offsets=offsets)
    zero = [torch.zeros(1, 3), torch.zeros(1, 45), torch.zeros(1, 10), torch.zeros(1, 3)]
    zero = [value.double() for value in zero]
    # At the flat template the offsets are added as they are.
    np.testing.assert_allclose((moved(*zero) - plain(*zero))[0].numpy(), offsets, atol=1e-12)

    # Bending the index finger's middle joint (PIP) turns the segments after it, so the DIP and
    # the tip keypoints' offsets turn with it; the MCP's and the PIP's (carried by the palm and
    # the proximal phalanx) do not.
    pose = torch.zeros(1, 45, dtype=torch.float64)
    pip = MANO_FINGER_JOINTS["index"][1]
    pose[0, 3 * (pip - 1) : 3 * pip] = torch.tensor([0.0, 0.0, 1.2])
    bent = [zero[0], pose, zero[2], zero[3]]
    shift = (moved(*bent) - plain(*bent))[0].numpy()
    mcp, pip_k, dip, tip = OPENPOSE_FINGER_JOINTS["index"]
    np.testing.assert_allclose(shift[[mcp, pip_k]], offsets[[mcp, pip_k]], atol=1e-12)
    for keypoint in (dip, tip):
        assert np.linalg.norm(shift[keypoint] - offsets[keypoint]) > 0.1 * np.linalg.norm(offsets[keypoint])
        assert np.isclose(np.linalg.norm(shift[keypoint]), np.linalg.norm(offsets[keypoint]))  # turned, not stretched

    # A global rotation turns every offset by it, and posed() names the rotations used.
    params = sample_hand_params(right_hand, 3, seed=5)
    points, rotations = moved.posed(*_tensors(params))
    base = plain(*_tensors(params))
    np.testing.assert_allclose((points - base).numpy(), np.einsum("nkij,kj->nki", rotations.numpy(), offsets), atol=1e-10)
    with pytest.raises(ConfigError, match=r"keypoint_offsets must be \(21, 3\)"):
        KeypointLayer(right_hand, keypoint_offsets=np.zeros((20, 3)))


def _detections(right_hand, offsets, frames=60, noise_px=1.0, outliers=0.1, seed=1):
    """Ground-truth keypoints of random hands, and a 'detector' that sees each landmark where
    the offset puts it, with pixel noise and a share of wild guesses."""
    rng = np.random.default_rng(seed)
    params = sample_hand_params(right_hand, frames, seed=seed)
    layer = KeypointLayer(right_hand, dtype=torch.float64)
    with torch.no_grad():
        keypoints, rotations = (value.numpy() for value in layer.posed(*_tensors(params)))
    intrinsics = np.repeat(K[None], frames, 0)
    truth = keypoints + np.einsum("nkij,kj->nki", rotations, offsets)
    pixels = (truth[..., :2] / truth[..., 2:3]) * 600.0 + np.array([320.0, 240.0])
    pixels = pixels + rng.normal(0.0, noise_px, pixels.shape)
    wild = rng.random(pixels.shape[:2]) < outliers
    pixels[wild] += rng.normal(0.0, 60.0, (int(wild.sum()), 2))
    return pixels, np.ones(pixels.shape[:2]), keypoints, rotations, intrinsics


def test_the_solver_recovers_offsets_despite_noise_and_wild_guesses(right_hand):
    offsets = _offsets(seed=2)
    problem = _detections(right_hand, offsets)
    solved = solve_keypoint_offsets(*problem)
    error_mm = np.linalg.norm(solved - offsets, axis=1) * 1000.0
    assert error_mm.mean() < 1.5 and error_mm.max() < 4.0, error_mm
    before = np.nanmedian(reprojection_errors(np.zeros_like(offsets), *problem))
    after = np.nanmedian(reprojection_errors(solved, *problem))
    assert after < 2.0 < before
    # A landmark never seen keeps no offset; shapes are checked.
    problem[1][:, 7] = 0.0
    assert np.all(solve_keypoint_offsets(*problem)[7] == 0.0)
    with pytest.raises(DataError, match="weights must have shape"):
        solve_keypoint_offsets(problem[0], problem[1][:, :20], *problem[2:])


def test_fitting_the_landmarks_recovers_the_hand_that_fitting_the_joints_misses(right_hand):
    """Landmarks 1.5 cm from the joints (as MediaPipe's knuckles are): a fitter told the
    offsets recovers the mesh, one fitting the joints to them does not."""
    offsets = np.zeros((21, 3))
    offsets[1:] = [0.015, 0.005, 0.0]
    params = sample_hand_params(right_hand, 4, seed=8)
    vertices, _ = pose_hands(right_hand, params)
    with torch.no_grad():
        landmarks = KeypointLayer(right_hand, keypoint_offsets=offsets)(*_tensors(params, torch.float32)).numpy()
    errors = {}
    for name, fitter in (("landmarks", HandFitter(right_hand, keypoint_offsets=offsets)), ("joints", HandFitter(right_hand))):
        result = fitter.fit(FitTargets(points_3d=landmarks.astype(np.float64)))
        errors[name] = np.linalg.norm(result.vertices.numpy() - vertices, axis=-1).mean() * 1000.0
        if name == "landmarks":
            # The residuals are the landmarks' (the joints themselves stay ~1.5 cm away), while
            # the result's joints are the model's.
            assert np.nanmean(result.residual_3d_m) < 0.003
            assert np.linalg.norm(result.joints.numpy()[:, 1:] - landmarks[:, 1:], axis=-1).mean() > 0.01
    assert errors["landmarks"] < 4.0 and 3.0 * errors["landmarks"] < errors["joints"], errors


def test_the_shipped_offsets_belong_to_the_bundled_hands(tmp_path, right_hand):
    document = json.loads(OFFSETS_PATH.read_text())
    right, _ = load_keypoint_offsets(right_hand)
    left, source = load_keypoint_offsets(load_hand_model("left"))
    assert right.shape == (21, 3) and "egopress_hand_v1" in source
    np.testing.assert_allclose(left, right * [-1.0, 1.0, 1.0])
    provenance = document["provenance"]
    assert provenance["frames_used"] > 100
    # The measurement made MediaPipe's landmarks and the model's agree better, landmark by landmark.
    before, after = np.array(provenance["reprojection_px_median_before"]), np.array(provenance["reprojection_px_median_after"])
    assert np.median(after) < 0.6 * np.median(before) and np.all(after <= before + 0.5)

    # Another model gets none; a broken file names the fix; writing is atomic and round-trips.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**document, "hand_model": "mano_v1_2"}))
    offsets, source = load_keypoint_offsets(right_hand, other)
    assert offsets is None and "measured for mano_v1_2" in source
    other.write_text("{")
    with pytest.raises(DataError, match="calibrate_landmark_offsets.py"):
        load_keypoint_offsets(right_hand, other)
    assert load_keypoint_offsets(right_hand, tmp_path / "missing.json")[0] is None
    written = write_keypoint_offsets(tmp_path / "again.json", load_hand_model("left"), left, {"note": "test"})
    np.testing.assert_allclose(load_keypoint_offsets(right_hand, written)[0], right, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
