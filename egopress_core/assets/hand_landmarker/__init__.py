"""The MediaPipe hand-landmarker bundle of the ``mediapipe`` backend: where it lives, what it is
built from, and how its handedness labels read.

``make setup`` (``scripts/build_hand_landmarker.py``) builds ``hand_landmarker.task`` in this
folder from the two TFLite models inside the mediapipe 0.10.21 wheel on PyPI, the last wheel
that carries them (newer wheels download them at run time), and writes the wheel's licence
(Apache 2.0) and a notice of the source beside it. The bundle is a stored (uncompressed) zip of
``hand_detector.tflite`` and ``hand_landmarks_detector.tflite``, which is what the Tasks API's
``HandLandmarker`` (mediapipe 0.10.35, NumPy 2) loads; both the wheel's and the bundle's sha256
are pinned here. Nothing is fetched at run time: without the bundle the backend stops and names
the set-up step (:data:`BUILD_COMMAND`). The generated files are not in git (``.gitignore``).

Kept import-light (no torch, no mediapipe): the hand-mesh node's parameter table takes its
handedness default from here, and the set-up script reads the pins without the library's
dependencies.
"""

from __future__ import annotations

from pathlib import Path

BUNDLE_DIR = Path(__file__).resolve().parent
# The one place the backend and the set-up step look for the bundle and its licence.
BUNDLE_PATH = BUNDLE_DIR / "hand_landmarker.task"
LICENSE_PATH = BUNDLE_DIR / "LICENSE"
NOTICE_PATH = BUNDLE_DIR / "NOTICE"

# The source: one file of the mediapipe 0.10.21 release. The models are the same in every
# platform's wheel of that release; this one is pinned whatever the machine, since the set-up
# step only unzips it.
SOURCE_REQUIREMENT = "mediapipe==0.10.21"
SOURCE_WHEEL = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
SOURCE_WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
SOURCE_LICENSE_MEMBER = "mediapipe-0.10.21.dist-info/LICENSE"
# (name in the bundle, path in the wheel, sha256 of the model), in bundle order.
BUNDLE_MEMBERS = (
    ("hand_detector.tflite", "mediapipe/modules/palm_detection/palm_detection_full.tflite",
     "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54"),
    ("hand_landmarks_detector.tflite", "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
     "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"),
)  # fmt: skip
# The zip written from those members with fixed metadata (scripts/build_hand_landmarker.py).
BUNDLE_SHA256 = "76839f622b2923ac8ee857300422283621490de0122425c2313ab8f040a7d100"
BUILD_COMMAND = "make setup (or: .venv/bin/python scripts/build_hand_landmarker.py)"
# Machines (platform.machine()) with a mediapipe 0.10.35 wheel on PyPI, the marker of its line in
# requirements/core.txt. Linux aarch64 (Jetson-class robots) has none: there the `keypoints`
# backend works, and the bundle's TFLite models would run under ai-edge-litert (not built here).
MEDIAPIPE_MACHINES = ("x86_64", "AMD64", "arm64")

# Handedness. The landmark model labels each hand "Left" or "Right". Measured with this bundle
# through the Tasks API (benchmarks/hand_stage.py, section "Handedness"): renders of the
# bundled right and left hands seen from the back, as a head-mounted camera sees its wearer's
# hands in a non-mirrored image, carry their true label (30 of 30 each, scores 0.67-0.98); seen
# palm first (from below) they carry the other hand's label (20 of 23). MediaPipe's documented
# convention (labels for mirrored, selfie images, where the palm faces the camera) is the same
# fact seen from the other side. mediapipe 0.10.21's retired Solutions API reported the opposite
# label for the same image, hence that era's "swapped" default.
#   as_labelled: the label names the hand (non-mirrored egocentric or robot cameras: the default);
#   swapped: the label names the other hand (mirrored images, or cameras looking at the palms);
#   ignore: take the most confident hand whatever its label (one-handed scenes).
HANDEDNESS_MODES = ("as_labelled", "swapped", "ignore")
DEFAULT_HANDEDNESS = "as_labelled"
_LABEL_SIDES = {"Left": "left", "Right": "right"}


def side_of_label(label: str, handedness: str = DEFAULT_HANDEDNESS) -> str | None:
    """The hand ("left" / "right") a landmark-model label names under ``handedness``, or None
    for an unknown label (and for every label under "ignore", which does not read them)."""
    side = _LABEL_SIDES.get(label)
    if side is None or handedness == "ignore":
        return None
    if handedness == "swapped":
        return "left" if side == "right" else "right"
    return side
