"""The ``mediapipe`` backend (the default): MediaPipe hand landmarks, lifted with depth, fitted.

The landmarks come from the Tasks API's ``HandLandmarker`` (mediapipe 0.10.35, a core
requirement) running the hand models of the bundle that ``make setup`` builds
(:mod:`egopress_core.assets.hand_landmarker`: palm detector and landmark model of mediapipe
0.10.21). Nothing is downloaded at run time; without the bundle, building the backend raises
:class:`MediaPipeUnavailableError` naming the set-up step.

Per frame: landmarks of up to :attr:`LandmarkerConfig.max_num_hands` hands; the one whose label
names the estimator's side (:func:`~egopress_core.assets.hand_landmarker.side_of_label`, one
convention for library, labeller and node) is kept; its 21 landmarks are converted to pixels,
lifted to metric 3D with the aligned depth (robust window median, holes skipped, readings off
the hand dropped; :func:`~egopress_core.perception.depth.lift_keypoints`), and the hand model is
fitted to the lifted 3D landmarks and the 2D landmarks together
(:class:`~egopress_core.perception.estimators.KeypointFittingEstimator`), warm-started from the
previous frame. What is fitted to them is the model's landmarks: its joints moved by the
offsets measured between them and MediaPipe's landmarks
(:mod:`~egopress_core.perception.landmark_offsets`). A finger landmark's depth reading is its
position only where the previous frame's fit agrees it is seen; otherwise it bounds the landmark
from the camera's side, since the knuckles often hide the fingertips from a head camera
(``finger_depth``). Landmarks without a reading take their depth from MediaPipe's metric world
landmarks anchored to those with one (at half weight: those depths are rough); with fewer than
three readings the fit is 2D-only (depth from the model's size) at half confidence.

Tracking (``running_mode="video"``, the default for streams): between frames MediaPipe follows
the hand from its previous landmarks and runs the palm detector only when it has lost it, which
is what makes camera rate possible (landmarks ~12 ms against ~26 ms with detection per 640 x
480 frame here). MediaPipe skips detection only while it tracks as many hands as it was asked
for, so the estimator tracks ONE hand while that is its own, and switches to tracking
``max_num_hands`` when the single tracked hand is the other one (the wanted hand may be in view
too); after :data:`TRACK_ONE_AFTER_FRAMES` frames in which only its own hand is found it goes
back to one. A hand that comes from the palm detector gets its landmarks estimated a second time
on the same frame, from the box its first landmarks give (as tracking does for the next frame),
which makes them as accurate as tracked ones. :meth:`MediaPipeEstimator.reset` (a cut, a bag
loop, a new chunk) drops the tracking, so the next frame is detected from scratch.
``running_mode="image"`` detects in every frame (independent images).

Each landmarker is closed by :meth:`MediaPipeEstimator.close` (or when the estimator is
collected, or at interpreter exit): MediaPipe's own finaliser fails at interpreter exit.
"""

from __future__ import annotations

import platform
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from egopress_core.assets.hand_landmarker import (
    BUILD_COMMAND,
    BUNDLE_PATH,
    DEFAULT_HANDEDNESS,
    HANDEDNESS_MODES,
    MEDIAPIPE_MACHINES,
    side_of_label,
)
from egopress_core.errors import ConfigError, DataError
from egopress_core.options import from_mapping
from egopress_core.perception.depth import SOURCE_DEPTH, SOURCE_RELATIVE, sample_depth
from egopress_core.perception.estimators import KeypointFittingEstimator
from egopress_core.perception.landmark_offsets import load_keypoint_offsets
from egopress_core.perception.types import NUM_KEYPOINTS, HandMeshEstimate, RGBDFrame

RUNNING_MODES = ("video", "image")
# Weight of a landmark whose depth came from MediaPipe's relative depths instead of the image.
RELATIVE_DEPTH_WEIGHT = 0.5
# How the finger landmarks' depth readings enter the fit (``finger_depth``): "bound" (the nearest
# depth the landmark may have: seen, or hidden behind what the camera sees) or "point" (its 3D
# position, as the palm's).
FINGER_DEPTH_MODES = ("bound", "point")
# The landmarks whose depth reading is taken as their position in either mode: the wrist and
# the knuckles, which a head camera sees.
DEPTH_POINT_KEYPOINTS = (0, 1, 5, 9, 13, 17)
# Slack of a finger landmark's depth bound (metres): the skin-to-joint offset it was pushed back
# by is the model's, not this hand's.
FINGER_BOUND_TOLERANCE_M = 0.005
# A finger landmark whose depth reading is this close to the previous frame's fitted depth is
# taken as seen (its reading is its position).
FINGER_SEEN_TOLERANCE_M = 0.015
# Frames in a row with only the wanted hand in view before tracking goes back to one hand (the
# other hand may just be hidden for a moment; each switch costs one detection).
TRACK_ONE_AFTER_FRAMES = 30


class MediaPipeUnavailableError(ConfigError):
    """The ``mediapipe`` package or the hand-landmarker bundle is missing."""


@dataclass(frozen=True)
class LandmarkerConfig:
    """Options of the MediaPipe hand landmarker.

    Attributes:
        running_mode: "video" (track between the frames of a stream, detect only when the hand
            is lost; stamps must increase, see the module docstring) or "image" (detect in every
            frame, for independent images).
        max_num_hands: the most hands looked for when the tracked hand is not the wanted one
            (1 to 4); 1 never looks past the most prominent hand.
        handedness: how the model's "Left" / "Right" labels map to hands, one of
            :data:`~egopress_core.assets.hand_landmarker.HANDEDNESS_MODES` (default
            ``DEFAULT_HANDEDNESS``, "as_labelled", measured there).
        min_detection_confidence: palm detector score for a new hand, in [0, 1].
        min_presence_confidence: landmark model's hand-presence score below which a tracked hand
            counts as lost (re-detected), in [0, 1].
        min_tracking_confidence: overlap of consecutive frames' hand boxes below which the hand
            is re-detected instead of tracked, in [0, 1].
        bundle_path: the ``.task`` bundle; None: the one ``make setup`` builds
            (:data:`~egopress_core.assets.hand_landmarker.BUNDLE_PATH`).
        landmark_offsets: fit the hand model's landmarks, where MediaPipe's were measured to
            sit on it (:mod:`~egopress_core.perception.landmark_offsets`), to MediaPipe's;
            False fits its joints to them (as before those were measured).
    """

    running_mode: str = "video"
    max_num_hands: int = 2
    handedness: str = DEFAULT_HANDEDNESS
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    bundle_path: str | None = None
    landmark_offsets: bool = True

    def __post_init__(self) -> None:
        if self.running_mode not in RUNNING_MODES:
            raise ConfigError(f"LandmarkerConfig.running_mode must be one of {RUNNING_MODES}. Got {self.running_mode!r}")
        if not isinstance(self.max_num_hands, int) or isinstance(self.max_num_hands, bool) or not 1 <= self.max_num_hands <= 4:
            raise ConfigError(f"LandmarkerConfig.max_num_hands must be an integer in [1, 4]. Got {self.max_num_hands!r}")
        if self.handedness not in HANDEDNESS_MODES:
            raise ConfigError(f"LandmarkerConfig.handedness must be one of {HANDEDNESS_MODES}. Got {self.handedness!r}")
        for name in ("min_detection_confidence", "min_presence_confidence", "min_tracking_confidence"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"LandmarkerConfig.{name} must be a number in [0, 1]. Got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.landmark_offsets, bool):
            raise ConfigError(f"LandmarkerConfig.landmark_offsets must be true or false. Got {self.landmark_offsets!r}")
        if self.bundle_path is not None and not isinstance(self.bundle_path, (str, Path)):
            raise ConfigError(f"LandmarkerConfig.bundle_path must be a path or None. Got {self.bundle_path!r}")

    @classmethod
    def from_options(cls, options: "dict | LandmarkerConfig | None") -> "LandmarkerConfig":
        """A config from a mapping of field values (as YAML gives), naming unknown keys."""
        return from_mapping(cls, options, "landmarker")

    @property
    def bundle(self) -> Path:
        return BUNDLE_PATH if self.bundle_path is None else Path(self.bundle_path)


@dataclass(frozen=True)
class HandLandmarks:
    """One hand MediaPipe found.

    Attributes:
        side: the hand its label names under the handedness mode, or None ("ignore").
        label: the model's label, "Left" or "Right".
        score: the label's score in [0, 1].
        normalised: (21, 3) landmarks, x and y in image widths and heights (continuous: pixel i
            spans [i, i + 1)), z relative depth in image widths.
        world: (21, 3) metric landmarks about the hand's centre (metres, camera-aligned axes), or
            None.
    """

    side: str | None
    label: str
    score: float
    normalised: np.ndarray
    world: np.ndarray | None

    def pixels(self, width: int, height: int) -> np.ndarray:
        """(21, 2) landmarks in OpenCV pixels (integer coordinates at pixel centres)."""
        return np.stack([self.normalised[:, 0] * width - 0.5, self.normalised[:, 1] * height - 0.5], axis=1)


def _load_tasks():
    """(``mediapipe``, ``mediapipe.tasks.python.vision``, ``BaseOptions``), or
    :class:`MediaPipeUnavailableError` naming the set-up step."""
    try:
        import mediapipe
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions
    except ImportError as error:
        machine = platform.machine()
        if machine not in MEDIAPIPE_MACHINES:
            raise MediaPipeUnavailableError(
                f"the mediapipe hand-mesh backend is not available on {platform.system()} {machine}: PyPI has no mediapipe "
                "wheel for it; use the keypoints backend (21 keypoints from another hand tracker)"
            ) from None
        raise MediaPipeUnavailableError(
            f"the mediapipe hand-mesh backend needs the 'mediapipe' package ({error}); install the requirements with: {BUILD_COMMAND}"
        ) from None
    return mediapipe, vision, BaseOptions


class MediaPipeEstimator(KeypointFittingEstimator):
    """MediaPipe hand landmarks + depth lifting + hand-model fit.

    Args:
        landmarker: :class:`LandmarkerConfig` or a mapping of its fields.
        finger_depth: how the depth read at the finger landmarks enters the fit, one of
            :data:`FINGER_DEPTH_MODES`: "bound" (the default: the nearest depth the landmark
            may have, since a head camera often sees the knuckles in front of a fingertip) or
            "point" (its position, as the wrist's and the knuckles' always are).
        **options: those of :class:`KeypointFittingEstimator` (side, model_path, fit, ...).

    Attributes:
        stage_times_s: seconds per stage of the last :meth:`estimate`: "detect" (MediaPipe),
            "lift" (depth lifting) and "fit" (the hand-model fit, result included).
        last_landmarks: the :class:`HandLandmarks` the last :meth:`estimate` fitted, or None.
    """

    name = "mediapipe"

    def __init__(
        self,
        side: str = "right",
        model_path: str | None = None,
        hand_model=None,
        fit=None,
        depth_refinement: bool | None = None,
        min_keypoints: int = 6,
        min_confidence: float = 0.25,
        inlier_threshold_m: float = 0.02,
        inlier_threshold_px: float = 15.0,
        cloud_radius_m: float = 0.025,
        window_radius_px: int = 3,
        max_depth_spread_m: float = 0.15,
        landmarker: LandmarkerConfig | dict | None = None,
        finger_depth: str = "bound",
    ) -> None:
        if finger_depth not in FINGER_DEPTH_MODES:
            raise ConfigError(f"finger_depth must be one of {FINGER_DEPTH_MODES}. Got {finger_depth!r}")
        self.finger_depth = finger_depth
        self.landmarker_config = LandmarkerConfig.from_options(landmarker)
        bundle = self.landmarker_config.bundle
        # Both checks before loading the hand model: fail fast, with the fix in one line.
        self._mediapipe, self._vision, self._base_options = _load_tasks()
        if not bundle.is_file():
            raise MediaPipeUnavailableError(f"the mediapipe hand-landmarker bundle {bundle} is missing; build it with: {BUILD_COMMAND}")
        super().__init__(
            side=side, model_path=model_path, hand_model=hand_model, fit=fit, depth_refinement=depth_refinement,
            min_keypoints=min_keypoints, min_confidence=min_confidence, inlier_threshold_m=inlier_threshold_m,
            inlier_threshold_px=inlier_threshold_px, cloud_radius_m=cloud_radius_m, window_radius_px=window_radius_px,
            max_depth_spread_m=max_depth_spread_m,
        )  # fmt: skip
        self.handedness = self.landmarker_config.handedness
        self._landmarkers: dict[int, object] = {}  # hands tracked -> HandLandmarker
        self._finalisers: dict[int, weakref.finalize] = {}
        self._tracked_counts: dict[int, int] = {}  # hands tracked -> hands its last call found
        self._tracked_hands = 1
        self._alone_frames = 0
        self._last_timestamp_ms: int | None = None
        self.stage_times_s: dict[str, float] = {}
        self.last_landmarks: HandLandmarks | None = None

    def _keypoint_offsets(self, hand) -> np.ndarray | None:
        if not self.landmarker_config.landmark_offsets:
            self.landmark_offsets_source = "off (landmarker.landmark_offsets: false): fitting the joints to MediaPipe's landmarks"
            return None
        offsets, self.landmark_offsets_source = load_keypoint_offsets(hand)
        return offsets

    # -- the landmarkers --------------------------------------------------------------------

    def _landmarker(self, hands: int):
        """The landmarker tracking ``hands`` hands, created on first use."""
        if hands not in self._landmarkers:
            config, vision = self.landmarker_config, self._vision
            mode = vision.RunningMode.VIDEO if config.running_mode == "video" else vision.RunningMode.IMAGE
            options = vision.HandLandmarkerOptions(
                base_options=self._base_options(model_asset_path=str(config.bundle)), running_mode=mode, num_hands=hands,
                min_hand_detection_confidence=config.min_detection_confidence,
                min_hand_presence_confidence=config.min_presence_confidence,
                min_tracking_confidence=config.min_tracking_confidence,
            )  # fmt: skip
            try:
                landmarker = vision.HandLandmarker.create_from_options(options)
            except (RuntimeError, ValueError) as error:
                raise MediaPipeUnavailableError(f"MediaPipe cannot load the hand-landmarker bundle {config.bundle} ({error}); "
                                                f"rebuild it with: {BUILD_COMMAND}") from None  # fmt: skip
            self._landmarkers[hands] = landmarker
            self._finalisers[hands] = weakref.finalize(self, landmarker.close)
        return self._landmarkers[hands]

    def _drop(self, hands: int) -> None:
        """Closes the landmarker tracking ``hands`` hands: its next use starts afresh."""
        finaliser = self._finalisers.pop(hands, None)
        self._landmarkers.pop(hands, None)
        self._tracked_counts.pop(hands, None)
        if finaliser is not None:
            finaliser()

    def reset(self) -> None:
        """Forgets the warm start and MediaPipe's tracking: the next frame is detected afresh."""
        super().reset()
        for hands in list(self._landmarkers):
            self._drop(hands)
        self._tracked_hands = 1
        self._alone_frames = 0
        self._last_timestamp_ms = None

    def _timestamp_ms(self, stamp: float) -> int:
        """A timestamp for VIDEO mode, which needs them strictly increasing: the frame's stamp in
        milliseconds, or one more than the last where stamps repeat or step back."""
        stamp_ms = int(round(stamp * 1000.0))
        if self._last_timestamp_ms is not None and stamp_ms <= self._last_timestamp_ms:
            stamp_ms = self._last_timestamp_ms + 1
        self._last_timestamp_ms = stamp_ms
        return stamp_ms

    def _run(self, hands: int, image, timestamp_ms: int) -> list[HandLandmarks]:
        """The hands the landmarker tracking ``hands`` hands finds. In video mode, a hand that
        was not tracked in its previous call came from the palm detector's box, and its
        landmarks are re-estimated once on the same image from the box they give: on rendered
        hands that took the landmarks from 14.6 to 11.4 px of the joints (right hand) and from
        17.3 to 14.6 px (left), as close as tracking gets them, for one more landmark pass
        (~10 ms) on the frames that needed a detection."""
        found = self._landmark(hands, image, timestamp_ms)
        if self.landmarker_config.running_mode == "video":
            if len(found) > self._tracked_counts.get(hands, 0):
                refined = self._landmark(hands, image, self._timestamp_ms(timestamp_ms / 1000.0))
                found = refined if len(refined) >= len(found) else found
            self._tracked_counts[hands] = len(found)
        return found

    def _landmark(self, hands: int, image, timestamp_ms: int) -> list[HandLandmarks]:
        landmarker = self._landmarker(hands)
        if self.landmarker_config.running_mode == "video":
            result = landmarker.detect_for_video(image, timestamp_ms)
        else:
            result = landmarker.detect(image)
        found = []
        world = result.hand_world_landmarks or [None] * len(result.hand_landmarks)
        for landmarks, categories, world_landmarks in zip(result.hand_landmarks, result.handedness, world):
            category = max(categories, key=lambda item: item.score)
            label = category.category_name or category.display_name
            points = np.array([[p.x, p.y, p.z] for p in landmarks], dtype=np.float64)
            metric = None if not world_landmarks else np.array([[p.x, p.y, p.z] for p in world_landmarks], dtype=np.float64)
            found.append(HandLandmarks(side_of_label(label, self.handedness), label, float(category.score), points, metric))
        return found

    def _wanted(self, hands: list[HandLandmarks]) -> list[HandLandmarks]:
        return hands if self.handedness == "ignore" else [hand for hand in hands if hand.side == self.hand_side]

    def detect(self, rgb: np.ndarray, stamp: float = 0.0) -> list[HandLandmarks]:
        """The hands MediaPipe finds in an (H, W, 3) uint8 RGB image (taken at ``stamp`` seconds,
        for tracking between frames), with tracking of one or ``max_num_hands`` hands as the
        module docstring says."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise DataError(f"the mediapipe backend needs an (H, W, 3) uint8 RGB image; got {getattr(rgb, 'shape', type(rgb).__name__)}")
        image = self._mediapipe.Image(image_format=self._mediapipe.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        timestamp = self._timestamp_ms(stamp)
        most = self.landmarker_config.max_num_hands
        if self.landmarker_config.running_mode == "image" or self.handedness == "ignore" or most == 1:
            # Every hand at once (image), or any hand will do (ignore, one hand).
            return self._run(most if self.landmarker_config.running_mode == "image" else 1, image, timestamp)
        hands = self._run(self._tracked_hands, image, timestamp)
        if self._tracked_hands == 1 and hands and not self._wanted(hands):
            # The one tracked hand is the other one; the wanted one may be in view as well.
            self._tracked_hands, self._alone_frames = most, 0
            self._drop(most)  # its tracking state is stale
            hands = self._run(most, image, timestamp)
        elif self._tracked_hands == most:
            alone = len(hands) == 1 and bool(self._wanted(hands))
            self._alone_frames = self._alone_frames + 1 if alone else 0
            if self._alone_frames >= TRACK_ONE_AFTER_FRAMES:
                self._tracked_hands, self._alone_frames = 1, 0
                self._drop(1)  # detect afresh on the next frame
        return hands

    # -- estimation -------------------------------------------------------------------------

    def estimate(self, frame: RGBDFrame) -> HandMeshEstimate | None:
        started = time.perf_counter()
        if not isinstance(frame, RGBDFrame):
            raise DataError(f"estimate() takes an RGBDFrame; got {type(frame).__name__}")
        if frame.rgb is None:
            raise DataError("the mediapipe backend needs frame.rgb (H, W, 3) uint8")
        hands = self._wanted(self.detect(frame.rgb, frame.stamp))
        detected = time.perf_counter()
        self.stage_times_s = {"detect": detected - started, "lift": 0.0, "fit": 0.0}
        self.last_landmarks = None
        if not hands:
            self._previous = None
            return self._no_hand(f"MediaPipe found no {self.hand_side} hand")
        hand = self.last_landmarks = max(hands, key=lambda found: found.score)
        if hand.normalised.shape != (NUM_KEYPOINTS, 3) or not np.all(np.isfinite(hand.normalised)):
            return self._no_hand("MediaPipe returned malformed landmarks")
        height, width = frame.rgb.shape[:2]
        points_2d = hand.pixels(width, height)
        points_3d, weights_3d = None, None
        if frame.depth_m is not None:
            relative = self._relative_depth(hand, points_2d, frame)
            lifted = self.lift(frame, points_2d, relative)
            if lifted.num_from_depth >= 3:
                points_3d = lifted.points_3d
                weights_3d = np.select([lifted.source == SOURCE_DEPTH, lifted.source == SOURCE_RELATIVE], [1.0, RELATIVE_DEPTH_WEIGHT], 0.0)
        lifted_at = time.perf_counter()
        if points_3d is not None and self.finger_depth == "bound":
            # Depth read at a finger landmark is the skin seen there: the finger's own, or the
            # knuckles in front of a fingertip they hide. Where the previous frame's fit put the
            # landmark at that depth, it is seen and the reading is its position; otherwise, and
            # in a first frame, the reading only bounds it from the camera's side. The palm's
            # landmarks are seen and keep their 3D position. Where that fit explains too few
            # landmarks (a first frame's can be too loose), the frame is fitted again with every
            # reading as a position.
            fingers = np.ones(NUM_KEYPOINTS, dtype=bool)
            fingers[list(DEPTH_POINT_KEYPOINTS)] = False
            previous = self._previous_keypoints()
            if previous is not None:
                fingers &= ~(np.abs(points_3d[:, 2] - previous[:, 2]) <= FINGER_SEEN_TOLERANCE_M)
            read = fingers & (weights_3d > 0) & (lifted.source == SOURCE_DEPTH)
            bounds = np.where(read, points_3d[:, 2] - FINGER_BOUND_TOLERANCE_M, np.nan)
            positions = np.where(fingers[:, None], np.nan, points_3d)
            estimate = self.fit_frame(frame, positions, np.where(fingers, 0.0, weights_3d), points_2d, np.ones(NUM_KEYPOINTS),
                                      hand.score, started=started, depth_bounds_m=bounds, anchors_3d=points_3d)  # fmt: skip
            if estimate is not None:
                self.stage_times_s.update(lift=lifted_at - detected, fit=time.perf_counter() - lifted_at)
                return estimate
        estimate = self.fit_frame(frame, points_3d, weights_3d, points_2d, np.ones(NUM_KEYPOINTS), hand.score, started=started)
        self.stage_times_s.update(lift=lifted_at - detected, fit=time.perf_counter() - lifted_at)
        return estimate

    def _previous_keypoints(self) -> np.ndarray | None:
        """(21, 3) the previous frame's fitted landmarks, or None without a previous fit."""
        if self._previous is None:
            return None
        params = self._previous[0]
        values = [torch.as_tensor(value, dtype=torch.float64) for value in
                  (params.global_orient, params.hand_pose, params.betas, params.transl)]  # fmt: skip
        with torch.no_grad():
            return self.fitter.keypoint_layer(*values)[0].numpy()

    @staticmethod
    def _relative_depth(hand: HandLandmarks, points_2d: np.ndarray, frame: RGBDFrame) -> np.ndarray | None:
        """(21,) metric relative depths: the world landmarks' z (metres, camera-aligned axes),
        else the normalised z (image-width units) scaled to metres at the landmarks' median
        depth; None if neither is available."""
        world = hand.world
        if world is not None and world.shape == (NUM_KEYPOINTS, 3) and np.all(np.isfinite(world)):
            return world[:, 2]
        readings = sample_depth(frame.depth_m, points_2d)
        if not np.isfinite(readings).any():
            return None
        return hand.normalised[:, 2] * frame.rgb.shape[1] * float(np.nanmedian(readings)) / frame.intrinsics[0, 0]

