"""The per-frame baseline through the training loop (model.kind=bin_classifier): configs, kinds,
training, resume, fine-tuning, and the trained folder in `egopress eval`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from egopress_core.cli.main import main
from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset
from egopress_core.errors import CheckpointError, ConfigError
from egopress_core.pipeline import load_pressure_model
from egopress_core.model.bin_classifier import BinClassifierConfig, PerFrameBinClassifier
from egopress_core.training import build_datasets, checkpoint_kind, load_train_config, model_kind, train
from egopress_core.options import config_differences
from egopress_core.training.trainer import build_model, resolve_model_config

FAST = ["--set", "threads=1", "--no-progress"]
# 4 steps of 2 micro-batches with a checkpoint at step 2; validation at steps 2 and 4.
RUN_ARGS = ["--config", "baseline_tiny", "--max-steps", 4, "--set", "optim.grad_accumulation_steps=2",
            "--set", "checkpoint.every_steps=2", "--set", "validation.every_steps=2",
            "--set", "validation.num_windows=2", "--set", "data.window.stride=4",
            "--set", "data.statistics_windows=4", "--set", "data.window.augment.brightness=0.2",
            "--set", "logging.tensorboard=false", "--set", "logging.plot=false"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def train_cli(*args) -> int:
    return main(["train", *[str(a) for a in args], *FAST])


# ----------------------------------------------------------------------------------------------
# Configs and kinds
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("diffusion, baseline", [("tiny", "baseline_tiny"), ("compact", "baseline_compact")])
def test_baseline_configs_train_exactly_like_their_diffusion_config(diffusion, baseline):
    a, b = load_train_config(diffusion), load_train_config(baseline)
    assert b.model.kind == "bin_classifier" and a.model.kind == "egopressdiff"
    differences = config_differences(a.to_dict(), b.to_dict())
    assert differences["model.kind"] == ("egopressdiff", "bin_classifier")
    # Only the model section differs (the diffusion config may override diffusion-only keys).
    assert all(key.startswith("model.") for key in differences), differences
    # The same windows: the baseline preset takes the diffusion preset's data layout.
    assert a.window_config(a.model_config()) == b.window_config(b.model_config())
    for key in ("num_frames", "image_size", "uv_size", "pose_sigma_px", "depth_clip_m"):
        assert getattr(a.model_config(), key) == getattr(b.model_config(), key), key
    assert isinstance(b.model_config(), BinClassifierConfig)


@pytest.mark.parametrize("override, message", [
    ("model.kind=diffusion", r"model.kind must be one of \['egopressdiff', 'bin_classifier'\]. Got 'diffusion'"),
    ("model.preset=paper", r"model.preset must be one of \['tiny', 'compact'\] for model.kind='bin_classifier'"),
    ("model.overrides.use_depth=false", r"model.overrides.use_depth is not a BinClassifierConfig field"),
    ("model.overrides.decoder_channels=[8]", r"model.overrides: uv_size must be \(8, 8\) for 1 decoder stages"),
    ("model.pretrained_svd=/svd", r"model.pretrained_svd does not apply to model.kind='bin_classifier'"),
])
def test_bad_baseline_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config("baseline_tiny", [override])


def test_cli_reports_a_bad_kind_without_traceback(tmp_path, capsys):
    assert train_cli("--config", "tiny", "--data", tmp_path, "--out", tmp_path / "o", "--set", "model.kind=gan") == 2
    assert "model.kind must be one of ['egopressdiff', 'bin_classifier']. Got 'gan'" in capsys.readouterr().err
    # EgoPressDiff keys are still checked against EgoPressDiffConfig.
    with pytest.raises(ConfigError, match="model.overrides.encoder_channels is not a EgoPressDiffConfig field"):
        load_train_config("tiny", ["model.overrides.encoder_channels=[8]"])


def test_config_base_is_resolved_section_by_section(tmp_path):
    (tmp_path / "parent.yaml").write_text("base: tiny\noptim:\n  lr: 5.0e-4\n  max_steps: 7\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nmodel:\n  kind: bin_classifier\n  preset: tiny\n")
    child = load_train_config(tmp_path / "child.yaml")
    tiny = load_train_config("tiny")
    assert (child.optim.lr, child.optim.max_steps, child.model.kind) == (5e-4, 7, "bin_classifier")
    # A section given replaces the base's whole: optim.warmup_steps is back to its default.
    assert child.optim.warmup_steps == type(tiny.optim)().warmup_steps
    assert child.data.to_dict() == tiny.data.to_dict()
    (tmp_path / "loop_a.yaml").write_text("base: loop_b.yaml\n")
    (tmp_path / "loop_b.yaml").write_text("base: loop_a.yaml\n")
    with pytest.raises(ConfigError, match="'base' chain loops"):
        load_train_config(tmp_path / "loop_a.yaml")
    (tmp_path / "orphan.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="base 'nowhere.yaml' is neither one of"):
        load_train_config(tmp_path / "orphan.yaml")
    (tmp_path / "odd.yaml").write_text("base: [tiny]\n")
    with pytest.raises(ConfigError, match="base must be a config name or a YAML path"):
        load_train_config(tmp_path / "odd.yaml")


def test_model_kinds_and_checkpoint_kinds(tmp_path):
    kind = model_kind("bin_classifier")
    assert kind.model_class is PerFrameBinClassifier and kind.config_class is BinClassifierConfig
    config = kind.preset_config("tiny", uv_layout="layout-a")
    PerFrameBinClassifier(config).save_pretrained(tmp_path / "baseline")
    assert checkpoint_kind(tmp_path / "baseline") is kind
    with pytest.raises(CheckpointError, match="holds a model.kind='bin_classifier' checkpoint; this run trains "
                                              "model.kind='egopressdiff'"):
        model_kind("egopressdiff").load(tmp_path / "baseline", model_kind("egopressdiff").preset_config("tiny"))
    with pytest.raises(CheckpointError, match="config.json is missing"):
        checkpoint_kind(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "onnx"}))
    with pytest.raises(CheckpointError, match="holds a 'onnx' checkpoint; expected one of"):
        checkpoint_kind(tmp_path)


# ----------------------------------------------------------------------------------------------
# Training through the loop
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(synthetic, tmp_path_factory) -> tuple[Path, Path]:
    """The baseline trained 4 steps straight (A), and as 2 steps, a stop and a resume (B)."""
    root = tmp_path_factory.mktemp("baseline-runs")
    straight, interrupted = root / "A", root / "B"
    assert train_cli(*RUN_ARGS, "--data", synthetic, "--out", straight) == 0
    assert train_cli(*RUN_ARGS, "--data", synthetic, "--out", interrupted, "--until-step", 2) == 0
    assert not (interrupted / "model").exists()
    assert train_cli(*RUN_ARGS, "--data", synthetic, "--out", interrupted, "--resume") == 0
    return straight, interrupted


def test_baseline_trains_saves_and_validates(runs, synthetic):
    straight, _ = runs
    model = PerFrameBinClassifier.from_pretrained(straight / "model")
    assert model.config == load_train_config("baseline_tiny").model_config().replace(uv_layout=model.config.uv_layout)
    assert checkpoint_kind(straight / "checkpoints" / "step_000004").name == "bin_classifier"
    assert "PerFrameBinClassifier.from_pretrained" in (straight / "model" / "README.txt").read_text()
    records = [json.loads(line) for line in (straight / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in records if r["kind"] == "train")
    val = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in val] == [2, 4]
    assert {"contact_iou", "volumetric_iou", "mae_kpa", "temporal_accuracy", "loss"} <= set(val[-1])
    # The EMA weights in model/ differ from the raw weights of the last checkpoint.
    raw = load_file(straight / "checkpoints" / "step_000004" / "model.safetensors")
    ema = load_file(straight / "model" / "model.safetensors")
    assert raw.keys() == ema.keys() and any(not torch.equal(raw[k], ema[k]) for k in raw)


def test_baseline_resume_continues_bit_for_bit(runs):
    straight, interrupted = runs
    for folder in ("checkpoints/step_000004", "model"):
        a = load_file(straight / folder / "model.safetensors")
        b = load_file(interrupted / folder / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), folder

    def losses(run: Path) -> list[tuple[int, float]]:
        records = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]

    assert losses(straight) == losses(interrupted)


def test_trained_baseline_loads_in_eval(runs, synthetic, tmp_path):
    straight, _ = runs
    assert isinstance(load_pressure_model(straight / "model"), PerFrameBinClassifier)
    report_path = tmp_path / "report.json"
    assert main(["eval", "--checkpoint", str(straight / "model"), "--data", str(synthetic), "--out", str(report_path),
                 "--no-figure"]) == 0
    report = json.loads(report_path.read_text())
    assert report["model"] == "PerFrameBinClassifier" and report["sequences"] == 3
    assert report["metrics"]["frames"] == 3 * 16 and report["metrics"]["mae_kpa"] >= 0


def test_resume_or_fine_tune_across_kinds_is_refused(runs, synthetic, tmp_path, capsys):
    _, run = runs
    diffusion_args = ["--config", "tiny", "--data", synthetic, "--max-steps", 4, "--set", "validation.every_steps=0",
                      "--set", "data.window.stride=4"]
    assert train_cli(*diffusion_args, "--out", run, "--resume") == 2
    assert ("it holds a model.kind='bin_classifier' model, the config trains model.kind='egopressdiff'"
            in capsys.readouterr().err)
    assert train_cli(*diffusion_args, "--out", tmp_path / "ft", "--set", f"model.init_from={run / 'model'}") == 2
    assert "holds a model.kind='bin_classifier' checkpoint" in capsys.readouterr().err
    assert train_cli(*RUN_ARGS, "--data", synthetic, "--out", run, "--resume",
                     "--set", "model.overrides.vertex_hidden_dim=16") == 2
    assert "it holds another model (vertex_hidden_dim: checkpoint 32 vs now 16)" in capsys.readouterr().err


def test_baseline_fine_tunes_from_its_own_checkpoint(runs, synthetic, tmp_path, capsys):
    straight, _ = runs
    common = [*RUN_ARGS, "--data", synthetic, "--max-steps", 1, "--set", "validation.every_steps=0"]
    assert train_cli(*common, "--out", tmp_path / "bad", "--set", f"model.init_from={straight / 'model'}",
                     "--set", "model.overrides.vertex_hidden_dim=16") == 2
    error = capsys.readouterr().err
    assert "was trained with another config (vertex_hidden_dim: checkpoint 32 vs expected 16)" in error
    # A training-only key may change when fine-tuning.
    assert train_cli(*common, "--out", tmp_path / "ok", "--set", f"model.init_from={straight / 'model'}",
                     "--set", "model.overrides.soft_label_sigma_bins=0.8") == 0
    assert PerFrameBinClassifier.from_pretrained(tmp_path / "ok" / "model").config.soft_label_sigma_bins == 0.8


def test_baseline_loss_falls_through_the_loop(tmp_path):
    """Overfit two windows with the real loop: the soft cross-entropy halves in 40 steps."""
    data = tmp_path / "one"
    generate_dataset(SynthConfig(sequences=1, frames=8, image_sizes=((48, 48),), gestures=("palm_press",), seed=1),
                     data, progress=False)
    overrides = ["threads=1", "data.window.stride=4", "optim.lr=3e-3", "optim.lr_schedule=constant_with_warmup",
                 "optim.warmup_steps=0", "ema.enabled=false", "validation.every_steps=0", "checkpoint.every_steps=0",
                 "logging.tensorboard=false", "logging.plot=false", "data.statistics_windows=2"]
    config = load_train_config("baseline_tiny", overrides, {"data.train": [str(data)], "optim.max_steps": 40})
    datasets = build_datasets(config, config.model_config())
    assert len(datasets.train) == 2
    batch = datasets.collate([datasets.train[0], datasets.train[1]])
    from accelerate.utils import set_seed

    set_seed(config.seed)  # the initial weights train() starts from
    with torch.no_grad():
        before = float(build_model(config, resolve_model_config(config, datasets)).compute_loss(batch).loss)
    result = train(config, tmp_path / "run", progress=False)
    with torch.no_grad():
        after = float(PerFrameBinClassifier.from_pretrained(result.model_dir).compute_loss(batch).loss)
    assert result.finished and after < 0.5 * before, (before, after)
