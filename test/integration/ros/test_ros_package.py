"""The package as a ROS user's tools see it after ``colcon build`` (fixture ``colcon_build``).

Each check runs in a fresh process with only the install space's environment
(``source install/setup.bash`` over the ROS underlay) and a working directory outside the
sources, so nothing can be picked up from the repository by accident.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ros_workspace import INSTALL_PROBES, PACKAGE_NAME, REPO_ROOT, ColconBuild

# slow: every test needs the colcon build (~35 s once per session).
pytestmark = [pytest.mark.ros, pytest.mark.slow]

MESSAGES = ("HandMesh", "UVPressure", "HandContact")


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _python(code: str, build: ColconBuild, cwd: Path) -> dict:
    """Runs ``code`` (which prints one JSON document) with the install space's environment."""
    result = _run([sys.executable, "-c", code], build.env, cwd)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def _site_packages(build: ColconBuild) -> Path:
    matches = sorted((build.prefix / "lib").glob("python3*/site-packages"))
    assert len(matches) == 1, f"expected one site-packages under {build.prefix / 'lib'}, found {matches}"
    return matches[0]


@pytest.mark.parametrize("name, command", [("train", "train"), ("label_bag", "label-bag"),
                                           ("label_bags", "label-bags")])
def test_command_executables_run_from_install_space(name: str, command: str, colcon_build: ColconBuild,
                                                    tmp_path: Path) -> None:
    """`ros2 run egopress_ros <name>` is `egopress <command>`."""
    executable = colcon_build.prefix / "lib" / PACKAGE_NAME / name
    assert executable.is_file(), f"{executable} was not installed"
    assert os.access(executable, os.X_OK), f"{executable} is not executable"
    shebang = executable.read_text().splitlines()[0]
    assert shebang == f"#!{sys.executable}", f"{executable} starts with {shebang!r}"

    result = _run([str(executable), "--help"], colcon_build.env, tmp_path)

    assert result.returncode == 0, f"`{name} --help` exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert f"usage: egopress {command}" in result.stdout


def test_messages_import_from_install_space(colcon_build: ColconBuild, tmp_path: Path) -> None:
    code = f"""
import json
import egopress_core, egopress_ros
from egopress_ros.msg import {", ".join(MESSAGES)}
fields = {{cls.__name__: cls.get_fields_and_field_types() for cls in ({", ".join(MESSAGES)})}}
mesh = HandMesh()
print(json.dumps({{
    "egopress_core": egopress_core.__file__,
    "egopress_ros": egopress_ros.__file__,
    "msg": __import__("egopress_ros.msg", fromlist=["*"]).__file__,
    "fields": fields,
    "fixed_sizes": [len(mesh.global_orient), len(mesh.hand_pose), len(mesh.betas), len(mesh.joints)],
}}))
"""
    report = _python(code, colcon_build, tmp_path)

    site_packages = _site_packages(colcon_build)
    for module in ("egopress_core", "egopress_ros", "msg"):
        assert Path(report[module]).is_relative_to(site_packages), f"{module} came from {report[module]}"
    assert set(report["fields"]) == set(MESSAGES)
    assert report["fields"]["UVPressure"]["map"] == "sensor_msgs/Image"
    assert report["fields"]["HandContact"]["center_of_pressure"] == "geometry_msgs/Point"
    assert report["fixed_sizes"] == [3, 45, 10, 21]


def test_installed_package_init_is_ours_not_rosidls(colcon_build: ColconBuild) -> None:
    """rosidl installs an empty egopress_ros/__init__.py; ours (extending __path__) must win."""
    installed = _site_packages(colcon_build) / PACKAGE_NAME / "__init__.py"
    assert installed.read_text() == (REPO_ROOT / PACKAGE_NAME / "__init__.py").read_text()


def test_source_tree_first_still_finds_generated_messages(colcon_build: ColconBuild, tmp_path: Path) -> None:
    """Developers import egopress_ros from the sources; egopress_ros.msg must still resolve."""
    env = dict(colcon_build.env)
    env["PYTHONPATH"] = os.pathsep.join([str(colcon_build.source_dir), env["PYTHONPATH"]])
    code = """
import json
import egopress_ros
from egopress_ros.msg import UVPressure
print(json.dumps({"package": egopress_ros.__file__, "msg": UVPressure.__module__,
                  "msg_file": __import__(UVPressure.__module__, fromlist=["*"]).__file__}))
"""
    result = _run([sys.executable, "-c", code], env, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["package"]).parent == colcon_build.source_dir / PACKAGE_NAME
    assert Path(report["msg_file"]).is_relative_to(_site_packages(colcon_build))


def test_launch_and_config_installed_to_share(colcon_build: ColconBuild) -> None:
    share = colcon_build.prefix / "share" / PACKAGE_NAME
    assert (share / "package.xml").is_file()
    for folder in INSTALL_PROBES:
        sources = sorted(
            path.relative_to(colcon_build.source_dir / folder)
            for path in (colcon_build.source_dir / folder).rglob("*")
            if path.is_file()
        )
        assert sources, f"the build's {folder}/ holds no file to check"
        missing = [str(path) for path in sources if not (share / folder / path).is_file()]
        assert not missing, f"not installed under {share / folder}: {missing}"


def test_ament_index_registers_package_and_interfaces(colcon_build: ColconBuild, tmp_path: Path) -> None:
    index = colcon_build.prefix / "share" / "ament_index" / "resource_index"
    assert (index / "packages" / PACKAGE_NAME).is_file()
    interfaces = (index / "rosidl_interfaces" / PACKAGE_NAME).read_text().split()
    for name in MESSAGES:
        assert f"msg/{name}.msg" in interfaces

    # What `ros2 run` / `ros2 launch` do to locate the package.
    code = f"""
import json
from ament_index_python.packages import get_package_prefix, get_package_share_directory
print(json.dumps({{"prefix": get_package_prefix("{PACKAGE_NAME}"),
                   "share": get_package_share_directory("{PACKAGE_NAME}")}}))
"""
    report = _python(code, colcon_build, tmp_path)
    assert Path(report["prefix"]) == colcon_build.prefix
    assert Path(report["share"]) == colcon_build.prefix / "share" / PACKAGE_NAME
