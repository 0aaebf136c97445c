"""The pipeline and its live stream (egopress_core.pipeline, .stream, .preprocessing, .contact):
per-frame preprocessing equals the training windows', crop tracking, contact summaries, and the
stream's bookkeeping (time going backwards, gaps, hand lost, bad input, device moves) over a tiny
EgoPressDiff checkpoint."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from fixtures.fake_source import make_fake_sequence

from egopress_core.contact import summarize_contact
from egopress_core.data.windows import ClipWindowDataset
from egopress_core.errors import CheckpointError, ConfigError, DataError
from egopress_core.options import LIVE_SAMPLING, ContactOptions, CropOptions, RuntimeOptions, StreamOptions
from egopress_core.pipeline import UV_MASK_FILE, EgoPressPipeline
from egopress_core.preprocessing import HandCropTracker, crop_box, preprocess_frame, project_edge_coordinates
from egopress_core.runtime import resolve_device
from egopress_core.stream import ResetCause

IMAGE_HW = (96, 128)


# ----------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("crop", ["hand", "full"])
@pytest.mark.parametrize("image_size", [(32, 32), (24, 40)])
def test_single_frame_preprocessing_equals_training_windows(crop, image_size):
    """A live frame reaches the model exactly as the same frame would in a one-frame window."""
    sequence = make_fake_sequence("live", num_frames=3, image_hw=(48, 64), hand_offset_px=(9.0, -5.0))
    dataset = ClipWindowDataset([sequence], window=1, stride=1, image_size=image_size, uv_size=(8, 8), crop=crop)
    for index in range(3):
        record = sequence.frame(index)
        points = project_edge_coordinates(record.vertices, record.intrinsics) if crop == "hand" else None
        box = crop_box(record.rgb.shape[:2], image_size, points, hand_margin=0.3, min_crop_fraction=0.1)
        inputs = preprocess_frame(record.rgb, record.depth_m, record.intrinsics, box, image_size)
        window = dataset[index]
        assert torch.equal(inputs.rgb, window["rgb"][0])
        assert torch.equal(inputs.depth_m, window["depth_m"][0])
        torch.testing.assert_close(inputs.intrinsics, window["intrinsics"][0])


def test_crop_box_is_clamped_and_keeps_the_model_aspect():
    points = np.array([[60.0, 40.0], [70.0, 52.0]])
    x0, y0, width, height = crop_box(IMAGE_HW, (32, 64), points, hand_margin=0.5, min_crop_fraction=0.1)
    assert width == 2 * height  # model aspect 2:1
    assert (x0 + width / 2, y0 + height / 2) == pytest.approx((65.0, 46.0), abs=1.0)
    # A tiny hand still gets min_crop_fraction of the short side.
    _, _, width, height = crop_box(IMAGE_HW, (32, 32), np.array([[10.0, 10.0], [10.5, 10.5]]), 0.3, 0.25)
    assert height == width == round(0.25 * 96)


def _square(centre, side):
    half = side / 2
    return np.array([[centre[0] - half, centre[1] - half], [centre[0] + half, centre[1] + half]])


def test_crop_tracker_holds_its_box_until_the_hand_leaves_or_shrinks():
    tracker = HandCropTracker((32, 32), CropOptions(hand_margin=0.3, min_crop_fraction=0.0))
    first = tracker.update(IMAGE_HW, _square((64, 48), 20))
    # Small motion inside the margin: same box.
    assert tracker.update(IMAGE_HW, _square((66, 47), 20)) == first
    # Moving by more than half the margin: re-centred.
    moved = tracker.update(IMAGE_HW, _square((75, 48), 20))
    assert moved != first and moved[0] + moved[2] / 2 == pytest.approx(75, abs=1)
    # Hand much smaller (moved away): a tighter box.
    smaller = tracker.update(IMAGE_HW, _square((75, 48), 8))
    assert smaller[2] < moved[2] / 1.5
    # Another image size always re-crops; no hand keeps the last box.
    assert tracker.update((48, 64), _square((20, 20), 8)) != smaller
    held = tracker.box
    assert tracker.update((48, 64), None) == held
    # Without holding, every frame gets its own box.
    free = HandCropTracker((32, 32), CropOptions(hold_crop=False, min_crop_fraction=0.0))
    assert free.update(IMAGE_HW, _square((64, 48), 20)) != free.update(IMAGE_HW, _square((66, 47), 20))
    full = HandCropTracker((32, 32), CropOptions(crop="full"))
    assert full.update(IMAGE_HW, _square((10, 10), 5)) == crop_box(IMAGE_HW, (32, 32))


def test_live_options_validate():
    with pytest.raises(ConfigError, match="crop must be one of"):
        CropOptions(crop="box")
    with pytest.raises(ConfigError, match="max_gap_s"):
        StreamOptions(max_gap_s=0.0)
    with pytest.raises(ConfigError, match="contact_threshold_kpa"):
        ContactOptions(contact_threshold_kpa=float("nan"))


# ----------------------------------------------------------------------------- contact


def test_contact_summary_force_area_and_centre_of_pressure():
    vertices = np.array([[0.0, 0.0, 0.5], [0.02, 0.0, 0.5], [0.0, 0.04, 0.5], [1.0, 1.0, 1.0]])
    area = np.array([1e-4, 2e-4, 1e-4, 5e-4])
    pressure = np.array([10.0, 5.0, 0.5, -3.0])  # kPa; the last is a least-squares undershoot
    summary = summarize_contact(pressure, vertices, area, contact_threshold_kpa=1.0)
    assert summary.vertex_contact.tolist() == [True, True, False, False]
    assert summary.in_contact
    assert summary.vertex_pressure_kpa.min() == 0.0 and summary.vertex_pressure_kpa.dtype == np.float32
    assert summary.contact_area_m2 == pytest.approx(3e-4)
    # Total force counts sub-threshold pressure too: (10*1 + 5*2 + 0.5*1) kPa * 1e-4 m^2.
    assert summary.total_force_n == pytest.approx((10 + 10 + 0.5) * 1000 * 1e-4)
    # Force-weighted centre of the contact vertices: forces 1 N and 1 N.
    np.testing.assert_allclose(summary.center_of_pressure, [0.01, 0.0, 0.5])

    none = summarize_contact(np.zeros(4), vertices, area)
    assert not none.in_contact and none.contact_area_m2 == 0.0 and none.total_force_n == 0.0
    assert np.isnan(none.center_of_pressure).all()


def test_contact_summary_rejects_bad_input():
    vertices = np.zeros((3, 3))
    with pytest.raises(DataError, match="vertices must have shape"):
        summarize_contact(np.zeros(4), vertices, np.ones(4))
    with pytest.raises(DataError, match="vertex_pressure_kpa holds NaN"):
        summarize_contact(np.array([0.0, np.nan, 1.0]), vertices, np.ones(3))
    with pytest.raises(DataError, match="vertex_area_m2 must be >= 0"):
        summarize_contact(np.zeros(3), vertices, -np.ones(3))
    with pytest.raises(ConfigError, match="contact_threshold_kpa"):
        summarize_contact(np.zeros(3), vertices, np.ones(3), contact_threshold_kpa=-1.0)


# ----------------------------------------------------------------------------- live estimator


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    """A tiny EgoPressDiff on the bundled right hand's UV layout, saved as training does (the
    session's, test/conftest.py)."""
    return tiny_checkpoint


@pytest.fixture(scope="module")
def scene():
    """The bundled right hand, flat, 0.4 m in front of a 128x96 camera, over a table plane."""
    from egopress_core.hand.hand_model import load_hand_model

    hand = load_hand_model("right")
    with torch.no_grad():
        rest = hand.rest()
    vertices = rest.vertices[0].numpy()
    offset = np.array([0.0, 0.0, 0.4]) - vertices.mean(axis=0)
    intrinsics = np.array([[110.0, 0.0, 63.5], [0.0, 110.0, 47.5], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, size=(*IMAGE_HW, 3), dtype=np.uint8)
    depth = np.full(IMAGE_HW, 0.45, dtype=np.float32)
    depth[:8] = np.nan  # no readings (REP 118): holes
    return {
        "rgb": rgb, "depth_m": depth, "intrinsics": intrinsics,
        "vertices": (vertices + offset).astype(np.float32), "joints": (rest.joints[0].numpy() + offset).astype(np.float32),
        "num_vertices": hand.num_vertices,
    }


def _stream(checkpoint, hand_side=None, stream_options=None, runtime=None, **sampling):
    """A stream of ``checkpoint`` on the CPU with the live defaults changed by ``sampling``."""
    pipeline = EgoPressPipeline.from_checkpoint(checkpoint, runtime=runtime or RuntimeOptions(device="cpu"),
                                                hand_side=hand_side)
    return pipeline.stream(dataclasses.replace(LIVE_SAMPLING, **sampling), stream_options)


def _push(stream, scene, stamp, **changes):
    frame = {key: scene[key] for key in ("rgb", "depth_m", "intrinsics", "vertices", "joints")}
    frame.update(changes)
    return stream.push(frame["rgb"], frame["depth_m"], frame["intrinsics"], stamp, frame["vertices"], frame["joints"])


def test_stream_outputs_pressure_and_contact(checkpoint, scene):
    stream = _stream(checkpoint, hand_side="right", num_inference_steps=2, warm_start_strength=0.5)
    pipeline = stream.pipeline
    assert stream.window_length == 4 and pipeline.hand_side == "right"
    assert pipeline.uv_layout_id.startswith("egopress_hand_v1_uv:16x16:")
    mask = pipeline.uv_mask.mask
    for index in range(3):
        estimate = _push(stream, scene, 10.0 + index / 30)
        assert estimate.uv_pressure_kpa.shape == (16, 16) and estimate.uv_pressure_kpa.dtype == np.float32
        assert estimate.uv_pressure_kpa.min() >= 0 and not estimate.uv_pressure_kpa[~mask].any()
        assert estimate.window_frames == index + 1
        contact = estimate.contact
        assert contact.vertex_pressure_kpa.shape == (scene["num_vertices"],)
        assert contact.vertex_pressure_kpa.min() >= 0
        np.testing.assert_array_equal(contact.vertex_contact, contact.vertex_pressure_kpa > contact.contact_threshold_kpa)
        assert math.isfinite(estimate.uv_total_force_n) and estimate.uv_total_force_n >= 0
        assert set(estimate.timings_s) == {"preprocess", "inference", "contact"}
    assert stream.last_reset is None and stream.resets == 0


def test_stream_restarts_on_time_jumps_and_lost_hands(checkpoint, scene):
    stream = _stream(checkpoint, num_inference_steps=1,
                     stream_options=StreamOptions(max_gap_s=0.5, hand_lost_reset_s=0.2))
    _push(stream, scene, 5.0)
    _push(stream, scene, 5.1)
    assert stream.frames_seen == 2

    _push(stream, scene, 4.0)  # bag loop / clock reset
    assert stream.last_reset.cause is ResetCause.TIME_BACKWARDS and "backwards" in stream.last_reset.message
    assert stream.frames_seen == 1

    _push(stream, scene, 4.9)  # a 0.9 s gap
    assert stream.last_reset.cause is ResetCause.GAP
    assert "passed since the previous frame" in stream.last_reset.message

    # A short loss of the hand: nothing is estimated, the window survives.
    assert _push(stream, scene, 4.95, vertices=None, joints=None) is None
    assert stream.last_reset is None and stream.frames_seen == 1
    assert _push(stream, scene, 5.0) is not None and stream.frames_seen == 2
    # A long loss restarts the window once.
    for stamp in (5.05, 5.15, 5.3, 5.35):
        assert _push(stream, scene, stamp, vertices=None, joints=None) is None
    assert stream.resets == 3 and stream.frames_seen == 0
    assert _push(stream, scene, 5.4).window_frames == 1


def test_stream_rejects_bad_frames_without_changing_state(checkpoint, scene):
    stream = _stream(checkpoint, num_inference_steps=1)
    _push(stream, scene, 1.0)
    with pytest.raises(DataError, match="not aligned to the colour image"):
        _push(stream, scene, 1.1, depth_m=scene["depth_m"][:48, :64])
    with pytest.raises(DataError, match="vertices of shape"):
        _push(stream, scene, 1.1, vertices=scene["vertices"][:100])
    with pytest.raises(DataError, match="hand mesh vertices hold NaN"):
        _push(stream, scene, 1.1, vertices=np.full_like(scene["vertices"], np.nan))
    with pytest.raises(DataError, match="rgb must be a \\(H, W, 3\\) uint8"):
        _push(stream, scene, 1.1, rgb=scene["rgb"].astype(np.float32))
    with pytest.raises(DataError, match="focal lengths"):
        _push(stream, scene, 1.1, intrinsics=np.zeros((3, 3)) + np.diag([0.0, 0.0, 1.0]))
    assert stream.frames_seen == 1 and stream.resets == 0
    assert _push(stream, scene, 1.1).window_frames == 2


def test_sampling_options_pass_through_and_default_to_the_live_sampling(checkpoint, scene):
    import inspect

    from egopress_core.inference import StreamingPressureEstimator

    defaults = inspect.signature(StreamingPressureEstimator).parameters
    stream = EgoPressPipeline.from_checkpoint(checkpoint, runtime=RuntimeOptions(device="cpu")).stream()
    policy = stream.policy
    for name in ("num_inference_steps", "warm_start_strength", "scheduler"):
        assert getattr(policy, name) == defaults[name].default == getattr(LIVE_SAMPLING, name), name
    assert policy.precision == defaults["precision"].default == RuntimeOptions().precision

    stream = _stream(checkpoint, runtime=RuntimeOptions(device="cpu", channels_last=True), num_inference_steps=3,
                     scheduler="ddim", warm_start_strength=0.7, seed=5)
    policy = stream.policy
    assert (policy.num_inference_steps, policy.scheduler, policy.warm_start_strength, policy.seed) == (3, "ddim", 0.7, 5)
    weight = next(m.weight for m in stream.pipeline.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert _push(stream, scene, 1.0) is not None

    with pytest.raises(ConfigError, match="stride"):
        _stream(checkpoint, stride=2)
    with pytest.raises(ConfigError, match="warm_start_strength"):
        _stream(checkpoint, warm_start_strength=1.5)


def test_moving_sets_the_precision_checked_against_the_new_device(checkpoint, scene):
    stream = _stream(checkpoint, num_inference_steps=1)
    pipeline = stream.pipeline
    _push(stream, scene, 1.0)
    with pytest.raises(ConfigError, match="fp16.*needs a GPU"):
        pipeline.to(RuntimeOptions(device="cpu", precision="fp16"))
    assert pipeline.runtime.precision == "fp32" and stream.policy.precision == "fp32" and stream.frames_seen == 1
    pipeline.to(RuntimeOptions(device="cpu", precision="bf16"))
    _push(stream, scene, 1.05)  # the stream notices the move and restarts its window
    assert stream.last_reset.cause is ResetCause.RUNTIME_CHANGED
    assert stream.policy.precision == "bf16" and stream.frames_seen == 1
    pipeline.to("cpu")
    assert pipeline.runtime.precision == "bf16"


def test_moving_can_compile_the_unet_for_the_new_device(checkpoint, scene, monkeypatch):
    import egopress_core.runtime as runtime

    # The eager backend traces without generating code, so the test stays fast on a CPU.
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", "eager")
    stream = _stream(checkpoint, num_inference_steps=1)
    pipeline = stream.pipeline
    _push(stream, scene, 1.0)
    with pytest.raises(ConfigError, match="compile_mode must be one of"):
        pipeline.to(RuntimeOptions(device="cpu", compile_mode="fastest"))
    assert stream.frames_seen == 1 and pipeline.model.unet._compiled_call_impl is None  # unchanged
    pipeline.to(RuntimeOptions(device="cpu", compile_mode="reduce-overhead"))
    assert runtime.compile_options(pipeline.runtime) == {"backend": "eager", "mode": "reduce-overhead"}
    assert pipeline.model.unet._compiled_call_impl is not None
    assert _push(stream, scene, 2.0) is not None
    pipeline.to(RuntimeOptions(device="cpu", compile_mode="off"))
    assert pipeline.runtime.compile is False
    # Code-generating inductor on a CPU needs a C++ compiler: refused up front when there is none.
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", "inductor")
    plain = _stream(checkpoint, num_inference_steps=1).pipeline
    monkeypatch.setattr(runtime, "_cpp_compiler", lambda: None)
    with pytest.raises(ConfigError, match="C\\+\\+ compiler"):
        plain.to(RuntimeOptions(device="cpu", compile_mode="default"))
    assert plain.model.unet._compiled_call_impl is None


def test_uv_geometry_model_gets_the_training_evidence_live(scene, tmp_path):
    from egopress_core.data.sources import hand_uv_mask
    from egopress_core.model import EgoPressDiff, tiny_config

    mask = hand_uv_mask((16, 16), "right")
    torch.manual_seed(0)
    EgoPressDiff(tiny_config(uv_layout=mask.layout_id, use_uv_geometry=True)).save_pretrained(tmp_path / "geometry")
    mask.save(tmp_path / "geometry" / UV_MASK_FILE)
    stream = _stream(tmp_path / "geometry", num_inference_steps=1)
    seen = []
    original = stream.policy.add
    stream.policy.add = lambda frame: seen.append(frame["uv_geometry"]) or original(frame)
    assert _push(stream, scene, 1.0) is not None
    assert seen[0].shape == (6, 16, 16) and seen[0][4].sum() > 0  # the flat hand faces the camera


def test_from_checkpoint_errors_name_the_problem(checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        EgoPressPipeline.from_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="config.json is missing"):
        EgoPressPipeline.from_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="estimates the right hand, not the left"):
        EgoPressPipeline.from_checkpoint(checkpoint, hand_side="left")
    # A checkpoint whose UV layout is not the hand's atlas.
    from egopress_core.model import EgoPressDiff, tiny_config

    other = tmp_path / "other_layout"
    EgoPressDiff(tiny_config(uv_layout="someone_elses_uv")).save_pretrained(other)
    with pytest.raises(CheckpointError, match="someone_elses_uv"):
        EgoPressPipeline.from_checkpoint(other)
    spec = json.loads((checkpoint / UV_MASK_FILE).read_text())
    assert spec["side"] == "right"


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="device must be"):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no usable CUDA device"):
            resolve_device("cuda")


@pytest.mark.parametrize("name", ["DEFAULT_CHECKPOINT", "EGOPRESSDIFF_CHECKPOINT", "BASELINE_CHECKPOINT"])
def test_shipped_checkpoints_load_and_estimate_with_their_uv_geometry(scene, name):
    """The checkpoints the package ships (the default is what `make demo`, the nodes and the
    labeller load without one) fit this code: config, weights, the bundled hand's UV layout."""
    from egopress_core import assets

    checkpoint = getattr(assets, name)
    stream = _stream(checkpoint if name != "DEFAULT_CHECKPOINT" else None, num_inference_steps=1)
    pipeline = stream.pipeline
    assert pipeline.checkpoint == checkpoint
    assert pipeline.model.config.use_uv_geometry and pipeline.uv_geometry is not None
    estimate = _push(stream, scene, 0.0)
    assert estimate.uv_pressure_kpa.shape == tuple(pipeline.model.config.uv_size)
    assert np.isfinite(estimate.uv_pressure_kpa).all() and estimate.uv_pressure_kpa.min() >= 0


def test_step_estimates_every_frame_added_since_the_last_pass_in_order(checkpoint, scene):
    stream = _stream(checkpoint, num_inference_steps=2, warm_start_strength=0.5)
    assert stream.step() == []  # nothing added yet
    stamps = [1.0 + index / 30 for index in range(3)]
    for stamp in stamps:
        assert stream.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], stamp, scene["vertices"], scene["joints"])
    assert stream.pending == 3
    block = stream.step()
    assert [estimate.stamp_s for estimate in block] == stamps and stream.pending == 0
    assert all(estimate.window_frames == 3 for estimate in block)
    # A frame without a hand enters nothing and gets nothing.
    assert not stream.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], 1.2, None, None)
    assert stream.step() == []
    # More frames than the window holds: the oldest leave before a pass reaches them (counted), the
    # newest T are estimated, and the window still holds consecutive frames (no restart).
    window = stream.window_length
    newer = [1.3 + index / 30 for index in range(window + 2)]
    for stamp in newer:
        stream.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], stamp, scene["vertices"], scene["joints"])
    model = stream.policy.model
    encoded = []
    original_encode = model.encode_frames
    model.encode_frames = lambda conditions: encoded.append(conditions) or original_encode(conditions)
    try:
        block = stream.step()
    finally:
        del model.encode_frames
    assert [estimate.stamp_s for estimate in block] == newer[2:]
    assert stream.frames_skipped == 2 and stream.resets == 0
    # Only the frames still in the window were encoded: the two that left cost nothing more.
    assert len(encoded) == window
    # Each estimate carries its frame's tag back (the node's image header); frames a restart
    # discards before any pass are counted as skipped too.
    for number, stamp in enumerate((2.0, 2.1)):
        stream.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], stamp, scene["vertices"], scene["joints"],
                   tag=("header", number))
    (first,) = [estimate for estimate in stream.step() if estimate.stamp_s == 2.0]
    assert first.tag == ("header", 0)
    stream.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], 2.2, scene["vertices"], scene["joints"])
    stream.reset()
    assert stream.step() == [] and stream.frames_skipped == 3


def test_add_only_takes_frames_and_the_next_pass_prepares_the_newest_window(checkpoint, scene, monkeypatch):
    """A camera thread's add() holds Python's GIL beside the pass on another thread, so it only
    checks and queues; the next step() crops and resizes the newest T frames (no work for the
    frames that leave the window first) from the stream's own copy of the caller's images."""
    import egopress_core.stream as stream_module

    prepared = []
    original_preprocess = stream_module.preprocess_frame
    monkeypatch.setattr(stream_module, "preprocess_frame",
                        lambda *args, **kwargs: prepared.append(args[0]) or original_preprocess(*args, **kwargs))
    reference, stream = _stream(checkpoint, num_inference_steps=1), _stream(checkpoint, num_inference_steps=1)
    window = stream.window_length
    stamps = [1.0 + index / 30 for index in range(window + 2)]
    for stamp in stamps:
        reference.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], stamp, scene["vertices"], scene["joints"])
        rgb = scene["rgb"].copy()
        assert stream.add(rgb, scene["depth_m"], scene["intrinsics"], stamp, scene["vertices"], scene["joints"])
        rgb[:] = 0  # the caller reuses its buffer
    assert prepared == [] and stream.pending == window and stream.frames_skipped == 2
    expected = reference.step()
    assert len(expected) == window
    prepared.clear()
    block = stream.step()
    assert len(prepared) == window and [estimate.stamp_s for estimate in block] == stamps[2:]
    for mine, theirs in zip(block, expected):
        np.testing.assert_array_equal(mine.uv_pressure_kpa, theirs.uv_pressure_kpa)
    # A hand lost for longer than hand_lost_reset_s restarts the window even before any pass took
    # the frames in, which count as skipped.
    lost = _stream(checkpoint, num_inference_steps=1, stream_options=StreamOptions(hand_lost_reset_s=0.2))
    lost.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], 2.0, scene["vertices"], scene["joints"])
    for stamp in (2.05, 2.3):
        assert not lost.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], stamp, None, None)
    assert lost.last_reset.cause is ResetCause.HAND_LOST and lost.frames_skipped == 1
    assert lost.pending == 0 and lost.step() == []


def test_adding_and_stepping_one_frame_at_a_time_is_push(checkpoint, scene):
    pushed, stepped = _stream(checkpoint, num_inference_steps=2), _stream(checkpoint, num_inference_steps=2)
    for index in range(3):
        stamp = 2.0 + index / 30
        expected = _push(pushed, scene, stamp)
        stepped.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], stamp, scene["vertices"], scene["joints"])
        (estimate,) = stepped.step()
        np.testing.assert_array_equal(estimate.uv_pressure_kpa, expected.uv_pressure_kpa)


def test_frames_added_while_a_pass_runs_wait_for_the_next_one(checkpoint, scene):
    import threading

    stream = _stream(checkpoint, num_inference_steps=2)
    for index in range(2):
        stream.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], 3.0 + index / 30, scene["vertices"], scene["joints"])
    original = stream.policy.denoise
    added_during_pass = threading.Event()

    def denoise_while_a_frame_arrives():
        result = original()
        thread = threading.Thread(target=stream.add, args=(scene["rgb"], scene["depth_m"], scene["intrinsics"], 3.1,
                                                            scene["vertices"], scene["joints"]))
        thread.start()
        thread.join()
        added_during_pass.set()
        return result

    stream.policy.denoise = denoise_while_a_frame_arrives
    first = stream.step()
    assert added_during_pass.is_set() and [e.stamp_s for e in first] == [3.0, 3.0 + 1 / 30]
    stream.policy.denoise = original
    assert [e.stamp_s for e in stream.step()] == [3.1]
    # A reset while a pass runs drops that pass's frames: they belong to the old window.
    stream.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], 3.2, scene["vertices"], scene["joints"])

    def denoise_then_reset():
        result = original()
        stream.reset()
        return result

    stream.policy.denoise = denoise_then_reset
    skipped = stream.frames_skipped
    assert stream.step() == [] and stream.pending == 0
    assert stream.frames_skipped == skipped + 1  # counted: it will never get an estimate


@pytest.fixture(scope="module")
def baseline_checkpoint(tmp_path_factory):
    """A tiny untrained per-frame baseline on the bundled right hand's UV layout."""
    from egopress_core.data.sources import hand_uv_mask
    from egopress_core.model.config import tiny_config
    from tiny_checkpoints import save_tiny_baseline_checkpoint

    mask = hand_uv_mask(tuple(tiny_config().uv_size), "right")
    return save_tiny_baseline_checkpoint(tmp_path_factory.mktemp("baseline_checkpoint"), mask)


def test_the_per_frame_baseline_streams_each_frame_on_its_own(baseline_checkpoint, scene):
    """The live stream (and so the pressure node) runs the baseline too: a block gives exactly what
    frame-by-frame passes give, in order, and a slow pass keeps the newest num_frames frames."""
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, size=scene["rgb"].shape, dtype=np.uint8) for _ in range(3)]
    stamps = [5.0 + index / 30 for index in range(3)]
    one_by_one = _stream(baseline_checkpoint)
    pushed = [_push(one_by_one, scene, stamp, rgb=rgb) for stamp, rgb in zip(stamps, frames)]
    block_stream = _stream(baseline_checkpoint)
    for stamp, rgb in zip(stamps, frames):
        block_stream.add(rgb, scene["depth_m"], scene["intrinsics"], stamp, scene["vertices"], scene["joints"])
    block = block_stream.step()
    assert [estimate.stamp_s for estimate in block] == stamps
    for alone, together in zip(pushed, block):
        np.testing.assert_allclose(together.uv_pressure_kpa, alone.uv_pressure_kpa, atol=1e-5)
    assert not np.array_equal(pushed[0].uv_pressure_kpa, pushed[1].uv_pressure_kpa)  # the frames differ
    assert block_stream.warm_steps == 1 and block_stream.window_length == 4
    for index in range(6):
        block_stream.add(scene["rgb"], scene["depth_m"], scene["intrinsics"], 6.0 + index / 30, scene["vertices"],
                         scene["joints"])
    assert len(block_stream.step()) == 4 and block_stream.frames_skipped == 2
