"""The training loop (``egopress train``) of EgoPressDiff and of the per-frame baseline.

``model.kind`` picks the model (:mod:`egopress_core.model.kinds`); everything else (data,
batches, optimizer, schedule, EMA, validation, checkpoints) is the same code for both kinds, so a
baseline trained with the same config sections gets exactly the same data, steps and optimizer.

Built from small factories, each usable alone:

- :func:`build_accelerator`: Hugging Face ``accelerate`` for the device, DDP (``accelerate
  launch`` / ``torchrun``, gloo on CPU), mixed precision and gradient accumulation;
- :func:`~egopress_core.training.data.build_datasets` and :class:`EpochBatches`: windows, the
  UV hand mask, resumable seeded batch order;
- :func:`build_model` (the kind's model, fresh or ``init_from``), :func:`build_optimizer` (AdamW
  over the trainable parameters),
  :func:`build_lr_scheduler` (diffusers' warm-up + cosine), :func:`build_ema` (diffusers'
  ``EMAModel``);
- :func:`train`: the loop. Each optimizer step: ``grad_accumulation_steps`` micro-batches under
  ``accelerator.accumulate``, gradient clipping (the norm is logged even without clipping), the
  optimizer, the LR schedule and the EMA; scalars to TensorBoard and ``history.jsonl``; periodic
  validation (:func:`~egopress_core.training.validation.evaluate_model` on EMA weights);
  periodic atomic checkpoints; the final EMA model in ``OUT/model``.

Determinism: the noise, timesteps and condition dropout (EgoPressDiff) of micro-batch ``m`` on
process ``r`` come from a generator seeded with ``(seed, r, m)``, and the batch order is a function
of ``(seed, epoch)``; the checkpoint holds the optimizer, schedule, EMA and every process's global
RNG state. So ``--resume`` after a kill continues the same trajectory bit for bit (on the same
hardware and process count).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from egopress_core.errors import CheckpointError, ConfigError, EgoPressError
from egopress_core.files import write_text_atomic
from egopress_core.options import config_differences
from egopress_core.training import checkpoint as ckpt
from egopress_core.training.config import TrainConfig
from egopress_core.training.data import (
    EpochBatches,
    TrainingData,
    build_datasets,
    check_window_batch,
    validation_loader,
)
from egopress_core.training.history import CURVE_NAME, HISTORY_NAME, History, plot_training_curve
from egopress_core.model.kinds import checkpoint_kind
from egopress_core.model.surgery import init_from
from egopress_core.model.svd_transfer import from_pretrained_svd
from egopress_core.training.validation import evaluate_model

logger = logging.getLogger(__name__)

MODEL_DIR = "model"


class TrainingDivergedError(EgoPressError):
    """The loss or gradient became NaN / infinite."""


@dataclass
class TrainResult:
    """What a :func:`train` call did.

    Attributes:
        out_dir: the run folder.
        step: optimizer steps done in total.
        finished: True when ``max_steps`` was reached (the final model is in ``model_dir``).
        model_dir: ``OUT/model`` (EMA weights) when finished, else None.
        checkpoint: the last checkpoint written.
        last_loss: mean training loss of the last logged interval.
        validation: metrics of the last validation, if any.
        steps_per_second: optimizer steps per second of this call, without validation and
            checkpoint time.
    """

    out_dir: Path
    step: int
    finished: bool
    model_dir: Path | None
    checkpoint: Path | None
    last_loss: float | None
    validation: dict[str, float] | None
    steps_per_second: float


# ----------------------------------------------------------------------------------------------
# Factories
# ----------------------------------------------------------------------------------------------


def resolve_precision(precision: str, on_cpu: bool) -> str:
    """accelerate's mixed-precision mode for ``precision`` ("fp32" is its "no"): fp16 needs a GPU,
    so on CPU it falls back to full precision."""
    if precision == "fp16" and on_cpu:
        warnings.warn("precision 'fp16' needs a GPU; training in full precision (use 'bf16' on CPU)",
                      stacklevel=2)
        return "no"
    if precision == "bf16" and not on_cpu and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision 'bf16' is not supported by this GPU; use 'fp16' or 'fp32'")
    return "no" if precision == "fp32" else precision


def build_accelerator(config: TrainConfig, out_dir: Path):
    """An Accelerator for this run (CPU forced when no GPU, so torchrun on CPU uses gloo DDP)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    on_cpu = config.device == "cpu" or not torch.cuda.is_available()
    log_dir = Path(config.logging.dir) if config.logging.dir else out_dir / "logs"
    return Accelerator(
        cpu=on_cpu,
        mixed_precision=resolve_precision(config.precision, on_cpu),
        gradient_accumulation_steps=config.optim.grad_accumulation_steps,
        log_with="tensorboard" if config.logging.tensorboard else None,
        project_config=ProjectConfiguration(project_dir=os.fspath(out_dir), logging_dir=os.fspath(log_dir)),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )


def build_model(config: TrainConfig, model_config: Any):
    """The ``model.kind`` model in training mode: fresh, initialised from ``model.init_from`` (a
    checkpoint of the same kind and architecture), or, for a paper-size EgoPressDiff, from
    ``model.pretrained_svd``.

    Args:
        config: the run configuration.
        model_config: the kind's resolved config (:func:`resolve_model_config`).
    """
    kind = config.model.model_kind
    if config.model.pretrained_svd is not None:  # validated: EgoPressDiff only
        overrides = {**config.model.overrides, "uv_layout": model_config.uv_layout}
        model = from_pretrained_svd(config.model.pretrained_svd, **overrides)
    elif config.model.init_from is not None:
        model = init_from(kind, config.model.init_from, model_config)
    else:
        model = kind.build(model_config)
    return model.train()


def build_optimizer(model: nn.Module, optim: Any) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (frozen VAE / CLIP excluded)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ConfigError("the model has no trainable parameter")
    return torch.optim.AdamW(parameters, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay,
                             eps=optim.eps)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim: Any):
    """diffusers' schedule: linear warm-up, then cosine decay to 0 at ``max_steps`` (default)."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(optim.lr_schedule, optimizer, num_warmup_steps=optim.warmup_steps,
                         num_training_steps=optim.max_steps)


def build_ema(model: nn.Module, ema: Any):
    """diffusers' EMAModel over the trainable parameters, or None when disabled."""
    if not ema.enabled:
        return None
    from diffusers.training_utils import EMAModel

    return EMAModel([p for p in model.parameters() if p.requires_grad], decay=ema.decay,
                    update_after_step=ema.update_after_step, use_ema_warmup=ema.warmup, inv_gamma=ema.inv_gamma,
                    power=ema.power)


class TrainingLossModule(nn.Module):
    """Routes the model's ``compute_loss`` through ``forward`` so DDP and autocast wrap it.

    ``forward(batch, seed)`` -> ``{"loss": scalar, "mse": scalar}``; ``seed`` drives the
    timesteps, noise and condition dropout of this micro-batch (the baseline's loss has no
    randomness and ignores it).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator(device=self.model.device).manual_seed(int(seed))
        output = self.model.compute_loss(batch, generator=generator)
        return {"loss": output.loss, "mse": output.mse}


def micro_batch_seed(seed: int, process_index: int, micro_batch: int) -> int:
    """64-bit seed of one micro-batch's noise: independent streams per (seed, process, index)."""
    return int(np.random.SeedSequence([seed, process_index, micro_batch]).generate_state(2, np.uint32)
               .astype(np.uint64).dot(np.array([1 << 32, 1], dtype=np.uint64)) & ((1 << 63) - 1))


# ----------------------------------------------------------------------------------------------
# Checks before any work
# ----------------------------------------------------------------------------------------------


def resolve_model_config(config: TrainConfig, data: TrainingData) -> Any:
    """The run's model config (of ``model.kind``) with the data's UV layout."""
    model_config = config.model_config()
    wanted = data.uv_mask.layout_id
    given = config.model.overrides.get("uv_layout")
    if given is not None and given not in (wanted, data.uv_mask.layout_name):
        raise ConfigError(f"model.overrides.uv_layout={given!r} but the data's UV layout is {wanted!r}")
    return model_config.replace(uv_layout=wanted)


def check_resume(checkpoint: Path, config: TrainConfig, model_config: Any, window: Any) -> dict[str, Any]:
    """Refuse a checkpoint of another model, UV layout or window; warn about other changes.

    Returns:
        The checkpoint's training state.
    """
    from egopress_core.training.config import read_yaml_mapping

    state = ckpt.read_training_state(checkpoint)
    saved_kind = checkpoint_kind(checkpoint)
    if saved_kind.name != config.model.kind:
        raise CheckpointError(f"cannot resume from {checkpoint}: it holds a model.kind={saved_kind.name!r} model, "
                              f"the config trains model.kind={config.model.kind!r}")
    saved = saved_kind.load_config(checkpoint)
    if saved.uv_layout != model_config.uv_layout:
        raise CheckpointError(f"cannot resume from {checkpoint}: it was trained on UV layout {saved.uv_layout!r}, "
                              f"the data is on {model_config.uv_layout!r}")
    differences = saved.architecture_differences(model_config)
    if differences:
        listed = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(differences.items()))
        raise CheckpointError(f"cannot resume from {checkpoint}: it holds another model ({listed})")
    saved_window = state.get("window", {})
    window_changes = config_differences(saved_window, _plain(window.to_dict()))
    if window_changes:
        listed = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in window_changes.items())
        raise CheckpointError(f"cannot resume from {checkpoint}: the data windows changed ({listed})")
    if state.get("step", 0) > config.optim.max_steps:
        raise CheckpointError(f"cannot resume from {checkpoint}: it is at step {state['step']}, beyond "
                              f"optim.max_steps={config.optim.max_steps}")
    saved_config = read_yaml_mapping(checkpoint / ckpt.TRAIN_CONFIG_NAME)
    changed = config_differences(saved_config, config.to_dict())
    if changed:
        logger.warning("resuming with changed settings (the run is no longer bit-identical to an "
                       "uninterrupted one): %s", ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()))
    return state


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _flat_hparams(values: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_hparams(value, name + "/"))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    until_step: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train the ``model.kind`` model as ``config`` says, into ``out_dir``.

    Args:
        config: the validated run configuration.
        out_dir: run folder (checkpoints, logs, history, curve, final model).
        resume: continue from ``OUT/checkpoints/latest``.
        until_step: stop after this optimizer step (checkpointed), as for a time-limited job;
            ``max_steps`` (and so the LR schedule) is unchanged. ``--resume`` continues later.
        progress: show progress bars.

    Raises:
        ConfigError, DataError, CheckpointError: bad configuration, data or checkpoint, all
            before the first step.
        TrainingDivergedError: non-finite loss or gradient.
    """
    from accelerate.utils import send_to_device, set_seed

    out = Path(out_dir)
    max_steps = config.optim.max_steps
    stop_step = max_steps if until_step is None else min(int(until_step), max_steps)
    if until_step is not None and until_step < 1:
        raise ConfigError(f"until_step must be >= 1; got {until_step}")

    # 1. The run folder: a new run must not overwrite another; a resume needs a checkpoint.
    latest = ckpt.latest_checkpoint(out)
    if resume and latest is None:
        raise CheckpointError(f"nothing to resume: {out / ckpt.CHECKPOINTS_DIR / ckpt.LATEST_NAME} does not exist")
    if not resume and latest is not None:
        raise ConfigError(f"{out} already holds a training run ({latest.name}); pass --resume to continue it "
                          "or choose another --out")

    # 2. Data, UV layout, model config, resume compatibility: all checked before heavy work.
    kind = config.model.model_kind
    data_model_config = config.model_config()
    window = config.window_config(data_model_config)
    data = build_datasets(config, data_model_config, window)
    model_config = resolve_model_config(config, data)
    state: dict[str, Any] = {}
    if resume:
        state = check_resume(latest, config, model_config, window)

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    accelerator = build_accelerator(config, out)
    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)  # the same initial weights on every process

    # 3. Model and batches; the first batches must pass the model's checks (shapes, window
    #    length, NaN) before any statistics pass or step.
    model = build_model(config, model_config)
    batches = EpochBatches(data.train, config.optim.batch_size, data.collate, config.seed,
                           accelerator.process_index, accelerator.num_processes, config.num_workers)
    val_loader = None
    if data.val is not None and config.validation.every_steps > 0:
        val_loader = validation_loader(data.val, config.validation.num_windows, config.validation.batch_size,
                                       data.collate, config.num_workers)
    check_window_batch(model, next(iter(batches.loader(0))), "training data")
    if val_loader is not None:
        check_window_batch(model, next(iter(val_loader)), "validation data")

    # 4. Statistics of the training data (saved with every checkpoint and the model).
    from egopress_core.data.windows import DataStatistics, compute_statistics

    statistics_path = out / ckpt.STATISTICS_NAME
    if resume:
        statistics = DataStatistics.load(latest / ckpt.STATISTICS_NAME)
    elif main:
        statistics = compute_statistics(data.train, max_windows=config.data.statistics_windows, seed=config.seed,
                                        num_workers=config.num_workers, progress=progress)
        statistics.save(statistics_path)
    accelerator.wait_for_everyone()
    if not main and not resume:
        statistics = DataStatistics.load(statistics_path)
    top = statistics.pressure_percentiles_kpa.get("99.9", 0.0)
    ceiling, advice = kind.pressure_ceiling(model_config)
    if top > ceiling:
        logger.warning("0.1%% of the training pressures exceed %.3g kPa, above the model's ceiling of %.3g kPa: "
                       "they saturate (%s)", top, ceiling, advice)

    # 5. Optimizer, schedule, EMA, devices.
    optimizer = build_optimizer(model, config.optim)
    lr_scheduler = build_lr_scheduler(optimizer, config.optim)
    loss_module = TrainingLossModule(model)
    loss_module, optimizer = accelerator.prepare(loss_module, optimizer)
    ema = build_ema(model, config.ema)
    trainable = [p for p in model.parameters() if p.requires_grad]

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            accelerator.unwrap_model(models[0]).model.save_pretrained(output_dir)
        while weights:
            weights.pop()  # written above in the model's own format

    def load_model_hook(models, input_dir):
        from safetensors.torch import load_file

        from egopress_core.model.checkpoint import WEIGHTS_NAME

        module = accelerator.unwrap_model(models.pop()).model
        module.load_state_dict(load_file(os.path.join(input_dir, WEIGHTS_NAME), device=str(accelerator.device)))

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)
    accelerator.register_for_checkpointing(lr_scheduler)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)

    step = 0
    if resume:
        accelerator.load_state(os.fspath(latest))
        if ema is not None:
            ema.to(accelerator.device)
        step = int(state["step"])
        if int(state.get("num_processes", accelerator.num_processes)) != accelerator.num_processes:
            logger.warning("resuming with %d processes, the checkpoint was written by %d: the batch order differs",
                           accelerator.num_processes, state["num_processes"])

    history = History(out / HISTORY_NAME)
    if main:
        config.save(out / ckpt.TRAIN_CONFIG_NAME)
        data.uv_mask.save(out / ckpt.UV_MASK_NAME)
        if resume:
            history.truncate_after(step)
    if config.logging.tensorboard:
        accelerator.init_trackers("egopress_train", config=_flat_hparams(config.to_dict()))

    def write_extra(folder: Path) -> None:
        config.save(folder / ckpt.TRAIN_CONFIG_NAME)
        statistics.save(folder / ckpt.STATISTICS_NAME)
        data.uv_mask.save(folder / ckpt.UV_MASK_NAME)

    def training_state() -> dict[str, Any]:
        return {"step": step, "micro_batches": micro_batch, "epoch": micro_batch // batches.batches_per_epoch,
                "num_processes": accelerator.num_processes, "window": _plain(window.to_dict()),
                "uv_layout": model_config.uv_layout}

    def validate() -> dict[str, float] | None:
        result = None
        if main and val_loader is not None:
            use_ema = ema is not None and config.validation.use_ema
            if use_ema:
                ema.store(trainable)
                ema.copy_to(trainable)
            try:
                v = config.validation
                result = evaluate_model(model, val_loader, num_inference_steps=v.num_inference_steps,
                                        scheduler=v.scheduler, guidance_scale=v.guidance_scale, seed=v.seed,
                                        max_windows=v.num_windows, progress=False)
            finally:
                if use_ema:
                    ema.restore(trainable)
            history.append({"kind": "val", "step": step, **result})
            accelerator.log({f"val/{k}": v for k, v in result.items()}, step=step)
            logger.info("step %d validation: %s", step, {k: round(v, 4) for k, v in result.items()})
        accelerator.wait_for_everyone()
        return result

    plotted_at = [-1]

    def plot() -> None:
        if main and config.logging.plot and plotted_at[0] != step:
            plot_training_curve(history.records(), out / CURVE_NAME,
                                title=f"{kind.title}, {config.model.preset}, step {step}/{max_steps}")
            plotted_at[0] = step

    # 6. The loop.
    if main:
        n_params = sum(p.numel() for p in trainable)
        logger.info("training %s, preset %s (%.2fM trainable parameters) on %d train / %d val windows, "
                    "%d process(es), %s",
                    kind.title, config.model.preset, n_params / 1e6, len(data.train), len(data.val) if data.val else 0,
                    accelerator.num_processes, accelerator.device)
    accumulation = config.optim.grad_accumulation_steps
    micro_batch = step * accumulation
    iterator = batches.iterate(micro_batch)
    loss_sum = torch.zeros((), device=accelerator.device)
    mse_sum = torch.zeros((), device=accelerator.device)
    interval_micro = 0
    last_loss: float | None = None
    last_validation: dict[str, float] | None = None
    last_checkpoint: Path | None = latest
    grad_norm = torch.zeros(())
    busy_time = 0.0
    steps_done = 0
    bar = tqdm(total=max_steps, initial=step, desc="train", unit="step", disable=not (main and progress),
               dynamic_ncols=True)
    loss_module.train()
    tick = time.perf_counter()
    while step < stop_step:
        epoch, batch = next(iterator)
        batch = send_to_device(batch, accelerator.device)
        with accelerator.accumulate(loss_module):
            output = loss_module(batch, micro_batch_seed(config.seed, accelerator.process_index, micro_batch))
            accelerator.backward(output["loss"])
            if accelerator.sync_gradients:
                max_norm = config.optim.max_grad_norm if config.optim.max_grad_norm is not None else math.inf
                grad_norm = accelerator.clip_grad_norm_(trainable, max_norm)
                if not torch.isfinite(grad_norm) and accelerator.mixed_precision != "fp16":
                    raise TrainingDivergedError(
                        f"the gradient norm is {float(grad_norm)} at step {step + 1} (loss "
                        f"{float(output['loss'])}): lower optim.lr or set optim.max_grad_norm")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        micro_batch += 1
        interval_micro += 1
        loss_sum += output["loss"].detach()
        mse_sum += output["mse"].detach()
        if not accelerator.sync_gradients:
            continue

        # One optimizer step done (with the learning rate logged below).
        lr_used = lr_scheduler.get_last_lr()[0]
        if not accelerator.optimizer_step_was_skipped:
            lr_scheduler.step()
        if ema is not None:
            ema.step(trainable)
        step += 1
        steps_done += 1
        bar.update(1)
        if step % config.logging.every_steps == 0 or step == stop_step:
            means = accelerator.reduce(torch.stack([loss_sum, mse_sum]) / interval_micro, reduction="mean")
            last_loss = float(means[0])
            if not math.isfinite(last_loss):
                raise TrainingDivergedError(f"the training loss is {last_loss} at step {step}")
            busy = busy_time + (time.perf_counter() - tick)
            record = {"kind": "train", "step": step, "epoch": epoch, "loss": last_loss, "mse": float(means[1]),
                      "lr": lr_used, "grad_norm": float(grad_norm),
                      "ema_decay": ema.cur_decay_value if ema is not None else None,
                      "steps_per_s": steps_done / busy if busy > 0 else None}
            if main:
                history.append(record)
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{record['lr']:.2e}")
            accelerator.log({f"train/{k}": v for k, v in record.items() if isinstance(v, (int, float))
                             and k not in ("kind", "step")}, step=step)
            loss_sum.zero_()
            mse_sum.zero_()
            interval_micro = 0
        periodic_val = config.validation.every_steps and step % config.validation.every_steps == 0
        periodic_ckpt = config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0
        if periodic_val or step == max_steps or periodic_ckpt or step == stop_step:
            busy_time += time.perf_counter() - tick
            if periodic_val or step == max_steps:
                last_validation = validate() if val_loader is not None else last_validation
            if periodic_ckpt or step == stop_step:
                last_checkpoint = ckpt.save_checkpoint(accelerator, out, step, training_state(), write_extra,
                                                       config.checkpoint.keep_last)
                plot()
            tick = time.perf_counter()
    busy_time += time.perf_counter() - tick
    bar.close()

    # 7. The final model: EMA weights, with the statistics, config and UV mask beside them.
    finished = step >= max_steps
    model_dir = None
    if finished:
        model_dir = out / MODEL_DIR
        if main:
            staging = out / f".{MODEL_DIR}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            if ema is not None:
                ema.store(trainable)
                ema.copy_to(trainable)
            try:
                model.save_pretrained(staging)
            finally:
                if ema is not None:
                    ema.restore(trainable)
            write_extra(staging)
            write_text_atomic(staging / "README.txt",
                              f"{kind.title} trained {step} steps ({'EMA' if ema is not None else 'raw'} weights).\n"
                              f"Load: {kind.model_class.__name__}.from_pretrained(this folder) or "
                              "egopress_core.evaluation.load_pressure_model(this folder); evaluate: "
                              "egopress eval --checkpoint (this folder); UV mask: "
                              "HandUVMask.load(this folder / 'hand_uv_mask.json').\n")
            retired = out / f".{MODEL_DIR}.old"
            shutil.rmtree(retired, ignore_errors=True)
            if model_dir.exists():
                os.replace(model_dir, retired)
            os.replace(staging, model_dir)
            shutil.rmtree(retired, ignore_errors=True)
            plot()
        accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(out_dir=out, step=step, finished=finished, model_dir=model_dir, checkpoint=last_checkpoint,
                       last_loss=last_loss, validation=last_validation,
                       steps_per_second=steps_done / busy_time if busy_time > 0 else 0.0)
