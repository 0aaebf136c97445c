"""MANO's joint tree and the 21-joint OpenPose hand order, as named tables (no heavy imports)."""

FINGERS = ("thumb", "index", "middle", "ring", "little")

# MANO's joint ids (1..15; 0 is the wrist) of each finger's three joints, proximal first.
MANO_FINGER_JOINTS = {
    "index": (1, 2, 3),
    "middle": (4, 5, 6),
    "little": (7, 8, 9),
    "ring": (10, 11, 12),
    "thumb": (13, 14, 15),
}

# The same joints and the fingertip, as indices into the 21 joints in OpenPose hand order
# (wrist; thumb CMC, MCP, IP, tip; index MCP, PIP, DIP, tip; middle; ring; little).
OPENPOSE_FINGER_JOINTS = {
    "thumb": (1, 2, 3, 4),
    "index": (5, 6, 7, 8),
    "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16),
    "little": (17, 18, 19, 20),
}

# Each of the 21 OpenPose joints' parent (the wrist is its own): the joint the segment it ends
# starts at.
OPENPOSE_PARENTS = (0,) + tuple(
    chain[index - 1] if index else 0 for chain in OPENPOSE_FINGER_JOINTS.values() for index in range(len(chain))
)
