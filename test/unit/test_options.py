"""The runtime option sets (egopress_core.options): validation that names the field, and one source
of every default and list of choices across the library, the pressure node, the command line and
config/pressure.yaml."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from egopress_core.errors import ConfigError
from egopress_core.options import (
    COMPILE_MODES,
    LIVE_SAMPLING,
    OFFLINE_SAMPLING,
    OPTION_CLASSES,
    PRECISIONS,
    SCHEDULERS,
    ContactOptions,
    CropOptions,
    RuntimeOptions,
    SamplingOptions,
    StreamOptions,
    option_fields,
)

CONFIG_FILE = Path(__file__).resolve().parents[2] / "config" / "pressure.yaml"
# What the live node uses for each option set (the sampler has a live default of its own).
LIVE_DEFAULTS = {SamplingOptions: LIVE_SAMPLING, RuntimeOptions: RuntimeOptions(), CropOptions: CropOptions(),
                 StreamOptions: StreamOptions(), ContactOptions: ContactOptions()}
# What the offline commands use.
OFFLINE_DEFAULTS = {SamplingOptions: OFFLINE_SAMPLING, RuntimeOptions: RuntimeOptions(), CropOptions: CropOptions(),
                    ContactOptions: ContactOptions()}
WRONG = {bool: "yes", int: "two", float: "fast", str: 3}


@pytest.mark.parametrize("cls", OPTION_CLASSES, ids=lambda cls: cls.__name__)
def test_every_field_refuses_a_wrong_value_naming_itself(cls):
    for item, kind, _optional in option_fields(cls):
        with pytest.raises(ConfigError, match=rf"^{cls.__name__}\.{item.name} must be .* Got "):
            cls(**{item.name: WRONG[kind]})


def test_ranges_and_choices_are_checked():
    with pytest.raises(ConfigError, match=r"SamplingOptions\.num_inference_steps must be an integer in \[1, 1000\]"):
        SamplingOptions(num_inference_steps=0)
    with pytest.raises(ConfigError, match=r"warm_start_strength must be a number in \(0, 1\] or None. Got 0.0"):
        SamplingOptions(warm_start_strength=0.0)
    with pytest.raises(ConfigError, match=r"RuntimeOptions\.precision must be one of \['fp32', 'fp16', 'bf16'\]"):
        RuntimeOptions(precision="no")
    with pytest.raises(ConfigError, match="needs window_batch_size 1"):
        SamplingOptions(warm_start_strength=0.5, window_batch_size=2)
    # Integers are accepted where numbers are asked for; None only where the option is optional.
    assert SamplingOptions(guidance_scale=2).guidance_scale == 2.0
    with pytest.raises(ConfigError, match="SamplingOptions.seed must be an integer"):
        SamplingOptions(seed=None)
    assert LIVE_SAMPLING.warm_steps == 1 and OFFLINE_SAMPLING.warm_steps == OFFLINE_SAMPLING.num_inference_steps


def test_the_pressure_node_parameters_are_the_library_defaults():
    from egopress_ros.pressure_node import PARAMETERS

    node = {spec.name: spec for spec in PARAMETERS}
    exposed = 0
    for cls, defaults in LIVE_DEFAULTS.items():
        for item, _kind, _optional in option_fields(cls):
            if not item.metadata["parameter"]:
                assert item.name not in node, item.name
                continue
            spec = node[item.name]
            assert spec.default == getattr(defaults, item.name), item.name
            assert spec.choices == item.metadata["choices"], item.name
            assert (spec.minimum, spec.maximum) == (item.metadata["minimum"], item.metadata["maximum"]), item.name
            # The node's check and the dataclass's agree on the default.
            spec.check(spec.default)
            exposed += 1
    assert exposed >= 15


def test_config_file_holds_the_library_defaults():
    document = yaml.safe_load(CONFIG_FILE.read_text())
    values = document["/**/pressure_node"]["ros__parameters"]
    checked = 0
    for cls, defaults in LIVE_DEFAULTS.items():
        for item in dataclasses.fields(cls):
            if item.name in values:
                assert values[item.name] == getattr(defaults, item.name), item.name
                checked += 1
    assert checked >= 15


@pytest.mark.parametrize("command", [["eval", "--checkpoint", "c", "--data", "d", "--out", "o"],
                                     ["label-bag", "in", "out"], ["label-bags", "in", "out"]],
                         ids=lambda argv: argv[0])
def test_command_line_defaults_and_choices_are_the_library_defaults(command):
    from egopress_core import options
    from egopress_core.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(command)
    for cls, defaults in OFFLINE_DEFAULTS.items():
        if command[0] == "eval" and cls is CropOptions:
            continue  # eval crops as the model was trained; no flags
        assert options.from_arguments(args, cls, defaults) == defaults, cls.__name__
    subparser = parser._subparsers._group_actions[0].choices[command[0]]
    flags = {action.dest: action for action in subparser._actions}
    assert tuple(flags["scheduler"].choices) == SCHEDULERS
    assert tuple(flags["precision"].choices) == PRECISIONS
    assert tuple(flags["compile_mode"].choices) == COMPILE_MODES
    assert "--steps" in flags["num_inference_steps"].option_strings


def test_command_line_values_are_validated_by_the_dataclass(capsys):
    from egopress_core.cli.main import main

    # argparse refuses a choice outside the list; the range is the dataclass's.
    assert main(["eval", "--checkpoint", "c", "--data", "d", "--out", "o", "--steps", "0"]) == 2
    assert "SamplingOptions.num_inference_steps must be an integer in [1, 1000]. Got 0" in capsys.readouterr().err


def test_training_speaks_the_same_precision_vocabulary():
    from egopress_core.training.config import TrainConfig
    from egopress_core.training.trainer import resolve_precision

    assert TrainConfig().precision == RuntimeOptions().precision == "fp32"
    for precision in PRECISIONS:
        assert TrainConfig(precision=precision).precision == precision
    assert resolve_precision("fp32", on_cpu=True) == "no"  # accelerate's name for it
    with pytest.raises(ConfigError, match="precision 'no' is spelled 'fp32'"):
        TrainConfig(precision="no")
