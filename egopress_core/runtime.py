"""Where and how a model runs: device resolution, autocast precision, channels-last, torch.compile.

The choices themselves (:data:`~egopress_core.options.PRECISIONS`,
:data:`~egopress_core.options.COMPILE_MODES`) live in :mod:`egopress_core.options`; this module
checks them against the machine and applies them. ``benchmarks/speed.md`` says what each buys.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping
from typing import Any

import torch

from egopress_core.errors import ConfigError
from egopress_core.options import COMPILE_MODES, COMPILE_OFF, PRECISIONS, RuntimeOptions

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# torch.compile's backend for RuntimeOptions.compile_mode: inductor generates fused kernels (C++
# on a CPU, Triton on a GPU); "eager" only traces, which tests use to stay fast.
COMPILE_BACKEND = "inductor"
_DEVICE_CHOICES = "'cpu', 'cuda', 'cuda:<index>', 'mps' or 'auto'"


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device`` of a user's string ("cpu", "cuda", "cuda:1", "mps", "auto" = CUDA if
    available, else CPU), checked to exist on this machine.

    Raises:
        ConfigError: an unknown device string, or an accelerator this machine does not have.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device must be {_DEVICE_CHOICES}. Got {device!r} ({error})") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was requested but this machine has no usable CUDA device "
                              "(torch.cuda.is_available() is False); use device 'cpu'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif resolved.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r} was requested but MPS is not available")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device must be {_DEVICE_CHOICES}. Got {device!r}")
    return resolved


def release_accelerator_memory() -> None:
    """Return cached CUDA memory to the driver (after moving a model off the GPU)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_precision(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None for "fp32").

    Raises:
        ConfigError: an unknown precision, fp16 on a CPU (no fast fp16 kernels there), or bf16 on
            a CUDA device without bf16 support.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {list(PRECISIONS)}. Got {precision!r}")
    if precision == "fp32":
        return None
    device = torch.device(device)
    if device.type == "cpu" and precision == "fp16":
        raise ConfigError(
            "precision='fp16' needs a GPU; on a CPU use 'bf16' (fast only on CPUs with AVX512-BF16 or AMX) "
            "or 'fp32'"
        )
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision='bf16' is not supported by {torch.cuda.get_device_name(device)}; use 'fp16'")
    return _AUTOCAST_DTYPES[precision]


def autocast_context(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``precision`` on ``device`` (a no-op context for "fp32")."""
    dtype = check_precision(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def _cpp_compiler() -> str | None:
    for name in ("c++", "g++", "clang++"):
        if shutil.which(name):
            return name
    return None


def check_compile(device: torch.device | str, compile_options: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`ConfigError` if ``torch.compile`` with these options cannot run on ``device``:
    an unknown mode, or the default inductor backend on a CPU without a C++ compiler (inductor
    generates C++ there)."""
    options = dict(compile_options or {})
    mode = options.get("mode", "default")
    if mode not in COMPILE_MODES or mode == COMPILE_OFF:
        raise ConfigError(f"compile mode must be one of {[m for m in COMPILE_MODES if m != COMPILE_OFF]}. Got {mode!r}")
    backend = options.get("backend", "inductor")
    if torch.device(device).type == "cpu" and backend == "inductor" and _cpp_compiler() is None:
        raise ConfigError(
            "compile=True on a CPU needs a C++ compiler for torch.compile's inductor backend (none of "
            "c++, g++, clang++ is on PATH); install one or leave compile off"
        )


def check_runtime(options: RuntimeOptions) -> torch.device:
    """The device of ``options``, with its precision and compile mode checked against it.

    Raises:
        ConfigError: naming what the device cannot do.
    """
    device = resolve_device(options.device)
    check_precision(options.precision, device)
    if options.compile:
        check_compile(device, compile_options(options))
    return device


def compile_options(options: RuntimeOptions) -> dict[str, Any] | None:
    """``torch.compile`` keyword arguments of ``options`` (None: not compiled)."""
    return {"mode": options.compile_mode, "backend": COMPILE_BACKEND} if options.compile else None


def prepare_model_for_inference(
    model: torch.nn.Module,
    channels_last: bool = False,
    compile: bool = False,
    compile_options: Mapping[str, Any] | None = None,
) -> torch.nn.Module:
    """Speed options that change the model in place (eval mode; weights and state-dict keys kept).

    Args:
        model: an EgoPressDiff; every caller sharing it sees the change.
        channels_last: store the 2-D convolution weights channels-last (NHWC), the layout cuDNN's
            tensor-core kernels prefer. The temporal 3-D convolutions keep their layout.
        compile: ``torch.compile`` the U-Net (``nn.Module.compile``: the module keeps its
            parameter names). Compilation happens on the first forward of each input shape, so
            the first window is slow; a model already compiled is left alone.
        compile_options: keyword arguments of ``torch.compile`` (e.g. ``{"mode":
            "reduce-overhead"}`` for CUDA graphs, ``{"backend": "eager"}`` to check tracing only).

    Raises:
        ConfigError: compile options that cannot run on the model's device (:func:`check_compile`).
    """
    model.eval()
    if channels_last:
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.to(memory_format=torch.channels_last)
    if compile:
        check_compile(model.device, compile_options)
        if getattr(model.unet, "_compiled_call_impl", None) is None:
            model.unet.compile(**dict(compile_options or {}))
    return model
