"""Weight surgery (egopress_core.model.surgery): growing a trained model, fine-tuning from a
checkpoint."""

from __future__ import annotations

import pytest
import torch

from egopress_core.conditioning import UV_GEOMETRY_CHANNELS
from egopress_core.errors import CheckpointError, ConfigError
from egopress_core.model import EgoPressDiff, PerFrameBinClassifier, tiny_config
from egopress_core.model.bin_classifier import tiny_bin_classifier_config
from egopress_core.model.kinds import model_kind
from egopress_core.model.surgery import init_from, with_uv_geometry
from model_batches import make_window_batch


def test_with_uv_geometry_starts_out_computing_the_same_map():
    torch.manual_seed(0)
    model = EgoPressDiff(tiny_config()).eval()
    grown = with_uv_geometry(model).eval()
    assert grown.config.use_uv_geometry and grown.unet.conv_in.in_channels == 1 + 2 + UV_GEOMETRY_CHANNELS
    batch = make_window_batch(model.config, batch_size=1, seed=2)
    before = model.sample(model.build_conditions(batch), num_inference_steps=2, generator=0)
    batch["uv_geometry"] = torch.rand(1, model.config.num_frames, UV_GEOMETRY_CHANNELS, *model.config.uv_size)
    after = grown.sample(grown.build_conditions(batch), num_inference_steps=2, generator=0)
    assert torch.allclose(before, after, atol=1e-5)
    with pytest.raises(ConfigError, match="already uses UV geometry"):
        with_uv_geometry(grown)


def test_init_from_takes_the_weights_and_the_runs_training_keys(tmp_path):
    torch.manual_seed(0)
    trained = EgoPressDiff(tiny_config())
    trained.save_pretrained(tmp_path / "trained")
    kind = model_kind("egopressdiff")
    run_config = trained.config.replace(condition_dropout_prob=0.3)
    model = init_from(kind, tmp_path / "trained", run_config)
    assert model.config == run_config
    assert all(torch.equal(t, model.state_dict()[name]) for name, t in trained.state_dict().items())
    # The one architecture change allowed: the UV geometry inputs, added at zero.
    grown = init_from(kind, tmp_path / "trained", run_config.replace(use_uv_geometry=True))
    assert grown.config == run_config.replace(use_uv_geometry=True)
    weight = grown.state_dict()["unet.conv_in.weight"]
    old_inputs = trained.unet.conv_in.in_channels
    assert torch.equal(weight[:, :old_inputs], trained.state_dict()["unet.conv_in.weight"])
    assert weight.shape[1] == old_inputs + UV_GEOMETRY_CHANNELS and torch.count_nonzero(weight[:, old_inputs:]) == 0
    with pytest.raises(CheckpointError, match=r"another config \(num_frames: checkpoint 4 vs expected 6\)"):
        init_from(kind, tmp_path / "trained", run_config.replace(num_frames=6))
    PerFrameBinClassifier(tiny_bin_classifier_config()).save_pretrained(tmp_path / "baseline")
    with pytest.raises(CheckpointError, match="holds a model.kind='bin_classifier' checkpoint"):
        init_from(kind, tmp_path / "baseline", run_config)


def test_a_baseline_checkpoint_is_not_grown_with_uv_geometry(tmp_path):
    """The per-frame baseline's UV geometry enters through a layer of its own: fine-tuning a
    checkpoint without it into one with it is refused with the way out, not a KeyError."""
    baseline = PerFrameBinClassifier(tiny_bin_classifier_config())
    baseline.save_pretrained(tmp_path / "baseline")
    with pytest.raises(CheckpointError, match="only an EgoPressDiff can be grown with UV geometry.*from scratch"):
        init_from(model_kind("bin_classifier"), tmp_path / "baseline", baseline.config.replace(use_uv_geometry=True))
