"""Where MediaPipe's hand landmarks sit on a hand model: offsets from its joints, measured.

MediaPipe's landmark model was trained on human hands annotated at the knuckles and fingertips
a person sees; a MANO-format model's joints are centres of rotation regressed from its mesh.
The two do not coincide. On renders of the bundled hand, MediaPipe's MCP landmarks sit about
1.5 cm nearer the wrist than the model's MCP joints. A fit that takes the landmarks for the
joints pulls the hand back and bends its fingers to reach them: 20 mm mean vertex error on the
sample bag's single presses, against 12 mm with the offsets (`benchmarks/render_detection.py`).

So the fitter is given, per landmark, a fixed offset from its joint, carried by the segment the
joint ends (:class:`~egopress_core.perception.fitting.KeypointLayer`), and fits the model's
*landmarks* to MediaPipe's. The offsets are measured once per hand model by
``scripts/calibrate_landmark_offsets.py``: it renders held-out synthetic sequences of every
gesture (seeds apart from those the benchmarks and tests use), runs MediaPipe as the backend
does (video mode), and solves, per landmark, the offset that best reprojects the ground-truth
hand's posed point onto MediaPipe's pixel, by robust (Huber) least squares
(:func:`solve_keypoint_offsets`). The result, with how it was made and the reprojection errors
before and after, is ``landmark_offsets.json`` beside the landmarker bundle (:data:`OFFSETS_PATH`).

The offsets belong to one hand model (its name and topology ids); another model (an official
MANO file) gets none, and is fitted to the joints as before. The left hand's are the right
hand's mirrored (the bundled left hand is the right one mirrored in x).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from egopress_core.errors import DataError
from egopress_core.files import write_text_atomic
from egopress_core.perception.types import NUM_KEYPOINTS

OFFSETS_PATH = Path(__file__).resolve().parents[1] / "assets" / "hand_landmarker" / "landmark_offsets.json"
FORMAT = "egopress.landmark_offsets/1"
# The robust kernel's width (pixels): MediaPipe's guess for a hidden fingertip can be 50 px off.
HUBER_PX = 8.0
# The offsets' prior: zero, with this standard deviation (metres) against 2D residuals of
# PRIOR_NOISE_PX; it only matters for directions the views leave unconstrained.
PRIOR_STD_M = 0.03
PRIOR_NOISE_PX = 5.0
_MIRROR = np.array([-1.0, 1.0, 1.0])


def reprojection_errors(offsets: np.ndarray, points_2d: np.ndarray, weights: np.ndarray, keypoints: np.ndarray,
                        rotations: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:  # fmt: skip
    """(N, 21) pixel distances of the offset keypoints' projections to ``points_2d`` (NaN where
    the weight is 0); arguments as :func:`solve_keypoint_offsets`."""
    points = keypoints + np.einsum("nkij,kj->nki", rotations, offsets)
    depth = np.clip(points[..., 2], 1e-3, None)
    pixels = np.stack([intrinsics[:, None, 0, 0] * points[..., 0] / depth + intrinsics[:, None, 0, 2],
                       intrinsics[:, None, 1, 1] * points[..., 1] / depth + intrinsics[:, None, 1, 2]], axis=-1)  # fmt: skip
    return np.where(weights > 0, np.linalg.norm(pixels - points_2d, axis=-1), np.nan)


def solve_keypoint_offsets(
    points_2d: np.ndarray,
    weights: np.ndarray,
    keypoints: np.ndarray,
    rotations: np.ndarray,
    intrinsics: np.ndarray,
    huber_px: float = HUBER_PX,
    iterations: int = 10,
) -> np.ndarray:
    """The (21, 3) offsets (template frame, metres) that best move ground-truth keypoints onto
    a detector's 2D landmarks.

    Each landmark ``k`` of frame ``n`` is modelled as ``keypoints[n, k] + rotations[n, k] @
    offset[k]``, projected with ``intrinsics[n]``. The projection equations are linear in the
    offset once multiplied by the depth; they are scaled back to pixels by the keypoint's depth
    and solved by iteratively reweighted least squares under a Huber kernel, with a weak zero
    prior (:data:`PRIOR_STD_M`).

    Args:
        points_2d: (N, 21, 2) detected pixels.
        weights: (N, 21) >= 0, 0 where a landmark is missing.
        keypoints: (N, 21, 3) the ground-truth hand's keypoints without offsets, camera frame.
        rotations: (N, 21, 3, 3) world rotation of each keypoint's segment
            (:meth:`~egopress_core.perception.fitting.KeypointLayer.posed`).
        intrinsics: (N, 3, 3).
    """
    points_2d, weights, keypoints, rotations, intrinsics = (
        np.asarray(value, dtype=np.float64) for value in (points_2d, weights, keypoints, rotations, intrinsics))  # fmt: skip
    count = len(points_2d)
    expected = {"points_2d": (count, NUM_KEYPOINTS, 2), "weights": (count, NUM_KEYPOINTS), "keypoints": (count, NUM_KEYPOINTS, 3),
                "rotations": (count, NUM_KEYPOINTS, 3, 3), "intrinsics": (count, 3, 3)}  # fmt: skip
    for name, value in zip(expected, (points_2d, weights, keypoints, rotations, intrinsics)):
        if value.shape != expected[name]:
            raise DataError(f"{name} must have shape {expected[name]}. Got {value.shape}")
    if count == 0:
        raise DataError("no frames to solve the keypoint offsets from")
    prior = PRIOR_NOISE_PX / PRIOR_STD_M
    offsets = np.zeros((NUM_KEYPOINTS, 3))
    for k in range(NUM_KEYPOINTS):
        use = (weights[:, k] > 0) & np.all(np.isfinite(points_2d[:, k]), axis=-1)
        if not use.any():
            continue
        c, r, u, K = keypoints[use, k], rotations[use, k], points_2d[use, k], intrinsics[use]
        depth = np.clip(c[:, 2], 1e-3, None)
        rows, rhs = [], []
        for axis in (0, 1):
            focal, centre = K[:, axis, axis], K[:, axis, 2]
            shifted = u[:, axis] - centre
            # focal * (c + R x)_axis - shifted * (c + R x)_z = 0, in pixels after / depth.
            rows.append((focal[:, None] * r[:, axis] - shifted[:, None] * r[:, 2]) / depth[:, None])
            rhs.append((shifted * c[:, 2] - focal * c[:, axis]) / depth)
        design = np.stack(rows, axis=1)  # (M, 2, 3)
        target = np.stack(rhs, axis=1)  # (M, 2)
        base = weights[use, k]
        x = np.zeros(3)
        for _ in range(iterations):
            residual = np.linalg.norm(design @ x - target, axis=1)
            robust = base * np.where(residual <= huber_px, 1.0, huber_px / np.maximum(residual, 1e-12))
            a = np.einsum("m,mij,mik->jk", robust, design, design) + prior**2 * np.eye(3)
            b = np.einsum("m,mij,mi->j", robust, design, target)
            x = np.linalg.solve(a, b)
        offsets[k] = x
    return offsets


def write_keypoint_offsets(path: str | os.PathLike, hand, offsets: np.ndarray, provenance: dict) -> Path:
    """Writes ``hand``'s (21, 3) offsets atomically, as the right hand's, with ``provenance``
    (how they were measured). ``hand`` must be a bundled hand (either side): the file names both
    sides' topologies, and only the bundled hands are each other's mirror images."""
    from egopress_core.hand.hand_model import load_hand_model

    topology_ids = {side: load_hand_model(side).topology_id for side in ("right", "left")}
    if topology_ids[hand.side] != hand.topology_id:
        raise DataError(f"landmark offsets are measured on the bundled hands; {hand.topology_id} is not one")
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.shape != (NUM_KEYPOINTS, 3) or not np.all(np.isfinite(offsets)):
        raise DataError(f"offsets must be ({NUM_KEYPOINTS}, 3) finite metres. Got shape {offsets.shape}")
    right = offsets if hand.side == "right" else offsets * _MIRROR
    document = {"format": FORMAT, "hand_model": hand.name, "topology_ids": topology_ids,
                "frame": "the flat template's axes (right hand), metres, OpenPose order; carried by the segment each keypoint ends",
                "offsets_m": np.round(right, 6).tolist(), "provenance": provenance}  # fmt: skip
    return write_text_atomic(Path(path), json.dumps(document, indent=1) + "\n")


def load_keypoint_offsets(hand, path: str | os.PathLike | None = None) -> tuple[np.ndarray | None, str]:
    """``hand``'s measured MediaPipe landmark offsets (21, 3) for its side, or None where none
    were measured for its model; and a one-line account of which."""
    path = OFFSETS_PATH if path is None else Path(path)
    if not path.is_file():
        return None, f"no landmark offsets at {path}: fitting the joints to MediaPipe's landmarks"
    try:
        document = json.loads(path.read_text())
        offsets = np.asarray(document["offsets_m"], dtype=np.float64)
        topology_ids = dict(document["topology_ids"])
        model = document["hand_model"]
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path} is not a landmark-offsets file ({error}); restore it from git or re-run "
                        "scripts/calibrate_landmark_offsets.py") from None  # fmt: skip
    if document.get("format") != FORMAT or offsets.shape != (NUM_KEYPOINTS, 3) or not np.all(np.isfinite(offsets)):
        raise DataError(f"{path} is not a {FORMAT} file with 21 finite offsets; restore it from git or re-run "
                        "scripts/calibrate_landmark_offsets.py")  # fmt: skip
    if hand.name != model or topology_ids.get(hand.side) != hand.topology_id:
        return None, f"landmark offsets were measured for {model}, not {hand.name} ({hand.topology_id}): fitting its joints"
    return (offsets if hand.side == "right" else offsets * _MIRROR), f"landmark offsets of {model} from {path.name}"
