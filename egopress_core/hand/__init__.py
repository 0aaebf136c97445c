"""MANO-format hand models: forward kinematics through smplx, the bundled hand, MANO file I/O.

``load_hand_model(side)`` gives the bundled hand; ``HandModelConfig(model_path=".../MANO_RIGHT.pkl",
uv_obj_path=".../MANO_UV_right.obj").build()`` gives real MANO (chumpy pickles are read
without chumpy; ``egopress convert-mano`` writes a plain copy).
"""

from egopress_core.hand.hand_model import (
    FINGERS,
    MANO_JOINT_NAMES,
    OPENPOSE_JOINT_NAMES,
    HandModel,
    HandModelConfig,
    HandOutput,
    load_hand_model,
)

__all__ = [
    "FINGERS",
    "MANO_JOINT_NAMES",
    "OPENPOSE_JOINT_NAMES",
    "HandModel",
    "HandModelConfig",
    "HandOutput",
    "load_hand_model",
]
