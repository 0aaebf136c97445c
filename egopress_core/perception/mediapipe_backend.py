"""The ``mediapipe`` backend: MediaPipe Hands landmarks, lifted with depth, fitted.

MediaPipe's hand landmark models ship inside the ``mediapipe`` 0.10.x wheels (the legacy
``mediapipe.solutions.hands`` graph with ``palm_detection_full.tflite`` and
``hand_landmark_full.tflite``). Those wheels pin ``numpy<2`` and ``protobuf<5``, which conflict
with the rest of EgoPress (NumPy 2), so the package is an optional extra installed into its own
environment (``requirements/mediapipe.txt``, see the README). It is imported only when this
backend is built; without it, building raises :class:`MediaPipeUnavailableError` naming the
install command.

Per frame: detect up to ``max_num_hands`` hands, keep the one whose handedness matches the
estimator's side (see ``handedness``), convert its 21 landmarks to pixels, lift them to metric 3D
with the aligned depth (robust window median, holes skipped, readings off the hand dropped;
:func:`~egopress_core.perception.depth.lift_keypoints`), and fit the hand model to the lifted
3D landmarks and the 2D landmarks together
(:class:`~egopress_core.perception.estimators.KeypointFittingEstimator`). Landmarks without a
reading take their depth from MediaPipe's metric world landmarks anchored to those with one
(at half weight: those depths are rough); with fewer than three readings the fit is 2D-only
(depth from the model's size) at half confidence.
"""

from __future__ import annotations

import time

import numpy as np

from egopress_core.errors import ConfigError, DataError
from egopress_core.perception.depth import SOURCE_DEPTH, SOURCE_RELATIVE, sample_depth
from egopress_core.perception.estimators import KeypointFittingEstimator
from egopress_core.perception.types import NUM_KEYPOINTS, HandMeshEstimate, RGBDFrame

HANDEDNESS_MODES = ("as_labelled", "swapped", "ignore")
INSTALL_HINT = (
    "python3.11 -m venv .venv-mediapipe && .venv-mediapipe/bin/pip install -r requirements/mediapipe.txt "
    "(mediapipe 0.10.x pins numpy<2 and protobuf<5, so it cannot share the main environment's NumPy 2)"
)
# Weight of a landmark whose depth came from MediaPipe's relative depths instead of the image.
RELATIVE_DEPTH_WEIGHT = 0.5


class MediaPipeUnavailableError(ConfigError):
    """The optional ``mediapipe`` package (0.10.x, with the Hands solution) is not importable."""


def import_mediapipe_hands():
    """``mediapipe.solutions.hands``, or :class:`MediaPipeUnavailableError` with the install hint."""
    try:
        from mediapipe.python.solutions import hands
    except ImportError as error:
        raise MediaPipeUnavailableError(
            f"the mediapipe hand-mesh estimator needs the optional 'mediapipe' package ({error}). Install it with: {INSTALL_HINT}"
        ) from None
    return hands


class MediaPipeEstimator(KeypointFittingEstimator):
    """MediaPipe Hands + depth lifting + hand-model fit.

    Args:
        model_complexity: 0 (``hand_landmark_lite``) or 1 (``hand_landmark_full``).
        min_detection_confidence / min_tracking_confidence: MediaPipe's thresholds.
        static_image_mode: True detects in every frame; False tracks between frames (video).
        max_num_hands: hands MediaPipe looks for (the best one of ``side`` is fitted).
        handedness: how MediaPipe's "Left"/"Right" labels map to hands. "swapped" (default):
            MediaPipe labels as if the image were mirrored (a selfie camera), so for the
            non-mirrored images of a head-mounted or robot camera its labels are swapped. Measured
            with 0.10.21 on rendered hands seen from the back (as an egocentric camera sees them)
            and on the synthetic generator's frames: the right hand was labelled "Left" at 0.88-0.99
            and the left "Right" at 0.95; palm-side renders were labelled inconsistently.
            "as_labelled" for mirrored input; "ignore" takes the most confident hand whatever
            its label (one-handed scenes).
        **options: those of :class:`KeypointFittingEstimator` (side, model_path, fit, ...).
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
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        static_image_mode: bool = False,
        max_num_hands: int = 2,
        handedness: str = "swapped",
    ) -> None:
        if model_complexity not in (0, 1) or isinstance(model_complexity, bool):
            raise ConfigError(f"model_complexity must be 0 or 1. Got {model_complexity!r}")
        for option, value in (("min_detection_confidence", min_detection_confidence), ("min_tracking_confidence", min_tracking_confidence)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{option} must be in [0, 1]. Got {value!r}")
        if not isinstance(static_image_mode, bool):
            raise ConfigError(f"static_image_mode must be a bool. Got {static_image_mode!r}")
        if not isinstance(max_num_hands, int) or isinstance(max_num_hands, bool) or not 1 <= max_num_hands <= 4:
            raise ConfigError(f"max_num_hands must be an integer in [1, 4]. Got {max_num_hands!r}")
        if handedness not in HANDEDNESS_MODES:
            raise ConfigError(f"handedness must be one of {HANDEDNESS_MODES}. Got {handedness!r}")
        self._hands_module = import_mediapipe_hands()  # before loading the model: fail fast
        super().__init__(
            side=side, model_path=model_path, hand_model=hand_model, fit=fit, depth_refinement=depth_refinement,
            min_keypoints=min_keypoints, min_confidence=min_confidence, inlier_threshold_m=inlier_threshold_m,
            inlier_threshold_px=inlier_threshold_px, cloud_radius_m=cloud_radius_m, window_radius_px=window_radius_px,
            max_depth_spread_m=max_depth_spread_m,
        )  # fmt: skip
        self._detector_options = dict(
            static_image_mode=static_image_mode,
            max_num_hands=max_num_hands,
            model_complexity=model_complexity,
            min_detection_confidence=float(min_detection_confidence),
            min_tracking_confidence=float(min_tracking_confidence),
        )
        self.handedness = handedness
        self._detector = None

    def _hands(self):
        if self._detector is None:
            self._detector = self._hands_module.Hands(**self._detector_options)
        return self._detector

    def reset(self) -> None:
        super().reset()
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def close(self) -> None:
        """Releases MediaPipe's graph."""
        self.reset()

    def _label_side(self, label: str) -> str | None:
        side = {"Left": "left", "Right": "right"}.get(label)
        if side is None or self.handedness != "swapped":
            return side
        return "left" if side == "right" else "right"

    def detect(self, rgb: np.ndarray):
        """MediaPipe's answer for an (H, W, 3) uint8 RGB image: a list of (label side or None,
        score, landmarks (21, 3) normalised, world landmarks (21, 3) metres or None)."""
        result = self._hands().process(np.ascontiguousarray(rgb))
        if not result.multi_hand_landmarks:
            return []
        world = result.multi_hand_world_landmarks or [None] * len(result.multi_hand_landmarks)
        detections = []
        for landmarks, handedness, world_landmarks in zip(result.multi_hand_landmarks, result.multi_handedness, world):
            category = handedness.classification[0]
            points = np.array([[p.x, p.y, p.z] for p in landmarks.landmark], dtype=np.float64)
            metric = None if world_landmarks is None else np.array([[p.x, p.y, p.z] for p in world_landmarks.landmark], dtype=np.float64)
            detections.append((self._label_side(category.label), float(category.score), points, metric))
        return detections

    def estimate(self, frame: RGBDFrame) -> HandMeshEstimate | None:
        started = time.perf_counter()
        if not isinstance(frame, RGBDFrame):
            raise DataError(f"estimate() takes an RGBDFrame; got {type(frame).__name__}")
        if frame.rgb is None:
            raise DataError("the mediapipe backend needs frame.rgb (H, W, 3) uint8")
        detections = self.detect(frame.rgb)
        if self.handedness != "ignore":
            detections = [d for d in detections if d[0] == self.hand_side]
        if not detections:
            self._previous = None
            return self._no_hand(f"MediaPipe found no {self.hand_side} hand")
        _, score, normalised, world = max(detections, key=lambda detection: detection[1])
        if normalised.shape != (NUM_KEYPOINTS, 3) or not np.all(np.isfinite(normalised)):
            return self._no_hand("MediaPipe returned malformed landmarks")
        height, width = frame.rgb.shape[:2]
        # MediaPipe normalises continuous coordinates (pixel i spans [i, i + 1)); OpenCV pixel
        # centres are integers.
        points_2d = np.stack([normalised[:, 0] * width - 0.5, normalised[:, 1] * height - 0.5], axis=1)
        points_3d, weights_3d = None, None
        if frame.depth_m is not None:
            relative = self._relative_depth(normalised, world, points_2d, frame)
            lifted = self.lift(frame, points_2d, relative)
            if lifted.num_from_depth >= 3:
                points_3d = lifted.points_3d
                weights_3d = np.select([lifted.source == SOURCE_DEPTH, lifted.source == SOURCE_RELATIVE], [1.0, RELATIVE_DEPTH_WEIGHT], 0.0)
        return self.fit_frame(frame, points_3d, weights_3d, points_2d, np.ones(NUM_KEYPOINTS), score, started=started)

    @staticmethod
    def _relative_depth(normalised: np.ndarray, world: np.ndarray | None, points_2d: np.ndarray, frame: RGBDFrame) -> np.ndarray | None:
        """(21,) metric relative depths: the world landmarks' z (metres, camera-aligned axes),
        else the normalised z (image-width units, relative to the wrist) scaled to metres at the
        landmarks' median depth; None if neither is available."""
        if world is not None and world.shape == (NUM_KEYPOINTS, 3) and np.all(np.isfinite(world)):
            return world[:, 2]
        readings = sample_depth(frame.depth_m, points_2d)
        if not np.isfinite(readings).any():
            return None
        return normalised[:, 2] * frame.rgb.shape[1] * float(np.nanmedian(readings)) / frame.intrinsics[0, 0]
