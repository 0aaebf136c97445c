"""The ranges the synthetic generator samples a sequence's camera and hand from by default, and
the ranges a caller may ask for instead (`egopress synth --hand-distance/--pitch/--shape-std`).

Kept apart from the generator so that the command line can show them without importing it.
"""

# Distance from the camera to the hand: a head-mounted camera over a hand working on a table at
# arm's length. With the field of view of camera.HORIZONTAL_FOV_DEG, the hand (about 19 cm long,
# 9 cm wide) spans a quarter to a third of the image width, as in RealSense and EgoPressure
# recordings.
HAND_DISTANCE_M = (0.3, 0.5)
# How far below the horizon the camera looks at the hand, degrees: the head is well above the
# hand and the forearm (which rises 5-20 degrees towards the elbow, see forearm.py), so the
# forearm enters the picture from below without hiding the hand.
PITCH_DEG = (55.0, 80.0)
# Standard deviation of the hand's shape parameters (MANO betas): 1 is the spread of the people
# MANO's shape space was built from. The sampled betas are clipped to +-MAX_ABS_BETA, beyond
# which the shape space leaves human hands.
SHAPE_STD = 1.0
MAX_ABS_BETA = 2.5

# What a caller may ask for: nearer than MIN_HAND_DISTANCE_M raised fingers reach into the depth
# camera's minimum range (render.MIN_DEPTH_RANGE_M); beyond MAX_HAND_DISTANCE_M the hand is a few
# dozen pixels wide; below MIN_PITCH_DEG the forearm hides the hand.
MIN_HAND_DISTANCE_M = 0.25
MAX_HAND_DISTANCE_M = 1.5
MIN_PITCH_DEG = 20.0
MAX_PITCH_DEG = 90.0
MAX_SHAPE_STD = 3.0
