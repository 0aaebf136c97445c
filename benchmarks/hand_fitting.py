"""Hand-model fitting: time per frame and mesh accuracy.

    python benchmarks/hand_fitting.py --frames 24

Random plausible hands of the bundled model (test/support/synthetic_hands.py) are
posed in front of a 640 x 480 camera; their 21 joints, with Gaussian noise per axis, are the
observed keypoints. Printed, per configuration: fit time per frame, as wall time (mean and 90th
percentile) and as this process's CPU time (mean; the fit runs on one thread, so on a machine
busy with other work the CPU time is what the fit costs uncontended), one frame at a time as the
ROS node runs it unless noted; optimiser iterations; and the mean per-vertex error of the
fitted mesh (mean and 90th percentile over frames), mm.

Sections: noise levels (cold start, then the next frame warm-started from it after a small
motion); optimisers at equal accuracy targets; one batched fit; depth refinement on ray-cast
depth images.
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

from egopress_core.hand.hand_model import load_hand_model
from egopress_core.perception.estimators import keypoint_anchor_points
from egopress_core.perception.fitting import FitConfig, FitTargets, HandFitter
from egopress_core.perception.depth import hand_point_cloud

# The known-hand generator is test support, not part of the installed library: it lives in
# test/support, which pytest puts on sys.path for the tests and this script adds for itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "support"))
from synthetic_hands import pose_hands, render_rgbd, sample_hand_params  # noqa: E402

K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])
IMAGE_SIZE = (480, 640)


def vertex_error_mm(fitted: torch.Tensor, truth: np.ndarray) -> np.ndarray:
    return np.linalg.norm(fitted.detach().cpu().double().numpy() - truth, axis=-1).mean(-1) * 1000.0


def summary(name: str, times: list[float], cpu_times: list[float], iterations: list[int], errors: np.ndarray) -> None:
    errors = np.asarray(errors, dtype=np.float64).ravel()
    print(
        f"{name:<40s} {1000 * np.mean(times):8.1f} {1000 * np.percentile(times, 90):8.1f} {1000 * np.mean(cpu_times):8.1f}"
        f" {np.mean(iterations):6.1f} {errors.mean():8.2f} {np.percentile(errors, 90):8.2f}"
    )


def header(title: str) -> None:
    print(f"\n{title}")
    print(f"{'configuration':<40s} {'wall ms':>8s} {'p90 ms':>8s} {'cpu ms':>8s} {'iters':>6s} {'v2v mm':>8s} {'p90 mm':>8s}")


def fit_one_by_one(fitter: HandFitter, observed: np.ndarray, truth: np.ndarray, previous=None, **extra):
    times, cpu_times, iterations, errors, results = [], [], [], [], []
    for item in range(len(observed)):
        targets = FitTargets(points_3d=observed[item : item + 1], **{k: v[item : item + 1] for k, v in extra.items()})
        cpu_started = time.process_time()
        result = fitter.fit(targets, previous=None if previous is None else previous[item].params)
        cpu_times.append(time.process_time() - cpu_started)
        times.append(result.time_s)
        iterations.append(result.iterations)
        errors.append(vertex_error_mm(result.vertices, truth[item : item + 1])[0])
        results.append(result)
    return times, cpu_times, iterations, np.array(errors), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=24, help="hands per configuration")
    parser.add_argument("--side", choices=("right", "left"), default="right")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-mm", type=float, nargs="+", default=(0.0, 2.0, 4.0, 6.0))
    parser.add_argument("--skip-optimisers", action="store_true", help="skip the L-BFGS / Adam comparison (slow)")
    args = parser.parse_args()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (load average {load:.1f}), "
        f"torch {torch.__version__}, fits on {FitConfig().torch_threads} thread(s)"
    )
    hand = load_hand_model(args.side)
    frames = args.frames
    params = sample_hand_params(hand, frames, seed=args.seed)
    vertices, joints = pose_hands(hand, params)
    rng = np.random.default_rng(args.seed + 1)
    moved = dict(params)
    moved["transl"] = params["transl"] + rng.normal(0.0, 0.004, params["transl"].shape)
    moved["hand_pose"] = params["hand_pose"] + rng.normal(0.0, 0.03, params["hand_pose"].shape)
    next_vertices, next_joints = pose_hands(hand, moved)
    fitter = HandFitter(hand)
    fitter.fit(FitTargets(points_3d=joints[:1]))  # one-off start-up (torch loads its autodiff machinery)
    print(f"hand model {hand.name} ({hand.num_vertices} vertices), pose prior: {fitter.pose_prior_source}")

    header("Levenberg-Marquardt (default), 3D keypoints with Gaussian noise per axis")
    for noise_mm in args.noise_mm:
        noise = noise_mm / 1000.0
        observed = joints + rng.normal(0.0, noise, joints.shape)
        raw = np.linalg.norm(observed - joints, axis=-1).mean() * 1000
        cold = fit_one_by_one(fitter, observed, vertices)
        summary(f"noise {noise_mm:.0f} mm (keypoints off {raw:.1f} mm): cold", *cold[:4])
        observed_next = next_joints + rng.normal(0.0, noise, joints.shape)
        summary("  next frame, warm start", *fit_one_by_one(fitter, observed_next, next_vertices, previous=cold[4])[:4])
        summary("  next frame, cold", *fit_one_by_one(fitter, observed_next, next_vertices)[:4])

    observed = joints + rng.normal(0.0, 0.004, joints.shape)
    if not args.skip_optimisers:
        header("Optimisers, 4 mm noise, cold start")
        for name, config in (
            ("lm (10 + 15 iterations)", FitConfig()),
            ("lbfgs (10 + 15 iterations)", FitConfig(optimizer="lbfgs")),
            ("lbfgs (60 + 100 iterations)", FitConfig(optimizer="lbfgs", coarse_iterations=60, fine_iterations=100)),
            ("adam (100 + 150 iterations)", FitConfig(optimizer="adam", coarse_iterations=100, fine_iterations=150)),
        ):
            summary(name, *fit_one_by_one(HandFitter(hand, config), observed, vertices)[:4])

    header("Batched, 4 mm noise (time per hand of one batch)")
    started, cpu_started = time.perf_counter(), time.process_time()
    batched = fitter.fit(FitTargets(points_3d=observed))
    elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
    summary(f"batch of {frames}", [elapsed / frames], [cpu_elapsed / frames], [batched.iterations], vertex_error_mm(batched.vertices, vertices))

    header("Depth refinement, 5 mm keypoint noise, ray-cast depth")
    count = min(frames, 12)
    observed = joints[:count] + rng.normal(0.0, 0.005, joints[:count].shape)
    depths = [render_rgbd(vertices[item], hand.faces, K, IMAGE_SIZE)[1] for item in range(count)]
    clouds = np.empty(count, dtype=object)
    clouds[:] = [hand_point_cloud(depths[item], K, keypoint_anchor_points(observed[item])) for item in range(count)]
    maps = np.empty(count, dtype=object)
    maps[:] = depths
    intrinsics = np.repeat(K[None], count, axis=0)
    summary("keypoints only", *fit_one_by_one(fitter, observed, vertices[:count], intrinsics=intrinsics)[:4])
    refining = HandFitter(hand, FitConfig(depth_refinement=True))
    refining.fit(FitTargets(points_3d=observed[:1], intrinsics=intrinsics[:1], clouds=clouds[:1], depth_maps=maps[:1]))  # start-up
    results = fit_one_by_one(refining, observed, vertices[:count], intrinsics=intrinsics, clouds=clouds, depth_maps=maps)
    summary("keypoints + depth (one-sided chamfer)", *results[:4])


if __name__ == "__main__":
    main()
