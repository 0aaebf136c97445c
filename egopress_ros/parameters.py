"""Declared ROS parameters as data: each node module holds a table of :class:`ParameterSpec`.

Keeping the tables at module level lets the tests (and ``config/pressure.yaml`` reviews) check
that every parameter a configuration sets is one the node declares, with the right type, without
starting a node. rclpy is imported only by the functions that talk to a node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from egopress_core.errors import ConfigError

RELIABILITY_CHOICES = ("best_effort", "reliable")


@dataclass(frozen=True)
class ParameterSpec:
    """One declared parameter.

    Attributes:
        name: parameter name.
        default: default value; its Python type is the parameter's type (bool, int, float, str).
        description: what it does (shown by ``ros2 param describe``).
        choices: allowed string values, or None.
        minimum / maximum: inclusive numeric range, or None.
        read_only: cannot change after the node starts (topics / QoS fixed at creation).
        low_open: the minimum itself is not allowed.
    """

    name: str
    default: bool | int | float | str
    description: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    read_only: bool = False
    low_open: bool = False

    @property
    def type_name(self) -> str:
        return type(self.default).__name__

    def check(self, value: Any) -> Any:
        """``value`` converted to this parameter's type and checked, or ConfigError naming it."""
        kind = type(self.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise ConfigError(f"parameter {self.name!r} must be a {kind.__name__}. Got {value!r} ({type(value).__name__})")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"parameter {self.name!r} must be one of {list(self.choices)}. Got {value!r}")
        if kind in (int, float):
            if kind is float and not math.isfinite(value):
                raise ConfigError(f"parameter {self.name!r} must be finite. Got {value!r}")
            if self.minimum is not None and (value < self.minimum or (self.low_open and value == self.minimum)):
                relation = ">" if self.low_open else ">="
                raise ConfigError(f"parameter {self.name!r} must be {relation} {self.minimum}. Got {value!r}")
            if self.maximum is not None and value > self.maximum:
                raise ConfigError(f"parameter {self.name!r} must be <= {self.maximum}. Got {value!r}")
        return value

    def descriptor(self):
        """rcl_interfaces/ParameterDescriptor with the description, constraints and ranges."""
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

        descriptor = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        constraints = []
        if self.choices is not None:
            constraints.append("one of: " + ", ".join(self.choices))
        kind = type(self.default)
        if kind is int and (self.minimum is not None or self.maximum is not None):
            descriptor.integer_range = [IntegerRange(
                from_value=int(self.minimum if self.minimum is not None else -(2**63)),
                to_value=int(self.maximum if self.maximum is not None else 2**63 - 1), step=0)]
        elif kind is float and (self.minimum is not None or self.maximum is not None):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(self.minimum if self.minimum is not None else -math.inf),
                to_value=float(self.maximum if self.maximum is not None else math.inf), step=0.0)]
        if constraints:
            descriptor.additional_constraints = "; ".join(constraints)
        return descriptor


def option_parameters(cls: type, defaults: Any = None, names: Iterable[str] | None = None) -> tuple[ParameterSpec, ...]:
    """Parameters of the options of ``cls`` (an :mod:`egopress_core.options` dataclass), with the
    defaults of ``defaults`` (default ``cls()``): names, help, choices and ranges come from the
    dataclass, so the node, the command line and ``config/pressure.yaml`` cannot disagree. Options
    ROS cannot express (those marked ``parameter=False``) are left out; ``names`` selects."""
    from egopress_core.options import option_fields

    defaults = defaults if defaults is not None else cls()
    wanted = None if names is None else set(names)
    specs = []
    for item, kind, _optional in option_fields(cls):
        metadata = item.metadata
        if not metadata.get("parameter", True) or (wanted is not None and item.name not in wanted):
            continue
        default = getattr(defaults, item.name)
        if type(default) is not kind:
            raise TypeError(f"{cls.__name__}.{item.name}: a ROS parameter needs a {kind.__name__} default, not {default!r}")
        choices = metadata.get("choices")
        specs.append(ParameterSpec(item.name, default, metadata.get("help", ""),
                                   choices=None if choices is None else tuple(choices),
                                   minimum=metadata.get("minimum"), maximum=metadata.get("maximum"),
                                   low_open=bool(metadata.get("low_open"))))
    return tuple(specs)


def spec_table(specs: Iterable[ParameterSpec]) -> dict[str, ParameterSpec]:
    """Name -> spec, refusing duplicates."""
    table: dict[str, ParameterSpec] = {}
    for spec in specs:
        if spec.name in table:
            raise ValueError(f"parameter {spec.name!r} is declared twice")
        table[spec.name] = spec
    return table


# Overrides rclpy refuses at declaration: a value of another type than the default's, or one
# outside the declared range.
def _refused_override_errors():
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    return InvalidParameterTypeException, InvalidParameterValueException


def overrides(node) -> dict[str, Any]:
    """The values given to ``node`` at start-up (--params-file, -p, launch), by name."""
    given = getattr(node, "_parameter_overrides", None)  # rclpy keeps them there (no public API)
    return {name: parameter.value for name, parameter in (given or {}).items()}


def declare(node, specs: Iterable[ParameterSpec]) -> dict[str, str]:
    """Declare every parameter on ``node`` (values from --params-file / -p override defaults).

    rclpy raises, and the node would exit with a traceback, when a start-up value has another
    type than the declared default (``torch_threads: two``) or lies outside the declared range
    (``num_inference_steps: 0``). Here such a parameter is declared with its default instead and
    the problem returned, one line per parameter (name -> message), for the node to report and
    to refuse ``configure`` until the parameter is set to a valid value. An integer given for a
    float parameter (``sync_slop_s: 1``) is taken as that float, as :meth:`ParameterSpec.check`
    does.
    """
    refused = _refused_override_errors()
    given = overrides(node)
    errors: dict[str, str] = {}
    for spec in specs:
        try:
            node.declare_parameter(spec.name, spec.default, spec.descriptor())
            continue
        except refused as error:
            reason = str(error).split(": " + spec.name)[0]
        value = given.get(spec.name)
        try:
            value = spec.check(value)
        except ConfigError as error:
            errors[spec.name] = f"{error} (start-up value)"
            value = spec.default
        try:
            node.declare_parameter(spec.name, value, spec.descriptor(), ignore_override=True)
        except refused:  # checked here but refused by rclpy: its reason
            errors[spec.name] = f"parameter {spec.name!r}: {reason}"
            node.declare_parameter(spec.name, spec.default, spec.descriptor(), ignore_override=True)
    return errors


def unknown_overrides(node, specs: Iterable[ParameterSpec]) -> dict[str, list[str]]:
    """Start-up values the node does not declare (a typo, or a key meant for another node): name
    -> the closest declared names (``difflib``), for a warning."""
    import difflib

    known = sorted({spec.name for spec in specs} | set(getattr(node, "_parameters", {})))
    unknown = {}
    for name in overrides(node):
        # qos_overrides.* are declared only with the subscriptions that enable them.
        if name in known or name.startswith("qos_overrides.") or node.has_parameter(name):
            continue
        unknown[name] = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return unknown


def describe_unknown(unknown: dict[str, list[str]]) -> str:
    """One line: the unknown names, each with its closest declared names."""
    parts = []
    for name, close in sorted(unknown.items()):
        parts.append(f"{name!r}" + (f" (did you mean {' or '.join(repr(match) for match in close)}?)" if close else ""))
    return ", ".join(parts)


def read(node, specs: Iterable[ParameterSpec]) -> dict[str, Any]:
    """Current values, checked; ConfigError names the first bad one."""
    return {spec.name: spec.check(node.get_parameter(spec.name).value) for spec in specs}


def markdown_table(specs: Iterable[ParameterSpec]) -> str:
    """The table as Markdown (for the README / reports)."""
    rows = ["| name | type | default | description |", "|---|---|---|---|"]
    for spec in specs:
        extra = f" One of {', '.join(spec.choices)}." if spec.choices else ""
        rows.append(f"| `{spec.name}` | {spec.type_name} | `{spec.default!r}` | {spec.description}{extra} |")
    return "\n".join(rows)


# Parameters both nodes declare.
COMMON_PARAMETERS = (
    ParameterSpec("autostart", True, "Configure and activate right after start-up, without a lifecycle manager "
                  "(false: wait for lifecycle transitions, e.g. from nav2_lifecycle_manager).", read_only=True),
    ParameterSpec("hand_side", "right", "The hand to estimate.", choices=("right", "left")),
    ParameterSpec("input_reliability", "best_effort",
                  "QoS reliability of the camera subscriptions. best_effort (sensor-data QoS) matches every "
                  "publisher; reliable only matches reliable publishers but never loses a frame on the wire.",
                  choices=RELIABILITY_CHOICES),
    ParameterSpec("input_depth", 5, "QoS history depth of the input subscriptions.", minimum=1, maximum=1000),
    ParameterSpec("output_depth", 32, "QoS history depth of the (reliable) output publishers; the pressure node "
                  "publishes a block of up to its window's frames (16 for both shipped models) at once.",
                  minimum=1, maximum=1000),
    ParameterSpec("sync_slop_s", 0.02, "Largest stamp difference between the synchronised inputs, seconds.",
                  minimum=0.0, maximum=10.0),
    ParameterSpec("sync_queue_size", 30, "Messages per input kept while waiting for their partners.",
                  minimum=1, maximum=1000),
    ParameterSpec("frame_stride", 1, "Process every N-th synchronised frame set (by arrival). When the node cannot keep "
                  "up, a stride keeps the processed frames evenly spaced instead of dropping them irregularly.",
                  minimum=1, maximum=100),
    ParameterSpec("torch_threads", 0, "Torch intra-op CPU threads; 0 keeps torch's default.", minimum=0, maximum=256),
    ParameterSpec("warn_period_s", 5.0, "Each kind of input problem is logged at most once per this many seconds.",
                  minimum=0.0),
    ParameterSpec("input_timeout_s", 3.0, "Warn when an input has been silent this long while others arrive, seconds.",
                  minimum=0.1),
    ParameterSpec("diagnostics_period_s", 1.0, "Period of the /diagnostics status, seconds (wall clock).",
                  minimum=0.1, maximum=60.0),
    ParameterSpec("warn_latency_s", 1.0, "/diagnostics says WARN while the 95th percentile of the stamp-to-publish "
                  "latency of the recent outputs is above this, seconds (0: never).", minimum=0.0),
    ParameterSpec("warn_drop_fraction", 0.5, "/diagnostics says WARN while more than this fraction of the "
                  "synchronised frame sets of the last 10 s were dropped because the node was busy (frames left "
                  "out by frame_stride do not count; 1: never).", minimum=0.0, maximum=1.0),
)
