"""Training configuration: a validated dataclass tree, YAML files and ``--set key=value`` overrides.

A run is described by one :class:`TrainConfig`::

    data        where windows come from (paths, split, hand, clip-window settings)
    model       kind (EgoPressDiff or the per-frame baseline), preset + overrides of that
                kind's config keys (+ optional init)
    optim       AdamW, warm-up + cosine schedule, clipping, accumulation, batch size, max_steps
    ema         exponential moving average of the trainable weights
    validation  periodic sampling on held-out windows, metrics in kPa
    checkpoint  how often, how many kept
    logging     scalar interval, TensorBoard, training-curve PNG
    precision ("fp32", "fp16", "bf16": the vocabulary of every EgoPress command), device ("auto", "cpu"), seed, num_workers (DataLoader),
    threads (torch intra-op CPU threads per process; null: torch's default)

Named configs live in ``config/<name>.yaml`` (``tiny``, ``compact``, ``paper``, and the baseline's
``baseline_tiny``, ``baseline_compact``); a YAML file holds any subset of the keys, the rest keep
their defaults, or names a ``base`` config whose top-level sections it replaces
(:func:`read_config_file`). Every key can be overridden from the command line:
``--set optim.lr=1e-4 --set data.window.stride=4 --set model.overrides.fps=15``. Values are
parsed as YAML scalars and checked against the field's type; errors name the key.

``data.window`` holds :class:`~egopress_core.data.windows.WindowConfig` fields and
``model.overrides`` holds fields of the config class of ``model.kind``
(:class:`~egopress_core.model.config.EgoPressDiffConfig` for ``egopressdiff``,
:class:`~egopress_core.model.bin_classifier.BinClassifierConfig` for ``bin_classifier``; see
:mod:`egopress_core.model.kinds`); both are checked key by key against those classes.
The window's ``window``, ``image_size`` and ``uv_size`` default to the model's ``num_frames``,
``image_size`` and ``uv_size``; setting them to anything else is an error (the model is built for
exactly those shapes).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from egopress_core.errors import ConfigError
from egopress_core.files import write_text_atomic
from egopress_core.options import PRECISIONS, SCHEDULERS

DEVICES = ("auto", "cpu")
LR_SCHEDULES = ("cosine", "constant_with_warmup", "linear")
SPLITS = ("train", "test", "all")
HAND_SIDES = ("right", "left")

# The repository folder of the named configs (``config/tiny.yaml`` ...); installed copies are
# found through config_dirs().
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
NAMED_CONFIGS = ("tiny", "compact", "paper", "baseline_tiny", "baseline_compact")


# ----------------------------------------------------------------------------------------------
# Typed values
# ----------------------------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def coerce_value(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a type annotation, converting where it is lossless.

    YAML reads ``1e-4`` as a string and gives lists for tuples; both are converted here. Ints are
    accepted for floats, numeric strings for floats; nothing else is guessed.

    Raises:
        ConfigError: naming ``key``, the expected type and the value.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message is the useful one
            return coerce_value(key, value, options[0])
        for option in options:
            try:
                return coerce_value(key, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{key} must be {_type_name(annotation)}; got {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false; got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer; got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number; got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string; got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list ({_type_name(annotation)}); got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key} must have {len(args)} entries; got {value!r}")
            return tuple(coerce_value(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [coerce_value(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping; got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of {annotation.__name__} fields; got {value!r}")
        if issubclass(annotation, _Section):
            return annotation.from_dict(value, prefix=key)
        # A library config nested in a schema dict (e.g. data.window.augment): checked, kept a dict.
        return _check_schema_dict(key, value, annotation)
    return value


def _schema_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _check_schema_dict(key: str, values: dict, schema: type) -> dict:
    """Type-check a dict of ``schema``'s fields (unknown keys raise, naming the known ones)."""
    hints = _schema_hints(schema)
    out = {}
    for name, value in values.items():
        if name not in hints:
            raise ConfigError(f"{key}.{name} is not a {schema.__name__} field; known: {sorted(hints)}")
        out[name] = coerce_value(f"{key}.{name}", value, hints[name])
    return out


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key} must be {'>= 0' if allow_zero else '> 0'}; got {value!r}")


def _choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}. Got {value!r}")


class _Section:
    """Shared (de)serialisation of the config dataclasses."""

    @classmethod
    def from_dict(cls, values: dict, prefix: str = "") -> Any:
        if not isinstance(values, dict):
            raise ConfigError(f"{prefix or cls.__name__} must be a mapping; got {values!r}")
        hints = typing.get_type_hints(cls)
        known = [f.name for f in dataclasses.fields(cls) if f.init]
        unknown = sorted(set(values) - set(known))
        if unknown:
            where = f"{prefix}." if prefix else ""
            raise ConfigError(f"unknown config key(s) {[where + k for k in unknown]}; "
                              f"known in {prefix or 'the top level'}: {known}")
        kwargs = {name: coerce_value(f"{prefix}.{name}" if prefix else name, value, hints[name])
                  for name, value in values.items()}
        return cls(**kwargs)

    def to_dict(self) -> dict:
        def plain(value: Any) -> Any:
            if isinstance(value, _Section):
                return value.to_dict()
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


@dataclass
class DataConfig(_Section):
    """Where training and validation windows come from.

    Attributes:
        train: data folders (synthetic folders with ``dataset.json`` or EgoPressure roots).
        val: held-out data folders; empty: EgoPressure roots use their ``val_split``, other
            sources hold out ``val_fraction`` of their sequences.
        split: EgoPressure split read from ``train`` folders ("train", "test", "all").
        val_split: EgoPressure split used for validation when ``val`` is empty.
        val_fraction: fraction of training sequences held out when no validation source exists.
        hand_side: keep only sequences of this hand ("right"/"left"); null keeps all, which
            must then share one UV layout.
        hand_model_path: MANO-format pickle or folder of the hand (null: the bundled hand);
            its UV atlas gives the UV hand mask.
        uv_obj_path: UV atlas OBJ overriding the hand model's.
        image_scale: EgoPressure RGB decode scale (1, 0.5, 0.25, 0.125): faster reading.
        window: WindowConfig fields (see :class:`~egopress_core.data.windows.WindowConfig`).
        val_stride: stride of validation windows; null: the window length (no overlap).
        statistics_windows: windows sampled for the data statistics saved with the model.
        hands: the hand meshes the model trains and validates on, as ``egopress eval --hands``
            (:data:`~egopress_core.data.hands.HAND_SOURCES`): "annotated", "perturbed" (the
            annotation's drifting like a fit's) or "estimated" (the camera-only path), so that a
            model is trained on the kind of meshes it is evaluated, and used, with.
    """

    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    split: str = "train"
    val_split: str = "test"
    val_fraction: float = 0.1
    hand_side: str | None = None
    hand_model_path: str | None = None
    uv_obj_path: str | None = None
    image_scale: float = 1.0
    window: dict = field(default_factory=dict)
    val_stride: int | None = None
    statistics_windows: int = 256
    hands: str = "annotated"

    def __post_init__(self) -> None:
        _choice("data.split", self.split, SPLITS)
        _choice("data.val_split", self.val_split, SPLITS)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1); got {self.val_fraction}")
        if self.hand_side is not None:
            _choice("data.hand_side", self.hand_side, HAND_SIDES)
        if self.image_scale not in (1.0, 0.5, 0.25, 0.125):
            raise ConfigError(f"data.image_scale must be one of [1, 0.5, 0.25, 0.125]; got {self.image_scale}")
        from egopress_core.data.windows import WindowConfig

        self.window = _check_schema_dict("data.window", self.window, WindowConfig)
        if self.val_stride is not None and self.val_stride < 1:
            raise ConfigError(f"data.val_stride must be >= 1 or null; got {self.val_stride}")
        if self.statistics_windows < 1:
            raise ConfigError(f"data.statistics_windows must be >= 1; got {self.statistics_windows}")
        from egopress_core.data.hands import HAND_SOURCES

        _choice("data.hands", self.hands, HAND_SOURCES)


@dataclass
class ModelConfig(_Section):
    """Which model to train.

    Attributes:
        kind: "egopressdiff" (the diffusion model) or "bin_classifier" (the PressureVision-style
            per-frame baseline); :mod:`egopress_core.model.kinds`.
        preset: a preset of that kind: "tiny", "compact" or "paper" for EgoPressDiff
            (:mod:`egopress_core.model.config`), "tiny" or "compact" for the baseline.
        overrides: keys of the kind's config class replacing the preset's values.
        pretrained_svd: local Stable Video Diffusion folder to initialise a paper-size
            EgoPressDiff from.
        init_from: a checkpoint folder (``save_pretrained``) of the same kind to fine-tune;
            same architecture, except that an EgoPressDiff without ``use_uv_geometry`` may be
            fine-tuned with it (:func:`~egopress_core.model.surgery.with_uv_geometry`).
    """

    kind: str = "egopressdiff"
    preset: str = "compact"
    overrides: dict = field(default_factory=dict)
    pretrained_svd: str | None = None
    init_from: str | None = None

    def __post_init__(self) -> None:
        from egopress_core.model.kinds import MODEL_KINDS

        _choice("model.kind", self.kind, tuple(MODEL_KINDS))
        kind = MODEL_KINDS[self.kind]
        presets = tuple(kind.presets)
        if self.preset not in presets:
            raise ConfigError(f"model.preset must be one of {list(presets)} for model.kind={self.kind!r}. "
                              f"Got {self.preset!r}")
        self.overrides = _check_schema_dict("model.overrides", self.overrides, kind.config_class)
        if self.pretrained_svd is not None and not kind.supports_pretrained_svd:
            raise ConfigError(f"model.pretrained_svd does not apply to model.kind={self.kind!r}")
        if self.pretrained_svd is not None and self.init_from is not None:
            raise ConfigError("model.pretrained_svd and model.init_from are exclusive: set one")
        if self.pretrained_svd is not None and self.preset != "paper":
            raise ConfigError(f"model.pretrained_svd needs model.preset='paper'; got {self.preset!r}")

    @property
    def model_kind(self):
        """The :class:`~egopress_core.model.kinds.ModelKind` of ``kind``."""
        from egopress_core.model.kinds import model_kind

        return model_kind(self.kind)


@dataclass
class OptimConfig(_Section):
    """AdamW with warm-up and a cosine (or other diffusers) learning-rate schedule.

    Attributes:
        lr: peak learning rate.
        betas, weight_decay, eps: AdamW.
        lr_schedule: "cosine" (to 0 at max_steps), "constant_with_warmup" or "linear".
        warmup_steps: linear warm-up from 0 to lr, in optimizer steps.
        max_steps: optimizer steps of the run.
        batch_size: windows per process per micro-batch.
        grad_accumulation_steps: micro-batches per optimizer step.
        max_grad_norm: clip the global gradient norm to this (null: no clipping).
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    eps: float = 1e-8
    lr_schedule: str = "cosine"
    warmup_steps: int = 100
    max_steps: int = 1000
    batch_size: int = 2
    grad_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        _positive("optim.lr", self.lr)
        for i, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"optim.betas[{i}] must be in [0, 1); got {beta}")
        _positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        _positive("optim.eps", self.eps)
        _choice("optim.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0; got {self.warmup_steps}")
        for name in ("max_steps", "batch_size", "grad_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"optim.{name} must be >= 1; got {getattr(self, name)}")
        if self.max_grad_norm is not None:
            _positive("optim.max_grad_norm", self.max_grad_norm)


@dataclass
class EMAConfig(_Section):
    """EMA of the trainable weights (diffusers' EMAModel); the final model holds the EMA.

    Attributes:
        enabled: keep an EMA.
        decay: maximum decay.
        warmup: grow the decay as ``1 - (1 + step / inv_gamma) ** -power`` (short runs need it).
        power, inv_gamma: the warm-up curve.
        update_after_step: EMA equals the weights until this optimizer step.
    """

    enabled: bool = True
    decay: float = 0.999
    warmup: bool = True
    power: float = 0.75
    inv_gamma: float = 1.0
    update_after_step: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.decay < 1.0:
            raise ConfigError(f"ema.decay must be in (0, 1); got {self.decay}")
        _positive("ema.power", self.power)
        _positive("ema.inv_gamma", self.inv_gamma)
        if self.update_after_step < 0:
            raise ConfigError(f"ema.update_after_step must be >= 0; got {self.update_after_step}")


@dataclass
class ValidationConfig(_Section):
    """Periodic validation: the denoising loss and sampled maps scored with PressureMetrics.

    Attributes:
        every_steps: validate every this many optimizer steps and at the end (0: never).
        num_windows: held-out windows scored each time (the first ones, in order).
        batch_size: windows per sampling batch.
        scheduler, num_inference_steps, guidance_scale: the sampler.
        seed: noise seed (the same noise every validation, so curves compare weights only).
        use_ema: score the EMA weights (when EMA is on).
    """

    every_steps: int = 0
    num_windows: int = 8
    batch_size: int = 2
    scheduler: str = "ddim"
    num_inference_steps: int = 10
    guidance_scale: float = 1.0
    seed: int = 0
    use_ema: bool = True

    def __post_init__(self) -> None:
        for name in ("num_windows", "batch_size", "num_inference_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"validation.{name} must be >= 1; got {getattr(self, name)}")
        if self.every_steps < 0:
            raise ConfigError(f"validation.every_steps must be >= 0; got {self.every_steps}")
        _choice("validation.scheduler", self.scheduler, SCHEDULERS)
        if not self.guidance_scale >= 1.0:
            raise ConfigError(f"validation.guidance_scale must be >= 1; got {self.guidance_scale}")


@dataclass
class CheckpointConfig(_Section):
    """Attributes: every_steps (0: only at the end), keep_last (older ones are deleted)."""

    every_steps: int = 500
    keep_last: int = 2

    def __post_init__(self) -> None:
        if self.every_steps < 0:
            raise ConfigError(f"checkpoint.every_steps must be >= 0; got {self.every_steps}")
        if self.keep_last < 1:
            raise ConfigError(f"checkpoint.keep_last must be >= 1; got {self.keep_last}")


@dataclass
class LoggingConfig(_Section):
    """Attributes: every_steps (scalar logs), tensorboard, plot (training-curve PNG), dir
    (TensorBoard folder; null: OUT/logs)."""

    every_steps: int = 10
    tensorboard: bool = True
    plot: bool = True
    dir: str | None = None

    def __post_init__(self) -> None:
        if self.every_steps < 1:
            raise ConfigError(f"logging.every_steps must be >= 1; got {self.every_steps}")


@dataclass
class TrainConfig(_Section):
    """The whole run. See the module docstring; every field validates on construction."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    precision: str = "fp32"
    device: str = "auto"
    seed: int = 0
    num_workers: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.precision == "no":  # accelerate's spelling, which earlier configs used
            raise ConfigError("precision 'no' is spelled 'fp32' (the vocabulary of eval, label-bag and the nodes); "
                              "set precision: fp32")
        _choice("precision", self.precision, PRECISIONS)
        _choice("device", self.device, DEVICES)
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0; got {self.num_workers}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or null; got {self.threads}")
        # Model and window settings are checked now, not when the run starts.
        self.window_config(self.model_config())

    # -- derived ---------------------------------------------------------------------------------
    def model_config(self):
        """The model config of this run (an EgoPressDiffConfig or BinClassifierConfig, as
        ``model.kind`` says: preset + overrides), before the data's UV layout."""
        try:
            return self.model.model_kind.preset_config(self.model.preset, **self.model.overrides)
        except ConfigError as error:
            raise ConfigError(f"model.overrides: {error}") from None

    def window_config(self, model_config) -> "Any":
        """The training WindowConfig: data.window with the model's shapes filled in / checked."""
        from egopress_core.data.windows import WindowConfig

        values = dict(self.data.window)
        required = {"window": model_config.num_frames, "image_size": tuple(model_config.image_size),
                    "uv_size": tuple(model_config.uv_size)}
        model_keys = {"window": "num_frames", "image_size": "image_size", "uv_size": "uv_size"}
        for key, expected in required.items():
            given = values.get(key)
            if given is not None and (tuple(given) if isinstance(given, (list, tuple)) else given) != expected:
                raise ConfigError(
                    f"data.window.{key}={given!r} does not match the model's {model_keys[key]}={expected!r}: "
                    f"the model is built for windows of exactly that shape (leave data.window.{key} unset)")
            values[key] = expected
        try:
            return WindowConfig.from_dict(values)
        except ConfigError as error:
            raise ConfigError(f"data.window: {error}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the resolved config as YAML atomically."""
        return write_text_atomic(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))


# ----------------------------------------------------------------------------------------------
# Loading and overrides
# ----------------------------------------------------------------------------------------------


def config_dirs() -> list[Path]:
    """Where named configs are looked up, in order: the source tree's ``config/``, the ROS
    install (``<prefix>/share/egopress_ros/config`` of each ``AMENT_PREFIX_PATH`` entry), and
    ``<sys.prefix>/share/egopress/config`` (pip installs)."""
    import sys

    dirs = [CONFIG_DIR]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        dirs.append(Path(prefix) / "share" / "egopress_ros" / "config")
    dirs.append(Path(sys.prefix) / "share" / "egopress" / "config")
    return dirs


def resolve_config_path(name_or_path: str | os.PathLike) -> Path:
    """A name of :data:`NAMED_CONFIGS` -> ``<config dir>/<name>.yaml``; anything else is a file path."""
    text = os.fspath(name_or_path)
    if text in NAMED_CONFIGS:
        for directory in config_dirs():
            if (directory / f"{text}.yaml").is_file():
                return directory / f"{text}.yaml"
        raise ConfigError(f"named config {text!r} not found in {[str(d) for d in config_dirs()]}")
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"--config {text!r} is neither one of {list(NAMED_CONFIGS)} nor a YAML file")
    return path


def read_yaml_mapping(path: Path) -> dict:
    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read config {path}: {error}") from error
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config {path} must hold a mapping at the top level")
    return values


BASE_KEY = "base"


def read_config_file(path: Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A config file's mapping with its ``base`` resolved.

    ``base: NAME`` (a named config, or a YAML path relative to this file) starts from that config;
    every top-level key this file gives replaces the base's value whole (so a ``model`` section
    brings its own ``overrides``, never the base's keys of another model kind). Bases may chain.

    Raises:
        ConfigError: unreadable file, a base that is not a string, a missing base, a cycle.
    """
    path = path.resolve()
    if path in _chain:
        raise ConfigError(f"config {path}: 'base' chain loops ({' -> '.join(str(p) for p in (*_chain, path))})")
    values = read_yaml_mapping(path)
    base = values.pop(BASE_KEY, None)
    if base is None:
        return values
    if not isinstance(base, str) or not base:
        raise ConfigError(f"config {path}: base must be a config name or a YAML path; got {base!r}")
    if base in NAMED_CONFIGS:
        base_path = resolve_config_path(base)
    else:
        base_path = path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"config {path}: base {base!r} is neither one of {list(NAMED_CONFIGS)} nor a YAML file "
                              f"next to it")
    merged = read_config_file(base_path, (*_chain, path))
    merged.update(values)
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-4"`` -> (["optim", "lr"], "1e-4" parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must have the form key=value (e.g. optim.lr=1e-4)")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r} ({error})") from None
    return key.split("."), value


def apply_override(values: dict, path: list[str], value: Any) -> None:
    """Set ``values[path[0]][path[1]]... = value``, creating nested mappings, checking known keys."""
    key = ".".join(path)
    section_classes: Any = TrainConfig
    node = values
    for depth, part in enumerate(path[:-1]):
        if section_classes is not None:
            hints = typing.get_type_hints(section_classes)
            if part not in hints:
                prefix = ".".join(path[:depth])
                known = [f.name for f in dataclasses.fields(section_classes)]
                raise ConfigError(f"--set {key}: unknown key {part!r} in {prefix or 'the top level'}; known: {known}")
            hint = hints[part]
            section_classes = hint if dataclasses.is_dataclass(hint) else None
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(path[:depth + 1])} is not a mapping")
        node = child
    if section_classes is not None:
        hints = typing.get_type_hints(section_classes)
        if path[-1] not in hints:
            prefix = ".".join(path[:-1])
            known = [f.name for f in dataclasses.fields(section_classes)]
            raise ConfigError(f"--set {key}: unknown key {path[-1]!r} in {prefix or 'the top level'}; known: {known}")
    node[path[-1]] = value


def load_train_config(
    name_or_path: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    updates: dict[str, Any] | None = None,
) -> TrainConfig:
    """Build a validated config: defaults <- YAML file <- ``--set`` overrides <- ``updates``.

    Args:
        name_or_path: a named config (:data:`NAMED_CONFIGS`), a YAML path, or None
            for the defaults.
        overrides: ``"key.path=value"`` strings (YAML-typed values).
        updates: ``{"key.path": value}`` set last (what dedicated CLI flags such as ``--data``
            map to).
    """
    values = read_config_file(resolve_config_path(name_or_path)) if name_or_path is not None else {}
    for text in overrides:
        path, value = parse_override(text)
        apply_override(values, path, value)
    for key, value in (updates or {}).items():
        apply_override(values, key.split("."), value)
    return TrainConfig.from_dict(values)
