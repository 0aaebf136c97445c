"""EgoPressDiff end to end: config, loss, sampler, checkpoints, SVD folder loading."""

from __future__ import annotations

import json

import pytest
import torch

from egopress_core.conditioning import UV_GEOMETRY_CHANNELS

from egopress_core.errors import CheckpointError, ConfigError, DataError
from egopress_core.model import (
    SCHEDULERS,
    EgoPressDiff,
    EgoPressDiffConfig,
    compact_config,
    masked_diffusion_loss,
    paper_config,
    preset_config,
    tiny_config,
)
from model_batches import make_window_batch

TINY_VAE = dict(
    block_out_channels=(32, 32),
    down_block_types=("DownEncoderBlock2D",) * 2,
    layers_per_block=1,
    latent_channels=4,
    sample_size=16,
)


@pytest.fixture(scope="module")
def model() -> EgoPressDiff:
    torch.manual_seed(0)
    return EgoPressDiff(tiny_config()).eval()


@pytest.fixture(scope="module")
def conditions(model):
    return model.build_conditions(make_window_batch(model.config, batch_size=2, seed=1))


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def test_presets_validate_and_round_trip(tmp_path):
    for name in ("tiny", "compact", "paper"):
        config = preset_config(name)
        config.save(tmp_path / f"{name}.json")
        assert EgoPressDiffConfig.load(tmp_path / f"{name}.json") == config
    assert compact_config().num_frames == 16 and compact_config().uv_size == (32, 32)
    paper = paper_config()
    assert paper.latent_size == (28, 28) and paper.unet_in_channels == 4 + 4 + 1
    assert paper.num_image_tokens == 257 and paper.cross_attention_dim == 1024


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prediction_type": "x0"}, "prediction_type must be one of"),
        ({"latent_space": "vae"}, "needs vae"),
        ({"use_vertices": False}, "dc_calibration=True needs use_vertices"),
        ({"num_vertex_tokens": 1}, "num_vertex_tokens >= 2"),
        ({"num_image_tokens": 3}, "square"),
        ({"unet_block_out_channels": (32, 48)}, "multiples of 32"),
        ({"unet_num_attention_heads": (2,)}, "unet_num_attention_heads must have 2"),
        ({"condition_dropout_prob": 1.0}, "condition_dropout_prob"),
        ({"image_size": (32,)}, "image_size"),
        ({"beta_schedule": "scaled_linear"}, "never reaches noise"),  # 100 steps of scaled_linear
        ({"prediction_type": "epsilon"}, "divides noise-prediction errors"),  # cosine ends at ~0 SNR
    ],
)
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**overrides)


def test_config_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown EgoPressDiff config keys"):
        EgoPressDiffConfig.from_dict({**tiny_config().to_dict(), "learning_rate": 1e-4})


# ---------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------


def test_masked_loss_scales_residual_by_texel_weight():
    prediction = torch.zeros(1, 2, 1, 4, 4)
    target = torch.ones(1, 2, 1, 4, 4)
    valid = torch.ones(1, 2)
    assert masked_diffusion_loss(prediction, target, torch.ones(1, 1, 1, 4, 4), valid).item() == pytest.approx(1.0)
    # residual x 2 on hand texels -> squared error x 4
    assert masked_diffusion_loss(prediction, target, torch.full((1, 1, 1, 4, 4), 2.0), valid).item() == pytest.approx(4.0)
    half = torch.ones(1, 1, 1, 4, 4)
    half[..., :2, :] = 2.0
    assert masked_diffusion_loss(prediction, target, half, valid).item() == pytest.approx(2.5)
    assert masked_diffusion_loss(prediction, target, half, torch.zeros(1, 2)).item() == 0.0


def test_loss_weight_is_paper_weight_plus_pressure_term():
    torch.manual_seed(0)
    uv_mask = torch.zeros(1, 1, 8, 8)
    uv_mask[..., :, :4] = 1.0
    pressure = torch.zeros(1, 2, 1, 8, 8)
    pressure[0, 1, 0, 2, 1] = 200.0  # p_max on a hand texel -> normalised 1
    pressure[0, 1, 0, 2, 6] = 200.0  # off the hand: ignored
    paper = EgoPressDiff(tiny_config(uv_size=(8, 8)))
    weight = paper.loss_weight(pressure, uv_mask)
    assert weight.shape == (1, 1, 1, 8, 8)
    assert torch.allclose(weight, 1.0 + uv_mask[:, None])
    weighted = EgoPressDiff(tiny_config(uv_size=(8, 8), pressure_loss_weight=10.0))
    extra = weighted.loss_weight(pressure, uv_mask) - weight
    assert extra[0, 1, 0, 2, 1].item() == pytest.approx(10.0)
    extra[0, 1, 0, 2, 1] = 0.0
    assert extra.abs().max().item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="pressure_loss_weight"):
        tiny_config(pressure_loss_weight=-1.0)


@pytest.mark.parametrize(
    "schedule",
    [
        dict(prediction_type="epsilon", beta_schedule="scaled_linear", num_train_timesteps=1000),
        dict(prediction_type="v_prediction"),
        dict(prediction_type="sample"),
    ],
)
def test_compute_loss_backward_reaches_every_trainable_block(schedule):
    torch.manual_seed(0)
    model = EgoPressDiff(tiny_config(**schedule, condition_dropout_prob=0.0, modality_dropout_prob=0.0))
    out = model.compute_loss(make_window_batch(model.config, batch_size=1), generator=0)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.loss > 0
    out.loss.backward()
    for name in (
        "unet.conv_in.weight",
        "pose_net.conv_out.weight",
        "vertex_encoder.proj_out.weight",
        "image_encoder.proj.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    vertex_attention = [p for n, p in model.named_parameters() if "attn2_vertex" in n]
    assert vertex_attention and all(p.grad is not None for p in vertex_attention)


def test_compute_loss_is_reproducible_and_ignores_unannotated_frames(model):
    batch = make_window_batch(model.config, batch_size=2)
    batch["valid"][1, 2] = False
    reference = model.compute_loss(batch, generator=3).loss
    assert torch.equal(reference, model.compute_loss(batch, generator=3).loss)
    # The pressure of a frame without annotation does not enter the loss (even NaN).
    batch["uv_pressure_kpa"][1, 2] = float("nan")
    assert torch.allclose(model.compute_loss(batch, generator=3).loss, reference)
    batch["uv_pressure_kpa"][0, 0, 0, 5, 5] = float("nan")
    with pytest.raises(DataError, match="uv_pressure_kpa"):
        model.compute_loss(batch, generator=3)


def test_bad_windows_fail_before_any_work(model):
    long_window = make_window_batch(model.config, num_frames=model.config.num_frames + 1)
    with pytest.raises(DataError, match="num_frames=4"):
        model.compute_loss(long_window)
    batch = make_window_batch(model.config)
    batch["rgb"][0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="rgb contains NaN"):
        model.compute_loss(batch)
    batch = make_window_batch(model.config)
    del batch["uv_pressure_kpa"]
    with pytest.raises(DataError, match="uv_pressure_kpa"):
        model.compute_loss(batch)


# ---------------------------------------------------------------------------------------------
# Sampler
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_sample_is_deterministic_nonnegative_and_masked(model, conditions, scheduler):
    first = model.sample(conditions, num_inference_steps=2, scheduler=scheduler, generator=7)
    again = model.sample(conditions, num_inference_steps=2, scheduler=scheduler, generator=7)
    other = model.sample(conditions, num_inference_steps=2, scheduler=scheduler, generator=8)
    assert first.shape == (2, model.config.num_frames, 1, *model.config.uv_size)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.min() >= 0.0
    outside = conditions.uv_mask[:, None].expand_as(first) < 0.5
    assert torch.count_nonzero(first[outside]) == 0
    assert first[~outside].max() > 0  # the untrained model still predicts something on the hand


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_each_sampler_is_a_fresh_copy_of_the_schedule(model, conditions, scheduler):
    first, second = model.make_scheduler(scheduler), model.make_scheduler(scheduler)
    assert first is not second and dict(first.config) == dict(model._build_scheduler(scheduler).config)
    first.set_timesteps(3)
    assert second.num_inference_steps is None  # one run's state does not reach the next sampler
    # A run at another step count in between leaves a run unchanged.
    before = model.sample(conditions, num_inference_steps=2, scheduler=scheduler, generator=3)
    model.sample(conditions, num_inference_steps=3, scheduler=scheduler, generator=4)
    assert torch.equal(before, model.sample(conditions, num_inference_steps=2, scheduler=scheduler, generator=3))


def test_classifier_free_guidance_and_warm_start(model, conditions):
    plain = model.sample(conditions, num_inference_steps=2, generator=1)
    guided = model.sample(conditions, num_inference_steps=2, generator=1, guidance_scale=3.0)
    assert not torch.allclose(plain, guided)
    features = model.encode_conditions(conditions)
    latents = model.denoise(features, num_inference_steps=4, generator=1)
    calls = []
    handle = model.unet.register_forward_hook(lambda *args: calls.append(1))
    try:
        model.denoise(features, num_inference_steps=4, generator=2, init_latents=latents, strength=0.5)
    finally:
        handle.remove()
    assert len(calls) == 2  # half of the schedule
    with pytest.raises(ConfigError, match="init_latents"):
        model.denoise(features, num_inference_steps=4, strength=0.5)
    with pytest.raises(ConfigError, match="scheduler must be one of"):
        model.sample(conditions, scheduler="heun")


def test_sample_rejects_bad_conditions(model, conditions):
    bad = conditions.window(0, 2)
    with pytest.raises(DataError, match="window has 2 frames"):
        model.sample(bad)
    nan = conditions.window(0, model.config.num_frames)
    nan.depth = nan.depth.clone()
    nan.depth[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="depth contains NaN"):
        model.sample(nan)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def test_save_load_round_trip(model, conditions, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = EgoPressDiff.from_pretrained(
        tmp_path / "ckpt", expected_config=model.config, expected_uv_layout=model.config.uv_layout
    ).eval()
    assert loaded.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert torch.equal(model.sample(conditions, 2, generator=0), loaded.sample(conditions, 2, generator=0))
    # Training-only keys may differ.
    EgoPressDiff.from_pretrained(
        tmp_path / "ckpt", expected_config=model.config.replace(condition_dropout_prob=0.3)
    )


def test_incompatible_checkpoints_raise_checkpoint_error(model, tmp_path):
    directory = tmp_path / "ckpt"
    model.save_pretrained(directory)
    with pytest.raises(CheckpointError, match="UV layout"):
        EgoPressDiff.from_pretrained(directory, expected_uv_layout="mano_official")
    with pytest.raises(CheckpointError, match="uv_size"):
        EgoPressDiff.from_pretrained(directory, expected_config=model.config.replace(uv_size=(32, 32)))
    with pytest.raises(CheckpointError, match="config.json is missing"):
        EgoPressDiff.from_pretrained(tmp_path / "nowhere")
    # Weights of another architecture under this config.
    EgoPressDiff(tiny_config(cross_attention_dim=64)).save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((directory / "config.json").read_text())
    with pytest.raises(CheckpointError, match="does not match its config"):
        EgoPressDiff.from_pretrained(tmp_path / "other")
    # Corrupt config and truncated weights.
    document = json.loads((directory / "config.json").read_text())
    document["config"]["prediction_type"] = "x0"
    (tmp_path / "bad_config").mkdir()
    (tmp_path / "bad_config" / "config.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="invalid config"):
        EgoPressDiff.from_pretrained(tmp_path / "bad_config")
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot read"):
        EgoPressDiff.from_pretrained(directory)


def test_version_1_checkpoints_load_unless_they_use_uv_geometry(model, tmp_path):
    """Version 2 changed the last UV-geometry channel; older models without it are unaffected."""
    for name, config in (("plain", model.config), ("geometry", model.config.replace(use_uv_geometry=True))):
        EgoPressDiff(config).save_pretrained(tmp_path / name)
        document = json.loads((tmp_path / name / "config.json").read_text())
        document["version"] = 1
        (tmp_path / name / "config.json").write_text(json.dumps(document))
    assert EgoPressDiff.from_pretrained(tmp_path / "plain").config == model.config
    with pytest.raises(CheckpointError, match="version-1 checkpoint with use_uv_geometry"):
        EgoPressDiff.from_pretrained(tmp_path / "geometry")
    document["version"] = 7
    (tmp_path / "geometry" / "config.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="checkpoint version 7; this code reads versions 1 to 3"):
        EgoPressDiff.from_pretrained(tmp_path / "geometry")


def test_older_checkpoints_without_depth_but_with_uv_geometry_are_refused(model, tmp_path):
    """Version 3 builds a depth-free model's UV geometry without depth; a version-2 model of that
    kind was trained on depth-derived channels, so loading it would change its inputs silently."""
    configs = {"depth_geometry": model.config.replace(use_uv_geometry=True),
               "no_depth_plain": model.config.replace(use_depth=False),
               "no_depth_geometry": model.config.replace(use_depth=False, use_uv_geometry=True)}
    for name, config in configs.items():
        EgoPressDiff(config).save_pretrained(tmp_path / name)
        assert EgoPressDiff.from_pretrained(tmp_path / name).config == config  # current version reads
        document = json.loads((tmp_path / name / "config.json").read_text())
        document["version"] = 2
        (tmp_path / name / "config.json").write_text(json.dumps(document))
    assert EgoPressDiff.from_pretrained(tmp_path / "depth_geometry").config == configs["depth_geometry"]
    assert EgoPressDiff.from_pretrained(tmp_path / "no_depth_plain").config == configs["no_depth_plain"]
    with pytest.raises(CheckpointError, match="version-2 checkpoint with use_uv_geometry and use_depth=False"):
        EgoPressDiff.from_pretrained(tmp_path / "no_depth_geometry")


# ---------------------------------------------------------------------------------------------
# Ablations, VAE latents, UV geometry
# ---------------------------------------------------------------------------------------------


def test_ablation_switches_change_the_architecture():
    config = tiny_config(
        use_depth=False,
        use_vertices=False,
        use_pose_net=False,
        dc_calibration=False,
        condition_dropout_prob=0.0,
    )
    model = EgoPressDiff(config)
    assert model.vertex_encoder is None and model.pose_net is None
    assert model.unet.conv_in.in_channels == 1
    assert all(layer.attn2_vertex is None for layer in model.unet.dc_layers())
    model.compute_loss(make_window_batch(config), generator=0).loss.backward()


def test_uv_geometry_channels():
    config = tiny_config(use_uv_geometry=True)
    model = EgoPressDiff(config)
    assert model.unet.conv_in.in_channels == 1 + 2 + UV_GEOMETRY_CHANNELS
    batch = make_window_batch(config)
    with pytest.raises(DataError, match="uv_geometry"):
        model.compute_loss(batch)
    batch["uv_geometry"] = torch.rand(2, config.num_frames, UV_GEOMETRY_CHANNELS, *config.uv_size)
    assert torch.isfinite(model.compute_loss(batch, generator=0).loss)


def test_with_uv_geometry_starts_out_computing_the_same_map():
    torch.manual_seed(0)
    model = EgoPressDiff(tiny_config()).eval()
    grown = model.with_uv_geometry().eval()
    assert grown.config.use_uv_geometry and grown.unet.conv_in.in_channels == 1 + 2 + UV_GEOMETRY_CHANNELS
    batch = make_window_batch(model.config, batch_size=1, seed=2)
    before = model.sample(model.build_conditions(batch), num_inference_steps=2, generator=0)
    batch["uv_geometry"] = torch.rand(1, model.config.num_frames, UV_GEOMETRY_CHANNELS, *model.config.uv_size)
    after = grown.sample(grown.build_conditions(batch), num_inference_steps=2, generator=0)
    assert torch.allclose(before, after, atol=1e-5)
    with pytest.raises(ConfigError, match="already uses UV geometry"):
        grown.with_uv_geometry()


def test_vae_latent_space_loss_and_sample():
    torch.manual_seed(0)
    config = tiny_config(latent_space="vae", vae=dict(TINY_VAE))
    model = EgoPressDiff(config)
    assert config.latent_size == (8, 8) and model.unet.conv_in.in_channels == 4 + 4 + 1
    assert not any(p.requires_grad for p in model.codec.parameters())
    batch = make_window_batch(config, batch_size=1)
    out = model.compute_loss(batch, generator=0)
    out.loss.backward()
    assert all(p.grad is None for p in model.codec.parameters())
    pressure = model.eval().sample(model.build_conditions(batch), num_inference_steps=2, generator=0)
    assert pressure.shape == (1, config.num_frames, 1, *config.uv_size) and pressure.min() >= 0


# ---------------------------------------------------------------------------------------------
# Paper size from a (tiny) Stable Video Diffusion folder
# ---------------------------------------------------------------------------------------------


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
    model = EgoPressDiff.from_pretrained_svd(
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
        EgoPressDiff.from_pretrained_svd(tmp_path)


# ---------------------------------------------------------------------------------------------
# Overfit sanity check
# ---------------------------------------------------------------------------------------------


def test_overfits_one_window():
    torch.manual_seed(0)
    config = tiny_config(
        num_frames=2,
        image_size=(16, 16),
        uv_size=(8, 8),
        condition_dropout_prob=0.0,
        modality_dropout_prob=0.0,
        prediction_type="sample",
    )
    model = EgoPressDiff(config)
    batch = make_window_batch(config, batch_size=1)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=2e-3)
    losses = []
    for step in range(60):
        loss = model.compute_loss(batch, generator=step).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.2 * first, (first, last)
    # The sampler turns the memorised window back into its pressure maps.
    target = batch["uv_pressure_kpa"]
    pressure = model.eval().sample(model.build_conditions(batch), num_inference_steps=10, generator=0)
    assert (pressure - target).abs().mean() < 0.35 * target.mean()
