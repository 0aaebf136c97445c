"""Model checkpoints (egopress_core.model.checkpoint): files, formats and versions, the refusal
of checkpoints this code cannot use, and the shipped checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from egopress_core.assets import BASELINE_CHECKPOINT, DEFAULT_CHECKPOINT, EGOPRESSDIFF_CHECKPOINT
from egopress_core.errors import CheckpointError
from egopress_core.model import EgoPressDiff, PerFrameBinClassifier, tiny_config
from egopress_core.model.bin_classifier import tiny_bin_classifier_config
from egopress_core.model.checkpoint import (
    BIN_CLASSIFIER_FORMAT,
    CONFIG_NAME,
    EGOPRESSDIFF_FORMAT,
    EGOPRESSDIFF_VERSION,
    WEIGHTS_NAME,
    load_egopressdiff_config,
    read_egopressdiff_document,
)
from egopress_core.model.kinds import checkpoint_kind
from model_batches import make_window_batch


@pytest.fixture(scope="module")
def model() -> EgoPressDiff:
    torch.manual_seed(0)
    return EgoPressDiff(tiny_config()).eval()


@pytest.fixture(scope="module")
def conditions(model):
    return model.build_conditions(make_window_batch(model.config, batch_size=2, seed=1))


# ---------------------------------------------------------------------------------------------
# EgoPressDiff
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



def test_config_document_is_sorted_json_with_format_and_version(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    text = (tmp_path / "ckpt" / CONFIG_NAME).read_text()
    document = json.loads(text)
    assert text == json.dumps(document, indent=2, sort_keys=True) + "\n"
    assert (document["format"], document["version"]) == (EGOPRESSDIFF_FORMAT, EGOPRESSDIFF_VERSION)
    assert document["external_frozen_weights"] is False and document["config"] == model.config.to_dict()
    assert read_egopressdiff_document(tmp_path / "ckpt") == document
    assert load_egopressdiff_config(tmp_path / "ckpt") == EgoPressDiff.load_config(tmp_path / "ckpt") == model.config
    assert not any(p.name.startswith(".staging") for p in (tmp_path / "ckpt").iterdir())


def test_shipped_checkpoint_loads_unchanged(tmp_path):
    """The bundled compact model is a current-version checkpoint with UV geometry: it reads as is."""
    document = json.loads((EGOPRESSDIFF_CHECKPOINT / CONFIG_NAME).read_text())
    assert (document["format"], document["version"]) == (EGOPRESSDIFF_FORMAT, EGOPRESSDIFF_VERSION)
    assert document["config"]["use_uv_geometry"] is True
    assert checkpoint_kind(EGOPRESSDIFF_CHECKPOINT).name == "egopressdiff"
    shipped = EgoPressDiff.from_pretrained(EGOPRESSDIFF_CHECKPOINT, map_location="cpu")
    assert shipped.config.to_dict() == document["config"]
    from safetensors.torch import load_file

    stored = load_file(EGOPRESSDIFF_CHECKPOINT / WEIGHTS_NAME)
    state = shipped.state_dict()
    assert sorted(stored) == sorted(state)
    assert all(torch.equal(stored[name], state[name]) for name in stored)
    # Saved again, it is the same checkpoint document with the same weights.
    shipped.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / CONFIG_NAME).read_text())
    assert again == document
    assert load_file(tmp_path / "again" / WEIGHTS_NAME).keys() == stored.keys()


def test_shipped_baseline_checkpoint_is_the_per_frame_kind_and_the_default():
    kind = checkpoint_kind(BASELINE_CHECKPOINT)
    assert kind.name == "bin_classifier"
    assert checkpoint_kind(EGOPRESSDIFF_CHECKPOINT).name == "egopressdiff"
    # The default follows the comparison in the camera-only path's meshes (README, "Which model is
    # the default").
    assert DEFAULT_CHECKPOINT == BASELINE_CHECKPOINT
    model = kind.model_class.from_pretrained(BASELINE_CHECKPOINT, map_location="cpu")
    assert model.config.num_frames == 16 and sum(p.numel() for p in model.parameters()) > 5_000_000
    # The README compares the two with the same evidence: the baseline takes the UV geometry too.
    video_model = EgoPressDiff.load_config(EGOPRESSDIFF_CHECKPOINT)
    assert model.config.use_uv_geometry == video_model.use_uv_geometry
    assert (model.config.image_size, model.config.uv_size) == (video_model.image_size, video_model.uv_size)


# ---------------------------------------------------------------------------------------------
# Both kinds
# ---------------------------------------------------------------------------------------------


def test_each_kind_refuses_the_other_kinds_checkpoint(model, tmp_path):
    model.save_pretrained(tmp_path / "diffusion")
    PerFrameBinClassifier(tiny_bin_classifier_config()).save_pretrained(tmp_path / "baseline")
    assert json.loads((tmp_path / "baseline" / CONFIG_NAME).read_text())["format"] == BIN_CLASSIFIER_FORMAT
    assert checkpoint_kind(tmp_path / "diffusion").name == "egopressdiff"
    assert checkpoint_kind(tmp_path / "baseline").name == "bin_classifier"
    with pytest.raises(CheckpointError, match="baseline/config.json is not an EgoPressDiff checkpoint config"):
        EgoPressDiff.from_pretrained(tmp_path / "baseline")
    with pytest.raises(CheckpointError,
                       match="diffusion/config.json is not a version-1 egopress-bin-classifier checkpoint"):
        PerFrameBinClassifier.from_pretrained(tmp_path / "diffusion")


def test_the_docs_name_the_default_checkpoint():
    """README's "Which model is the default" and the node's parameter file name the folder
    DEFAULT_CHECKPOINT is."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    readme = (repo / "README.md").read_text()
    section = readme[readme.index("**Which model is the default.**"):]
    assert f"egopress_core/assets/checkpoints/{DEFAULT_CHECKPOINT.name}`" in section[:200]
    yaml_lines = (repo / "config" / "pressure.yaml").read_text().splitlines()
    default_line = next(line for line in yaml_lines if "Empty: the package's default" in line)
    assert f"checkpoints/{DEFAULT_CHECKPOINT.name}" in default_line
