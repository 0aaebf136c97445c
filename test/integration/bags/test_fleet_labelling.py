"""`egopress label-bags` on a real Ray cluster on this machine (a head without CPUs and two
one-CPU worker nodes, each a `ray start` process): every bag's output is byte for byte the one
single-process `label-bag` makes; a worker process killed mid-run changes nothing; an interrupted
driver's rerun resumes; a bad bag fails alone; export-lerobot takes the output folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from ray_cluster import LocalRayCluster, free_port
from rosbag_helpers import label_options, sample_bag, tiny_checkpoint, write_ros1_bag

from egopress_core.errors import ConfigError, DataError
from egopress_core.rosbag.fleet import MANIFEST_NAME, check_reachable, find_bags, label_bags, labelled_bags_of
from egopress_core.rosbag.label_options import report_path_for, work_dir_for
from egopress_core.rosbag.labeller import label_bag

pytestmark = pytest.mark.slow

# Where each sample bag goes in the input folder (its relative output path), and its variant.
LAYOUT = {"site_a/take_1": ("mcap", "none"), "site_a/take_2": ("sqlite3", "none"), "site_b/take_1": ("mcap", "message")}


def tree_bytes(path: Path) -> dict[str, bytes]:
    return {str(item.relative_to(path)): item.read_bytes() for item in sorted(path.rglob("*")) if item.is_file()}


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    # 40 frames in batches of 8: five units per bag, so that every bag spreads over both workers.
    return label_options(tiny_checkpoint(tmp_path_factory), chunk_frames=8, num_inference_steps=1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fleet_inputs")
    for relative, (storage, compression) in LAYOUT.items():
        shutil.copytree(sample_bag(tmp_path_factory, storage, compression), root / relative)
    return root


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, inputs, options) -> Path:
    """Each bag labelled by single-process label-bag with one torch thread, as each one-CPU
    worker runs (CPU results depend on the thread count): what the fleet must reproduce."""
    import torch

    root = tmp_path_factory.mktemp("fleet_reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for relative in LAYOUT:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            label_bag(inputs / relative, root / relative, options, progress=False)
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster(workers=2) as local:
        local.connect()
        try:
            yield local
        finally:
            local.disconnect()


def assert_same_outputs(out: Path, reference: Path, names: dict[str, str] | None = None) -> None:
    """Each labelled bag (``names``: output name -> reference name; default all of LAYOUT) has
    the bytes of label-bag's, a complete report and no work folder left."""
    for name, relative in (names or {name: name for name in LAYOUT}).items():
        assert tree_bytes(out / name) == tree_bytes(reference / relative), f"{name} differs from label-bag's"
        assert not work_dir_for(out / name).exists()
        assert json.loads(report_path_for(out / name).read_text())["status"] == "complete"


def test_fleet_outputs_equal_single_process_label_bag(tmp_path, cluster, inputs, single_process, options, capsys):
    from egopress_core.cli.main import main

    out = tmp_path / "labelled"
    pids_per_bag: dict[str, set] = {}

    def record(event: dict) -> None:
        if event["kind"] == "label":
            pids_per_bag.setdefault(event["bag"], set()).add(event["pid"])

    report = label_bags([inputs], out, options, address=cluster.address, progress=False, unit_callback=record)

    assert not report.failed, report.summary()
    assert [(worker["device"], worker["torch_threads"]) for worker in report.workers] == [("cpu", 1)] * 2
    assert_same_outputs(out, single_process)
    assert any(len(pids) == 2 for pids in pids_per_bag.values()), f"no bag was spread over both workers: {pids_per_bag}"
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert [(entry["output"], entry["status"]) for entry in manifest["bags"]] == [(name, "complete") for name in LAYOUT]
    assert all(entry["frames"]["synchronised"] == 40 and entry["batches"]["total"] == 5 for entry in manifest["bags"])

    # A rerun finds everything done and labels nothing.
    again = label_bags([inputs], out, options, address=cluster.address, progress=False)
    assert not again.failed and again.frames_labelled == 0
    assert_same_outputs(out, single_process)

    # export-lerobot takes the output folder: its bags, in the manifest's order.
    assert labelled_bags_of(out) == [out / relative for relative in LAYOUT]
    assert main(["export-lerobot", str(out), str(tmp_path / "dataset"), "--video-codec", "h264", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert json.loads((tmp_path / "dataset" / "meta" / "info.json").read_text())["total_episodes"] == len(LAYOUT)


def test_a_worker_killed_mid_run_changes_nothing(tmp_path, cluster, inputs, single_process, options):
    out = tmp_path / "labelled"
    killed: list[int] = []

    def kill_a_worker(event: dict) -> None:
        # At the first finished batch: a worker busy with another batch, which it loses. On a
        # loaded machine the second worker may not be up yet and every batch goes to the first,
        # one after another (seen once in CI): then that worker, which loses the batch it is
        # given next.
        if not killed and event["kind"] == "label":
            killed.append(event["busy_pids"][0] if event["busy_pids"] else event["pid"])
            os.kill(killed[0], signal.SIGKILL)  # a worker process of the cluster this test started

    report = label_bags([inputs / "site_a" / "take_1"], out, options, address=cluster.address, progress=False,
                        unit_callback=kill_a_worker)

    assert killed, "no batch was labelled"
    assert not report.failed, report.summary()
    assert report.worker_failures >= 1 and report.units_retried >= 1, report.summary()
    assert not any("lost" in worker for worker in report.workers), "a restarted worker was given up"
    assert_same_outputs(out, single_process, {"take_1": "site_a/take_1"})


def test_an_interrupted_run_resumes_and_a_bad_bag_fails_alone(tmp_path, cluster, inputs, single_process, options, capsys):
    from egopress_core.cli.main import main

    fleet = tmp_path / "fleet"
    shutil.copytree(inputs / "site_a", fleet / "site_a")
    broken = fleet / "site_a" / "take_0"
    shutil.copytree(inputs / "site_b" / "take_1", broken)
    (broken / "metadata.yaml").write_text("not: a rosbag2 metadata file\n")
    out = tmp_path / "labelled"
    labelled: list[str] = []

    def interrupt_after_three_batches(event: dict) -> None:
        if event["kind"] == "label":
            labelled.append(event["bag"])
            if len(labelled) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label_bags([fleet], out, options, address=cluster.address, progress=False, unit_callback=interrupt_after_three_batches)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    status = {entry["output"]: entry["status"] for entry in manifest["bags"]}
    assert status["site_a/take_0"] == "failed"
    interrupted = [name for name, value in status.items() if value == "interrupted"]
    assert interrupted, manifest["bags"]
    saved = {name: len(list(work_dir_for(out / name).glob("batch_*.npz"))) for name in interrupted}
    assert sum(saved.values()) >= 3 and not any((out / name).exists() for name in interrupted)

    # The rerun, from the command line: the same labelling flags as label-bag.
    flags = ["--checkpoint", options.checkpoint, "--backend", "ground_truth", "--hand-mesh-topic", options.topics.hand_mesh,
             "--device", "cpu", "--steps", "1", "--chunk-frames", "8", "--address", cluster.address, "--no-progress"]
    assert main(["label-bags", str(fleet), str(out), *flags]) == 2
    printed = capsys.readouterr()
    assert "1 of 3 bags were not labelled (site_a/take_0)" in printed.err and "metadata.yaml" in printed.out

    manifest = json.loads((out / MANIFEST_NAME).read_text())
    entries = {entry["output"]: entry for entry in manifest["bags"]}
    assert entries["site_a/take_0"]["status"] == "failed" and "metadata.yaml" in entries["site_a/take_0"]["error"]
    assert {name: entries[name]["batches"]["resumed"] for name in interrupted} == saved
    assert_same_outputs(out, single_process, {name: name for name in ("site_a/take_1", "site_a/take_2")})
    with pytest.raises(DataError, match="1 of 3 bags are not labelled"):
        labelled_bags_of(out)


def test_inputs_are_folders_globs_and_lists(tmp_path, inputs):
    listing = tmp_path / "bags.txt"
    listing.write_text(f"# two takes\n{inputs / 'site_a' / 'take_2'}\n\n{os.path.relpath(inputs / 'site_b', tmp_path)}\n")
    # Absolute entries, and relative ones leaving the list's folder, are placed by their names.
    assert [(bag.input, bag.name) for bag in find_bags([listing])] == [(inputs / "site_a" / "take_2", "take_2"),
                                                                       (inputs / "site_b" / "take_1", "take_1")]
    by_glob = find_bags([str(inputs / "site_*" / "take_1")])
    assert [bag.name for bag in by_glob] == ["site_a/take_1", "site_b/take_1"]
    assert [bag.name for bag in find_bags([inputs])] == list(LAYOUT)
    with pytest.raises(DataError, match="both be labelled into take_1"):
        find_bags([inputs / "site_a" / "take_1", inputs / "site_b" / "take_1"])
    with pytest.raises(DataError, match="matches nothing"):
        find_bags([str(inputs / "nowhere_*")])


def test_ros1_bags_are_named_with_their_conversion_not_skipped(tmp_path):
    old = write_ros1_bag(tmp_path / "recordings" / "site_a" / "take_0.bag")
    for inputs in ([tmp_path / "recordings"], [str(tmp_path / "recordings" / "*" / "*.bag")], [old]):
        with pytest.raises(DataError, match=rf"{old}: a ROS 1 bag; EgoPress reads rosbag2: convert it with `rosbags-convert"):
            find_bags(inputs)


def test_an_address_nobody_answers_fails_at_once():
    with pytest.raises(ConfigError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:\d+ .*ray start --head"):
        check_reachable(f"127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match="auto or HOST:PORT"):
        check_reachable("head-node")


def test_after_an_interrupt_the_driver_waits_for_killed_local_workers_to_exit():
    """A killed worker's unit fails before its process is gone; the driver returns only when the
    local processes have exited (or after its timeout), so that no batch lands afterwards."""
    import subprocess
    import threading
    import time

    from egopress_core.rosbag.fleet import _wait_for_exit

    short = subprocess.Popen(["sleep", "0.3"])
    threading.Thread(target=short.wait, daemon=True).start()  # reaped as the raylet reaps workers
    started = time.monotonic()
    _wait_for_exit([short.pid], timeout_s=10.0)
    assert short.poll() is not None and time.monotonic() - started < 5.0

    stuck = subprocess.Popen(["sleep", "30"])
    try:
        started = time.monotonic()
        _wait_for_exit([stuck.pid], timeout_s=0.2)
        assert 0.2 <= time.monotonic() - started < 2.0 and stuck.poll() is None
    finally:
        stuck.kill()
        stuck.wait()
