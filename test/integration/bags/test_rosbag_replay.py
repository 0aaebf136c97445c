"""Live replay of a recorded bag into the running nodes, as a ROS user does it:

    ros2 launch egopress_ros pressure.launch.py camera_namespace:=/camera backend:=keypoints \\
        keypoints_topic:=/ground_truth/hand_keypoints use_sim_time:=true
    ros2 bag record --use-sim-time -o live /egopress/hand_mesh /egopress/uv_pressure ...
    ros2 bag play --clock BAG

``launch``, ``launch_ros``, ``ros2 bag`` and ``rosbag2_py`` are not on PyPI, so:

- the launch file itself is evaluated with stand-ins for ``launch`` / ``launch_ros`` that record
  each ``Node(...)``; the nodes are started from the colcon install exactly as ``launch_ros``
  starts them (executable, ``__node`` / ``__ns``, parameter file, parameter overrides, remappings);
- rosbag_replay_player.py plays the sample bag with ``rosbags`` + rclpy publishers (serialized
  messages as recorded, ``/clock`` from the bag) and records the nodes' outputs into a new bag on
  the playback clock.

The nodes run the tiny untrained checkpoint and the ``keypoints`` backend (the sample bag carries
the ground-truth keypoints a tracker would publish). Checked: every output is stamped with a
colour image of the bag and carries its frame id, nothing comes out of order, the newest frame is
always processed, the fitted hand lands on the bag's ground-truth mesh, the nodes measure latency
on the bag's clock (use_sim_time), and the recorded bag reads back with ``rosbags``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from replay import PLAYER_SCRIPT, launch_commands, run_replay
from rosbag_helpers import deserialize, read_bag, sample_bag, stamp_ns, tiny_checkpoint
from ros_workspace import PACKAGE_NAME, REPO_ROOT, ColconBuild, isolated_env

from egopress_core.rosbag.sample import COLOR_TOPIC, GROUND_TRUTH_KEYPOINTS_TOPIC, GROUND_TRUTH_MESH_TOPIC
from egopress_core.rosbag.typestore import HAND_CONTACT, HAND_MESH, UV_PRESSURE

# slow: the colcon build, then the nodes and a live replay (~20 s besides the build).
pytestmark = [pytest.mark.ros, pytest.mark.slow]
pytest.importorskip("rclpy", reason="the ROS 2 wheels are not installed (make setup)")

RATE = 0.25  # the tiny model and the hand fit on a busy 2-core CPU: a quarter of real time
RECORDED = {
    "/egopress/hand_mesh": HAND_MESH,
    "/egopress/uv_pressure": UV_PRESSURE,
    "/egopress/hand_contact": HAND_CONTACT,
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


# ----------------------------------------------------------------------------------------------
# The scenario
# ----------------------------------------------------------------------------------------------


def _config_file(path: Path) -> Path:
    """The shipped config/pressure.yaml with test speed settings (one torch thread, 2 sampler steps)."""
    document = yaml.safe_load((REPO_ROOT / "config" / "pressure.yaml").read_text())
    for node in ("/**/hand_mesh_node", "/**/pressure_node"):
        document[node]["ros__parameters"].update(torch_threads=1, diagnostics_period_s=0.5)
    document["/**/pressure_node"]["ros__parameters"].update(num_inference_steps=2)
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def replay(colcon_build: ColconBuild, tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("replay")
    bag = sample_bag(tmp_path_factory, "mcap", "none")
    commands = launch_commands({
        "camera_namespace": "/camera", "backend": "keypoints", "keypoints_topic": GROUND_TRUTH_KEYPOINTS_TOPIC,
        "use_sim_time": "true", "checkpoint": str(tiny_checkpoint(tmp_path_factory)), "device": "cpu",
        "config_file": str(_config_file(workdir / "pressure.yaml")),
    }, colcon_build.prefix)  # fmt: skip
    env = isolated_env(colcon_build, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    recorded = workdir / "recorded"
    player = [sys.executable, str(PLAYER_SCRIPT), "--bag", str(bag), "--out", str(recorded), "--rate", str(RATE),
              "--colour-topic", COLOR_TOPIC, "--done-topic", "/egopress/hand_contact", "--timeout", "150"]
    player += [arg for topic, msgtype in RECORDED.items() for arg in ("--record", f"{topic}={msgtype}")]
    # Both nodes take the camera topics, the hand mesh node the keypoints.
    player += ["--wait-subscribers", f"{COLOR_TOPIC}=2", "--wait-subscribers", "/camera/aligned_depth_to_color/image_raw=2",
               "--wait-subscribers", "/camera/color/camera_info=2", "--wait-subscribers", f"{GROUND_TRUTH_KEYPOINTS_TOPIC}=1"]
    return {"bag": bag, **run_replay(commands, player, workdir, env)}


def test_launch_file_arguments_reach_the_nodes(replay):
    hand_mesh, pressure = replay["commands"]["hand_mesh_node"], replay["commands"]["pressure_node"]
    for command in (hand_mesh, pressure):
        assert "__ns:=/egopress" in command and "use_sim_time:=true" in command
        assert "color/image_raw:=/camera/color/image_raw" in command
        assert "aligned_depth_to_color/image_raw:=/camera/aligned_depth_to_color/image_raw" in command
    assert f"hand_keypoints:={GROUND_TRUTH_KEYPOINTS_TOPIC}" in hand_mesh and "backend:=keypoints" in hand_mesh


def test_the_whole_bag_was_played_and_the_newest_frame_came_out(replay):
    summary = replay["summary"]
    assert summary["nodes_ready"] and summary["timeouts"] == [] and summary["done"]
    assert summary["published"] == sum(len(items) for items in read_bag(replay["bag"]).values())
    assert replay["alive"] == {"hand_mesh_node": True, "pressure_node": True}
    assert replay["exit_codes"] == {"hand_mesh_node": 0, "pressure_node": 0}
    for name, text in replay["logs"].items():
        assert "Traceback" not in text, f"{name}:\n{text[-3000:]}"


def test_outputs_carry_the_stamps_of_the_bags_images_in_order(replay):
    source = read_bag(replay["bag"])
    colour_stamps = [stamp_ns(deserialize(raw, "sensor_msgs/msg/Image")) for _, raw in source[COLOR_TOPIC]]
    recorded = read_bag(replay["recorded"])
    for topic in ("/egopress/hand_mesh", "/egopress/uv_pressure", "/egopress/hand_contact"):
        messages = [deserialize(raw, RECORDED[topic]) for _, raw in recorded[topic]]
        stamps = [stamp_ns(message) for message in messages]
        assert len(stamps) >= 5, f"{topic}: only {len(stamps)} frames came out"
        assert set(stamps) <= set(colour_stamps), f"{topic} published a stamp no image of the bag has"
        assert stamps == sorted(set(stamps)), f"{topic}: out of order or repeated"
        assert stamps[-1] == colour_stamps[-1]  # the newest frame is never dropped as stale
        assert all(message.header.frame_id == "camera_color_optical_frame" for message in messages)
    # Recorded on the bag's clock (use_sim_time recorder): receive times lie in the bag's time span
    # (plus the drain after the last message), not on today's wall clock.
    summary = replay["summary"]
    times = [bag_time for topic in RECORDED for bag_time, _ in recorded.get(topic, [])]
    assert summary["bag_start_ns"] <= min(times) and max(times) - summary["bag_end_ns"] < 60 * 10**9


def test_the_fitted_hands_land_on_the_ground_truth_and_pressure_is_consistent(replay):
    truth = {stamp_ns(m): m for m in (deserialize(raw, HAND_MESH) for _, raw in read_bag(replay["bag"])[GROUND_TRUTH_MESH_TOPIC])}
    recorded = read_bag(replay["recorded"])
    for _, raw in recorded["/egopress/hand_mesh"]:
        mesh = deserialize(raw, HAND_MESH)
        assert mesh.estimator == "keypoints" and mesh.confidence > 0
        fitted = np.array([(p.x, p.y, p.z) for p in mesh.vertices])
        expected = np.array([(p.x, p.y, p.z) for p in truth[stamp_ns(mesh)].vertices])
        assert np.abs(fitted - expected).max() < 0.02
    for _, raw in recorded["/egopress/hand_contact"]:
        contact = deserialize(raw, HAND_CONTACT)
        pressure = np.asarray(contact.vertex_pressure_kpa)
        assert np.isfinite(pressure).all() and (pressure >= 0).all()
        np.testing.assert_array_equal(np.asarray(contact.vertex_contact), pressure > contact.contact_threshold_kpa)


def test_nodes_measure_latency_on_the_bags_clock(replay):
    """The bag's stamps are from 2023: on the wall clock the latency would be years."""
    recorded = read_bag(replay["recorded"])
    latest = {}
    for _, raw in recorded["/diagnostics"]:
        for status in deserialize(raw, RECORDED["/diagnostics"]).status:
            values = {item.key: item.value for item in status.values}
            if "latency_p50_ms" in values and int(values.get("frames_published", 0)) > 0:
                latest[status.name.split(":")[0]] = values  # "/egopress/hand_mesh_node: pipeline"
    assert len(latest) == 2, f"diagnostics seen from {sorted(latest)}"
    for values in latest.values():
        assert abs(float(values["latency_p50_ms"])) < 60_000 and values["state"] == "active"


def test_ros2_run_label_bag_is_installed(colcon_build: ColconBuild):
    """`ros2 run egopress_ros label_bag` is the installed executable under lib/egopress_ros."""
    executable = colcon_build.prefix / "lib" / PACKAGE_NAME / "label_bag"
    result = subprocess.run([str(executable), "--help"], env=colcon_build.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: egopress label-bag") and "--resume" in result.stdout
