"""The nodes' rclpy-free machinery: stamp synchronisation, the latest-only hand-off to the worker,
rates / latency / throttled problem reports, and the declared-parameter tables."""

from __future__ import annotations

import threading
import time

import pytest

from egopress_core.errors import ConfigError
from egopress_ros.monitoring import FractionMeter, LatencyStats, ProblemReporter, RateMeter, threshold_warnings
from egopress_ros.parameters import COMMON_PARAMETERS, ParameterSpec, describe_unknown, markdown_table, spec_table
from egopress_ros.sync import ApproximateTimeSync, LatestSlot, Worker, make_synchronizer

MS = 1_000_000


def test_sets_are_emitted_when_their_last_member_arrives():
    sync = ApproximateTimeSync(3, slop_s=0.005, queue_size=10, names=["color", "depth", "info"])
    assert sync.add(0, 100 * MS, "c100") is None
    assert sync.add(1, 102 * MS, "d102") is None
    assert sync.add(2, 101 * MS, "i101") == ("c100", "d102", "i101")
    assert sync.pending() == [0, 0, 0] and sync.counters.emitted == 1


def test_stamps_beyond_the_slop_do_not_match_and_nearest_partner_wins():
    sync = ApproximateTimeSync(2, slop_s=0.010, queue_size=10)
    sync.add(0, 100 * MS, "a100")
    assert sync.add(1, 115 * MS, "b115") is None  # 15 ms apart
    sync.add(0, 133 * MS, "a133")
    # b131 is nearest to a133 (and within the slop); a100 is older than the set: dropped as stale.
    assert sync.add(1, 131 * MS, "b131") == ("a133", "b131")
    assert sync.counters.dropped_stale == 2  # a100 and b115
    assert sync.pending() == [0, 0]


def test_late_partner_matches_an_older_frame_and_drops_what_came_before():
    """The pressure node's case: images arrive at once, the HandMesh of frame k long after."""
    sync = ApproximateTimeSync(2, slop_s=0.001, queue_size=30)
    for k in range(5):
        sync.add(0, k * 33 * MS, f"image{k}")
    assert sync.add(1, 2 * 33 * MS, "mesh2") == ("image2", "mesh2")
    assert sync.pending() == [2, 0] and sync.counters.dropped_stale == 2  # image0, image1
    assert sync.add(1, 4 * 33 * MS, "mesh4") == ("image4", "mesh4")


def test_queue_overflow_and_time_jumps():
    sync = ApproximateTimeSync(2, slop_s=0.001, queue_size=3)
    for k in range(5):
        sync.add(0, k * MS, k)
    assert sync.pending() == [3, 0] and sync.counters.dropped_overflow == 2
    # A stamp older than the input's previous one: bag loop / clock reset, everything restarts.
    sync.add(1, 10 * MS, "b10")
    assert sync.add(0, 1 * MS, "a1") is None
    assert sync.counters.time_jumps == 1 and sync.pending() == [1, 0]
    assert sync.add(1, 1 * MS, "b1") == ("a1", "b1")  # b's history was cleared too: no second jump
    assert sync.counters.time_jumps == 1


def test_invalid_synchroniser_arguments():
    with pytest.raises(ValueError, match="num_inputs"):
        ApproximateTimeSync(0, 0.01)
    with pytest.raises(ValueError, match="slop_s"):
        ApproximateTimeSync(2, -1.0)
    with pytest.raises(IndexError):
        ApproximateTimeSync(2, 0.01).add(2, 0, None)


def test_make_synchronizer_falls_back_without_message_filters():
    try:
        import message_filters  # noqa: F401
    except ImportError:
        sync, implementation = make_synchronizer(3, 0.01, 5, ["a", "b", "c"])
        assert implementation == "egopress_ros.sync" and isinstance(sync, ApproximateTimeSync)
    else:  # a ROS distribution: message_filters is used
        _, implementation = make_synchronizer(3, 0.01, 5, ["a", "b", "c"])
        assert implementation == "message_filters"
    _, implementation = make_synchronizer(3, 0.01, 5, ["a", "b", "c"], prefer_message_filters=False)
    assert implementation == "egopress_ros.sync"


def test_latest_slot_keeps_only_the_newest_item():
    slot = LatestSlot()
    assert slot.take(timeout_s=0.01) is None
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.take(0.01) == 3 and slot.replaced == 2 and slot.put_count == 3
    assert slot.take(0.01) is None


def test_worker_processes_newest_sets_and_survives_errors():
    slot = LatestSlot()
    processed, errors = [], []
    gate = threading.Event()

    def process(item):
        if item == "bad":
            raise RuntimeError("boom")
        gate.wait(5)
        processed.append(item)

    worker = Worker(slot, process, lambda item, error: errors.append((item, str(error))))
    worker.start()
    slot.put("bad")
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    slot.put(1)
    while not worker.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    for item in (2, 3, 4):  # arrive while 1 is processed: only 4 survives
        slot.put(item)
    gate.set()
    while processed != [1, 4] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.stop(5)
    assert processed == [1, 4] and errors == [("bad", "boom")] and slot.replaced == 2


def test_rate_meter_and_latency_percentiles():
    now = [0.0]
    meter = RateMeter(window_s=2.0, clock=lambda: now[0])
    for _ in range(11):
        meter.tick()
        now[0] += 0.1
    assert meter.rate_hz() == pytest.approx(10.0, rel=0.1)
    now[0] += 5.0  # stopped: the rate decays (3 events in 5.3 s), and is 0 past the horizon
    assert meter.rate_hz() == pytest.approx(3 / 5.3) and meter.count == 11
    now[0] += 60.0
    assert meter.rate_hz() == 0.0 and meter.count == 11
    stats = LatencyStats(size=100)
    assert all(v != v for v in stats.percentiles_ms(50))  # NaN without samples
    for value in range(1, 101):
        stats.add(value / 1000)
    p50, p95 = stats.percentiles_ms(50, 95)
    assert p50 == pytest.approx(50.5) and p95 == pytest.approx(95.05)


@pytest.mark.parametrize("rate_hz", [30.0, 6.0, 1.0, 0.1, 0.02])
def test_rate_meter_is_right_at_low_rates(rate_hz):
    """Issue 21: /diagnostics said output_rate_hz 0.0 while pressure arrived at 0.1 Hz (a 5 s
    window held fewer than two outputs)."""
    now = [0.0]
    meter = RateMeter(clock=lambda: now[0])
    period = 1.0 / rate_hz
    for index in range(20):
        now[0] = index * period
        meter.tick()
        if index >= 2:  # right after an event and half-way to the next one
            assert meter.rate_hz() == pytest.approx(rate_hz, rel=1e-6)
            now[0] += period / 2
            assert meter.rate_hz() == pytest.approx(rate_hz, rel=1e-6)


def test_rate_meter_after_the_stream_stops():
    now = [0.0]
    meter = RateMeter(window_s=5.0, horizon_s=60.0, clock=lambda: now[0])
    assert meter.rate_hz() == 0.0
    meter.tick()
    assert meter.rate_hz() == 0.0  # one event: no spacing yet
    for _ in range(3):
        now[0] += 10.0
        meter.tick()
    assert meter.rate_hz() == pytest.approx(0.1)
    previous = meter.rate_hz()
    for age in (12.0, 20.0, 40.0, 55.0):  # overdue: decays, never above the last spacing
        now[0] = 30.0 + age
        rate = meter.rate_hz()
        assert 0 < rate < previous
        previous = rate
    now[0] = 30.0 + 61.0  # nothing for longer than the horizon
    assert meter.rate_hz() == 0.0
    with pytest.raises(ValueError, match="min_events"):
        RateMeter(min_events=1)


def test_rate_meter_keeps_few_timestamps_at_high_rates():
    now = [0.0]
    meter = RateMeter(window_s=1.0, clock=lambda: now[0])
    for index in range(10_000):
        now[0] = index / 1000.0
        meter.tick()
    assert meter.rate_hz() == pytest.approx(1000.0, rel=1e-3)
    assert len(meter._times) <= 1002


def test_fraction_meter_counts_recent_drops_only():
    now = [0.0]
    drops = FractionMeter(window_s=10.0, min_events=4, clock=lambda: now[0])
    drops.add(True)
    assert drops.fraction() is None  # too few sets to tell
    for hit in (True, True, False, True, False, False, False):
        now[0] += 1.0
        drops.add(hit)
    assert drops.counts() == (4, 8) and drops.fraction() == pytest.approx(0.5)
    now[0] += 6.5  # the first four (3 drops) leave the window
    assert drops.counts() == (1, 4) and drops.fraction() == pytest.approx(0.25)
    now[0] += 20.0
    assert drops.counts() == (0, 0) and drops.fraction() is None


def test_threshold_warnings_name_the_bound_that_was_passed():
    assert threshold_warnings(50.0, 0.1, warn_latency_s=1.0, warn_drop_fraction=0.5, drop_window_s=10.0) == []
    latency, = threshold_warnings(8400.0, None, warn_latency_s=1.0, warn_drop_fraction=0.5, drop_window_s=10.0)
    assert latency == "latency p95 8400 ms is above warn_latency_s=1 s"
    drops, = threshold_warnings(50.0, 0.98, warn_latency_s=1.0, warn_drop_fraction=0.5, drop_window_s=10.0)
    assert drops.startswith("98% of the synchronised frame sets of the last 10 s were dropped") and "warn_drop_fraction=0.5" in drops
    # 0 switches the latency bound off; a drop fraction cannot pass 1; NaN latency (no output yet) is no warning.
    assert threshold_warnings(8400.0, 1.0, warn_latency_s=0.0, warn_drop_fraction=1.0, drop_window_s=10.0) == []
    assert threshold_warnings(float("nan"), None, warn_latency_s=1.0, warn_drop_fraction=0.0, drop_window_s=10.0) == []
    assert len(threshold_warnings(2000.0, 0.6, warn_latency_s=1.0, warn_drop_fraction=0.5, drop_window_s=10.0)) == 2


def test_unknown_parameters_are_described_with_their_closest_names():
    assert describe_unknown({"sync_slop": ["sync_slop_s"], "colour_map": [], "torch_thread": ["torch_threads", "warn_period_s"]}) == (
        "'colour_map', 'sync_slop' (did you mean 'sync_slop_s'?), "
        "'torch_thread' (did you mean 'torch_threads' or 'warn_period_s'?)")


def test_problem_reports_are_throttled_per_kind_and_counted():
    now = [0.0]
    logged = []
    reporter = ProblemReporter(logged.append, period_s=5.0, active_s=3.0, clock=lambda: now[0])
    assert reporter.report("encoding", "bad encoding 1")
    assert not reporter.report("encoding", "bad encoding 2")
    assert reporter.report("size", "size mismatch")  # another kind is not throttled by the first
    now[0] = 6.0
    assert reporter.report("encoding", "bad encoding 3")
    assert logged == ["bad encoding 1", "size mismatch", "bad encoding 3 (1 more since the last report)"]
    assert reporter.counts() == {"encoding": 3, "size": 1}
    assert reporter.active() == {"encoding": "bad encoding 3"}  # "size" is older than active_s


def test_parameter_specs_check_types_choices_and_ranges():
    spec = ParameterSpec("steps", 10, "steps", minimum=1, maximum=100)
    assert spec.check(5) == 5
    with pytest.raises(ConfigError, match="'steps' must be a int"):
        spec.check(2.5)
    with pytest.raises(ConfigError, match="must be >= 1"):
        spec.check(0)
    ratio = ParameterSpec("slop", 0.02, "slop", minimum=0.0)
    assert ratio.check(1) == 1.0 and isinstance(ratio.check(1), float)
    with pytest.raises(ConfigError, match="must be a float"):
        ratio.check(True)
    choice = ParameterSpec("reliability", "best_effort", "qos", choices=("best_effort", "reliable"))
    with pytest.raises(ConfigError, match="must be one of"):
        choice.check("BEST_EFFORT")
    with pytest.raises(ValueError, match="declared twice"):
        spec_table([spec, spec])
    assert "| `steps` | int | `10` |" in markdown_table([spec])


def test_node_parameter_tables_are_complete_and_consistent():
    from egopress_ros.hand_mesh_node import PARAMETERS as HAND_MESH
    from egopress_ros.pressure_node import PARAMETERS as PRESSURE

    for table in (HAND_MESH, PRESSURE):
        specs = spec_table(table)
        assert set(spec.name for spec in COMMON_PARAMETERS) <= set(specs)
        for spec in table:
            assert spec.description and spec.check(spec.default) == spec.default
    pressure = spec_table(PRESSURE)
    for name in ("checkpoint", "device", "num_inference_steps", "scheduler", "warm_start_strength", "hand_side",
                 "input_reliability", "input_depth", "sync_slop_s", "frame_stride"):
        assert name in pressure
    assert spec_table(HAND_MESH)["backend"].choices == ("mediapipe", "keypoints")


def test_parameter_descriptors_carry_ranges_and_choices():
    pytest.importorskip("rcl_interfaces.msg", reason="the ROS 2 wheels are not installed (make setup)")
    steps = ParameterSpec("steps", 10, "steps", minimum=1, maximum=100).descriptor()
    assert steps.integer_range[0].from_value == 1 and steps.integer_range[0].to_value == 100
    choice = ParameterSpec("qos", "a", "qos", choices=("a", "b"), read_only=True).descriptor()
    assert choice.additional_constraints == "one of: a, b" and choice.read_only
