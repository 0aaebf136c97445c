"""Session fixtures shared by the test modules, and the import path of the test helpers.

The tests are laid out by layer: ``unit/`` (the library on its own: no build, no processes),
``integration/ros/`` (the colcon build, the nodes over rclpy, the launch file, messages between
processes), ``integration/bags/`` (rosbag labelling, replay, LeRobot export) and
``integration/training/`` (training, evaluation and benchmark runs end to end).

``support/`` holds what is not a test: helpers that produce test inputs (``synthetic_hands``,
``model_batches``, ``fixtures``), build or drive the package (``ros_workspace``, ``rosbag_helpers``)
and the scripts the tests start as processes of their own (``ros_node_driver``, ``ros_peer``,
``rosbag_replay_player``: the tests locate them through their module's ``__file__``). That folder
is put on ``sys.path`` below, so the test modules import them by bare name
(``from ros_workspace import ...``, ``from fixtures.fake_source import ...``).

Inputs that cost seconds to make and are only read by the tests are built once per session here
(``colcon_build``, ``synthetic``, ``tiny_checkpoint``); a module fixture makes what one module alone
uses. ``-m "not slow"`` leaves out what takes more than ~10 s (pytest.ini).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Before any test module is imported: pytest loads this file first.
_SUPPORT = str(Path(__file__).resolve().parent / "support")
if _SUPPORT not in sys.path:
    sys.path.insert(0, _SUPPORT)

import pytest  # noqa: E402
import torch  # noqa: E402
from ros_workspace import ColconBuild, ColconBuildError, build_copy  # noqa: E402


@pytest.fixture(scope="session")
def colcon_build(tmp_path_factory: pytest.TempPathFactory) -> ColconBuild:
    """``colcon build`` of a copy of the repository, as a ROS user runs it (once per session)."""
    try:
        return build_copy(tmp_path_factory.mktemp("colcon_ws"))
    except ColconBuildError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (training runs on a busy 2-core machine: threads spin-wait on
    each other when the cores are shared); the process's own setting is restored afterwards.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 synthetic sequences x 16 frames of 64x64 RGB-D (bundled hand, 224x224 UV maps), generated
    once per session: tests read it (a test that needs to change it works on a copy)."""
    from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(sequences=3, frames=16, image_sizes=((64, 64),), seed=3), root, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained EgoPressDiff on the bundled right hand's UV layout (seed 0), saved as
    training saves it, with its UV mask; once per session, read-only. The same folder the bag
    tests get from ``rosbag_helpers.tiny_checkpoint(tmp_path_factory)``."""
    from tiny_checkpoints import tiny_checkpoint as build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory)
