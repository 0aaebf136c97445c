"""Paper-size EgoPressDiff from a (tiny) Stable Video Diffusion folder
(egopress_core.model.svd_transfer), and checkpoints that keep their frozen weights there."""

from __future__ import annotations

import json

import pytest
import torch

from egopress_core.errors import CheckpointError, ConfigError
from egopress_core.model import EgoPressDiff
from egopress_core.model.svd_transfer import from_pretrained_svd, svd_config
from model_batches import make_window_batch

# The SVD folder's VAE, shrunk.
TINY_VAE = dict(
    block_out_channels=(32, 32),
    down_block_types=("DownEncoderBlock2D",) * 2,
    layers_per_block=1,
    latent_channels=4,
    sample_size=16,
)


def _write_tiny_svd_folder(root):
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(1)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
        layers_per_block=1,
        cross_attention_dim=32,
        num_attention_heads=(2, 4),
        num_frames=4,
    )
    unet.save_pretrained(root / "unet")
    AutoencoderKLTemporalDecoder(**TINY_VAE).save_pretrained(root / "vae")
    clip = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            projection_dim=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    )
    clip.save_pretrained(root / "image_encoder")
    return unet


def test_from_pretrained_svd_loads_matching_weights(tmp_path):
    svd_unet = _write_tiny_svd_folder(tmp_path)
    model = from_pretrained_svd(
        tmp_path,
        num_frames=2,
        image_size=(32, 32),
        uv_size=(16, 16),
        vertex_hidden_dim=16,
        pose_net_channels=(8, 8, 8, 8),
    )
    assert model.config.latent_space == "vae" and model.config.image_encoder == "clip"
    assert model.config.cross_attention_dim == 32 and model.config.num_image_tokens == 17
    source = svd_unet.state_dict()
    target = model.unet.state_dict()
    spatial = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    image_cross = "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    for name in (
        spatial,
        image_cross,
        "time_embedding.linear_1.weight",
        "up_blocks.1.resnets.0.spatial_res_block.conv1.weight",
    ):
        assert torch.equal(target[name], source[name]), name
    # conv_in: pressure <- SVD noisy latent, depth latent <- SVD image latent, validity channel zero.
    assert torch.equal(target["conv_in.weight"][:, :8], source["conv_in.weight"])
    assert torch.count_nonzero(target["conv_in.weight"][:, 8:]) == 0
    assert "conv_in.weight" in model.svd_transfer.expanded
    assert any("attn2_vertex" in name for name in model.svd_transfer.initialised)
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    # The loaded model trains and samples.
    batch = make_window_batch(model.config, batch_size=1)
    model.compute_loss(batch, generator=0).loss.backward()
    pressure = model.eval().sample(model.build_conditions(batch), num_inference_steps=2, generator=0)
    assert pressure.shape == (1, 2, 1, 16, 16)
    # Small checkpoints without the frozen VAE / CLIP reload them from the SVD folder.
    model.save_pretrained(tmp_path / "ckpt", include_frozen=False)
    with pytest.raises(CheckpointError, match="frozen_weights_from"):
        EgoPressDiff.from_pretrained(tmp_path / "ckpt")
    reloaded = EgoPressDiff.from_pretrained(tmp_path / "ckpt", frozen_weights_from=tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name


def test_from_pretrained_svd_rejects_incomplete_folders(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="vae/config.json is missing"):
        from_pretrained_svd(tmp_path)


def _write_svd_configs(root, **unet):
    """The three config.json files of an SVD folder (no weights): enough for svd_config."""
    unet_config = {"_class_name": "UNetSpatioTemporalConditionModel", "block_out_channels": [32, 64],
                   "cross_attention_dim": 32, "down_block_types": ["CrossAttnDownBlockSpatioTemporal",
                                                                   "DownBlockSpatioTemporal"],
                   "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"], **unet}
    for sub, config in (("unet", unet_config), ("vae", {}), ("image_encoder", {"image_size": 32, "patch_size": 8})):
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / "config.json").write_text(json.dumps(config))


def test_svd_config_refuses_what_the_folder_decides(tmp_path):
    _write_svd_configs(tmp_path)
    with pytest.raises(ConfigError, match=r"\['cross_attention_dim'\] come from the SVD folder"):
        svd_config(tmp_path, cross_attention_dim=64)
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(CheckpointError, match="holds UNet2DConditionModel, not UNetSpatioTemporalConditionModel"):
        svd_config(tmp_path)
