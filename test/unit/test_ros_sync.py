"""The nodes' rclpy-free machinery: stamp synchronisation, the latest-only hand-off to the worker,
rates / latency / throttled problem reports, and the declared-parameter tables."""

from __future__ import annotations

import threading
import time

import pytest

from egopress_core.errors import ConfigError
from egopress_ros.monitoring import LatencyStats, ProblemReporter, RateMeter
from egopress_ros.parameters import COMMON_PARAMETERS, ParameterSpec, markdown_table, spec_table
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
    now[0] += 5.0
    assert meter.rate_hz() == 0.0 and meter.count == 11
    stats = LatencyStats(size=100)
    assert all(v != v for v in stats.percentiles_ms(50))  # NaN without samples
    for value in range(1, 101):
        stats.add(value / 1000)
    p50, p95 = stats.percentiles_ms(50, 95)
    assert p50 == pytest.approx(50.5) and p95 == pytest.approx(95.05)


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
