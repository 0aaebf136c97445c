"""Speed options of the inference policies (what `egopress bench` measures), on a tiny model.

Each option must keep the output's shape and meaning; the caching and batching options must
also reproduce the plain path's numbers.
"""

from __future__ import annotations

import copy

import pytest
import torch

from egopress_core.conditioning import build_conditions
from egopress_core.errors import ConfigError
from egopress_core.inference import StreamingPressureEstimator, estimate_sequence
from egopress_core.model import EgoPressDiff, tiny_config
from egopress_core.runtime import autocast_context, check_precision, prepare_model_for_inference
from model_batches import make_window_batch, uv_mask_for

STAGES = {"conditions", "encode_frames", "encode_window", "denoise", "decode"}


@pytest.fixture(scope="module")
def model() -> EgoPressDiff:
    torch.manual_seed(0)
    return EgoPressDiff(tiny_config()).eval()


@pytest.fixture(scope="module")
def frames(model):
    """Six camera frames (more than the tiny model's window of 4)."""
    sequence = make_window_batch(model.config, batch_size=1, num_frames=6, seed=4)
    keys = ("rgb", "depth_m", "intrinsics", "joints", "vertices", "valid")
    return [{key: sequence[key][0, index] for key in keys} for index in range(6)]


def _stream(model, frames, **options) -> list[torch.Tensor]:
    estimator = StreamingPressureEstimator(
        model, uv_mask_for(model.config), num_inference_steps=2, seed=3, **options
    )
    return [estimator.push(frame) for frame in frames]


def _assert_maps_close(first, second, rtol=1e-4):
    for a, b in zip(first, second, strict=True):
        # Relative to the map's scale: batch-size-dependent kernels round differently.
        scale = max(float(a.abs().max()), 1.0)
        torch.testing.assert_close(a, b, rtol=0.0, atol=rtol * scale)


def test_cached_frame_features_match_reencoding_every_window(model, frames):
    cached = _stream(model, frames, warm_start_strength=0.5, record_timings=True)
    image_encoder_batches = []
    hook = model.image_encoder.register_forward_hook(
        lambda module, args, out: image_encoder_batches.append(args[0].shape[0])
    )
    try:
        uncached = _stream(model, frames, warm_start_strength=0.5, cache_frame_features=False)
    finally:
        hook.remove()
    # Without the cache the whole (available part of the) window is encoded at every frame.
    assert image_encoder_batches == [1, 2, 3, 4, 4, 4]
    _assert_maps_close(cached, uncached)
    assert all(map.shape == (1, *model.config.uv_size) for map in cached)


def test_record_timings_names_every_stage(model, frames):
    estimator = StreamingPressureEstimator(
        model, uv_mask_for(model.config), num_inference_steps=2, record_timings=True
    )
    assert estimator.last_timings == {}
    estimator.push(frames[0])
    assert set(estimator.last_timings) == STAGES
    assert all(seconds >= 0.0 for seconds in estimator.last_timings.values())
    silent = StreamingPressureEstimator(model, uv_mask_for(model.config), num_inference_steps=2)
    silent.push(frames[0])
    assert silent.last_timings == {}


def test_without_warm_start_every_window_is_a_full_run(model, frames):
    calls = []
    original = model.denoise

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    model.denoise = recording
    try:
        estimator = StreamingPressureEstimator(
            model, uv_mask_for(model.config), num_inference_steps=3, warm_start_strength=None
        )
        for frame in frames[:3]:
            estimator.push(frame)
    finally:
        del model.denoise
    assert estimator.warm_steps == 3
    assert [(call["init_latents"], call["strength"]) for call in calls] == [(None, 1.0)] * 3


@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver++"])
def test_batched_windows_match_one_window_at_a_time(model, scheduler):
    conditions = build_conditions(make_window_batch(model.config, batch_size=2, num_frames=9, seed=5))
    options = dict(stride=2, num_inference_steps=3, scheduler=scheduler, seed=7, progress=False)
    single = estimate_sequence(model, conditions, **options)
    batched = estimate_sequence(model, conditions, window_batch_size=3, **options)  # 4 windows: 3 + 1
    assert batched.shape == (2, 9, 1, *model.config.uv_size)
    _assert_maps_close(list(single.flatten(0, 1)), list(batched.flatten(0, 1)))


def test_batched_windows_reject_warm_start_and_bad_sizes(model):
    conditions = build_conditions(make_window_batch(model.config, batch_size=1, num_frames=6, seed=5))
    with pytest.raises(ConfigError, match="window_batch_size=1"):
        estimate_sequence(model, conditions, warm_start_strength=0.5, window_batch_size=2, progress=False)
    with pytest.raises(ConfigError, match="window_batch_size"):
        estimate_sequence(model, conditions, window_batch_size=0, progress=False)


def test_precision_is_guarded_by_device(model, frames):
    assert check_precision("fp32", "cpu") is None
    assert check_precision("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16.*GPU"):
        check_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="precision must be one of"):
        check_precision("int8", "cpu")
    with pytest.raises(ConfigError, match="fp16"):
        StreamingPressureEstimator(model, uv_mask_for(model.config), precision="fp16")
    with autocast_context("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu")
    # bf16 autocast runs end to end and keeps the output's contract (float32 kPa, zero off-hand).
    mask = uv_mask_for(model.config)
    for pressure in _stream(model, frames[:2], precision="bf16"):
        assert pressure.dtype == torch.float32 and pressure.shape == (1, *model.config.uv_size)
        assert torch.isfinite(pressure).all() and pressure.min() >= 0
        assert torch.count_nonzero(pressure[mask < 0.5]) == 0


def test_channels_last_keeps_results(model, frames):
    converted = prepare_model_for_inference(copy.deepcopy(model), channels_last=True)
    convs = [m for m in converted.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert converted.state_dict().keys() == model.state_dict().keys()
    _assert_maps_close(_stream(model, frames[:3]), _stream(converted, frames[:3]))


def test_compile_traces_the_unet_and_keeps_results(model, frames):
    # The "eager" backend runs TorchDynamo's graph capture without code generation: the path
    # is exercised in seconds; inductor's speed is what the benchmark measures.
    compiled = copy.deepcopy(model)
    _assert_maps_close(
        _stream(model, frames[:2]),
        _stream(compiled, frames[:2], compile=True, compile_options={"backend": "eager"}),
    )
    assert compiled.unet._compiled_call_impl is not None
    assert compiled.state_dict().keys() == model.state_dict().keys()
