"""EgoPressDiff end to end: config, loss, sampler, ablations (checkpoints: test_model_checkpoint.py;
weight surgery: test_model_surgery.py; SVD folders: test_model_svd_transfer.py)."""

from __future__ import annotations

import pytest
import torch

from egopress_core.conditioning import UV_GEOMETRY_CHANNELS

from egopress_core.errors import ConfigError, DataError
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
