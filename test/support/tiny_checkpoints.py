"""The tiny untrained EgoPressDiff checkpoint the pipeline, node and bag tests run, saved once per
test session under pytest's base temp folder (test/conftest.py's ``tiny_checkpoint`` fixture, and
``rosbag_helpers`` for the bag tests' variants)."""

from __future__ import annotations

from pathlib import Path

import torch


def session_dir(tmp_path_factory, name: str) -> Path:
    """A folder shared by every test file of the session (created once)."""
    return tmp_path_factory.getbasetemp() / name


def tiny_checkpoint(tmp_path_factory, **overrides) -> Path:
    """A tiny untrained EgoPressDiff on the bundled right hand's UV layout, saved as training does
    (``overrides``: EgoPressDiffConfig keys, e.g. ``use_uv_geometry=True``)."""
    from egopress_core.data.sources import hand_uv_mask
    from egopress_core.pipeline import UV_MASK_FILE
    from egopress_core.model import EgoPressDiff, tiny_config

    name = "_".join(["tiny_checkpoint", *(f"{k}_{v}" for k, v in sorted(overrides.items()))])
    directory = session_dir(tmp_path_factory, name)
    if not (directory / "config.json").is_file():
        mask = hand_uv_mask((16, 16), "right")
        torch.manual_seed(0)
        model = EgoPressDiff(tiny_config(uv_layout=mask.layout_id, **overrides))
        model.save_pretrained(directory)
        mask.save(directory / UV_MASK_FILE)
    return directory


def save_tiny_baseline_checkpoint(directory: Path, mask) -> Path:
    """A tiny untrained per-frame baseline (seed 0) at the tiny EgoPressDiff's image and UV sizes,
    saved with ``mask`` (a HandUVMask at that UV size) as training saves it."""
    from egopress_core.model.bin_classifier import BinClassifierConfig, PerFrameBinClassifier
    from egopress_core.model.config import tiny_config
    from egopress_core.pipeline import UV_MASK_FILE

    config = tiny_config()
    torch.manual_seed(0)
    PerFrameBinClassifier(BinClassifierConfig(
        num_frames=4, image_size=config.image_size, uv_size=config.uv_size, uv_layout=mask.layout_id,
        encoder_channels=(8, 16), vertex_hidden_dim=16, decoder_channels=(16, 8))).save_pretrained(directory)
    mask.save(directory / UV_MASK_FILE)
    return directory
