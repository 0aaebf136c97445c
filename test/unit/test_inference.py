"""Streaming (live) and offline sequence inference over a tiny EgoPressDiff."""

from __future__ import annotations

import pytest
import torch

from egopress_core.conditioning import build_conditions
from egopress_core.errors import ConfigError, DataError
from egopress_core.inference import StreamingPressureEstimator, estimate_sequence, shift_latents
from egopress_core.model import EgoPressDiff, tiny_config
from model_batches import make_window_batch, uv_mask_for


@pytest.fixture(scope="module")
def model() -> EgoPressDiff:
    torch.manual_seed(0)
    return EgoPressDiff(tiny_config()).eval()


@pytest.fixture(scope="module")
def sequence(model):
    """One sequence of 7 frames as a window batch (B = 1, T = 7)."""
    return make_window_batch(model.config, batch_size=1, num_frames=7, seed=4)


def _frame(sequence, index):
    return {
        key: sequence[key][0, index]
        for key in ("rgb", "depth_m", "intrinsics", "joints", "vertices", "valid")
    }


class _Recorder:
    """Wraps a bound method and records its calls."""

    def __init__(self, method):
        self.method = method
        self.calls = []

    def __call__(self, *args, **kwargs):
        result = self.method(*args, **kwargs)
        self.calls.append((args, kwargs, result))
        return result


def test_shift_latents():
    latents = torch.arange(4.0).reshape(1, 4, 1, 1, 1)
    assert shift_latents(latents, 1).flatten().tolist() == [1.0, 2.0, 3.0, 3.0]
    assert shift_latents(latents, 3).flatten().tolist() == [3.0, 3.0, 3.0, 3.0]
    assert shift_latents(latents, 4) is None


def test_streaming_push_shapes_cache_and_warm_start(model, sequence):
    mask = uv_mask_for(model.config)
    estimator = StreamingPressureEstimator(
        model, mask, num_inference_steps=4, warm_start_strength=0.5, seed=3
    )
    denoise = _Recorder(model.denoise)
    image_encoder_calls = []
    hook = model.image_encoder.register_forward_hook(
        lambda module, args, out: image_encoder_calls.append(args[0].shape[0])
    )
    model.denoise = denoise  # instance attribute shadows the method for this test
    try:
        outputs = [estimator.push(_frame(sequence, i)) for i in range(6)]
    finally:
        del model.denoise
        hook.remove()
    for pressure in outputs:
        assert pressure.shape == (1, *model.config.uv_size)
        assert pressure.min() >= 0 and torch.count_nonzero(pressure[mask < 0.5]) == 0
    # Each frame is encoded once (1 image per call), however many windows it appears in.
    assert image_encoder_calls == [1] * 6
    # First window from noise with the full schedule; later ones warm-started at half strength
    # from the previous window's latents shifted by one frame.
    assert denoise.calls[0][1]["init_latents"] is None and denoise.calls[0][1]["strength"] == 1.0
    assert estimator.warm_steps == 2
    for previous, current in zip(denoise.calls, denoise.calls[1:]):
        assert current[1]["strength"] == 0.5
        assert torch.equal(current[1]["init_latents"], shift_latents(previous[2], 1))
    assert estimator.frames_seen == 6


def test_streaming_reset_replays_the_same_outputs(model, sequence):
    estimator = StreamingPressureEstimator(model, uv_mask_for(model.config), num_inference_steps=3, seed=5)
    first = [estimator.push(_frame(sequence, i)) for i in range(3)]
    estimator.reset()
    assert estimator.frames_seen == 0
    second = [estimator.push(_frame(sequence, i)) for i in range(3)]
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_streaming_handles_frames_without_a_hand(model, sequence):
    estimator = StreamingPressureEstimator(model, uv_mask_for(model.config), num_inference_steps=2)
    frame = _frame(sequence, 0)
    frame["valid"] = torch.tensor(False)
    frame["joints"] = torch.full((21, 3), float("nan"))  # tracker lost the hand
    frame["vertices"] = torch.full((60, 3), float("nan"))
    pressure = estimator.push(frame)
    assert torch.isfinite(pressure).all()


def test_streaming_rejects_bad_input(model, sequence):
    with pytest.raises(DataError, match="uv_mask"):
        StreamingPressureEstimator(model, torch.ones(8, 8))
    with pytest.raises(ConfigError, match="warm_start_strength"):
        StreamingPressureEstimator(model, uv_mask_for(model.config), warm_start_strength=0.0)
    estimator = StreamingPressureEstimator(model, uv_mask_for(model.config), num_inference_steps=2)
    frame = _frame(sequence, 0)
    del frame["depth_m"]
    with pytest.raises(DataError, match="depth_m"):
        estimator.push(frame)
    frame = _frame(sequence, 0)
    frame["rgb"], frame["depth_m"] = torch.rand(3, 8, 8), torch.rand(8, 8)
    with pytest.raises(DataError, match="image_size"):
        estimator.push(frame)


def test_estimate_sequence_covers_every_frame_with_overlapping_windows(model, sequence):
    conditions = build_conditions(sequence)  # T = 7: longer than the model's window of 4
    denoise = _Recorder(model.denoise)
    model.denoise = denoise
    try:
        pressure = estimate_sequence(
            model, conditions, stride=2, num_inference_steps=2, seed=1, progress=False
        )
    finally:
        del model.denoise
    assert pressure.shape == (1, 7, 1, *model.config.uv_size)
    assert pressure.min() >= 0
    assert torch.count_nonzero(pressure[:, :, :, conditions.uv_mask[0, 0] < 0.5]) == 0
    assert len(denoise.calls) == 3  # windows start at 0, 2 and 3 (the last one ends at frame 6)
    again = estimate_sequence(model, conditions, stride=2, num_inference_steps=2, seed=1, progress=False)
    assert torch.equal(pressure, again)


def test_estimate_sequence_without_overlap_reproduces_independent_windows(model, sequence):
    conditions = build_conditions(make_window_batch(model.config, batch_size=1, num_frames=8, seed=2))
    pressure = estimate_sequence(model, conditions, stride=4, num_inference_steps=2, seed=9, progress=False)
    generator = torch.Generator().manual_seed(9)
    for start in (0, 4):
        window = conditions.window(start, start + 4)
        latents = model.denoise(model.encode_conditions(window), 2, generator=generator)
        expected = model.decode_latents(latents, window.uv_mask)
        assert torch.allclose(pressure[:, start : start + 4], expected, atol=1e-5)


def test_estimate_sequence_short_sequences_and_warm_start(model):
    short = build_conditions(make_window_batch(model.config, batch_size=2, num_frames=2, seed=3))
    pressure = estimate_sequence(model, short, num_inference_steps=2, progress=False)
    assert pressure.shape == (2, 2, 1, *model.config.uv_size)
    longer = build_conditions(make_window_batch(model.config, batch_size=1, num_frames=6, seed=3))
    warm = estimate_sequence(
        model, longer, stride=1, num_inference_steps=4, warm_start_strength=0.5, progress=False
    )
    assert warm.shape == (1, 6, 1, *model.config.uv_size) and torch.isfinite(warm).all()
    with pytest.raises(ConfigError, match="stride"):
        estimate_sequence(model, longer, stride=5)
