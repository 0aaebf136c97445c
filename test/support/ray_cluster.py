"""A real Ray cluster on this machine for the fleet tests: a head without CPUs (so that nothing
runs on it) and worker nodes of one CPU each, every node a `ray start --block` process of its
own with its own ports, a private temp folder and its own authentication token (in the
environment: nothing is written to ~/.ray), torn down by process group (never `ray stop`, which
would stop every Ray instance on the machine).

The driver process joins it with :meth:`LocalRayCluster.connect`, which sets the token in its
environment first (Ray reads it there when it is imported)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalRayCluster:
    """``with LocalRayCluster(workers=2) as cluster: ... cluster.address ...``"""

    def __init__(self, workers: int = 2, cpus_per_node: int = 1) -> None:
        self.workers = workers
        self.cpus_per_node = cpus_per_node
        # Short: Ray's unix sockets live under it (107 characters at most).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="egopress_ray_", dir="/tmp"))
        self.port = free_port()
        self.address = ""
        self.nodes: list[subprocess.Popen] = []
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self._saved_env: dict[str, str | None] = {}

    def _start_node(self, name: str, *extra: str) -> subprocess.Popen:
        ray = Path(sys.executable).with_name("ray")
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **self.auth)
        env.pop("RAY_AUTH_TOKEN_PATH", None)
        log = open(self.temp_dir / f"{name}.log", "w")
        command = [str(ray), "start", "--block", "--disable-usage-stats", "--include-log-monitor=false",
                   f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                   f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}", *extra]
        # A session of its own: the node's processes are torn down together by process group.
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        process.log = self.temp_dir / f"{name}.log"
        self.nodes.append(process)
        return process

    def _wait(self, condition, what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not condition():
            for node in self.nodes:
                if node.poll() is not None:
                    tail = "\n".join(node.log.read_text(errors="replace").splitlines()[-15:])
                    raise RuntimeError(f"a ray node exited ({node.returncode}) while {what}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out while {what}; logs in {self.temp_dir}")
            time.sleep(0.2)

    def _head_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def start(self) -> "LocalRayCluster":
        self._start_node("head", "--head", f"--port={self.port}", "--num-cpus=0", "--num-gpus=0",
                         f"--temp-dir={self.temp_dir}", "--include-dashboard=false")
        self._wait(self._head_answers, "starting the head")
        # Ray registers the head under the machine's address (the loopback is its fallback).
        self.address = f"127.0.0.1:{self.port}"
        for number in range(self.workers):
            node = self._start_node(f"worker{number}", f"--address={self.address}", f"--num-cpus={self.cpus_per_node}",
                                    "--num-gpus=0")
            # One at a time: nodes starting together on one machine can pick the same socket names.
            self._wait(lambda: "Ray runtime started" in node.log.read_text(errors="replace"), f"starting worker node {number}")
        return self

    def connect(self):
        """Joins this process to the cluster (as the fleet's driver) once every worker node has
        joined; returns the ``ray`` module."""
        for name, value in {**self.auth, "RAY_AUTH_TOKEN_PATH": None}.items():
            self._saved_env[name] = os.environ.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        import ray

        ray.init(address=self.address, configure_logging=False, log_to_driver=False)
        self._wait(lambda: ray.cluster_resources().get("CPU", 0) >= self.workers * self.cpus_per_node,
                   "waiting for the worker nodes")
        return ray

    def disconnect(self) -> None:
        import ray

        ray.shutdown()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            try:
                os.killpg(node.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for node in self.nodes:
            node.wait(timeout=30)
        self.nodes.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
