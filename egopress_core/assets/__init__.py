"""Files shipped with the package: the bundled hand model and the trained compact checkpoint.

Kept import-light (no torch), so a ROS node's parameter table can name the default checkpoint.
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
# What `make demo`, the pressure node and the labeller load when no checkpoint is given
# (scripts/train_shipped_model.sh makes it).
SHIPPED_CHECKPOINT = ASSETS_DIR / "checkpoints" / "egopressdiff_compact"
