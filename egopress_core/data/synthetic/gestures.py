"""Hand poses and motions of the gestures EgoPressure recorded, for any MANO-format hand.

Finger flexion axes are derived from the hand model's rest geometry (bone directions and the
palm normal), not from constants, so the same gestures drive the bundled hand and real MANO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import transforms3d

from egopress_core.data.synthetic.profiles import ContactProfile, hover_profile, press_profile
from egopress_core.hand.skeleton import FINGERS, MANO_FINGER_JOINTS, OPENPOSE_FINGER_JOINTS

GESTURES = (
    "single_press",
    "multi_press",
    "palm_press",
    "drag",
    "pinch",
    "hover",
    "press_release",
)
# Gestures where a single frame says little about contact, for held-out sets that ask what
# temporal context adds (issue 22); not in the default mix, so models are not trained on them
# unless asked:
#   slow_press:    an index press whose force ramps up and down over most of its span, to a low
#                  peak: onset and release are gradual, the early and late frames barely touch;
#   near_hover:    the index press's pose held 1-4 mm above the pad, never touching: per frame,
#                  a few millimetres of fit error turn it into a press;
#   sliding_press: an index press that slides 6-12 cm while it presses, so the contact patch
#                  moves through the whole press.
# Fingers hidden by the hand need no gesture of their own: a head camera behind the hand already
# sees the pressing fingertip behind the knuckles in many presses; `egopress eval` measures it
# per sequence (factor "contact_visible_share", egopress_core/evaluation_factors.py).
WEAK_EVIDENCE_GESTURES = ("slow_press", "near_hover", "sliding_press")
ALL_GESTURES = GESTURES + WEAK_EVIDENCE_GESTURES

class HandPoser:
    """Builds MANO pose vectors from per-finger curl angles for a given hand model.

    A positive curl flexes a joint towards the palm. The flexion axis of each joint is
    ``bone x palm_normal`` in the rest pose, where the palm normal points out of the palm
    (its sign is taken from the model's mean pose, which is curled towards the palm in MANO).
    """

    def __init__(self, rest_joints: np.ndarray, mean_pose: np.ndarray | None):
        """
        Args:
            rest_joints: (21, 3) joints of the flat hand (zero pose), OpenPose order.
            mean_pose: (45,) the model's mean (relaxed) pose, or None.
        """
        wrist = rest_joints[0]
        index_base, little_base = rest_joints[5], rest_joints[17]
        normal = np.cross(index_base - wrist, little_base - wrist)
        self.palm_normal = normal / np.linalg.norm(normal)
        self.forward = rest_joints[9] - wrist  # wrist -> middle finger base
        self.forward /= np.linalg.norm(self.forward)
        self._rest_joints = rest_joints
        self._axes = self._flexion_axes(self.palm_normal)
        if mean_pose is not None and np.abs(mean_pose).sum() > 1e-6:
            # The relaxed pose bends the fingers palm-wards: the curl axes must agree with it.
            agreement = sum(
                float(np.dot(mean_pose[3 * (j - 1) : 3 * j], self._axes[j]))
                for joints in MANO_FINGER_JOINTS.values()
                for j in joints
            )
            if agreement < 0:
                self.palm_normal = -self.palm_normal
                self._axes = self._flexion_axes(self.palm_normal)

    def _flexion_axes(self, palm_normal: np.ndarray) -> dict[int, np.ndarray]:
        axes = {}
        for finger, mano_joints in MANO_FINGER_JOINTS.items():
            chain = OPENPOSE_FINGER_JOINTS[finger]
            for position, joint in enumerate(mano_joints):
                bone = self._rest_joints[chain[position + 1]] - self._rest_joints[chain[position]]
                axis = np.cross(bone, palm_normal)
                if finger == "thumb":
                    # The thumb flexes across the palm: about the palm normal's side of its bone.
                    axis = np.cross(bone, palm_normal + 0.8 * self.forward)
                axes[joint] = axis / np.linalg.norm(axis)
        return axes

    def _spread_axes(self, palm_normal: np.ndarray) -> dict[str, np.ndarray]:
        """Per long finger, the axis (+-palm normal) about which a positive angle turns the finger
        away from the middle finger at its knuckle (abduction); the middle finger's turns it
        towards the thumb side, as the index's does."""
        middle_base = self._rest_joints[OPENPOSE_FINGER_JOINTS["middle"][0]]
        thumb_side = self._rest_joints[OPENPOSE_FINGER_JOINTS["index"][0]] - middle_base
        axes = {}
        for finger in ("index", "middle", "ring", "little"):
            chain = OPENPOSE_FINGER_JOINTS[finger]
            bone = self._rest_joints[chain[1]] - self._rest_joints[chain[0]]
            away = thumb_side if finger == "middle" else self._rest_joints[chain[0]] - middle_base
            axes[finger] = palm_normal if np.dot(np.cross(palm_normal, bone), away) > 0 else -palm_normal
        return axes

    def pose(self, curls: dict[str, tuple[float, float, float]], spread: dict[str, float] | None = None) -> np.ndarray:
        """(45,) axis-angle pose from ``{finger: (proximal, middle, distal) curl radians}`` and
        ``{finger: radians}`` of knuckle abduction (fingers spread apart, long fingers only);
        fingers not named stay flat and unspread."""
        pose = np.zeros(45)
        for finger, angles in curls.items():
            for joint, angle in zip(MANO_FINGER_JOINTS[finger], angles):
                pose[3 * (joint - 1) : 3 * joint] = self._axes[joint] * angle
        spread_axes = self._spread_axes(self.palm_normal)
        for finger, angle in (spread or {}).items():
            if finger not in spread_axes:
                raise ValueError(f"spread applies to {tuple(spread_axes)}; got {finger!r}")
            joint = MANO_FINGER_JOINTS[finger][0]
            # Abduct, then flex about the abducted axis: R = R_abduct @ R_flex (MANO's local
            # rotations act in the rest frame, where the axes were derived).
            flex = pose[3 * (joint - 1) : 3 * joint]
            flex_angle = np.linalg.norm(flex)
            flex_matrix = transforms3d.axangles.axangle2mat(flex / flex_angle, flex_angle) if flex_angle > 1e-12 else np.eye(3)
            combined = transforms3d.axangles.axangle2mat(spread_axes[finger], angle) @ flex_matrix
            pose[3 * (joint - 1) : 3 * joint] = orientation_to_axis_angle(combined)
        return pose

    def roll_towards_thumb(self, angle: float) -> float:
        """The ``roll`` of :meth:`world_orientation` that turns the hand ``angle`` radians onto
        its thumb's side (its sign depends on the hand's side)."""
        thumb_tip = self._rest_joints[OPENPOSE_FINGER_JOINTS["thumb"][-1]] - self._rest_joints[0]
        # +z is down into the pad: the roll that lowers the thumb's tip the more.
        return max((angle, -angle), key=lambda roll: float((self.world_orientation(0.0, 0.0, roll) @ thumb_tip)[2]))

    def world_orientation(self, pitch: float, yaw: float, roll: float = 0.0) -> np.ndarray:
        """(3, 3) rotation taking the hand from model space to the world (pad) frame with the
        palm facing the pad (+z), the fingers pointing away from the wearer (+y), pitched
        ``pitch`` radians fingers-down, then turned ``yaw`` about the vertical."""
        palm_down = np.array([0.0, 0.0, 1.0])
        away = np.array([0.0, 1.0, 0.0])
        # Model basis (forward, palm normal, side) -> world basis (away, down, side').
        model_side = np.cross(self.forward, self.palm_normal)
        model_side /= np.linalg.norm(model_side)
        model_forward = np.cross(self.palm_normal, model_side)
        model_basis = np.stack([model_forward, self.palm_normal, model_side], axis=1)
        world_basis = np.stack([away, palm_down, np.cross(away, palm_down)], axis=1)
        align = world_basis @ model_basis.T
        side = np.cross(away, palm_down)
        tilt = transforms3d.axangles.axangle2mat(side, pitch)  # +y (fingers) towards +z (down)
        turn = transforms3d.axangles.axangle2mat(palm_down, yaw)
        twist = transforms3d.axangles.axangle2mat(away, roll)
        return turn @ tilt @ twist @ align


@dataclass(frozen=True)
class GestureMotion:
    """A gesture over time, in the world frame, before contact is resolved."""

    name: str
    curls: list[dict[str, tuple[float, float, float]]]  # per frame
    spread: dict[str, float]  # knuckle abduction of the long fingers, radians (whole gesture)
    orientation: np.ndarray  # (T, 3, 3) hand-to-world rotations
    heading: float  # the hand's turn about the vertical (yaw), radians
    lateral_m: np.ndarray  # (T, 2) x/y position of the hand on the pad
    profile: ContactProfile


def _curled(rng: np.random.Generator, amount: float) -> tuple[float, float, float]:
    return tuple(float(amount * scale * rng.uniform(0.85, 1.15)) for scale in (1.2, 1.5, 0.9))


def _reaching(rng: np.random.Generator) -> tuple[float, float, float]:
    """A finger that presses with its pad, seen from a head camera: bent down at the knuckle,
    then slightly at the other joints, so it reaches lower than the hooked fingers beside it
    (the contact simulation presses the lowest part of the hand)."""
    return (float(rng.uniform(0.5, 0.7)), float(rng.uniform(0.3, 0.5)), float(rng.uniform(0.1, 0.2)))


def _hooked(rng: np.random.Generator, finger: str) -> tuple[float, float, float]:
    """An idle finger beside a pressing one: nearly straight at the knuckle and curled at the
    two finger joints, so it stays above the pad while its segments stay visible (a closed fist
    from behind is a blob a hand detector does not recognise). The thumb rests along the index."""
    if finger == "thumb":
        return (float(rng.uniform(0.1, 0.4)), float(rng.uniform(0.1, 0.4)), float(rng.uniform(0.05, 0.3)))
    return (float(rng.uniform(0.05, 0.25)), float(rng.uniform(1.2, 1.5)), float(rng.uniform(0.6, 0.9)))


def _spread(rng: np.random.Generator, amount: float) -> dict[str, float]:
    """Knuckle abduction: fingers apart by up to ``amount`` radians (the little finger most).

    The flexion of each gesture (which finger is lowest, so which one the contact simulation
    presses) is left as it was; spreading the fingers apart at the knuckles only separates them
    in the picture, as real hands hold them, instead of a closed block of fingers."""
    return {"index": float(rng.uniform(0.3, 1.0) * amount), "middle": float(rng.uniform(-0.2, 0.2) * amount),
            "ring": float(rng.uniform(0.3, 1.0) * amount), "little": float(rng.uniform(0.5, 1.3) * amount)}


def sample_gesture(rng: np.random.Generator, name: str, num_frames: int, poser: HandPoser) -> GestureMotion:
    """A randomised instance of gesture ``name`` (one of :data:`ALL_GESTURES`) lasting
    ``num_frames`` frames."""
    if name not in ALL_GESTURES:
        raise ValueError(f"gesture must be one of {ALL_GESTURES}. Got {name!r}")
    times = np.linspace(0.0, 1.0, num_frames)
    yaw = rng.uniform(-0.5, 0.5)
    roll = rng.uniform(-0.15, 0.15)
    start = rng.uniform([-0.05, -0.03], [0.05, 0.03])
    lateral = np.repeat(start[None], num_frames, axis=0)

    spread = _spread(rng, rng.uniform(0.05, 0.2))
    if name in ("single_press", "press_release"):
        finger = rng.choice(["index", "index", "middle", "thumb"])
        if finger == "thumb":
            # The thumb pad pressing, the hand rolled onto its thumb side so that the thumb is
            # its lowest part, the other fingers hooked clear of the pad (a fist seen from behind
            # is a blob a hand detector does not find, and pressed its knuckles, not the thumb).
            base = {f: _hooked(rng, f) for f in FINGERS}
            base["thumb"] = (0.0, 0.1, 0.1)
            pitch = rng.uniform(0.2, 0.4)
            roll = poser.roll_towards_thumb(rng.uniform(0.5, 0.8))
        else:
            base = {f: _hooked(rng, f) for f in FINGERS}
            base[finger] = _reaching(rng)
            spread[finger] = 0.0  # the pressing finger points straight ahead
            pitch = rng.uniform(0.25, 0.45)
        presses = 1 if name == "single_press" else int(rng.integers(2, 4))
        profile = press_profile(rng, num_frames, rng.uniform(0.5, 6.0), presses)
        curls = [base] * num_frames
    elif name in ("slow_press", "near_hover", "sliding_press"):
        base = {f: _hooked(rng, f) for f in FINGERS}
        base["index"] = _reaching(rng)
        spread["index"] = 0.0
        pitch = rng.uniform(0.25, 0.45)
        if name == "slow_press":
            profile = press_profile(rng, num_frames, rng.uniform(0.3, 1.5), ramp_fraction=(0.45, 0.5))
        elif name == "near_hover":
            profile = hover_profile(rng, num_frames, gap_m=(0.001, 0.004))
        else:
            profile = press_profile(rng, num_frames, rng.uniform(0.8, 4.0))
            direction = rng.normal(size=2)
            direction /= np.linalg.norm(direction)
            lateral = start + rng.uniform(0.06, 0.12) * (times - 0.5)[:, None] * direction
        curls = [base] * num_frames
    elif name == "multi_press":
        pressing = rng.choice(["index", "middle", "ring", "little"], size=int(rng.integers(2, 5)), replace=False)
        base = {f: (0.55, 0.5, 0.25) if f in pressing else _curled(rng, 0.9) for f in FINGERS}
        base["thumb"] = _curled(rng, 0.3)
        spread = _spread(rng, rng.uniform(0.03, 0.12))  # pressing side by side
        pitch = rng.uniform(0.3, 0.5)
        profile = press_profile(rng, num_frames, rng.uniform(2.0, 10.0))
        curls = [base] * num_frames
    elif name == "palm_press":
        # The palm's patch is large: keep it on the pad.
        lateral = np.repeat(rng.uniform([-0.02, -0.01], [0.02, 0.01])[None], num_frames, axis=0)
        pitch = rng.uniform(-0.08, 0.0)  # heel of the hand slightly first
        profile = press_profile(rng, num_frames, rng.uniform(5.0, 25.0))
        flat = {finger: _curled(rng, 0.02) for finger in FINGERS}
        flat["thumb"] = (-0.35, -0.2, 0.0)  # lifted off the pad, out of the palm's way
        spread = _spread(rng, rng.uniform(0.1, 0.3))  # a hand pressed flat spreads its fingers
        curls = [flat] * num_frames
    elif name == "drag":
        base = {f: _hooked(rng, f) for f in FINGERS}
        base["index"] = _reaching(rng)
        spread["index"] = 0.0
        pitch = rng.uniform(0.25, 0.45)
        profile = press_profile(rng, num_frames, rng.uniform(0.8, 4.0))
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction)
        travel = rng.uniform(0.02, 0.06)
        lateral = start + travel * np.clip((times - 0.2) / 0.6, 0.0, 1.0)[:, None] * direction
        curls = [base] * num_frames
    elif name == "pinch":
        pitch = rng.uniform(0.45, 0.75)
        profile = press_profile(rng, num_frames, rng.uniform(0.8, 4.0))
        closing = np.clip((times - 0.25) / 0.5, 0.0, 1.0)
        folded = {f: _hooked(rng, f) for f in ("middle", "ring", "little")}
        spread["index"] = 0.0
        curls = []
        for amount in closing:
            frame_curls = dict(folded)
            frame_curls["index"] = (0.3 + 0.4 * amount, 0.2 + 0.3 * amount, 0.1)
            frame_curls["thumb"] = (0.1 + 0.4 * amount, 0.2 + 0.2 * amount, 0.1)
            curls.append(frame_curls)
    else:  # hover
        pitch = rng.uniform(0.0, 0.6)
        profile = hover_profile(rng, num_frames)
        wave = np.sin(2 * np.pi * times * rng.uniform(0.5, 1.5))
        scales = {f: rng.uniform(0.85, 1.15) for f in FINGERS}
        curls = [
            {f: tuple(float((0.3 + 0.3 * w) * s * k) for k in (1.2, 1.5, 0.9)) for f, s in scales.items()}
            for w in wave
        ]
        lateral = start + 0.02 * np.stack([np.sin(2 * np.pi * times), np.cos(2 * np.pi * times)], axis=1)

    orientation = np.stack(
        [poser.world_orientation(pitch + 0.05 * np.sin(6.0 * t), yaw, roll) for t in times]
    )
    return GestureMotion(name=name, curls=curls, spread=spread, orientation=orientation, heading=float(yaw), lateral_m=lateral,
                         profile=profile)


def orientation_to_axis_angle(rotation: np.ndarray) -> np.ndarray:
    axis, angle = transforms3d.axangles.mat2axangle(rotation)
    return np.asarray(axis) * angle
