"""Replaying a bag into the live nodes as `ros2 launch` + `ros2 bag play` would, without launch,
launch_ros or ros2bag (none is on PyPI): the launch file evaluated with stand-ins to get each
node's command, the nodes started from a colcon build, and ``rosbag_replay_player.py`` playing the
bag (with /clock) and recording the outputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from unittest import mock

import rosbag_replay_player
import yaml
from ros_workspace import PACKAGE_NAME, REPO_ROOT, run_beside_nodes

LAUNCH_FILE = REPO_ROOT / "launch" / "pressure.launch.py"
PLAYER_SCRIPT = Path(rosbag_replay_player.__file__).resolve()




class _Recorded:
    """Stands for a launch action: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: dict) -> str:
        return context[self.name]


def launch_commands(arguments: dict[str, str], prefix: Path) -> dict[str, list[str]]:
    """node name -> the command ``launch_ros`` runs for it, from launch/pressure.launch.py with
    ``arguments`` (``ros2 launch ... name:=value``)."""
    share = str(prefix / "share" / PACKAGE_NAME)

    def module(name: str, **attributes) -> ModuleType:
        created = ModuleType(name)
        created.__dict__.update(attributes)
        return created

    class DeclareLaunchArgument(_Recorded):
        pass

    class OpaqueFunction(_Recorded):
        pass

    class Node(_Recorded):
        pass

    stand_ins = {
        "ament_index_python": module("ament_index_python"),
        "ament_index_python.packages": module("ament_index_python.packages", get_package_share_directory=lambda _: share),
        "launch": module("launch", LaunchDescription=_Recorded),
        "launch.actions": module("launch.actions", DeclareLaunchArgument=DeclareLaunchArgument, OpaqueFunction=OpaqueFunction),
        "launch.substitutions": module("launch.substitutions", LaunchConfiguration=_LaunchConfiguration),
        "launch_ros": module("launch_ros"),
        "launch_ros.actions": module("launch_ros.actions", Node=Node),
    }
    with mock.patch.dict(sys.modules, stand_ins):
        spec = importlib.util.spec_from_file_location("pressure_launch", LAUNCH_FILE)
        launch_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(launch_module)
        description = launch_module.generate_launch_description()
    entities = description.args[0]
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if isinstance(e, DeclareLaunchArgument)}
    assert set(arguments) <= set(declared), f"not launch arguments: {set(arguments) - set(declared)}"
    context = {**declared, **arguments}
    nodes = [node for e in entities if isinstance(e, OpaqueFunction) for node in e.kwargs["function"](context)]
    commands = {}
    for node in nodes:
        spec = node.kwargs
        assert spec["package"] == PACKAGE_NAME
        namespace = "/" + spec["namespace"].strip("/")
        command = [str(prefix / "lib" / PACKAGE_NAME / spec["executable"]), "--ros-args",
                   "-r", f"__node:={spec['name']}", "-r", f"__ns:={namespace}"]
        for parameters in spec.get("parameters", []):
            if isinstance(parameters, dict):
                for key, value in parameters.items():
                    command += ["-p", f"{key}:={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]
            else:
                command += ["--params-file", str(parameters)]
        for source, target in spec.get("remappings", []):
            command += ["-r", f"{source}:={target}"]
        commands[spec["name"]] = command
    return commands


def run_replay(commands: dict[str, list[str]], player: list[str], workdir: Path, env: dict[str, str]) -> dict:
    """Start the nodes, run the player to its end, stop the nodes (SIGINT, as launch does); the
    player's exit must be 0. Returns ``recorded`` (the bag of outputs), ``summary`` (the player's
    JSON), ``alive`` (each node still running when the player ended), ``exit_codes`` and ``logs``.

    Args:
        player: the player's command; its ``--out`` must be ``workdir / "recorded"``.
    """
    recorded = workdir / "recorded"
    run = run_beside_nodes(commands, player, "player", recorded, workdir, env, timeout_s=240)
    assert recorded.is_dir(), f"the player wrote {recorded} but not as a bag folder"
    return {"recorded": recorded, "summary": json.loads(recorded.with_suffix(".json").read_text()),
            "commands": commands, "alive": run.alive, "exit_codes": run.exit_codes, "logs": run.logs}
