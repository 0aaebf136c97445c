"""EgoPressure reader: a fixture with the release schema is written and read back."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from fixtures.egopressure_fixture import (
    COLOR_FROM_DEPTH_T_M,
    PRESSURE_RANGE_MAX_COUNTS,
    corrupt_file,
    drop_column,
    pad_plane_in,
    write_egopressure_fixture,
)
from scipy.spatial.transform import Rotation

from egopress_core.data.egopressure import (
    ColorCameraCalibration,
    DepthCameraModel,
    EgoPressureDataset,
    EgoPressureSequence,
    auto_splat_radius,
    depth_to_color_metres,
    reproject_depth_to_color,
)
from egopress_core.data.sensel import sensel_counts_to_kpa
from egopress_core.errors import ConfigError, DataError

FRAMES = 4
UNANNOTATED = (0,)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("egopressure")
    return write_egopressure_fixture(root, participants=("p_001", "p_002", "p_016"),
                                     frames=FRAMES, unannotated=UNANNOTATED)


@pytest.fixture(scope="module")
def train(fixture):
    return EgoPressureDataset(fixture.root, split="train")


def _sequence(dataset, name):
    return next(s for s in dataset.sequences() if s.name == name)


def _fresh(tmp_path, frames=2):
    fixture = write_egopressure_fixture(tmp_path, participants=("p_001",), frames=frames,
                                        unannotated=(), depth_size=64)
    name = next(iter(fixture.sequences))
    return fixture, name


# ----------------------------------------------------------------------------- splits


def test_split_selects_participants(fixture):
    assert EgoPressureDataset(fixture.root, split="train").participants == ["p_001", "p_002"]
    assert EgoPressureDataset(fixture.root, split="test").participants == ["p_016"]
    assert EgoPressureDataset(fixture.root, split="all").participants == ["p_001", "p_002", "p_016"]
    only = EgoPressureDataset(fixture.root, split="test", participants=["p_002"])
    assert [s.participant for s in only.sequences()] == ["p_002"]
    custom = EgoPressureDataset(fixture.root, split="test", splits={"train": ["p_016"],
                                                                    "test": ["p_001"]})
    assert custom.participants == ["p_001"]


def test_split_errors_name_the_problem(fixture, tmp_path):
    with pytest.raises(ConfigError, match=r"split must be one of .*Got 'val'"):
        EgoPressureDataset(fixture.root, split="val")
    with pytest.raises(DataError, match="p_099"):
        EgoPressureDataset(fixture.root, participants=["p_099"])
    with pytest.raises(DataError, match="no 'data/' folder"):
        EgoPressureDataset(tmp_path)
    write_egopressure_fixture(tmp_path / "only_train", participants=("p_003",), frames=1,
                              depth_size=32)
    with pytest.raises(DataError, match="no sequences for split 'test'"):
        EgoPressureDataset(tmp_path / "only_train", split="test")


# ----------------------------------------------------------------------------- read-back


def test_frames_have_protocol_fields_and_timing(fixture, train):
    for sequence in train.sequences():
        truth = fixture.sequences[sequence.name]
        assert len(sequence) == FRAMES
        assert sequence.fps == 30.0 and sequence.hand_model == "mano"
        assert sequence.hand_side == truth.hand_side
        assert sequence.uv_layout == f"MANO_UV_{truth.hand_side}"
        records = list(sequence)
        assert [r.index for r in records] == list(range(FRAMES))
        assert [r.extras["frame_number"] for r in records] == truth.frame_numbers.tolist()
        assert records[2].timestamp_s == pytest.approx(2 / 30.0)
        assert all(r.hand_side == truth.hand_side for r in records)
        assert records[1].rgb.shape == (120, 160, 3) and records[1].rgb.dtype == np.uint8
        assert records[1].depth_m.shape == (120, 160) and records[1].depth_m.dtype == np.float32
    with pytest.raises(IndexError):
        train.sequences()[0].frame(FRAMES)


def test_rgb_decodes_to_source_within_jpeg_tolerance(fixture, train):
    for sequence in train.sequences():
        truth = fixture.sequences[sequence.name]
        for index in range(FRAMES):
            error = np.abs(sequence.frame(index).rgb.astype(int) - truth.rgb[index].astype(int))
            assert error.mean() < 2.0 and error.max() <= 24


def _expected_plane_depth(camera_from_world, intrinsics, shape):
    """(H, W) depth of the pad plane at each pixel centre, and the (H, W) error a z-buffer may
    make: the nearest sample in a pixel can sit up to half a pixel from its centre."""
    normal, offset = pad_plane_in(camera_from_world)
    v, u = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(intrinsics).T
    depth = offset / (rays @ normal)
    slope_v, slope_u = np.gradient(depth)
    half_pixel = 0.5 * (np.abs(slope_u) + np.abs(slope_v))
    return depth, half_pixel + 0.0006  # + mm quantisation


@pytest.mark.parametrize("depth_to_color", ["k4a", "config"])
def test_depth_reprojection_reproduces_the_pad_plane(fixture, depth_to_color):
    dataset = EgoPressureDataset(fixture.root, split="train", depth_to_color=depth_to_color)
    sequence = dataset.sequences()[0]
    truth = fixture.sequences[sequence.name]
    for index in range(FRAMES):
        record = sequence.frame(index)
        expected, bound = _expected_plane_depth(truth.camera_from_world[index],
                                                record.intrinsics, record.depth_m.shape)
        valid = record.depth_m > 0
        assert valid.mean() > 0.98
        error = np.abs(record.depth_m[valid] - expected[valid])
        assert np.all(error <= bound[valid]) and np.median(error) < 0.002


def test_depth_transform_sources_agree_and_units_are_inferred(fixture):
    sequence = EgoPressureDataset(fixture.root, split="train").sequences()[0]
    from_k4a = sequence._color_from_depth()
    from_config = EgoPressureSequence(sequence.data_dir, sequence.config_path,
                                      depth_to_color="config")._color_from_depth()
    np.testing.assert_allclose(from_config, from_k4a, atol=1e-12)
    np.testing.assert_allclose(from_k4a[:3, 3], COLOR_FROM_DEPTH_T_M)
    millimetres = np.eye(4)
    millimetres[:3, 3] = [-32.0, 1.0, 4.0]
    np.testing.assert_allclose(depth_to_color_metres(millimetres)[:3, 3], [-0.032, 0.001, 0.004])
    metres = millimetres.copy()
    metres[:3, 3] /= 1000.0
    np.testing.assert_allclose(depth_to_color_metres(metres), metres)


def test_zbuffer_keeps_nearest_surface_and_splats():
    intrinsics = np.array([[10.0, 0, 4.5], [0, 10.0, 4.5], [0, 0, 1]])
    rays = np.zeros((1, 3, 3))
    rays[..., 2] = 1.0  # three depth pixels all looking along the optical axis
    depth_mm = np.array([[800, 500, 0]], dtype=np.uint16)  # 0 is a hole and must be ignored
    out = reproject_depth_to_color(depth_mm, rays, np.eye(4), intrinsics, (10, 10))
    assert out[5, 5] == pytest.approx(0.5)  # centre (4.5, 4.5) rounds to pixel 5
    assert np.count_nonzero(out) == 1
    splat = reproject_depth_to_color(depth_mm, rays, np.eye(4), intrinsics, (10, 10), 1)
    assert np.count_nonzero(splat) == 9 and np.all(splat[4:7, 4:7] == pytest.approx(0.5))
    assert auto_splat_radius(900.0, 252.0) == 2 and auto_splat_radius(150.0, 256.0) == 0


def test_k4a_distortion_inverts():
    # coefficients of a real Azure Kinect depth camera (rational radial, tiny tangential)
    model = DepthCameraModel(width=512, height=512, fx=252.0, fy=252.0, cx=255.5, cy=255.5,
                             radial=(3.1306, 2.3249, 0.1304, 3.4587, 3.3501, 0.6629),
                             p1=8.1e-5, p2=-5.1e-5)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1.0, 1.0, size=(2, 2000))
    xd, yd = model.distort(x, y)
    xu, yu = model.undistort(xd, yd)
    # 1e-5 in normalised coordinates is 0.0025 depth pixels
    np.testing.assert_allclose(xu, x, atol=1e-5)
    np.testing.assert_allclose(yu, y, atol=1e-5)
    radial_only = DepthCameraModel(512, 512, 252.0, 252.0, 255.5, 255.5,
                                   (0.1, 0, 0, 0, 0, 0), 0.0, 0.0)
    xd, yd = radial_only.distort(np.array([0.5]), np.array([0.0]))
    assert xd[0] == pytest.approx(0.5 * (1 + 0.1 * 0.25)) and yd[0] == 0.0
    rays = model.pixel_rays()
    assert rays.shape == (512, 512, 3) and np.isfinite(rays[256, 256]).all()


def test_pressure_is_converted_to_kpa_exactly(fixture, train):
    assert sensel_counts_to_kpa(np.array([1736.0]))[0] == pytest.approx(640.0)
    for sequence in train.sequences():
        truth = fixture.sequences[sequence.name]
        for index in range(FRAMES):
            record = sequence.frame(index)
            expected_pad = truth.force_counts[index].astype(np.float64) / 1736.0 / 0.00125**2 / 1e3
            # float32 precision (the grid holds denormal-small tails of the press)
            np.testing.assert_allclose(record.pad_pressure_kpa, expected_pad, rtol=1e-6, atol=1e-9)
            if not record.has_annotation:
                assert record.uv_pressure_kpa is None
                continue
            expected_uv = (truth.pressure_map[index].astype(np.float64) * PRESSURE_RANGE_MAX_COUNTS
                           / 1736.0 / 0.00125**2 / 1e3)
            assert record.uv_pressure_kpa.shape == (224, 224)
            np.testing.assert_allclose(record.uv_pressure_kpa, expected_uv, rtol=1e-6, atol=1e-6)


def test_hand_moves_into_the_colour_camera_frame(fixture, train):
    for sequence in train.sequences():
        truth = fixture.sequences[sequence.name]
        for index in range(FRAMES):
            record = sequence.frame(index)
            pose = truth.camera_from_world[index]
            np.testing.assert_allclose(record.camera_from_world, pose, atol=1e-6)
            if not record.has_annotation:
                assert record.vertices is None and record.joints is None and record.mano is None
                continue
            rotation, translation = pose[:3, :3], pose[:3, 3]
            np.testing.assert_allclose(record.vertices,
                                       truth.vertices_world[index] @ rotation.T + translation,
                                       atol=2e-6)
            np.testing.assert_allclose(record.joints,
                                       truth.joints_world[index] @ rotation.T + translation,
                                       atol=2e-6)
            # the hand is in front of the camera and inside the image
            projected = record.joints @ record.intrinsics.T
            pixels = projected[:, :2] / projected[:, 2:]
            assert np.all(record.joints[:, 2] > 0.2)
            assert np.all((pixels >= 0) & (pixels < [160, 120]))
            normals = record.extras["vertex_normals"]
            np.testing.assert_allclose(normals[0], rotation @ [0.0, 0.0, -1.0], atol=1e-6)


def test_mano_parameters_describe_the_same_rigid_motion_in_camera_frame(fixture, train):
    """MANO rotates rest points about the root J0: R (p - J0) + J0 + transl. Posing with the
    camera-frame parameters must equal posing in the world and applying the ego pose."""
    rng = np.random.default_rng(1)
    sequence = train.sequences()[0]
    truth = fixture.sequences[sequence.name]
    for index in range(1, FRAMES):
        record = sequence.frame(index)
        pose = truth.camera_from_world[index]
        root = truth.joints_world[index, 0] - truth.transl_world[index]
        rest = rng.normal(size=(50, 3)) * 0.05 + root
        world_rotation = Rotation.from_rotvec(truth.full_pose[index, :3]).as_matrix()
        world = (rest - root) @ world_rotation.T + root + truth.transl_world[index]
        expected = world @ pose[:3, :3].T + pose[:3, 3]
        camera_rotation = Rotation.from_rotvec(record.mano.global_orient).as_matrix()
        posed = (rest - root) @ camera_rotation.T + root + record.mano.transl
        np.testing.assert_allclose(posed, expected, atol=1e-5)
        np.testing.assert_allclose(record.mano.hand_pose, truth.full_pose[index, 3:], atol=1e-6)
        np.testing.assert_allclose(record.mano.betas, truth.betas[index], atol=1e-6)
        assert record.mano.hand_pose.shape == (45,) and record.mano.betas.shape == (10,)


def test_frames_without_annotation_are_flagged_and_counted(fixture):
    dataset = EgoPressureDataset(fixture.root, split="all")
    assert dataset.skipped_frames == len(fixture.sequences) * len(UNANNOTATED)
    assert dataset.num_frames == len(fixture.sequences) * FRAMES
    report = dataset.annotation_report()
    assert all(v == {"frames": FRAMES, "unannotated": len(UNANNOTATED)} for v in report.values())
    sequence = dataset.sequences()[0]
    np.testing.assert_array_equal(sequence.annotation_flags(), [False, True, True, True])
    record = sequence.frame(0)
    assert not record.has_annotation and record.uv_pressure_kpa is None
    assert record.pad_pressure_kpa is not None and record.depth_m.any()


def test_image_scale_keeps_geometry_consistent(fixture):
    full = EgoPressureDataset(fixture.root, split="train").sequences()[0]
    half = EgoPressureDataset(fixture.root, split="train", image_scale=0.5).sequences()[0]
    truth = fixture.sequences[full.name]
    record = half.frame(1)
    assert record.rgb.shape == (60, 80, 3) and record.depth_m.shape == (60, 80)
    np.testing.assert_allclose(record.intrinsics[0], [75.0, 0.0, 39.5])
    expected, bound = _expected_plane_depth(truth.camera_from_world[1], record.intrinsics, (60, 80))
    valid = record.depth_m > 0
    assert valid.mean() > 0.98
    assert np.all(np.abs(record.depth_m[valid] - expected[valid]) <= bound[valid])
    downsampled = truth.rgb[1].reshape(60, 2, 80, 2, 3).mean(axis=(1, 3))
    assert np.abs(record.rgb - downsampled).mean() < 4.0


def test_mask_is_readable(fixture, train):
    mask = train.sequences()[0].read_mask(1)
    assert mask.shape == (120, 160) and mask[60, 80] == 255 and mask[0, 0] == 0


def test_sequences_pickle_and_reopen_their_files(train):
    sequence = train.sequences()[0]
    before = sequence.frame(2)
    clone = pickle.loads(pickle.dumps(sequence))
    after = clone.frame(2)
    np.testing.assert_array_equal(before.rgb, after.rgb)
    np.testing.assert_array_equal(before.depth_m, after.depth_m)
    np.testing.assert_array_equal(before.vertices, after.vertices)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("shard, column", [("pressure.parquet", "force"),
                                           ("annotation.parquet", "joint_position"),
                                           ("cam-d.color.parquet", "image")])
def test_missing_column_is_named_with_its_file(tmp_path, shard, column):
    fixture, name = _fresh(tmp_path)
    drop_column(fixture.sequence_dir(name) / shard, column)
    sequence = EgoPressureDataset(tmp_path, split="train").sequences()[0]
    with pytest.raises(DataError, match=rf"{shard}: missing column '{column}'"):
        sequence.frame(0)


def test_missing_and_corrupt_files_are_named(tmp_path):
    fixture, name = _fresh(tmp_path)
    data_dir = fixture.sequence_dir(name)
    (data_dir / "cam-d.depth.parquet").unlink()
    sequence = EgoPressureDataset(tmp_path, split="train").sequences()[0]
    with pytest.raises(DataError, match=r"cam-d\.depth\.parquet: parquet file is missing"):
        sequence.frame(0)
    corrupt_file(data_dir / "annotation.parquet")
    sequence = EgoPressureDataset(tmp_path, split="train").sequences()[0]
    with pytest.raises(DataError, match=r"annotation\.parquet: not a readable parquet file"):
        len(sequence)


def test_missing_calibration_is_named(tmp_path):
    fixture, name = _fresh(tmp_path)
    k4a = tmp_path / "configs" / "p_001" / f"{name}_k4a" / "cam-d.k4a_calibration.json"
    k4a.unlink()
    sequence = EgoPressureDataset(tmp_path, split="train").sequences()[0]
    with pytest.raises(DataError, match=r"cam-d\.k4a_calibration\.json: k4a factory calibration"):
        sequence.frame(0)
    config = tmp_path / "configs" / "p_001" / f"{name}.json"
    config.write_text("{not json")
    sequence = EgoPressureDataset(tmp_path, split="train").sequences()[0]
    with pytest.raises(DataError, match=rf"{name}\.json: not a readable JSON file"):
        sequence.frame(0)


def test_arguments_are_validated(fixture):
    with pytest.raises(ConfigError, match=r"camera must be one of .*Got 'd'"):
        EgoPressureDataset(fixture.root, camera="d")
    with pytest.raises(ConfigError, match=r"image_scale must be one of .*Got 0.3"):
        EgoPressureDataset(fixture.root, image_scale=0.3)
    with pytest.raises(ConfigError, match=r"depth_to_color must be one of .*Got 'x'"):
        EgoPressureDataset(fixture.root, depth_to_color="x")


def test_static_camera_extrinsics_are_read_in_metres():
    model_view = np.eye(4)
    model_view[:3, 3] = [100.0, -250.0, 900.0]  # millimetres, as the release stores them
    config = {"camera_calibrations": {"3": {"fx": 1.0, "fy": 2.0, "cx": 3.0, "cy": 4.0,
                                            "ModelViewMatrix": model_view.tolist()}}}
    calibration = ColorCameraCalibration.from_config(config, "3", "config.json")
    np.testing.assert_allclose(calibration.camera_from_world[:3, 3], [0.1, -0.25, 0.9])
    np.testing.assert_allclose(calibration.intrinsics, [[1, 0, 3], [0, 2, 4], [0, 0, 1]])
    with pytest.raises(DataError, match=r"config.json: no camera_calibrations\['0'\]"):
        ColorCameraCalibration.from_config(config, "0", "config.json")
    with pytest.raises(DataError, match=r"needs numeric fx, fy, cx, cy"):
        ColorCameraCalibration.from_config({"camera_calibrations": {"0": {"fx": 1}}}, "0", "c")
