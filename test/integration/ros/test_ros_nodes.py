"""The live nodes as a ROS user runs them: the installed ``hand_mesh_node`` and ``pressure_node``
executables (``colcon_build`` fixture), real rclpy over Fast DDS, in their own processes.

ros_node_driver.py plays the camera: a short synthetic sequence as RealSense-style topics plus
the sequence's ground-truth joints as the 21 keypoints an external hand tracker would publish.
The hand mesh node runs the ``keypoints`` backend, so every HandMesh is a real fit of the hand
model (the ``mediapipe`` backend, the launch default, is exercised from camera topics alone by
``test/integration/bags/test_rosbag_replay_camera_only.py``; ``ground_truth`` needs data-set
records, which no camera topic carries). The pressure node runs a tiny, untrained
EgoPressDiff checkpoint: its pressures are meaningless, but they flow through the same code as a
trained model's, so stamps, sizes, value ranges and the consistency of every published field
are checked, not the pressure itself.

The pressure node is started with a checkpoint that does not exist: it must stay alive,
unconfigured, say why, and come up once the driver sets a good checkpoint and calls the
lifecycle services. Then: lockstep frames, a 30 Hz burst (stale sets dropped and counted, not
queued), bad input (wrong colour encoding, depth of another size, all-NaN depth, a lost hand,
missing camera_info, time going backwards) each confirmed by the node's diagnostics and
followed by a good frame that must come through, and SIGINT, which must end both cleanly.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
import ros_node_driver
from ros_workspace import PACKAGE_NAME, ColconBuild, isolated_env, run_beside_nodes

# slow: the colcon build, then the nodes and the driver (~35 s).
pytestmark = [pytest.mark.ros, pytest.mark.slow]

DRIVER_SCRIPT = Path(ros_node_driver.__file__).resolve()
DRIVER_TIMEOUT_S = 240.0
SIGINT_TIMEOUT_S = 30.0
NUM_FRAMES = 24
MISSING_CHECKPOINT = "does_not_exist_checkpoint"


@pytest.fixture(scope="module")
def synthetic_sequence(tmp_path_factory) -> Path:
    """``egopress synth --sequences 1 --frames 24 --image-size 128 128``."""
    from egopress_core.cli.main import main

    out = tmp_path_factory.mktemp("synthetic") / "data"
    assert main(["synth", "--out", str(out), "--sequences", "1", "--frames", str(NUM_FRAMES),
                 "--image-size", "128", "128", "--no-progress"]) == 0
    return out / "seq_00000"


def _parameters_file(path: Path, missing_checkpoint: Path) -> Path:
    common = {"torch_threads": 1, "input_timeout_s": 1.0, "diagnostics_period_s": 0.5}
    document = {
        # The hand mesh node runs on simulated time (the driver publishes /clock), as for bag replay.
        "/**/hand_mesh_node": {"ros__parameters": {**common, "backend": "keypoints", "use_sim_time": True}},
        "/**/pressure_node": {"ros__parameters": {
            **common, "checkpoint": str(missing_checkpoint), "num_inference_steps": 2, "warm_start_strength": 0.5,
            # The pressure node takes reliable inputs, the hand mesh node the default best effort.
            "input_reliability": "reliable"}},
    }
    import yaml

    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def scenario(colcon_build: ColconBuild, synthetic_sequence: Path, tiny_checkpoint: Path, tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("ros_nodes")
    env = isolated_env(colcon_build, PYTHONUNBUFFERED="1")
    namespace = f"/egopress_nodes_{uuid.uuid4().hex[:10]}"
    parameters = _parameters_file(workdir / "parameters.yaml", workdir / MISSING_CHECKPOINT)
    executables = colcon_build.prefix / "lib" / PACKAGE_NAME
    commands = {name: [str(executables / name), "--ros-args", "-r", f"__ns:={namespace}", "--params-file", str(parameters)]
                for name in ("hand_mesh_node", "pressure_node")}
    report_path = workdir / "report.json"
    driver = [sys.executable, str(DRIVER_SCRIPT), "--namespace", namespace, "--data", str(synthetic_sequence),
              "--checkpoint", str(tiny_checkpoint), "--out", str(report_path), "--timeout", str(DRIVER_TIMEOUT_S)]
    run = run_beside_nodes(commands, driver, "driver", report_path, workdir, env, timeout_s=DRIVER_TIMEOUT_S + 60,
                           sigint_timeout_s=SIGINT_TIMEOUT_S)
    assert report_path.is_file()
    return {"report": json.loads(report_path.read_text()), "alive_before_sigint": run.alive,
            "exit_codes": run.exit_codes, "logs": run.logs, "missing_checkpoint": str(workdir / MISSING_CHECKPOINT)}


def _by_stamp(report: dict, topic: str) -> dict[int, dict]:
    return {item["stamp"]: item for item in report["received"].get(topic, [])}


def _good_stamps(report: dict) -> list[int]:
    """Stamps of the frames published without a defect."""
    stamps = []
    for name, phase in report["phases"].items():
        if name == "burst":
            continue
        stamps += [stamp for stamp in phase.get("published", []) if stamp != phase.get("bad_stamp") or name == "bad_time_backwards"]
    return stamps


def _diagnostic(report: dict, node: str, key: str) -> float:
    return float(report["diagnostics_before_cycle"][node]["values"][key])


def test_missing_checkpoint_leaves_the_node_unconfigured_until_fixed(scenario):
    lifecycle = scenario["report"]["phases"]["lifecycle"]
    assert lifecycle["connected"], "the hand mesh node never subscribed to the camera topics"
    assert lifecycle["initial_state"] == "unconfigured"
    diagnostics = lifecycle["initial_diagnostics"]
    assert diagnostics["level"] == 2 and scenario["missing_checkpoint"] in diagnostics["message"]
    assert "does not exist" in diagnostics["message"]
    assert f"configure failed: checkpoint folder {scenario['missing_checkpoint']} does not exist" in scenario["logs"]["pressure_node"]
    assert (lifecycle["set_checkpoint"], lifecycle["configure"], lifecycle["activate"]) == (True, True, True)
    assert lifecycle["final_state"] == lifecycle["hand_mesh_state"] == "active"
    assert lifecycle["all_connected"]


def test_every_good_frame_comes_out_with_its_own_stamp(scenario):
    report = scenario["report"]
    assert report["timeouts"] == []
    meshes, pressures, contacts = (_by_stamp(report, topic) for topic in ("hand_mesh", "uv_pressure", "hand_contact"))
    good = _good_stamps(report)
    assert len(good) >= 16
    for stamp in good:
        assert stamp in meshes and stamp in pressures and stamp in contacts, f"no output for the frame stamped {stamp}"
        for item in (meshes[stamp], pressures[stamp], contacts[stamp]):
            assert item["frame_id"] == ros_node_driver.FRAME_ID
    # Nothing is published with a stamp that was never sent.
    sent = {int(stamp) for stamp in report["frame_of_stamp"]}
    for topic in ("hand_mesh", "uv_pressure", "hand_contact"):
        assert set(_by_stamp(report, topic)) <= sent


def test_published_values_are_consistent(scenario):
    from egopress_core.hand.hand_model import load_hand_model

    report = scenario["report"]
    hand = load_hand_model("right")
    meshes = _by_stamp(report, "hand_mesh")
    for stamp in _good_stamps(report):
        mesh = meshes[stamp]
        assert mesh["confidence"] > 0 and mesh["estimator"] == "keypoints" and mesh["hand_side"] == 0
        assert mesh["num_vertices"] == hand.num_vertices and mesh["topology_id"] == hand.topology_id
        # The fit to the sequence's joints lands on the sequence's own mesh.
        assert mesh["max_vertex_error_m"] < 0.02
    for pressure in report["received"]["uv_pressure"]:
        assert pressure["encoding"] == "32FC1" and pressure["shape"] == [16, 16] and pressure["step"] == 16 * 4
        assert pressure["finite"] and pressure["min"] >= 0
        assert pressure["max_pressure_kpa"] == pytest.approx(pressure["max"])
        assert pressure["map_stamp"] == pressure["stamp"] and pressure["total_force_n"] >= 0
        assert pressure["uv_layout_id"].startswith("egopress_hand_v1_uv:16x16:") and pressure["threshold"] == 1.0
    for contact in report["received"]["hand_contact"]:
        assert contact["num_vertices"] == contact["num_flags"] == hand.num_vertices
        assert contact["finite"] and contact["min"] >= 0 and contact["flags_match_threshold"]
        assert contact["in_contact"] == (contact["num_contact"] > 0)
        assert (None in contact["center_of_pressure"]) == (not contact["in_contact"])
        assert contact["contact_area_m2"] >= 0 and contact["total_force_n"] >= 0
        assert contact["topology_id"] == hand.topology_id


def test_visualisation_mirrors_match_the_pressure(scenario):
    from egopress_core.hand.hand_model import load_hand_model

    report = scenario["report"]
    faces = load_hand_model("right").num_faces
    pressures = _by_stamp(report, "uv_pressure")
    images, raws = _by_stamp(report, "uv_pressure/image"), _by_stamp(report, "uv_pressure/image_raw")
    points, markers = _by_stamp(report, "hand_contact/points"), _by_stamp(report, "hand_contact/marker")
    mesh_markers = _by_stamp(report, "hand_mesh/marker")
    for stamp, pressure in pressures.items():
        assert images[stamp]["encoding"] == "rgb8" and images[stamp]["shape"] == [16, 16]
        assert raws[stamp]["encoding"] == "32FC1" and raws[stamp]["data_hash"] == pressure["data_hash"]
        assert points[stamp]["fields"] == ["x", "y", "z", "pressure", "contact"]
        assert points[stamp]["width"] * points[stamp]["height"] == report["received"]["hand_contact"][0]["num_vertices"]
        marker = markers[stamp]
        assert marker["type"] == 11 and marker["action"] == 0  # TRIANGLE_LIST, ADD
        assert marker["num_points"] == marker["num_colors"] == 3 * faces
        assert mesh_markers[stamp]["num_points"] == 3 * faces
    lost = report["phases"]["bad_hand_lost"]["bad_stamp"]
    assert markers[lost]["action"] == 2 and mesh_markers[lost]["action"] == 2  # DELETE when the hand is lost


def test_stale_sets_are_dropped_and_counted_not_queued(scenario):
    """A 30 Hz burst into nodes that process a few frames per second: the newest frame comes out
    soon after the burst (no backlog of old frames in front of it), and every complete set is
    accounted for as published, dropped as stale, or rejected."""
    import numpy as np

    report = scenario["report"]
    burst = report["phases"]["burst"]["published"]
    contacts = _by_stamp(report, "hand_contact")
    # The newest set is never replaced, so it is always processed.
    assert burst[-1] in contacts and burst[-1] in _by_stamp(report, "hand_mesh")
    lockstep = np.median([contacts[stamp]["received_after_s"] for stamp in report["phases"]["lockstep"]["published"][1:]])
    newest = contacts[burst[-1]]["received_after_s"]
    # Queued frames would put ~len(burst) frame times in front of the newest one.
    assert newest < 6 * lockstep, f"newest burst frame took {newest:.2f} s, a lockstep frame {lockstep:.2f} s"
    assert len([stamp for stamp in burst if stamp in contacts]) < len(burst)
    values = report["diagnostics_before_cycle"]["hand_mesh_node"]["values"]
    rejected = sum(int(values.get(key, 0)) for key in ("problems_color_image", "problems_size_mismatch"))
    assert int(values["sets_dropped_stale"]) > 0
    assert int(values["sets_complete"]) == int(values["frames_published"]) + int(values["sets_dropped_stale"]) + rejected
    pressure = report["diagnostics_before_cycle"]["pressure_node"]["values"]
    assert int(pressure["sets_complete"]) == (int(pressure["frames_published"]) + int(pressure["frames_without_hand"])
                                              + int(pressure["sets_dropped_stale"]))


@pytest.mark.parametrize("phase, logged", [
    ("bad_color_encoding", "colour image encoding '16UC1' is not supported"),
    ("bad_size_mismatch", "is 64x64 but the colour image"),
    ("bad_nan_depth", "0.0% valid readings"),
    ("bad_hand_lost", None),
    ("bad_missing_camera_info", "color/camera_info"),
    ("bad_time_backwards", "went backwards"),
])
def test_bad_input_is_reported_and_the_next_good_frame_comes_through(scenario, phase, logged):
    report = scenario["report"]
    record = report["phases"][phase]
    counter = record["counter"]
    assert counter["after"] > counter["before"], f"{counter['node']} never counted {counter['key']}"
    meshes, contacts = _by_stamp(report, "hand_mesh"), _by_stamp(report, "hand_contact")
    assert record["recovery_stamp"] in contacts, f"no output for the good frame after {phase}"
    if logged is not None:
        assert logged in scenario["logs"][counter["node"]]
    bad = record.get("bad_stamp")
    if phase in ("bad_color_encoding", "bad_size_mismatch"):
        assert bad not in meshes and bad not in contacts
    elif phase == "bad_nan_depth":
        assert bad in contacts  # NaN depth is "no reading" (REP 118): estimated without depth
    elif phase == "bad_hand_lost":
        assert meshes[bad]["confidence"] == 0 and meshes[bad]["all_nan"]
        assert bad not in contacts and bad not in _by_stamp(report, "uv_pressure")
    elif phase == "bad_missing_camera_info":
        assert not set(record["bad_stamps"]) & set(meshes)
    elif phase == "bad_time_backwards":
        assert bad in contacts  # processed, on the new timeline, after a window restart
        assert _diagnostic(report, "pressure_node", "sync_time_jumps") >= 1


def test_alternative_encodings_are_accepted(scenario):
    report = scenario["report"]
    stamp = report["phases"]["alternative_encodings"]["recovery_stamp"]  # bgr8 colour, 32FC1 depth in metres
    assert stamp in _by_stamp(report, "hand_contact")
    assert _by_stamp(report, "hand_mesh")[stamp]["max_vertex_error_m"] < 0.02


def test_diagnostics_report_rates_latency_and_state(scenario):
    report = scenario["report"]
    for node in ("hand_mesh_node", "pressure_node"):
        values = report["diagnostics_before_cycle"][node]["values"]
        assert values["state"] == "active"
        # Frames a second or more apart, the last 1.5 s ago: still a rate, not 0 (issue 21).
        assert float(values["frames_published"]) > 0 and float(values["output_rate_hz"]) > 0
        # On /clock time the latency can be 0: the bag clock stands still between frames.
        assert float(values["latency_p50_ms"]) >= 0 and float(values["latency_p95_ms"]) >= float(values["latency_p50_ms"])
        assert 0 < float(values["processing_p50_ms"]) <= float(values["processing_p95_ms"])
        assert values["sync"] in ("egopress_ros.sync", "message_filters")
    assert report["diagnostics_before_cycle"]["pressure_node"]["values"]["window_length"] == "4"


def test_sim_time_node_measures_latency_on_the_bag_clock(scenario):
    """Stamps are from 2023; on /clock (the newest frame's stamp) the latency is that of the
    processing, on the wall clock it would be years."""
    report = scenario["report"]
    latency_ms = float(report["diagnostics_before_cycle"]["hand_mesh_node"]["values"]["latency_p50_ms"])
    assert 0 <= latency_ms < 60_000
    pressure = report["diagnostics_before_cycle"]["pressure_node"]
    assert float(pressure["values"]["latency_p50_ms"]) > 86_400_000
    # Above warn_latency_s (default 1 s): WARN, saying so.
    assert pressure["level"] == 1 and "is above warn_latency_s=1 s" in pressure["message"], pressure["message"]


def test_deactivate_unsubscribes_and_a_cleanup_configure_cycle_restores_output(scenario):
    report = scenario["report"]
    cycle = report["phases"]["lifecycle_cycle"]
    assert cycle["deactivate"] and cycle["state_after_deactivate"] == "inactive"
    assert cycle["inactive_stamp"] in _by_stamp(report, "hand_mesh")
    assert cycle["inactive_stamp"] not in _by_stamp(report, "hand_contact")
    assert cycle["cleanup"] and cycle["state_after_cleanup"] == "unconfigured"
    assert cycle["configure"] and cycle["activate"] and cycle["state_after_activate"] == "active"
    assert cycle["reconnected"] and cycle["active_stamp"] in _by_stamp(report, "hand_contact")
    log = scenario["logs"]["pressure_node"]
    assert "inactive: unsubscribed, model moved off the accelerator" in log and "cleaned up: model unloaded" in log


def test_each_node_says_once_that_it_takes_a_distorted_lens_images_as_rectified(scenario):
    for name, text in scenario["logs"].items():
        lines = [line for line in text.splitlines() if "describes a lens with distortion (plumb_bob, largest coefficient 0.0663)" in line]
        assert len(lines) == 1 and "color/image_raw" in lines[0] and "rectif" in lines[0], (name, lines)


def test_nodes_survive_everything_and_stop_cleanly_on_sigint(scenario):
    assert scenario["alive_before_sigint"] == {"hand_mesh_node": True, "pressure_node": True}
    assert scenario["exit_codes"] == {"hand_mesh_node": 0, "pressure_node": 0}, scenario["logs"]
    for name, text in scenario["logs"].items():
        assert "Traceback" not in text, f"{name} logged a traceback:\n{text[-3000:]}"
