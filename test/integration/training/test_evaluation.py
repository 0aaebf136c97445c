"""`egopress eval` and `egopress demo` end to end on tiny data with tiny untrained models."""

import json
import math

import pytest
import torch

from egopress_core.cli.main import main
from egopress_core.data.sources import hand_uv_mask
from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset
from egopress_core.errors import CheckpointError
from egopress_core.pipeline import load_pressure_model
from egopress_core.model.bin_classifier import BinClassifierConfig, PerFrameBinClassifier
from egopress_core.model.config import tiny_config
from egopress_core.model.egopressdiff import EgoPressDiff

SMALL = dict(frames=10, image_sizes=((96, 96),), uv_resolution=224)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-data")
    generate_dataset(SynthConfig(sequences=2, seed=5, gestures=("single_press", "palm_press"), **SMALL), root, progress=False)
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    config = tiny_config()
    layout = hand_uv_mask(tuple(config.uv_size), "right").layout_id
    torch.manual_seed(0)
    EgoPressDiff(tiny_config(uv_layout=layout)).save_pretrained(root / "diffusion")
    baseline = BinClassifierConfig(num_frames=4, image_size=config.image_size, uv_size=config.uv_size, uv_layout=layout,
                                   encoder_channels=(8, 16), vertex_hidden_dim=16, decoder_channels=(16, 8))
    PerFrameBinClassifier(baseline).save_pretrained(root / "baseline")
    EgoPressDiff(tiny_config(uv_layout="another_layout:16x16:000000000000")).save_pretrained(root / "other")
    return root


@pytest.mark.parametrize("kind", ["diffusion", "baseline"])
def test_eval_writes_report_and_figure(kind, data, checkpoints, tmp_path):
    out = tmp_path / "report.json"
    code = main(["eval", "--checkpoint", str(checkpoints / kind), "--data", str(data), "--out", str(out), "--steps", "2"])
    assert code == 0
    report = json.loads(out.read_text())
    metrics = report["metrics"]
    for key in ("contact_iou", "volumetric_iou", "mae_kpa", "temporal_accuracy", "vertex_mae_kpa", "force_mae_n",
                "temporal_smoothness_kpa"):
        assert key in metrics
    assert metrics["frames"] == 2 * SMALL["frames"]
    assert 0.0 <= metrics["temporal_accuracy"] <= 1.0
    assert metrics["mae_kpa"] >= 0 and math.isfinite(metrics["force_mae_n"])
    assert sorted(report["per_sequence"]) == ["seq_00000", "seq_00001"]
    for entry in report["per_sequence"].values():
        factors = entry["factors"]
        assert 0.1 < factors["camera_distance_m"] < 1.5 and 0.03 < factors["hand_size_m"] < 0.15
        assert 0 < factors["view_pitch_deg"] <= 90 and factors["image_width_px"] == 96
    assert report["per_factor"] == {}  # two sequences cannot be split in thirds
    assert report["model"] == {"diffusion": "EgoPressDiff", "baseline": "PerFrameBinClassifier"}[kind]
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_eval_scores_the_temporal_figures_and_perturbed_hands(data, checkpoints, tmp_path):
    reports = {}
    for hands in ("annotated", "perturbed"):
        out = tmp_path / f"{hands}.json"
        assert main(["eval", "--checkpoint", str(checkpoints / "diffusion"), "--data", str(data), "--out", str(out),
                     "--steps", "2", "--hands", hands, "--no-figure"]) == 0
        reports[hands] = json.loads(out.read_text())
    for hands, report in reports.items():
        assert report["hands"] == hands and report["frames_with_hand"] == report["frames_total"] == 2 * SMALL["frames"]
        metrics = report["metrics"]
        assert metrics["flicker_kpa"] >= 0 and metrics["onsets_true"] >= 0
        for key in ("onset_error_frames", "release_error_frames", "force_correlation", "onsets_missed",
                    "releases_spurious"):
            assert key in metrics
    # The model saw other meshes: its estimates changed.
    assert reports["perturbed"]["metrics"]["mae_kpa"] != reports["annotated"]["metrics"]["mae_kpa"]


def test_eval_batches_windows_without_changing_the_result(data, checkpoints, tmp_path):
    reports = []
    for batch in ("1", "3"):
        out = tmp_path / f"report_{batch}.json"
        argv = ["eval", "--checkpoint", str(checkpoints / "diffusion"), "--data", str(data), "--out", str(out),
                "--steps", "2", "--stride", "2", "--window-batch-size", batch, "--device", "cpu", "--no-figure"]
        assert main(argv) == 0
        reports.append(json.loads(out.read_text()))
    assert reports[1]["options"]["sampling"]["window_batch_size"] == 3 and reports[1]["device"] == "cpu"
    for key, value in reports[0]["metrics"].items():
        batched = reports[1]["metrics"][key]
        assert batched is None if value is None else batched == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_eval_refuses_fp16_on_a_cpu_before_any_work(data, checkpoints, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["eval", "--checkpoint", str(checkpoints / "diffusion"), "--data", str(data), "--out", str(out),
                 "--device", "cpu", "--precision", "fp16"])
    assert code == 2 and not out.exists()
    assert "precision='fp16' needs a GPU" in capsys.readouterr().err


def test_eval_refuses_a_checkpoint_of_another_uv_layout(data, checkpoints, tmp_path):
    code = main(["eval", "--checkpoint", str(checkpoints / "other"), "--data", str(data), "--out", str(tmp_path / "r.json")])
    assert code == 2
    assert not (tmp_path / "r.json").exists()


def test_load_pressure_model_names_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_pressure_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="something-else"):
        load_pressure_model(tmp_path)


def test_demo_runs_the_whole_path(checkpoints, tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--checkpoint", str(checkpoints / "diffusion"), "--sequences", "1",
                 "--frames", "8", "--steps", "2"])
    assert code == 0
    assert json.loads((out / "report.json").read_text())["sequences"] == 1
    assert (out / "report.png").is_file()
    # The camera-only path's evaluation beside it: scored on the frames it found the hand in.
    printed = capsys.readouterr().out
    assert "annotation meshes" in printed and "camera-only path" in printed and "frames with a hand" in printed
    camera_only = out / "report_camera_only.json"
    if camera_only.is_file():
        assert json.loads(camera_only.read_text())["hands"] == "estimated"
    else:
        assert "camera-only path: nothing to score" in printed
    assert (out / "data" / "previews" / "seq_00000.png").is_file()
    # The rosbag step: an 8-frame sample bag, labelled frame for frame, under its final name only.
    from rosbags.highlevel import AnyReader

    with AnyReader([out / "sample_bag_labelled"]) as labelled:
        counts = {c.topic: c.msgcount for c in labelled.connections}
    assert counts["/egopress/uv_pressure"] == counts["/camera/color/image_raw"] == 8
    assert not (out / ".sample_bag_labelled.labelling").exists()
