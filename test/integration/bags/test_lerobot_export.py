"""`egopress export-lerobot`: a labelled bag becomes a LeRobot v3.0 dataset whose files follow
LeRobot's layout, and reading it back (as LeRobotDataset does) gives the bag's labels and images.

``lerobot`` pins torch < 2.11 and diffusers < 0.36, so it is not installed with this package; the
last test runs LeRobot's own loader where it is importable and is skipped otherwise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rosbag_helpers import deserialize, label_options, read_bag, rewrite_bag, sample_bag, stamp_ns, tiny_checkpoint

from egopress_core.data.windows import area_resize
from egopress_core.errors import DataError
from egopress_core.export.lerobot import LeRobotExportOptions, export_lerobot
from egopress_core.export.lerobot_reader import LeRobotDatasetReader
from egopress_core.rosbag.labeller import label_bag
from egopress_core.rosbag.sample import COLOR_TOPIC
from egopress_core.rosbag.typestore import HAND_CONTACT, HAND_MESH, IMAGE, UV_PRESSURE


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """The sample bag with a recording gap (frames 20-27 missing), labelled."""
    folder = tmp_path_factory.mktemp("lerobot")
    source = rewrite_bag(sample_bag(tmp_path_factory), folder / "with_gap",
                         lambda topic, index, timestamp, message: None if 20 <= index < 28 else message)
    options = label_options(tiny_checkpoint(tmp_path_factory), num_inference_steps=1, max_gap_s=0.2)
    label_bag(source, folder / "labelled", options, progress=False)
    return folder / "labelled"


@pytest.fixture(scope="module")
def dataset(labelled, tmp_path_factory):
    out = tmp_path_factory.mktemp("lerobot_out") / "dataset"
    report = export_lerobot([labelled], out, LeRobotExportOptions(uv_size=(8, 8), max_gap_s=0.2), progress=False)
    return out, report


def _bag_labels(path):
    messages = read_bag(path)
    by_stamp = {}
    for topic, msgtype, key in ((COLOR_TOPIC, IMAGE, "image"), ("/egopress/hand_mesh", HAND_MESH, "mesh"),
                                ("/egopress/uv_pressure", UV_PRESSURE, "uv"), ("/egopress/hand_contact", HAND_CONTACT, "contact")):
        for _, raw in messages[topic]:
            message = deserialize(raw, msgtype)
            by_stamp.setdefault(stamp_ns(message), {})[key] = message
    return by_stamp


def test_layout_follows_lerobot_v3(dataset):
    import pyarrow.parquet as pq

    root, report = dataset
    assert report.episodes == 2 and report.frames == 32 and report.fps == 30  # 40 frames, 8 missing: two episodes
    for path in ("meta/info.json", "meta/stats.json", "meta/tasks.parquet", "meta/episodes/chunk-000/file-000.parquet",
                 "data/chunk-000/file-000.parquet", "videos/observation.images.color/chunk-000/file-000.mp4", "README.md"):
        assert (root / path).is_file(), path
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_frames"] == 32 and info["total_episodes"] == 2
    assert info["splits"] == {"train": "0:2"} and info["fps"] == 30
    assert info["features"]["observation.images.color"]["info"]["video.codec"] == "av1"
    assert info["features"]["observation.pressure.uv_kpa"]["shape"] == [8, 8]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert key in info["features"]
    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["__index_level_0__"]  # pandas restores the index
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(e["dataset_from_index"], e["dataset_to_index"], e["length"]) for e in episodes] == [(0, 20, 20), (20, 32, 12)]
    assert episodes[1]["videos/observation.images.color/from_timestamp"] == pytest.approx(20 / 30)
    assert episodes[0]["tasks"] == ["hand manipulation demonstration"]
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    uv_field = data.schema.field("observation.pressure.uv_kpa")
    assert uv_field.metadata[b"ARROW:extension:name"] == b"datasets.features.features.Array2DExtensionType"
    assert json.loads(data.schema.metadata[b"huggingface"])["info"]["features"]["observation.pressure.vertex_kpa"]["_type"] == "List"


def test_frames_read_back_equal_the_labelled_bag(dataset, labelled):
    root, _ = dataset
    reader = LeRobotDatasetReader(root)
    labels = _bag_labels(labelled)
    assert len(reader) == 32
    errors = []
    for index in range(len(reader)):
        item = reader[index]
        bag = labels[int(item["stamp_ns"])]
        assert item["index"] == index and item["timestamp"] == pytest.approx(item["frame_index"] / 30)
        assert item["episode_index"] == (0 if index < 20 else 1) and item["task"] == "hand manipulation demonstration"
        present = bag["mesh"].confidence > 0
        assert bool(item["observation.hand.present"]) == present
        if present:
            contact = bag["contact"]
            np.testing.assert_array_equal(item["observation.pressure.vertex_kpa"], contact.vertex_pressure_kpa)
            np.testing.assert_array_equal(item["observation.pressure.vertex_contact"], contact.vertex_contact)
            assert item["observation.pressure.total_force_n"] == pytest.approx(contact.total_force_n)
            assert bool(item["observation.pressure.in_contact"]) == contact.in_contact
            uv_map = np.frombuffer(bag["uv"].map.data.tobytes(), "<f4").reshape(bag["uv"].map.height, bag["uv"].map.width)
            expected = area_resize(torch.from_numpy(uv_map.astype(np.float64)), (8, 8)).numpy()
            np.testing.assert_allclose(item["observation.pressure.uv_kpa"], expected, rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(item["observation.hand.joints"], [(p.x, p.y, p.z) for p in bag["mesh"].joints], rtol=1e-6)
        image = bag["image"]
        rgb = image.data.reshape(image.height, image.width, 3).astype(np.float64)
        errors.append(np.abs(item["observation.images.color"].astype(np.float64) - rgb).mean())
    # Lossy AV1 at LeRobot's default quality, same frames in the same order; the renders carry
    # sensor noise and skin texture (generator 2), which the encoder smooths away (6.6 measured).
    assert np.mean(errors) < 8.0


def test_statistics_match_the_frames(dataset):
    root, _ = dataset
    reader = LeRobotDatasetReader(root)
    force = np.array([reader[i]["observation.pressure.total_force_n"] for i in range(len(reader))], dtype=np.float64)
    stats = reader.stats["observation.pressure.total_force_n"]
    assert stats["count"] == [32]
    assert stats["mean"][0] == pytest.approx(force.mean(), rel=1e-5)
    assert stats["std"][0] == pytest.approx(force.std(), rel=1e-4)
    assert stats["min"][0] == pytest.approx(force.min()) and stats["max"][0] == pytest.approx(force.max())
    colour = reader.stats["observation.images.color"]
    assert np.asarray(colour["mean"]).shape == (3, 1, 1) and 0 < np.asarray(colour["mean"]).min() < 1


def test_export_refuses_unlabelled_bags_and_leaves_nothing(tmp_path_factory, tmp_path):
    out = tmp_path / "dataset"
    with pytest.raises(DataError, match="not a labelled bag"):
        export_lerobot([sample_bag(tmp_path_factory)], out, progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())
    out.mkdir()
    with pytest.raises(DataError, match="exists already"):
        export_lerobot([sample_bag(tmp_path_factory)], out, progress=False)


def test_lerobot_loads_the_export(dataset, labelled):
    lerobot = pytest.importorskip("lerobot.datasets.lerobot_dataset", reason="lerobot is not installable beside torch 2.13")
    root, _ = dataset
    loaded = lerobot.LeRobotDataset("local/egopress", root=root, video_backend="pyav")
    ours = LeRobotDatasetReader(root)
    assert len(loaded) == len(ours) and loaded.num_episodes == 2
    for index in (0, 19, 20, 31):
        item = loaded[index]
        np.testing.assert_allclose(item["observation.pressure.vertex_kpa"].numpy(), ours[index]["observation.pressure.vertex_kpa"])
        image = (item["observation.images.color"].permute(1, 2, 0).numpy() * 255).round()
        assert np.abs(image - ours[index]["observation.images.color"]).max() <= 1
