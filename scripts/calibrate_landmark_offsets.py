"""Measures where MediaPipe's hand landmarks sit on the bundled hand, and writes
``egopress_core/assets/hand_landmarker/landmark_offsets.json`` (see
:mod:`egopress_core.perception.landmark_offsets`).

    python scripts/calibrate_landmark_offsets.py [--sequences 14] [--frames 32] [--seed 1000] [--out PATH]

Renders ``--sequences`` synthetic sequences (every gesture in turn, 640 x 480, seed ``--seed``:
apart from the seeds benchmarks and tests use), runs MediaPipe on each as the backend does
(video mode, tracking from the first frame), and solves each landmark's offset from the
ground-truth hand's joint that best reprojects onto MediaPipe's pixel. Prints the per-landmark
reprojection error (pixels, median over frames) with and without the offsets, and the offsets.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from egopress_core.data.synthetic.generator import FPS, GESTURES, SynthConfig, generate_sequence
from egopress_core.hand.hand_model import load_hand_model
from egopress_core.perception.fitting import KeypointLayer
from egopress_core.perception.landmark_offsets import OFFSETS_PATH, reprojection_errors, solve_keypoint_offsets, write_keypoint_offsets
from egopress_core.perception.mediapipe_backend import MediaPipeEstimator

NAMES = "wrist T1 T2 T3 T4 I1 I2 I3 I4 M1 M2 M3 M4 R1 R2 R3 R4 L1 L2 L3 L4".split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=2 * len(GESTURES))
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=OFFSETS_PATH)
    args = parser.parse_args()

    hand = load_hand_model("right")
    layer = KeypointLayer(hand, dtype=torch.float64)
    estimator = MediaPipeEstimator(hand_model=hand, landmarker={"landmark_offsets": False})
    config = SynthConfig(sequences=args.sequences, frames=args.frames, seed=args.seed, image_sizes=((480, 640),), uv_resolution=32)
    pixels, keypoints, rotations, intrinsics = [], [], [], []
    seen = 0
    try:
        for index in tqdm(range(args.sequences), desc="sequences", unit="seq"):
            arrays, _ = generate_sequence(config, index)
            frames = len(arrays["rgb"])
            seen += frames
            params = [torch.as_tensor(np.asarray(arrays[name]), dtype=torch.float64) for name in ("global_orient", "hand_pose", "betas", "transl")]
            if params[2].ndim == 1:
                params[2] = params[2].expand(frames, -1)
            with torch.no_grad():
                truth, segments = layer.posed(*params)
            estimator.reset()
            for t in range(frames):
                found = [h for h in estimator.detect(np.ascontiguousarray(arrays["rgb"][t]), t / FPS) if h.side == estimator.hand_side]
                if not found:
                    continue
                best = max(found, key=lambda h: h.score)
                height, width = arrays["rgb"].shape[1:3]
                pixels.append(best.pixels(width, height))
                keypoints.append(truth[t].numpy())
                rotations.append(segments[t].numpy())
                intrinsics.append(np.asarray(arrays["intrinsics"], dtype=np.float64))
    finally:
        estimator.close()
    if not pixels:
        sys.exit("MediaPipe found the right hand in none of the frames: nothing to measure")
    pixels, keypoints, rotations, intrinsics = map(np.stack, (pixels, keypoints, rotations, intrinsics))
    weights = np.ones(pixels.shape[:2])
    offsets = solve_keypoint_offsets(pixels, weights, keypoints, rotations, intrinsics)
    before = np.nanmedian(reprojection_errors(np.zeros_like(offsets), pixels, weights, keypoints, rotations, intrinsics), axis=0)
    after = np.nanmedian(reprojection_errors(offsets, pixels, weights, keypoints, rotations, intrinsics), axis=0)
    print(f"MediaPipe found the right hand in {len(pixels)} of {seen} frames")
    print(f"{'landmark':>8s} {'px before':>9s} {'px after':>8s}   offset (mm, template axes)")
    for name, b, a, o in zip(NAMES, before, after, offsets):
        print(f"{name:>8s} {b:9.1f} {a:8.1f}   {o[0] * 1000:6.1f} {o[1] * 1000:6.1f} {o[2] * 1000:6.1f}")
    print(f"{'median':>8s} {np.median(before):9.1f} {np.median(after):8.1f}")
    provenance = {
        "command": "python scripts/calibrate_landmark_offsets.py " + shlex.join(sys.argv[1:]),
        "data": f"egopress synth, seed {args.seed}, {args.sequences} sequences x {args.frames} frames, 640x480, gestures {list(GESTURES)}",
        "landmarker": "MediaPipe Tasks HandLandmarker, video mode, the bundle of egopress_core/assets/hand_landmarker",
        "frames_used": int(len(pixels)),
        "frames_seen": int(seen),
        "reprojection_px_median_before": np.round(before, 2).tolist(),
        "reprojection_px_median_after": np.round(after, 2).tolist(),
    }
    print(f"wrote {write_keypoint_offsets(args.out, hand, offsets, provenance)}")


if __name__ == "__main__":
    main()
