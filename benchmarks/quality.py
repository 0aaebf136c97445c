"""Quality benchmark: EgoPressDiff vs the PressureVision-style per-frame baseline, and ablations.

Trains (or takes checkpoints of) every variant with the same data, steps, batch size, optimizer
and schedule, scores each on a held-out synthetic split with ``egopress_core.evaluation`` (the
same sampler settings for all) and writes the comparison (issue 6; metrics: docs/design.md, "Metrics"):

    full               EgoPressDiff as the config says
    no_depth           model.overrides.use_depth=false
    no_vertices        model.overrides.use_vertices=false (and so dc_calibration=false: no vertex
                       branch is left to calibrate)
    no_pose_net        model.overrides.use_pose_net=false
    no_dc_calibration  model.overrides.dc_calibration=false (vertex branch added as a plain sum)
    uv_geometry        model.overrides.use_uv_geometry=true: the UV-aligned conditioning added
                       (an addition, not an ablation: not counted in "every ablation worse")
    baseline           the per-frame bin classifier (model.kind=bin_classifier), the baseline
                       config (``baseline_<config>``: every section but ``model`` from ``<config>``)

Protocol (issue 22): every variant trains and is scored with the same kind of hand meshes,
``--hands`` (default ``perturbed``: the annotation's under a smooth rigid drift of a fit's error
size, since users' meshes come from a detector and a fit; ``estimated`` runs the camera-only path,
``annotated`` gives the old protocol). The generated held-out set holds, besides the training
mix, the weak-evidence gestures (``--eval-gestures``, default ``all``: slow onsets, hovering a few
millimetres up, sliding presses; ``egopress_core/data/synthetic/gestures.py``), and the ratio to
the baseline is reported for each group of gestures too; ``egopress eval``'s per-factor report
adds how much of the contact the camera saw (``contact_visible_share``).

Metrics per variant: contact IoU, volumetric IoU, MAE (kPa), temporal accuracy, total-force
error (N), flicker (kPa), contact onset / release timing error (frames) and force correlation,
pooled over the held-out frames; then Vol IoU(full) / Vol IoU(baseline) with a bootstrap interval
of the ratio of per-sequence means, each variant relative to full, and a paired bootstrap over
held-out sequences of the per-sequence Vol IoU difference (variant - full) so "measurably worse"
means a 95% interval below zero.

Outputs in ``--out``: ``quality.json`` (everything, with the command and the machine),
``quality.md`` (the table), ``eval/<variant>.json`` (+ ``.png`` figures unless --no-figures)
from ``egopress eval``'s code, ``runs/<variant>/`` (training runs), ``data/`` (generated data).
Re-running the same command reuses finished runs and their scores, and resumes interrupted runs,
so variants can be trained by separate processes (disjoint ``--variants``, the same ``--out``,
explicit ``--train-data`` / ``--data``) and gathered by one last run over all of them.

Examples::

    # Smoke run, ~1-2 minutes: tiny configs, tiny generated data, a few steps.
    OMP_NUM_THREADS=1 python benchmarks/quality.py --quick --out /tmp/quality-quick

    # The real comparison: compact configs, same training data for every variant.
    OMP_NUM_THREADS=1 python benchmarks/quality.py --out runs/quality --config compact \\
        --train-data data/train --val-data data/val --train-steps 1200

    # Score existing checkpoints only (variants without one are skipped unless --train-steps).
    python benchmarks/quality.py --out runs/quality --data data/heldout \\
        --checkpoint full=runs/compact/model --checkpoint baseline=runs/baseline/model
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/quality.py` from a source checkout
    sys.path.insert(0, str(REPO))

from egopress_core.data.hands import HAND_SOURCES  # noqa: E402
from egopress_core.errors import ConfigError, EgoPressError  # noqa: E402

# Metrics shown in the table, in order: (report key, column title, higher is better).
METRICS = (
    ("contact_iou", "contact IoU", True),
    ("volumetric_iou", "Vol IoU", True),
    ("mae_kpa", "MAE (kPa)", False),
    ("temporal_accuracy", "temporal acc.", True),
    ("force_mae_n", "force MAE (N)", False),
    ("flicker_kpa", "flicker (kPa)", False),
    ("onset_error_frames", "onset err. (frames)", False),
    ("release_error_frames", "release err. (frames)", False),
    ("force_correlation", "force corr.", True),
)
# The goals.
VOL_IOU_RATIO_GOAL = 1.34
TEMPORAL_ACCURACY_GOAL = 0.95
BOOTSTRAP_SAMPLES = 2000
GOALS = {
    "vol_iou_ratio": f"Vol IoU(EgoPressDiff) >= {VOL_IOU_RATIO_GOAL} x Vol IoU(baseline)",
    "mae_below_baseline": "MAE(EgoPressDiff) < MAE(baseline)",
    "temporal_accuracy": f"temporal accuracy of EgoPressDiff >= {TEMPORAL_ACCURACY_GOAL}",
    "ablations_worse": "every ablation measurably worse (per-sequence Vol IoU, 95% interval below 0)",
}
# Below this many held-out sequences a bootstrap interval over sequences means nothing.
BOOTSTRAP_MIN_SEQUENCES = 5

# Settings that make no difference to the trained weights (a finished run is reused despite them).
IGNORED_FOR_REUSE = ("threads", "num_workers", "logging.", "checkpoint.", "validation.every_steps", "device")


@dataclass(frozen=True)
class Variant:
    """One trained model of the comparison.

    Attributes:
        name: key on the command line (``--variants``, ``--checkpoint NAME=DIR``) and in outputs.
        label: what it is, for the table.
        baseline: the per-frame bin classifier (trained with the baseline config).
        model_overrides: EgoPressDiffConfig keys set on top of full's config.
        ablation: something of full taken away (counted in the "every ablation worse" goal).
    """

    name: str
    label: str
    baseline: bool = False
    model_overrides: dict[str, Any] = field(default_factory=dict)
    ablation: bool = True


def define_variants() -> dict[str, Variant]:
    """The variants by name, in the table's order."""
    return {
        "full": Variant("full", "EgoPressDiff"),
        "no_depth": Variant("no_depth", "without depth", model_overrides={"use_depth": False}),
        "no_vertices": Variant("no_vertices", "without vertices",
                               model_overrides={"use_vertices": False, "dc_calibration": False}),
        "no_pose_net": Variant("no_pose_net", "without PoseNet", model_overrides={"use_pose_net": False}),
        "no_dc_calibration": Variant("no_dc_calibration", "without DC calibration (plain sum)",
                                     model_overrides={"dc_calibration": False}),
        "uv_geometry": Variant("uv_geometry", "with UV-aligned geometry (beyond the paper)",
                               model_overrides={"use_uv_geometry": True}, ablation=False),
        "baseline": Variant("baseline", "per-frame baseline (9 bins, PressureVision-style)", baseline=True),
    }


DEFAULT_VARIANTS = tuple(define_variants())


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="benchmark folder (reused on re-runs)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny configs, tiny generated data, few steps (~1-2 minutes): a smoke run, not a result")
    parser.add_argument("--config", default=None,
                        help="EgoPressDiff training config (default compact; tiny with --quick)")
    parser.add_argument("--baseline-config", default=None,
                        help="baseline training config (default baseline_<config> for a named config)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated subset of {list(DEFAULT_VARIANTS)} (default: all)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=DIR",
                        help="use this checkpoint for variant NAME instead of training it (repeatable)")
    parser.add_argument("--train-steps", type=int, default=None, metavar="N",
                        help="train variants without --checkpoint for N optimizer steps (default: the config's "
                             "optim.max_steps; 20 with --quick)")
    parser.add_argument("--baseline-train-steps", type=int, default=None, metavar="N",
                        help="steps of the baseline (default: --train-steps, the same budget in steps)")
    parser.add_argument("--no-train", action="store_true", help="only score --checkpoint variants; skip the rest")
    parser.add_argument("--train-data", action="append", default=None, metavar="DIR",
                        help="training data (repeatable; default: generated into OUT/data/train)")
    parser.add_argument("--val-data", action="append", default=None, metavar="DIR",
                        help="validation data for periodic validation during training (repeatable)")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="held-out evaluation data (default: generated into OUT/data/heldout with --eval-seed)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="training override for every variant; model.* keys go to the EgoPressDiff variants only")
    parser.add_argument("--baseline-set", action="append", default=[], metavar="KEY=VALUE",
                        help="training override for the baseline only (e.g. model.overrides.vertex_hidden_dim=128)")
    # Generated data.
    parser.add_argument("--train-sequences", type=int, default=None, help="generated training sequences (default 64)")
    parser.add_argument("--train-frames", type=int, default=None,
                        help="frames per generated training sequence (default 48)")
    parser.add_argument("--train-seed", type=int, default=1, help="seed of generated training data (default 1)")
    parser.add_argument("--eval-sequences", type=int, default=None,
                        help="generated held-out sequences (default: two per --eval-gestures gesture)")
    parser.add_argument("--eval-gestures", nargs="+", default=["all"], metavar="GESTURE",
                        help="gestures of the generated held-out data: names, 'default' (the training mix), 'weak' "
                             "(the weak-evidence gestures) or 'all' (both; the default)")
    parser.add_argument("--eval-frames", type=int, default=None, help="frames per generated sequence (default 48)")
    parser.add_argument("--eval-seed", type=int, default=5000,
                        help="seed of the generated held-out data; must differ from every training seed (default 5000)")
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="image size of generated data (default 256 256; 64 64 with --quick)")
    parser.add_argument("--workers", type=int, default=1, help="data generation processes (default 1)")
    # Evaluation.
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default 10; 5 with --quick)")
    parser.add_argument("--scheduler", default="ddim", help="ddim, dpmsolver++ or euler (default ddim)")
    parser.add_argument("--guidance-scale", type=float, default=1.0)
    parser.add_argument("--stride", type=int, default=None, help="window step of the whole-sequence estimate")
    parser.add_argument("--eval-noise-seed", type=int, default=0, help="sampler noise seed (default 0)")
    parser.add_argument("--threshold", type=float, default=1.0, help="contact threshold, kPa (default 1.0)")
    parser.add_argument("--hands", choices=HAND_SOURCES, default="perturbed",
                        help="hand meshes every variant trains and is scored with (data.hands, egopress eval --hands): "
                             "perturbed (default: the annotation's drifting like a fit's, what users' meshes are like), "
                             "estimated (the camera-only path) or annotated")
    parser.add_argument("--no-figures", action="store_true", help="skip the per-variant evaluation figures")
    parser.add_argument("--rescore", action="store_true",
                        help="evaluate again even where OUT/eval/<variant>.json scored the same checkpoint, data "
                             "and options")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for training and evaluation (default: the config's threads)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


@dataclass
class Settings:
    """The resolved command line."""

    out: Path
    quick: bool
    config: str
    baseline_config: str
    variants: list[str]
    checkpoints: dict[str, Path]
    train_steps: int | None
    baseline_train_steps: int | None
    train: bool
    train_data: list[str] | None
    val_data: list[str] | None
    data: str | None
    overrides: list[str]
    model_overrides: list[str]
    baseline_overrides: list[str]
    train_sequences: int
    train_frames: int
    train_seed: int
    eval_sequences: int
    eval_frames: int
    eval_seed: int
    eval_gestures: tuple[str, ...]
    image_size: tuple[int, int]
    workers: int
    threads: int | None
    figures: bool
    rescore: bool
    progress: bool
    eval_options: Any


def resolve_settings(args: argparse.Namespace) -> Settings:
    from egopress_core.data.synthetic.generator import ALL_GESTURES, expand_gestures

    eval_gestures = expand_gestures(args.eval_gestures)
    unknown = [name for name in eval_gestures if name not in ALL_GESTURES]
    if unknown:
        raise ConfigError(f"--eval-gestures must name gestures of {ALL_GESTURES} or 'default', 'weak', 'all'. Got {unknown}")
    """Defaults (quick or full), parsed ``NAME=DIR`` pairs and checked values; ConfigError otherwise."""
    from egopress_core.evaluation import EvalOptions
    from egopress_core.options import OFFLINE_SAMPLING, ContactOptions
    from egopress_core.training.config import NAMED_CONFIGS

    quick = args.quick
    config = args.config or ("tiny" if quick else "compact")
    if args.baseline_config:
        baseline_config = args.baseline_config
    elif config in NAMED_CONFIGS and f"baseline_{config}" in NAMED_CONFIGS:
        baseline_config = f"baseline_{config}"
    else:
        raise ConfigError(f"--baseline-config is needed: there is no named baseline config for --config {config!r}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in DEFAULT_VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"--variants must be a comma-separated subset of {list(DEFAULT_VARIANTS)}. "
                          f"Got {args.variants!r}")
    if len(set(variants)) != len(variants):
        raise ConfigError(f"--variants lists a variant twice: {args.variants!r}")
    checkpoints: dict[str, Path] = {}
    for text in args.checkpoint:
        name, sep, directory = text.partition("=")
        if not sep or name not in DEFAULT_VARIANTS or not directory:
            raise ConfigError(f"--checkpoint must be NAME=DIR with NAME one of {list(DEFAULT_VARIANTS)}. Got {text!r}")
        if not (Path(directory) / "config.json").is_file():
            raise ConfigError(f"--checkpoint {name}={directory}: no config.json there "
                              "(pass a model folder, e.g. RUN/model)")
        checkpoints[name] = Path(directory)
    for name in ("train_steps", "baseline_train_steps", "train_sequences", "train_frames", "eval_sequences",
                 "eval_frames", "steps", "workers", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1. Got {value}")
    model_overrides = [o for o in args.overrides if o.strip().startswith("model.")]
    overrides = [o for o in args.overrides if not o.strip().startswith("model.")]
    train_steps = args.train_steps if args.train_steps is not None else (20 if quick else None)
    options = EvalOptions(
        sampling=dataclasses.replace(OFFLINE_SAMPLING, num_inference_steps=args.steps or (5 if quick else 10),
                                     scheduler=args.scheduler, guidance_scale=args.guidance_scale, stride=args.stride,
                                     seed=args.eval_noise_seed),
        contact=ContactOptions(contact_threshold_kpa=args.threshold),
        hands=args.hands,
    )
    # Every variant trains on the kind of meshes it is scored with.
    overrides = [f"data.hands={args.hands}", *overrides]
    if quick:
        # No validation, checkpoints only at the end, no curves: the held-out scores are the result.
        overrides = ["validation.every_steps=0", "checkpoint.every_steps=0", "logging.tensorboard=false",
                     "logging.plot=false", "data.statistics_windows=8", *overrides]
    return Settings(
        out=Path(args.out), quick=quick, config=config, baseline_config=baseline_config, variants=variants,
        checkpoints=checkpoints, train_steps=train_steps,
        baseline_train_steps=args.baseline_train_steps if args.baseline_train_steps is not None else train_steps,
        train=not args.no_train, train_data=args.train_data, val_data=args.val_data, data=args.data,
        overrides=overrides, model_overrides=model_overrides, baseline_overrides=list(args.baseline_set),
        train_sequences=args.train_sequences or (4 if quick else 64),
        train_frames=args.train_frames or (16 if quick else 48),
        train_seed=args.train_seed, eval_sequences=args.eval_sequences or (2 if quick else 2 * len(eval_gestures)),
        eval_frames=args.eval_frames or (16 if quick else 48), eval_seed=args.eval_seed, eval_gestures=eval_gestures,
        image_size=tuple(args.image_size) if args.image_size else ((64, 64) if quick else (256, 256)),
        workers=args.workers, threads=args.threads, figures=not (args.no_figures or quick), rescore=args.rescore,
        progress=not args.no_progress, eval_options=options,
    )


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def synthetic_seed(folder: str | os.PathLike) -> int | None:
    """The generator seed of a synthetic data folder (None for other data)."""
    path = Path(folder) / "dataset.json"
    try:
        return int(json.loads(path.read_text())["config"]["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def generate(folder: Path, sequences: int, frames: int, seed: int, settings: Settings, what: str,
             gestures: tuple[str, ...] | None = None) -> str:
    """Synthetic data into ``folder`` (resumed if partly there; ``gestures`` None: the default
    mix); returns the folder."""
    from egopress_core.data.synthetic.generator import GESTURES, SynthConfig, generate_dataset

    print(f"[quality] generating {what}: {sequences} sequences x {frames} frames, seed {seed} -> {folder}", flush=True)
    config = SynthConfig(sequences=sequences, frames=frames, seed=seed, image_sizes=(settings.image_size,),
                         gestures=gestures or GESTURES)
    generate_dataset(config, folder, workers=settings.workers, progress=settings.progress)
    return str(folder)


def prepare_data(settings: Settings, need_training: bool) -> tuple[list[str] | None, list[str] | None, str]:
    """Training, validation and held-out folders: given, or generated under OUT/data.

    Raises:
        ConfigError: the held-out data shares a generator seed with the training data.
    """
    train_data, val_data = settings.train_data, settings.val_data
    if need_training and train_data is None:
        train_data = [generate(settings.out / "data" / "train", settings.train_sequences, settings.train_frames,
                               settings.train_seed, settings, "training data")]
    heldout = settings.data
    if heldout is None:
        heldout = generate(settings.out / "data" / "heldout", settings.eval_sequences, settings.eval_frames,
                           settings.eval_seed, settings, "held-out data", settings.eval_gestures)
    heldout_seed = synthetic_seed(heldout)
    for folder in [*(train_data or []), *(val_data or [])]:
        seed = synthetic_seed(folder)
        if heldout_seed is not None and seed == heldout_seed:
            raise ConfigError(f"the held-out data {heldout} and the training data {folder} were generated with the "
                              f"same seed {seed}: they share sequences (pass another --eval-seed)")
    return train_data, val_data, heldout


# ----------------------------------------------------------------------------------------------
# Training and scoring
# ----------------------------------------------------------------------------------------------


def variant_config(variant: Variant, settings: Settings, train_data: list[str], val_data: list[str] | None):
    """The TrainConfig of one variant: its config file, the shared overrides, its own model keys."""
    from egopress_core.training.config import load_train_config

    updates: dict[str, Any] = {"data.train": list(train_data)}
    if val_data:
        updates["data.val"] = list(val_data)
    steps = settings.baseline_train_steps if variant.baseline else settings.train_steps
    if steps is not None:
        updates["optim.max_steps"] = steps
    if settings.threads is not None:
        updates["threads"] = settings.threads
    if variant.baseline:
        return load_train_config(settings.baseline_config, [*settings.overrides, *settings.baseline_overrides], updates)
    for key, value in variant.model_overrides.items():
        updates[f"model.overrides.{key}"] = value
    return load_train_config(settings.config, [*settings.overrides, *settings.model_overrides], updates)


def _differences_that_matter(saved: dict, wanted: dict) -> dict:
    from egopress_core.options import config_differences

    return {key: change for key, change in config_differences(saved, wanted).items()
            if not any(key == ignored or key.startswith(ignored) for ignored in IGNORED_FOR_REUSE)}


def train_variant(variant: Variant, config: Any, settings: Settings) -> dict[str, Any]:
    """Train ``variant`` into OUT/runs/<name> (reusing a finished run of the same config, resuming
    an interrupted one) and describe the run."""
    from egopress_core.training.checkpoint import TRAIN_CONFIG_NAME, latest_checkpoint
    from egopress_core.training.config import read_yaml_mapping
    from egopress_core.training.trainer import MODEL_DIR, train

    run = settings.out / "runs" / variant.name
    model_dir = run / MODEL_DIR
    if (model_dir / "config.json").is_file():
        changed = _differences_that_matter(read_yaml_mapping(model_dir / TRAIN_CONFIG_NAME), config.to_dict())
        if changed:
            listed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise ConfigError(f"{run} holds a finished run of another config ({listed}): remove it or use "
                              "another --out")
        print(f"[quality] {variant.name}: reusing the finished run in {run}", flush=True)
        return {"run": str(run), "reused": True, **_history_summary(run)}
    resume = latest_checkpoint(run) is not None
    print(f"[quality] {variant.name}: {'resuming' if resume else 'training'} {config.model.kind} "
          f"({config.model.preset}) for {config.optim.max_steps} steps in {run}", flush=True)
    started = time.perf_counter()
    result = train(config, run, resume=resume, progress=settings.progress)
    return {"run": str(run), "reused": False, "wall_seconds": round(time.perf_counter() - started, 1),
            **_history_summary(run), "steps_per_second": result.steps_per_second}


def _history_summary(run: Path) -> dict[str, Any]:
    """Steps, speed and last loss of a run from its history.jsonl."""
    from egopress_core.training.history import HISTORY_NAME

    records = [json.loads(line) for line in (run / HISTORY_NAME).read_text().splitlines() if line.strip()]
    trained = [r for r in records if r.get("kind") == "train"]
    if not trained:
        return {"steps": 0}
    last = trained[-1]
    return {"steps": int(last["step"]), "steps_per_second": last.get("steps_per_s"), "final_loss": last.get("loss")}


def check_checkpoint(variant: Variant, directory: Path) -> dict[str, Any]:
    """The model config (dict) of a variant's checkpoint, which must be of the variant's kind and
    carry its ablation switches (ConfigError otherwise)."""
    from egopress_core.model.kinds import checkpoint_kind

    kind = checkpoint_kind(directory)
    wanted = "bin_classifier" if variant.baseline else "egopressdiff"
    if kind.name != wanted:
        raise ConfigError(f"{variant.name} checkpoint {directory} holds a model.kind={kind.name!r} model; the "
                          f"{variant.name} variant needs {wanted!r}")
    model_config = kind.load_config(directory)
    for key, value in variant.model_overrides.items():
        if getattr(model_config, key) != value:
            raise ConfigError(f"{variant.name} checkpoint {directory} has {key}={getattr(model_config, key)!r}; "
                              f"the {variant.name} variant needs {key}={value!r}")
    return model_config.to_dict()


# Where each option of the flat EvalOptions (reports written before the options were grouped by
# concern) lives in today's nested one: (group, field); group None is EvalOptions' own field.
FLAT_EVAL_OPTIONS = {
    "num_inference_steps": ("sampling", "num_inference_steps"),
    "scheduler": ("sampling", "scheduler"),
    "guidance_scale": ("sampling", "guidance_scale"),
    "stride": ("sampling", "stride"),
    "seed": ("sampling", "seed"),
    "window_batch_size": ("sampling", "window_batch_size"),
    "contact_threshold_kpa": ("contact", "contact_threshold_kpa"),
    "crop": ("crop", "crop"),
    "device": ("runtime", "device"),
    "precision": ("runtime", "precision"),
    "max_sequences": (None, "max_sequences"),
}


def eval_options_dict(saved: dict[str, Any]) -> dict[str, Any]:
    """The options of an ``egopress eval`` report as today's nested ``asdict(EvalOptions)``.

    Options the report does not name (added to EvalOptions since it was written) count as their
    defaults. Both layouts are read: the nested one (``{"sampling": {...}, ...}``) and the flat
    one of older reports (``{"scheduler": ..., "precision": ...}``). A key neither layout knows
    is kept as it is, so such a report never matches today's options.
    """
    from egopress_core.evaluation import EvalOptions

    options = dataclasses.asdict(EvalOptions())
    for key, value in saved.items():
        if isinstance(options.get(key), dict) and isinstance(value, dict):
            options[key] = {**options[key], **value}
        elif key in FLAT_EVAL_OPTIONS and not isinstance(value, dict):
            group, name = FLAT_EVAL_OPTIONS[key]
            if group is None:
                options[name] = value
            else:
                options[group] = {**options[group], name: value}
        else:
            options[key] = value
    return options


def cached_report(path: Path, checkpoint: Path, heldout: str, settings: Settings) -> dict[str, Any] | None:
    """An earlier report of the same checkpoint (not rewritten since), data and options, or None."""
    from egopress_core.model.checkpoint import WEIGHTS_NAME

    try:
        report = json.loads(path.read_text())
        fresh = path.stat().st_mtime >= (checkpoint / WEIGHTS_NAME).stat().st_mtime
    except (OSError, ValueError):
        return None
    options = eval_options_dict(report.get("options", {}))
    same = (report.get("checkpoint") == str(checkpoint) and report.get("data") == str(heldout)
            and json.loads(json.dumps(options)) == json.loads(json.dumps(dataclasses.asdict(settings.eval_options))))
    figure_ok = not settings.figures or path.with_suffix(".png").is_file()
    return report if fresh and same and figure_ok else None


def score(variant: Variant, checkpoint: Path, heldout: str, settings: Settings) -> dict[str, Any]:
    """``egopress eval`` of one checkpoint on the held-out data (an up-to-date earlier report is
    reused unless ``--rescore``); the report plus the model's trainable parameter count."""
    from egopress_core.evaluation import evaluate
    from egopress_core.model import count_parameters
    from egopress_core.pipeline import load_pressure_model

    path = settings.out / "eval" / f"{variant.name}.json"
    report = None if settings.rescore else cached_report(path, checkpoint, heldout, settings)
    if report is not None:
        print(f"[quality] {variant.name}: reusing the scores in {path}", flush=True)
    else:
        print(f"[quality] {variant.name}: scoring {checkpoint} on {heldout}", flush=True)
        report = evaluate(checkpoint, heldout, path, settings.eval_options, figure=settings.figures,
                          progress=settings.progress)
    report["trainable_parameters"] = count_parameters(load_pressure_model(checkpoint), trainable_only=True)
    return report


# ----------------------------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


def paired_bootstrap(variant: dict[str, Any], reference: dict[str, Any], key: str = "volumetric_iou",
                     samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any] | None:
    """Mean per-sequence ``key`` difference (variant - reference) over the sequences both score,
    with a 95% percentile bootstrap interval over sequences (sequences, not frames, are the
    independent units); None with fewer than :data:`BOOTSTRAP_MIN_SEQUENCES` sequences."""
    names = sorted(set(variant) & set(reference))
    pairs = [(variant[n].get(key), reference[n].get(key)) for n in names]
    differences = np.array([a - b for a, b in pairs if a is not None and b is not None], dtype=np.float64)
    if len(differences) < BOOTSTRAP_MIN_SEQUENCES:
        return None
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(samples, len(differences)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"metric": key, "sequences": int(len(differences)), "mean_difference": float(differences.mean()),
            "ci95": [float(low), float(high)], "worse": bool(high < 0.0), "better": bool(low > 0.0)}


def ratio_bootstrap(variant: dict[str, Any], reference: dict[str, Any], key: str = "volumetric_iou",
                    samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any] | None:
    """Ratio of the mean per-sequence ``key`` (variant / reference) over the sequences both
    score, with a 95% percentile bootstrap interval over sequences resampled in pairs; None with
    fewer than :data:`BOOTSTRAP_MIN_SEQUENCES` sequences."""
    names = sorted(set(variant) & set(reference))
    pairs = np.array([(variant[n].get(key), reference[n].get(key)) for n in names
                      if variant[n].get(key) is not None and reference[n].get(key) is not None], dtype=np.float64)
    if len(pairs) < BOOTSTRAP_MIN_SEQUENCES or pairs[:, 1].mean() <= 0:
        return None
    rng = np.random.default_rng(seed)
    drawn = pairs[rng.integers(0, len(pairs), size=(samples, len(pairs)))]
    reference_means = drawn[:, :, 1].mean(axis=1)
    ratios = drawn[:, :, 0].mean(axis=1) / np.where(reference_means > 0, reference_means, np.nan)
    low, high = np.nanpercentile(ratios, [2.5, 97.5])
    return {"metric": key, "sequences": int(len(pairs)), "ratio_of_means": float(pairs[:, 0].mean() / pairs[:, 1].mean()),
            "ci95": [float(low), float(high)]}


def heldout_gestures(folder: str | os.PathLike) -> dict[str, str] | None:
    """Sequence name -> gesture of a synthetic held-out folder (None for other data)."""
    from egopress_core.data.synthetic.storage import SyntheticDataset

    if synthetic_seed(folder) is None:
        return None
    return {sequence.name: sequence.meta.get("gesture") for sequence in SyntheticDataset(folder).sequences()}


def gesture_group(gesture: str | None) -> str:
    from egopress_core.data.synthetic.generator import WEAK_EVIDENCE_GESTURES

    return "weak-evidence gestures" if gesture in WEAK_EVIDENCE_GESTURES else "default gestures"


def compare(results: dict[str, dict[str, Any]], gestures: dict[str, str] | None = None) -> dict[str, Any]:
    """Ratios to the baseline and to full, paired intervals, and the issue's goals (:data:`GOALS`:
    True met, False missed, None undefined). With the held-out sequences' ``gestures``, the ratio
    to the baseline per gesture group (:func:`gesture_group`) as well."""
    goals: dict[str, bool | None] = {}
    comparison: dict[str, Any] = {"relative_to_full": {}, "goals": goals}
    full = results.get("full")
    baseline = results.get("baseline")
    if full and baseline:
        f, b = full["metrics"], baseline["metrics"]
        ratio = _ratio(f.get("volumetric_iou"), b.get("volumetric_iou"))
        comparison["volumetric_iou_ratio_vs_baseline"] = ratio
        comparison["contact_iou_ratio_vs_baseline"] = _ratio(f.get("contact_iou"), b.get("contact_iou"))
        comparison["mae_kpa_ratio_vs_baseline"] = _ratio(f.get("mae_kpa"), b.get("mae_kpa"))
        comparison["paired_vs_baseline"] = paired_bootstrap(full["per_sequence"], baseline["per_sequence"])
        comparison["ratio_vs_baseline_bootstrap"] = ratio_bootstrap(full["per_sequence"], baseline["per_sequence"])
        goals["vol_iou_ratio"] = None if ratio is None else ratio >= VOL_IOU_RATIO_GOAL
        if gestures:
            groups: dict[str, list[str]] = {}
            for name in sorted(set(full["per_sequence"]) & set(baseline["per_sequence"])):
                groups.setdefault(gesture_group(gestures.get(name)), []).append(name)
            comparison["by_gesture_group"] = {}
            for group, names in sorted(groups.items()):
                # Sequences both score: Vol IoU is undefined where neither truth nor estimate
                # has pressure (a hover estimated as a hover).
                scored = [n for n in names if full["per_sequence"][n].get("volumetric_iou") is not None
                          and baseline["per_sequence"][n].get("volumetric_iou") is not None]  # fmt: skip
                pick = lambda per_sequence: {n: per_sequence[n] for n in scored}  # noqa: E731
                means = {label: float(np.mean([result["per_sequence"][n]["volumetric_iou"] for n in scored])) if scored else None
                         for label, result in (("full", full), ("baseline", baseline))}  # fmt: skip
                comparison["by_gesture_group"][group] = {
                    "sequences": len(names), "scored_sequences": len(scored), "gestures": sorted({gestures.get(n) for n in names}),
                    "volumetric_iou_mean": means, "ratio_of_means": _ratio(means["full"], means["baseline"]),
                    "ratio_bootstrap": ratio_bootstrap(pick(full["per_sequence"]), pick(baseline["per_sequence"])),
                }
        if f.get("mae_kpa") is not None and b.get("mae_kpa") is not None:
            goals["mae_below_baseline"] = f["mae_kpa"] < b["mae_kpa"]
    if full:
        accuracy = full["metrics"].get("temporal_accuracy")
        goals["temporal_accuracy"] = None if accuracy is None else accuracy >= TEMPORAL_ACCURACY_GOAL
        worse_all = []
        for name, result in results.items():
            if name in ("full", "baseline"):
                continue
            entry = {key: _ratio(result["metrics"].get(key), full["metrics"].get(key)) for key, _, _ in METRICS}
            paired = entry["paired_volumetric_iou"] = paired_bootstrap(result["per_sequence"], full["per_sequence"])
            comparison["relative_to_full"][name] = entry
            if define_variants()[name].ablation:
                worse_all.append(None if paired is None else paired["worse"])
        if worse_all:
            goals["ablations_worse"] = None if None in worse_all else all(worse_all)
    return comparison


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def per_factor_lines(results: dict[str, Any]) -> list[str]:
    """Markdown table: Vol IoU and force ratio of every variant per third of the held-out sequences
    by each factor of ``egopress eval``'s per-factor report (the same sequences for every variant:
    the thirds' ranges come from the first)."""
    reports = {name: result.get("per_factor") or {} for name, result in results.items()}
    first = next(iter(reports.values()), {})
    if not first:
        return []
    names = list(reports)
    lines = ["", "Per factor (thirds of the scored sequences; Vol IoU, and predicted over true total force):", "",
             "| factor | range | " + " | ".join(f"`{name}` Vol IoU | `{name}` force" for name in names) + " |",
             "|" + "---|" * (2 + 2 * len(names))]
    for factor, groups in first.items():
        for index, group in enumerate(groups):
            cells = [factor.replace("_", " "), f"{group['range'][0]:.3g}-{group['range'][1]:.3g}"]
            for name in names:
                theirs = reports[name].get(factor, [])
                own = theirs[index] if index < len(theirs) else {}
                ratio = own.get("force_ratio")
                cells += [_fmt(own.get("volumetric_iou")), "n/a" if ratio is None else f"x{ratio:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(summary: dict[str, Any]) -> str:
    """The comparison as a markdown section (table, ratios, goals, how it was run)."""
    results, comparison = summary["results"], summary["comparison"]
    eval_options = eval_options_dict(summary["eval_options"])
    sampling = eval_options["sampling"]
    lines = [f"Command: `{summary['command']}`", "",
             f"Machine: {summary['machine']['description']}", "",
             f"Held-out data: `{summary['heldout']['path']}` ({summary['heldout']['sequences']} sequences, "
             f"{summary['heldout']['frames']} annotated frames, generator seed {summary['heldout']['seed']}); "
             f"sampler {sampling['scheduler']}, {sampling['num_inference_steps']} steps, "
             f"guidance {sampling['guidance_scale']}, contact threshold "
             f"{eval_options['contact']['contact_threshold_kpa']} kPa; hand meshes: {eval_options['hands']} "
             "(training and evaluation).", ""]
    header = ["variant", "model", *[title for _, title, _ in METRICS], "Vol IoU / full", "params (M)", "train steps",
              "steps/s"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    full_vol_iou = results["full"]["metrics"].get("volumetric_iou") if "full" in results else None
    for name, result in results.items():
        metrics = result["metrics"]
        training = result.get("training") or {}
        cells = [f"`{name}`", result["label"], *[_fmt(metrics.get(key)) for key, _, _ in METRICS],
                 _fmt(_ratio(metrics.get("volumetric_iou"), full_vol_iou), 2),
                 _fmt(result["trainable_parameters"] / 1e6, 2),
                 str(training.get("steps", "given")), _fmt(training.get("steps_per_second"), 2)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if "volumetric_iou_ratio_vs_baseline" in comparison:
        paired = comparison.get("paired_vs_baseline")
        interval = comparison.get("ratio_vs_baseline_bootstrap")
        lines.append(f"- Vol IoU(EgoPressDiff) / Vol IoU(baseline) = "
                     f"**{_fmt(comparison['volumetric_iou_ratio_vs_baseline'], 2)}** (goal >= {VOL_IOU_RATIO_GOAL})"
                     + (f"; ratio of per-sequence means {interval['ratio_of_means']:.2f}, 95% CI "
                        f"[{interval['ci95'][0]:.2f}, {interval['ci95'][1]:.2f}]" if interval else "")
                     + f"; MAE ratio {_fmt(comparison['mae_kpa_ratio_vs_baseline'], 2)}"
                     + (f"; per-sequence Vol IoU difference {paired['mean_difference']:+.3f}, 95% CI "
                        f"[{paired['ci95'][0]:+.3f}, {paired['ci95'][1]:+.3f}] over {paired['sequences']} sequences"
                        if paired else ""))
    for group, entry in comparison.get("by_gesture_group", {}).items():
        interval = entry["ratio_bootstrap"]
        means = entry["volumetric_iou_mean"]
        lines.append(f"- {group} ({entry['sequences']} sequences: {', '.join(entry['gestures'])}; "
                     f"{entry['scored_sequences']} with a Vol IoU for both): per-sequence Vol IoU "
                     f"{_fmt(means['full'])} vs {_fmt(means['baseline'])}, ratio {_fmt(entry['ratio_of_means'], 2)}"
                     + (f", 95% CI [{interval['ci95'][0]:.2f}, {interval['ci95'][1]:.2f}]" if interval
                        else f" (no interval below {BOOTSTRAP_MIN_SEQUENCES} sequences)"))
    for name, entry in comparison["relative_to_full"].items():
        paired = entry["paired_volumetric_iou"]
        verdict = ("measurably worse" if paired and paired["worse"]
                   else "measurably better" if paired and paired["better"] else "no measurable difference")
        lines.append(f"- `{name}` vs full: Vol IoU x{_fmt(entry['volumetric_iou'], 2)}, "
                     f"MAE x{_fmt(entry['mae_kpa'], 2)}"
                     + (f"; per-sequence Vol IoU difference {paired['mean_difference']:+.3f}, 95% CI "
                        f"[{paired['ci95'][0]:+.3f}, {paired['ci95'][1]:+.3f}]: {verdict}" if paired
                        else f"; no interval (fewer than {BOOTSTRAP_MIN_SEQUENCES} held-out sequences)"))
    lines += per_factor_lines(results)
    goals = comparison["goals"]
    if goals:
        lines += ["", "Goals (issue 6):"] + [
            f"- {GOALS[name]}: {'met' if ok else 'missed' if ok is not None else 'undefined'}"
            for name, ok in goals.items()]
    if summary["quick"]:
        lines += ["", "**--quick smoke run** (tiny models, a few steps, tiny data): it checks that the pipeline runs; "
                      "its numbers say nothing about the methods."]
    return "\n".join(lines) + "\n"


def machine_description(threads: int | None) -> dict[str, Any]:
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    description = (f"{model}, {os.cpu_count()} cores, no GPU used, torch {torch.__version__}, "
                   f"{threads or torch.get_num_threads()} torch thread(s)"
                   + (f", load average {load[0]:.1f} at the start" if load else ""))
    return {"description": description, "cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "load_average_start": list(load) if load else None}


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def run(settings: Settings, command: str) -> dict[str, Any]:
    """The benchmark; returns the summary written to OUT/quality.json."""
    import torch
    from tqdm.auto import tqdm

    from egopress_core.files import write_text_atomic
    from egopress_core.training.config import load_train_config

    started = time.perf_counter()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    for name, kind in ((settings.config, "egopressdiff"), (settings.baseline_config, "bin_classifier")):
        if load_train_config(name).model.kind != kind:
            raise ConfigError(f"config {name!r} trains model.kind={load_train_config(name).model.kind!r}, not {kind!r}")
    variants = define_variants()
    to_train = [name for name in settings.variants if name not in settings.checkpoints and settings.train]
    skipped = [name for name in settings.variants if name not in settings.checkpoints and not settings.train]
    train_data, val_data, heldout = prepare_data(settings, need_training=bool(to_train))

    # Every config is built (and so validated) before the first run starts.
    configs = {name: variant_config(variants[name], settings, train_data, val_data) for name in to_train}
    for name, config in configs.items():
        if name != "full" and "full" in configs and not variants[name].baseline:
            if config.model_config() == configs["full"].model_config():
                raise ConfigError(f"variant {name} is the same model as full (its switches are already set in "
                                  f"--config {settings.config}); leave it out of --variants")
    results: dict[str, dict[str, Any]] = {}
    bar = tqdm([n for n in settings.variants if n not in skipped], desc="variants", unit="variant",
               disable=not settings.progress)
    for name in bar:
        bar.set_postfix_str(name)
        variant = variants[name]
        if name in settings.checkpoints:
            checkpoint, training = settings.checkpoints[name], None
        else:
            training = train_variant(variant, configs[name], settings)
            checkpoint = Path(training["run"]) / "model"
        model_config = check_checkpoint(variant, checkpoint)
        report = score(variant, checkpoint, heldout, settings)
        results[name] = {"label": variant.label, "model": report["model"], "checkpoint": str(checkpoint),
                         "training": training, "metrics": report["metrics"], "per_sequence": report["per_sequence"],
                         "per_factor": report.get("per_factor", {}),
                         "trainable_parameters": report["trainable_parameters"], "model_config": model_config,
                         "eval_seconds": report["seconds"]}
    bar.close()
    if not results:
        raise ConfigError("nothing to score: give --checkpoint NAME=DIR or let variants train (drop --no-train)")

    first = next(iter(results.values()))
    gestures = heldout_gestures(heldout)
    summary = {
        "command": command,
        "quick": settings.quick,
        "machine": machine_description(settings.threads),
        "configs": {"egopressdiff": settings.config, "baseline": settings.baseline_config,
                    "overrides": settings.overrides, "model_overrides": settings.model_overrides,
                    "baseline_overrides": settings.baseline_overrides},
        "train_data": train_data, "val_data": val_data,
        "heldout": {"path": heldout, "seed": synthetic_seed(heldout), "sequences": len(first["per_sequence"]),
                    "frames": int(first["metrics"]["frames"]), "gestures": gestures},
        "eval_options": dataclasses.asdict(settings.eval_options),
        "skipped_variants": skipped,
        "results": results,
        "comparison": compare(results, gestures),
        "seconds": round(time.perf_counter() - started, 1),
    }
    table = markdown(summary)
    write_text_atomic(settings.out / "quality.json", json.dumps(summary, indent=2, sort_keys=False) + "\n")
    write_text_atomic(settings.out / "quality.md", table)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/quality.py " + " ".join(shlex.quote(a) for a in given)
    try:
        settings = resolve_settings(args)
        summary = run(settings, command)
    except EgoPressError as error:
        print(f"quality.py: error: {error}", file=sys.stderr)
        return 2
    print()
    print(markdown(summary), end="")
    print(f"\nwrote {settings.out / 'quality.json'} and {settings.out / 'quality.md'} ({summary['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
