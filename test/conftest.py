"""Session fixtures shared by the test modules."""

from __future__ import annotations

import pytest
from ros_workspace import ColconBuild, ColconBuildError, build_copy


@pytest.fixture(scope="session")
def colcon_build(tmp_path_factory: pytest.TempPathFactory) -> ColconBuild:
    """``colcon build`` of a copy of the repository, as a ROS user runs it (once per session)."""
    try:
        return build_copy(tmp_path_factory.mktemp("colcon_ws"))
    except ColconBuildError as error:
        pytest.fail(str(error), pytrace=False)
