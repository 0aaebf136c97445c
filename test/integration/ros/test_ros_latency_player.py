"""benchmarks/ros_latency.py's player: what it publishes for one frame is what a RealSense driver,
a keypoint tracker and (``--backend annotated``) the hand-mesh node would, stamped alike."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("sensor_msgs.msg", reason="the ROS 2 wheels are not installed (make setup)")
pytest.importorskip("egopress_ros.msg", reason="the package's messages are not built (make test / . scripts/env.sh)")

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def ros_latency():
    spec = importlib.util.spec_from_file_location("ros_latency_benchmark", REPO / "benchmarks" / "ros_latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_annotated_backend_publishes_the_annotation_mesh_with_the_image_header(ros_latency, synthetic):
    from egopress_core import messages as msgs
    from egopress_core.data.synthetic.storage import SyntheticDataset

    record = SyntheticDataset(synthetic).sequences()[0].frame(3)
    stamp = 1_700_000_000_123_456_789
    published = ros_latency.camera_messages(record, stamp, hand_mesh=True)
    assert set(published) == {"color", "depth", "info", "keypoints", "hand_mesh"}
    assert "hand_mesh" not in ros_latency.camera_messages(record, stamp)
    mesh = published["hand_mesh"]
    assert mesh.header == published["color"].header and msgs.stamp_to_ns(mesh.header.stamp) == stamp
    fields = msgs.hand_mesh_from_msg(mesh)
    assert fields.confidence == 1.0 and fields.estimator == "ground_truth" and fields.hand_side == record.hand_side
    assert np.allclose(fields.vertices, record.vertices) and np.allclose(fields.joints, record.joints)
    # The library side of the comparison does the same work: annotated hands, no hand stage.
    assert ros_latency.BACKENDS["annotated"] == "annotated" and ros_latency.nodes_of("annotated") == ("pressure_node",)
