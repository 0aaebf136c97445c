"""The camera-only hand stage: colour + aligned depth + intrinsics -> MANO-format hand mesh.

    python benchmarks/hand_stage.py [--frames 60] [--cpu 0] [--side right]

What the hand-mesh node and `egopress label-bag` run per frame with the default `mediapipe`
backend: MediaPipe's landmarks (tracked between frames, re-detected when lost), lifted to 3D with
the depth image, then the warm-started keypoint fit. The input is a stream of 640 x 480 RGB-D
frames ray-cast from the bundled hand (test/support/synthetic_hands.py: an open hand seen from
the back, as a head-mounted camera sees it, turning, tilting, sliding and flexing its fingers in
front of a wall 0.9 m away; test/support/camera_bags.py), so every frame has a ground-truth mesh.

Printed:

- per stage (detect = MediaPipe, lift = depth lifting, fit = hand-model fit and result), wall
  time p50 / p90 and the process's CPU time per frame, over the steady-tracking frames (the hand
  found in the previous frame too) and over all frames; the fit's iterations;
- detection rate, mean vertex error of the fitted mesh (mm, mean and p90), and the landmarks'
  mean distance to the projected joints (px; MediaPipe's joints sit where a human hand's are,
  1-2 cm off this model's at the MCPs, so this is not zero even for perfect landmarks);
- the same for other fit budgets, detection in every frame, and the fit to the model's joints
  instead of its measured landmarks (``--compare``; see
  :mod:`egopress_core.perception.landmark_offsets`);
- "Handedness": the label the model gives rendered right and left hands seen from the back
  (egocentric) and from the palm side, at several distances and rolls; the decision in
  ``egopress_core/assets/hand_landmarker/__init__.py`` rests on it.

The process is pinned to one CPU (``--cpu``, Linux), torch runs on one thread (the fit's default)
and MediaPipe runs its graph as it does in the node, on that CPU too. Pick an idle CPU for the
stage's own cost: other work sharing it raises wall and CPU time alike (on the 2-core development
machine 29 ms p50 on an idle CPU, 30-38 ms on a shared one; docs/design.md, "Hand detection").
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from egopress_core.hand.hand_model import load_hand_model
from egopress_core.perception import RGBDFrame, build_estimator

# The known-hand generators are test support, not part of the installed library.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "support"))
from camera_bags import FPS, IMAGE_SIZE, K, render_moving_hand  # noqa: E402
from synthetic_hands import open_hand_params, pose_hands, project, render_rgbd  # noqa: E402

WARM_UP_FRAMES = 3  # MediaPipe's and torch's first calls pay one-off costs


def run_stream(estimator, rendered) -> dict:
    """Runs the estimator over the stream; per-frame measurements."""
    records = []
    found_before = False
    for index, item in enumerate(rendered):
        vertices, joints = item["vertices"], item["joints"]
        frame = RGBDFrame(item["rgb"], item["depth"], item["intrinsics"], stamp=index / FPS)
        started, cpu_started = time.perf_counter(), time.process_time()
        estimate = estimator.estimate(frame)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        stages = dict(estimator.stage_times_s)
        record = {"wall": wall, "cpu": cpu, "found": estimate is not None, "steady": found_before and index >= WARM_UP_FRAMES, **stages}
        fit = estimator.last_fit
        if estimate is not None and fit is not None:
            # The fit stage split: the fitter's initialisation and optimisation, and the rest
            # (posing the full mesh, residuals, the estimate record).
            record["fit init"] = fit.stage_times_s.get("init", 0.0)
            record["fit optimise"] = sum(value for key, value in fit.stage_times_s.items() if key != "init")
            record["fit other"] = stages["fit"] - fit.time_s
        if estimate is not None:
            record["error_mm"] = float(np.linalg.norm(estimate.vertices - vertices, axis=1).mean() * 1000.0)
            record["iterations"] = estimate.iterations
            hands = estimator.last_landmarks
            if hands is not None:
                height, width = item["rgb"].shape[:2]
                record["landmark_px"] = float(np.linalg.norm(hands.pixels(width, height) - project(joints, item["intrinsics"]), axis=1).mean())
        found_before = estimate is not None
        records.append(record)
    return {"records": records}


def percentile(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def report(name: str, result: dict) -> None:
    records = result["records"][WARM_UP_FRAMES:]
    steady = [r for r in records if r["steady"] and r["found"]]
    found = [r for r in records if r["found"]]
    print(f"\n{name}: hand found in {len(found)} of {len(records)} frames; steady-tracking frames {len(steady)}")
    print(f"  {'stage':<12s} {'p50 ms':>8s} {'p90 ms':>8s}   (steady tracking; all frames p50 in brackets)")
    for stage in ("detect", "lift", "fit", "fit init", "fit optimise", "fit other", "wall"):
        values = [1000 * r[stage] for r in steady if stage in r]
        everything = [1000 * r[stage] for r in records if stage in r]
        print(f"  {stage if stage != 'wall' else 'total':<12s} {percentile(values, 50):8.1f} {percentile(values, 90):8.1f}   ({percentile(everything, 50):.1f})")
    print(f"  {'total cpu':<12s} {percentile([1000 * r['cpu'] for r in steady], 50):8.1f} {percentile([1000 * r['cpu'] for r in steady], 90):8.1f}   "
          f"(process CPU time, all threads)")  # fmt: skip
    if found:
        errors = [r["error_mm"] for r in found]
        print(f"  fit iterations (steady) {np.mean([r['iterations'] for r in steady]) if steady else float('nan'):.1f}; "
              f"mesh error {np.mean(errors):.1f} mm mean, {percentile(errors, 90):.1f} mm p90; "
              f"landmarks {np.mean([r.get('landmark_px', np.nan) for r in found]):.1f} px from the projected joints")  # fmt: skip


def handedness_table(side: str) -> dict[tuple[str, str], dict[str, int]]:
    """Label counts of the landmark model for one hand, seen from the back and from the palm."""
    hand = load_hand_model(side)
    estimator = build_estimator("mediapipe", hand_model=hand, landmarker={"running_mode": "image", "handedness": "ignore"})
    counts: dict[tuple[str, str], dict[str, int]] = {}
    try:
        for facing in ("back", "palm"):
            tally = {"Left": 0, "Right": 0, "none": 0}
            for distance in (0.35, 0.45, 0.6):
                for roll in (0, 30, -30, 90, 180):
                    vertices, _ = pose_hands(hand, open_hand_params(hand, distance_m=distance, facing=facing))
                    centre = np.array([0.0, 0.0, distance])
                    rotation = Rotation.from_rotvec([0.0, 0.0, np.radians(roll)]).as_matrix()
                    rgb, _ = render_rgbd((vertices[0] - centre) @ rotation.T + centre, hand.faces, K, IMAGE_SIZE)
                    hands = estimator.detect(rgb)
                    label = max(hands, key=lambda found: found.score).label if hands else "none"
                    tally[label] += 1
            counts[(side, facing)] = tally
    finally:
        estimator.close()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames of the stream (30 fps)")
    parser.add_argument("--side", choices=("right", "left"), default="right")
    parser.add_argument("--cpu", type=int, default=0, help="pin the process to this CPU (-1: do not pin)")
    parser.add_argument("--compare", action="store_true", help="also run other fit budgets and the per-frame detection")
    parser.add_argument("--skip-handedness", action="store_true")
    args = parser.parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "all"
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, running on CPU(s) {affinity} "
          f"(load average {load:.1f}), torch {torch.__version__}")  # fmt: skip

    hand = load_hand_model(args.side)
    started = time.perf_counter()
    rendered = render_moving_hand(hand, args.frames)
    print(f"rendered {len(rendered)} frames {IMAGE_SIZE[1]}x{IMAGE_SIZE[0]} in {time.perf_counter() - started:.1f} s")

    configurations = [("default (video tracking, warm-started fit)", {})]
    if args.compare:
        configurations += [
            ("fit warm budget 10 iterations", {"fit": {"warm_iterations": 10}}),
            ("fit warm budget 2 iterations", {"fit": {"warm_iterations": 2}}),
            ("detection in every frame (image mode)", {"landmarker": {"running_mode": "image"}}),
            ("fitting the joints (no landmark offsets)", {"landmarker": {"landmark_offsets": False}}),
        ]
    for name, options in configurations:
        estimator = build_estimator("mediapipe", hand_model=hand, **options)
        estimator.warm_up()
        try:
            report(name, run_stream(estimator, rendered))
        finally:
            estimator.close()

    if not args.skip_handedness:
        print("\nHandedness: the landmark model's label for rendered open hands (15 views each: distances 0.35, 0.45, "
              "0.6 m x rolls 0, +-30, 90, 180 deg)")  # fmt: skip
        for side in ("right", "left"):
            for (hand_side, facing), tally in handedness_table(side).items():
                print(f"  {hand_side:<5s} hand, {'back (egocentric)' if facing == 'back' else 'palm (from below)':<18s} "
                      f"labelled Left {tally['Left']:2d}, Right {tally['Right']:2d}, not found {tally['none']:2d}")


if __name__ == "__main__":
    main()
