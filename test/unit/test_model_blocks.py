"""Shape and behaviour tests of every EgoPressDiff block (tiny configs of the real classes)."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention import BasicTransformerBlock

from egopress_core.errors import ConfigError
from egopress_core.model import (
    ConvImageEncoder,
    DistributionCalibratedSpatialLayer,
    EgoPressUNet,
    PoseNet,
    VertexEncoder,
    calibrate_channel_statistics,
    normalize_vertices,
    svd_added_time_ids,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------------------------------------
# Vertex Encoder
# ---------------------------------------------------------------------------------------------


def test_vertex_encoder_shape_and_any_topology():
    encoder = VertexEncoder(hidden_dim=16, output_dim=24, num_tokens=3)
    for num_vertices in (50, 778):
        out = encoder(torch.randn(2, 5, num_vertices, 3))
        assert out.tokens.shape == (2, 5, 3, 24)


def test_vertex_encoder_invariant_to_translation_and_scale_of_each_frame():
    encoder = VertexEncoder(hidden_dim=16, output_dim=24, num_tokens=2).eval()
    vertices = torch.randn(2, 4, 100, 3) * 0.05
    shift = torch.randn(2, 4, 1, 3)
    scale = torch.rand(2, 4, 1, 1) * 3 + 0.2
    reference = encoder(vertices).tokens
    moved = encoder(vertices * scale + shift).tokens
    assert torch.allclose(reference, moved, atol=1e-4)
    # ... but not to a rotation (orientation matters for contact), nor to shape changes.
    rotated = vertices[..., [1, 0, 2]] * torch.tensor([-1.0, 1.0, 1.0])
    assert not torch.allclose(reference, encoder(rotated).tokens, atol=1e-3)


def test_vertex_encoder_invariant_to_vertex_order():
    encoder = VertexEncoder(hidden_dim=16, output_dim=8).eval()
    vertices = torch.randn(1, 3, 40, 3)
    permuted = vertices[:, :, torch.randperm(40)]
    assert torch.allclose(encoder(vertices).tokens, encoder(permuted).tokens, atol=1e-5)


def test_vertex_encoder_masks_invalid_frames():
    encoder = VertexEncoder(hidden_dim=16, output_dim=8, num_temporal_blocks=0).eval()
    vertices = torch.randn(1, 3, 30, 3)
    garbage = vertices.clone()
    garbage[:, 1] = 1e3 * torch.randn(30, 3)
    valid = torch.tensor([[True, False, True]])
    # Without temporal mixing, a masked frame's tokens do not depend on its vertices at all.
    assert torch.allclose(encoder(vertices, valid).tokens, encoder(garbage, valid).tokens)
    assert not torch.allclose(encoder(vertices).tokens, encoder(garbage).tokens)


def test_normalize_vertices_zero_centroid_unit_rms():
    normalized = normalize_vertices(torch.randn(2, 3, 20, 3) * 4 + 7)
    assert torch.allclose(normalized.mean(dim=2), torch.zeros(2, 3, 3), atol=1e-5)
    rms = normalized.square().sum(-1).mean(-1).sqrt()
    assert torch.allclose(rms, torch.ones(2, 3), atol=1e-5)


def test_vertex_encoder_validates_arguments():
    with pytest.raises(ConfigError, match="temporal_kernel_size"):
        VertexEncoder(temporal_kernel_size=4)
    with pytest.raises(ConfigError, match="hidden_dim"):
        VertexEncoder(hidden_dim=0)


# ---------------------------------------------------------------------------------------------
# PoseNet
# ---------------------------------------------------------------------------------------------


def test_pose_net_shape_downsampling_and_resize():
    net = PoseNet(20, 32, (8, 8, 16, 16), num_downsamples=2)
    assert net(torch.rand(3, 20, 64, 64)).features.shape == (3, 32, 16, 16)
    assert net(torch.rand(3, 20, 64, 64), output_size=(14, 14)).features.shape == (3, 32, 14, 14)
    assert PoseNet.downsamples_for((256, 256), (28, 28)) == 3
    assert PoseNet.downsamples_for((64, 64), (32, 32)) == 1
    assert PoseNet.downsamples_for((32, 32), (64, 64)) == 0


def test_pose_net_output_is_zero_at_init_but_trainable():
    net = PoseNet(20, 32, (8, 8, 16, 16), num_downsamples=1)
    features = net(torch.rand(2, 20, 32, 32)).features
    assert torch.count_nonzero(features) == 0
    features.square().sum().backward()  # gradient reaches the zero conv's weight through the bias path
    (net(torch.rand(2, 20, 32, 32)).features.sum()).backward()
    assert net.conv_out.weight.grad.abs().sum() > 0


def test_pose_net_validates_arguments():
    with pytest.raises(ConfigError, match="hidden_channels"):
        PoseNet(20, 32, (8, 8, 16))
    with pytest.raises(ConfigError, match="num_downsamples"):
        PoseNet(20, 32, num_downsamples=5)


# ---------------------------------------------------------------------------------------------
# Image encoders
# ---------------------------------------------------------------------------------------------


def test_conv_image_encoder_tokens():
    encoder = ConvImageEncoder(output_dim=24, num_tokens=4, channels=(8, 16))
    assert encoder(torch.rand(5, 3, 32, 32)).tokens.shape == (5, 4, 24)
    with pytest.raises(ConfigError, match="square"):
        ConvImageEncoder(output_dim=24, num_tokens=5)


def test_clip_image_encoder_token_zero_is_svd_image_embedding():
    from egopress_core.model import CLIPImageEncoder

    config = dict(
        hidden_size=32,
        intermediate_size=37,
        projection_dim=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    encoder = CLIPImageEncoder(config, patch_tokens=True)
    rgb = torch.rand(3, 3, 48, 40)
    tokens = encoder(rgb).tokens
    assert tokens.shape == (3, 1 + 16, 24)
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.model.training  # frozen encoder stays in eval mode
    # Token 0 equals CLIPVisionModelWithProjection's image_embeds on the same preprocessed input.
    pixels = torch.nn.functional.interpolate(rgb, size=(32, 32), mode="bicubic", antialias=True).clamp(0, 1)
    pixels = (pixels - encoder.mean) / encoder.std
    with torch.no_grad():
        image_embeds = encoder.model(pixel_values=pixels).image_embeds
    assert torch.allclose(tokens[:, 0], image_embeds, atol=1e-5)
    assert CLIPImageEncoder(config, patch_tokens=False)(rgb).tokens.shape == (3, 1, 24)


# ---------------------------------------------------------------------------------------------
# Distribution-Calibrated Spatial Layer
# ---------------------------------------------------------------------------------------------


def _dc_layer(calibrate: bool = True) -> DistributionCalibratedSpatialLayer:
    return DistributionCalibratedSpatialLayer(
        dim=32,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=16,
        num_image_tokens=4,
        num_vertex_tokens=3,
        calibrate=calibrate,
    )


def test_dc_layer_shape():
    layer = _dc_layer()
    out = layer(torch.randn(3, 20, 32), encoder_hidden_states=torch.randn(3, 7, 16))
    assert out.shape == (3, 20, 32)
    with pytest.raises(ValueError, match="4 image \\+ 3 vertex"):
        layer(torch.randn(3, 20, 32), encoder_hidden_states=torch.randn(3, 6, 16))


def test_dc_layer_calibrated_vertex_branch_has_image_branch_channel_statistics():
    layer = _dc_layer()
    hidden = torch.randn(3, 20, 32)
    tokens = torch.randn(3, 7, 16)
    tokens[:, 4:] = tokens[:, 4:] * 5 + 2  # vertex tokens on another scale than image tokens
    branches = layer.cross_attention_branches(layer.norm2(hidden), tokens)
    image_var, image_mean = torch.var_mean(branches.image, dim=1, correction=0)
    raw_var, raw_mean = torch.var_mean(branches.vertex, dim=1, correction=0)
    cal_var, cal_mean = torch.var_mean(branches.vertex_calibrated, dim=1, correction=0)
    # Before calibration the statistics differ; after, they match per sample and channel.
    assert not torch.allclose(raw_mean, image_mean, atol=1e-3)
    assert not torch.allclose(raw_var.sqrt(), image_var.sqrt(), rtol=0.1)
    assert torch.allclose(cal_mean, image_mean, atol=1e-5)
    expected_std = (
        raw_var.sqrt() * ((image_var + layer.eps) / (raw_var + layer.eps)).sqrt()
    )  # exact, with eps
    assert torch.allclose(cal_var.sqrt(), expected_std, rtol=1e-4, atol=1e-6)
    assert torch.allclose(cal_var.sqrt(), image_var.sqrt(), rtol=1e-2)


def test_dc_layer_forward_is_residual_sum_of_branches_then_feed_forward():
    for calibrate in (True, False):
        layer = _dc_layer(calibrate)
        hidden = torch.randn(2, 12, 32)
        tokens = torch.randn(2, 7, 16)
        state = hidden + layer.attn1(layer.norm1(hidden))
        branches = layer.cross_attention_branches(layer.norm2(state), tokens)
        if not calibrate:
            assert branches.vertex_calibrated is branches.vertex  # ablation: plain sum
        state = state + branches.image + branches.vertex_calibrated
        expected = state + layer.ff(layer.norm3(state))
        assert torch.allclose(layer(hidden, encoder_hidden_states=tokens), expected, atol=1e-5)


def test_calibrate_channel_statistics_function():
    source = torch.randn(2, 50, 8) * 3 + 1
    reference = torch.randn(2, 30, 8) * 0.5 - 2
    out = calibrate_channel_statistics(source, reference)
    assert torch.allclose(out.mean(1), reference.mean(1), atol=1e-5)
    assert torch.allclose(out.std(1, correction=0), reference.std(1, correction=0), rtol=1e-4)


def test_dc_layer_keeps_basic_transformer_block_parameter_names():
    layer = _dc_layer()
    block = BasicTransformerBlock(32, 2, 16, cross_attention_dim=16)
    mine = layer.state_dict()
    for name, tensor in block.state_dict().items():
        assert name in mine and mine[name].shape == tensor.shape, name
    assert any(name.startswith("attn2_vertex.") for name in mine)


def test_dc_layer_without_vertices_and_validation():
    layer = DistributionCalibratedSpatialLayer(
        32, 2, 16, 16, num_image_tokens=4, num_vertex_tokens=0, calibrate=False
    )
    assert layer(torch.randn(1, 9, 32), encoder_hidden_states=torch.randn(1, 4, 16)).shape == (1, 9, 32)
    with pytest.raises(ConfigError, match="calibrate"):
        DistributionCalibratedSpatialLayer(
            32, 2, 16, 16, num_image_tokens=4, num_vertex_tokens=0, calibrate=True
        )


# ---------------------------------------------------------------------------------------------
# U-Net
# ---------------------------------------------------------------------------------------------


def _tiny_unet(**overrides) -> EgoPressUNet:
    values = dict(
        in_channels=3,
        out_channels=1,
        block_out_channels=(32, 64),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
        cross_attention_dim=16,
        num_attention_heads=(2, 4),
        num_image_tokens=4,
        num_vertex_tokens=2,
    )
    values.update(overrides)
    return EgoPressUNet(**values)


def test_unet_every_spatial_block_is_a_dc_layer():
    unet = _tiny_unet()
    assert not any(isinstance(m, BasicTransformerBlock) for m in unet.modules())
    # CrossAttnDown (1 transformer), mid (1), CrossAttnUp with layers_per_block + 1 = 2 transformers.
    assert len(unet.dc_layers()) == 4
    assert all(layer.calibrate for layer in unet.dc_layers())
    assert not any(layer.calibrate for layer in _tiny_unet(dc_calibration=False).dc_layers())


def test_unet_shapes_and_per_frame_tokens():
    unet = _tiny_unet().eval()
    batch, frames = 2, 3
    sample = torch.randn(batch, frames, 3, 16, 16)
    tokens = torch.randn(batch, frames, 6, 16)
    ids = svd_added_time_ids(30.0, batch, sample.device, sample.dtype)
    out = unet(sample, torch.tensor([10, 500]), tokens, ids).sample
    assert out.shape == (batch, frames, 1, 16, 16)
    # Tokens are per frame: changing frame 2's tokens changes the output (through attention).
    changed = tokens.clone()
    changed[:, 2] = torch.randn(batch, 6, 16)
    assert not torch.allclose(out, unet(sample, torch.tensor([10, 500]), changed, ids).sample)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        unet(sample, 10, tokens[:, :, :5], ids)


def test_unet_pose_features_are_added_after_conv_in():
    unet = _tiny_unet().eval()
    sample = torch.randn(1, 2, 3, 16, 16)
    tokens = torch.randn(1, 2, 6, 16)
    ids = svd_added_time_ids(30.0, 1, sample.device, sample.dtype)
    base = unet(sample, 5, tokens, ids).sample
    assert torch.allclose(
        base, unet(sample, 5, tokens, ids, pose_features=torch.zeros(1, 2, 32, 16, 16)).sample
    )
    # Equivalent to adding the features to conv_in's output: emulate with a hook.
    pose = torch.randn(1, 2, 32, 16, 16)
    with_pose = unet(sample, 5, tokens, ids, pose_features=pose).sample
    handle = unet.conv_in.register_forward_hook(lambda module, args, output: output + pose.flatten(0, 1))
    try:
        hooked = unet(sample, 5, tokens, ids).sample
    finally:
        handle.remove()
    assert torch.allclose(with_pose, hooked, atol=1e-5)


def test_unet_handles_latent_sizes_not_divisible_by_the_level_count():
    unet = _tiny_unet(
        block_out_channels=(32, 32, 64),
        num_attention_heads=(2, 2, 4),
        down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 2 + ("DownBlockSpatioTemporal",),
        up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 2,
    ).eval()
    sample = torch.randn(1, 2, 3, 14, 14)  # 14 -> 7 -> 4 -> back up to 14 (as SVD's 28x28 latents)
    ids = svd_added_time_ids(30.0, 1, sample.device, sample.dtype)
    assert unet(sample, 3, torch.randn(1, 2, 6, 16), ids).sample.shape == (1, 2, 1, 14, 14)


def test_unet_validates_arguments():
    with pytest.raises(ConfigError, match="multiples of 32"):
        _tiny_unet(block_out_channels=(24, 64))
    with pytest.raises(ConfigError, match="projection_class_embeddings_input_dim"):
        _tiny_unet(projection_class_embeddings_input_dim=16)
    with pytest.raises(ConfigError, match="dc_calibration"):
        _tiny_unet(num_vertex_tokens=0)
