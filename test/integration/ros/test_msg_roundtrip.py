"""A real rclpy publisher and subscriber, in two processes, exchange the package's messages
over Fast DDS; what arrives equals what was sent, field by field.

The messages come from the ``colcon_build`` fixture (the package built as a ROS user builds it).
Each run uses a random ROS domain in 100-200, localhost-only discovery and topic names unique
to the run, so concurrent runs on one machine cannot see each other's messages.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import ros_peer
from ros_workspace import ColconBuild, isolated_env

# slow: every test needs the colcon build (~35 s once per session).
pytestmark = [pytest.mark.ros, pytest.mark.slow]

PEER_SCRIPT = Path(ros_peer.__file__).resolve()
PEER_TIMEOUT_S = 40.0
# The peers bound their own waits by PEER_TIMEOUT_S; this only guards against a hung process.
PROCESS_TIMEOUT_S = PEER_TIMEOUT_S + 30.0


def assert_same_fields(expected, actual, path: str) -> None:
    """Recursive equality of plain message data; NaN equals NaN; failures name the field."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected a message, got {actual!r:.200}"
        assert expected.keys() == actual.keys(), f"{path}: fields {sorted(expected)} != {sorted(actual)}"
        for name in expected:
            assert_same_fields(expected[name], actual[name], f"{path}.{name}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r:.200}"
        assert len(expected) == len(actual), f"{path}: length {len(expected)} != {len(actual)}"
        for index, (item_expected, item_actual) in enumerate(zip(expected, actual)):
            assert_same_fields(item_expected, item_actual, f"{path}[{index}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(actual, float) and math.isnan(actual), f"{path}: expected NaN, got {actual!r}"
    else:
        assert type(expected) is type(actual) or {type(expected), type(actual)} <= {int, float}, (
            f"{path}: type {type(expected).__name__} != {type(actual).__name__}"
        )
        assert expected == actual, f"{path}: sent {expected!r}, received {actual!r}"


@pytest.fixture(scope="module")
def exchanged(colcon_build: ColconBuild, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """Runs subscriber and publisher processes; returns (sent, received) documents."""
    workdir = tmp_path_factory.mktemp("roundtrip")
    env = isolated_env(colcon_build)
    topic_prefix = f"/egopress_roundtrip_{uuid.uuid4().hex[:12]}"
    sent_path, received_path = workdir / "sent.json", workdir / "received.json"

    def start(role: str, out: Path) -> subprocess.Popen[str]:
        command = [sys.executable, str(PEER_SCRIPT), role, "--topic-prefix", topic_prefix,
                   "--out", str(out), "--timeout", str(PEER_TIMEOUT_S)]
        return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    subscriber = start("subscribe", received_path)
    publisher = start("publish", sent_path)
    outputs = {}
    try:
        for role, process in (("publisher", publisher), ("subscriber", subscriber)):
            outputs[role] = process.communicate(timeout=PROCESS_TIMEOUT_S)[0]
    except subprocess.TimeoutExpired:
        pytest.fail(f"round-trip processes still running after {PROCESS_TIMEOUT_S} s")
    finally:
        for process in (publisher, subscriber):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    for role, process in (("publisher", publisher), ("subscriber", subscriber)):
        assert process.returncode == 0, f"{role} exited {process.returncode}:\n{outputs[role]}"
    return json.loads(sent_path.read_text()), json.loads(received_path.read_text())


def test_exchange_runs_over_fast_dds(exchanged: tuple[dict, dict]) -> None:
    sent, received = exchanged
    assert sent["rmw"] == received["rmw"] == "rmw_fastrtps_cpp"


def test_sent_messages_carry_every_field_of_the_specs(exchanged: tuple[dict, dict]) -> None:
    """The publisher set every field to the intended value (a field the spec forgot, or a
    message field the spec does not name, fails here)."""
    sent, _ = exchanged
    assert_same_fields(ros_peer.message_specs(), sent["messages"], "sent")


@pytest.mark.parametrize("message_type", sorted(ros_peer.TOPICS))
def test_received_equals_sent(exchanged: tuple[dict, dict], message_type: str) -> None:
    sent, received = exchanged
    assert_same_fields(sent["messages"][message_type], received["messages"][message_type], message_type)


def test_uv_pressure_map_decodes_as_32fc1_kpa(exchanged: tuple[dict, dict]) -> None:
    import numpy as np

    _, received = exchanged
    image = received["messages"]["UVPressure"][0]["map"]
    assert image["encoding"] == "32FC1"
    pressure = np.frombuffer(bytes(image["data"]), dtype="<f4").reshape(image["height"], image["width"])
    assert pressure.max() == pytest.approx(received["messages"]["UVPressure"][0]["max_pressure_kpa"])
    assert (pressure > 0).sum() == 10 * 22


def test_no_contact_centre_of_pressure_arrives_as_nan(exchanged: tuple[dict, dict]) -> None:
    _, received = exchanged
    no_contact = received["messages"]["HandContact"][1]
    assert no_contact["in_contact"] is False
    assert all(math.isnan(no_contact["center_of_pressure"][axis]) for axis in "xyz")
