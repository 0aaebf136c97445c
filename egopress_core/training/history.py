"""The run's scalar history (JSON lines) and its training-curve figure.

``OUT/history.jsonl`` holds one JSON object per line: training records
``{"kind": "train", "step", "loss", "mse", "lr", "grad_norm", ...}`` and validation records
``{"kind": "val", "step", "loss", "contact_iou", ...}``. Non-finite numbers are written as null.
A resumed run first drops the records after its checkpoint's step, so the file always describes
one consistent trajectory.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from egopress_core.files import replacing, write_text_atomic

HISTORY_NAME = "history.jsonl"
CURVE_NAME = "training_curve.png"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class History:
    """Append-only JSON-lines log (main process only)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({k: _json_safe(v) for k, v in record.items()}, allow_nan=False)
        with self.path.open("a") as stream:
            stream.write(line + "\n")
            stream.flush()

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill mid-write
        return out

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step`` (atomically)."""
        kept = [r for r in self.records() if int(r.get("step", 0)) <= step]
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept)
        write_text_atomic(self.path, text)


def _smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average (as TensorBoard's smoothing)."""
    out, running = [], 0.0
    for count, value in enumerate(values, start=1):
        running = weight * running + (1 - weight) * value
        out.append(running / (1 - weight**count))
    return out


def plot_training_curve(records: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path | None:
    """Loss (raw and smoothed), learning rate and validation metrics vs step, as a PNG.

    Returns:
        The written path, or None when there is nothing to plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    val = [r for r in records if r.get("kind") == "val"]
    if not train and not val:
        return None
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    if train:
        steps = [r["step"] for r in train]
        losses = [r["loss"] for r in train]
        axes[0].plot(steps, losses, alpha=0.35, label="train loss")
        axes[0].plot(steps, _smooth(losses), label="train loss (EMA 0.9)")
        lrs = [(r["step"], r["lr"]) for r in train if r.get("lr") is not None]
        if lrs:
            axes[1].plot(*zip(*lrs), color="tab:gray")
    val_loss = [(r["step"], r["loss"]) for r in val if r.get("loss") is not None]
    if val_loss:
        axes[0].plot(*zip(*val_loss), "o-", label="validation loss")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("mask-weighted diffusion loss")
    axes[0].legend()
    axes[1].set_xlabel("step")
    axes[1].set_title("learning rate")
    plotted = False
    for key, label in (("contact_iou", "contact IoU"), ("volumetric_iou", "volumetric IoU"),
                       ("temporal_accuracy", "temporal accuracy")):
        points = [(r["step"], r[key]) for r in val if r.get(key) is not None]
        if points:
            axes[2].plot(*zip(*points), "o-", label=label)
            plotted = True
    mae = [(r["step"], r["mae_kpa"]) for r in val if r.get("mae_kpa") is not None]
    if mae:
        twin = axes[2].twinx()
        twin.plot(*zip(*mae), "s--", color="tab:red", label="MAE (kPa)")
        twin.set_ylabel("MAE (kPa)", color="tab:red")
        plotted = True
    axes[2].set_xlabel("step")
    axes[2].set_title("validation (sampled, kPa)" if plotted else "validation (none)")
    if plotted:
        axes[2].set_ylim(0.0, 1.0)
        axes[2].legend(loc="upper left")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    with replacing(path) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
    return path
