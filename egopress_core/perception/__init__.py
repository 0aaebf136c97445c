"""Hand-mesh estimation from RGB-D frames (the first perception stage).

    from egopress_core.perception import RGBDFrame, HandKeypoints, build_estimator
    estimator = build_estimator("keypoints", side="right")
    estimate = estimator.estimate(RGBDFrame(rgb, depth_m, intrinsics, stamp, keypoints=keypoints))

Backends: ``"mediapipe"`` (the default: landmarks from the colour image, models built by
``make setup``), ``"keypoints"``, ``"ground_truth"``. The fitting core is :class:`HandFitter`.
"""

from egopress_core.perception.depth import (
    SOURCE_DEPTH,
    SOURCE_MISSING,
    SOURCE_RELATIVE,
    LiftedKeypoints,
    hand_point_cloud,
    joint_surface_offsets,
    lift_keypoints,
    sample_depth,
)
from egopress_core.perception.backends import ESTIMATOR_NAMES, build_estimator
from egopress_core.perception.estimators import (
    GroundTruthEstimator,
    HandMeshEstimator,
    KeypointFittingEstimator,
    KeypointsEstimator,
)
from egopress_core.perception.fitting import FitConfig, FitParams, FitResult, FitTargets, HandFitter, KeypointLayer
from egopress_core.perception.types import HandKeypoints, HandMeshEstimate, RGBDFrame, is_hand

__all__ = [
    "ESTIMATOR_NAMES",
    "FitConfig",
    "FitParams",
    "FitResult",
    "FitTargets",
    "GroundTruthEstimator",
    "HandFitter",
    "HandKeypoints",
    "HandMeshEstimate",
    "HandMeshEstimator",
    "KeypointFittingEstimator",
    "KeypointLayer",
    "KeypointsEstimator",
    "LiftedKeypoints",
    "RGBDFrame",
    "SOURCE_DEPTH",
    "SOURCE_MISSING",
    "SOURCE_RELATIVE",
    "build_estimator",
    "hand_point_cloud",
    "is_hand",
    "joint_surface_offsets",
    "lift_keypoints",
    "sample_depth",
]
