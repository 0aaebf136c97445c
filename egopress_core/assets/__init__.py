"""Files shipped with the package: the bundled hand model and the trained compact checkpoints.

Kept import-light (no torch), so a ROS node's parameter table can name the default checkpoint.
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
# Both models of the README's comparison (issue 22), trained on the same data and hand meshes
# with the same inputs; scripts/train_shipped_model.sh makes them.
EGOPRESSDIFF_CHECKPOINT = ASSETS_DIR / "checkpoints" / "egopressdiff_compact"
BASELINE_CHECKPOINT = ASSETS_DIR / "checkpoints" / "baseline_compact"
# What `make demo`, the pressure node, the labellers and `bench --live` load when no checkpoint is
# given: the per-frame baseline, ahead of EgoPressDiff on every held-out set given the camera-only
# path's meshes (pooled Vol IoU, MAE, force, flicker; README, "Which model is the default").
# Every command reads the model kind from the checkpoint, so --checkpoint EGOPRESSDIFF_CHECKPOINT
# (the node's `checkpoint` parameter) runs the video model instead.
DEFAULT_CHECKPOINT = BASELINE_CHECKPOINT
