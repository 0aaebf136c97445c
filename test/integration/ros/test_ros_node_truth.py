"""The live nodes tell the truth about themselves (issue 21, "The nodes tell the truth"), checked
on the installed executables as separate processes over real rclpy (``colcon_build`` fixture).

ros_truth_driver.py plays the camera (wall-clock stamps) while:

- the hand mesh node starts with ``torch_threads: two`` and an unknown key ``sync_slop``: one
  warning line names the unknown key and its closest declared name, one error line names the bad
  parameter, the node stays alive and unconfigured until the driver sets the parameter and
  configures it;
- two more pressure nodes start with ``sync_slop_s: -1`` and ``num_inference_steps: 0``: the same,
  one line each, alive, unconfigured, their /diagnostics at ERROR naming the parameter;
- the pressure node (tiny checkpoint) receives camera frames but no HandMesh, first while the
  hand mesh node is unconfigured, then while it is inactive: its warning says so, with the hand
  mesh node's state and /diagnostics;
- with ``max_gap_s`` tiny every processed frame restarts the model window: counted on
  /diagnostics, logged at most once per ``warn_period_s``;
- a burst makes the hand mesh node drop sets (``warn_drop_fraction: 0``: any drop warns; on this
  2-core machine it drops a few of 30) and the pressure node is slower than
  ``warn_latency_s: 0.01``: both go to WARN saying why;
- frames 6 s apart: ``output_rate_hz`` is their rate, not 0.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path

import pytest
import ros_truth_driver
import yaml
from ros_workspace import PACKAGE_NAME, ColconBuild, isolated_env, run_beside_nodes

# slow: the colcon build (shared), then four nodes and the driver (~60 s).
pytestmark = [pytest.mark.ros, pytest.mark.slow]

DRIVER_SCRIPT = Path(ros_truth_driver.__file__).resolve()
DRIVER_TIMEOUT_S = 240.0
SIGINT_TIMEOUT_S = 30.0
COMMON = {"torch_threads": 1, "input_timeout_s": 1.0, "diagnostics_period_s": 0.5}
# (process, node, bad parameter, its value, what the one line says)
BAD_PARAMETERS = {
    "hand_mesh": ("hand_mesh_node", "torch_threads", "two", "parameter 'torch_threads' must be a int. Got 'two'"),
    "slop": ("pressure_node", "sync_slop_s", -1, "parameter 'sync_slop_s' must be >= 0.0. Got -1"),
    "steps": ("pressure_node", "num_inference_steps", 0, "parameter 'num_inference_steps' must be >= 1. Got 0"),
}


@pytest.fixture(scope="module")
def synthetic_sequence(tmp_path_factory) -> Path:
    from egopress_core.cli.main import main

    out = tmp_path_factory.mktemp("synthetic_truth") / "data"
    assert main(["synth", "--out", str(out), "--sequences", "1", "--frames", "12",
                 "--image-size", "128", "128", "--no-progress"]) == 0
    return out / "seq_00000"


def _write(path: Path, node: str, parameters: dict) -> Path:
    path.write_text(yaml.safe_dump({f"/**/{node}": {"ros__parameters": parameters}}))
    return path


@pytest.fixture(scope="module")
def scenario(colcon_build: ColconBuild, synthetic_sequence: Path, tiny_checkpoint: Path, tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("ros_truth")
    env = isolated_env(colcon_build, PYTHONUNBUFFERED="1")
    namespace = f"/egopress_truth_{uuid.uuid4().hex[:8]}"
    starts = {
        # The hand mesh node: a wrongly typed value and an unknown key (a typo of sync_slop_s).
        "hand_mesh": (namespace, _write(workdir / "hand_mesh.yaml", "hand_mesh_node", {
            **COMMON, "backend": "keypoints", "torch_threads": "two", "sync_slop": 0.02, "warn_drop_fraction": 0.0})),
        "pressure": (namespace, _write(workdir / "pressure.yaml", "pressure_node", {
            **COMMON, "checkpoint": str(tiny_checkpoint), "num_inference_steps": 2, "warm_start_strength": 0.5,
            # Every frame restarts the window (frames are >= 33 ms apart); its log is throttled.
            "max_gap_s": 0.001, "warn_period_s": 30.0, "warn_latency_s": 0.01})),
        "slop": (f"{namespace}_slop", _write(workdir / "slop.yaml", "pressure_node", {**COMMON, "sync_slop_s": -1})),
        "steps": (f"{namespace}_steps", _write(workdir / "steps.yaml", "pressure_node",
                                               {**COMMON, "num_inference_steps": 0})),
    }
    executables = colcon_build.prefix / "lib" / PACKAGE_NAME
    commands, fqns = {}, {}
    for name, (node_namespace, parameters) in starts.items():
        executable = "hand_mesh_node" if name == "hand_mesh" else "pressure_node"
        fqns[name] = f"{node_namespace}/{executable}"
        commands[name] = [str(executables / executable), "--ros-args", "-r", f"__ns:={node_namespace}",
                          "--params-file", str(parameters)]
    report_path = workdir / "report.json"
    driver = [sys.executable, str(DRIVER_SCRIPT), "--namespace", namespace, "--data", str(synthetic_sequence),
              "--bad-node", fqns["slop"], "--bad-node", fqns["steps"], "--out", str(report_path),
              "--timeout", str(DRIVER_TIMEOUT_S)]
    run = run_beside_nodes(commands, driver, "driver", report_path, workdir, env, timeout_s=DRIVER_TIMEOUT_S + 60,
                           sigint_timeout_s=SIGINT_TIMEOUT_S)
    assert report_path.is_file()
    return {"report": json.loads(report_path.read_text()), "alive": run.alive, "exit_codes": run.exit_codes,
            "logs": run.logs, "fqns": fqns}


def _lines(text: str, *needles: str) -> list[str]:
    return [line for line in text.splitlines() if all(needle in line for needle in needles)]


@pytest.mark.parametrize("process", sorted(BAD_PARAMETERS))
def test_a_bad_parameter_gives_one_line_and_leaves_the_node_alive_unconfigured(scenario, process):
    _node, parameter, _value, said = BAD_PARAMETERS[process]
    log = scenario["logs"][process]
    assert "Traceback" not in log, log[-3000:]
    lines = _lines(log, f"'{parameter}'")
    assert len(lines) == 1, f"expected one line naming {parameter}:\n{log[-3000:]}"
    assert "[ERROR]" in lines[0] and "configure failed: " + said in lines[0] and "stays unconfigured" in lines[0]
    assert scenario["alive"][process], f"the {process} node exited:\n{log[-3000:]}"
    assert scenario["exit_codes"][process] == 0
    startup = scenario["report"]["phases"]["startup"]
    fqn = scenario["fqns"][process]
    assert startup["states"][fqn] == "unconfigured"  # it answers lifecycle requests
    diagnostics = startup["diagnostics"][fqn]
    assert diagnostics["level"] == 2 and diagnostics["message"].startswith("unconfigured: " + said)
    if process != "hand_mesh":  # the hand mesh node was fixed by the driver; the others stay unconfigured
        assert scenario["report"]["final_states"][fqn] == "unconfigured"


def test_a_fixed_parameter_lets_the_node_configure(scenario):
    fix = scenario["report"]["phases"]["fix"]
    assert fix == {"set": True, "configure": True, "state": "inactive"}
    assert scenario["report"]["final_states"][scenario["fqns"]["hand_mesh"]] == "active"


def test_unknown_parameters_are_warned_about_with_their_closest_names(scenario):
    lines = _lines(scenario["logs"]["hand_mesh"], "does not declare")
    assert len(lines) == 1 and "[WARN]" in lines[0]
    assert "'sync_slop' (did you mean 'sync_slop_s'?)" in lines[0]
    values = scenario["report"]["phases"]["startup"]["diagnostics"][scenario["fqns"]["hand_mesh"]]["values"]
    assert values["unknown_parameters"] == "sync_slop"
    # The other nodes were given only their own parameters.
    for process in ("pressure", "slop", "steps"):
        assert not _lines(scenario["logs"][process], "does not declare")


def test_missing_hand_mesh_is_blamed_on_the_hand_mesh_node_with_its_state(scenario):
    report, fqns = scenario["report"], scenario["fqns"]
    hand_mesh = fqns["hand_mesh"]
    unconfigured = report["phases"]["missing_unconfigured"]["diagnostics"]
    assert unconfigured["level"] == 1
    # The full line is in the log (the first report of a kind is never throttled).
    line = _lines(scenario["logs"]["pressure"], "no HandMesh on")[0]
    topic = hand_mesh.rsplit("/", 1)[0] + "/hand_mesh"
    assert f"no HandMesh on '{topic}' for " in line and "messages arrived on" in line
    assert f"no node publishes it; {hand_mesh} is unconfigured (its /diagnostics: ERROR 'unconfigured: " in line
    assert "torch_threads" in line and "configure and activate it" in line
    assert "check the topic name" not in line
    inactive = report["phases"]["missing_inactive"]["diagnostics"]
    assert inactive["level"] == 1
    assert f"the hand mesh node publishes none: {hand_mesh} is inactive" in inactive["message"]
    assert f"activate it (ros2 lifecycle set {hand_mesh} activate)" in inactive["message"]


def test_window_restarts_are_counted_and_their_log_is_throttled(scenario):
    report = scenario["report"]
    assert report["phases"]["flow"]["outputs"] >= 2, report["timeouts"]
    values = report["final_diagnostics"][scenario["fqns"]["pressure"]]["values"]
    restarts = int(values["problems_window_restart"])
    assert restarts >= 4 and int(values["window_resets"]) >= restarts
    logged = _lines(scenario["logs"]["pressure"], "window restarted")
    # warn_period_s=30: the first restart, then at most one line per 30 s with the count suppressed.
    assert 1 <= len(logged) <= 2, logged
    assert len(logged) == 1 or re.search(r"\(\d+ more since the last report\)", logged[1])


def test_diagnostics_warn_when_drops_or_latency_pass_their_bounds(scenario):
    burst = scenario["report"]["phases"]["burst"]
    hand_mesh = burst["hand_mesh_diagnostics"]
    assert hand_mesh["level"] == 1, hand_mesh
    assert re.search(r"\d+% of the synchronised frame sets of the last 10 s were dropped \(above "
                     r"warn_drop_fraction=0\)", hand_mesh["message"]), hand_mesh["message"]
    assert float(hand_mesh["values"]["drop_fraction_recent"]) > 0
    pressure = burst["pressure_diagnostics"]
    assert pressure["level"] == 1
    assert re.search(r"latency p95 \d+ ms is above warn_latency_s=0\.01 s", pressure["message"]), pressure["message"]


def test_output_rate_is_right_at_low_rates(scenario):
    """Outputs 6 s apart: the old 5 s window read 0.0 Hz between them."""
    low = scenario["report"]["phases"]["low_rate"]
    assert not [name for name in scenario["report"]["timeouts"] if "low-rate" in name]
    rate = float(low["pressure_diagnostics"]["values"]["output_rate_hz"])
    assert 1 / 9.0 < rate < 1 / 4.0, low
    assert 1 / 9.0 < float(low["hand_mesh_diagnostics"]["values"]["output_rate_hz"]) < 1 / 4.0


def test_nodes_survive_and_stop_cleanly_on_sigint(scenario):
    assert all(scenario["alive"].values()), scenario["alive"]
    assert all(code == 0 for code in scenario["exit_codes"].values()), scenario["exit_codes"]
    for name, text in scenario["logs"].items():
        assert "Traceback" not in text, f"{name} logged a traceback:\n{text[-3000:]}"
