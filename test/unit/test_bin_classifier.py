"""The PressureVision-style per-frame baseline: soft labels, shapes, training signal, checkpoints, presets."""

import pytest
import torch

from egopress_core.conditioning import UV_GEOMETRY_CHANNELS
from egopress_core.errors import CheckpointError, ConfigError, DataError
from egopress_core.metrics import PRESSURE_BIN_CENTRES_KPA
from egopress_core.model.bin_classifier import (
    PRESETS,
    BinClassifierConfig,
    PerFrameBinClassifier,
    preset_config,
    soft_bin_targets,
)
from egopress_core.model.config import preset_config as diffusion_preset_config
from model_batches import make_window_batch

TINY = dict(num_frames=4, image_size=(32, 32), uv_size=(16, 16), encoder_channels=(8, 16), vertex_hidden_dim=16,
            decoder_channels=(16, 8))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_soft_targets_peak_at_the_right_bin_and_interpolate():
    targets = soft_bin_targets(torch.tensor([0.0, 0.75, 6.0, 500.0, 1.125]), sigma_bins=0.5)
    assert torch.allclose(targets.sum(-1), torch.ones(5))
    assert targets.argmax(-1)[:4].tolist() == [0, 1, 4, 8]
    # halfway between the centres of classes 1 (0.75) and 2 (1.5): equal mass on both
    assert targets[4, 1] == pytest.approx(float(targets[4, 2]), rel=1e-5)


def test_forward_shapes_and_decoding_to_bin_centres():
    config = BinClassifierConfig(**TINY)
    model = PerFrameBinClassifier(config)
    batch = make_window_batch(config, batch_size=2)
    conditions = model.build_conditions(batch)
    assert model(conditions).shape == (2, 4, 9, 16, 16)
    pressure = model.sample(conditions)
    assert pressure.shape == (2, 4, 1, 16, 16)
    assert set(pressure.unique().tolist()) <= set(PRESSURE_BIN_CENTRES_KPA)
    assert (pressure[:, :, 0][:, :, batch["uv_mask"][0] == 0] == 0).all()


def test_frames_are_independent():
    config = BinClassifierConfig(**TINY)
    model = PerFrameBinClassifier(config).eval()
    batch = make_window_batch(config, batch_size=1)
    logits = model(model.build_conditions(batch))
    changed = {k: v.clone() for k, v in batch.items()}
    changed["rgb"][:, 2] = torch.rand_like(changed["rgb"][:, 2])
    other = model(model.build_conditions(changed))
    assert torch.equal(logits[:, :2], other[:, :2]) and torch.equal(logits[:, 3:], other[:, 3:])
    assert not torch.equal(logits[:, 2], other[:, 2])


def test_loss_falls_when_fitting_one_batch():
    torch.manual_seed(0)
    config = BinClassifierConfig(**TINY)
    model = PerFrameBinClassifier(config)
    batch = make_window_batch(config, batch_size=2)
    # A contact blob on the hand, as pressure maps look (the batch helper's is texel noise).
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    blob = 40.0 * torch.exp(-((rows - 6) ** 2 + (cols - 9) ** 2) / 8.0) * batch["uv_mask"][0]
    batch["uv_pressure_kpa"] = blob.expand_as(batch["uv_pressure_kpa"]).clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(model.compute_loss(batch).loss)
    for _ in range(80):
        optimizer.zero_grad()
        output = model.compute_loss(batch)
        output.loss.backward()
        optimizer.step()
    assert float(output.loss.detach()) < 0.5 * first


def test_checkpoint_round_trip_and_refusals(tmp_path):
    config = BinClassifierConfig(**TINY, uv_layout="layout-a")
    model = PerFrameBinClassifier(config).eval()
    model.save_pretrained(tmp_path / "ckpt")
    loaded = PerFrameBinClassifier.from_pretrained(tmp_path / "ckpt", expected_uv_layout="layout-a").eval()
    batch = make_window_batch(config, batch_size=1)
    assert torch.equal(model(model.build_conditions(batch)), loaded(loaded.build_conditions(batch)))
    with pytest.raises(CheckpointError, match="UV layout"):
        PerFrameBinClassifier.from_pretrained(tmp_path / "ckpt", expected_uv_layout="layout-b")
    with pytest.raises(CheckpointError, match="cannot read"):
        PerFrameBinClassifier.from_pretrained(tmp_path / "missing")
    assert PerFrameBinClassifier.load_config(tmp_path / "ckpt") == config
    # Architecture keys must match an expected config; training-only keys may differ.
    PerFrameBinClassifier.from_pretrained(tmp_path / "ckpt", expected_config=config.replace(soft_label_sigma_bins=1.0))
    with pytest.raises(CheckpointError, match=r"another config \(vertex_hidden_dim: checkpoint 16 vs expected 8\)"):
        PerFrameBinClassifier.from_pretrained(tmp_path / "ckpt", expected_config=config.replace(vertex_hidden_dim=8))


def test_uv_geometry_is_fused_frame_by_frame():
    config = BinClassifierConfig(**TINY, use_uv_geometry=True)
    model = PerFrameBinClassifier(config).eval()
    batch = make_window_batch(config, batch_size=1)
    with pytest.raises(DataError, match="batch has no uv_geometry"):
        model.build_conditions(batch)
    batch["uv_geometry"] = torch.rand(1, config.num_frames, UV_GEOMETRY_CHANNELS, *config.uv_size)
    logits = model(model.build_conditions(batch))
    changed = {k: v.clone() for k, v in batch.items()}
    changed["uv_geometry"][:, 1] = torch.rand_like(changed["uv_geometry"][:, 1])
    other = model(model.build_conditions(changed))
    assert torch.equal(logits[:, 0], other[:, 0]) and torch.equal(logits[:, 2:], other[:, 2:])
    assert not torch.equal(logits[:, 1], other[:, 1])
    assert config.architecture_differences(config.replace(use_uv_geometry=False)) == {"use_uv_geometry": (True, False)}
    with pytest.raises(ConfigError, match="use_uv_geometry must be a bool"):
        BinClassifierConfig(**TINY, use_uv_geometry="yes")


def test_config_validation_names_the_argument():
    with pytest.raises(ConfigError, match="uv_size"):
        BinClassifierConfig(uv_size=(24, 24), decoder_channels=(16, 8))
    with pytest.raises(ConfigError, match="vertex_hidden_dim"):
        BinClassifierConfig(vertex_hidden_dim=0)


def test_presets_share_the_diffusion_presets_data_layout():
    assert sorted(PRESETS) == ["compact", "tiny"]
    for name in PRESETS:
        baseline, diffusion = preset_config(name), diffusion_preset_config(name)
        for key in ("num_frames", "image_size", "uv_size", "pose_sigma_px", "depth_clip_m"):
            assert getattr(baseline, key) == getattr(diffusion, key), (name, key)
    # The defaults are the compact preset, as EgoPressDiffConfig's are compact EgoPressDiff's.
    assert preset_config("compact") == BinClassifierConfig()
    assert preset_config("tiny", vertex_hidden_dim=8).vertex_hidden_dim == 8
    with pytest.raises(ConfigError, match=r"baseline preset must be one of \['tiny', 'compact'\]. Got 'paper'"):
        preset_config("paper")
    with pytest.raises(ConfigError, match="unknown BinClassifierConfig keys"):
        preset_config("tiny", use_depth=False)


def test_architecture_differences_and_replace():
    config = preset_config("tiny")
    assert config.architecture_differences(config.replace(soft_label_sigma_bins=2.0)) == {}
    assert config.architecture_differences(config.replace(encoder_channels=(8, 8))) == {
        "encoder_channels": ([16, 32], [8, 8])}
    with pytest.raises(ConfigError, match="uv_size"):
        config.replace(uv_size=(32, 32))


def test_loss_weight_matches_egopressdiffs_pressure_term():
    from egopress_core.model.config import tiny_config
    from egopress_core.model.egopressdiff import EgoPressDiff

    uv_mask = torch.zeros(1, 1, 16, 16)
    uv_mask[..., :, :8] = 1.0
    pressure = torch.zeros(1, 2, 16, 16)
    pressure[0, 1, 2, 1] = 200.0  # the top of the scale on a hand texel: unit 1
    pressure[0, 1, 5, 3] = 6.0
    pressure[0, 1, 2, 12] = 200.0  # off the hand: ignored
    plain = PerFrameBinClassifier(BinClassifierConfig(**TINY))
    assert torch.equal(plain.loss_weight(pressure, uv_mask), 1.0 + uv_mask)
    weighted = PerFrameBinClassifier(BinClassifierConfig(**TINY, pressure_loss_weight=10.0))
    weight = weighted.loss_weight(pressure, uv_mask)
    assert weight[0, 1, 2, 1].item() == pytest.approx(12.0) and weight[0, 1, 2, 12].item() == pytest.approx(1.0)
    # The same number as EgoPressDiff's loss weight at full UV resolution (pixel latents).
    diffusion = EgoPressDiff(tiny_config(uv_size=(16, 16), pressure_loss_weight=10.0))
    expected = diffusion.loss_weight(pressure[:, :, None], uv_mask)[:, :, 0]
    assert torch.allclose(weight, expected, atol=1e-5)
    # Training-only: a checkpoint may be fine-tuned with another weight.
    assert weighted.config.architecture_differences(plain.config) == {}
    with pytest.raises(ConfigError, match="pressure_loss_weight must be a finite number >= 0"):
        BinClassifierConfig(**TINY, pressure_loss_weight=-1.0)


def test_readouts_of_the_class_probabilities():
    """``argmax`` takes the most likely bin; ``contact_probability`` puts contact where the pressure
    bins together outweigh the zero bin, at their probability-weighted mean centre."""
    centres = torch.tensor(PRESSURE_BIN_CENTRES_KPA)
    probabilities = torch.zeros(1, 1, 9, 1, 3)
    probabilities[0, 0, :4, 0, 0] = torch.tensor([0.45, 0.20, 0.20, 0.15])  # zero bin alone most likely
    probabilities[0, 0, :2, 0, 1] = torch.tensor([0.60, 0.40])  # no contact either way
    probabilities[0, 0, [0, 5], 0, 2] = torch.tensor([0.10, 0.90])  # 12 kPa either way
    logits = probabilities.clamp_min(1e-12).log()
    mask = torch.ones(1, 1, 1, 3)
    argmax = PerFrameBinClassifier(BinClassifierConfig(**TINY))._decode(logits, mask)
    assert argmax[0, 0, 0].tolist() == pytest.approx([0.0, 0.0, 12.0])
    likely = PerFrameBinClassifier(BinClassifierConfig(**TINY, readout="contact_probability"))._decode(logits, mask)
    expected = float((probabilities[0, 0, 1:4, 0, 0] * centres[1:4]).sum() / 0.55)
    assert likely[0, 0, 0].tolist() == pytest.approx([expected, 0.0, 12.0], rel=1e-4)
    assert (PerFrameBinClassifier(BinClassifierConfig(**TINY, readout="contact_probability"))
            ._decode(logits, torch.zeros(1, 1, 1, 3)) == 0).all()  # off the hand mask
    with pytest.raises(ConfigError, match=r"readout must be one of \('argmax', 'contact_probability'\). Got 'mean'"):
        BinClassifierConfig(**TINY, readout="mean")


def test_a_checkpoint_reads_with_either_readout(tmp_path):
    """The readout is not architecture: a trained checkpoint loads under either, and one saved
    before the key existed reads as argmax."""
    import json

    config = BinClassifierConfig(**TINY)
    PerFrameBinClassifier(config).save_pretrained(tmp_path / "ckpt")
    assert config.architecture_differences(config.replace(readout="contact_probability")) == {}
    PerFrameBinClassifier.from_pretrained(tmp_path / "ckpt", expected_config=config.replace(readout="contact_probability"))
    document_path = tmp_path / "ckpt" / "config.json"
    document = json.loads(document_path.read_text())
    del document["config"]["readout"]
    document_path.write_text(json.dumps(document))
    assert PerFrameBinClassifier.load_config(tmp_path / "ckpt").readout == "argmax"
