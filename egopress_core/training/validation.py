"""Score a pressure model on windows: estimated UV-pressure maps vs ground truth, in kPa.

:func:`evaluate_model` is the training loop's periodic validation, for every model kind: it
estimates every window with the model's ``sample`` (EgoPressDiff: its diffusion sampler, decoded
to kPa, non-negative, zero off the UV hand mask; the per-frame baseline: bin centres, the sampler
arguments unused) and pools :class:`~egopress_core.metrics.PressureMetrics` over the annotated
frames; optionally it also reports the training loss (EgoPressDiff: the denoising loss at fixed
noise; the baseline: its soft cross-entropy).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from tqdm.auto import tqdm

from egopress_core.metrics import DEFAULT_CONTACT_THRESHOLD_KPA, PressureMetrics


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


@torch.no_grad()
def evaluate_model(
    model: Any,
    dataloader: Iterable[Mapping[str, Any]],
    *,
    num_inference_steps: int = 10,
    scheduler: str = "ddim",
    guidance_scale: float = 1.0,
    seed: int = 0,
    max_windows: int | None = None,
    with_loss: bool = True,
    contact_threshold_kpa: float = DEFAULT_CONTACT_THRESHOLD_KPA,
    progress: bool = False,
) -> dict[str, float]:
    """Sample every window of ``dataloader`` and pool the pressure metrics.

    Args:
        model: an :class:`~egopress_core.model.EgoPressDiff` or a
            :class:`~egopress_core.model.PerFrameBinClassifier` (put in eval mode for the call and
            restored afterwards).
        dataloader: window batches (the clip-window format plus ``uv_mask``), each window
            ``T = model.config.num_frames`` frames.
        num_inference_steps, scheduler, guidance_scale: the sampler (no effect on the baseline).
        seed: batch ``i`` uses noise seed ``seed + i``, so repeated calls see the same noise.
        max_windows: stop after this many windows (None: all).
        with_loss: also report ``loss`` / ``mse``: the training loss at seeded timesteps and noise.
        contact_threshold_kpa: contact threshold of the metrics.
        progress: tqdm bar over batches.

    Returns:
        ``contact_iou``, ``volumetric_iou``, ``mae_kpa``, ``temporal_accuracy``,
        ``temporal_smoothness_kpa``, ``frames`` (annotated frames scored), ``windows``, and with
        ``with_loss`` ``loss`` and ``mse``. Each window is one ordered sequence for the temporal
        figures (its annotated frames).
    """
    was_training = model.training
    model.eval()
    metrics = PressureMetrics(contact_threshold_kpa=contact_threshold_kpa)
    device = model.device
    windows = scored_frames = 0
    loss_sum = mse_sum = 0.0
    try:
        for index, batch in enumerate(tqdm(dataloader, desc="validation", disable=not progress, leave=False)):
            if max_windows is not None and windows >= max_windows:
                break
            batch = _to_device(batch, device)
            if max_windows is not None and windows + batch["rgb"].shape[0] > max_windows:
                keep = max_windows - windows
                batch = {k: v[:keep] if isinstance(v, torch.Tensor) and k != "uv_mask" else
                         (v[:keep] if isinstance(v, list) else v) for k, v in batch.items()}
            size = int(batch["rgb"].shape[0])
            conditions = model.build_conditions(batch)
            predicted = model.sample(conditions, num_inference_steps=num_inference_steps, scheduler=scheduler,
                                     guidance_scale=guidance_scale, generator=seed + index)
            predicted = predicted[:, :, 0].float().cpu().numpy()
            truth = batch["uv_pressure_kpa"][:, :, 0].float().cpu().numpy()
            valid = batch["valid"].bool().cpu().numpy()
            for b in range(size):
                if valid[b].any():
                    metrics.update(predicted[b][valid[b]], truth[b][valid[b]])
                    scored_frames += int(valid[b].sum())
            if with_loss:
                output = model.compute_loss(batch, generator=seed + index)
                loss_sum += float(output.loss) * size
                mse_sum += float(output.mse) * size
            windows += size
    finally:
        model.train(was_training)
    results: dict[str, float] = dict(metrics.compute()) if scored_frames else {"frames": 0}
    results["windows"] = windows
    if with_loss and windows:
        results["loss"] = loss_sum / windows
        results["mse"] = mse_sum / windows
    return {key: float(value) for key, value in results.items()}
