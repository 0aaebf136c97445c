"""Files shipped with the package: the bundled hand model and the trained compact checkpoints.

Kept import-light (no torch), so a ROS node's parameter table can name the default checkpoint.
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
# What `make demo`, the pressure node and the labeller load when no checkpoint is given
# (scripts/train_shipped_model.sh makes it).
SHIPPED_CHECKPOINT = ASSETS_DIR / "checkpoints" / "egopressdiff_compact"
# The per-frame baseline the README's comparison measures against it (issue 22), trained on the
# same data and meshes; any command's --checkpoint (or the node's checkpoint parameter) runs it.
SHIPPED_BASELINE_CHECKPOINT = ASSETS_DIR / "checkpoints" / "baseline_compact"
