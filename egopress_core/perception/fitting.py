"""Fitting a MANO-format hand model to 21 keypoints (3D and/or 2D) and, optionally, a depth cloud.

The fit is a maximum a posteriori estimate of (global orientation, 45 pose, 10 shape,
translation) per hand. Every term is a (robust) sum of squared residual blocks:

- keypoints: distances of the model's 21 joints to the observed 3D keypoints in units of the
  keypoint noise ``keypoint_noise_m``, weighted by each keypoint's confidence, under a robust
  kernel (Geman-McClure by default) so that one wrong keypoint cannot drag the hand; optionally
  reprojection errors (pixels) against 2D keypoints. Robust kernels are non-convex, so the kernel
  is annealed (graduated non-convexity): a wide first stage pulls the fingers in from the mean
  pose, the final kernel then ignores outliers.
- pose prior: a Gaussian around ``hands_mean`` in the model's pose PCA space
  (``hands_components``) with per-component standard deviations from the model's sidecar
  (``hands_pca_std``), the config, or an isotropic fallback. The pose is optimised in whitened
  coordinates ``z`` (``pose = hands_mean + (z * std) @ hands_components``), where the prior is
  ``|z|^2 / 2``.
- joint limits: a quadratic penalty on flexion / abduction / twist of each finger joint outside
  anatomical ranges, the angles taken about per-joint axes derived from the model's rest joints
  (:func:`egopress_core.hand.poses.joint_axes`).
- shape prior: ``|betas|^2 / 2`` (betas are in standard deviations).
- temporal: given the previous frame's fit, the optimisation starts there (warm start; for the
  rigid part a fresh palm alignment is also tried and the better one kept) and Gaussian terms
  tie pose, shape, rotation and translation to it, their widths growing with the time gap.
- depth (optional, :attr:`FitConfig.depth_refinement`): a last stage adds the robust one-sided
  chamfer distance from the model's camera-facing, unoccluded vertices to a point cloud
  back-projected from the depth image around the hand.

Optimisers: Levenberg-Marquardt (default) solves the normal equations of the iteratively
reweighted residuals per batch item, with Jacobians by forward differences in float64, all
parameters' steps evaluated as one batch (see :meth:`HandFitter._linearise`); it converges in
~3-10 iterations where the first-order optimisers need 100+ (``benchmarks/hand_fitting.py``
compares them). L-BFGS and Adam (``torch.optim``) minimise the same objective.

Initialisation: global orientation and translation come from a weighted rigid (Kabsch)
alignment of the palm keypoints (wrist and the four long-finger MCPs, which do not move with
the fingers) to the model's palm; with fewer than three palm keypoints, all observed keypoints
are aligned to the mean pose. 2D-only keypoints are first placed at the depth where the model's
palm has its observed size in pixels.

The optimisation runs in float64 and poses only what its residuals need (:class:`KeypointLayer`:
the 16 joints, the five fingertip vertices and, in the depth stage, a sample of visible
vertices, exactly as :meth:`HandModel.forward` poses them); the full mesh is posed for the
visibility test and for the result.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from egopress_core.errors import ConfigError, DataError
from egopress_core.hand.hand_model import HandModel, read_sidecar
from egopress_core.hand.mano_io import NUM_BETAS
from egopress_core.options import from_mapping
from egopress_core.hand.poses import (
    FINGER_ABDUCTION_RANGE,
    FINGER_FLEXION_RANGE,
    THUMB_ABDUCTION_RANGE,
    THUMB_FLEXION_RANGE,
    joint_axes,
)
from egopress_core.hand.skeleton import MANO_FINGER_JOINTS, OPENPOSE_PARENTS
from egopress_core.perception.types import NUM_KEYPOINTS, PALM_KEYPOINTS

ROBUST_LOSSES = ("geman_mcclure", "huber", "l2")
OPTIMIZERS = ("lm", "lbfgs", "adam")
# OpenPose rows of the 16 MANO joints (wrist; index, middle, little, ring, thumb chains).
MANO_JOINTS_IN_OPENPOSE = (0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3)
# Translation is optimised in centimetres so that its steps are commensurate with radians.
TRANSLATION_UNIT_M = 0.01
# Isotropic pose-PCA standard deviation (radians per component) for models whose sidecar gives
# none (official MANO): wide enough for everyday poses, narrow enough to hold a finger without
# keypoints near the mean.
FALLBACK_POSE_PCA_STD = 0.35
# The frame interval the temporal widths refer to (30 fps).
NOMINAL_FRAME_INTERVAL_S = 1.0 / 30.0
# Softness of the joint-limit penalty: an angle this far outside its range costs as much as a
# one-sigma pose-prior deviation.
LIMIT_SOFTNESS_RAD = 0.05
# Levenberg-Marquardt: initial damping (relative to the Gauss-Newton diagonal), the damping past
# which an item counts as stuck, and the step retries per iteration.
_LM_INITIAL_DAMPING = 1e-3
_LM_MAX_DAMPING = 1e8
_LM_RETRIES = 5
# Forward-difference step of the Jacobian, in the parameters' units (whitened pose, betas,
# radians, centimetres: all of order one).
_JACOBIAN_STEP = 1e-7


@dataclass(frozen=True)
class FitConfig:
    """Weights, noise levels and iteration budgets of the fit.

    Attributes:
        optimizer: "lm" (Levenberg-Marquardt), "lbfgs" (strong-Wolfe line search) or "adam".
        coarse_iterations: iterations of the wide-kernel stage (cold start only).
        fine_iterations: iterations of the final-kernel stage (cold start).
        warm_iterations: iterations of the single stage run from a warm start (steady tracking).
            3 come within 0.2 mm of the mesh error of 10 (which stop after ~5) on the stream of
            ``benchmarks/hand_stage.py``, in 60% of the time; each costs ~4 ms here.
        depth_iterations: iterations of the depth-refinement stage.
        tolerance: an item stops when an iteration lowers its cost by less than this fraction
            (LM); the absolute loss / step change tolerance of L-BFGS.
        adam_lr: Adam step size (whitened pose units, radians, centimetres).
        robust_loss: "geman_mcclure", "huber" or "l2" for keypoint and depth residuals.
        robust_threshold: kernel scale in noise units: residuals beyond it are down-weighted.
        coarse_threshold_factor: the wide stage's kernel is this many times wider.
        keypoint_noise_m: expected error of a 3D keypoint (sensor, detector, and where the model's
            joints sit relative to the keypoints), metres.
        keypoint_noise_px: expected error of a 2D keypoint, pixels.
        pose_prior_weight / shape_prior_weight / joint_limit_weight: multipliers of the priors
            (1 = the Gaussian / penalty as defined above).
        pose_pca_std: per-component pose standard deviations (radians); None takes the model
            sidecar's ``hands_pca_std``, else :data:`FALLBACK_POSE_PCA_STD` for every component.
        temporal_pose_std_rad / temporal_shape_std / temporal_rotation_std_rad /
            temporal_translation_std_m: how far each moves between frames
            :data:`NOMINAL_FRAME_INTERVAL_S` apart (the widths scale with the time gap).
        temporal_max_gap_s: a previous fit older than this is ignored.
        depth_refinement: run the depth stage when a point cloud is given.
        depth_noise_m: expected distance of a visible vertex to the depth cloud, metres.
        depth_weight: weight of the mean vertex-to-cloud cost, in keypoint equivalents.
        depth_max_vertices: the depth term uses a fixed random sample of at most this many
            visible vertices (the full mesh is not posed in the optimisation).
        depth_occlusion_margin_m: a vertex whose pixel holds depth this much nearer than the
            vertex is occluded (by a finger, an object) and left out of the depth term.
        torch_threads: intra-op threads torch uses during a fit (restored afterwards), or None
            to leave torch's setting alone. The fit is a chain of tiny tensor operations that
            gain nothing from threads, and on a busy CPU (a robot's computer running other
            nodes) OpenMP's thread hand-offs made a 0.2 s fit take 8-17 s here; the setting is
            process-wide, so it also applies to torch work in other Python threads meanwhile.
    """

    optimizer: str = "lm"
    coarse_iterations: int = 10
    fine_iterations: int = 15
    warm_iterations: int = 3
    depth_iterations: int = 8
    tolerance: float = 1e-4
    adam_lr: float = 0.05
    robust_loss: str = "geman_mcclure"
    robust_threshold: float = 3.0
    coarse_threshold_factor: float = 5.0
    keypoint_noise_m: float = 0.006
    keypoint_noise_px: float = 4.0
    pose_prior_weight: float = 1.0
    shape_prior_weight: float = 1.0
    joint_limit_weight: float = 1.0
    pose_pca_std: tuple[float, ...] | None = None
    temporal_pose_std_rad: float = 0.15
    temporal_shape_std: float = 0.1
    temporal_rotation_std_rad: float = 0.2
    temporal_translation_std_m: float = 0.03
    temporal_max_gap_s: float = 0.5
    depth_refinement: bool = False
    depth_noise_m: float = 0.004
    depth_weight: float = 25.0
    depth_max_vertices: int = 300
    depth_occlusion_margin_m: float = 0.015
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"fit optimizer must be one of {OPTIMIZERS}. Got {self.optimizer!r}")
        if self.robust_loss not in ROBUST_LOSSES:
            raise ConfigError(f"fit robust_loss must be one of {ROBUST_LOSSES}. Got {self.robust_loss!r}")
        for name in ("coarse_iterations", "fine_iterations", "warm_iterations", "depth_iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10_000:
                raise ConfigError(f"fit {name} must be an integer in [0, 10000]. Got {value!r}")
        if not isinstance(self.depth_max_vertices, int) or isinstance(self.depth_max_vertices, bool) or self.depth_max_vertices < 1:
            raise ConfigError(f"fit depth_max_vertices must be a positive integer. Got {self.depth_max_vertices!r}")
        if self.fine_iterations + self.coarse_iterations == 0:
            raise ConfigError("fit coarse_iterations + fine_iterations must be positive")
        positive = (
            "tolerance", "adam_lr", "robust_threshold", "coarse_threshold_factor", "keypoint_noise_m",
            "keypoint_noise_px", "temporal_pose_std_rad", "temporal_shape_std", "temporal_rotation_std_rad",
            "temporal_translation_std_m", "temporal_max_gap_s", "depth_noise_m", "depth_occlusion_margin_m",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"fit {name} must be a positive number. Got {value!r}")
        for name in ("pose_prior_weight", "shape_prior_weight", "joint_limit_weight", "depth_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"fit {name} must be a non-negative number. Got {value!r}")
        if self.coarse_threshold_factor < 1:
            raise ConfigError(f"fit coarse_threshold_factor must be >= 1. Got {self.coarse_threshold_factor}")
        if not isinstance(self.depth_refinement, bool):
            raise ConfigError(f"fit depth_refinement must be a bool. Got {self.depth_refinement!r}")
        if self.torch_threads is not None and (
            not isinstance(self.torch_threads, int) or isinstance(self.torch_threads, bool) or not 1 <= self.torch_threads <= 256
        ):
            raise ConfigError(f"fit torch_threads must be None or an integer in [1, 256]. Got {self.torch_threads!r}")
        if self.pose_pca_std is not None:
            try:
                std = np.asarray(self.pose_pca_std, dtype=np.float64)
            except (TypeError, ValueError):
                std = np.zeros(0)
            if std.ndim != 1 or not (1 <= len(std) <= 45) or not np.all(np.isfinite(std)) or (std <= 0).any():
                raise ConfigError(f"fit pose_pca_std must be 1 to 45 positive numbers. Got {self.pose_pca_std!r}")
            object.__setattr__(self, "pose_pca_std", tuple(float(s) for s in std))

    @classmethod
    def from_options(cls, options: "dict | FitConfig | None") -> "FitConfig":
        """A config from a mapping of field values (as YAML gives), naming unknown keys."""
        return from_mapping(cls, options, "fit")


@dataclass(frozen=True)
class FitParams:
    """Hand parameters of a batch, camera frame (detached tensors). B = batch.

    Attributes:
        global_orient: (B, 3) axis-angle; hand_pose: (B, 45) relative to the flat hand;
        betas: (B, 10); transl: (B, 3) metres.
    """

    global_orient: torch.Tensor
    hand_pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.global_orient.shape[0])

    def select(self, index: int) -> "FitParams":
        """Batch item ``index`` as a batch of one."""
        return FitParams(*(getattr(self, name)[index : index + 1] for name in ("global_orient", "hand_pose", "betas", "transl")))


@dataclass(frozen=True)
class FitTargets:
    """Observations of a batch of hands. B = batch; a missing keypoint is NaN or has weight 0.

    Attributes:
        points_3d: (B, 21, 3) metres, camera frame, or None.
        weights_3d: (B, 21) confidences of ``points_3d`` in [0, 1], or None (1 where finite).
        points_2d: (B, 21, 2) pixels, or None.
        weights_2d: (B, 21) confidences of ``points_2d``, or None (1 where finite).
        intrinsics: (B, 3, 3) pinhole matrices (needed with ``points_2d`` and ``depth_maps``).
        clouds: per item an (N_b, 3) depth point cloud (metres, camera frame) or None.
        depth_maps: per item an (H, W) depth image (metres, 0 = hole) for the occlusion test
            of the depth stage, or None.
        depth_bounds_m: (B, 21) the nearest camera depth (z, metres) each keypoint may have, or
            None; NaN where there is no bound. A depth reading at a keypoint's pixel bounds it
            from the camera's side only: the keypoint is on the skin seen there or hidden behind
            it (a fingertip behind the knuckles), never in front of it. Fitted keypoints nearer
            than their bound cost as 3D keypoints do (``keypoint_noise_m``, robust kernel);
            those behind it cost nothing.
    """

    points_3d: np.ndarray | None = None
    weights_3d: np.ndarray | None = None
    points_2d: np.ndarray | None = None
    weights_2d: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    clouds: list | None = None
    depth_maps: list | None = None
    depth_bounds_m: np.ndarray | None = None

    def __post_init__(self) -> None:
        batch = None
        for name, width in (("points_3d", 3), ("points_2d", 2)):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, dtype=np.float64)
            if value.ndim != 3 or value.shape[1:] != (NUM_KEYPOINTS, width):
                raise DataError(f"fit targets {name} must have shape (B, 21, {width}); got {tuple(value.shape)}")
            if np.isinf(value).any():
                raise DataError(f"fit targets {name} hold infinite values (use NaN for a missing keypoint)")
            object.__setattr__(self, name, value)
            batch = value.shape[0] if batch is None else batch
            if value.shape[0] != batch:
                raise DataError(f"fit targets {name} has batch size {value.shape[0]}, other targets {batch}")
        if batch is None:
            raise DataError("fit targets need points_3d (B, 21, 3) or points_2d (B, 21, 2)")
        if batch == 0:
            raise DataError("fit targets have batch size 0")
        for name, points in (("weights_3d", "points_3d"), ("weights_2d", "points_2d")):
            value = getattr(self, name)
            if value is None:
                continue
            if getattr(self, points) is None:
                raise DataError(f"fit targets {name} given without {points}")
            value = np.asarray(value, dtype=np.float64)
            if value.shape != (batch, NUM_KEYPOINTS) or not np.all(np.isfinite(value)) or (value < 0).any():
                raise DataError(f"fit targets {name} must be (B, 21) non-negative finite weights; got shape {tuple(value.shape)}")
            object.__setattr__(self, name, value)
        if self.intrinsics is not None:
            intrinsics = np.asarray(self.intrinsics, dtype=np.float64)
            if intrinsics.shape != (batch, 3, 3) or not np.all(np.isfinite(intrinsics)):
                raise DataError(f"fit targets intrinsics must be (B, 3, 3) finite; got shape {tuple(intrinsics.shape)}")
            if (intrinsics[:, 0, 0] <= 0).any() or (intrinsics[:, 1, 1] <= 0).any():
                raise DataError("fit targets intrinsics must have positive focal lengths")
            object.__setattr__(self, "intrinsics", intrinsics)
        if self.depth_bounds_m is not None:
            bounds = np.asarray(self.depth_bounds_m, dtype=np.float64)
            if bounds.shape != (batch, NUM_KEYPOINTS) or np.isinf(bounds).any():
                raise DataError(f"fit targets depth_bounds_m must be (B, 21) metres, NaN where unbounded; got shape {tuple(bounds.shape)}")
            object.__setattr__(self, "depth_bounds_m", bounds)
        if self.points_2d is not None and self.intrinsics is None:
            raise DataError("fit targets points_2d need intrinsics (B, 3, 3) to project the model")
        for name in ("clouds", "depth_maps"):
            value = getattr(self, name)
            if value is not None and len(value) != batch:
                raise DataError(f"fit targets {name} must hold one entry (or None) per batch item; got {len(value)} for {batch}")
        if self.clouds is not None:
            clouds = []
            for index, cloud in enumerate(self.clouds):
                if cloud is None:
                    clouds.append(None)
                    continue
                cloud = np.asarray(cloud, dtype=np.float64)
                if cloud.ndim != 2 or cloud.shape[1] != 3 or not np.all(np.isfinite(cloud)):
                    raise DataError(f"fit targets clouds[{index}] must be a finite (N, 3) array; got shape {tuple(cloud.shape)}")
                clouds.append(cloud if len(cloud) else None)
            object.__setattr__(self, "clouds", clouds)
        if self.depth_maps is not None:
            if self.intrinsics is None:
                raise DataError("fit targets depth_maps need intrinsics (B, 3, 3)")
            for index, depth in enumerate(self.depth_maps):
                if depth is not None and (not isinstance(depth, np.ndarray) or depth.ndim != 2):
                    raise DataError(f"fit targets depth_maps[{index}] must be an (H, W) array or None")

    @property
    def batch_size(self) -> int:
        source = self.points_3d if self.points_3d is not None else self.points_2d
        return int(source.shape[0])

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(B, 21) effective weights of the 3D and of the 2D keypoints (0 where missing)."""
        batch = self.batch_size
        weights = []
        for points, given in ((self.points_3d, self.weights_3d), (self.points_2d, self.weights_2d)):
            if points is None:
                weights.append(np.zeros((batch, NUM_KEYPOINTS)))
                continue
            finite = np.isfinite(points).all(axis=2)
            base = np.ones((batch, NUM_KEYPOINTS)) if given is None else given
            weights.append(np.where(finite, base, 0.0))
        return weights[0], weights[1]


@dataclass(frozen=True)
class FitResult:
    """Outcome of :meth:`HandFitter.fit`. B = batch, V = vertices.

    Attributes:
        params: fitted parameters.
        vertices: (B, V, 3) posed vertices, metres.
        joints: (B, 21, 3) joints, OpenPose order, metres.
        residual_3d_m: (B, 21) distances of the fitted keypoints (the joints, unless the fitter
            has keypoint offsets) to the observed ones, NaN where no 3D keypoint.
        residual_2d_px: (B, 21) reprojection errors, NaN where no 2D keypoint.
        loss: (B,) final objective per item.
        iterations: optimiser iterations over all stages.
        evaluations: objective (or Jacobian) evaluations over all stages.
        time_s: wall time of the fit.
        stage_times_s: wall time per stage ("init", "coarse", "fine" or "warm", "depth").
    """

    params: FitParams
    vertices: torch.Tensor
    joints: torch.Tensor
    residual_3d_m: np.ndarray
    residual_2d_px: np.ndarray
    loss: np.ndarray
    iterations: int
    evaluations: int
    time_s: float
    stage_times_s: dict


def rodrigues(rotvec: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices of (..., 3) axis-angle vectors, computed as
    ``smplx.lbs.batch_rodrigues`` does (the 1e-8 offset keeps the zero rotation finite)."""
    angle = torch.norm(rotvec + 1e-8, dim=-1, keepdim=True)
    x, y, z = (rotvec / angle).unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))
    angle = angle.unsqueeze(-1)
    return torch.sin(angle) * skew + (1 - torch.cos(angle)) * (skew @ skew) + torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)


class KeypointLayer(torch.nn.Module):
    """The 21 joints of a :class:`HandModel` (and optionally some of its vertices) without its
    full mesh, exactly.

    The same linear blend skinning as ``smplx.lbs.lbs``, restricted to what the fit needs: the 16
    rest joints (linear in the betas: ``J_regressor @ (v_template + shapedirs @ betas)``) are
    posed through the kinematic tree, and only the five fingertip vertices and any
    ``vertex_ids`` get their shape and pose blend shapes and skinning. The fit evaluates this
    layer dozens of times per frame, mostly on small batches where the cost is per-operation
    overhead, so the joints are kept in tree-depth order (wrist, the five first finger joints,
    the five second, the five third): each depth level is one batched product over a slice,
    three in all instead of smplx's fifteen sequential ones, with no gathers in between.

    A keypoint detector's landmarks need not sit where the model's joints do (MediaPipe puts the
    knuckles about 1.5 cm nearer the wrist than the bundled hand's MCP joints, see
    :mod:`egopress_core.perception.landmark_offsets`). ``keypoint_offsets`` moves each of the 21
    keypoints by a fixed vector carried rigidly by the segment the keypoint ends (the wrist's
    own for the wrist), so that the layer poses the detector's keypoints instead of the joints.

    Args:
        hand: the model.
        vertex_ids: (E,) vertex indices to pose besides the joints, or None.
        dtype: floating dtype of the layer's buffers (None: the model's). The fitter uses
            float64: its forward-difference Jacobians need the precision.
        keypoint_offsets: (21, 3) metres in the flat template's frame, OpenPose order, or None
            (the joints themselves).
    """

    def __init__(
        self,
        hand: HandModel,
        vertex_ids: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
        keypoint_offsets: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        mano = hand.mano
        device = mano.v_template.device
        dtype = mano.v_template.dtype if dtype is None else dtype
        chosen = hand.tip_index
        if vertex_ids is not None:
            chosen = torch.cat([chosen, torch.as_tensor(vertex_ids, dtype=torch.long, device=device)])
        # Tree-depth order of the joints, and per level where its parents sit in the previous
        # level: a slice when the level's parents are consecutive there (or one shared parent,
        # broadcast), else an index.
        parents = [int(parent) for parent in mano.parents]
        depth = [0] * len(parents)
        for joint in range(1, len(parents)):
            depth[joint] = depth[parents[joint]] + 1
        by_level = [[joint for joint in range(len(parents)) if depth[joint] == level] for level in range(max(depth) + 1)]
        order = [joint for joints in by_level for joint in joints]
        self.levels: list[tuple[slice, slice, object]] = []  # (the level's slots, the previous level's, its parents there)
        start = len(by_level[0])
        for level in range(1, len(by_level)):
            joints, previous = by_level[level], by_level[level - 1]
            slots = [previous.index(parents[joint]) for joint in joints]
            if len(set(slots)) == 1:
                parent = slice(slots[0], slots[0] + 1)
            elif slots == list(range(slots[0], slots[0] + len(slots))):
                parent = slice(slots[0], slots[0] + len(slots))
            else:
                parent = torch.tensor(slots, device=device)
            self.levels.append((slice(start, start + len(joints)), slice(start - len(previous), start), parent))
            start += len(joints)
        order_tensor = torch.tensor(order, device=device)
        cast = lambda tensor: tensor.to(dtype)  # noqa: E731
        regressor = cast(mano.J_regressor)[order_tensor]  # (16, V), tree-depth order
        num_vertices = mano.v_template.shape[0]
        posedirs = cast(mano.posedirs).view(mano.posedirs.shape[0], num_vertices, 3)[:, chosen]
        self.register_buffer("joint_template", regressor @ cast(mano.v_template))  # (16, 3)
        # Blend shapes flattened to (rows * 3, betas): one matrix product per evaluation.
        self.register_buffer("joint_shapedirs", torch.einsum("jv,vcb->jcb", regressor, cast(mano.shapedirs)).flatten(0, 1))
        self.register_buffer("vertex_template", cast(mano.v_template[chosen]))  # (5 + E, 3)
        self.register_buffer("vertex_shapedirs", cast(mano.shapedirs[chosen]).flatten(0, 1))
        self.register_buffer("vertex_posedirs", posedirs.reshape(posedirs.shape[0], -1))  # rows: smplx's joint order
        self.register_buffer("vertex_weights", cast(mano.lbs_weights[chosen])[:, order_tensor])  # (5 + E, 16)
        self.register_buffer("pose_mean", cast(mano.pose_mean))
        self.register_buffer("eye", torch.eye(3, dtype=dtype, device=device))
        self.register_buffer("order", order_tensor)
        # OpenPose rows: hand.joint_order indexes [16 joints in smplx order, 5 tips]; here the
        # joints come in tree-depth order.
        position = {joint: slot for slot, joint in enumerate(order)}
        remap = [position[index] if index < len(order) else index for index in hand.joint_order.tolist()]
        self.register_buffer("joint_order", torch.tensor(remap, dtype=torch.long, device=device))
        self.num_tips = len(hand.tip_index)
        self.num_extra = len(chosen) - self.num_tips
        # Each keypoint's segment: the rotation of its parent joint (tree-depth slot).
        self.register_buffer("segment_slots", self.joint_order[torch.as_tensor(OPENPOSE_PARENTS, device=device)].clone())
        self.keypoint_offsets: torch.Tensor | None
        if keypoint_offsets is None:
            self.keypoint_offsets = None
        else:
            offsets = torch.as_tensor(np.asarray(keypoint_offsets, dtype=np.float64), device=device)
            if offsets.shape != (NUM_KEYPOINTS, 3) or not torch.isfinite(offsets).all():
                raise ConfigError(f"keypoint_offsets must be ({NUM_KEYPOINTS}, 3) finite metres. Got shape {tuple(offsets.shape)}")
            self.register_buffer("keypoint_offsets", cast(offsets).unsqueeze(-1))

    def forward(self, global_orient: torch.Tensor, hand_pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
        """(B, 21 + E, 3): the keypoints (the joints, moved by ``keypoint_offsets`` if any) in
        OpenPose order, then the E chosen vertices, from (B, 3), (B, 45), (B, 10), (B, 3)."""
        return self._pose(global_orient, hand_pose, betas, transl, self.keypoint_offsets is not None)[0]

    def posed(self, global_orient: torch.Tensor, hand_pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor):
        """:meth:`forward`'s points (B, 21 + E, 3), and the world rotation (B, 21, 3, 3) of each
        keypoint's segment (what carries its offset)."""
        return self._pose(global_orient, hand_pose, betas, transl, True)

    def _pose(self, global_orient, hand_pose, betas, transl, segments: bool):
        batch = global_orient.shape[0]
        full_pose = (torch.cat([global_orient, hand_pose], dim=1) + self.pose_mean).view(batch, -1, 3)
        relative = rodrigues(full_pose)  # (B, 16, 3, 3), smplx's joint order
        rotations = relative.index_select(1, self.order)  # tree-depth order
        rest = self.joint_template + (betas @ self.joint_shapedirs.T).view(batch, -1, 3)  # (B, 16, 3)
        world_rotation = [rotations[:, :1]]
        world_position = [rest[:, :1]]
        for joints, previous, parent in self.levels:
            parent_rotation = world_rotation[-1][:, parent]
            offset = (rest[:, joints] - rest[:, previous][:, parent]).unsqueeze(-1)
            world_position.append((parent_rotation @ offset).squeeze(-1) + world_position[-1][:, parent])
            world_rotation.append(parent_rotation @ rotations[:, joints])
        world_rotation = torch.cat(world_rotation, 1)
        world_position = torch.cat(world_position, 1)  # the posed joints
        # Vertices: shape and pose blend shapes, then each joint's rigid motion blended by weight.
        shaped = self.vertex_template + (betas @ self.vertex_shapedirs.T).view(batch, -1, 3)
        posed = shaped + ((relative[:, 1:] - self.eye).flatten(1) @ self.vertex_posedirs).view(batch, -1, 3)
        joint_shift = world_position - (world_rotation @ rest.unsqueeze(-1)).squeeze(-1)
        blended_rotation = (self.vertex_weights @ world_rotation.flatten(2)).unflatten(2, (3, 3))
        blended_shift = self.vertex_weights @ joint_shift
        vertices = (blended_rotation @ posed.unsqueeze(-1)).squeeze(-1) + blended_shift
        keypoints = torch.cat([world_position, vertices[:, : self.num_tips]], dim=1).index_select(1, self.joint_order)
        segment_rotation = world_rotation.index_select(1, self.segment_slots) if segments else None
        if self.keypoint_offsets is not None:
            keypoints = keypoints + (segment_rotation @ self.keypoint_offsets).squeeze(-1)
        return torch.cat([keypoints, vertices[:, self.num_tips :]], dim=1) + transl.unsqueeze(1), segment_rotation


def robust_cost(norm: torch.Tensor, kind: str, threshold: float) -> torch.Tensor:
    """Robust cost of residual norms in noise units, elementwise; ``0.5 e^2`` near zero.

    geman_mcclure: ``0.5 e^2 c^2 / (e^2 + c^2)`` (saturates at ``0.5 c^2``); huber: quadratic
    up to ``c``, linear beyond; l2: ``0.5 e^2``.
    """
    squared = norm.square()
    if kind == "l2":
        return 0.5 * squared
    if kind == "huber":
        absolute = norm.abs()
        return torch.where(absolute <= threshold, 0.5 * squared, threshold * (absolute - 0.5 * threshold))
    c2 = threshold * threshold
    return 0.5 * squared * c2 / (squared + c2)


def robust_weight(norm: torch.Tensor, kind: str, threshold: float) -> torch.Tensor:
    """IRLS weight ``rho'(e) / e`` of :func:`robust_cost` (1 for small residuals)."""
    if kind == "l2":
        return torch.ones_like(norm)
    if kind == "huber":
        return torch.where(norm <= threshold, torch.ones_like(norm), threshold / norm.clamp(min=1e-12))
    c2 = threshold * threshold
    return (c2 / (norm.square() + c2)).square()


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) unit area-weighted vertex normals of (B, V, 3) vertices and (F, 3) faces."""
    corners = vertices[:, faces]  # (B, F, 3, 3)
    face_normals = torch.linalg.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0], dim=-1)
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals.index_add_(1, faces[:, corner], face_normals)
    return torch.nn.functional.normalize(normals, dim=-1)


def rigid_align(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Kabsch: rotation R (3, 3) and translation t (3,) minimising
    ``sum w |R source + t - target|^2`` over (N, 3) point pairs (N >= 3, not collinear)."""
    total = weights.sum()
    source_centre = (weights[:, None] * source).sum(0) / total
    target_centre = (weights[:, None] * target).sum(0) / total
    rotation, _ = Rotation.align_vectors(target - target_centre, source - source_centre, weights=weights)
    matrix = rotation.as_matrix()
    return matrix, target_centre - matrix @ source_centre


def _spread(points: np.ndarray) -> float:
    """Second singular value of the centred points (metres): ~0 for collinear points."""
    if len(points) < 3:
        return 0.0
    return float(np.linalg.svd(points - points.mean(axis=0), compute_uv=False)[1])


@dataclass(frozen=True)
class _Block:
    """One residual block: values (B, N, D) in noise units, weights (B, N), and the robust
    kernel's scale (None: plain squares)."""

    values: torch.Tensor
    weights: torch.Tensor
    threshold: float | None


@dataclass(frozen=True)
class _Problem:
    """Everything a stage's residuals depend on besides the parameters; batch-indexable.

    Tensors: obs3 (B, 21, 3), w3 (B, 21), obs2 (B, 21, 2), w2 (B, 21), intrinsics (B, 3, 3),
    transl_init (B, 3), previous (4 tensors of FitParams, or None), cloud (B, N, 3) padded,
    cloud_present (B, N); bounds (B, 21) nearest depths and wb (B, 21) their weights, or None; depth_layer poses the joints and E vertices sampled from those visible
    in some item, visible_weight (B, E) their weights, nearest (B, E) their cloud points.
    """

    obs3: torch.Tensor | None
    w3: torch.Tensor
    obs2: torch.Tensor | None
    w2: torch.Tensor
    intrinsics: torch.Tensor | None
    transl_init: torch.Tensor
    previous: tuple | None
    widen: float
    threshold: float
    cloud: torch.Tensor | None = None
    cloud_present: torch.Tensor | None = None
    visible_weight: torch.Tensor | None = None
    nearest: torch.Tensor | None = None
    depth_layer: KeypointLayer | None = None
    bounds: torch.Tensor | None = None
    wb: torch.Tensor | None = None

    def subset(self, index: torch.Tensor) -> "_Problem":
        def pick(value):
            if value is None or isinstance(value, (float, torch.nn.Module)):
                return value
            if isinstance(value, tuple):
                return tuple(item[index] for item in value)
            return value[index]

        return dataclasses.replace(self, **{item.name: pick(getattr(self, item.name)) for item in dataclasses.fields(self)})


class HandFitter:
    """Fits a hand model to keypoints (and optionally depth), batched.

    Args:
        hand: the model; must use ``flat_hand_mean=True`` (poses relative to the flat hand, as
            FrameRecord and msg/HandMesh.msg store them).
        config: weights, noise levels, budgets.
        keypoint_offsets: (21, 3) where the observed keypoints sit relative to the model's
            joints (see :class:`KeypointLayer`), or None: the keypoints are the joints. The
            result's mesh and joints are the model's own; its residuals are the keypoints'.
    """

    def __init__(self, hand: HandModel, config: FitConfig | None = None, keypoint_offsets: np.ndarray | None = None) -> None:
        if not isinstance(hand, HandModel):
            raise ConfigError(f"hand must be a HandModel. Got {type(hand).__name__}")
        if not hand.flat_hand_mean:
            raise ConfigError("the fitter needs a hand model loaded with flat_hand_mean=True (poses relative to the flat hand)")
        self.config = config if config is not None else FitConfig()
        if not isinstance(self.config, FitConfig):
            raise ConfigError(f"config must be a FitConfig. Got {type(self.config).__name__}")
        self.hand = hand
        # The optimisation runs in float64 whatever the model's dtype: forward-difference
        # Jacobians lose half the digits, which float32 cannot spare. Results are cast back.
        self.dtype = torch.float64
        self.result_dtype = hand.mano.v_template.dtype
        self.device = hand.mano.v_template.device
        self.keypoint_offsets = None if keypoint_offsets is None else np.asarray(keypoint_offsets, dtype=np.float64)
        self.keypoint_layer = KeypointLayer(hand, dtype=self.dtype, keypoint_offsets=self.keypoint_offsets)
        self.faces = torch.as_tensor(hand.faces, dtype=torch.long, device=self.device)
        self._build_pose_prior()
        self._build_joint_limits()

    def _tensor(self, value) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value), dtype=self.dtype, device=self.device)

    # -- parameterisation and priors -------------------------------------------------------

    def _build_pose_prior(self) -> None:
        components = np.asarray(self.hand.hands_components, dtype=np.float64)  # (K, 45)
        if self.config.pose_pca_std is not None:
            std = np.asarray(self.config.pose_pca_std)
            source = "config pose_pca_std"
        else:
            raw = (read_sidecar(self.hand.model_path) or {}).get("hands_pca_std")
            if raw is not None:
                std = np.asarray(raw, dtype=np.float64)
                if std.ndim != 1 or not np.all(np.isfinite(std)) or (std <= 0).any():
                    raise DataError(f"{self.hand.model_path.with_suffix('.json')}: hands_pca_std must be positive numbers")
                source = "model sidecar hands_pca_std"
            else:
                std = np.full(len(components), FALLBACK_POSE_PCA_STD)
                source = "isotropic fallback"
        count = min(len(std), len(components))
        basis = std[:count, None] * components[:count]
        if np.linalg.matrix_rank(basis) < count:
            raise DataError(f"{self.hand.model_path}: hands_components are linearly dependent; no pose prior can be built")
        self.pose_prior_source = source
        self.num_latent = count
        self.pose_mean = self._tensor(self.hand.hands_mean)  # (45,)
        self.pose_basis = self._tensor(basis)  # (K, 45): whitened coordinates -> pose offset
        self.pose_basis_pinv = self._tensor(np.linalg.pinv(basis))  # (45, K), exact for K = 45

    def pose_from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, 45) pose from (B, K) whitened PCA coordinates (computed in float64, returned in
        the input's dtype, as are the other public helpers here)."""
        return (self.pose_mean + latent.to(self.dtype) @ self.pose_basis).to(latent.dtype)

    def latent_from_pose(self, pose: torch.Tensor) -> torch.Tensor:
        """(B, K) whitened PCA coordinates of (B, 45) poses (least squares if K < 45)."""
        return ((pose.to(self.dtype) - self.pose_mean) @ self.pose_basis_pinv).to(pose.dtype)

    def _unpack(self, theta: torch.Tensor, transl_init: torch.Tensor):
        """(latent (B, K), pose (B, 45), betas (B, 10), orient (B, 3), transl (B, 3)) of (B, P)."""
        k = self.num_latent
        latent = theta[:, :k]
        betas = theta[:, k : k + NUM_BETAS]
        orient = theta[:, k + NUM_BETAS : k + NUM_BETAS + 3]
        transl = transl_init + TRANSLATION_UNIT_M * theta[:, k + NUM_BETAS + 3 :]
        return latent, self.pose_from_latent(latent), betas, orient, transl

    def _build_joint_limits(self) -> None:
        with torch.no_grad():
            rest = self.keypoint_layer(*(torch.zeros(1, n, dtype=self.dtype, device=self.device) for n in (3, 45, NUM_BETAS, 3)))
        joints16 = rest[0].cpu().double().numpy()[list(MANO_JOINTS_IN_OPENPOSE)]
        normal = np.cross(joints16[1] - joints16[0], joints16[7] - joints16[0])  # index MCP x little MCP
        normal /= np.linalg.norm(normal)
        if not self.hand.is_right:
            normal = -normal  # the cross product of mirrored vectors flips
        axes = joint_axes(joints16, normal)
        twist = np.cross(axes.flexion, axes.abduction)
        twist /= np.linalg.norm(twist, axis=1, keepdims=True)
        frames = np.stack([axes.flexion, axes.abduction, twist], axis=1)  # (15, 3 axes, 3)

        lower = np.zeros((15, 3))
        upper = np.zeros((15, 3))
        margin = 0.15
        for finger, chain in MANO_FINGER_JOINTS.items():
            thumb = finger == "thumb"
            flexion = THUMB_FLEXION_RANGE if thumb else FINGER_FLEXION_RANGE
            # The thumb's axes here come from a generic pad direction, not the exact one its
            # model was designed with, so its ranges get a wider margin.
            extra = 0.25 if thumb else 0.0
            for position, joint in enumerate(chain):
                row = joint - 1
                lower[row, 0] = flexion[position][0] - margin - extra
                upper[row, 0] = flexion[position][1] + margin + extra
                abduction = (THUMB_ABDUCTION_RANGE if thumb else FINGER_ABDUCTION_RANGE) if position == 0 else (-0.1, 0.1)
                low, high = abduction[0] - margin - extra, abduction[1] + margin + extra
                # The mirrored (left) model's abduction axis is mirrored as a pseudo-vector, so a
                # motion towards the thumb reads with the opposite sign.
                lower[row, 1], upper[row, 1] = (low, high) if self.hand.is_right else (-high, -low)
                # Abduction then flexion at an MCP composes into some twist about the bone
                # (about half their product), so proximal joints get a wider twist range.
                twist_limit = 0.45 if thumb else 0.45 if position == 0 else 0.2
                lower[row, 2], upper[row, 2] = -twist_limit, twist_limit
        self.limit_frames = self._tensor(frames)
        self.limit_lower = self._tensor(lower)
        self.limit_upper = self._tensor(upper)

    def joint_angles(self, pose: torch.Tensor) -> torch.Tensor:
        """(B, 15, 3) flexion, abduction, twist of each finger joint (radians; projections of
        the axis-angle onto the joint's axes, exact for rotations about one of them)."""
        return (pose.to(self.dtype).reshape(-1, 15, 1, 3) @ self.limit_frames.transpose(1, 2)).squeeze(2).to(pose.dtype)

    def joint_limit_excess(self, pose: torch.Tensor) -> torch.Tensor:
        """(B, 15, 3) radians by which each angle leaves its range (0 inside)."""
        angles = self.joint_angles(pose).to(self.dtype)
        return (torch.relu(angles - self.limit_upper) + torch.relu(self.limit_lower - angles)).to(pose.dtype)

    # -- initialisation ---------------------------------------------------------------------

    def _posed_at_origin(self, latent: torch.Tensor, betas: torch.Tensor) -> np.ndarray:
        """(B, 21, 3) joints at zero global rotation and translation."""
        zeros = torch.zeros(latent.shape[0], 3, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            joints = self.keypoint_layer(zeros, self.pose_from_latent(latent), betas, zeros)
        return joints.cpu().double().numpy()

    @staticmethod
    def pseudo_3d_from_2d(points_2d: np.ndarray, weights: np.ndarray, intrinsics: np.ndarray, template: np.ndarray) -> np.ndarray:
        """(21, 3) guesses for 2D keypoints (21, 2): each back-projected at the depth where the
        template (21, 3) wrist-to-MCP distances have their observed length in pixels (NaN where
        a keypoint is missing)."""
        valid = weights > 0
        guesses = np.full((NUM_KEYPOINTS, 3), np.nan)
        pairs = [(a, b) for a, b in ((0, 5), (0, 9), (0, 13), (0, 17), (5, 17)) if valid[a] and valid[b]]
        if not pairs:
            index = np.flatnonzero(valid)
            if len(index) < 2:
                return guesses
            pairs = [(index[0], index[-1])]
        size_m = np.mean([np.linalg.norm(template[a] - template[b]) for a, b in pairs])
        size_px = np.mean([np.linalg.norm(points_2d[a] - points_2d[b]) for a, b in pairs])
        focal = 0.5 * (intrinsics[0, 0] + intrinsics[1, 1])
        depth = focal * size_m / max(size_px, 1e-6)
        rays = np.stack(
            [(points_2d[:, 0] - intrinsics[0, 2]) / intrinsics[0, 0], (points_2d[:, 1] - intrinsics[1, 2]) / intrinsics[1, 1], np.ones(NUM_KEYPOINTS)],
            axis=1,
        )
        guesses[valid] = depth * rays[valid]
        return guesses

    def initial_rigid(self, points: np.ndarray, weights: np.ndarray, latent: torch.Tensor, betas: torch.Tensor, template: np.ndarray | None = None):
        """Global orientation (B, 3) and translation (B, 3) aligning the model (at this latent pose
        and betas; ``template``: its :meth:`_posed_at_origin` joints if already at hand) to
        observed 3D keypoints (B, 21, 3) with weights (B, 21), palm first; and (B,) bool, whether
        a rotation could be estimated (else identity, translation by centroids)."""
        template = self._posed_at_origin(latent, betas) if template is None else template
        # MANO rotates about the rest wrist joint, which no pose moves: the template's wrist.
        root = template[:, 0]
        batch = points.shape[0]
        orient = np.zeros((batch, 3))
        transl = np.zeros((batch, 3))
        aligned = np.zeros(batch, dtype=bool)
        palm = np.array(PALM_KEYPOINTS)
        for item in range(batch):
            valid = weights[item] > 0
            use = palm[valid[palm]]
            if len(use) < 3 or _spread(points[item, use]) < 1e-3:
                use = np.flatnonzero(valid)
            if len(use) >= 3 and _spread(points[item, use]) >= 1e-3:
                rotation, offset = rigid_align(template[item, use], points[item, use], weights[item, use])
                aligned[item] = True
            elif valid.any():
                rotation = np.eye(3)
                offset = points[item, valid].mean(0) - template[item, valid].mean(0)
            else:
                continue
            orient[item] = Rotation.from_matrix(rotation).as_rotvec()
            # MANO rotates about the rest root J0: R p + t = R (p - J0) + J0 + transl.
            transl[item] = offset + rotation @ root[item] - root[item]
        return orient, transl, aligned

    # -- objective --------------------------------------------------------------------------

    @staticmethod
    def project(points: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) pixels of (B, N, 3) camera points. Depth is clamped at 1 mm so that a point
        behind the camera gets a large (not sign-flipped) reprojection error."""
        depth = points[..., 2:3].clamp(min=1e-3)
        homogeneous = torch.cat([points[..., :2] / depth, torch.ones_like(depth)], dim=-1)
        return homogeneous @ intrinsics[:, :2].transpose(1, 2)

    def _blocks(self, theta: torch.Tensor, problem: _Problem) -> list[_Block]:
        config = self.config
        latent, pose, betas, orient, transl = self._unpack(theta, problem.transl_init)
        blocks = []
        if problem.cloud is not None:
            points = problem.depth_layer(orient, pose, betas, transl)
            joints, vertices = points[:, :NUM_KEYPOINTS], points[:, NUM_KEYPOINTS:]
        else:
            joints, vertices = self.keypoint_layer(orient, pose, betas, transl), None
        if problem.obs3 is not None:
            blocks.append(_Block((joints - problem.obs3) / config.keypoint_noise_m, problem.w3, problem.threshold))
        if problem.obs2 is not None:
            residual = (self.project(joints, problem.intrinsics) - problem.obs2) / config.keypoint_noise_px
            blocks.append(_Block(residual, problem.w2, problem.threshold))
        if problem.bounds is not None:
            ahead = torch.relu(problem.bounds - joints[..., 2]) / config.keypoint_noise_m
            blocks.append(_Block(ahead.unsqueeze(-1), problem.wb, problem.threshold))
        ones = lambda n: torch.ones(theta.shape[0], n, dtype=self.dtype, device=self.device)  # noqa: E731
        blocks.append(_Block(latent.unsqueeze(-1), config.pose_prior_weight * ones(latent.shape[1]), None))
        blocks.append(_Block(betas.unsqueeze(-1), config.shape_prior_weight * ones(NUM_BETAS), None))
        excess = self.joint_limit_excess(pose) / LIMIT_SOFTNESS_RAD
        blocks.append(_Block(excess, config.joint_limit_weight * ones(15), None))
        if problem.previous is not None:
            prev_orient, prev_pose, prev_betas, prev_transl = problem.previous
            widen = problem.widen
            for value, before, std, size in (
                (pose, prev_pose, config.temporal_pose_std_rad, 45),
                (betas, prev_betas, config.temporal_shape_std, NUM_BETAS),
                (orient, prev_orient, config.temporal_rotation_std_rad, 3),
                (transl, prev_transl, config.temporal_translation_std_m, 3),
            ):
                blocks.append(_Block(((value - before) / (std * widen)).unsqueeze(-1), ones(size), None))
        if problem.cloud is not None:
            nearest = problem.nearest
            if nearest is None:
                with torch.no_grad():
                    nearest = self._nearest_cloud_points(vertices.detach(), problem.cloud, problem.cloud_present)
            target = torch.gather(problem.cloud, 1, nearest.unsqueeze(-1).expand(-1, -1, 3))
            blocks.append(_Block((vertices - target) / config.depth_noise_m, config.depth_weight * problem.visible_weight, config.robust_threshold))
        return blocks

    def _cost(self, blocks: list[_Block]) -> torch.Tensor:
        """(B,) objective: robust blocks ``sum w rho(|v|)``, others ``sum w |v|^2 / 2``."""
        total = 0.0
        for block in blocks:
            if block.threshold is None:
                per_entry = 0.5 * block.values.square().sum(-1)
            else:
                norm = block.values.square().sum(-1).clamp(min=1e-18).sqrt()
                per_entry = robust_cost(norm, self.config.robust_loss, block.threshold)
            total = total + (block.weights * per_entry).sum(1)
        return total

    def _objective(self, theta: torch.Tensor, problem: _Problem) -> torch.Tensor:
        return self._cost(self._blocks(theta, problem))

    # -- optimisers -------------------------------------------------------------------------

    def _minimise(self, theta: torch.Tensor, problem: _Problem, iterations: int) -> tuple[torch.Tensor, int, int, torch.Tensor | None]:
        """(optimised theta (B, P), iterations, evaluations, (B,) objective at that theta if the
        optimiser knows it, else None)."""
        if iterations == 0:
            return theta, 0, 0, None
        if self.config.optimizer == "lm":
            return self._levenberg_marquardt(theta, problem, iterations)
        variable = theta.detach().clone().requires_grad_(True)
        evaluations = 0
        if self.config.optimizer == "lbfgs":
            optimiser = torch.optim.LBFGS(
                [variable], lr=1.0, max_iter=iterations, max_eval=int(iterations * 1.5) + 1, tolerance_grad=1e-7,
                tolerance_change=self.config.tolerance, history_size=20, line_search_fn="strong_wolfe",
            )  # fmt: skip

            def closure():
                nonlocal evaluations
                evaluations += 1
                optimiser.zero_grad(set_to_none=True)
                loss = self._objective(variable, problem).sum()
                loss.backward()
                return loss

            optimiser.step(closure)
            done = int(optimiser.state[variable].get("n_iter", 0))
            return variable.detach(), done, evaluations, None
        optimiser = torch.optim.Adam([variable], lr=self.config.adam_lr)
        for _ in range(iterations):
            optimiser.zero_grad(set_to_none=True)
            self._objective(variable, problem).sum().backward()
            optimiser.step()
            evaluations += 1
        return variable.detach(), iterations, evaluations, None

    def _root_weights(self, blocks: list[_Block]) -> list[torch.Tensor]:
        """Per block (B, N) square roots of ``weight * psi(|v|)`` (the IRLS row weights)."""
        roots = []
        for block in blocks:
            weight = block.weights
            if block.threshold is not None:
                norm = block.values.square().sum(-1).sqrt()
                weight = weight * robust_weight(norm, self.config.robust_loss, block.threshold)
            roots.append(weight.clamp(min=0).sqrt())
        return roots

    def _evaluate(self, theta: torch.Tensor, problem: _Problem) -> torch.Tensor:
        """(B,) objective at ``theta``."""
        with torch.no_grad():
            return self._cost(self._blocks(theta, problem))

    def _linearise(self, theta: torch.Tensor, problem: _Problem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B,) objective, residual rows (B, R) ``sqrt(w psi) v`` and their Jacobian (B, R, P) at
        ``theta`` (B, P), the IRLS weights ``psi`` taken at ``theta`` and held fixed.

        Forward differences: batch items are independent, so P + 1 copies of an item, copy 0 at
        ``theta`` and copy p moved by :data:`_JACOBIAN_STEP` along parameter p, are evaluated as
        one batch, which also gives copy 0's objective and weights. One batched evaluation costs
        about twice an evaluation of one item here (the work is per-operation overhead, not
        arithmetic), where reverse-mode autograd over copies cost four times more and forward
        mode (dual tensors through Python decompositions) twenty. In float64 the step's
        truncation and rounding errors stay below 1e-6 of an entry.
        """
        batch, size = theta.shape
        copies = torch.arange(batch, device=self.device).repeat_interleave(size + 1)
        steps = torch.cat([torch.zeros(1, size, dtype=self.dtype, device=self.device),
                           _JACOBIAN_STEP * torch.eye(size, dtype=self.dtype, device=self.device)])  # fmt: skip
        shifted = theta.detach().repeat_interleave(size + 1, dim=0) + steps.repeat(batch, 1)
        with torch.no_grad():
            blocks = self._blocks(shifted, problem.subset(copies))
            base = torch.arange(batch, device=self.device) * (size + 1)  # the unmoved copies
            at_theta = [_Block(block.values[base], block.weights[base], block.threshold) for block in blocks]
            roots = self._root_weights(at_theta)
            rows = [(root.repeat_interleave(size + 1, dim=0).unsqueeze(-1) * block.values).flatten(1) for root, block in zip(roots, blocks)]
            output = torch.cat(rows, dim=1).view(batch, size + 1, -1)
        residual = output[:, 0]
        jacobian = ((output[:, 1:] - residual[:, None]) / _JACOBIAN_STEP).transpose(1, 2)
        return self._cost(at_theta), residual, jacobian

    def _levenberg_marquardt(self, theta: torch.Tensor, problem: _Problem, iterations: int) -> tuple[torch.Tensor, int, int, torch.Tensor]:
        """Iteratively reweighted Levenberg-Marquardt, one damping per batch item; converged
        items drop out of the Jacobian evaluations. Returns :meth:`_minimise`'s tuple."""
        theta = theta.detach().clone()
        batch, size = theta.shape
        damping = torch.full((batch,), _LM_INITIAL_DAMPING, dtype=self.dtype, device=self.device)
        active = torch.ones(batch, dtype=torch.bool, device=self.device)
        cost = torch.zeros(batch, dtype=self.dtype, device=self.device)
        evaluations = 0
        done_iterations = 0
        for _ in range(iterations):
            index = torch.nonzero(active).squeeze(1)
            if len(index) == 0:
                break
            done_iterations += 1
            sub_problem = problem if len(index) == batch else problem.subset(index)
            sub_theta = theta[index]
            if sub_problem.cloud is not None:
                # ICP: re-pair vertices with their nearest cloud points, fixed within the step.
                with torch.no_grad():
                    _, pose, betas, orient, transl = self._unpack(sub_theta, sub_problem.transl_init)
                    vertices = sub_problem.depth_layer(orient, pose, betas, transl)[:, NUM_KEYPOINTS:]
                    nearest = self._nearest_cloud_points(vertices, sub_problem.cloud, sub_problem.cloud_present)
                sub_problem = dataclasses.replace(sub_problem, nearest=nearest)
            count = len(index)
            sub_cost, residual, jacobian = self._linearise(sub_theta, sub_problem)
            evaluations += 1
            hessian = jacobian.transpose(1, 2) @ jacobian
            gradient = (jacobian.transpose(1, 2) @ residual.unsqueeze(-1)).squeeze(-1)
            diagonal = hessian.diagonal(dim1=1, dim2=2).clamp(min=1e-9)
            sub_damping = damping[index]
            accepted = torch.zeros(count, dtype=torch.bool, device=self.device)
            new_cost = sub_cost.clone()
            new_theta = sub_theta.clone()
            for _ in range(_LM_RETRIES):
                system = hessian + torch.diag_embed(sub_damping[:, None] * diagonal)
                step = -torch.linalg.solve(system, gradient.unsqueeze(-1)).squeeze(-1)
                trial = sub_theta + step
                trial_cost = self._evaluate(trial, sub_problem)
                evaluations += 1
                better = (trial_cost < sub_cost) & ~accepted & torch.isfinite(trial_cost)
                new_theta = torch.where(better[:, None], trial, new_theta)
                new_cost = torch.where(better, trial_cost, new_cost)
                accepted |= better
                sub_damping = torch.where(better, sub_damping / 3.0, torch.where(accepted, sub_damping, sub_damping * 4.0))
                if bool(accepted.all()):
                    break
            decrease = (sub_cost - new_cost) / sub_cost.clamp(min=1e-12)
            still = accepted & (decrease > self.config.tolerance) & (sub_damping < _LM_MAX_DAMPING)
            theta[index] = new_theta
            cost[index] = new_cost
            damping[index] = sub_damping
            active[index] = still
        return theta, done_iterations, evaluations, cost

    # -- the fit ----------------------------------------------------------------------------

    def fit(self, targets: FitTargets, previous: FitParams | None = None, time_gap_s: float | None = None) -> FitResult:
        """Fits every batch item.

        Args:
            targets: observations (3D and/or 2D keypoints, optional depth clouds).
            previous: the previous frame's parameters (same batch size) for the warm start and
                the temporal terms, or None.
            time_gap_s: seconds since ``previous`` (None = one nominal frame). A negative gap or
                one beyond ``temporal_max_gap_s`` drops the warm start.

        Returns:
            :class:`FitResult`.

        Raises:
            DataError: targets that are not :class:`FitTargets`, an item with fewer than three
                usable keypoints, or ``previous`` of another batch size.
        """
        if not isinstance(targets, FitTargets):
            raise DataError(f"targets must be FitTargets; got {type(targets).__name__}")
        threads = torch.get_num_threads()
        if self.config.torch_threads is not None and self.config.torch_threads != threads:
            torch.set_num_threads(self.config.torch_threads)
        try:
            return self._fit(targets, previous, time_gap_s)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

    def _fit(self, targets: FitTargets, previous: FitParams | None, time_gap_s: float | None) -> FitResult:
        config = self.config
        started = time.perf_counter()
        stage_times: dict[str, float] = {}
        batch = targets.batch_size
        weights_3d, weights_2d = targets.masks()
        usable = np.maximum((weights_3d > 0).sum(1), (weights_2d > 0).sum(1))
        if (usable < 3).any():
            item = int(np.argmax(usable < 3))
            raise DataError(f"fit targets item {item} has {int(usable[item])} usable keypoints; at least 3 are needed")
        gap = NOMINAL_FRAME_INTERVAL_S if time_gap_s is None else float(time_gap_s)
        if previous is not None:
            if not isinstance(previous, FitParams) or previous.batch_size != batch:
                raise DataError(f"previous must be FitParams of batch size {batch}")
            if not math.isfinite(gap) or gap < 0 or gap > config.temporal_max_gap_s:
                previous = None
        widen = max(1.0, gap / NOMINAL_FRAME_INTERVAL_S) if previous is not None else 1.0
        to = self._tensor

        # Starting pose and shape: the previous frame's, else the mean pose and shape.
        if previous is not None:
            previous = FitParams(*(to(getattr(previous, name).detach().cpu().numpy()) for name in ("global_orient", "hand_pose", "betas", "transl")))
            latent0 = self.latent_from_pose(previous.hand_pose)
            betas0 = previous.betas.clone()
        else:
            latent0 = torch.zeros(batch, self.num_latent, dtype=self.dtype, device=self.device)
            betas0 = torch.zeros(batch, NUM_BETAS, dtype=self.dtype, device=self.device)

        # Rigid start: palm alignment to the 3D keypoints (2D-only items: to palm-size guesses).
        has_3d = weights_3d.sum(1) > 0
        init_points = targets.points_3d.copy() if targets.points_3d is not None else np.full((batch, NUM_KEYPOINTS, 3), np.nan)
        init_weights = weights_3d.copy()
        template = self._posed_at_origin(latent0, betas0)
        if not has_3d.all():
            for item in np.flatnonzero(~has_3d):
                guess = self.pseudo_3d_from_2d(targets.points_2d[item], weights_2d[item], targets.intrinsics[item], template[item])
                init_points[item] = guess
                init_weights[item] = np.where(np.isfinite(guess).all(-1), weights_2d[item], 0.0)
        orient0, transl0, aligned = self.initial_rigid(np.nan_to_num(init_points), init_weights, latent0, betas0, template)
        orient_init, transl_init = to(orient0), to(transl0)
        if previous is not None:
            # Keep the previous rigid pose where it explains the palm better than the fresh
            # alignment (noisy palm keypoints, or too few of them for an alignment).
            pose0 = self.pose_from_latent(latent0)
            palm = list(PALM_KEYPOINTS)
            observed = to(np.nan_to_num(init_points))[:, palm]
            weight = to(init_weights)[:, palm]
            with torch.no_grad():  # both candidates in one batch
                both = self.keypoint_layer(torch.cat([previous.global_orient, orient_init]), pose0.repeat(2, 1), betas0.repeat(2, 1),
                                           torch.cat([previous.transl, transl_init]))[:, palm]  # fmt: skip
                cost_prev, cost_fresh = (weight.repeat(2, 1) * (both - observed.repeat(2, 1, 1)).norm(dim=-1)).sum(1).split(batch)
            keep = (cost_prev <= cost_fresh) | ~torch.as_tensor(aligned, device=self.device)
            orient_init = torch.where(keep[:, None], previous.global_orient, orient_init)
            transl_init = torch.where(keep[:, None], previous.transl, transl_init)
        stage_times["init"] = time.perf_counter() - started

        theta = torch.cat([latent0, betas0, orient_init, torch.zeros(batch, 3, dtype=self.dtype, device=self.device)], dim=1)
        problem = _Problem(
            obs3=to(np.nan_to_num(targets.points_3d)) if has_3d.any() else None,
            w3=to(weights_3d),
            obs2=to(np.nan_to_num(targets.points_2d)) if targets.points_2d is not None else None,
            w2=to(weights_2d),
            intrinsics=to(targets.intrinsics) if targets.intrinsics is not None else None,
            transl_init=transl_init,
            previous=None if previous is None else (previous.global_orient, previous.hand_pose, previous.betas, previous.transl),
            widen=widen,
            threshold=config.robust_threshold,
        )
        if targets.depth_bounds_m is not None:
            bounded = np.isfinite(targets.depth_bounds_m)
            problem = dataclasses.replace(problem, bounds=to(np.nan_to_num(targets.depth_bounds_m)), wb=to(bounded.astype(np.float64)))
        if previous is None:
            stages = [("coarse", config.robust_threshold * config.coarse_threshold_factor, config.coarse_iterations),
                      ("fine", config.robust_threshold, config.fine_iterations)]  # fmt: skip
        else:
            stages = [("warm", config.robust_threshold, config.warm_iterations)]
        iterations = evaluations = 0
        loss = None  # the objective of `problem` at theta, when the last stage leaves it known
        for name, threshold, budget in stages:
            stage_start = time.perf_counter()
            theta, done, evaluated, stage_loss = self._minimise(theta, dataclasses.replace(problem, threshold=threshold), budget)
            if done:
                loss = stage_loss if threshold == problem.threshold else None
            iterations += done
            evaluations += evaluated
            stage_times[name] = time.perf_counter() - stage_start

        clouds = targets.clouds if config.depth_refinement and targets.clouds is not None else None
        if clouds is not None and any(cloud is not None for cloud in clouds) and config.depth_iterations > 0:
            stage_start = time.perf_counter()
            depth_problem = self._depth_problem(theta, problem, clouds, targets.depth_maps)
            theta, done, evaluated, _ = self._minimise(theta, depth_problem, config.depth_iterations)
            loss = None if done else loss
            iterations += done
            evaluations += evaluated
            stage_times["depth"] = time.perf_counter() - stage_start

        with torch.no_grad():
            latent, pose, betas, orient, transl = self._unpack(theta, transl_init)
            output = self.hand(orient, pose, betas, transl)
            loss = self._objective(theta, problem) if loss is None else loss
            keypoints = self.keypoint_layer(*(value.to(self.dtype) for value in (orient, pose, betas, transl)))
            joints = keypoints.cpu().numpy()
            orient, pose, betas, transl = (value.to(self.result_dtype) for value in (orient, pose, betas, transl))
            residual_3d = np.full((batch, NUM_KEYPOINTS), np.nan)
            if targets.points_3d is not None:
                residual_3d = np.where(weights_3d > 0, np.linalg.norm(joints - np.nan_to_num(targets.points_3d), axis=-1), np.nan)
            residual_2d = np.full((batch, NUM_KEYPOINTS), np.nan)
            if problem.obs2 is not None:
                projected = self.project(keypoints, problem.intrinsics).cpu().double().numpy()
                residual_2d = np.where(weights_2d > 0, np.linalg.norm(projected - np.nan_to_num(targets.points_2d), axis=-1), np.nan)
        return FitResult(
            params=FitParams(orient.clone(), pose.clone(), betas.clone(), transl.clone()),
            vertices=output.vertices,
            joints=output.joints,
            residual_3d_m=residual_3d,
            residual_2d_px=residual_2d,
            loss=loss.cpu().double().numpy(),
            iterations=iterations,
            evaluations=evaluations,
            time_s=time.perf_counter() - started,
            stage_times_s=stage_times,
        )

    # -- depth ------------------------------------------------------------------------------

    @staticmethod
    def _nearest_cloud_points(vertices: torch.Tensor, cloud: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(B, V) index of the nearest present cloud point of each vertex."""
        distance = torch.cdist(vertices, cloud)
        distance = distance.masked_fill(~present[:, None, :], float("inf"))
        return distance.argmin(dim=2)

    def visible_vertices(self, vertices: torch.Tensor, intrinsics: torch.Tensor | None, depth_maps: list | None) -> torch.Tensor:
        """(B, V) bool: vertices facing the camera and, where a depth map is given, inside the
        image and not behind a nearer observed surface (another finger, an object)."""
        normals = vertex_normals(vertices, self.faces)
        visible = (normals * vertices).sum(-1) < 0  # the normal points against the viewing ray
        if depth_maps is None or intrinsics is None:
            return visible
        pixels = self.project(vertices, intrinsics).round().long()
        for item, depth in enumerate(depth_maps):
            if depth is None:
                continue
            height, width = depth.shape
            u, v = pixels[item, :, 0], pixels[item, :, 1]
            inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
            observed = torch.zeros(vertices.shape[1], dtype=self.dtype, device=self.device)
            observed[inside] = self._tensor(depth)[v[inside], u[inside]]
            occluded = (observed > 0) & (observed < vertices[item, :, 2] - self.config.depth_occlusion_margin_m)
            visible[item] &= inside & ~occluded
        return visible

    def _depth_problem(self, theta: torch.Tensor, problem: _Problem, clouds: list, depth_maps: list | None) -> _Problem:
        """The keypoint problem plus the depth block: padded clouds, the visible vertices of the
        current fit (fixed for the stage) and their nearest cloud points (fixed for LM, whose
        Jacobian needs a smooth function; re-found each evaluation by the first-order
        optimisers)."""
        batch = theta.shape[0]
        sizes = [0 if cloud is None else len(cloud) for cloud in clouds]
        cloud_tensor = torch.zeros(batch, max(sizes), 3, dtype=self.dtype, device=self.device)
        present = torch.zeros(batch, max(sizes), dtype=torch.bool, device=self.device)
        for item, cloud in enumerate(clouds):
            if cloud is not None:
                cloud_tensor[item, : len(cloud)] = self._tensor(cloud)
                present[item, : len(cloud)] = True
        with torch.no_grad():
            _, pose, betas, orient, transl = self._unpack(theta, problem.transl_init)
            vertices = self.hand(orient, pose, betas, transl).vertices.to(self.dtype)
            visible = self.visible_vertices(vertices, problem.intrinsics, depth_maps)
            visible &= torch.as_tensor([size > 0 for size in sizes], device=self.device)[:, None]
            # Pose only a sample of the vertices visible in some item: the depth term is a mean,
            # and a few hundred vertices estimate it well at a fraction of the full mesh's cost.
            candidates = torch.nonzero(visible.any(0)).squeeze(1)
            if len(candidates) > self.config.depth_max_vertices:
                generator = torch.Generator().manual_seed(0)
                pick = torch.randperm(len(candidates), generator=generator)[: self.config.depth_max_vertices]
                candidates = candidates[pick.sort().values.to(candidates.device)]
            depth_layer = KeypointLayer(self.hand, candidates, dtype=self.dtype, keypoint_offsets=self.keypoint_offsets)
            visible = visible[:, candidates]
            visible_weight = visible.to(self.dtype) / visible.sum(1, keepdim=True).clamp(min=1)
            nearest = None
            if self.config.optimizer == "lm":
                nearest = self._nearest_cloud_points(vertices[:, candidates], cloud_tensor, present)
        return dataclasses.replace(
            problem, cloud=cloud_tensor, cloud_present=present, visible_weight=visible_weight, nearest=nearest, depth_layer=depth_layer
        )
