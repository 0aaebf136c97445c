"""Synthetic egocentric RGB-D hand-pressure data (`egopress synth`).

Kept import-light (no open3d, no torch): the command line reads :data:`HELD_OUT_SEED` and the demo's set size for its help.
"""

# Sequence seeds at or above this are never used for training data, so sequences generated from
# them (the demo's, the benchmarks') are held out.
HELD_OUT_SEED = 90_000

# The held-out set `egopress demo` generates and `egopress bench --live --quick` plays (4.8 s of a
# 30 Hz camera): the quick live check scores the sequences whose figures the demo shows.
DEMO_SEQUENCES = 3
DEMO_FRAMES = 48
DEMO_IMAGE_SIZE = (256, 256)
