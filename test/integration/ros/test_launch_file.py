"""launch/pressure.launch.py and config/pressure.yaml checked against what the nodes really
declare and what the build really installs.

``launch`` / ``launch_ros`` are not on PyPI, so most checks read the launch file's syntax tree:
the executables it starts exist in the colcon install space and name importable entry points,
every parameter the YAML (or the launch file itself) sets is declared by the node it is meant for
(the nodes' module-level ``PARAMETERS`` tables) with a value of the right type and range, every
launch argument is declared and used, remapped topics are the nodes' real input names, and there
is no ``eval``. Over stand-ins of ``launch`` / ``launch_ros`` the launch file's own code runs too:
the overriding arguments (``input_reliability:=reliable``...) reach the right nodes as parameters
they declare, with values they accept. Where ``launch_ros`` is importable (a ROS distribution), the launch file is also
run and both nodes must start and stay up.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import sys
import threading
import time

import pytest
import yaml
from ros_workspace import PACKAGE_NAME, REPO_ROOT, ColconBuild

LAUNCH_FILE = REPO_ROOT / "launch" / "pressure.launch.py"
CONFIG_FILE = REPO_ROOT / "config" / "pressure.yaml"
RVIZ_FILE = REPO_ROOT / "config" / "egopress.rviz"
STANDARD_PARAMETERS = {"use_sim_time"}
# Declared parameters the shipped YAML may leave out (their defaults are what users want there).
NOT_IN_CONFIG = {"autostart"}


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if called == name:
                found.append(node)
    return found


def _keyword(call: ast.Call, name: str):
    return next((keyword.value for keyword in call.keywords if keyword.arg == name), None)


def _constant(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _egopress_nodes(tree) -> dict[str, ast.Call]:
    """Node name -> its launch_ros Node(...) call, for this package's nodes."""
    nodes = {}
    for call in _calls(tree, "Node"):
        package = _keyword(call, "package")
        if _constant(package) == PACKAGE_NAME or (isinstance(package, ast.Name) and package.id == "PACKAGE"):
            nodes[_constant(_keyword(call, "name"))] = call
    return nodes


def _node_module(node_name: str):
    return importlib.import_module(f"egopress_ros.{node_name}")


def _declared(node_name: str) -> dict:
    return {spec.name: spec for spec in _node_module(node_name).PARAMETERS}


def test_launch_file_evaluates_no_strings(tree):
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not {"eval", "exec", "compile", "__import__"} & names
    assert "PythonExpression" not in imported | names | attributes


def test_every_launch_argument_is_declared_and_used(tree):
    declared = {_constant(call.args[0]) for call in _calls(tree, "DeclareLaunchArgument")}
    used = {_constant(call.args[0]) for name in ("LaunchConfiguration", "argument") for call in _calls(tree, name)
            if call.args and _constant(call.args[0])}
    assert None not in declared
    assert declared == used, f"declared but unused: {declared - used}; used but undeclared: {used - declared}"
    for call in _calls(tree, "DeclareLaunchArgument"):
        assert _constant(_keyword(call, "description")), f"{_constant(call.args[0])} has no description"
    for required in ("camera_namespace", "color_topic", "depth_topic", "camera_info_topic", "checkpoint", "device",
                     "use_sim_time", "config_file", "input_reliability"):
        assert required in declared


@pytest.mark.slow  # needs the colcon build (~35 s once per session)
def test_launched_executables_are_installed_entry_points(tree, colcon_build: ColconBuild):
    nodes = _egopress_nodes(tree)
    assert set(nodes) == {"hand_mesh_node", "pressure_node"}
    for name, call in nodes.items():
        executable = _constant(_keyword(call, "executable"))
        path = colcon_build.prefix / "lib" / PACKAGE_NAME / executable
        assert path.is_file() and os.access(path, os.X_OK), f"{path} is not an installed executable"
        match = re.search(r"^from (\S+) import (\w+)$", path.read_text(), re.MULTILINE)
        assert match, f"{path} does not name an entry point"
        module = importlib.import_module(match.group(1))
        assert callable(getattr(module, match.group(2))), f"{match.group(1)}.{match.group(2)} is not callable"
        assert module.__name__ == f"egopress_ros.{name}"


def test_config_parameters_are_declared_by_their_nodes(tree):
    document = yaml.safe_load(CONFIG_FILE.read_text())
    launched = set(_egopress_nodes(tree))
    configured = set()
    for key, section in document.items():
        node_name = key.split("/")[-1]
        configured.add(node_name)
        assert node_name in launched, f"{key} configures a node the launch file does not start"
        assert set(section) == {"ros__parameters"}, f"{key} must hold only ros__parameters"
        declared = _declared(node_name)
        values = section["ros__parameters"]
        for name, value in values.items():
            if name in STANDARD_PARAMETERS:
                continue
            assert name in declared, f"{key}: {name!r} is not a parameter of {node_name}"
            assert declared[name].check(value) == value
        missing = set(declared) - set(values) - NOT_IN_CONFIG
        assert not missing, f"{key} leaves out {sorted(missing)} (document them in the shipped config)"
    assert configured == launched


def _parameter_override_keys(tree, variable: str) -> set[str]:
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == variable and isinstance(node.value, ast.Dict):
                    keys |= {_constant(key) for key in node.value.keys}
                if (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                        and target.value.id == variable):
                    keys.add(_constant(target.slice))
    return keys


def test_launch_parameter_overrides_are_declared(tree):
    for name, call in _egopress_nodes(tree).items():
        parameters = _keyword(call, "parameters")
        assert isinstance(parameters, ast.List)
        variables = [element.id for element in parameters.elts if isinstance(element, ast.Name)]
        assert variables[0] == "config_file", f"{name}: the config file must come first (overrides follow it)"
        declared = set(_declared(name)) | STANDARD_PARAMETERS
        for variable in variables[1:]:
            keys = _parameter_override_keys(tree, variable)
            assert keys and None not in keys
            assert keys <= declared, f"{name}: {sorted(keys - declared)} are not its parameters"


def test_remappings_name_the_nodes_real_inputs(tree):
    from egopress_ros import hand_mesh_node, node_base

    inputs = {
        "hand_mesh_node": {node_base.COLOR_TOPIC, node_base.DEPTH_TOPIC, node_base.CAMERA_INFO_TOPIC,
                           hand_mesh_node.KEYPOINTS_TOPIC},
        "pressure_node": {node_base.COLOR_TOPIC, node_base.DEPTH_TOPIC, node_base.CAMERA_INFO_TOPIC},
    }
    camera_inputs = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                         and any(isinstance(t, ast.Name) and t.id == "camera_inputs" for t in node.targets))
    camera = {_constant(pair.elts[0]) for pair in camera_inputs.elts}
    for name, call in _egopress_nodes(tree).items():
        remapped = set()
        for node in ast.walk(_keyword(call, "remappings")):
            if isinstance(node, ast.Name) and node.id == "camera_inputs":
                remapped |= camera
            elif isinstance(node, ast.Tuple):
                remapped.add(_constant(node.elts[0]))
        assert remapped == inputs[name], f"{name} remaps {remapped}, its inputs are {inputs[name]}"


def _stub_module(monkeypatch, name: str, **attributes):
    import types

    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def _run_launch_file(monkeypatch, **arguments) -> dict[str, dict]:
    """The launch file run over stand-ins of launch / launch_ros (not on PyPI): node name -> the
    keyword arguments of its launch_ros ``Node`` for the given launch arguments."""

    class Recorded:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    class LaunchConfiguration(Recorded):
        def perform(self, context):
            return context[self.args[0]]

    class Node(Recorded):
        pass

    for name in ("launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions",
                 "ament_index_python", "ament_index_python.packages"):
        _stub_module(monkeypatch, name)
    sys.modules["launch"].LaunchDescription = Recorded
    sys.modules["launch.actions"].__dict__.update(DeclareLaunchArgument=Recorded, OpaqueFunction=Recorded)
    sys.modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    sys.modules["launch_ros.actions"].Node = Node
    sys.modules["ament_index_python.packages"].get_package_share_directory = lambda package: f"/share/{package}"
    spec = importlib.util.spec_from_file_location("pressure_launch_under_test", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    entities = description.args[0]
    context = {entity.args[0]: entity.kwargs["default_value"] for entity in entities if entity.args}
    unknown = set(arguments) - set(context)
    assert not unknown, f"not launch arguments: {unknown}"
    context.update(arguments)
    setup = next(entity for entity in entities if "function" in entity.kwargs)
    actions = setup.kwargs["function"](context)
    return {action.kwargs["name"]: action.kwargs for action in actions if action.kwargs.get("package") == PACKAGE_NAME}


@pytest.mark.parametrize("arguments, expected", [
    ({}, {"hand_mesh_node": {"use_sim_time": False}, "pressure_node": {"use_sim_time": False}}),
    ({"input_reliability": "reliable"}, {"hand_mesh_node": {"input_reliability": "reliable", "use_sim_time": False},
                                         "pressure_node": {"input_reliability": "reliable", "use_sim_time": False}}),
    ({"input_reliability": "best_effort", "hand_side": "left", "backend": "keypoints", "device": "cpu",
      "checkpoint": "/data/ckpt", "use_sim_time": "true"},
     {"hand_mesh_node": {"input_reliability": "best_effort", "hand_side": "left", "backend": "keypoints",
                         "use_sim_time": True},
      "pressure_node": {"input_reliability": "best_effort", "hand_side": "left", "device": "cpu",
                        "checkpoint": "/data/ckpt", "use_sim_time": True}}),
])
def test_launch_arguments_reach_the_nodes_as_declared_parameters(monkeypatch, arguments, expected):
    """``input_reliability:=reliable`` (the README's example) and the other overriding arguments
    end up as parameters of the right nodes, after the config file, with values the nodes accept."""
    nodes = _run_launch_file(monkeypatch, **arguments)
    assert set(nodes) == {"hand_mesh_node", "pressure_node"}
    for name, launched in nodes.items():
        config_file, overrides = launched["parameters"]
        assert config_file.endswith("config/pressure.yaml")
        assert overrides == expected[name]
        declared = _declared(name)
        for key, value in overrides.items():
            if key not in STANDARD_PARAMETERS:
                assert declared[key].check(value) == value


def test_default_camera_topics_are_realsense_topics(tree):
    """The launch file's topic joining, run on its own (the rest needs launch to import)."""
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "_camera_topic")
    scope: dict = {}
    exec(compile(ast.Module(body=[function], type_ignores=[]), str(LAUNCH_FILE), "exec"), scope)  # noqa: S102
    join = scope["_camera_topic"]
    defaults = {_constant(call.args[0]): _constant(_keyword(call, "default_value"))
                for call in _calls(tree, "DeclareLaunchArgument")}
    camera = defaults["camera_namespace"]
    assert join(camera, defaults["color_topic"]) == "/camera/camera/color/image_raw"
    assert join(camera, defaults["depth_topic"]) == "/camera/camera/aligned_depth_to_color/image_raw"
    assert join(camera, defaults["camera_info_topic"]) == "/camera/camera/color/camera_info"
    assert join("/head/", "/absolute/topic") == "/absolute/topic"
    assert join("", "color/image_raw") == "/color/image_raw"


def test_scheduler_choices_match_the_model():
    from egopress_core.options import COMPILE_MODES, PRECISIONS, SCHEDULERS
    from egopress_ros.pressure_node import PARAMETERS

    choices = {spec.name: spec.choices for spec in PARAMETERS}
    assert choices["scheduler"] == tuple(SCHEDULERS)
    assert choices["precision"] == tuple(PRECISIONS)
    assert choices["compile_mode"] == tuple(COMPILE_MODES)


def test_pressure_node_sampling_defaults_are_the_streaming_estimators():
    """The node's sampling defaults are LIVE_SAMPLING, which StreamingPressureEstimator's signature uses."""
    import inspect

    from egopress_core.inference import StreamingPressureEstimator
    from egopress_ros.pressure_node import PARAMETERS

    signature = inspect.signature(StreamingPressureEstimator).parameters
    node = {spec.name: spec.default for spec in PARAMETERS}
    for name in ("num_inference_steps", "scheduler", "warm_start_strength", "guidance_scale", "seed", "precision",
                 "channels_last"):
        assert node[name] == signature[name].default, name


def test_rviz_config_shows_the_nodes_outputs():
    config = yaml.safe_load(RVIZ_FILE.read_text())
    topics = {display["Topic"]["Value"] for display in config["Visualization Manager"]["Displays"] if "Topic" in display}
    outputs = {"/egopress/uv_pressure/image", "/egopress/hand_contact/marker", "/egopress/hand_mesh/marker",
               "/egopress/hand_contact/points"}
    assert outputs <= topics
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "camera_color_optical_frame"


def test_launch_file_runs_under_launch_ros(tmp_path):
    """With a ROS distribution: run the launch file; both nodes must start and keep running."""
    pytest.importorskip("launch_ros", reason="launch_ros is not installable from PyPI; this runs in a ROS distribution")
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription, RegisterEventHandler
    from launch.event_handlers import OnProcessExit, OnProcessStart
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    started, exited = [], []
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={"namespace": f"egopress_launch_{os.getpid()}", "backend": "keypoints",
                          "checkpoint": str(tmp_path / "no_checkpoint")}.items())
    description = LaunchDescription([
        RegisterEventHandler(OnProcessStart(on_start=lambda event, context: started.append(event.action.name))),
        RegisterEventHandler(OnProcessExit(on_exit=lambda event, context: exited.append(event.action.name))),
        include,
    ])
    service = LaunchService()
    service.include_launch_description(description)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(10)  # a node that crashes at start-up (or on its missing checkpoint) exits by now
        exited_while_running = list(exited)
    finally:
        service.shutdown()
        thread.join(timeout=30)
    assert len(started) == 2, f"started: {started}"
    # The missing checkpoint leaves the pressure node unconfigured, not dead.
    assert exited_while_running == [], f"exited before shutdown: {exited_while_running}"
