"""Anatomical hand poses for any MANO-format model, as 45-value axis-angle vectors.

Joint axes come from the model's rest joints, not from constants: a finger joint flexes about
``bone x palm_normal`` (positive = towards the palm) and abducts about ``bone x flexion_axis``
(positive = towards the thumb for a right hand; the mirrored left model mirrors the motion).
Poses built here are relative to the flat hand (``flat_hand_mean=True``).

Used by the bundled-hand generator (pose PCA and the pose-corrective fit) and by the preview.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from egopress_core.hand.skeleton import MANO_FINGER_JOINTS

LONG_FINGERS = ("index", "middle", "ring", "little")

# Anatomical ranges, radians: (flexion low, high) per joint of a long finger.
FINGER_FLEXION_RANGE = ((-0.30, 1.60), (0.0, 1.90), (-0.10, 1.35))
FINGER_ABDUCTION_RANGE = (-0.35, 0.35)  # MCP only
THUMB_FLEXION_RANGE = ((-0.35, 0.90), (-0.15, 1.00), (-0.25, 1.30))
THUMB_ABDUCTION_RANGE = (-0.50, 0.90)  # CMC only: swings the thumb across the palm


@dataclass(frozen=True)
class JointAxes:
    """Per MANO joint 1..15 (index 0 = joint 1): unit flexion and abduction axes, (15, 3) each."""

    flexion: np.ndarray
    abduction: np.ndarray


def joint_axes(
    mano_joints: np.ndarray, palm_normal: np.ndarray, thumb_pad_normal: np.ndarray | None = None
) -> JointAxes:
    """Axes of the 15 finger joints.

    Args:
        mano_joints: (16, 3) rest joints in MANO order.
        palm_normal: (3,) unit vector out of the palm.
        thumb_pad_normal: (3,) direction the thumb pad faces at rest; None: the palm normal
            tilted towards the fingers (the thumb rests rolled towards the index finger).
    """
    mano_joints = np.asarray(mano_joints, dtype=np.float64)
    palm_normal = np.asarray(palm_normal, dtype=np.float64)
    flexion = np.zeros((15, 3))
    abduction = np.zeros((15, 3))
    forward = mano_joints[4] - mano_joints[0]  # wrist -> middle MCP
    forward /= np.linalg.norm(forward)
    for finger, chain in MANO_FINGER_JOINTS.items():
        normal = palm_normal
        if finger == "thumb":
            normal = thumb_pad_normal if thumb_pad_normal is not None else palm_normal + 0.8 * forward
            normal = np.asarray(normal, dtype=np.float64) / np.linalg.norm(normal)
        for position, joint in enumerate(chain):
            child = chain[position + 1] if position < 2 else None
            if child is not None:
                bone = mano_joints[child] - mano_joints[joint]
            else:
                bone = mano_joints[joint] - mano_joints[chain[position - 1]]
            bone = bone / np.linalg.norm(bone)
            flex = np.cross(bone, normal)
            flex /= np.linalg.norm(flex)
            abd = np.cross(bone, flex)
            flexion[joint - 1] = flex
            abduction[joint - 1] = abd / np.linalg.norm(abd)
    return JointAxes(flexion=flexion, abduction=abduction)


FINGER_ORDER = ("index", "middle", "little", "ring", "thumb")  # MANO's chain order


def poses_from_angle_arrays(axes: JointAxes, flexion: np.ndarray, abduction: np.ndarray) -> np.ndarray:
    """(N, 45) axis-angle poses from (N, 15) flexion angles (MANO joint order 1..15) and (N, 5)
    proximal-joint abductions (fingers in MANO chain order: index, middle, little, ring, thumb).

    A proximal joint rotates by abduction, then flexion (R = R_flex @ R_abd); the others flex.
    """
    flexion = np.asarray(flexion, dtype=np.float64)
    abduction = np.asarray(abduction, dtype=np.float64)
    count = len(flexion)
    rotvec_flex = flexion[:, :, None] * axes.flexion[None]  # (N, 15, 3)
    rotation = Rotation.from_rotvec(rotvec_flex.reshape(-1, 3))
    proximal = np.zeros(15, dtype=bool)
    proximal[[0, 3, 6, 9, 12]] = True
    rotvec_abd = np.zeros((count, 15, 3))
    rotvec_abd[:, proximal] = abduction[:, :, None] * axes.abduction[proximal][None]
    rotation = rotation * Rotation.from_rotvec(rotvec_abd.reshape(-1, 3))
    return rotation.as_rotvec().reshape(count, 45)


def pose_from_angles(
    axes: JointAxes,
    flexion: dict[str, tuple[float, float, float]],
    abduction: dict[str, float] | None = None,
) -> np.ndarray:
    """(45,) axis-angle pose: per finger (proximal, middle, distal) flexion radians and a
    proximal-joint abduction; unnamed fingers stay flat."""
    flex = np.zeros((1, 15))
    abd = np.zeros((1, 5))
    for finger, angles in flexion.items():
        chain = MANO_FINGER_JOINTS[finger]
        flex[0, [joint - 1 for joint in chain]] = angles
    for finger, angle in (abduction or {}).items():
        abd[0, FINGER_ORDER.index(finger)] = angle
    return poses_from_angle_arrays(axes, flex, abd)[0]


def sample_plausible_poses(rng: np.random.Generator, count: int, axes: JointAxes) -> np.ndarray:
    """(count, 45) poses from a mixture of everyday hand configurations.

    Classes: relaxed / open hands, power grasps of varying closure, pointing, thumb-to-finger
    pinches and uniform draws within the joint ranges (coverage), all with small independent
    joint noise so the pose covariance is full rank.
    """
    flexion = np.zeros((count, 15))
    abduction = np.zeros((count, 5))
    kinds = rng.choice(5, size=count, p=[0.25, 0.3, 0.1, 0.2, 0.15])

    def set_flex(n, finger, values):
        flexion[n, [joint - 1 for joint in MANO_FINGER_JOINTS[finger]]] = values

    for n in range(count):
        kind = kinds[n]
        spread = rng.normal(0.0, 0.12)
        for finger_index, finger in enumerate(LONG_FINGERS):
            # Spread fans the fingers about the middle finger.
            angle = spread * (1.5 - finger_index) + rng.normal(0, 0.05)
            abduction[n, FINGER_ORDER.index(finger)] = np.clip(angle, *FINGER_ABDUCTION_RANGE)
        thumb_abduction = 0.0
        if kind == 0:  # relaxed / open
            for finger in LONG_FINGERS:
                set_flex(n, finger, (rng.uniform(-0.2, 0.6), rng.uniform(0.0, 0.7), rng.uniform(0.0, 0.45)))
            set_flex(n, "thumb", (rng.uniform(-0.2, 0.3), rng.uniform(0.0, 0.4), rng.uniform(0.0, 0.5)))
            thumb_abduction = rng.uniform(-0.3, 0.4)
        elif kind == 1:  # power grasp
            closure = rng.uniform(0.1, 1.0)
            for finger in LONG_FINGERS:
                c = np.clip(closure + rng.normal(0, 0.08), 0, 1)
                set_flex(n, finger, (1.45 * c, 1.65 * c, 0.95 * c))
            abduction[n, :4] *= 1 - closure
            set_flex(n, "thumb", (0.45 * closure, 0.55 * closure, 0.7 * closure))
            thumb_abduction = 0.7 * closure + rng.normal(0, 0.1)
        elif kind == 2:  # pointing
            closure = rng.uniform(0.6, 1.0)
            set_flex(n, "index", (rng.uniform(-0.1, 0.3), rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.2)))
            for finger in ("middle", "ring", "little"):
                set_flex(n, finger, (1.45 * closure, 1.7 * closure, 1.0 * closure))
            set_flex(n, "thumb", (0.5 * closure, 0.6 * closure, 0.6 * closure))
            thumb_abduction = 0.6 * closure
        elif kind == 3:  # pinch: thumb towards one finger, that finger half flexed
            target = LONG_FINGERS[rng.choice(4, p=[0.5, 0.3, 0.12, 0.08])]
            amount = rng.uniform(0.4, 1.0)
            for finger in LONG_FINGERS:
                if finger == target:
                    set_flex(n, finger, (0.75 * amount, 0.75 * amount, 0.35 * amount))
                else:
                    c = rng.uniform(0.0, 0.9)
                    set_flex(n, finger, (1.2 * c, 1.3 * c, 0.8 * c))
            reach = {"index": 0.55, "middle": 0.7, "ring": 0.8, "little": 0.9}[target]
            set_flex(n, "thumb", (0.35 * amount, 0.3 * amount, 0.25 * amount))
            thumb_abduction = reach * amount
        else:  # uniform within the ranges
            for finger in LONG_FINGERS:
                set_flex(n, finger, [rng.uniform(low, high) for low, high in FINGER_FLEXION_RANGE])
            set_flex(n, "thumb", [rng.uniform(low, high) for low, high in THUMB_FLEXION_RANGE])
            thumb_abduction = rng.uniform(*THUMB_ABDUCTION_RANGE)
        abduction[n, 4] = np.clip(thumb_abduction, *THUMB_ABDUCTION_RANGE)
    return poses_from_angle_arrays(axes, flexion, abduction) + rng.normal(0.0, 0.04, size=(count, 45))
