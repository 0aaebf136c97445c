"""Building and running the package the way a ROS user does, for the tests.

``build_copy`` runs ``colcon build`` on a copy of the sources (nothing reused from the
developer's build/ and install/) and returns the environment of ``source install/setup.bash``
over the ROS underlay: the PyPI wheels in the running virtual environment, or a sourced ROS
distribution. test/conftest.py wraps it in the session fixture ``colcon_build``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # test/support/ros_workspace.py
PACKAGE_NAME = "egopress_ros"

# Never copied into the build's source tree: VCS data, environments, build outputs, run outputs
# (the directories .gitignore names).
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "install", "log", "__pycache__", ".pytest_cache", "*.egg-info",
    "runs", "outputs", "data", ".whl", ".gl",
)
# Files added to the copy's launch/ and config/ so that the test sees those folders' install rule
# at work even while the repository's folders are still empty.
INSTALL_PROBES = {"launch": "install_probe.launch.py", "config": "install_probe.yaml"}
_PATH_VARIABLES = ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "LD_LIBRARY_PATH")
_COLCON_TIMEOUT_S = 600


@dataclass(frozen=True)
class ColconBuild:
    """A finished ``colcon build`` of the package.

    source_dir: the copy of the repository that was built.
    install_base: colcon's install base (holds setup.bash).
    env: environment after sourcing ``install_base/setup.bash`` over the underlay.
    """

    source_dir: Path
    install_base: Path
    env: dict[str, str] = field(repr=False)

    @property
    def prefix(self) -> Path:
        """The package's install prefix (colcon's default isolated layout)."""
        return self.install_base / PACKAGE_NAME


def _is_developer_path(entry: str) -> bool:
    """True for the repository itself and its install space, which the build must not see."""
    path = Path(entry).resolve()
    return path == REPO_ROOT or (REPO_ROOT / "install") in (path, *path.parents)


def underlay_env() -> dict[str, str]:
    """This process's environment without the repository's own paths, plus the ROS prefix the
    PyPI wheels installed into the running virtual environment (when they did)."""
    env = dict(os.environ)
    for name in (*_PATH_VARIABLES, "COLCON_PREFIX_PATH"):
        kept = [entry for entry in env.get(name, "").split(os.pathsep) if entry and not _is_developer_path(entry)]
        if kept:
            env[name] = os.pathsep.join(kept)
        else:
            env.pop(name, None)
    prefix = Path(sys.prefix)
    if (prefix / "share" / "ament_index").is_dir():
        for name, entry in (
            ("AMENT_PREFIX_PATH", prefix),
            ("CMAKE_PREFIX_PATH", prefix),
            ("LD_LIBRARY_PATH", prefix / "lib"),
        ):
            entries = env.get(name, "").split(os.pathsep) if env.get(name) else []
            if str(entry) not in entries:
                env[name] = os.pathsep.join([str(entry), *entries])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def sourced_env(setup_script: Path, base_env: dict[str, str]) -> dict[str, str]:
    """The environment after ``source setup_script`` in bash, starting from ``base_env``."""
    result = subprocess.run(
        ["bash", "-c", 'source "$0" && env -0', str(setup_script)],
        env=base_env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"sourcing {setup_script} failed: {result.stderr.decode(errors='replace')}")
    pairs = (item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


def _copy_sources(destination: Path) -> None:
    shutil.copytree(REPO_ROOT, destination, ignore=_NOT_SOURCES)
    for folder, probe in INSTALL_PROBES.items():
        (destination / folder).mkdir(exist_ok=True)
        (destination / folder / probe).write_text("# written by test/conftest.py: install rule probe\n")


class ColconBuildError(RuntimeError):
    """colcon could not be found, failed, or did not finish in time."""


def build_copy(workspace: Path) -> ColconBuild:
    """Copies the repository to ``workspace/src`` and runs ``colcon build`` there.

    Raises ColconBuildError with colcon's output when the build fails.
    """
    build_env = underlay_env()
    colcon = shutil.which("colcon", path=build_env["PATH"])
    if colcon is None:
        raise ColconBuildError("colcon is not installed: run `make setup` (it installs colcon-common-extensions)")
    source_dir = workspace / "src"
    _copy_sources(source_dir)
    command = [
        colcon, "--log-base", str(workspace / "log"), "build",
        "--paths", str(source_dir),
        "--build-base", str(workspace / "build"),
        "--install-base", str(workspace / "install"),
        "--event-handlers", "console_cohesion+",
        "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
    ]
    try:
        result = subprocess.run(
            command, cwd=workspace, env=build_env, capture_output=True, text=True,
            timeout=_COLCON_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ColconBuildError(f"colcon build did not finish in {_COLCON_TIMEOUT_S} s: {error.stdout!s:.4000}") from None
    if result.returncode != 0:
        raise ColconBuildError(
            f"colcon build failed (exit {result.returncode}):\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
        )
    install_base = workspace / "install"
    return ColconBuild(
        source_dir=source_dir,
        install_base=install_base,
        env=sourced_env(install_base / "setup.bash", build_env),
    )


def isolated_env(build: "ColconBuild", **extra: str) -> dict[str, str]:
    """The build's environment on a random DDS domain, discovery limited to this machine (tests
    running side by side, or on a machine with other ROS traffic, never see each other), plus
    ``extra`` variables."""
    import random

    env = dict(build.env)
    env.update(ROS_DOMAIN_ID=str(random.randint(100, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               RMW_IMPLEMENTATION="rmw_fastrtps_cpp", **extra)
    env.pop("ROS_STATIC_PEERS", None)
    return env


def interrupt_nodes(nodes: dict[str, subprocess.Popen], timeout_s: float) -> dict[str, int | str]:
    """Ctrl-C every node still running, as a user stopping ``ros2 launch`` does, and wait for each:
    exit codes by name ("still running after SIGINT" for one that did not stop in time)."""
    for process in nodes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    exit_codes: dict[str, int | str] = {}
    for name, process in nodes.items():
        try:
            exit_codes[name] = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            exit_codes[name] = "still running after SIGINT"
    return exit_codes


@dataclass
class NodesRun:
    """What :func:`run_beside_nodes` saw: ``alive`` (each node still running when the driver
    ended), the nodes' ``exit_codes`` after SIGINT and their ``logs``."""

    alive: dict[str, bool]
    exit_codes: dict[str, int | str]
    logs: dict[str, str]


def run_beside_nodes(commands: dict[str, list[str]], driver: list[str], driver_name: str, produces: Path,
                     workdir: Path, env: dict[str, str], timeout_s: float, sigint_timeout_s: float = 30.0) -> NodesRun:
    """Start each node (its output in ``workdir/<name>.log``), run ``driver`` to its end, stop the
    nodes with SIGINT as a user stopping ``ros2 launch`` does (and kill any left); the driver must
    exit 0 having written ``produces``, or the assertion shows its output and every node's log."""
    logs: dict[str, Path] = {}
    nodes: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            logs[name] = workdir / f"{name}.log"
            nodes[name] = subprocess.Popen(command, cwd=workdir, env=env, stdout=logs[name].open("w"),
                                           stderr=subprocess.STDOUT)
        completed = subprocess.run(driver, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout_s)
        alive = {name: process.poll() is None for name, process in nodes.items()}
        exit_codes = interrupt_nodes(nodes, sigint_timeout_s)
    finally:
        kill_nodes(nodes)
    node_logs = {name: path.read_text(errors="replace") for name, path in logs.items()}
    assert completed.returncode == 0 and produces.exists(), (
        f"{driver_name} exited {completed.returncode}:\n"
        f"{(completed.stdout + completed.stderr)[-4000:]}\n"
        + "\n".join(f"--- {name}\n{text[-3000:]}" for name, text in node_logs.items()))
    return NodesRun(alive=alive, exit_codes=exit_codes, logs=node_logs)


def kill_nodes(nodes: dict[str, subprocess.Popen]) -> None:
    """Kill whatever node is still running (a test's cleanup, whatever happened before)."""
    for process in nodes.values():
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
