"""What both live nodes share: lifecycle, synchronised sensor inputs, a latest-only worker,
throttled problem reports, /diagnostics, and a ``main`` that shuts down cleanly on SIGINT.

Life cycle (rclpy.lifecycle, managed-node semantics):

- construction declares the parameters (so ``ros2 param`` sees them in every state);
- ``configure`` reads and checks them and loads what the node needs (models, hand model); a
  bad parameter or a missing checkpoint fails the transition with an error naming it, and the
  node stays alive, unconfigured, ready to be configured again;
- ``activate`` moves the model to its device, subscribes and starts the worker; publishers
  (lifecycle publishers, created at configure) start publishing;
- ``deactivate`` unsubscribes, stops the worker and moves the model to the CPU, releasing
  accelerator memory (``torch.cuda.empty_cache``); ``cleanup`` drops the model;
- ``autostart`` (default true) runs configure + activate at start-up, so ``ros2 run`` and the
  launch file need no lifecycle manager.

Data path: subscription callbacks (executor thread) add messages to the stamp synchroniser and
hand each complete set to :meth:`PipelineNode.accept`; one worker thread does the heavy part
(:meth:`PipelineNode.process`). By default ``accept`` puts the set in a
:class:`~egopress_ros.sync.LatestSlot` and the worker converts, estimates and publishes the newest
one; a set replaced before the worker took it is dropped and counted, so the node never builds a
queue when its model is slower than the camera. The pressure node overrides ``accept`` so that
every set enters its model's window (``docs/design.md``, "Live streaming").
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from functools import partial
from typing import Any, Sequence

import numpy as np

from egopress_core.errors import ConfigError, DataError, EgoPressError
from egopress_core.image_encodings import ImageEncodingError, decode_color, decode_depth
from egopress_core.messages import CameraCalibration, camera_info_to_calibration, stamp_to_ns
from egopress_ros import parameters as params
from egopress_ros.monitoring import FractionMeter, LatencyStats, ProblemReporter, RateMeter, threshold_warnings
from egopress_ros.sync import LatestSlot, Worker, make_synchronizer

# Input topic names, relative (resolved in the node's namespace; remap them to the camera's).
COLOR_TOPIC = "color/image_raw"
DEPTH_TOPIC = "aligned_depth_to_color/image_raw"
CAMERA_INFO_TOPIC = "color/camera_info"
DIAGNOSTICS_TOPIC = "/diagnostics"
# What an image error on an input topic tells the user to check (a depth image on the colour topic...).
_REMAP_HINT = "check the remapping"
# An input is reported missing when another input received this many messages since its last one.
MISSING_AFTER_MESSAGES = 5
# A depth image with fewer valid readings than this fraction is reported.
MIN_VALID_DEPTH_FRACTION = 0.01
# The drop fraction that warn_drop_fraction bounds is that of the sets of this many last seconds.
DROP_WINDOW_S = 10.0
# /diagnostics statuses of other nodes kept (WATCH_DIAGNOSTICS); the longest silent go first.
MAX_WATCHED_STATUSES = 256


class InputProblem(DataError):
    """A message set the node cannot use; ``kind`` keys the throttled warning."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class InputSpec:
    """One synchronised input: key (for messages), relative topic, message type."""

    key: str
    topic: str
    msg_type: Any


@dataclass
class CameraFrame:
    """A decoded colour/depth/camera_info set."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray  # (H, W) float32 metres, holes 0 / NaN
    stamp_ns: int
    header: Any
    depth_valid_fraction: float
    calibration: CameraCalibration

    @property
    def intrinsics(self) -> np.ndarray:
        """(3, 3) pinhole matrix of the images (:attr:`CameraCalibration.intrinsics`)."""
        return self.calibration.intrinsics


def decode_camera(color_msg, depth_msg, info_msg, topics: dict[str, str]) -> CameraFrame:
    """Colour, depth and camera_info messages -> arrays; :class:`InputProblem` names what is wrong
    and on which topic."""
    try:
        rgb = decode_color(color_msg, _REMAP_HINT)
    except ImageEncodingError as error:
        raise InputProblem("color_image", f"colour image on '{topics['color']}': {error}") from None
    try:
        depth = decode_depth(depth_msg, _REMAP_HINT)
    except ImageEncodingError as error:
        raise InputProblem("depth_image", f"depth image on '{topics['depth']}': {error}") from None
    if depth.shape != rgb.shape[:2]:
        raise InputProblem("size_mismatch", f"depth image on '{topics['depth']}' is {depth.shape[1]}x{depth.shape[0]} but the "
                           f"colour image on '{topics['color']}' is {rgb.shape[1]}x{rgb.shape[0]}; subscribe to the depth "
                           "stream aligned to colour")
    try:
        calibration = camera_info_to_calibration(info_msg, rgb.shape[:2])
    except DataError as error:
        raise InputProblem("camera_info", f"camera_info on '{topics['camera_info']}': {error}") from None
    valid = np.isfinite(depth) & (depth > 0)
    return CameraFrame(rgb=rgb, depth_m=depth, stamp_ns=stamp_to_ns(color_msg.header.stamp), header=color_msg.header,
                       depth_valid_fraction=float(valid.mean()), calibration=calibration)


def _lifecycle_base():
    from rclpy.lifecycle import LifecycleNode

    return LifecycleNode


class PipelineNode(_lifecycle_base()):
    """Base of the live nodes. Subclasses define ``PARAMETERS``, ``input_specs``, and the hooks
    ``load`` / ``to_device`` / ``release`` / ``unload`` / ``create_outputs`` / ``process``."""

    PARAMETERS: tuple = ()
    # Keep the latest /diagnostics status of every other node (see :meth:`peer_status`).
    WATCH_DIAGNOSTICS = False

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.clock import Clock, ClockType

        super().__init__(node_name, **kwargs)
        # A start-up value of the wrong type or out of range does not end the node: it is
        # declared with its default and configure fails, naming it, until it is set again.
        self.parameter_errors: dict[str, str] = params.declare(self, self.PARAMETERS)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self.unknown_parameters = params.unknown_overrides(self, self.PARAMETERS)
        if self.unknown_parameters:
            self.get_logger().warning(
                f"ignoring start-up parameters that {self.get_name()} does not declare: "
                f"{params.describe_unknown(self.unknown_parameters)} "
                f"({getattr(self, 'EXECUTABLE', node_name)} --help lists its parameters)")
        if self.parameter_errors and not self.get_parameter("autostart").value:
            # With autostart the failing configure says it; without, nobody would until then.
            self.get_logger().error(f"{self._parameter_error_text()}; configure will fail until it is set")
        self.config: dict[str, Any] = {}
        self.configure_error: str | None = None
        self.problems = ProblemReporter(self.get_logger().warning, period_s=5.0)
        self._lenses_noted: set[tuple[float, ...]] = set()
        self._lock = threading.Lock()
        self._subscriptions_by_key: dict[str, Any] = {}
        self._publishers_made: list[Any] = []
        self._last_arrival: dict[str, float] = {}
        self._arrivals: dict[str, int] = {}
        self._arrivals_at_last: dict[str, dict[str, int]] = {}
        self._activated_at = time.monotonic()
        self._last_set_at: float | None = None
        self._input_rates: dict[str, RateMeter] = {}
        self.set_rate = RateMeter()
        self.output_rate = RateMeter()
        self.drops = FractionMeter(window_s=DROP_WINDOW_S)
        self.latency = LatencyStats()
        self.processing = LatencyStats()
        self.intake = LatencyStats()
        self.slot = LatestSlot()
        self.worker: Worker | None = None
        self.sync = None
        self.sync_implementation = ""
        self.sets_skipped_by_stride = 0
        self.incompatible_qos_events = 0
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        # /diagnostics is a plain publisher: it reports in every state, configure errors included.
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._peer_statuses: dict[str, Any] = {}
        if self.WATCH_DIAGNOSTICS:
            self.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 10)
        self._diagnostics_timer = None
        self._watchdog_timer = self.create_timer(1.0, self._check_inputs, clock=self._steady)
        self._start_diagnostics(float(self.get_parameter("diagnostics_period_s").value))

    # -- subclass interface ----------------------------------------------------------------

    def input_specs(self) -> list[InputSpec]:
        raise NotImplementedError

    def load(self) -> None:
        """Load models / backends from ``self.config`` (raise EgoPressError with a clear message)."""

    def to_device(self) -> None:
        """Put models on ``self.config['device']`` (activate)."""

    def release(self) -> None:
        """Move models off the accelerator (deactivate)."""

    def unload(self) -> None:
        """Drop models (cleanup)."""

    def create_outputs(self, qos) -> None:
        """Create the lifecycle publishers."""

    def accept(self, messages: dict[str, Any]) -> None:
        """Take one synchronised set (executor thread, every set; keep it cheap). The default is
        latest-only: the set waits in the slot for the worker, replacing (and dropping) one the
        worker has not taken yet. An :class:`InputProblem` raised here is reported like one
        raised by :meth:`process`."""
        self.drops.add(self.slot.put(messages))

    def process(self, item: Any) -> None:
        """Handle what :meth:`accept` put in the slot (worker thread)."""

    def sets_dropped(self) -> int:
        """Complete sets that will get no output because the worker could not keep up."""
        return self.slot.replaced

    def diagnostic_values(self) -> dict[str, Any]:
        return {}

    # -- helpers for subclasses ------------------------------------------------------------

    def topic_names(self) -> dict[str, str]:
        """Input key -> fully resolved topic name (after remapping)."""
        names = {}
        for spec in self.input_specs():
            try:
                names[spec.key] = self.resolve_topic_name(spec.topic)
            except Exception:  # noqa: BLE001 - an invalid name is reported when subscribing
                names[spec.key] = spec.topic
        return names

    def lifecycle_publisher(self, msg_type, topic: str, qos):
        publisher = self.create_lifecycle_publisher(msg_type, topic, qos)
        self._publishers_made.append(publisher)
        return publisher

    def camera_input(self, messages: dict[str, Any], without_depth: str) -> CameraFrame:
        """Decode the synchronised colour/depth/camera_info of one frame; a depth image with
        (almost) no valid reading is reported (rate-limited) and the frame still goes on.

        Args:
            messages: the synchronised set, with keys ``color``, ``depth``, ``camera_info``.
            without_depth: what the node does with such a frame, for the warning.

        Raises:
            InputProblem: an image or camera_info that cannot be used (see :func:`decode_camera`).
        """
        names = self.topic_names()
        camera = decode_camera(messages["color"], messages["depth"], messages["camera_info"], names)
        # Said once per lens: whether the images are the rectified ones cannot be told from them.
        if camera.calibration.distortion not in self._lenses_noted:
            self._lenses_noted.add(camera.calibration.distortion)
            note = camera.calibration.distortion_note(names["color"])
            if note:
                self.get_logger().warning(note)
        if camera.depth_valid_fraction < MIN_VALID_DEPTH_FRACTION:
            self.problems.report("depth_invalid", (
                f"depth image on '{names['depth']}' has {100 * camera.depth_valid_fraction:.1f}% valid readings "
                f"(NaN / 0 elsewhere); {without_depth}"))
        return camera

    def record_output(self, stamp) -> None:
        """Count one published frame and its stamp-to-publish latency (node clock: sim time aware)."""
        self.output_rate.tick()
        now_ns = self.get_clock().now().nanoseconds
        self.latency.add((now_ns - stamp_to_ns(stamp)) * 1e-9)

    def peer_status(self, node_fqn: str):
        """The latest /diagnostics status of the node ``node_fqn`` (a ``DiagnosticStatus`` named
        ``"<fqn>: ..."``), or None (never seen, or WATCH_DIAGNOSTICS is off)."""
        return self._peer_statuses.get(node_fqn)

    def _on_diagnostics(self, array) -> None:
        own = self.get_fully_qualified_name()
        for status in array.status:
            fqn = status.name.split(": ", 1)[0]
            if fqn == own:
                continue
            self._peer_statuses.pop(fqn, None)
            self._peer_statuses[fqn] = status
            while len(self._peer_statuses) > MAX_WATCHED_STATUSES:
                self._peer_statuses.pop(next(iter(self._peer_statuses)))

    def missing_input_message(self, key: str, age_s: float, flowing: str, flowing_count: int) -> str | None:
        """The warning for input ``key`` silent for ``age_s`` while ``flowing_count`` messages
        arrived on input ``flowing``; None: the generic one (check the topic name / QoS)."""
        return None

    @staticmethod
    def wanted(publisher) -> bool:
        """Build a message only if someone listens (visualisation mirrors)."""
        return publisher is not None and publisher.get_subscription_count() > 0

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def state_label(self) -> str:
        try:
            return str(self._state_machine.current_state[1])
        except AttributeError:  # pragma: no cover - rclpy internals moved
            return "unknown"

    def on_configure(self, state):
        from rclpy.lifecycle import TransitionCallbackReturn

        try:
            if self.parameter_errors:
                raise ConfigError(self._parameter_error_text())
            self.config = params.read(self, self.PARAMETERS)
            self.problems.period_s = self.config["warn_period_s"]
            if self.config["torch_threads"] > 0:
                import torch

                torch.set_num_threads(self.config["torch_threads"])
            self.load()
            self.create_outputs(self._output_qos())
        except Exception as error:  # noqa: BLE001 - rclpy would swallow it silently (ERROR, no log)
            described = str(error) if isinstance(error, EgoPressError) else f"{type(error).__name__}: {error}"
            self.configure_error = described
            self.get_logger().error(f"configure failed: {described}. The node stays unconfigured; fix the parameter "
                                    f"and configure again (ros2 lifecycle set {self.get_fully_qualified_name()} configure)")
            if not isinstance(error, EgoPressError):
                self.get_logger().debug("".join(traceback.format_exception(type(error), error, error.__traceback__)))
            self._drop_publishers()
            self.unload()
            return TransitionCallbackReturn.FAILURE
        self.configure_error = None
        self.get_logger().info("configured")
        return super().on_configure(state)

    def _parameter_error_text(self) -> str:
        return "; ".join(self.parameter_errors.values())

    def _on_parameters_set(self, parameters) -> None:
        """A parameter refused at start-up is good again once it is set (rclpy checked its type
        and range; configure checks the rest)."""
        for parameter in parameters:
            self.parameter_errors.pop(parameter.name, None)

    def on_activate(self, state):
        from rclpy.lifecycle import TransitionCallbackReturn

        try:
            self.to_device()
        except Exception as error:  # noqa: BLE001 - e.g. CUDA out of memory: stay inactive, say why
            self.get_logger().error(f"activate failed: {type(error).__name__}: {error}")
            return TransitionCallbackReturn.FAILURE
        # Publishers first, so that the first processed set is not published while inactive.
        result = super().on_activate(state)
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        self._subscribe()
        self.slot.clear()
        self.worker = Worker(self.slot, self._process_timed, self._report_frame_error, name=f"{self.get_name()}-worker")
        self.worker.start()
        self.get_logger().info(f"active: listening on {', '.join(self.topic_names().values())} "
                               f"(reliability {self.config['input_reliability']}, sync by {self.sync_implementation})")
        return result

    def on_deactivate(self, state):
        self._stop_data_path()
        self.release()
        self.get_logger().info("inactive: unsubscribed, model moved off the accelerator")
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        self._drop_publishers()
        self.unload()
        self.get_logger().info("cleaned up: model unloaded")
        return super().on_cleanup(state)

    def on_shutdown(self, state):
        self.stop_everything()
        return super().on_shutdown(state)

    def on_error(self, state):
        self.get_logger().error("a lifecycle transition raised an error; dropping subscriptions and models")
        self.stop_everything()
        return super().on_error(state)

    def stop_everything(self) -> None:
        """Unsubscribe, stop the worker, free the model (SIGINT, shutdown, errors)."""
        self._stop_data_path()
        try:
            self.release()
        finally:
            self._drop_publishers()
            self.unload()

    def autostart(self) -> bool:
        """configure + activate; False (node kept alive, unconfigured) if either fails."""
        from rclpy.lifecycle import TransitionCallbackReturn

        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    # -- data path -------------------------------------------------------------------------

    def _input_qos(self):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        reliability = (ReliabilityPolicy.RELIABLE if self.config["input_reliability"] == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.config["input_depth"], reliability=reliability,
                          durability=DurabilityPolicy.VOLATILE)

    def _output_qos(self):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.config["output_depth"],
                          reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)

    def _subscribe(self) -> None:
        from rclpy.event_handler import SubscriptionEventCallbacks

        specs = self.input_specs()
        self.sync, self.sync_implementation = make_synchronizer(
            len(specs), self.config["sync_slop_s"], self.config["sync_queue_size"], [spec.key for spec in specs])
        self._set_count = 0
        qos = self._input_qos()
        now = time.monotonic()
        for index, spec in enumerate(specs):
            events = SubscriptionEventCallbacks(incompatible_qos=partial(self._on_incompatible_qos, spec.topic))
            self._subscriptions_by_key[spec.key] = self.create_subscription(
                spec.msg_type, spec.topic, partial(self._on_message, index, spec.key), qos, event_callbacks=events)
            self._input_rates.setdefault(spec.key, RateMeter())
            self._last_arrival.pop(spec.key, None)
        self._activated_at = now
        self._last_set_at = None
        self._arrivals = {}
        self._arrivals_at_last = {}

    def _on_message(self, index: int, key: str, msg) -> None:
        self._last_arrival[key] = time.monotonic()
        self._arrivals[key] = self._arrivals.get(key, 0) + 1
        self._arrivals_at_last[key] = dict(self._arrivals)
        self._input_rates[key].tick()
        sync = self.sync
        if sync is None:
            return
        matched = sync.add(index, stamp_to_ns(msg.header.stamp), msg)
        if matched is None:
            return
        self.set_rate.tick()
        self._last_set_at = time.monotonic()
        self._set_count += 1
        stride = self.config["frame_stride"]
        if stride > 1 and (self._set_count - 1) % stride:
            self.sets_skipped_by_stride += 1
            return
        messages = dict(zip(sync.names, matched))
        started = time.perf_counter()
        try:
            self.accept(messages)
        except Exception as error:  # noqa: BLE001 - reported; the executor must keep spinning
            self._report_frame_error(messages, error)
        finally:
            self.intake.add(time.perf_counter() - started)

    def _on_incompatible_qos(self, topic: str, info) -> None:
        from rclpy.qos import qos_policy_name_from_kind

        self.incompatible_qos_events += 1
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        self.problems.report("incompatible_qos", (
            f"a publisher on '{self.resolve_topic_name(topic)}' offers a QoS incompatible with this subscription "
            f"(policy {policy}); nothing arrives from it. This node subscribes with "
            f"input_reliability={self.config.get('input_reliability')!r}: use 'best_effort' for sensor-data publishers"))

    def _process_timed(self, messages: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            self.process(messages)
        finally:
            self.processing.add(time.perf_counter() - started)

    def _report_frame_error(self, item, error: BaseException) -> None:
        if isinstance(error, InputProblem):
            self.problems.report(error.kind, str(error))
        elif isinstance(error, EgoPressError):
            self.problems.report(type(error).__name__, f"frame skipped: {error}")
        else:
            self.problems.report("internal_error", f"frame skipped after an unexpected {type(error).__name__}: {error}\n"
                                 + "".join(traceback.format_exception(type(error), error, error.__traceback__))[-2000:])

    def _stop_data_path(self) -> None:
        for subscription in self._subscriptions_by_key.values():
            try:
                self.destroy_subscription(subscription)
            except Exception as error:  # noqa: BLE001 - after a context shutdown (SIGINT) rcl may refuse
                self.get_logger().debug(f"destroying a subscription failed: {error}")
        self._subscriptions_by_key.clear()
        if self.worker is not None:
            if not self.worker.stop():
                self.get_logger().warning("the worker did not finish its frame within 30 s")
            self.worker = None
        self.slot.clear()
        if self.sync is not None:
            self.sync.clear()
        self.sync = None

    def _drop_publishers(self) -> None:
        for publisher in self._publishers_made:
            try:
                self.destroy_lifecycle_publisher(publisher)
            except Exception as error:  # noqa: BLE001 - see _stop_data_path
                self.get_logger().debug(f"destroying a publisher failed: {error}")
        self._publishers_made.clear()

    def _check_inputs(self) -> None:
        """Warn about an input that stays silent while others keep arriving (a wrong topic name,
        incompatible QoS, a camera driver without camera_info). "Keep arriving" means at least
        MISSING_AFTER_MESSAGES messages on another input since this one's last message, so a
        slow producer (the hand mesh arriving after its image) is not mistaken for a missing one."""
        if not self._subscriptions_by_key:
            return
        now = time.monotonic()
        timeout = self.config["input_timeout_s"]
        names = self.topic_names()
        for key in self._subscriptions_by_key:
            age = now - self._last_arrival.get(key, self._activated_at)
            if age <= timeout:
                continue
            before = self._arrivals_at_last.get(key, {})
            others = {other: count - before.get(other, 0) for other, count in self._arrivals.items() if other != key}
            if others and max(others.values()) >= MISSING_AFTER_MESSAGES:
                flowing = max(others, key=others.get)
                message = self.missing_input_message(key, age, flowing, others[flowing])
                self.problems.report(f"missing_{key}", message or (
                    f"no message on '{names[key]}' for {age:.1f} s while {others[flowing]} arrived on '{names[flowing]}'; "
                    "no frame can be processed (check the topic name / remapping, and "
                    f"input_reliability={self.config['input_reliability']!r})"))

    # -- diagnostics -----------------------------------------------------------------------

    def _start_diagnostics(self, period_s: float) -> None:
        self._diagnostics_timer = self.create_timer(period_s, self.publish_diagnostics, clock=self._steady)

    def status_values(self) -> dict[str, Any]:
        """Everything the diagnostics report, as plain values."""
        p50, p95 = self.latency.percentiles_ms(50, 95)
        w50, w95 = self.processing.percentiles_ms(50, 95)
        i50, i95 = self.intake.percentiles_ms(50, 95)
        drop_fraction = self.drops.fraction()
        values: dict[str, Any] = {
            "state": self.state_label,
            "input_set_rate_hz": round(self.set_rate.rate_hz(), 2),
            "output_rate_hz": round(self.output_rate.rate_hz(), 2),
            "latency_p50_ms": round(p50, 1),
            "latency_p95_ms": round(p95, 1),
            "processing_p50_ms": round(w50, 1),
            "processing_p95_ms": round(w95, 1),
            "intake_p50_ms": round(i50, 1),
            "intake_p95_ms": round(i95, 1),
            "sets_complete": self.set_rate.count,
            "sets_dropped_stale": self.sets_dropped(),
            "drop_fraction_recent": "" if drop_fraction is None else round(drop_fraction, 3),
            "sets_skipped_by_stride": self.sets_skipped_by_stride,
            "frames_published": self.output_rate.count,
            "incompatible_qos_events": self.incompatible_qos_events,
            "sync": self.sync_implementation,
        }
        for key, meter in self._input_rates.items():
            values[f"input_rate_{key}_hz"] = round(meter.rate_hz(), 2)
        if self.sync is not None:
            counters = self.sync.counters
            values.update(sync_messages_unmatched=counters.dropped_stale + counters.dropped_overflow,
                          sync_time_jumps=counters.time_jumps)
        values.update({f"problems_{kind}": count for kind, count in self.problems.counts().items()})
        if self.configure_error:
            values["configure_error"] = self.configure_error
        if self.parameter_errors:
            values["parameter_errors"] = self._parameter_error_text()
        if self.unknown_parameters:
            values["unknown_parameters"] = ", ".join(sorted(self.unknown_parameters))
        values.update(self.diagnostic_values())
        return values

    def threshold_warnings(self, values: dict[str, Any]) -> list[str]:
        """Latency or drops above their warn_* bounds (see :func:`monitoring.threshold_warnings`)."""
        if not self.config:
            return []
        return threshold_warnings(float(values["latency_p95_ms"]), self.drops.fraction(), self.config["warn_latency_s"],
                                  self.config["warn_drop_fraction"], DROP_WINDOW_S)

    def publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        values = self.status_values()
        warnings = self.threshold_warnings(values) + sorted(self.problems.active().values())
        if self.configure_error or (self.parameter_errors and values["state"] == "unconfigured"):
            level, message = DiagnosticStatus.ERROR, f"unconfigured: {self.configure_error or self._parameter_error_text()}"
        elif values["state"] != "active":
            level, message = DiagnosticStatus.OK, values["state"]
        elif warnings:
            level, message = DiagnosticStatus.WARN, "; ".join(warnings)[:500]
        elif self._last_set_at is None:
            level, message = DiagnosticStatus.WARN, "waiting for synchronised input"
        elif time.monotonic() - self._last_set_at > self.config["input_timeout_s"]:
            level, message = DiagnosticStatus.WARN, (f"no synchronised input for "
                                                     f"{time.monotonic() - self._last_set_at:.1f} s")
        else:
            level, message = DiagnosticStatus.OK, (f"{values['output_rate_hz']:.1f} Hz out, latency p50 "
                                                   f"{values['latency_p50_ms']:.0f} ms")
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: pipeline", message=message,
                                  hardware_id=str(self.config.get("device", "cpu")))
        status.values = [KeyValue(key=key, value=str(value)) for key, value in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self._diagnostics_publisher.publish(array)


def run(node_class, argv: Sequence[str] | None, description: str) -> int:
    """``main`` of a node executable: init, optional autostart, spin until SIGINT, clean up."""
    import rclpy
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    program = node_class.EXECUTABLE
    parser = argparse.ArgumentParser(prog=program, description=description, epilog=(
        "ROS arguments follow --ros-args, e.g. --ros-args --params-file config/pressure.yaml "
        "-r color/image_raw:=/camera/camera/color/image_raw. Parameters:\n\n"
        + params.markdown_table(node_class.PARAMETERS)), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-parameters", action="store_true", help="print the declared parameters as JSON and exit")
    options = parser.parse_args(remove_ros_args([program, *argv])[1:])
    if options.print_parameters:
        print(json.dumps({spec.name: spec.default for spec in node_class.PARAMETERS}, indent=2))
        return 0

    rclpy.init(args=[program, *argv])
    node = None
    try:
        try:
            node = node_class()
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            # A parameter rclpy itself declares (use_sim_time...) with a value it refuses; the
            # node's own parameters never get here (parameters.declare).
            print(f"[{program}] cannot start: {error}", file=sys.stderr)
            return 2
        if node.get_parameter("autostart").value and not node.autostart():
            node.get_logger().warning("autostart did not reach the active state; waiting for lifecycle transitions")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # SIGINT shuts the context down from rclpy's signal handler; if that lands while the
        # executor builds its next wait set, rclpy raises "the given context is not valid" (an
        # RCLError) instead of ExternalShutdownException. A stop, not a failure.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.stop_everything()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
