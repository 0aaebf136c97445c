"""`node_base.run` ends a node cleanly when SIGINT shuts rclpy down under a spinning executor."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")


def _tiny_node_class():
    from rclpy.node import Node

    class TinyNode(Node):
        EXECUTABLE = "tiny_node"
        PARAMETERS = ()
        stopped = 0

        def __init__(self):
            super().__init__("tiny_node")
            self.declare_parameter("autostart", False)

        def stop_everything(self):
            type(self).stopped += 1

    return TinyNode


def test_a_sigint_racing_the_executor_stops_the_node_with_exit_code_0(monkeypatch):
    from rclpy.executors import SingleThreadedExecutor

    from egopress_ros import node_base

    node_class = _tiny_node_class()

    def spin_while_sigint_shuts_down(self):
        rclpy.shutdown()  # what rclpy's SIGINT handler does, between two waits
        raise RuntimeError("failed to initialize wait set: the given context is not valid")

    monkeypatch.setattr(SingleThreadedExecutor, "spin", spin_while_sigint_shuts_down)
    assert node_base.run(node_class, [], "tiny") == 0
    assert node_class.stopped == 1

    def spin_into_a_bug(self):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(SingleThreadedExecutor, "spin", spin_into_a_bug)
    with pytest.raises(RuntimeError, match="a real bug"):  # the context is still valid: not a stop
        node_base.run(node_class, [], "tiny")
    assert node_class.stopped == 2 and not rclpy.ok()
