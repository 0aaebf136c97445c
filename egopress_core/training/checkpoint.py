"""Checkpoint folders of a training run.

Layout of ``OUT/checkpoints/step_XXXXXX/``:

- ``config.json`` + ``model.safetensors``: the trained (non-EMA) weights via
  :meth:`EgoPressDiff.save_pretrained` (the model config carries the UV-layout id);
- ``train_config.yaml``: the resolved :class:`TrainConfig`;
- ``statistics.json``: the training data's :class:`DataStatistics`;
- ``hand_uv_mask.json``: how to rebuild the UV hand mask (:class:`HandUVMask`);
- ``training_state.json``: step, micro-batches consumed, epoch, resolved window config;
- accelerate's state: ``optimizer.bin``, ``random_states_<rank>.pkl`` (python, numpy, torch and
  CUDA generators of every process), ``custom_checkpoint_<i>.pkl`` (LR scheduler, EMA), and the
  gradient-scaler state under fp16.

A checkpoint is written to ``.step_XXXXXX.partial`` and renamed when complete; then
``OUT/checkpoints/latest`` (a text file naming the folder) is replaced atomically and the oldest
folders beyond ``keep_last`` are deleted. A run killed at any moment leaves the previous
checkpoint intact and ``latest`` pointing at a whole folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from egopress_core.errors import CheckpointError
from egopress_core.files import write_text_atomic

CHECKPOINTS_DIR = "checkpoints"
LATEST_NAME = "latest"
STATE_NAME = "training_state.json"
TRAIN_CONFIG_NAME = "train_config.yaml"
STATISTICS_NAME = "statistics.json"
UV_MASK_NAME = "hand_uv_mask.json"
STATE_VERSION = 1
_STEP_DIR = re.compile(r"^step_(\d{6,})$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def checkpoint_steps(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The folder ``OUT/checkpoints/latest`` names, or None when the run has no checkpoint.

    Raises:
        CheckpointError: ``latest`` names a folder that is missing or incomplete.
    """
    pointer = Path(out_dir) / CHECKPOINTS_DIR / LATEST_NAME
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    path = pointer.parent / name
    if not _STEP_DIR.match(name) or not (path / STATE_NAME).is_file():
        raise CheckpointError(f"{pointer} names {name!r}, which is not a complete checkpoint folder")
    return path


def read_training_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """``training_state.json`` of a checkpoint folder."""
    path = Path(checkpoint) / STATE_NAME
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    if state.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path}: training state version {state.get('version')!r}, expected {STATE_VERSION}")
    return state


def save_checkpoint(
    accelerator: Any,
    out_dir: str | os.PathLike,
    step: int,
    state: dict[str, Any],
    write_extra: Callable[[Path], None],
    keep_last: int,
) -> Path:
    """Write ``OUT/checkpoints/step_XXXXXX`` atomically; call on every process.

    Args:
        accelerator: the run's Accelerator (its registered save hook writes the model).
        out_dir: the run folder.
        step: optimizer steps done.
        state: JSON-ready loop state (``version`` is added).
        write_extra: called on the main process with the staging folder to add files.
        keep_last: complete checkpoints kept (oldest deleted first).

    Returns:
        The checkpoint folder.
    """
    root = Path(out_dir) / CHECKPOINTS_DIR
    final = root / checkpoint_name(step)
    staging = root / f".{checkpoint_name(step)}.partial"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(os.fspath(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_extra(staging)
        write_text_atomic(staging / STATE_NAME, json.dumps({**state, "version": STATE_VERSION}, indent=2) + "\n")
        if final.exists():  # re-saving a step (e.g. the end of a resumed run): swap, then delete
            retired = root / f".{checkpoint_name(step)}.old"
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(final, retired)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
        write_text_atomic(root / LATEST_NAME, final.name + "\n")
        for _, old in checkpoint_steps(out_dir)[:-keep_last]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
