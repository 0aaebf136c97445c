"""The camera side of test_ros_node_truth.py, run as its own process: checks that the live nodes
tell the truth about themselves (issue 21) while it plays a synthetic sequence to them.

    python ros_truth_driver.py --namespace /egopress_t1 --data DATA/seq_00000 --out report.json \
        --bad-node /egopress_t1_slop/pressure_node --bad-node /egopress_t1_steps/pressure_node

Expected nodes: in ``--namespace`` a pressure node (active, tiny checkpoint) and a hand mesh node
(``keypoints`` backend) left unconfigured by a bad start-up parameter ``torch_threads: two``; each
``--bad-node`` left unconfigured by a bad parameter too. Stamps are the wall clock's.

Phases (recorded under ``phases``):
    startup            lifecycle state and /diagnostics of every node
    missing_unconfigured   camera frames, no HandMesh: the hand mesh node is unconfigured
    fix                torch_threads set to 1 on the hand mesh node, then configure
    missing_inactive   camera frames, no HandMesh: the hand mesh node is inactive
    flow               the hand mesh node activated; frames at 5 Hz
    burst              frames back to back (drops), then the nodes' /diagnostics
    low_rate           frames 6 s apart; then the pressure node's output rate
Every wait is bounded; a wait that expires is recorded under ``timeouts``, not fatal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ros_node_driver import Driver, write_report

LOW_RATE_PERIOD_S = 6.0
LOW_RATE_FRAMES = 3


class TruthDriver(Driver):
    def __init__(self, namespace: str, data: Path, timeout_s: float) -> None:
        super().__init__(namespace, data, timeout_s)
        from diagnostic_msgs.msg import DiagnosticArray

        self.statuses: dict[str, dict] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._any_diagnostics, 50)
        self.frame = 0

    def _any_diagnostics(self, msg) -> None:
        for status in msg.status:
            level = int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level)
            self.statuses[status.name.split(": ", 1)[0]] = {
                "level": level, "message": status.message, "values": {kv.key: kv.value for kv in status.values}}

    def status(self, fqn: str) -> dict:
        return json.loads(json.dumps(self.statuses.get(fqn, {})))

    def value(self, fqn: str, key: str, default: float = 0.0) -> float:
        value = self.statuses.get(fqn, {}).get("values", {}).get(key)
        try:
            return float(value)
        except (TypeError, ValueError):
            return default

    def camera_subscribed(self, count: int) -> bool:
        return all(self.pub[key].get_subscription_count() >= count for key in ("color", "depth", "info"))

    def send(self) -> int:
        """The next frame of the sequence, stamped now; returns the stamp."""
        self.frame = (self.frame + 1) % self.rgb.shape[0]
        stamp = time.time_ns()
        self.publish_frame(self.frame, stamp)
        return stamp


def run(args: argparse.Namespace) -> dict:
    from lifecycle_msgs.msg import Transition

    driver = TruthDriver(args.namespace, args.data, args.timeout)
    ns = args.namespace
    pressure, hand_mesh = f"{ns}/pressure_node", f"{ns}/hand_mesh_node"
    report: dict = {"phases": {}, "timeouts": []}

    def wait(name: str, predicate, timeout_s: float) -> bool:
        ok = driver.spin_until(predicate, timeout_s)
        if not ok:
            report["timeouts"].append(name)
        return ok

    def stream_until(name: str, predicate, timeout_s: float, period_s: float = 0.1) -> bool:
        """Frames every ``period_s`` until ``predicate`` holds."""
        end = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > end:
                report["timeouts"].append(name)
                return False
            driver.send()
            driver.spin_for(period_s)
        return True

    # -- startup: the bad nodes stay up, unconfigured; the pressure node comes up active --------
    startup: dict = {}
    report["phases"]["startup"] = startup
    nodes = [pressure, hand_mesh, *args.bad_node]
    wait("diagnostics of every node", lambda: all(fqn in driver.statuses for fqn in nodes), 60.0)
    wait("pressure node active", lambda: driver.statuses.get(pressure, {}).get("values", {}).get("state") == "active", 90.0)
    wait("camera subscribed", lambda: driver.camera_subscribed(1), 30.0)
    startup["states"] = {fqn: driver.lifecycle_state(fqn) for fqn in nodes}
    startup["diagnostics"] = {fqn: driver.status(fqn) for fqn in nodes}

    # -- no HandMesh: the hand mesh node is unconfigured ----------------------------------------
    phase: dict = {}
    report["phases"]["missing_unconfigured"] = phase
    stream_until("missing HandMesh reported (unconfigured)",
                 lambda: driver.value(pressure, "problems_missing_hand_mesh") >= 1, 20.0)
    phase["diagnostics"] = driver.status(pressure)

    # -- the parameter fixed through the parameter service, then configure --------------------
    fix: dict = {}
    report["phases"]["fix"] = fix
    fix["set"] = driver.set_parameter(hand_mesh, "torch_threads", 1)
    fix["configure"] = driver.change_state(hand_mesh, Transition.TRANSITION_CONFIGURE)
    fix["state"] = driver.lifecycle_state(hand_mesh)

    # -- no HandMesh: the hand mesh node is inactive --------------------------------------------
    phase = {}
    report["phases"]["missing_inactive"] = phase
    stream_until("missing HandMesh reported (inactive)",
                 lambda: "is inactive" in driver.statuses.get(pressure, {}).get("message", ""), 20.0)
    phase["diagnostics"] = driver.status(pressure)

    # -- flow: the hand mesh node active, frames at 5 Hz ----------------------------------------
    flow: dict = {"published": []}
    report["phases"]["flow"] = flow
    flow["activate"] = driver.change_state(hand_mesh, Transition.TRANSITION_ACTIVATE)
    wait("keypoints subscribed", lambda: driver.pub["keypoints"].get_subscription_count() >= 1
         and driver.camera_subscribed(2), 30.0)
    for _ in range(args.flow_frames):
        flow["published"].append(driver.send())
        driver.spin_for(0.2)
    last = flow["published"][-1]
    wait("HandContact after the flow", lambda: driver.stamps("hand_contact") & set(flow["published"]), 30.0)
    driver.spin_for(1.0)
    flow["outputs"] = len(driver.stamps("hand_contact") & set(flow["published"]))
    flow["last_out"] = last in driver.stamps("hand_contact")

    # -- burst: frames back to back; both nodes drop stale sets -------------------------------
    burst: dict = {"published": []}
    report["phases"]["burst"] = burst
    for _ in range(args.burst_frames):
        burst["published"].append(driver.send())
    wait("hand mesh node warns about drops",
         lambda: "dropped" in driver.statuses.get(hand_mesh, {}).get("message", ""), 15.0)
    burst["hand_mesh_diagnostics"] = driver.status(hand_mesh)
    wait("pressure node warns about latency",
         lambda: "latency p95" in driver.statuses.get(pressure, {}).get("message", ""), 15.0)
    burst["pressure_diagnostics"] = driver.status(pressure)

    # -- low rate: one frame every LOW_RATE_PERIOD_S ------------------------------------------
    low: dict = {"published": [], "out_after_s": []}
    report["phases"]["low_rate"] = low
    driver.spin_for(2.0)
    for index in range(LOW_RATE_FRAMES):
        started = time.monotonic()
        stamp = driver.send()
        low["published"].append(stamp)
        wait(f"HandContact for low-rate frame {index}", lambda: stamp in driver.stamps("hand_contact"), 20.0)
        low["out_after_s"].append(time.monotonic() - started)
        if index + 1 < LOW_RATE_FRAMES:
            driver.spin_for(max(LOW_RATE_PERIOD_S - (time.monotonic() - started), 0.0))
    driver.spin_for(1.5)
    low["pressure_diagnostics"] = driver.status(pressure)
    low["hand_mesh_diagnostics"] = driver.status(hand_mesh)

    report["final_states"] = {fqn: driver.lifecycle_state(fqn) for fqn in nodes}
    report["final_diagnostics"] = {fqn: driver.status(fqn) for fqn in nodes}
    driver.node.destroy_node()
    driver.rclpy.try_shutdown()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--data", type=Path, required=True, help="a synthetic sequence folder (seq_XXXXX)")
    parser.add_argument("--bad-node", action="append", default=[], help="a node expected unconfigured (full name)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds for the whole scenario")
    parser.add_argument("--flow-frames", type=int, default=15)
    parser.add_argument("--burst-frames", type=int, default=30)
    args = parser.parse_args(argv)
    write_report(run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
