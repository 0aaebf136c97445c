"""Runtime options, one validated dataclass per concern, and the vocabularies they draw from.

Every option a user can set on the runtime side (``egopress eval``, ``label-bag``, ``bench``,
the pressure node, ``config/pressure.yaml``) is a field of one of these dataclasses:

- :class:`SamplingOptions`: the diffusion sampler (scheduler, steps, warm start, guidance, seed,
  offline window stride and batching);
- :class:`RuntimeOptions`: where and how the model runs (device, precision, channels-last,
  ``torch.compile``);
- :class:`CropOptions`: how a camera frame is cropped and resized for the model;
- :class:`StreamOptions`: the live stream's time bookkeeping (gaps, lost hands);
- :class:`ContactOptions`: the per-vertex contact threshold.

Each field carries its help text, choices and range in its metadata (:func:`option`), so command
line flags (:func:`add_arguments`), ROS parameters (``egopress_ros.parameters``) and YAML keys are
derived from here; a default or a list of choices exists once. Two sampling defaults exist
because live and offline estimation want different trade-offs: :data:`LIVE_SAMPLING` and
:data:`OFFLINE_SAMPLING`.

This module imports neither torch nor diffusers: reading a node's parameter table stays cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from egopress_core.errors import ConfigError

# Diffusion samplers offered (diffusers schedulers built by EgoPressDiff.make_scheduler).
SCHEDULERS = ("ddim", "dpmsolver++", "euler")
# Autocast precision of encoders and U-Net; "fp32" is no autocast.
PRECISIONS = ("fp32", "fp16", "bf16")
# torch.compile of the U-Net; "off" leaves it eager. "reduce-overhead" replays CUDA graphs: on a
# GPU the compact U-Net is bound by kernel launches, and this is what makes it real-time.
COMPILE_OFF = "off"
COMPILE_MODES = (COMPILE_OFF, "default", "reduce-overhead", "max-autotune")
# Model input crop: a box around the hand (as in training) or the largest centred box.
CROP_MODES = ("hand", "full")
# Depth downsampling: the nearest surface of each output pixel's footprint, or nearest neighbour.
DEPTH_RESIZE_MODES = ("min", "nearest")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    choices: tuple | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    low_open: bool = False,
    flag: str | None = None,
    parameter: bool = True,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with what validation, ``--help`` and ROS parameters need.

    Args:
        default: the default (its type is the option's type; None makes it optional).
        help: one sentence for ``--help`` and the ROS parameter description.
        choices: allowed values.
        minimum, maximum: inclusive range of a number (``low_open``: the minimum is excluded).
        flag: command-line flag, default ``--<name-with-dashes>``.
        parameter: whether a ROS node may expose it as a parameter (ROS has no None).
    """
    metadata = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum,
                "low_open": low_open, "flag": flag, "parameter": parameter}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(bool | int | float | str, optional) of a field annotation such as ``float | None``."""
    hint = annotation
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arguments = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(arguments) != len(typing.get_args(hint))
        hint = arguments[0]
    if hint not in (bool, int, float, str):
        raise TypeError(f"option type must be bool, int, float or str (optionally | None). Got {annotation!r}")
    return hint, optional


def option_fields(cls: type) -> list[tuple[dataclasses.Field, type, bool]]:
    """(field, base type, optional) of every option of ``cls``."""
    hints = typing.get_type_hints(cls)
    return [(item, *_base_type(hints[item.name])) for item in dataclasses.fields(cls)]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _expected(kind: type, optional: bool, metadata: dict) -> str:
    """What a value must be, e.g. "an integer >= 1", "a number in (0, 1] or None"."""
    noun = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]
    low, high = metadata.get("minimum"), metadata.get("maximum")
    if kind in (int, float) and low is not None and high is not None:
        noun += f" in {'(' if metadata.get('low_open') else '['}{_number(low)}, {_number(high)}]"
    elif kind in (int, float) and low is not None:
        noun += f" {'>' if metadata.get('low_open') else '>='} {_number(low)}"
    elif kind in (int, float) and high is not None:
        noun += f" <= {_number(high)}"
    return noun + (" or None" if optional else "")


def check_value(owner: str, name: str, value: Any, kind: type, optional: bool, metadata: dict) -> Any:
    """``value`` checked against the option's type, choices and range.

    Raises:
        ConfigError: naming ``owner.name``, what it must be and what it got.
    """
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{owner}.{name} must be one of {list(choices)}. Got {value!r}")
    wrong = type(value) is not kind or (kind is float and not math.isfinite(value))
    if not wrong and kind in (int, float):
        low, high = metadata.get("minimum"), metadata.get("maximum")
        wrong = ((low is not None and (value < low or (metadata.get("low_open") and value == low)))
                 or (high is not None and value > high))
    if wrong:
        raise ConfigError(f"{owner}.{name} must be {_expected(kind, optional, metadata)}. Got {value!r}")
    return value


def validate(instance: Any) -> None:
    """Check every option of a dataclass instance (called by each ``__post_init__``)."""
    owner = type(instance).__name__
    for item, kind, optional in option_fields(type(instance)):
        checked = check_value(owner, item.name, getattr(instance, item.name), kind, optional, dict(item.metadata))
        object.__setattr__(instance, item.name, checked)


# ----------------------------------------------------------------------------------------------
# The option sets
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingOptions:
    """How the diffusion sampler runs (defaults: :data:`OFFLINE_SAMPLING`; live:
    :data:`LIVE_SAMPLING`)."""

    scheduler: str = option("ddim", "Diffusion sampler.", choices=SCHEDULERS)
    num_inference_steps: int = option(10, "Sampler steps of a full denoising run.", minimum=1, maximum=1000,
                                      flag="--steps")
    warm_start_strength: float | None = option(
        None, "Fraction of the steps re-run for a window that starts from the previous window's result "
        "(shifted by the frames it advanced); unset: every window is a full run from noise.",
        minimum=0.0, maximum=1.0, low_open=True, flag="--warm-start")
    guidance_scale: float = option(1.0, "Classifier-free guidance weight (1: off, one U-Net pass per step).",
                                   minimum=1.0, maximum=20.0)
    seed: int = option(0, "Seed of the sampler noise.", minimum=0, maximum=2**31 - 1)
    stride: int | None = option(None, "Window step of the offline estimate, frames (unset: half a window).",
                                minimum=1, parameter=False)
    window_batch_size: int = option(1, "Offline windows denoised together (accelerator throughput; the result "
                                    "equals 1 up to float rounding with ddim and dpmsolver++).", minimum=1,
                                    parameter=False)

    def __post_init__(self) -> None:
        validate(self)
        if self.window_batch_size > 1 and self.warm_start_strength is not None:
            raise ConfigError("SamplingOptions.warm_start_strength chains each window to the previous one; "
                              "it needs window_batch_size 1")

    @property
    def warm_steps(self) -> int:
        """Sampler steps of a warm-started window (all of them without warm start)."""
        if self.warm_start_strength is None:
            return self.num_inference_steps
        return max(1, min(self.num_inference_steps, int(round(self.num_inference_steps * self.warm_start_strength))))


# Offline (eval, label-bag): every window a full run, context from both directions.
OFFLINE_SAMPLING = SamplingOptions()
# Live: warm-started DPM-Solver++ 2, one U-Net pass per frame-by-frame window and two when the
# window is mostly new (block streaming). With the shipped EgoPressDiff trained on the camera-only path's
# meshes, 2 steps streamed 2x the frames of 4 on this CPU and kept more of the offline Vol IoU
# (`bench --live --quick`: 11.8 frames/s and 1.10 of offline against 5.7 and 0.80; 3 x 150
# frames on a loaded machine 5.3 / 0.95 against 4.4 / 0.76; README, "Live with temporal
# context"). 4 steps had kept 0.98-0.99 of the full-step quality with the earlier model.
LIVE_SAMPLING = SamplingOptions(scheduler="dpmsolver++", num_inference_steps=2, warm_start_strength=0.25)


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how the model runs."""

    device: str = option("auto", "Torch device: auto (CUDA when available), cpu, cuda, cuda:<index> or mps.")
    precision: str = option("fp32", "Autocast precision of encoders and U-Net: fp32, fp16 (GPU only) or bf16 "
                            "(GPUs with bf16; CPUs with AVX512-BF16/AMX).", choices=PRECISIONS)
    channels_last: bool = option(False, "Channels-last convolution weights (faster tensor-core kernels on GPUs).")
    compile_mode: str = option(COMPILE_OFF, "torch.compile the U-Net: off, default, reduce-overhead (CUDA graphs) or "
                               "max-autotune. The first frames compile (up to a minute); on a CPU it needs a C++ "
                               "compiler.", choices=COMPILE_MODES)

    def __post_init__(self) -> None:
        validate(self)
        if not self.device.strip():
            raise ConfigError("RuntimeOptions.device must name a device (auto, cpu, cuda, ...). Got ''")

    @property
    def compile(self) -> bool:
        return self.compile_mode != COMPILE_OFF


@dataclass(frozen=True)
class CropOptions:
    """How a camera frame becomes a model input (as the training windows crop)."""

    crop: str = option("hand", "Model input crop: hand (box around the hand mesh, as in training) or full.",
                       choices=CROP_MODES)
    hand_margin: float = option(0.3, "Margin around the hand box, fraction of its larger side.",
                                minimum=0.0, maximum=5.0)
    min_crop_fraction: float = option(0.1, "Smallest hand crop side, fraction of the image's short side.",
                                      minimum=0.0, maximum=1.0)
    depth_resize: str = option("min", "Depth downsampling: min (nearest surface) or nearest.",
                               choices=DEPTH_RESIZE_MODES)
    hold_crop: bool = option(True, "Keep the crop box while the hand stays inside it (training windows share one "
                             "box); false: a fresh box every frame.")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class StreamOptions:
    """When a live stream forgets its window."""

    max_gap_s: float = option(1.0, "A longer gap between consecutive frames restarts the window, seconds.",
                              minimum=0.0, maximum=3600.0, low_open=True, flag="--max-gap")
    hand_lost_reset_s: float = option(0.5, "A hand missing for longer than this restarts the window, seconds.",
                                      minimum=0.0, maximum=3600.0)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class ContactOptions:
    """Per-vertex contact."""

    contact_threshold_kpa: float = option(1.0, "A vertex is in contact above this pressure, kPa (PressureVision: 1).",
                                          minimum=0.0, maximum=1000.0, flag="--contact-threshold")

    def __post_init__(self) -> None:
        validate(self)


OPTION_CLASSES = (SamplingOptions, RuntimeOptions, CropOptions, StreamOptions, ContactOptions)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def flag_of(item: dataclasses.Field) -> str:
    return item.metadata.get("flag") or "--" + item.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser | Any, cls: type, defaults: Any = None,
                  names: tuple[str, ...] | None = None, title: str | None = None) -> None:
    """Add a flag per option of ``cls`` (``names``: only these), defaults from ``defaults``.

    Booleans become ``--x/--no-x``; optional numbers accept a value or are left unset. Values are
    checked by the dataclass when :func:`from_arguments` builds it, with the field named.
    """
    defaults = defaults if defaults is not None else cls()
    # A parser that shows defaults itself must not show them twice.
    shows_defaults = getattr(parser, "formatter_class", None) is argparse.ArgumentDefaultsHelpFormatter
    group = parser.add_argument_group(title) if title else parser
    for item, kind, optional in option_fields(cls):
        if names is not None and item.name not in names:
            continue
        default = getattr(defaults, item.name)
        text = item.metadata.get("help", "")
        choices = item.metadata.get("choices")
        shown = "" if shows_defaults else f" (default: {'unset' if default is None else default})"
        if kind is bool:
            group.add_argument(flag_of(item), dest=item.name, action=argparse.BooleanOptionalAction, default=default,
                               help=f"{text}{shown}")
        else:
            group.add_argument(flag_of(item), dest=item.name, type=kind, default=default, choices=choices,
                               help=f"{text}{shown}")


def from_arguments(args: argparse.Namespace, cls: type, defaults: Any = None) -> Any:
    """The ``cls`` instance of parsed arguments (options without a flag keep ``defaults``)."""
    defaults = defaults if defaults is not None else cls()
    values = {item.name: getattr(args, item.name, getattr(defaults, item.name)) for item in dataclasses.fields(cls)}
    return cls(**values)


def to_dict(instance: Any) -> dict[str, Any]:
    return dataclasses.asdict(instance)


def config_differences(old: dict, new: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Flattened ``{key: (old, new)}`` of two config dicts."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(config_differences(a, b, name + "."))
        elif a != b:
            out[name] = (a, b)
    return out


def from_mapping(cls: type, options: Any, what: str) -> Any:
    """A config dataclass ``cls`` from a mapping of field values (as YAML gives), an instance, or
    None (the defaults), naming unknown keys.

    Raises:
        ConfigError: not a mapping, or keys that are not fields of ``cls``.
    """
    if options is None:
        return cls()
    if isinstance(options, cls):
        return options
    if not isinstance(options, dict):
        raise ConfigError(f"{what} options must be a mapping of {cls.__name__} fields. Got {type(options).__name__}")
    known = {item.name for item in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown {what} option(s) {unknown}; valid: {sorted(known)}")
    return cls(**options)
