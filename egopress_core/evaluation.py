"""Evaluation of a trained pressure model on whole sequences (`egopress eval`).

Every sequence is estimated as a whole, the way the offline labeller does it: EgoPressDiff
with overlapping windows blended across both directions of context, the per-frame baseline
frame by frame. Predictions and ground truth are compared at the model's UV resolution (the
ground truth area-resized exactly as in training) with the PressureVision metrics, on the UV maps
and, through the hand's UV atlas, on per-vertex pressure and total force.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from egopress_core.errors import CheckpointError, ConfigError, DataError
from egopress_core.metrics import DEFAULT_CONTACT_THRESHOLD_KPA, PressureMetrics


@dataclass(frozen=True)
class EvalOptions:
    """How sequences are estimated and scored."""

    num_inference_steps: int = 10
    scheduler: str = "ddim"
    guidance_scale: float = 1.0
    stride: int | None = None  # window step of the offline estimate; None: half a window
    seed: int = 0
    contact_threshold_kpa: float = DEFAULT_CONTACT_THRESHOLD_KPA
    max_sequences: int | None = None
    crop: str = "hand"
    device: str = "auto"  # "cpu", "cuda", "cuda:1", ... ("auto": CUDA when available)
    window_batch_size: int = 1  # windows denoised together (accelerator throughput)
    precision: str = "fp32"  # autocast: "fp32", "fp16" (GPU only) or "bf16"

    def __post_init__(self) -> None:
        from egopress_core.inference import PRECISIONS

        if self.max_sequences is not None and self.max_sequences < 1:
            raise ConfigError(f"max_sequences must be >= 1 or None. Got {self.max_sequences}")
        if isinstance(self.window_batch_size, bool) or not isinstance(self.window_batch_size, int) or self.window_batch_size < 1:
            raise ConfigError(f"window_batch_size must be an integer >= 1. Got {self.window_batch_size!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}. Got {self.precision!r}")


def load_pressure_model(directory: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """The model a checkpoint folder holds (EgoPressDiff or the per-frame baseline), in eval mode.

    Raises:
        CheckpointError: no readable ``config.json``, a format no model kind writes, or weights
            that do not fit.
    """
    from egopress_core.model.kinds import checkpoint_kind

    return checkpoint_kind(directory).model_class.from_pretrained(directory, map_location=map_location).eval()


def estimate_sequence_pressure(model, conditions, options: EvalOptions) -> torch.Tensor:
    """(B, N, 1, Hu, Wu) kPa for whole sequences: windowed diffusion or per-frame classification."""
    from egopress_core.inference import estimate_sequence
    from egopress_core.model.egopressdiff import EgoPressDiff

    if isinstance(model, EgoPressDiff):
        return estimate_sequence(
            model, conditions, stride=options.stride, num_inference_steps=options.num_inference_steps,
            scheduler=options.scheduler, guidance_scale=options.guidance_scale, seed=options.seed, progress=False,
            window_batch_size=options.window_batch_size, precision=options.precision,
        )
    from egopress_core.inference import autocast_context

    with autocast_context(model.device, options.precision):
        return model.sample(conditions)


def sequence_batch(sequence, model_config, uv_mask: torch.Tensor, crop: str = "hand",
                   uv_geometry=None) -> dict[str, Any]:
    """A whole sequence as one window batch (B = 1), preprocessed as in training; with a
    :class:`~egopress_core.conditioning.UVGeometryBuilder`, its ``uv_geometry`` too."""
    from egopress_core.data.windows import ClipWindowDataset, WindowConfig

    length = len(sequence)
    window = WindowConfig(window=length, stride=length, image_size=tuple(model_config.image_size),
                          uv_size=tuple(model_config.uv_size), crop=crop, skip_invalid=False, min_valid_frames=0)
    item = ClipWindowDataset([sequence], window)[0]
    batch = {key: value[None] if isinstance(value, torch.Tensor) else value for key, value in item.items()}
    batch["uv_mask"] = uv_mask
    if uv_geometry is not None:
        batch["uv_geometry"] = uv_geometry(batch)
    return batch


def evaluate(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    options: EvalOptions = EvalOptions(),
    split: str = "test",
    hand_model_path: str | None = None,
    uv_obj_path: str | None = None,
    figure: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Scores ``checkpoint`` on the sequences of ``data`` and writes the report JSON to ``out``
    (atomically) and, with ``figure``, a PNG beside it (same name, ``.png``).

    Returns the report: pooled ``metrics``, ``per_sequence`` metrics, and what was run.
    """
    from egopress_core.data.sources import open_data_source, resolve_hand_uv_mask
    from egopress_core.conditioning import UVGeometryBuilder
    from egopress_core.hand.hand_model import load_hand_model
    from egopress_core.inference import check_precision
    from egopress_core.live import resolve_device
    from egopress_core.uv_atlas import UVAtlas

    started = time.perf_counter()
    device = resolve_device(options.device)
    check_precision(options.precision, device)
    model = load_pressure_model(checkpoint, map_location=device)
    config = model.config
    sequences = open_data_source(data, split=split).sequences()
    if options.max_sequences is not None:
        sequences = sequences[: options.max_sequences]
    mask = resolve_hand_uv_mask(sequences, tuple(config.uv_size), hand_model_path, uv_obj_path)
    if not (config.uv_layout in (mask.layout_id, mask.layout_name)):
        raise CheckpointError(
            f"checkpoint {checkpoint} was trained on UV layout {config.uv_layout!r}; the data uses {mask.layout_id!r}"
        )
    hand = load_hand_model(side=mask.side, model_path=mask.hand_model_path, uv_obj_path=mask.uv_obj_path)
    atlas = UVAtlas.from_obj(hand.uv_obj_path, resolution=tuple(config.uv_size), name=hand.uv_layout_name)
    uv_mask = mask.tensor()
    uv_geometry = UVGeometryBuilder.for_model(atlas, config)

    pooled = PressureMetrics(contact_threshold_kpa=options.contact_threshold_kpa)
    per_sequence: dict[str, dict] = {}
    figure_rows: list[dict] = []
    for sequence in tqdm(sequences, desc="eval", unit="seq", disable=not progress):
        batch = sequence_batch(sequence, config, uv_mask, options.crop, uv_geometry)
        conditions = model.build_conditions(batch, check_window=False)
        predicted = estimate_sequence_pressure(model, conditions, options)[0, :, 0].float().cpu().numpy()
        truth = batch["uv_pressure_kpa"][0, :, 0].float().numpy()
        valid = batch["valid"][0].numpy().astype(bool)
        if not valid.any():
            continue
        vertices = batch["vertices"][0].numpy()[valid]
        scored = {"pred": predicted[valid], "gt": truth[valid]}
        # Least squares can undershoot next to sharp contact edges; pressure is never negative.
        vertex = {k: np.clip(atlas.uv_to_vertex(v), 0.0, None) for k, v in scored.items()}
        force = {k: atlas.total_force(v, vertices) for k, v in scored.items()}
        arguments = dict(pred_vertex_kpa=vertex["pred"], gt_vertex_kpa=vertex["gt"],
                         pred_force_n=force["pred"], gt_force_n=force["gt"])
        sequence_metrics = PressureMetrics(contact_threshold_kpa=options.contact_threshold_kpa)
        sequence_metrics.update(scored["pred"], scored["gt"], **arguments)
        pooled.update(scored["pred"], scored["gt"], **arguments)
        per_sequence[sequence.name] = _json_ready(sequence_metrics.compute())
        figure_rows.append({"name": sequence.name, "pred": scored["pred"], "gt": scored["gt"], "vertices": vertices,
                            "pred_vertex": vertex["pred"], "gt_vertex": vertex["gt"],
                            "pred_force": force["pred"], "gt_force": force["gt"], "fps": sequence.fps})
    if not per_sequence:
        raise DataError(f"{data}: no annotated frame to evaluate")

    report = {
        "metrics": _json_ready(pooled.compute()),
        "per_sequence": per_sequence,
        "checkpoint": str(checkpoint),
        "model": type(model).__name__,
        "data": str(data),
        "split": split,
        "sequences": len(per_sequence),
        "options": asdict(options),
        "device": str(device),
        "uv_layout": mask.layout_id,
        "seconds": round(time.perf_counter() - started, 2),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, out)
    if figure:
        write_eval_figure(figure_rows, hand.faces, out.with_suffix(".png"), report["metrics"])
    return report


def _json_ready(metrics: dict) -> dict:
    """NaN (undefined IoU) becomes null, numpy scalars plain floats."""
    return {key: (None if isinstance(value, float) and np.isnan(value) else float(value)) for key, value in metrics.items()}


def write_eval_figure(rows: list[dict], faces: np.ndarray, path: Path, metrics: dict, frames: int = 4) -> Path:
    """Predicted vs ground-truth UV maps and hands for a few frames of the sequence with the most
    contact, and force over time for every sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from egopress_core.visualize import colorize, hand_views

    best = max(rows, key=lambda row: float(row["gt"].sum()))
    peak = int(np.argmax(best["gt"].reshape(len(best["gt"]), -1).sum(axis=1)))
    chosen = sorted({int(i) for i in np.clip(np.linspace(peak - 12, peak + 12, frames).round(), 0, len(best["gt"]) - 1)})
    vmax = max(float(best["gt"].max()), 1.0)
    figure = plt.figure(figsize=(15, 3.0 * len(chosen) + 3.2))
    grid = figure.add_gridspec(len(chosen) + 1, 4, height_ratios=[3.0] * len(chosen) + [3.0])
    for row, index in enumerate(chosen):
        panels = [
            (colorize(best["gt"][index], vmax), f"{best['name']} frame {index}: ground truth"),
            (colorize(best["pred"][index], vmax), "prediction"),
            (hand_views(best["vertices"][index].astype(np.float64), faces, best["gt_vertex"][index], 160, vmax), "ground truth on the hand"),
            (hand_views(best["vertices"][index].astype(np.float64), faces, best["pred_vertex"][index], 160, vmax), "prediction on the hand"),
        ]
        for column, (image, title) in enumerate(panels):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(image)
            axis.set_title(title, fontsize=9)
            axis.axis("off")
    axis = figure.add_subplot(grid[len(chosen), :])
    for number, item in enumerate(rows[:6]):
        times = np.arange(len(item["gt_force"])) / item["fps"]
        line = axis.plot(times, item["gt_force"], label=f"{item['name']} ground truth")[0]
        axis.plot(times, item["pred_force"], "--", color=line.get_color(), label="prediction")
    axis.set_xlabel("time (s)")
    axis.set_ylabel("total force (N)")
    axis.legend(fontsize=7, ncol=3)
    summary = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("contact_iou", "volumetric_iou", "mae_kpa", "temporal_accuracy") if metrics.get(k) is not None)
    figure.suptitle(summary)
    figure.tight_layout()
    temporary = path.with_name(path.stem + ".tmp.png")
    figure.savefig(temporary, dpi=80)
    plt.close(figure)
    os.replace(temporary, path)
    return path
