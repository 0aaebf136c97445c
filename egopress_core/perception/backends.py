"""Hand-mesh estimator backends by name: ``build_estimator("keypoints", side="right")``.

- ``"mediapipe"`` (:class:`~egopress_core.perception.mediapipe_backend.MediaPipeEstimator`):
  MediaPipe hand landmarks from the colour image, lifted to 3D with the depth image, fitted (the
  default of the node and the labeller; its models are built by ``make setup``). The module
  imports mediapipe (about a second) only when such an estimator is built.
- ``"keypoints"`` (:class:`~egopress_core.perception.estimators.KeypointsEstimator`): the same
  fit from keypoints another tracker or a data set supplies in ``RGBDFrame.keypoints``.
- ``"ground_truth"`` (:class:`~egopress_core.perception.estimators.GroundTruthEstimator`): the
  annotated hand of a data set record (synthetic or dataset replay), passed through.

The registry is the top of the perception layer: the mediapipe backend subclasses an estimator
of :mod:`~egopress_core.perception.estimators`, so the name -> class table cannot live there
without an import cycle (``docs/design.md``, "Layers and imports").
"""

from __future__ import annotations

import inspect

from egopress_core.errors import ConfigError
from egopress_core.perception.estimators import GroundTruthEstimator, HandMeshEstimator, KeypointsEstimator
from egopress_core.perception.mediapipe_backend import MediaPipeEstimator

ESTIMATOR_NAMES = ("mediapipe", "keypoints", "ground_truth")
_REGISTRY: dict[str, type[HandMeshEstimator]] = {
    "mediapipe": MediaPipeEstimator,
    "keypoints": KeypointsEstimator,
    "ground_truth": GroundTruthEstimator,
}


def build_estimator(name: str, **options) -> HandMeshEstimator:
    """The estimator backend ``name`` ("mediapipe", "keypoints", "ground_truth") with its
    constructor options (e.g. ``side="left"``, ``fit={"optimizer": "lbfgs"}``).

    Raises:
        ConfigError: an unknown name or option (the message lists the valid ones), or the
            mediapipe backend without its package or its hand-landmarker bundle (the message
            names the set-up step).
    """
    if name not in _REGISTRY:
        raise ConfigError(f"hand-mesh estimator must be one of {ESTIMATOR_NAMES}. Got {name!r}")
    cls = _REGISTRY[name]
    parameters = inspect.signature(cls.__init__).parameters
    valid = sorted(key for key in parameters if key != "self")
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for the {name} estimator; valid: {valid}")
    return cls(**options)
