"""The training loop (`egopress train`): config, data sources, end to end, overfit, resume, bad input."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.egopressure_fixture import write_egopressure_fixture
from safetensors.torch import load_file

from egopress_core.cli.main import main
from egopress_core.data.sources import (
    HandUVMask,
    detect_kind,
    hand_uv_mask,
    holdout_split,
    open_data_source,
    resolve_hand_uv_mask,
)
from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset
from egopress_core.data.windows import ClipWindowDataset, DataStatistics, area_resize
from egopress_core.errors import CheckpointError, ConfigError, DataError
from egopress_core.model import EgoPressDiff
from egopress_core.training import build_datasets, evaluate_model, load_train_config, train, validation_loader
from egopress_core.training.config import TrainConfig, parse_override
from egopress_core.training.trainer import build_model, micro_batch_seed, resolve_model_config, resolve_precision

# One CPU thread per run: fast on a busy 2-core machine (threads spin-wait on each other when
# the cores are shared); the test process's own setting is restored after each test.
FAST = ["--set", "threads=1", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def train_cli(*args: str) -> int:
    return main(["train", *[str(a) for a in args], *FAST])


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------


def test_named_configs_load_and_paper_matches_the_paper():
    for name in ("tiny", "compact", "paper"):
        assert isinstance(load_train_config(name), TrainConfig)
    paper = load_train_config("paper")
    model = paper.model_config()
    assert (model.num_frames, paper.optim.batch_size, paper.optim.lr, paper.optim.max_steps) == (16, 2, 1e-5, 40000)
    assert model.latent_space == "vae" and model.image_encoder == "clip"
    tiny = load_train_config("tiny")
    assert tiny.window_config(tiny.model_config()).window == tiny.model_config().num_frames


def test_overrides_are_typed():
    config = load_train_config("tiny", ["optim.lr=1e-4", "data.window.stride=4", "model.overrides.fps=15",
                                        "optim.betas=[0.8, 0.95]", "optim.max_grad_norm=null",
                                        "data.window.augment.brightness=0.1", "ema.enabled=false"])
    assert config.optim.lr == pytest.approx(1e-4) and isinstance(config.optim.lr, float)
    assert config.data.window["stride"] == 4
    assert config.model_config().fps == 15.0
    assert config.optim.betas == (0.8, 0.95)
    assert config.optim.max_grad_norm is None
    assert config.window_config(config.model_config()).augment.brightness == 0.1
    assert config.ema.enabled is False
    assert parse_override("data.train=[a, b]") == (["data", "train"], ["a", "b"])


@pytest.mark.parametrize("override, message", [
    ("optim.lr=abc", r"optim.lr must be a number; got 'abc'"),
    ("optim.lrr=1", r"unknown key 'lrr' in optim"),
    ("nope.x=1", r"unknown key 'nope' in the top level"),
    ("data.window.strid=2", r"data.window.strid is not a WindowConfig field"),
    ("data.window.stride=two", r"data.window.stride must be an integer"),
    ("data.window.window=8", r"data.window.window=8 does not match the model's num_frames=4"),
    ("data.window.uv_size=[8, 8]", r"data.window.uv_size=.* does not match the model's uv_size"),
    ("model.overrides.num_frame=3", r"model.overrides.num_frame is not a EgoPressDiffConfig field"),
    ("model.overrides.num_frames=0", r"model.overrides: num_frames must be a positive integer"),
    ("model.preset=huge", r"model.preset must be one of"),
    ("precision=fp64", r"precision must be one of \['fp32', 'fp16', 'bf16'\]"),
    ("optim.betas=[0.9]", r"optim.betas must have 2 entries"),
    ("optim.batch_size=0", r"optim.batch_size must be >= 1"),
    ("validation.scheduler=pndm", r"validation.scheduler must be one of"),
    ("data.window.augment.brightness=2", r"brightness must be a number in \[0, 1\)"),
    ("optim.lr", r"must have the form key=value"),
    ("data.hands=fitted", r"data.hands must be one of \['annotated', 'estimated', 'perturbed'\]"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config("tiny", [override])


def test_cli_reports_config_errors_without_traceback(capsys, tmp_path):
    assert train_cli("--config", "tiny", "--data", tmp_path, "--out", tmp_path / "o", "--set", "optim.lrr=1") == 2
    assert "unknown key 'lrr'" in capsys.readouterr().err
    assert train_cli("--config", tmp_path / "missing.yaml", "--out", tmp_path / "o") == 2
    assert "neither one of" in capsys.readouterr().err


def test_resolved_config_round_trips(tmp_path):
    config = load_train_config("compact", ["optim.lr=2e-4", "data.hand_side=right"])
    config.save(tmp_path / "c.yaml")
    assert load_train_config(tmp_path / "c.yaml").to_dict() == config.to_dict()


def test_fp16_falls_back_on_cpu_with_a_warning():
    with pytest.warns(UserWarning, match="fp16"):
        assert resolve_precision("fp16", on_cpu=True) == "no"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", on_cpu=True) == "bf16"


def test_micro_batch_seeds_are_distinct_per_process_and_index():
    seeds = {micro_batch_seed(0, rank, m) for rank in range(2) for m in range(50)}
    assert len(seeds) == 100
    assert micro_batch_seed(5, 1, 7) == micro_batch_seed(5, 1, 7) != micro_batch_seed(6, 1, 7)


# ----------------------------------------------------------------------------------------------
# Sources and the UV hand mask
# ----------------------------------------------------------------------------------------------


def test_open_data_source_recognises_folders(synthetic, tmp_path):
    source = open_data_source(synthetic)
    assert detect_kind(synthetic) == "synthetic" and len(source.sequences()) == 3
    write_egopressure_fixture(tmp_path / "ego", participants=("p_001", "p_016"), sequences_per_participant=2)
    assert detect_kind(tmp_path / "ego") == "egopressure"
    train_part = open_data_source(tmp_path / "ego", split="train", hand_side="right")
    assert [s.participant for s in train_part.sequences()] == ["p_001"]
    assert {s.hand_side for s in open_data_source(tmp_path / "ego", split="all").sequences()} == {"left", "right"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is not a data folder.*holds nothing"):
        open_data_source(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        open_data_source(tmp_path / "missing")
    with pytest.raises(DataError, match="none of its 3 sequences shows the left hand"):
        open_data_source(synthetic, hand_side="left")


def test_holdout_split_is_reproducible_and_disjoint(synthetic):
    sequences = open_data_source(synthetic).sequences()
    train_a, val_a = holdout_split(sequences, 0.34, seed=1)
    train_b, val_b = holdout_split(list(reversed(sequences)), 0.34, seed=1)
    assert [s.name for s in val_a] == [s.name for s in val_b] and len(val_a) == 1
    assert {s.name for s in train_a} | {s.name for s in val_a} == {s.name for s in sequences}
    with pytest.raises(DataError, match="cannot hold out"):
        holdout_split(sequences[:1], 0.5)


def test_hand_uv_mask_covers_the_pressure_support(synthetic):
    sequences = open_data_source(synthetic).sequences()
    mask = resolve_hand_uv_mask(sequences, (16, 16))
    assert mask.layout_id == sequences[0].uv_layout and mask.source_resolution == (224, 224)
    full = hand_uv_mask((224, 224))
    expected = area_resize(torch.from_numpy(full.mask.astype(np.float64)), (16, 16)).numpy() > 0
    np.testing.assert_array_equal(mask.mask, expected)
    assert 0.2 < mask.mask.mean() < 1.0
    # Pressure in the windows (area-resized like the mask) lies on the mask only.
    windows = ClipWindowDataset(sequences, window=4, stride=4, uv_size=(16, 16), image_size=(32, 32))
    support = torch.stack([windows[i]["uv_pressure_kpa"] for i in range(len(windows))]).amax(dim=(0, 1, 2)) > 0
    assert support.any() and not (support.numpy() & ~mask.mask).any()


def test_egopressure_layout_needs_its_hand_model(tmp_path):
    write_egopressure_fixture(tmp_path / "ego", participants=("p_001",), frames=6, unannotated=())
    config = load_train_config("tiny", ["validation.every_steps=0", "data.hand_side=right"],
                               {"data.train": [str(tmp_path / "ego")]})
    with pytest.raises(DataError, match="UV layout 'MANO_UV_right' is not the hand model's atlas"):
        build_datasets(config, config.model_config())


# ----------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow  # ~11 s of training
def test_cli_trains_tiny_end_to_end(synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli("--config", "tiny", "--data", synthetic, "--out", out, "--max-steps", 20,
                     "--set", "data.statistics_windows=4") == 0
    assert "finished at step 20" in capsys.readouterr().out

    # Final EMA model, loadable, with the data's UV layout, statistics and mask beside it.
    model = EgoPressDiff.from_pretrained(out / "model")
    layout = open_data_source(synthetic).sequences()[0].uv_layout
    assert model.config.uv_layout == layout and model.config.num_frames == 4
    mask = HandUVMask.load(out / "model" / "hand_uv_mask.json")
    np.testing.assert_array_equal(mask.mask, hand_uv_mask((16, 16)).mask)
    stats = DataStatistics.load(out / "model" / "statistics.json")
    assert stats.num_valid_frames > 0 and stats.pressure_max_kpa > 0
    assert load_train_config(out / "model" / "train_config.yaml").optim.max_steps == 20

    # Checkpoints: the last two kept, `latest` names the newest; EMA differs from raw weights.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_000010", "step_000020"]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_000020"
    raw = load_file(out / "checkpoints" / "step_000020" / "model.safetensors")
    ema = load_file(out / "model" / "model.safetensors")
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)
    state = json.loads((out / "checkpoints" / "step_000020" / "training_state.json").read_text())
    assert state["step"] == 20 and state["uv_layout"] == layout

    # History, TensorBoard and the training curve.
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    assert train_steps == list(range(1, 21))
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in records if r["kind"] == "train")
    lrs = [r["lr"] for r in records if r["kind"] == "train"]
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(1e-3) and lrs[-1] < 1e-5  # warm-up, cosine to 0
    val = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in val] == [10, 20]
    assert {"contact_iou", "volumetric_iou", "mae_kpa", "temporal_accuracy", "loss"} <= set(val[-1])
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    assert (out / "training_curve.png").stat().st_size > 10_000

    # The validation helper is reusable on the saved model, and deterministic.
    config = load_train_config(out / "model" / "train_config.yaml")
    data = build_datasets(config, model.config)
    loader = validation_loader(data.val, 2, 2, data.collate)
    first = evaluate_model(model, loader, num_inference_steps=2, seed=0)
    assert first == evaluate_model(model, loader, num_inference_steps=2, seed=0)
    assert first["windows"] == 2 and first["mae_kpa"] >= 0

    # A second run into the same folder must not overwrite it.
    assert train_cli("--config", "tiny", "--data", synthetic, "--out", out, "--max-steps", 20) == 2
    assert "already holds a training run" in capsys.readouterr().err


def test_training_windows_carry_the_hands_the_config_asks_for(synthetic):
    """data.hands=perturbed: the model trains on the meshes `egopress eval --hands perturbed`
    scores it with (the same drift per sequence), with the ground truth unchanged."""
    base = ["validation.every_steps=0", "data.window.augment=null"]
    windows = {}
    for hands in ("annotated", "perturbed"):
        config = load_train_config("tiny", [*base, f"data.hands={hands}"], {"data.train": [str(synthetic)]})
        windows[hands] = build_datasets(config, config.model_config()).train[0]
    annotated, perturbed = windows["annotated"], windows["perturbed"]
    shift_mm = (perturbed["joints"] - annotated["joints"]).norm(dim=-1).mean().item() * 1000
    assert 0.5 < shift_mm < 20
    assert torch.equal(perturbed["uv_pressure_kpa"], annotated["uv_pressure_kpa"])


def test_loss_falls_on_a_fixed_small_set(tmp_path):
    """Overfit: two windows, no augmentation or dropout; the loss (v-prediction, the same 16
    noise draws before and after) falls by more than half in 30 steps."""
    data = tmp_path / "one"
    generate_dataset(SynthConfig(sequences=1, frames=6, image_sizes=((48, 48),), gestures=("single_press",), seed=1),
                     data, progress=False)
    overrides = ["threads=1", "model.overrides.num_frames=2", "model.overrides.image_size=[16, 16]",
                 "model.overrides.uv_size=[8, 8]",
                 "model.overrides.condition_dropout_prob=0.0", "model.overrides.modality_dropout_prob=0.0",
                 "data.window.stride=4", "optim.lr=2e-3", "optim.lr_schedule=constant_with_warmup",
                 "optim.warmup_steps=0", "ema.enabled=false", "validation.every_steps=0",
                 "checkpoint.every_steps=0", "logging.tensorboard=false", "logging.plot=false"]
    config = load_train_config("tiny", overrides, {"data.train": [str(data)], "optim.max_steps": 30})
    datasets = build_datasets(config, config.model_config())
    assert len(datasets.train) == 2  # one batch: every step sees the same two windows
    batch = next(iter(validation_loader(datasets.train, 2, 2, datasets.collate)))

    def fixed_noise_loss(model: EgoPressDiff) -> float:
        with torch.no_grad():
            return float(np.mean([model.compute_loss(batch, generator=1000 + s).loss.item() for s in range(16)]))

    from accelerate.utils import set_seed

    set_seed(config.seed)  # the initial weights train() starts from
    before = fixed_noise_loss(build_model(config, resolve_model_config(config, datasets)))
    result = train(config, tmp_path / "run", progress=False)
    after = fixed_noise_loss(EgoPressDiff.from_pretrained(result.model_dir))
    assert result.finished and result.step == 30
    assert after < 0.5 * before, (before, after)


# 12 windows in batches of 2 with 2 micro-batches per step: 4 steps cross an epoch boundary, and
# the resume at step 2 starts mid-epoch.
RESUME_ARGS = ["--config", "tiny", "--max-steps", 4, "--set", "optim.grad_accumulation_steps=2",
               "--set", "checkpoint.every_steps=2", "--set", "validation.every_steps=0",
               "--set", "data.window.stride=4", "--set", "data.statistics_windows=4",
               "--set", "data.window.augment.crop_shift=0.05", "--set", "data.window.augment.brightness=0.2",
               "--set", "logging.tensorboard=false", "--set", "logging.plot=false"]


@pytest.fixture(scope="module")
def resumed_runs(synthetic, tmp_path_factory) -> tuple[Path, Path]:
    """The same 4 steps straight (A) and as 2 steps, a kill, and a resume (B)."""
    root = tmp_path_factory.mktemp("resume")
    straight, interrupted = root / "A", root / "B"
    assert train_cli(*RESUME_ARGS, "--data", synthetic, "--out", straight) == 0
    assert train_cli(*RESUME_ARGS, "--data", synthetic, "--out", interrupted, "--until-step", 2) == 0
    assert not (interrupted / "model").exists()
    # A kill in the middle of writing the next checkpoint leaves a partial folder behind.
    shutil.copytree(interrupted / "checkpoints" / "step_000002", interrupted / "checkpoints" / ".step_000004.partial")
    (interrupted / "checkpoints" / ".step_000004.partial" / "model.safetensors").write_bytes(b"torn")
    assert train_cli(*RESUME_ARGS, "--data", synthetic, "--out", interrupted, "--resume") == 0
    return straight, interrupted


def test_resume_continues_bit_for_bit(resumed_runs):
    straight, interrupted = resumed_runs
    for folder in ("checkpoints/step_000004", "model"):  # raw weights, then EMA weights
        a = load_file(straight / folder / "model.safetensors")
        b = load_file(interrupted / folder / "model.safetensors")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), folder
    optimizer_a = torch.load(straight / "checkpoints/step_000004/optimizer.bin", weights_only=True)
    optimizer_b = torch.load(interrupted / "checkpoints/step_000004/optimizer.bin", weights_only=True)
    assert all(torch.equal(optimizer_a["state"][i]["exp_avg_sq"], optimizer_b["state"][i]["exp_avg_sq"])
               for i in optimizer_a["state"])

    def losses(run: Path) -> list[tuple[int, float]]:
        records = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]

    assert losses(straight) == losses(interrupted) and len(losses(straight)) == 4
    assert not (interrupted / "checkpoints" / ".step_000004.partial").exists()
    state = json.loads((interrupted / "checkpoints" / "step_000004" / "training_state.json").read_text())
    assert state["micro_batches"] == 8 and state["epoch"] == 1


def test_resume_refuses_incompatible_runs(resumed_runs, synthetic, tmp_path, capsys):
    _, run = resumed_runs
    args = [*RESUME_ARGS, "--data", synthetic, "--out", run, "--resume"]
    assert train_cli(*args, "--set", "model.overrides.unet_block_out_channels=[32, 32]") == 2
    assert "it holds another model (unet_block_out_channels" in capsys.readouterr().err
    assert train_cli(*args, "--set", "data.window.stride=3") == 2
    assert "the data windows changed (stride: checkpoint 4 vs now 3)" in capsys.readouterr().err
    assert train_cli(*RESUME_ARGS, "--data", synthetic, "--out", tmp_path / "fresh", "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err
    broken = tmp_path / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "checkpoints" / "latest").write_text("step_000009\n")
    assert train_cli(*RESUME_ARGS, "--data", synthetic, "--out", broken, "--resume") == 2
    assert "not a complete checkpoint folder" in capsys.readouterr().err


def test_resume_of_another_uv_layout_is_refused(resumed_runs, tmp_path):
    _, run = resumed_runs
    other = tmp_path / "other_layout"
    generate_dataset(SynthConfig(sequences=2, frames=8, image_sizes=((48, 48),), uv_resolution=112), other,
                     progress=False)
    config = load_train_config(run / "checkpoints" / "step_000004" / "train_config.yaml",
                               updates={"data.train": [str(other)]})
    with pytest.raises(CheckpointError, match="trained on UV layout .*224x224.* the data is on .*112x112"):
        train(config, run, resume=True, progress=False)


# ----------------------------------------------------------------------------------------------
# Bad input: clear errors before any work
# ----------------------------------------------------------------------------------------------


def test_nan_in_conditions_fails_before_the_first_step(synthetic, tmp_path, capsys):
    data = tmp_path / "nan"
    shutil.copytree(synthetic, data)
    for sequence in sorted(data.glob("seq_*")):
        vertices = np.load(sequence / "vertices.npy")
        vertices[:] = np.nan
        np.save(sequence / "vertices.npy", vertices)
    out = tmp_path / "run"
    assert train_cli("--config", "tiny", "--data", data, "--out", out, "--set", "validation.every_steps=0",
                     "--set", "data.window.stride=4") == 2
    assert "training data: vertices contains NaN" in capsys.readouterr().err
    assert not (out / "history.jsonl").exists() and not (out / "checkpoints").exists()


def test_empty_or_unusable_data_is_refused(synthetic, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert train_cli("--config", "tiny", "--data", tmp_path / "empty", "--out", tmp_path / "o") == 2
    assert "is not a data folder" in capsys.readouterr().err
    assert train_cli("--config", "tiny", "--out", tmp_path / "o") == 2
    assert "pass --data DIR" in capsys.readouterr().err
    # Windows longer than every sequence.
    assert train_cli("--config", "tiny", "--data", synthetic, "--out", tmp_path / "o",
                     "--set", "model.overrides.num_frames=32") == 2
    assert "no window of 32 frames: 2 sequence(s), 2 shorter than the window" in capsys.readouterr().err
    # More windows per batch than the data has.
    assert train_cli("--config", "tiny", "--data", synthetic, "--out", tmp_path / "o",
                     "--set", "optim.batch_size=64", "--set", "validation.every_steps=0") == 2
    assert "fewer than optim.batch_size=64" in capsys.readouterr().err


def test_validation_without_validation_data_is_refused(synthetic, tmp_path):
    config = load_train_config("tiny", ["data.val_fraction=0.0"], {"data.train": [str(synthetic)]})
    with pytest.raises(ConfigError, match="needs validation data"):
        build_datasets(config, config.model_config())


def test_fine_tune_from_a_trained_model_with_validation_data(resumed_runs, synthetic, tmp_path, capsys):
    straight, _ = resumed_runs
    out = tmp_path / "fine_tune"
    common = ["--config", "tiny", "--data", synthetic, "--val-data", synthetic, "--out", out, "--max-steps", 1,
              "--set", "validation.num_windows=1", "--set", "validation.num_inference_steps=1",
              "--set", "validation.every_steps=1", "--set", "data.statistics_windows=2",
              "--set", "logging.plot=false", "--set", "logging.tensorboard=false"]
    assert train_cli(*common, "--set", f"model.init_from={straight / 'model'}",
                     "--set", "model.overrides.num_frames=6") == 2
    assert "was trained with another config (num_frames: checkpoint 4 vs expected 6)" in capsys.readouterr().err
    assert train_cli(*common, "--set", f"model.init_from={straight / 'model'}") == 0
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"], r["windows"]) for r in records if r["kind"] == "val"] == [("val", 1, 1.0)]


def test_uv_geometry_model_trains_and_evaluates(synthetic, tmp_path, capsys):
    """With use_uv_geometry the collator adds the UV-aligned evidence to every batch (training and
    validation) and `egopress eval` builds it the same way."""
    from egopress_core.cli.main import main

    out = tmp_path / "run"
    assert train_cli("--config", "tiny", "--data", synthetic, "--out", out, "--max-steps", 2,
                     "--set", "model.overrides.use_uv_geometry=true", "--set", "validation.every_steps=2",
                     "--set", "validation.num_windows=1", "--set", "validation.num_inference_steps=1",
                     "--set", "data.statistics_windows=2", "--set", "logging.plot=false",
                     "--set", "logging.tensorboard=false") == 0
    model = EgoPressDiff.from_pretrained(out / "model")
    assert model.config.use_uv_geometry
    config = load_train_config(out / "model" / "train_config.yaml")
    data = build_datasets(config, model.config)
    batch = data.collate([data.train[0]])
    geometry = batch["uv_geometry"]
    assert geometry.shape == (1, model.config.num_frames, 6, *model.config.uv_size)
    assert geometry[:, :, 4].sum() > 0 and geometry[:, :, 5].sum() > 0  # visible texels, surface evidence
    report = tmp_path / "report.json"
    assert main(["eval", "--checkpoint", str(out / "model"), "--data", str(synthetic), "--out", str(report),
                 "--steps", "1", "--max-sequences", "1", "--no-figure"]) == 0
    assert json.loads(report.read_text())["metrics"]["frames"] > 0


def test_fine_tune_adds_uv_geometry_to_a_trained_model(resumed_runs, synthetic, tmp_path):
    straight, _ = resumed_runs
    out = tmp_path / "with_geometry"
    assert train_cli("--config", "tiny", "--data", synthetic, "--out", out, "--max-steps", 1,
                     "--set", f"model.init_from={straight / 'model'}", "--set", "model.overrides.use_uv_geometry=true",
                     "--set", "validation.every_steps=0", "--set", "data.statistics_windows=2",
                     "--set", "logging.plot=false", "--set", "logging.tensorboard=false") == 0
    tuned = load_file(out / "model" / "model.safetensors")
    start = load_file(straight / "model" / "model.safetensors")
    old_inputs = start["unet.conv_in.weight"].shape[1]
    assert tuned["unet.conv_in.weight"].shape[1] == old_inputs + 6
    assert EgoPressDiff.from_pretrained(out / "model").config.use_uv_geometry
