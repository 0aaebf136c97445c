"""Hand-mesh estimators: one RGB-D frame in, one MANO-format hand mesh (or "no hand") out.

The estimator classes every backend builds on: :class:`HandMeshEstimator` (the interface),
:class:`KeypointFittingEstimator` (21 keypoints lifted with depth, then fitted; the mediapipe
backend in :mod:`~egopress_core.perception.mediapipe_backend` subclasses it),
:class:`KeypointsEstimator` (keypoints another tracker or a data set supplies in
``RGBDFrame.keypoints``) and :class:`GroundTruthEstimator` (the annotated hand of a data set
record, passed through). Backends are built by name with
:func:`~egopress_core.perception.backends.build_estimator`, which sits above this module and the
mediapipe one so that neither imports the other's layer (``docs/design.md``, "Layers and
imports").

Every estimator answers ``None`` for "no hand" and sets :attr:`HandMeshEstimator.last_failure`
to the reason; an estimate with confidence 0 means the same to consumers
(:func:`~egopress_core.perception.types.is_hand`). Bad input (wrong shapes, dtypes, invalid
intrinsics, a backend given frames it cannot use) raises
:class:`~egopress_core.errors.DataError`; bad options raise
:class:`~egopress_core.errors.ConfigError`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import time

import numpy as np
import torch

from egopress_core.data.records import FrameRecord, ManoParams
from egopress_core.errors import ConfigError, DataError
from egopress_core.hand.hand_model import HandModel, load_hand_model
from egopress_core.perception.depth import SOURCE_DEPTH, hand_point_cloud, joint_surface_offsets, lift_keypoints
from egopress_core.perception.fitting import FitConfig, FitParams, FitResult, FitTargets, HandFitter
from egopress_core.perception.types import (
    HAND_SIDES,
    NUM_KEYPOINTS,
    HandMeshEstimate,
    RGBDFrame,
)

# A fit to 2D keypoints alone has its depth only from the model's size: its confidence is halved.
TWO_D_ONLY_CONFIDENCE_FACTOR = 0.5
# OpenPose hand skeleton (parent, child), used to densify keypoints into crop anchors.
HAND_BONES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
    (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20), (5, 9), (9, 13), (13, 17),
)  # fmt: skip


def _check_side(side) -> str:
    if side not in HAND_SIDES:
        raise ConfigError(f"hand side must be one of {HAND_SIDES}. Got {side!r}")
    return side


def _check_frame(frame) -> RGBDFrame:
    if not isinstance(frame, RGBDFrame):
        raise DataError(f"estimate() takes an RGBDFrame; got {type(frame).__name__}")
    return frame


class HandMeshEstimator(abc.ABC):
    """Base of the backends.

    Attributes:
        name: the backend name written into each estimate ("mediapipe", ...).
        hand_side: the hand this estimator looks for ("right" / "left").
        last_failure: why the last :meth:`estimate` returned None, else None.
    """

    name: str = ""

    def __init__(self, side: str) -> None:
        self.hand_side = _check_side(side)
        self.last_failure: str | None = None

    @abc.abstractmethod
    def estimate(self, frame: RGBDFrame) -> HandMeshEstimate | None:
        """The hand mesh of one frame, or None if no hand was found (see ``last_failure``)."""

    def reset(self) -> None:
        """Forgets the temporal state (warm start, tracking), e.g. at a cut in the video."""
        self.last_failure = None

    def close(self) -> None:
        """Releases what the estimator holds besides its hand model (the mediapipe backend's
        graphs); it stays usable and makes them again when needed. Call it when done."""
        self.reset()

    def _no_hand(self, reason: str) -> None:
        self.last_failure = reason
        return None


def keypoint_anchor_points(points_3d: np.ndarray, samples_per_bone: int = 6) -> np.ndarray:
    """(M, 3) points along the hand skeleton through the finite rows of (21, 3) keypoints: where
    the hand's surface is expected, within a finger radius."""
    anchors = [points_3d[np.isfinite(points_3d).all(1)]]
    steps = np.linspace(0.0, 1.0, samples_per_bone)[1:-1, None]
    for parent, child in HAND_BONES:
        if np.isfinite(points_3d[[parent, child]]).all():
            anchors.append(points_3d[parent] + steps * (points_3d[child] - points_3d[parent]))
    return np.concatenate(anchors)


class KeypointFittingEstimator(HandMeshEstimator):
    """Shared machinery of the backends that fit the hand model to keypoints.

    Args:
        side: "right" or "left".
        model_path: MANO-format ``.pkl`` (or a folder with ``MANO_RIGHT.pkl``); None: the
            bundled hand.
        hand_model: an already loaded model (overrides ``side``/``model_path``); it must use
            ``flat_hand_mean=True``.
        fit: :class:`FitConfig` or a mapping of its fields.
        depth_refinement: also fit the model's visible surface to the depth point cloud
            (overrides ``FitConfig.depth_refinement``; None keeps the fit config's, off by default).
        min_keypoints: fewer usable keypoints than this is "no hand".
        min_confidence: a fit whose confidence is below this is "no hand".
        inlier_threshold_m / inlier_threshold_px: a keypoint counts as explained by the fit when
            its 3D (else 2D) residual is below this; the confidence is the confidence-weighted
            fraction of explained keypoints, times the detector's score, halved for a fit to 2D
            keypoints alone.
        cloud_radius_m: depth points within this of the keypoint skeleton form the hand's cloud.
        window_radius_px: depth window of the keypoint lifting.
        max_depth_spread_m: depth readings further than this from the hand's median reading
            are dropped in the keypoint lifting.
    """

    def __init__(
        self,
        side: str = "right",
        model_path: str | None = None,
        hand_model: HandModel | None = None,
        fit: FitConfig | dict | None = None,
        depth_refinement: bool | None = None,
        min_keypoints: int = 6,
        min_confidence: float = 0.25,
        inlier_threshold_m: float = 0.02,
        inlier_threshold_px: float = 15.0,
        cloud_radius_m: float = 0.025,
        window_radius_px: int = 3,
        max_depth_spread_m: float = 0.15,
    ) -> None:
        if hand_model is not None:
            if not isinstance(hand_model, HandModel):
                raise ConfigError(f"hand_model must be a HandModel. Got {type(hand_model).__name__}")
            side = hand_model.side
        super().__init__(side)
        if depth_refinement is not None and not isinstance(depth_refinement, bool):
            raise ConfigError(f"depth_refinement must be a bool or None. Got {depth_refinement!r}")
        if not isinstance(min_keypoints, int) or isinstance(min_keypoints, bool) or not 3 <= min_keypoints <= NUM_KEYPOINTS:
            raise ConfigError(f"min_keypoints must be an integer in [3, 21]. Got {min_keypoints!r}")
        for option, value, low in (
            ("min_confidence", min_confidence, 0.0), ("inlier_threshold_m", inlier_threshold_m, None),
            ("inlier_threshold_px", inlier_threshold_px, None), ("cloud_radius_m", cloud_radius_m, None),
            ("max_depth_spread_m", max_depth_spread_m, None),
        ):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{option} must be a number. Got {value!r}")
            if (low is None and value <= 0) or (low is not None and not low <= value <= 1):
                raise ConfigError(f"{option} must be {'in [0, 1]' if low is not None else 'positive'}. Got {value!r}")
        if not isinstance(window_radius_px, int) or isinstance(window_radius_px, bool) or not 0 <= window_radius_px <= 50:
            raise ConfigError(f"window_radius_px must be an integer in [0, 50]. Got {window_radius_px!r}")
        config = FitConfig.from_options(fit)
        if depth_refinement is not None:
            config = dataclasses.replace(config, depth_refinement=depth_refinement)
        self.hand = hand_model if hand_model is not None else load_hand_model(side, model_path)
        self.fitter = HandFitter(self.hand, config, keypoint_offsets=self._keypoint_offsets(self.hand))
        self.min_keypoints = min_keypoints
        self.min_confidence = float(min_confidence)
        self.inlier_threshold_m = float(inlier_threshold_m)
        self.inlier_threshold_px = float(inlier_threshold_px)
        self.cloud_radius_m = float(cloud_radius_m)
        self.window_radius_px = window_radius_px
        self.max_depth_spread_m = float(max_depth_spread_m)
        self.surface_offsets_m = joint_surface_offsets(self.hand)
        self._previous: tuple[FitParams, float] | None = None
        # The last fit's result (its stage times, iterations), for benchmarks and diagnostics.
        self.last_fit: FitResult | None = None

    @property
    def config(self) -> FitConfig:
        return self.fitter.config

    def _keypoint_offsets(self, hand: HandModel) -> np.ndarray | None:
        """Where this backend's keypoints sit relative to ``hand``'s joints (see
        :class:`~egopress_core.perception.fitting.KeypointLayer`); None: at the joints, as a
        tracker giving joint centres (or the ground truth) has them."""
        return None

    def reset(self) -> None:
        super().reset()
        self._previous = None

    def warm_up(self) -> None:
        """Runs one fit on the model's own joints so that the first real frame does not pay
        torch's one-off start-up costs (lazy initialisation of its linear algebra); with
        ``depth_refinement`` the warm-up runs that stage too."""
        with torch.no_grad():
            rest = self.hand.rest()
        offset = np.array([0.0, 0.0, 0.5])
        joints = rest.joints[0].cpu().double().numpy() + offset
        clouds = [rest.vertices[0].cpu().double().numpy() + offset] if self.config.depth_refinement else None
        self.fitter.fit(FitTargets(points_3d=joints[None], clouds=clouds))

    def lift(self, frame: RGBDFrame, points_2d: np.ndarray, relative_depth_m: np.ndarray | None = None):
        """:func:`lift_keypoints` with this estimator's model offsets and options."""
        return lift_keypoints(
            points_2d, frame.depth_m, frame.intrinsics, relative_depth_m=relative_depth_m,
            surface_offset_m=self.surface_offsets_m, window_radius_px=self.window_radius_px,
            max_depth_spread_m=self.max_depth_spread_m,
        )  # fmt: skip

    def fit_frame(
        self,
        frame: RGBDFrame,
        points_3d: np.ndarray | None,
        weights_3d: np.ndarray | None,
        points_2d: np.ndarray | None,
        weights_2d: np.ndarray | None,
        detection_confidence: float = 1.0,
        started: float | None = None,
        depth_bounds_m: np.ndarray | None = None,
        anchors_3d: np.ndarray | None = None,
    ) -> HandMeshEstimate | None:
        """Fits the model to one frame's keypoints; None ("no hand") when too few are usable or
        the fit explains too few of them.

        Args:
            points_3d: (21, 3) metres or None; weights_3d: (21,) or None (1 where finite).
            points_2d: (21, 2) pixels or None; weights_2d: (21,) or None.
            detection_confidence: the detector's score in [0, 1], multiplied into the confidence.
            started: ``time.perf_counter()`` when this frame's processing began (detection
                included), for ``fit_time_s``.
            depth_bounds_m: (21,) nearest depth each keypoint may have (NaN: none), see
                :class:`~egopress_core.perception.fitting.FitTargets`.
            anchors_3d: (21, 3) where to gather the depth cloud around (default ``points_3d``).
        """
        started = time.perf_counter() if started is None else started
        w3 = np.zeros(NUM_KEYPOINTS) if points_3d is None else np.where(np.isfinite(points_3d).all(1), 1.0 if weights_3d is None else weights_3d, 0.0)
        w2 = np.zeros(NUM_KEYPOINTS) if points_2d is None else np.where(np.isfinite(points_2d).all(1), 1.0 if weights_2d is None else weights_2d, 0.0)
        usable = int(np.maximum(w3 > 0, w2 > 0).sum())
        if usable < self.min_keypoints:
            return self._no_hand(f"{usable} usable keypoints, fewer than min_keypoints={self.min_keypoints}")
        has_3d = (w3 > 0).sum() >= 3
        clouds = None
        depth_maps = None
        if self.config.depth_refinement and frame.depth_m is not None and has_3d:
            anchors = points_3d if anchors_3d is None else anchors_3d
            cloud = hand_point_cloud(frame.depth_m, frame.intrinsics, keypoint_anchor_points(anchors), radius_m=self.cloud_radius_m)
            if len(cloud):
                clouds, depth_maps = [cloud], [frame.depth_m]
        targets = FitTargets(
            points_3d=points_3d[None] if has_3d else None,
            weights_3d=w3[None] if has_3d else None,
            points_2d=points_2d[None] if points_2d is not None and (w2 > 0).any() else None,
            weights_2d=w2[None] if points_2d is not None and (w2 > 0).any() else None,
            intrinsics=frame.intrinsics[None],
            clouds=clouds,
            depth_maps=depth_maps,
            depth_bounds_m=None if depth_bounds_m is None else np.asarray(depth_bounds_m, dtype=np.float64)[None],
        )
        previous, gap = None, None
        if self._previous is not None:
            previous, previous_stamp = self._previous
            gap = frame.stamp - previous_stamp
        result = self.last_fit = self.fitter.fit(targets, previous=previous, time_gap_s=gap)
        confidence = float(detection_confidence) * self._explained_fraction(result, w3 if has_3d else np.zeros(NUM_KEYPOINTS), w2)
        if not has_3d:
            confidence *= TWO_D_ONLY_CONFIDENCE_FACTOR
        if confidence < self.min_confidence or confidence <= 0:
            self._previous = None
            return self._no_hand(f"the fitted hand explains too few keypoints (confidence {confidence:.2f} < {self.min_confidence})")
        self._previous = (result.params, frame.stamp)
        self.last_failure = None
        return self._estimate_from_fit(frame, result, confidence, points_3d if has_3d else None, started)

    def _explained_fraction(self, result: FitResult, w3: np.ndarray, w2: np.ndarray) -> float:
        residual_3d = result.residual_3d_m[0]
        residual_2d = result.residual_2d_px[0]
        weight = np.where(w3 > 0, w3, w2)
        explained = np.where(
            w3 > 0, np.nan_to_num(residual_3d, nan=np.inf) < self.inlier_threshold_m, np.nan_to_num(residual_2d, nan=np.inf) < self.inlier_threshold_px
        )
        total = weight.sum()
        return float((weight * explained).sum() / total) if total > 0 else 0.0

    def _estimate_from_fit(self, frame, result: FitResult, confidence: float, points_3d, started: float) -> HandMeshEstimate:
        params = result.params
        numpy = lambda tensor: tensor[0].detach().cpu().double().numpy()  # noqa: E731
        return HandMeshEstimate(
            mano=ManoParams(
                global_orient=numpy(params.global_orient), hand_pose=numpy(params.hand_pose),
                betas=numpy(params.betas), transl=numpy(params.transl),
            ),  # fmt: skip
            vertices=result.vertices[0].cpu().numpy(),
            joints=result.joints[0].cpu().numpy(),
            confidence=min(max(confidence, 0.0), 1.0),
            estimator=self.name,
            hand_side=self.hand.side,
            hand_model=self.hand.name,
            topology_id=self.hand.topology_id,
            stamp=frame.stamp,
            observed_keypoints=None if points_3d is None else np.asarray(points_3d, dtype=np.float64),
            keypoint_residual_m=result.residual_3d_m[0] if points_3d is not None else None,
            fit_time_s=time.perf_counter() - started,
            iterations=result.iterations,
        )


class KeypointsEstimator(KeypointFittingEstimator):
    """Fits the hand model to the keypoints each frame carries (``RGBDFrame.keypoints``).

    3D keypoints are used as given (plus their 2D projections if given too). With only 2D
    keypoints, a frame with depth has them lifted to 3D (:func:`lift_keypoints`); without depth
    (or with fewer than three readings) the fit is 2D-only, its depth coming from the model's
    size (a weaker estimate, reported at half confidence).
    Options: those of :class:`KeypointFittingEstimator`.
    """

    name = "keypoints"

    def estimate(self, frame: RGBDFrame) -> HandMeshEstimate | None:
        started = time.perf_counter()
        frame = _check_frame(frame)
        keypoints = frame.keypoints
        if keypoints is None:
            raise DataError("the keypoints backend needs frame.keypoints (HandKeypoints with points_3d and/or points_2d)")
        if keypoints.hand_side is not None and keypoints.hand_side != self.hand_side:
            raise DataError(f"frame.keypoints are of the {keypoints.hand_side} hand; this estimator fits the {self.hand_side} hand")
        weights = keypoints.weights()
        points_3d = keypoints.points_3d
        weights_3d = weights if points_3d is not None else None
        if points_3d is None and frame.depth_m is not None:
            lifted = self.lift(frame, keypoints.points_2d)
            points_3d = lifted.points_3d
            weights_3d = np.where(lifted.source == SOURCE_DEPTH, weights, 0.0)
        return self.fit_frame(frame, points_3d, weights_3d, keypoints.points_2d, weights if keypoints.points_2d is not None else None, started=started)


class GroundTruthEstimator(HandMeshEstimator):
    """Passes through the annotated hand of the frame's data set record (confidence 1).

    Frames come from :meth:`RGBDFrame.from_record`. A record without annotation is "no hand".
    The record's vertices must follow the hand model's topology (same vertex count); records
    without vertices are posed from their MANO parameters.

    Args:
        side: the hand to report; a record of the other hand is "no hand". None: any hand.
        model_path: MANO-format ``.pkl`` of the topology the records use (None: the bundled
            hand, which the synthetic generator uses).
    """

    name = "ground_truth"

    def __init__(self, side: str | None = None, model_path: str | None = None) -> None:
        super().__init__("right" if side is None else side)
        self.any_side = side is None
        self.model_path = model_path
        self._models: dict[str, HandModel] = {}

    def _model(self, side: str) -> HandModel:
        if side not in self._models:
            self._models[side] = load_hand_model(side, self.model_path)
        return self._models[side]

    def estimate(self, frame: RGBDFrame) -> HandMeshEstimate | None:
        started = time.perf_counter()
        frame = _check_frame(frame)
        record = frame.source_record
        if record is None:
            raise DataError("the ground_truth backend needs frames made by RGBDFrame.from_record(record)")
        if not self.any_side and record.hand_side != self.hand_side:
            return self._no_hand(f"record {record.sequence}[{record.index}] shows the {record.hand_side} hand, not the {self.hand_side}")
        if not record.has_annotation or record.mano is None:
            return self._no_hand(f"record {record.sequence}[{record.index}] has no hand annotation")
        if record.hand_side not in HAND_SIDES:
            raise DataError(f"record {record.sequence}[{record.index}]: hand_side must be one of {HAND_SIDES}; got {record.hand_side!r}")
        model = self._model(record.hand_side)
        mano = self._checked_mano(record)
        vertices, joints = record.vertices, record.joints
        if vertices is None or joints is None:
            with torch.no_grad():
                as_batch = lambda value: torch.as_tensor(np.asarray(value, dtype=np.float32))[None]  # noqa: E731
                output = model(as_batch(mano.global_orient), as_batch(mano.hand_pose), as_batch(mano.betas), as_batch(mano.transl))
            vertices = output.vertices[0].numpy() if vertices is None else vertices
            joints = output.joints[0].numpy() if joints is None else joints
        vertices = np.asarray(vertices)
        if vertices.ndim != 2 or vertices.shape != (model.num_vertices, 3):
            raise DataError(
                f"record {record.sequence}[{record.index}] has vertices of shape {vertices.shape}, but hand model "
                f"{model.name} has {model.num_vertices} vertices; pass model_path= of the records' hand model"
            )
        self.last_failure = None
        return HandMeshEstimate(
            mano=mano, vertices=vertices, joints=joints, confidence=1.0, estimator=self.name, hand_side=record.hand_side,
            hand_model=model.name, topology_id=model.topology_id, stamp=frame.stamp, fit_time_s=time.perf_counter() - started,
        )  # fmt: skip

    @staticmethod
    def _checked_mano(record: FrameRecord) -> ManoParams:
        values = {}
        for name, size in (("global_orient", 3), ("hand_pose", 45), ("betas", 10), ("transl", 3)):
            value = np.asarray(getattr(record.mano, name), dtype=np.float64).reshape(-1)
            if value.shape != (size,) or not np.all(np.isfinite(value)):
                raise DataError(f"record {record.sequence}[{record.index}]: mano.{name} must be {size} finite values; got shape {value.shape}")
            values[name] = value
        return ManoParams(**values)
