"""`egopress bench` smoke run on the tiny untrained model, and the benchmark's building blocks.

Speed itself is never asserted (benchmarks measure it); these tests check that every figure the
report promises is there, consistent with the others, and written where asked.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from egopress_core.bench import (
    BEFORE_NAME,
    PREVIOUS_LIVE_DEFAULTS,
    BenchOptions,
    format_report,
    message_payload,
    quality_settings,
    quick_options,
    stream_settings,
)
from egopress_core.cli.main import main
from egopress_core.errors import ConfigError
from egopress_core.options import LIVE_SAMPLING

STAGES = ["hand_mesh", "preprocess", "conditions", "encode_frames", "encode_window", "denoise", "decode",
          "inference_other", "contact", "message_payload"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One `egopress bench --quick` run of the tiny preset: (report, printed output, report path)."""
    root = tmp_path_factory.mktemp("bench")
    out = root / "reports" / "bench.json"
    argv = ["bench", "--config", "tiny", "--quick", "--device", "cpu", "--threads", "1",
            "--schedulers", "ddim,dpmsolver++", "--steps", "2", "--headline", "dpmsolver++:2", "--reference-steps", "3",
            "--stream-frames", "2", "--quality-frames", "6",
            "--streaming-reference", "--window-batch-sizes", "1,2",
            "--image-size", "96", "128", "--data", str(root / "held_out"), "--out", str(out), "--no-progress"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    assert [path.name for path in out.parent.iterdir()] == ["bench.json"]  # no temporary file left
    return json.loads(out.read_text()), printed.getvalue(), out


@pytest.mark.slow  # the `smoke` run (~17 s once per module)
def test_report_names_machine_model_and_yardstick(smoke):
    report = smoke[0]
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["torch_threads"] == 1
    assert report["machine"]["device"] == "cpu"
    assert report["model"]["trained"] is False and "tiny" in report["model"]["source"]
    unet = report["unet_forward_s"]
    assert unet["n"] == 3 and 0 < unet["min"] <= unet["median"] and unet["cpu_median"] > 0
    assert report["memory"]["rss_peak_mb"] > 0


@pytest.mark.slow  # the `smoke` run (~17 s once per module)
def test_sampling_rows_cover_the_grid_and_agree(smoke):
    report = smoke[0]
    rows = {(row["scheduler"], row["steps"]): row for row in report["sampling"]}
    assert set(rows) == {("ddim", 2), ("dpmsolver++", 2)}
    for row in rows.values():
        assert row["window_s"] == pytest.approx(row["encode_s"] + row["denoise_s"] + row["decode_s"])
        assert row["step_s"] == pytest.approx(row["denoise_s"] / 2)
        # Ratios are to the U-Net forward re-timed right before the row.
        assert row["yardstick_s"] > 0
        assert row["step_in_unet_forwards"] == pytest.approx(row["step_s"] / row["yardstick_s"])
        assert row["step_cpu_in_unet_forwards"] == pytest.approx(row["step_cpu_s"] / row["yardstick_cpu_s"])
        assert row["frames_per_s"] == pytest.approx(report["model"]["num_frames"] / row["window_s"])


@pytest.mark.slow  # the `smoke` run (~17 s once per module)
def test_streaming_rows_break_each_frame_down(smoke):
    report = smoke[0]
    rows = {row["name"]: row for row in report["streaming"]}
    scheduler, steps, strength = PREVIOUS_LIVE_DEFAULTS
    assert set(rows) == {"ddim 2", "dpmsolver++ 2", BEFORE_NAME, "headline without warm start",
                         "headline without feature cache"}
    assert report["headline"] == "dpmsolver++ 2"
    before = rows[BEFORE_NAME]
    assert (before["scheduler"], before["steps"], before["warm_start_strength"]) == (scheduler, steps, strength)
    assert rows["headline without warm start"]["unet_passes_per_frame"] == 2
    assert rows["dpmsolver++ 2"]["unet_passes_per_frame"] == 1  # round(2 * 0.25), at least 1
    assert rows["headline without feature cache"]["cache_frame_features"] is False
    for row in rows.values():
        assert list(row["stages_s"]) == STAGES and row["frames_measured"] == 2
        assert all(value >= 0 for value in row["stages_s"].values())
        # The stages account for the frame (timer overhead aside) and the shares for the whole.
        assert sum(row["stages_s"].values()) == pytest.approx(row["total_s"]["mean"], rel=0.05)
        assert sum(row["shares"].values()) == pytest.approx(1.0, rel=0.05)
        assert row["end_to_end_fps"] == pytest.approx(1.0 / row["total_s"]["mean"])
        assert row["frame_in_unet_forwards"] == pytest.approx(row["total_s"]["mean"] / row["yardstick_s"])
        assert row["frame_cpu_in_unet_forwards"] == pytest.approx(row["cpu_s"] / row["yardstick_cpu_s"])
        assert row["model_fps"] > row["end_to_end_fps"] and row["rss_mb"] > 0 and row["cpu_s"] > 0


@pytest.mark.slow  # the `smoke` run (~17 s once per module)
def test_quality_compares_fast_settings_with_the_reference(smoke):
    report = smoke[0]
    quality = report["quality"]
    assert "meaningless" in quality["note"]
    assert quality["frames"] == 6 and len(quality["sequences"]) == 1
    assert (quality["reference"]["scheduler"], quality["reference"]["steps"]) == ("ddim", 3)
    modes = [(row["mode"], row["scheduler"], row["steps"], row["precision"]) for row in quality["settings"]]
    assert modes == [("offline", "ddim", 2, "fp32"), ("offline", "dpmsolver++", 2, "fp32"),
                     ("streaming", "ddim", 3, "fp32"), ("streaming", "dpmsolver++", 2, "fp32")]
    causal, fast = quality["settings"][2:]
    assert causal["warm_start_strength"] is None and "vol_iou_ratio_to_streaming_reference" not in causal
    if causal["volumetric_iou"]:
        assert fast["vol_iou_ratio_to_streaming_reference"] == pytest.approx(
            fast["volumetric_iou"] / causal["volumetric_iou"])
    reference_iou = quality["reference"]["volumetric_iou"]
    for row in quality["settings"]:
        assert 0.0 <= row["volumetric_iou"] <= 1.0 and row["mae_kpa"] >= 0 and row["frames_per_s"] > 0
        if reference_iou:
            assert row["vol_iou_ratio"] == pytest.approx(row["volumetric_iou"] / reference_iou)
            assert row["within_5_percent"] == (row["vol_iou_ratio"] >= 0.95)


@pytest.mark.slow  # the `smoke` run (~17 s once per module)
def test_offline_throughput_by_window_batch(smoke):
    rows = smoke[0]["offline_window_batches"]
    assert [row["window_batch_size"] for row in rows] == [1, 2]
    for row in rows:
        assert (row["scheduler"], row["steps"]) == ("ddim", 10)  # egopress eval's and label-bag's default
        assert row["frames"] == 6 and row["frames_per_s"] == pytest.approx(6 / row["seconds"])
        assert row["speedup_vs_one_window"] == pytest.approx(rows[0]["seconds"] / row["seconds"])
    assert rows[0]["speedup_vs_one_window"] == 1.0


@pytest.mark.slow  # the `smoke` run (~17 s once per module)
def test_annotated_hand_meshes_time_the_pressure_node_alone(smoke, tmp_path, monkeypatch):
    import sys

    # Given data, the ground_truth backend needs no renderer: open3d is not imported at all.
    monkeypatch.setitem(sys.modules, "open3d", None)
    data = Path(smoke[2]).parent.parent / "held_out"
    out = tmp_path / "gt.json"
    argv = ["bench", "--config", "tiny", "--quick", "--threads", "1", "--schedulers", "ddim", "--steps", "2",
            "--headline", "ddim:2", "--stream-frames", "1", "--no-quality", "--no-profile", "--hand-backend",
            "ground_truth", "--data", str(data), "--out", str(out), "--no-progress"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["options"]["hand_backend"] == "ground_truth"
    assert "hand mesh from ground_truth" in printed.getvalue()
    assert all(row["frames_measured"] == 1 for row in report["streaming"])


@pytest.mark.slow  # the `smoke` run (~17 s once per module)
def test_printed_tables(smoke):
    report, printed, out = smoke
    assert printed == f"{format_report(report)}\nreport: {out}\n"
    for heading in ("machine:", "bare U-Net forward", "window from noise", "streaming, per new frame",
                    "components of one streaming frame (dpmsolver++ 2)", "offline throughput", "quality on 1 held-out"):
        assert heading in printed


def test_options_are_validated():
    with pytest.raises(ConfigError, match="exactly one"):
        BenchOptions()
    with pytest.raises(ConfigError, match="exactly one"):
        BenchOptions(checkpoint="x", config="tiny")
    with pytest.raises(ConfigError, match="config must be one of"):
        BenchOptions(config="huge")
    with pytest.raises(ConfigError, match="scheduler must be one of"):
        BenchOptions(config="tiny", schedulers=("ddim", "heun"))
    with pytest.raises(ConfigError, match="steps"):
        BenchOptions(config="tiny", steps=(4, 0))
    with pytest.raises(ConfigError, match="precision"):
        BenchOptions(config="tiny", precisions=("fp8",))
    with pytest.raises(ConfigError, match="window_batch_sizes"):
        BenchOptions(config="tiny", window_batch_sizes=(1, 0))
    with pytest.raises(ConfigError, match="hand_backend must be one of"):
        BenchOptions(config="tiny", hand_backend="mediapipe")
    with pytest.raises(ConfigError, match="warm_start_strength"):
        BenchOptions(config="tiny", warm_start_strength=0.0)
    assert quick_options(config="tiny").steps == (4, 8)


def test_settings_grid_and_device_guards():
    import torch

    options = BenchOptions(config="tiny", schedulers=("euler", "ddim"), steps=(8, 4), headline=("euler", 4),
                           precisions=("fp32", "bf16"))
    names = [setting.name for setting in stream_settings(options, torch.device("cpu"))]
    assert names[:5] == ["euler 8", "euler 4", "ddim 8", "ddim 4", BEFORE_NAME]
    assert "headline bf16" in names and "headline channels-last" not in names  # CPU: opt-in only
    assert options.headline_name == "euler 4"
    # A headline outside the grid gets its own row.
    outside = stream_settings(BenchOptions(config="tiny", schedulers=("ddim",), steps=(4,)), torch.device("cpu"))
    live = (LIVE_SAMPLING.scheduler, LIVE_SAMPLING.num_inference_steps, LIVE_SAMPLING.warm_start_strength)
    assert [s.name for s in outside][:2] == ["ddim 4", f"{live[0]} {live[1]}"]
    with pytest.raises(ConfigError, match="headline"):
        BenchOptions(config="tiny", headline=("dpmsolver++",))
    with pytest.raises(ConfigError, match="fp16"):
        stream_settings(BenchOptions(config="tiny", precisions=("fp16",)), torch.device("cpu"))
    forced = BenchOptions(config="tiny", channels_last=True, compile=True, compile_mode="reduce-overhead")
    variants = {s.name: s for s in stream_settings(forced, torch.device("cpu"))}
    assert variants["headline channels-last"].channels_last
    assert variants["headline torch.compile (reduce-overhead)"].compile_mode == "reduce-overhead"
    with pytest.raises(ConfigError, match="compile_mode"):
        BenchOptions(config="tiny", compile_mode="fast")
    # The reference setting is not scored against itself.
    settings = quality_settings(BenchOptions(config="tiny", schedulers=("ddim",), steps=(4, 25)))
    assert settings == [("offline", "ddim", 4, None, "fp32"), ("streaming", *live, "fp32")]
    # Each half precision that is timed is scored too, on the headline only.
    half = quality_settings(BenchOptions(config="tiny", schedulers=("ddim",), steps=(4,), precisions=("fp32", "bf16"),
                                         quality_streaming_steps=(2, 6)))
    assert [s for s in half if s[0] == "streaming"] == [("streaming", live[0], 2, live[2], "fp32"),
                                                         ("streaming", live[0], 6, live[2], "fp32"),
                                                         ("streaming", *live, "bf16")]


def test_message_payload_sizes():
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(50, 3))
    faces = rng.integers(0, 50, size=(30, 3))
    pressure = rng.uniform(0, 20, size=50)
    payload = message_payload(rng.uniform(0, 20, size=(16, 16)), np.ones((16, 16), bool), pressure, pressure > 1.0,
                              vertices, faces)
    assert len(payload["uv_map"]) == 16 * 16 * 4
    assert len(payload["uv_image"]) == 16 * 16 * 3
    assert len(payload["point_cloud"]) == 50 * 17  # x, y, z, pressure float32 + contact uint8
    assert len(payload["marker_points"]) == 30 * 3 * 3 * 8
    assert len(payload["marker_colours"]) == 30 * 3 * 3 * 8


def test_a_uv_geometry_checkpoint_is_benchmarked_with_its_geometry(tmp_path):
    """Offline and streaming quality rows feed the model the UV-aligned geometry it was trained on."""
    import torch

    from egopress_core.data.sources import hand_uv_mask
    from egopress_core.pipeline import UV_MASK_FILE
    from egopress_core.model import EgoPressDiff, tiny_config

    checkpoint = tmp_path / "geometry"
    mask = hand_uv_mask((16, 16), "right")
    torch.manual_seed(0)
    EgoPressDiff(tiny_config(uv_layout=mask.layout_id, use_uv_geometry=True)).save_pretrained(checkpoint)
    mask.save(checkpoint / UV_MASK_FILE)
    out = tmp_path / "bench.json"
    argv = ["bench", "--checkpoint", str(checkpoint), "--quick", "--threads", "1", "--schedulers", "dpmsolver++",
            "--steps", "1", "--headline", "dpmsolver++:1", "--reference-steps", "2", "--stream-frames", "1",
            "--quality-frames", "4", "--image-size", "96", "128", "--data", str(tmp_path / "held_out"), "--out", str(out),
            "--no-progress"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    modes = {row["mode"] for row in json.loads(out.read_text())["quality"]["settings"]}
    assert {"offline", "streaming"} <= modes


def test_live_sizes_are_named_once_and_quick_plays_the_demos_held_out_set():
    """The help texts of `bench --live` and ros_latency.py state LiveBenchOptions' sizes, and
    --quick plays exactly what `egopress demo` generates (same count, length, seed, image size)."""
    import argparse
    import dataclasses

    from egopress_core.bench.live import LiveBenchOptions, quick_live_options
    from egopress_core.cli import demo
    from egopress_core.cli.bench import LIVE_SIZE_HELP
    from egopress_core.data.synthetic import DEMO_IMAGE_SIZE, HELD_OUT_SEED

    default, quick = LiveBenchOptions(), quick_live_options()
    assert LIVE_SIZE_HELP == {name: f"default {getattr(default, name)}; --quick {getattr(quick, name)}"
                              for name in ("sequences", "frames")}
    subparsers = argparse.ArgumentParser().add_subparsers()
    demo.register(subparsers)
    demo_args = subparsers.choices["demo"].parse_args([])
    assert (demo_args.sequences, demo_args.frames, demo_args.seed) == (quick.sequences, quick.frames, HELD_OUT_SEED)
    image_size = next(field.default for field in dataclasses.fields(BenchOptions) if field.name == "image_size")
    assert image_size == DEMO_IMAGE_SIZE


def test_live_bench_plays_frames_at_camera_rate_into_the_stream(tiny_checkpoint, synthetic):
    """`egopress bench --live`'s measurement on the tiny model: every frame played is estimated or
    counted as having left the window, in order, without window restarts, scored against the
    offline estimate of the same frames."""
    from egopress_core.bench.live import LiveBenchOptions, format_live, run_live
    from egopress_core.data.sources import open_data_source
    from egopress_core.options import RuntimeOptions
    from egopress_core.pipeline import EgoPressPipeline

    sequences = open_data_source(synthetic).sequences()
    pipeline = EgoPressPipeline.from_checkpoint(tiny_checkpoint, runtime=RuntimeOptions(device="cpu"),
                                                uv_mask=_mask_of(sequences, tiny_checkpoint))
    live = run_live(pipeline, sequences, LiveBenchOptions(camera_fps=60.0, sequences=2, frames=12), progress=False)
    for key in ("camera_fps", "output_fps", "latency_p50_ms", "latency_p95_ms", "window_resets",
                "vol_iou_ratio_to_offline"):
        assert key in live, key
    assert live["frames_played"] == 24 and live["window_resets"] == 0
    assert live["frames_estimated"] + live["frames_skipped"] == live["frames_played"]
    assert live["output_fps"] > 0 and live["latency_p95_ms"] >= live["latency_p50_ms"] > 0
    assert live["scored_frames"] > 0 and "Vol IoU streamed" in format_live(live)


def test_live_bench_runs_the_per_frame_baseline_and_the_sampler_timings_refuse_it(synthetic, tmp_path):
    """`bench --live` takes either model kind (its default is the package's default, the per-frame
    baseline) and reports how far the streamed maps are from the offline ones; the sampler
    timings need EgoPressDiff and say so."""
    import torch

    from egopress_core.assets import DEFAULT_CHECKPOINT, EGOPRESSDIFF_CHECKPOINT
    from egopress_core.bench.live import LiveBenchOptions, format_live, run_live
    from egopress_core.bench.setup import load_pipeline
    from egopress_core.cli.bench import options_from_args
    from egopress_core.cli.main import build_parser
    from egopress_core.data.sources import open_data_source, resolve_hand_uv_mask
    from egopress_core.errors import CheckpointError
    from egopress_core.model.config import tiny_config
    from egopress_core.options import RuntimeOptions
    from egopress_core.pipeline import EgoPressPipeline
    from tiny_checkpoints import save_tiny_baseline_checkpoint

    sequences = open_data_source(synthetic).sequences()
    save_tiny_baseline_checkpoint(tmp_path / "baseline", resolve_hand_uv_mask(sequences, tuple(tiny_config().uv_size)))

    pipeline = EgoPressPipeline.from_checkpoint(tmp_path / "baseline", runtime=RuntimeOptions(device="cpu"))
    live = run_live(pipeline, sequences, LiveBenchOptions(camera_fps=60.0, sequences=1, frames=12), progress=False)
    assert live["frames_played"] == 12 and live["window_resets"] == 0
    assert live["frames_estimated"] + live["frames_skipped"] == 12 and live["scored_frames"] > 0
    assert live["sampling"] is None and live["offline_sampling"] is None  # it has no sampler
    assert live["mae_to_offline_kpa"] >= 0 and "streamed - offline" in format_live(live)

    with pytest.raises(CheckpointError, match="no sampler to time"):
        load_pipeline(BenchOptions(checkpoint=str(tmp_path / "baseline")), torch.device("cpu"), video_model_only=True)
    assert not load_pipeline(BenchOptions(checkpoint=str(tmp_path / "baseline")), torch.device("cpu"),
                             video_model_only=False)[0].is_video_model
    parser = build_parser()
    assert options_from_args(parser.parse_args(["bench", "--live"])).checkpoint == str(DEFAULT_CHECKPOINT)
    assert options_from_args(parser.parse_args(["bench"])).checkpoint == str(EGOPRESSDIFF_CHECKPOINT)


def test_live_section_of_the_offline_estimates_themselves_agrees_exactly(tiny_checkpoint, synthetic):
    """Streamed maps equal to the offline ones score a ratio of 1 and no difference."""
    from egopress_core.bench.live import LiveBenchOptions, live_section
    from egopress_core.data.sources import open_data_source
    from egopress_core.options import RuntimeOptions
    from egopress_core.pipeline import EgoPressPipeline

    sequences = open_data_source(synthetic).sequences()[:1]
    pipeline = EgoPressPipeline.from_checkpoint(tiny_checkpoint, runtime=RuntimeOptions(device="cpu"),
                                                uv_mask=_mask_of(sequences, tiny_checkpoint))
    offline = pipeline(sequences[0]).uv_pressure_kpa[0]
    shifted = offline + 0.5  # a constant offset: the difference the section must report
    rows = [{"maps": {index: uv_map for index, uv_map in enumerate(maps)}, "latencies_s": np.full(len(maps), 0.1),
             "elapsed_s": 1.0, "camera_fps": 30.0, "frames_played": len(maps), "frames_estimated": len(maps),
             "frames_skipped": 0, "window_resets": 0} for maps in (offline, shifted)]
    same = live_section(pipeline, sequences, rows[:1], LiveBenchOptions(sequences=1, frames=len(offline)))
    assert same["vol_iou_ratio_to_offline"] == pytest.approx(1.0) and same["mae_to_offline_kpa"] == pytest.approx(0.0)
    apart = live_section(pipeline, sequences, rows[1:], LiveBenchOptions(sequences=1, frames=len(offline)))
    assert apart["mae_to_offline_kpa"] == pytest.approx(0.5, abs=1e-4)


def _mask_of(sequences, checkpoint):
    from egopress_core.data.sources import resolve_hand_uv_mask
    from egopress_core.model.egopressdiff import EgoPressDiff

    return resolve_hand_uv_mask(sequences, tuple(EgoPressDiff.load_config(checkpoint).uv_size))


class _SlowHandStage:
    """A hand stage that takes 50 ms a frame (a camera at 60 Hz delivers three meanwhile) and
    finds no hand in every fourth frame it is given; otherwise it returns the annotation's mesh."""

    def __init__(self, sequence):
        self.sequence, self.calls = sequence, 0

    def reset(self):
        pass

    def estimate(self, frame):
        import time
        from types import SimpleNamespace

        time.sleep(0.05)
        self.calls += 1
        record = self.sequence.frame(int(round(frame.stamp * 60.0)))
        return None if self.calls % 4 == 0 else SimpleNamespace(has_hand=True, vertices=record.vertices, joints=record.joints)


def test_live_bench_with_a_hand_stage_drops_what_it_cannot_keep_up_with(tiny_checkpoint, synthetic):
    """With the hand stage in the camera thread (``--live-hands estimated``), frames that arrive
    while it runs are dropped, latest only, and frames without a hand are not added: every frame
    is accounted for, and latency counts from the frame's capture."""
    from egopress_core.bench.live import LiveBenchOptions, play_sequence, run_live
    from egopress_core.data.sources import open_data_source
    from egopress_core.options import RuntimeOptions
    from egopress_core.pipeline import EgoPressPipeline

    sequences = open_data_source(synthetic).sequences()
    pipeline = EgoPressPipeline.from_checkpoint(tiny_checkpoint, runtime=RuntimeOptions(device="cpu"),
                                                uv_mask=_mask_of(sequences, tiny_checkpoint))
    options = LiveBenchOptions(camera_fps=60.0, sequences=1, frames=16, hands="estimated")
    stage = _SlowHandStage(sequences[0])
    row = play_sequence(pipeline, sequences[0], options, estimator=stage)
    assert row["frames_dropped_by_hand_stage"] >= 6 and row["frames_without_hand"] >= 1
    assert row["frames_played"] + row["frames_dropped_by_hand_stage"] + row["frames_without_hand"] == 16
    assert row["frames_played"] == stage.calls - row["frames_without_hand"]
    assert row["camera_fps"] > 40.0  # the camera kept its rate; the hand stage did not
    assert min(row["latencies_s"]) > 0.05  # the hand stage's time is part of every estimate's latency
    assert sorted(row["maps"]) == list(row["maps"])  # estimates in order
    with pytest.raises(ConfigError, match="LiveBenchOptions.hands must be one of"):
        LiveBenchOptions(hands="fitted")

    perturbed = run_live(pipeline, sequences, LiveBenchOptions(camera_fps=60.0, sequences=1, frames=8, hands="perturbed"),
                         progress=False)
    assert perturbed["hands"] == "perturbed" and perturbed["frames_played"] == 8 and perturbed["scored_frames"] > 0


@pytest.mark.slow  # ~10 s: 640 x 480 renders, MediaPipe live and offline
def test_live_bench_runs_the_camera_only_path(tiny_checkpoint, tmp_path):
    """``--live-hands estimated`` end to end: MediaPipe, lifting and the fit in the camera thread
    on renders it finds the hand in, the offline reference on the same path's meshes."""
    from egopress_core.bench.live import LiveBenchOptions, run_live
    from egopress_core.data.sources import open_data_source
    from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset
    from egopress_core.options import RuntimeOptions
    from egopress_core.pipeline import EgoPressPipeline

    generate_dataset(SynthConfig(sequences=1, frames=6, image_sizes=((480, 640),), gestures=("palm_press",), seed=3),
                     tmp_path, progress=False)
    sequences = open_data_source(tmp_path).sequences()
    pipeline = EgoPressPipeline.from_checkpoint(tiny_checkpoint, runtime=RuntimeOptions(device="cpu"),
                                                uv_mask=_mask_of(sequences, tiny_checkpoint))
    live = run_live(pipeline, sequences, LiveBenchOptions(camera_fps=10.0, sequences=1, frames=6, hands="estimated"),
                    progress=False)
    assert live["hands"] == "estimated" and live["hand_stage_p50_ms"] > 0
    assert live["frames_played"] + live["frames_dropped_by_hand_stage"] + live["frames_without_hand"] == 6
    assert live["frames_played"] >= 3 and live["scored_frames"] > 0
