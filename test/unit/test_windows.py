"""Clip windows: index arithmetic, tensor shapes, geometry after crop and resize, resizing
that preserves what it must, statistics, DataLoader workers, and both sources."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from fixtures.egopressure_fixture import write_egopressure_fixture
from fixtures.fake_source import MARKER_JOINT, make_fake_sequence
from torch.utils.data import DataLoader

from egopress_core.data.egopressure import EgoPressureDataset
from egopress_core.data.windows import (
    AugmentConfig,
    ClipWindowDataset,
    DataStatistics,
    WindowConfig,
    area_resize,
    compute_statistics,
    window_starts,
)
from egopress_core.preprocessing import crop_resize_intrinsics, resize_depth
from egopress_core.errors import ConfigError, DataError

SMALL = dict(window=4, stride=2, image_size=(24, 32), uv_size=(8, 8))


# ----------------------------------------------------------------------------- index


def test_window_start_arithmetic():
    np.testing.assert_array_equal(window_starts(40, 16, 8), [0, 8, 16, 24])
    assert window_starts(16, 16, 8).tolist() == [0]
    assert window_starts(15, 16, 8).size == 0
    for length, window, stride in [(100, 16, 8), (37, 5, 3), (64, 16, 16), (17, 16, 1)]:
        assert window_starts(length, window, stride).size == (length - window) // stride + 1
    np.testing.assert_array_equal(window_starts(20, 16, 8), [0])
    np.testing.assert_array_equal(window_starts(20, 16, 8, cover_tail=True), [0, 4])
    np.testing.assert_array_equal(window_starts(24, 16, 8, cover_tail=True), [0, 8])


def test_index_is_built_from_lengths_without_reading_frames():
    sources = [make_fake_sequence("a", num_frames=40), make_fake_sequence("b", num_frames=15),
               make_fake_sequence("c", num_frames=20)]
    dataset = ClipWindowDataset(sources, window=16, stride=8)
    assert len(dataset) == 4 + 0 + 1
    np.testing.assert_array_equal(dataset.window_index, [[0, 0], [0, 8], [0, 16], [0, 24], [2, 0]])
    assert dataset.report == {"sequences": 3, "too_short": 1, "windows": 5, "skipped_invalid": 0}
    assert all(s.frames_read == 0 for s in sources)


def test_windows_with_too_few_annotated_frames_are_skipped():
    source = make_fake_sequence("a", num_frames=12, unannotated=range(0, 6))
    dataset = ClipWindowDataset([source], **SMALL, min_valid_frames=2)
    # starts 0, 2, 4, 6, 8: annotated frames per window 0, 0, 2, 4, 4
    assert dataset.window_index[:, 1].tolist() == [4, 6, 8]
    assert dataset.report["skipped_invalid"] == 2
    keep_all = ClipWindowDataset([source], **SMALL, skip_invalid=False)
    assert len(keep_all) == 5
    item = keep_all[0]
    assert not item["valid"].any()
    assert item["joints"].abs().sum() == 0 and item["uv_pressure_kpa"].abs().sum() == 0
    assert item["vertices"].shape == (4, 60, 3)


def test_sources_without_flags_mark_invalid_frames_at_read_time():
    source = make_fake_sequence("a", num_frames=8, unannotated=(1, 2), with_flags=False)
    dataset = ClipWindowDataset([source], **SMALL)
    assert len(dataset) == 3
    item = dataset[0]
    assert item["valid"].tolist() == [True, False, False, True]
    assert item["vertices"][1].abs().sum() == 0 and item["vertices"][0].abs().sum() > 0


# ----------------------------------------------------------------------------- items


@pytest.mark.parametrize("crop", ["hand", "full"])
def test_item_shapes_and_types(crop):
    dataset = ClipWindowDataset([make_fake_sequence("a", num_frames=10, num_vertices=33)],
                                window=5, stride=5, image_size=(40, 56), uv_size=(10, 12),
                                crop=crop)
    item = dataset[1]
    expected = {
        "rgb": ((5, 3, 40, 56), torch.float32), "depth_m": ((5, 1, 40, 56), torch.float32),
        "intrinsics": ((5, 3, 3), torch.float32), "joints": ((5, 21, 3), torch.float32),
        "vertices": ((5, 33, 3), torch.float32),
        "uv_pressure_kpa": ((5, 1, 10, 12), torch.float32), "valid": ((5,), torch.bool),
        "frame_index": ((5,), torch.int64),
    }
    for key, (shape, dtype) in expected.items():
        assert tuple(item[key].shape) == shape and item[key].dtype == dtype, key
    assert item["sequence"] == "a" and item["start"] == 5 and item["hand_side"] == "right"
    assert item["uv_layout"] == "test_uv"
    assert item["frame_index"].tolist() == [5, 6, 7, 8, 9]
    assert 0.0 <= item["rgb"].min() and item["rgb"].max() <= 1.0
    assert (item["depth_m"] > 0).float().mean() > 0.5


def _blob_centroid(image: torch.Tensor) -> np.ndarray:
    """(x, y) intensity centroid of the bright marker above the background."""
    intensity = image.mean(dim=0).numpy()
    weights = np.clip(intensity - 0.3, 0, None)
    v, u = np.mgrid[0:intensity.shape[0], 0:intensity.shape[1]]
    return np.array([(weights * u).sum(), (weights * v).sum()]) / weights.sum()


@pytest.mark.parametrize("crop, image_size, augment", [
    ("hand", (48, 48), None),
    ("hand", (40, 64), None),
    ("full", (36, 36), None),
    ("hand", (48, 48), AugmentConfig(brightness=0, contrast=0, saturation=0,
                                     depth_noise_m_at_1m=0, depth_dropout=0,
                                     crop_shift=0.1, crop_scale=0.2)),
])
def test_intrinsics_follow_crop_and_resize(crop, image_size, augment):
    """A marker drawn at a joint's projection must land where the new K projects the joint."""
    source = make_fake_sequence("a", num_frames=6, image_hw=(96, 128), hand_offset_px=(25, -12))
    dataset = ClipWindowDataset([source], window=3, stride=3, image_size=image_size,
                                uv_size=(8, 8), crop=crop, hand_margin=0.5, augment=augment)
    for index in range(len(dataset)):
        item = dataset[index]
        for t in range(3):
            joint = item["joints"][t, MARKER_JOINT].double().numpy()
            projected = item["intrinsics"][t].double().numpy() @ joint
            expected = projected[:2] / projected[2]
            np.testing.assert_allclose(_blob_centroid(item["rgb"][t]), expected, atol=0.25)


def test_crop_resize_intrinsics_maps_pixel_centres():
    intrinsics = np.array([[100.0, 0.0, 50.0], [0.0, 90.0, 40.0], [0.0, 0.0, 1.0]])
    adjusted = crop_resize_intrinsics(intrinsics, (10, 20, 40, 30), (60, 80))
    point = np.array([0.1, -0.05, 0.7])
    before = intrinsics @ point
    after = adjusted @ point
    u, v = before[:2] / before[2]
    np.testing.assert_allclose(after[:2] / after[2], [(u - 10 + 0.5) * 2 - 0.5,
                                                      (v - 20 + 0.5) * 2 - 0.5])


def test_hand_crop_zooms_on_the_hand():
    source = make_fake_sequence("a", num_frames=4, image_hw=(120, 160))
    full = ClipWindowDataset([source], window=4, stride=4, image_size=(32, 32), crop="full")[0]
    hand = ClipWindowDataset([source], window=4, stride=4, image_size=(32, 32), crop="hand")[0]
    assert hand["intrinsics"][0, 0, 0] > 2 * full["intrinsics"][0, 0, 0]
    projected = torch.einsum("tij,tnj->tni", hand["intrinsics"], hand["joints"])
    pixels = projected[..., :2] / projected[..., 2:]
    assert pixels.min() >= 0 and pixels.max() <= 32  # the whole hand is inside the crop


# ----------------------------------------------------------------------------- resizing


@pytest.mark.parametrize("size_in, size_out", [((224, 224), (32, 32)), ((224, 224), (48, 40)),
                                               ((30, 17), (7, 5)), ((10, 10), (25, 13))])
def test_area_resize_preserves_mean_pressure(size_in, size_out):
    values = torch.rand(2, 1, *size_in, dtype=torch.float64) * 50
    resized = area_resize(values, size_out)
    assert resized.shape == (2, 1, *size_out)
    torch.testing.assert_close(resized.mean(dim=(-1, -2)), values.mean(dim=(-1, -2)))
    if size_in[0] % size_out[0] == 0 and size_in[1] % size_out[1] == 0:
        pooled = torch.nn.functional.avg_pool2d(values, (size_in[0] // size_out[0],
                                                         size_in[1] // size_out[1]))
        torch.testing.assert_close(resized, pooled)


def test_windows_keep_mean_uv_pressure():
    source = make_fake_sequence("a", num_frames=4, uv_hw=(21, 27))
    item = ClipWindowDataset([source], window=4, stride=4, uv_size=(8, 10))[0]
    for t in range(4):
        expected = float(source.frame(t).uv_pressure_kpa.mean())
        assert float(item["uv_pressure_kpa"][t].mean()) == pytest.approx(expected, rel=1e-5)


def test_depth_resize_keeps_holes_and_nearest_surface():
    depth = torch.zeros(1, 1, 8, 8)
    depth[..., :4, :4] = 0.6
    depth[..., 1, 1] = 0.3  # a near point inside an otherwise far block
    depth[..., 4:, 4:] = 0.5
    depth[..., 4, 4] = 0.0  # one hole inside a valid block
    minimum = resize_depth(depth, (2, 2), "min")[0, 0]
    torch.testing.assert_close(minimum, torch.tensor([[0.3, 0.0], [0.0, 0.5]]))
    nearest = resize_depth(depth, (4, 4), "nearest")[0, 0]
    assert set(nearest.unique().tolist()) <= set(depth.unique().tolist())  # no new values
    assert (nearest[2:, :2] == 0).all() and (nearest[:2, :2] > 0).all()


# ----------------------------------------------------------------------------- augmentation


def test_augmentation_is_reproducible_and_keeps_ranges():
    source = make_fake_sequence("a", num_frames=8)
    augment = AugmentConfig(depth_dropout=0.2)
    dataset = ClipWindowDataset([source], **SMALL, augment=augment, seed=3)
    first, again = dataset[1], dataset[1]
    torch.testing.assert_close(first["rgb"], again["rgb"])
    torch.testing.assert_close(first["depth_m"], again["depth_m"])
    plain = dataset.without_augmentation()[1]
    assert not torch.equal(first["rgb"], plain["rgb"])
    assert 0.0 <= first["rgb"].min() and first["rgb"].max() <= 1.0
    assert (first["depth_m"] == 0).float().mean() > (plain["depth_m"] == 0).float().mean()
    torch.testing.assert_close(first["uv_pressure_kpa"], plain["uv_pressure_kpa"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1]["rgb"], first["rgb"])


# ----------------------------------------------------------------------------- config


def test_window_config_is_validated():
    with pytest.raises(ConfigError, match=r"crop must be one of \('hand', 'full'\). Got 'face'"):
        WindowConfig(crop="face")
    with pytest.raises(ConfigError, match=r"depth_resize must be one of .*Got 'mean'"):
        WindowConfig(depth_resize="mean")
    with pytest.raises(ConfigError, match="window must be an int >= 1. Got 0"):
        WindowConfig(window=0)
    with pytest.raises(ConfigError, match=r"image_size must be .*Got \(64,\)"):
        WindowConfig(image_size=(64,))
    with pytest.raises(ConfigError, match=r"min_valid_frames must be an int in \[0, window=4\]"):
        WindowConfig(window=4, min_valid_frames=5)
    with pytest.raises(ConfigError, match=r"crop_shift must be a number in \[0, 1\). Got 2"):
        AugmentConfig(crop_shift=2)
    config = WindowConfig(window=8, image_size=[32, 48], augment={"brightness": 0.1})
    assert config.image_size == (32, 48) and config.augment.brightness == 0.1
    assert WindowConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown WindowConfig field"):
        WindowConfig.from_dict({"windw": 3})
    with pytest.raises(ConfigError, match="at least one sequence"):
        ClipWindowDataset([])


# ----------------------------------------------------------------------------- statistics


def test_statistics_match_the_data_and_round_trip(tmp_path):
    sources = [make_fake_sequence("a", num_frames=8, unannotated=(2,)),
               make_fake_sequence("b", num_frames=6, seed=1)]
    dataset = ClipWindowDataset(sources, **SMALL, augment=AugmentConfig())
    stats = compute_statistics(dataset, samples_per_frame=100000, progress=False)
    plain = dataset.without_augmentation()
    depth, pressure, seen = [], [], set()
    for index in range(len(plain)):
        item = plain[index]
        position = int(plain.window_index[index, 0])
        for t, frame in enumerate(item["frame_index"].tolist()):
            if (position, frame) in seen:
                continue
            seen.add((position, frame))
            depth.append(item["depth_m"][t].flatten())
            if item["valid"][t]:
                pressure.append(item["uv_pressure_kpa"][t].flatten())
    depth = torch.cat(depth).double().numpy()
    pressure = torch.cat(pressure).double().numpy()
    assert stats.num_frames == 8 + 6 and stats.num_valid_frames == 13
    assert stats.depth_mean_m == pytest.approx(depth[depth > 0].mean())
    assert stats.depth_std_m == pytest.approx(depth[depth > 0].std(), rel=1e-6)
    assert stats.depth_valid_fraction == pytest.approx((depth > 0).mean())
    assert stats.pressure_max_kpa == pytest.approx(pressure.max())
    assert stats.pressure_mean_kpa == pytest.approx(pressure.mean())
    assert stats.contact_fraction == pytest.approx((pressure > 1.0).mean())
    assert stats.pressure_percentiles_kpa["99"] == pytest.approx(
        np.percentile(pressure[pressure > 0], 99), rel=1e-6)
    path = stats.save(tmp_path / "stats" / "statistics.json")
    assert DataStatistics.load(path) == stats
    path.write_text(json.dumps({"version": 1}))
    with pytest.raises(DataError, match="missing statistics field"):
        DataStatistics.load(path)
    with pytest.raises(DataError, match="statistics file is missing"):
        DataStatistics.load(tmp_path / "nope.json")


# ----------------------------------------------------------------------------- workers, sources


@pytest.fixture(scope="module")
def egopressure_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("egopressure_windows")
    write_egopressure_fixture(root, participants=("p_001", "p_017"), frames=6,
                              unannotated=(0, 1, 2), depth_size=128)
    return root


def test_egopressure_fixture_flows_through_windows(egopressure_root):
    source = EgoPressureDataset(egopressure_root, split="test")
    dataset = ClipWindowDataset(source, window=3, stride=1, image_size=(32, 32), uv_size=(32, 32),
                                min_valid_frames=2)
    # frames 0-2 are unannotated: windows starting at 0 and 1 have fewer than 2 valid frames
    assert dataset.window_index[:, 1].tolist() == [2, 3]
    assert dataset.report["skipped_invalid"] == 2
    item = dataset[0]
    assert item["valid"].tolist() == [False, True, True]
    assert item["vertices"].shape == (3, 778, 3)
    assert item["uv_pressure_kpa"].shape == (3, 1, 32, 32)
    record = source.sequences()[0].frame(3)
    expected_mean = float(record.uv_pressure_kpa.astype(np.float64).mean())
    assert float(item["uv_pressure_kpa"][1].mean()) == pytest.approx(expected_mean, rel=1e-5)
    np.testing.assert_allclose(item["joints"][1].numpy(), record.joints, atol=1e-6)
    assert (item["depth_m"] > 0).float().mean() > 0.9


def test_dataloader_with_two_workers(egopressure_root):
    sources = EgoPressureDataset(egopressure_root, split="all").sequences()
    sources += [make_fake_sequence("fake", num_frames=8, num_vertices=778)]
    dataset = ClipWindowDataset(sources, window=3, stride=3, image_size=(16, 16), uv_size=(8, 8),
                                skip_invalid=False, augment=AugmentConfig())
    pickle.loads(pickle.dumps(dataset))
    loader = DataLoader(dataset, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(b["sequence"]) for b in batches) == len(dataset) == 2 * 2 + 2
    assert batches[0]["rgb"].shape == (2, 3, 3, 16, 16)
    assert batches[0]["vertices"].shape == (2, 3, 778, 3)
    single = [dataset[i] for i in range(len(dataset))]
    loaded = torch.cat([b["depth_m"] for b in batches])
    torch.testing.assert_close(loaded, torch.stack([s["depth_m"] for s in single]))
