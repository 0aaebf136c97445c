"""Smoke test of benchmarks/quality.py --quick: tiny configs, 2 steps, 3 variants, end to end;
then re-use of finished runs and scores, and the refusals."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]  # test/integration/training/<this file>


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("quality_benchmark", REPO / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


quality = _load_benchmark()
SMALL = ["--quick", "--train-steps", "2", "--variants", "full,no_depth,baseline", "--train-sequences", "2",
         "--train-frames", "8", "--eval-sequences", "2", "--eval-frames", "8", "--eval-gestures", "drag", "weak",
         "--steps", "2", "--threads", "1", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quality")
    assert quality.main([*SMALL, "--out", str(out)]) == 0
    return out


def test_quick_run_writes_the_comparison(benchmark, capsys):
    summary = json.loads((benchmark / "quality.json").read_text())
    assert list(summary["results"]) == ["full", "no_depth", "baseline"]
    for name, result in summary["results"].items():
        for key, _, _ in quality.METRICS:
            assert key in result["metrics"], (name, key)
        assert result["training"]["steps"] == 2 and result["trainable_parameters"] > 0
        assert (benchmark / "eval" / f"{name}.json").is_file()
    assert summary["results"]["baseline"]["model"] == "PerFrameBinClassifier"
    assert summary["results"]["no_depth"]["model"] == "EgoPressDiff"
    # The ablation really was trained without depth; the baseline with the baseline config.
    no_depth = json.loads((benchmark / "runs" / "no_depth" / "model" / "config.json").read_text())
    assert no_depth["config"]["use_depth"] is False
    configs = summary["configs"]
    assert (configs["egopressdiff"], configs["baseline"], configs["model_overrides"]) == ("tiny", "baseline_tiny", [])
    assert "validation.every_steps=0" in configs["overrides"]
    # The realistic protocol by default: every variant trained and scored on perturbed meshes.
    assert "data.hands=perturbed" in configs["overrides"] and summary["eval_options"]["hands"] == "perturbed"
    assert json.loads((benchmark / "eval" / "full.json").read_text())["hands"] == "perturbed"
    # Held-out data: generated with its own seed, distinct from the training data's.
    assert summary["heldout"]["seed"] == 5000 and summary["heldout"]["sequences"] == 2
    # Its gestures as asked ('weak' names the weak-evidence ones), compared per group.
    assert summary["heldout"]["gestures"] == {"seq_00000": "drag", "seq_00001": "slow_press"}
    groups = summary["comparison"]["by_gesture_group"]
    assert {name: entry["gestures"] for name, entry in groups.items()} == {
        "default gestures": ["drag"], "weak-evidence gestures": ["slow_press"]}
    assert quality.synthetic_seed(summary["train_data"][0]) == 1
    comparison = summary["comparison"]
    assert "volumetric_iou_ratio_vs_baseline" in comparison and "no_depth" in comparison["relative_to_full"]
    assert set(comparison["goals"]) == set(quality.GOALS)
    assert comparison["goals"]["ablations_worse"] is None  # 2 held-out sequences: no interval
    table = (benchmark / "quality.md").read_text()
    assert "| `full` | EgoPressDiff |" in table and "| `baseline` |" in table and "--quick smoke run" in table
    assert "Vol IoU(EgoPressDiff) / Vol IoU(baseline)" in table and "hand meshes: perturbed" in table
    assert "- weak-evidence gestures (1 sequences: slow_press; 1 with a Vol IoU for both): per-sequence Vol IoU" in table


def test_rerun_reuses_runs_and_scores(benchmark, capsys):
    before = {p: p.stat().st_mtime for p in (benchmark / "eval").glob("*.json")}
    assert quality.main([*SMALL, "--out", str(benchmark)]) == 0
    output = capsys.readouterr().out
    assert output.count("reusing the finished run") == 3 and output.count("reusing the scores") == 3
    assert before == {p: p.stat().st_mtime for p in (benchmark / "eval").glob("*.json")}
    summary = json.loads((benchmark / "quality.json").read_text())
    assert all(result["training"]["reused"] for result in summary["results"].values())
    # Another step budget is another run: refused rather than silently mixed.
    assert quality.main([*SMALL, "--out", str(benchmark), "--train-steps", "3"]) == 2
    assert "holds a finished run of another config (optim.max_steps: 2 -> 3)" in capsys.readouterr().err


def test_given_checkpoints_are_checked_and_scored(benchmark, tmp_path, capsys):
    full = benchmark / "runs" / "full" / "model"
    heldout = benchmark / "data" / "heldout"
    common = ["--quick", "--no-train", "--data", str(heldout), "--steps", "2", "--no-progress", "--out", str(tmp_path)]
    assert quality.main([*common, "--checkpoint", f"baseline={full}"]) == 2
    error = capsys.readouterr().err
    assert "holds a model.kind='egopressdiff' model; the baseline variant needs 'bin_classifier'" in error
    assert quality.main([*common, "--checkpoint", f"no_depth={full}"]) == 2
    assert "has use_depth=True; the no_depth variant needs use_depth=False" in capsys.readouterr().err
    assert quality.main([*common, "--checkpoint", f"full={full}", "--variants", "full,baseline"]) == 0
    summary = json.loads((tmp_path / "quality.json").read_text())
    assert list(summary["results"]) == ["full"] and summary["skipped_variants"] == ["baseline"]
    assert summary["results"]["full"]["training"] is None


@pytest.mark.parametrize("arguments, message", [
    (["--variants", "full,gan"], "--variants must be a comma-separated subset of"),
    (["--checkpoint", "full"], "--checkpoint must be NAME=DIR"),
    (["--config", "my.yaml"], "--baseline-config is needed"),
    (["--train-steps", "0"], "--train-steps must be >= 1"),
])
def test_bad_arguments_are_refused(arguments, message, tmp_path, capsys):
    assert quality.main(["--quick", "--out", str(tmp_path), "--no-progress", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_heldout_data_must_not_share_the_training_seed(benchmark, tmp_path, capsys):
    train = benchmark / "data" / "train"
    assert quality.main([*SMALL, "--out", str(tmp_path), "--train-data", str(train), "--data", str(train)]) == 2
    assert "were generated with the same seed 1" in capsys.readouterr().err


def test_ratio_bootstrap_brackets_the_ratio_of_means():
    reference = {f"s{i}": {"volumetric_iou": 0.4 + 0.02 * i} for i in range(8)}
    better = {name: {"volumetric_iou": 1.5 * values["volumetric_iou"]} for name, values in reference.items()}
    interval = quality.ratio_bootstrap(better, reference)
    assert interval["ratio_of_means"] == pytest.approx(1.5) and interval["ci95"] == pytest.approx([1.5, 1.5])
    noisy = {name: {"volumetric_iou": values["volumetric_iou"] * (1.2 if i % 2 else 0.9)}
             for i, (name, values) in enumerate(reference.items())}
    low, high = quality.ratio_bootstrap(noisy, reference)["ci95"]
    assert low < quality.ratio_bootstrap(noisy, reference)["ratio_of_means"] < high and high - low > 0.05
    assert quality.ratio_bootstrap(dict(list(better.items())[:3]), reference) is None  # too few sequences


def test_comparison_per_gesture_group():
    per_sequence = lambda values: {f"s{i}": {"volumetric_iou": v} for i, v in enumerate(values)}  # noqa: E731
    metrics = {"volumetric_iou": 0.5, "contact_iou": 0.5, "mae_kpa": 0.1, "temporal_accuracy": 0.9}
    results = {"full": {"metrics": metrics, "per_sequence": per_sequence([0.6] * 5 + [0.4] * 5)},
               "baseline": {"metrics": metrics, "per_sequence": per_sequence([0.5] * 5 + [0.5] * 5)}}
    gestures = {f"s{i}": "drag" if i < 5 else "near_hover" for i in range(10)}
    groups = quality.compare(results, gestures)["by_gesture_group"]
    assert groups["default gestures"]["ratio_of_means"] == pytest.approx(1.2)
    assert groups["weak-evidence gestures"]["ratio_of_means"] == pytest.approx(0.8)
    assert groups["weak-evidence gestures"]["ratio_bootstrap"]["ci95"] == pytest.approx([0.8, 0.8])
    assert "by_gesture_group" not in quality.compare(results)  # no gestures known (other data)
    # A sequence without a Vol IoU (no pressure in truth or estimate) is left out of its group.
    results["full"]["per_sequence"]["s9"]["volumetric_iou"] = None
    weak = quality.compare(results, gestures)["by_gesture_group"]["weak-evidence gestures"]
    assert weak["sequences"] == 5 and weak["scored_sequences"] == 4 and weak["ratio_of_means"] == pytest.approx(0.8)


def test_per_factor_table_lines_up_every_variant_per_third():
    third = lambda low, high, iou, ratio: {"range": [low, high], "volumetric_iou": iou, "force_ratio": ratio}  # noqa: E731
    results = {
        "full": {"per_factor": {"camera_distance_m": [third(0.3, 0.4, 0.5, 1.1), third(0.45, 0.6, 0.4, 1.5),
                                                      third(0.7, 0.8, 0.2, 3.0)]}},
        "baseline": {"per_factor": {"camera_distance_m": [third(0.3, 0.4, 0.6, 0.9), third(0.45, 0.6, 0.5, None),
                                                          third(0.7, 0.8, 0.1, 0.5)]}},
    }
    lines = quality.per_factor_lines(results)
    assert "| `full` Vol IoU | `full` force | `baseline` Vol IoU | `baseline` force |" in lines[3]
    assert lines[5:] == ["| camera distance m | 0.3-0.4 | 0.500 | x1.10 | 0.600 | x0.90 |",
                         "| camera distance m | 0.45-0.6 | 0.400 | x1.50 | 0.500 | n/a |",
                         "| camera distance m | 0.7-0.8 | 0.200 | x3.00 | 0.100 | x0.50 |"]
    assert quality.per_factor_lines({"full": {"per_factor": {}}}) == []  # too few sequences for thirds


def test_paired_bootstrap_detects_a_consistent_drop():
    reference = {f"s{i}": {"volumetric_iou": 0.5 + 0.01 * i} for i in range(8)}
    worse = {f"s{i}": {"volumetric_iou": 0.4 + 0.01 * i + 0.005 * (i % 2)} for i in range(8)}
    paired = quality.paired_bootstrap(worse, reference)
    assert paired["worse"] and paired["ci95"][1] < 0 and paired["sequences"] == 8
    assert not quality.paired_bootstrap(reference, reference)["worse"]
    assert quality.paired_bootstrap(dict(list(worse.items())[:3]), reference) is None  # too few sequences


def test_scores_written_before_an_eval_option_existed_are_reused(tmp_path):
    """A report that lacks an option EvalOptions gained later was scored with its default."""
    import types

    from egopress_core.evaluation import EvalOptions
    from egopress_core.model.checkpoint import WEIGHTS_NAME

    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    (checkpoint / WEIGHTS_NAME).write_bytes(b"weights")
    # The flat options of a report written before EvalOptions grouped them by concern, and before
    # it had precision and window_batch_size.
    flat = {"num_inference_steps": 10, "scheduler": "ddim", "guidance_scale": 1.0, "stride": None, "seed": 0,
            "contact_threshold_kpa": 1.0, "max_sequences": None, "crop": "hand", "device": "auto",
            "window_batch_size": 1, "precision": "fp32"}
    older = {key: value for key, value in flat.items() if key not in ("precision", "window_batch_size")}
    path = tmp_path / "eval.json"
    settings = types.SimpleNamespace(eval_options=EvalOptions(), figures=False)
    path.write_text(json.dumps({"checkpoint": str(checkpoint), "data": "heldout", "options": older}))
    assert quality.cached_report(path, checkpoint, "heldout", settings) is not None
    path.write_text(json.dumps({"checkpoint": str(checkpoint), "data": "heldout", "options": {**older, "precision": "bf16"}}))
    assert quality.cached_report(path, checkpoint, "heldout", settings) is None


def test_scores_of_nested_eval_options_are_reused_when_they_match(tmp_path):
    """Reports with today's nested options: reused when equal (options added since count as their
    defaults), rescored when any option differs."""
    import dataclasses
    import types

    from egopress_core.evaluation import EvalOptions
    from egopress_core.model.checkpoint import WEIGHTS_NAME

    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    (checkpoint / WEIGHTS_NAME).write_bytes(b"weights")
    options = dataclasses.asdict(EvalOptions())
    settings = types.SimpleNamespace(eval_options=EvalOptions(), figures=False)
    path = tmp_path / "eval.json"

    def cached(saved) -> bool:
        path.write_text(json.dumps({"checkpoint": str(checkpoint), "data": "heldout", "options": saved}))
        return quality.cached_report(path, checkpoint, "heldout", settings) is not None

    assert cached(options)
    without_compile = {**options, "runtime": {k: v for k, v in options["runtime"].items() if k != "compile_mode"}}
    assert cached(without_compile)
    assert not cached({**options, "sampling": {**options["sampling"], "scheduler": "euler"}})
    assert not cached({**options, "contact": {"contact_threshold_kpa": 2.0}})
    assert not cached({**options, "unknown_option": 1})
