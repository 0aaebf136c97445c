"""The live nodes started with the launch file's defaults, fed a camera's topics only, publish
``UVPressure``, as a ROS user runs them on a RealSense recording:

    ros2 launch egopress_ros pressure.launch.py camera_namespace:=/camera use_sim_time:=true
    ros2 bag play --clock BAG

No ``backend`` argument and no keypoint topic: the hand mesh node runs its default, the
``mediapipe`` backend, on the colour image. The bag is `egopress sample-bag`'s default sequence
(a single press) at 320 x 240: at 640 x 480 (1.5 MB a frame set) the sensor-data (best-effort)
inputs lost frames on the busy 2-core machine, the newest one included, which is the transport's
business, not the hand stage's. Its ground-truth topics are played too, and nothing in the
default configuration subscribes to them. The launch file is evaluated, the nodes started and
the bag played as in test_rosbag_replay.py (both use ``test/support/replay.py``), with the
tiny untrained checkpoint, whose pressures are meaningless but flow through the same code.
Checked: hand meshes from MediaPipe land on the bag's ground truth, and pressure comes out for
frames with a hand, stamped like the bag's images.
"""

from __future__ import annotations

import platform
import sys

import numpy as np
import pytest
import yaml
from rosbag_helpers import deserialize, read_bag, stamp_ns, tiny_checkpoint
from ros_workspace import REPO_ROOT, ColconBuild, isolated_env

from egopress_core.assets.hand_landmarker import BUILD_COMMAND, BUNDLE_PATH, MEDIAPIPE_MACHINES
from egopress_core.rosbag.sample import COLOR_TOPIC, DEPTH_TOPIC, GROUND_TRUTH_MESH_TOPIC, write_sample_bag
from egopress_core.rosbag.typestore import HAND_MESH, IMAGE, UV_PRESSURE

# slow: the colcon build, rendering, then the nodes and a live replay.
pytestmark = [
    pytest.mark.ros,
    pytest.mark.slow,
    pytest.mark.skipif(not BUNDLE_PATH.is_file() or platform.machine() not in MEDIAPIPE_MACHINES,
                       reason=f"the hand-landmarker bundle is not built ({BUILD_COMMAND}), or no mediapipe wheel exists here"),
]
pytest.importorskip("rclpy", reason="the ROS 2 wheels are not installed (make setup)")
from replay import PLAYER_SCRIPT, launch_commands, run_replay  # noqa: E402  (after the skip: it needs rclpy)

FRAMES = 24
RATE = 0.25  # MediaPipe, the fit and the tiny model on a busy 2-core CPU: a quarter of real time
RECORDED = {"/egopress/hand_mesh": HAND_MESH, "/egopress/uv_pressure": UV_PRESSURE}


@pytest.fixture(scope="module")
def replay(colcon_build: ColconBuild, tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("replay_camera_only")
    bag = workdir / "sample"
    stamps = list(write_sample_bag(bag, seconds=FRAMES / 30, image_size=(240, 320), progress=False).stamps_ns)
    # The shipped config, at test speed (one torch thread, two sampler steps).
    document = yaml.safe_load((REPO_ROOT / "config" / "pressure.yaml").read_text())
    for node in ("/**/hand_mesh_node", "/**/pressure_node"):
        document[node]["ros__parameters"].update(torch_threads=1, diagnostics_period_s=0.5)
    document["/**/pressure_node"]["ros__parameters"].update(num_inference_steps=2)
    config = workdir / "pressure.yaml"
    config.write_text(yaml.safe_dump(document))
    commands = launch_commands({"camera_namespace": "/camera", "use_sim_time": "true", "device": "cpu",
                                "checkpoint": str(tiny_checkpoint(tmp_path_factory)), "config_file": str(config)},
                               colcon_build.prefix)  # fmt: skip
    env = isolated_env(colcon_build, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    recorded = workdir / "recorded"
    player = [sys.executable, str(PLAYER_SCRIPT), "--bag", str(bag), "--out", str(recorded), "--rate", str(RATE),
              "--colour-topic", COLOR_TOPIC, "--done-topic", "/egopress/uv_pressure", "--timeout", "150", "--drain-s", "2"]
    player += [arg for topic, msgtype in RECORDED.items() for arg in ("--record", f"{topic}={msgtype}")]
    # Both nodes take the camera topics; nobody asks for keypoints.
    player += ["--wait-subscribers", f"{COLOR_TOPIC}=2", "--wait-subscribers", f"{DEPTH_TOPIC}=2",
               "--wait-subscribers", "/camera/color/camera_info=2"]
    return {"bag": bag, "stamps": stamps, **run_replay(commands, player, workdir, env)}


def test_the_defaults_need_no_hand_tracker(replay):
    hand_mesh = replay["commands"]["hand_mesh_node"]
    assert not any(part.startswith(("backend:=", "input_reliability:=")) for part in hand_mesh)  # the config file's
    assert replay["alive"] == {"hand_mesh_node": True, "pressure_node": True}
    assert replay["exit_codes"] == {"hand_mesh_node": 0, "pressure_node": 0}
    for name, text in replay["logs"].items():
        assert "Traceback" not in text, f"{name}:\n{text[-3000:]}"
    assert "hand-mesh backend 'mediapipe' ready" in replay["logs"]["hand_mesh_node"]


def test_uv_pressure_from_camera_topics_only(replay):
    source, recorded = read_bag(replay["bag"]), read_bag(replay["recorded"])
    truth = {stamp_ns(message): message for message in (deserialize(raw, HAND_MESH) for _, raw in source[GROUND_TRUTH_MESH_TOPIC])}
    colour = [stamp_ns(deserialize(raw, IMAGE)) for _, raw in source[COLOR_TOPIC]]
    meshes = [deserialize(raw, HAND_MESH) for _, raw in recorded.get("/egopress/hand_mesh", [])]
    found = [mesh for mesh in meshes if mesh.confidence > 0]
    # Stale frames are dropped live (the newest set is processed): most frames, not all.
    assert len(found) >= 5, f"{len(found)} of {len(meshes)} hand meshes found a hand"
    for mesh in found:
        assert mesh.estimator == "mediapipe"
        fitted = np.array([(p.x, p.y, p.z) for p in mesh.vertices])
        expected = np.array([(p.x, p.y, p.z) for p in truth[stamp_ns(mesh)].vertices])
        assert np.linalg.norm(fitted - expected, axis=1).mean() < 0.025
    pressure = [deserialize(raw, UV_PRESSURE) for _, raw in recorded.get("/egopress/uv_pressure", [])]
    assert len(pressure) >= 5, f"only {len(pressure)} UVPressure messages came out"
    stamps = [stamp_ns(message) for message in pressure]
    assert set(stamps) <= {stamp_ns(mesh) for mesh in found} and set(stamps) <= set(colour)
    assert stamps == sorted(set(stamps)) and stamps[-1] == colour[-1]
    for message in pressure:
        assert message.header.frame_id == "camera_color_optical_frame"
        assert np.isfinite(message.total_force_n) and message.total_force_n >= 0
