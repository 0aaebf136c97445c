"""The files of a model checkpoint folder: ``config.json`` (format, version, config) and
``model.safetensors``, written so that a crash never leaves a half-written checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def write_checkpoint(directory: str | os.PathLike, state: dict[str, torch.Tensor], document: dict[str, Any]) -> None:
    """Writes the weights and the config document into ``directory`` (created).

    Both files are staged in a temporary folder inside ``directory`` and renamed into place.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in state.items()}
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".staging-"))
    try:
        save_file(state, staging / WEIGHTS_NAME, metadata={"format": "pt"})
        (staging / CONFIG_NAME).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        os.replace(staging / WEIGHTS_NAME, directory / WEIGHTS_NAME)
        os.replace(staging / CONFIG_NAME, directory / CONFIG_NAME)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
