"""Evaluation of a trained pressure model on whole sequences (`egopress eval`).

Every sequence is estimated as a whole by the pipeline, the way the offline labeller does it:
EgoPressDiff with overlapping windows blended across both directions of context, the per-frame
baseline frame by frame. Predictions and ground truth are compared at the model's UV resolution (the
ground truth area-resized exactly as in training) with the PressureVision metrics, on the UV maps
and, through the hand's UV atlas, on per-vertex pressure and total force.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from egopress_core.errors import ConfigError, DataError
from egopress_core.files import replacing, write_json_atomic
from egopress_core.metrics import PressureMetrics
from egopress_core.options import (
    OFFLINE_SAMPLING,
    ContactOptions,
    CropOptions,
    RuntimeOptions,
    SamplingOptions,
)


@dataclass(frozen=True)
class EvalOptions:
    """How sequences are estimated and scored.

    Attributes:
        sampling: the offline sampler (default :data:`~egopress_core.options.OFFLINE_SAMPLING`).
        runtime: device, precision, channels-last, compile.
        crop: model input crop (as in training).
        contact: the contact threshold of the metrics.
        max_sequences: score only the first N sequences.
        hands: the hand meshes the model is given, one of
            :data:`~egopress_core.data.hands.HAND_SOURCES` ("annotated", "estimated": the
            camera-only path on the sequence's frames, "perturbed": the annotation's displaced
            like a fit's).
    """

    sampling: SamplingOptions = OFFLINE_SAMPLING
    runtime: RuntimeOptions = RuntimeOptions()
    crop: CropOptions = CropOptions()
    contact: ContactOptions = ContactOptions()
    max_sequences: int | None = None
    hands: str = "annotated"

    def __post_init__(self) -> None:
        from egopress_core.data.hands import HAND_SOURCES

        if self.hands not in HAND_SOURCES:
            raise ConfigError(f"EvalOptions.hands must be one of {list(HAND_SOURCES)}. Got {self.hands!r}")
        for name, cls in (("sampling", SamplingOptions), ("runtime", RuntimeOptions), ("crop", CropOptions),
                          ("contact", ContactOptions)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"EvalOptions.{name} must be a {cls.__name__}. Got {type(getattr(self, name)).__name__}")
        if self.max_sequences is not None and (isinstance(self.max_sequences, bool) or not isinstance(self.max_sequences, int)
                                               or self.max_sequences < 1):
            raise ConfigError(f"EvalOptions.max_sequences must be an integer >= 1 or None. Got {self.max_sequences!r}")


def scored_frames(output) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """What a pipeline output of one sequence is scored on: its frames with a hand mesh and ground
    truth.

    Returns:
        valid: (T,) bool, the scored frames.
        scored: ``pred`` and ``gt``, (N, Hu, Wu) kPa of the N scored frames.
        vertices: (N, V, 3) their hand meshes (for the force readout).
    """
    batch = output.inputs
    valid = batch["valid"][0].numpy().astype(bool)
    scored = {"pred": output.uv_pressure_kpa[0][valid], "gt": batch["uv_pressure_kpa"][0, :, 0].float().numpy()[valid]}
    return valid, scored, batch["vertices"][0].numpy()[valid]


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

    Every sequence is estimated as a whole by :class:`~egopress_core.pipeline.EgoPressPipeline`
    with the hand the data was made with, and scored at the model's UV resolution.

    Returns the report: pooled ``metrics``, ``per_sequence`` metrics, and what was run.
    """
    from egopress_core.data.hands import with_hands
    from egopress_core.evaluation_factors import factor_breakdown, sequence_factors
    from egopress_core.data.sources import open_data_source, resolve_hand_uv_mask
    from egopress_core.model.kinds import checkpoint_kind
    from egopress_core.pipeline import EgoPressPipeline

    started = time.perf_counter()
    sequences = open_data_source(data, split=split).sequences()
    if options.max_sequences is not None:
        sequences = sequences[: options.max_sequences]
    uv_size = tuple(checkpoint_kind(checkpoint).model_class.load_config(checkpoint).uv_size)
    mask = resolve_hand_uv_mask(sequences, uv_size, hand_model_path, uv_obj_path)
    pipeline = EgoPressPipeline.from_checkpoint(checkpoint, runtime=options.runtime, sampling=options.sampling,
                                                crop=options.crop, contact=options.contact, uv_mask=mask)
    readout = pipeline.readout

    pooled = PressureMetrics(contact_threshold_kpa=options.contact.contact_threshold_kpa)
    per_sequence: dict[str, dict] = {}
    figure_rows: list[dict] = []
    frames_with_hand = frames_total = 0
    for source in tqdm(sequences, desc="eval", unit="seq", disable=not progress):
        sequence = with_hands(source, options.hands)
        output = pipeline(sequence)
        batch = output.inputs
        valid, scored, vertices = scored_frames(output)
        frames_total += len(valid)
        frames_with_hand += int(valid.sum())
        if not valid.any():
            continue
        vertex = {k: readout.vertex_pressure(v) for k, v in scored.items()}
        force = {k: readout.uv_force(v, vertices) for k, v in scored.items()}
        arguments = dict(pred_vertex_kpa=vertex["pred"], gt_vertex_kpa=vertex["gt"],
                         pred_force_n=force["pred"], gt_force_n=force["gt"])
        sequence_metrics = PressureMetrics(contact_threshold_kpa=options.contact.contact_threshold_kpa)
        sequence_metrics.update(scored["pred"], scored["gt"], **arguments)
        pooled.update(scored["pred"], scored["gt"], **arguments)
        per_sequence[sequence.name] = _json_ready(sequence_metrics.compute())
        scored_indices = np.flatnonzero(valid)
        touching = scored_indices[(scored["gt"] >= options.contact.contact_threshold_kpa).reshape(len(scored_indices), -1).any(axis=1)]
        factors = sequence_factors(source, batch["joints"][0].numpy()[valid], int(scored_indices[0]), touching)
        per_sequence[sequence.name]["factors"] = factors
        figure_rows.append({"name": sequence.name, "pred": scored["pred"], "gt": scored["gt"], "vertices": vertices,
                            "pred_vertex": vertex["pred"], "gt_vertex": vertex["gt"],
                            "pred_force": force["pred"], "gt_force": force["gt"], "fps": sequence.fps,
                            "factors": factors})
    if not per_sequence:
        if options.hands == "estimated":
            raise DataError(f"{data}: the hand detector found no hand in any of its {frames_total} frames, so there is "
                            "nothing to score; renders outside the detector's distribution give this: try --hands perturbed")
        raise DataError(f"{data}: no annotated frame to evaluate")

    report = {
        "metrics": _json_ready(pooled.compute()),
        "per_sequence": per_sequence,
        # Quality per third of the sequences by camera distance, pitch, hand size, skin, image size.
        "per_factor": factor_breakdown(figure_rows, options.contact.contact_threshold_kpa),
        "checkpoint": str(checkpoint),
        "model": type(pipeline.model).__name__,
        "data": str(data),
        "split": split,
        "sequences": len(per_sequence),
        "hands": options.hands,
        # Frames scored (a hand mesh and ground truth) of all frames: below 1 with estimated hands
        # where the detector found none.
        "frames_with_hand": frames_with_hand,
        "frames_total": frames_total,
        "options": asdict(options),
        "device": str(pipeline.device),
        "uv_layout": mask.layout_id,
        "seconds": round(time.perf_counter() - started, 2),
    }
    out = write_json_atomic(out, report, sort_keys=True)
    if figure:
        write_eval_figure(figure_rows, pipeline.faces, out.with_suffix(".png"), report["metrics"])
    return report


def _json_ready(metrics: dict) -> dict:
    """NaN (an undefined figure) becomes null, numpy scalars plain numbers (counts stay integers)."""
    def plain(value):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        value = float(value)
        return None if np.isnan(value) else value

    return {key: plain(value) for key, value in metrics.items()}


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
    with replacing(path) as temporary:
        figure.savefig(temporary, dpi=80)
    plt.close(figure)
    return path
