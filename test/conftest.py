"""Session fixtures shared by the test modules, and the import path of the test helpers.

pytest puts this folder on ``sys.path`` (it holds a conftest.py and no ``__init__.py``), which is
how the test modules import ``ros_workspace``, ``fixtures`` and the other helpers here by bare
name. Helpers that are not tests of anything but only produce test inputs live in ``support/``;
that folder is added below, so they import by bare name too (``from synthetic_hands import ...``).
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


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 synthetic sequences x 16 frames of 64x64 RGB-D (bundled hand, 224x224 UV maps), per module."""
    from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(SynthConfig(sequences=3, frames=16, image_sizes=((64, 64),), seed=3), root, progress=False)
    return root
