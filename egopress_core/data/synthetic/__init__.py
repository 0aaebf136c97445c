"""Synthetic egocentric RGB-D hand-pressure data (`egopress synth`).

Kept import-light (no open3d, no torch): the command line reads :data:`HELD_OUT_SEED` for its help.
"""

# Sequence seeds at or above this are never used for training data, so sequences generated from
# them (the demo's, the benchmarks') are held out.
HELD_OUT_SEED = 90_000
