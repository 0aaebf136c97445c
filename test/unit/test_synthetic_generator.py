"""The synthetic generator end to end on small sequences: physics consistency, determinism,
resume, the lazy reader and clip windows over it."""

import json
import os

import numpy as np
import pytest

from egopress_core.data.synthetic.generator import (
    PAD_PITCH_M,
    SynthConfig,
    generate_dataset,
    generate_sequence,
    hand_and_atlas,
)
from egopress_core.data.synthetic.storage import SyntheticDataset
from egopress_core.data.windows import ClipWindowDataset, WindowConfig
from egopress_core.errors import ConfigError, DataError
from egopress_core.evaluation_factors import MIDDLE_KNUCKLE, WRIST

SMALL = dict(frames=14, image_sizes=((64, 80),), uv_resolution=96)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    config = SynthConfig(sequences=3, seed=7, gestures=("single_press", "palm_press", "hover"), **SMALL)
    generate_dataset(config, root, progress=False)
    return root


def _world_vertices(frame):
    camera_from_world = frame.camera_from_world
    rotation, translation = camera_from_world[:3, :3], camera_from_world[:3, 3]
    return (frame.vertices.astype(np.float64) - translation) @ rotation


def test_reader_shapes_and_metadata(dataset_root):
    sequences = SyntheticDataset(dataset_root).sequences()
    assert [s.name for s in sequences] == ["seq_00000", "seq_00001", "seq_00002"]
    hand, atlas = hand_and_atlas(None, "right", SMALL["uv_resolution"])
    frame = sequences[0].frame(5)
    assert frame.rgb.shape == (64, 80, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth_m.shape == (64, 80) and frame.depth_m.dtype == np.float32
    assert frame.vertices.shape == (hand.num_vertices, 3)
    assert frame.joints.shape == (21, 3)
    assert frame.uv_pressure_kpa.shape == atlas.mask.shape
    assert frame.vertex_pressure_kpa.shape == (hand.num_vertices,)
    assert frame.mano.hand_pose.shape == (45,) and frame.mano.betas.shape == (10,)
    assert sequences[0].meta["gesture"] == "single_press"
    assert sequences[0].meta["uv_layout"] == atlas.layout_id
    # depth is metric and the hand is in front of the camera, roughly where depth says
    hand_depth = frame.vertices[:, 2]
    assert 0.2 < hand_depth.mean() < 0.8
    assert ((frame.depth_m == 0) | (frame.depth_m > 0.15)).all()


def test_mano_parameters_reproduce_the_vertices(dataset_root):
    import torch

    hand, _ = hand_and_atlas(None, "right", SMALL["uv_resolution"])
    frame = SyntheticDataset(dataset_root).sequences()[1].frame(7)
    with torch.no_grad():
        output = hand(
            global_orient=torch.as_tensor(frame.mano.global_orient[None]),
            hand_pose=torch.as_tensor(frame.mano.hand_pose[None]),
            betas=torch.as_tensor(frame.mano.betas[None]),
            transl=torch.as_tensor(frame.mano.transl[None]),
        )
    assert np.abs(output.vertices[0].numpy() - frame.vertices).max() < 1e-4  # metres
    assert np.abs(output.joints[0].numpy() - frame.joints).max() < 1e-4


def test_force_is_conserved_between_pad_uv_and_vertices(dataset_root):
    _, atlas = hand_and_atlas(None, "right", SMALL["uv_resolution"])
    pressed = 0
    for sequence in SyntheticDataset(dataset_root).sequences():
        for frame in sequence:
            force = frame.extras["force_n"]
            pad_force = frame.pad_pressure_kpa.astype(np.float64).sum() * 1000.0 * PAD_PITCH_M**2
            uv_force = float(atlas.total_force(frame.uv_pressure_kpa, frame.vertices))
            assert uv_force == pytest.approx(force, rel=1e-3, abs=1e-4)
            assert pad_force == pytest.approx(force, rel=1e-3, abs=1e-4)
            if force > 0.5:
                pressed += 1
                vertex_force = float((frame.vertex_pressure_kpa * 1000.0 * atlas.vertex_area(frame.vertices)).sum())
                assert vertex_force == pytest.approx(force, rel=1e-3)
    assert pressed >= 5


def test_no_pressure_without_penetration(dataset_root):
    _, atlas = hand_and_atlas(None, "right", SMALL["uv_resolution"])
    touching = 0
    for sequence in SyntheticDataset(dataset_root).sequences():
        for frame in sequence:
            depth_into_pad = atlas.texel_points(_world_vertices(frame))[..., 2]
            pressure = frame.uv_pressure_kpa
            assert (pressure[depth_into_pad <= 0.0] == 0).all()
            assert (pressure[atlas.mask & (depth_into_pad > 1e-5)] > 0).all()
            assert (pressure >= 0).all() and (frame.vertex_pressure_kpa >= 0).all()
            touching += int((depth_into_pad > 0).any())
    assert touching > 0


def test_force_follows_the_commanded_profile(dataset_root):
    sequence = SyntheticDataset(dataset_root).sequences()[0]
    force = sequence.array("force_n")
    target = sequence.array("target_force_n")
    pressing = target > 0.05
    assert pressing.sum() >= 4
    assert force[pressing] == pytest.approx(target[pressing], rel=0.02, abs=0.01)
    # where the command rises monotonically, so does the simulated force
    rising = np.flatnonzero(np.diff(target) > 1e-3)
    assert (np.diff(force)[rising] > 0).all()


def test_hover_never_touches(dataset_root):
    sequence = SyntheticDataset(dataset_root).sequences()[2]
    assert sequence.meta["gesture"] == "hover"
    assert float(np.max(sequence.array("force_n"))) == 0.0
    assert float(np.max(sequence.array("uv_pressure_kpa"))) == 0.0


def test_determinism_per_seed():
    config = SynthConfig(sequences=2, seed=3, **SMALL)
    first, meta = generate_sequence(config, 1)
    second, _ = generate_sequence(config, 1)
    for name in ("rgb", "depth_mm", "uv_pressure_kpa", "vertices"):
        assert np.array_equal(first[name], second[name]), name
    other, _ = generate_sequence(SynthConfig(sequences=2, seed=4, **SMALL), 1)
    assert not np.array_equal(first["vertices"], other["vertices"])


def test_resume_keeps_complete_sequences_and_redoes_partial_ones(tmp_path):
    config = SynthConfig(sequences=2, seed=11, gestures=("drag",), **SMALL)
    generate_dataset(config, tmp_path, progress=False)
    kept = tmp_path / "seq_00000" / "rgb.npy"
    kept_mtime = os.stat(kept).st_mtime_ns
    original = np.load(tmp_path / "seq_00001" / "uv_pressure_kpa.npy")
    # An interrupted run leaves a partial folder and no final one.
    os.rename(tmp_path / "seq_00001", tmp_path / "seq_00001.partial")
    (tmp_path / "seq_00001.partial" / "rgb.npy").write_bytes(b"truncated")
    generate_dataset(config, tmp_path, progress=False)
    assert os.stat(kept).st_mtime_ns == kept_mtime
    assert np.array_equal(np.load(tmp_path / "seq_00001" / "uv_pressure_kpa.npy"), original)
    assert not (tmp_path / "seq_00001.partial").exists()
    # Asking for more sequences extends the set; other settings are refused.
    generate_dataset(SynthConfig(sequences=3, seed=11, gestures=("drag",), **SMALL), tmp_path, progress=False)
    assert len(SyntheticDataset(tmp_path).sequences()) == 3
    with pytest.raises(DataError, match=r"other settings \(.*dataset.json: config.seed 11 -> 12\)"):
        generate_dataset(SynthConfig(sequences=3, seed=12, gestures=("drag",), **SMALL), tmp_path, progress=False)
    # A folder written by an earlier version names what it lacks and what was removed.
    info = json.loads((tmp_path / "dataset.json").read_text())
    info["config"]["extra"] = {}
    del info["config"]["pitch_deg"]
    (tmp_path / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match=r"config.extra \{\} -> None, config.pitch_deg None -> \[") as refused:
        generate_dataset(SynthConfig(sequences=3, seed=11, gestures=("drag",), **SMALL), tmp_path, progress=False)
    assert "choose another --out or delete it" in str(refused.value)


def test_bad_output_folders_are_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        generate_dataset(SynthConfig(sequences=1, **SMALL), tmp_path, progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="not writable"):
        generate_dataset(SynthConfig(sequences=1, **SMALL), blocker / "out", progress=False)
    with pytest.raises(ConfigError, match="gestures"):
        SynthConfig(sequences=1, gestures=("juggling",))


def test_windows_over_synthetic_data(dataset_root):
    dataset = ClipWindowDataset(
        SyntheticDataset(dataset_root).sequences(), WindowConfig(window=8, stride=4, image_size=(32, 32), uv_size=(24, 24))
    )
    assert len(dataset) == 3 * 2
    item = dataset[0]
    assert item["rgb"].shape == (8, 3, 32, 32)
    assert item["uv_pressure_kpa"].shape == (8, 1, 24, 24)
    assert bool(item["valid"].all())


def test_parallel_workers_give_the_same_data(dataset_root, tmp_path):
    config = SynthConfig(sequences=2, seed=7, gestures=("single_press", "palm_press", "hover"), **SMALL)
    generate_dataset(config, tmp_path, workers=2, progress=False)
    for name in ("seq_00000", "seq_00001"):
        for array in ("rgb", "uv_pressure_kpa", "vertices"):
            assert np.array_equal(np.load(tmp_path / name / f"{array}.npy"), np.load(dataset_root / name / f"{array}.npy"))


def test_synth_command_takes_gesture_groups(tmp_path):
    from egopress_core.cli.main import main
    from egopress_core.data.synthetic.generator import WEAK_EVIDENCE_GESTURES

    out = tmp_path / "weak"
    assert main(["synth", "--out", str(out), "--sequences", str(len(WEAK_EVIDENCE_GESTURES)), "--frames", "2",
                 "--image-size", "48", "48", "--uv-resolution", "16", "--gestures", "weak", "--no-progress"]) == 0
    assert tuple(s.meta["gesture"] for s in SyntheticDataset(out).sequences()) == WEAK_EVIDENCE_GESTURES


def test_synth_command_samples_the_ranges_it_is_given(tmp_path):
    """--hand-distance / --shape-std reach the renders: a farther camera sees the hand smaller, and
    a wider shape spread gives hands of more different sizes."""
    from egopress_core.cli.main import main
    from egopress_core.data.synthetic import ranges

    def hand_scales(out, *flags):
        assert main(["synth", "--out", str(out), "--sequences", "4", "--frames", "2", "--image-size", "48", "48",
                     "--uv-resolution", "16", "--gestures", "palm_press", "--no-progress", "--seed", "3", *flags]) == 0
        records = [sequence.frame(0) for sequence in SyntheticDataset(out).sequences()]
        distances = np.array([np.median(record.vertices[:, 2]) for record in records])  # camera frame
        sizes = np.array([np.linalg.norm(record.joints[MIDDLE_KNUCKLE] - record.joints[WRIST]) for record in records])
        return distances, sizes, json.loads((out / "dataset.json").read_text())["config"]

    near, _, near_config = hand_scales(tmp_path / "near")
    far, _, far_config = hand_scales(tmp_path / "far", "--hand-distance", "0.9", "1.0")
    assert near_config["hand_distance_m"] == list(ranges.HAND_DISTANCE_M)
    assert far_config["hand_distance_m"] == [0.9, 1.0]
    assert near.max() < 0.55 < 0.8 < far.min()

    _, same_sizes, _ = hand_scales(tmp_path / "one_shape", "--shape-std", "0")
    _, spread_sizes, _ = hand_scales(tmp_path / "spread", "--shape-std", "3")
    assert np.ptp(same_sizes) < 0.002 < np.ptp(spread_sizes)


@pytest.mark.parametrize("field, value, message", [
    ("hand_distance_m", (0.5, 0.3), "hand_distance_m must be a \\(min, max\\) pair"),
    ("hand_distance_m", (0.1, 0.3), "0.25 <= min"),
    ("pitch_deg", (10.0, 80.0), "pitch_deg must be"),
    ("shape_std", -1.0, "shape_std must be in"),
])
def test_out_of_range_sampling_ranges_are_refused(field, value, message):
    with pytest.raises(ConfigError, match=message):
        SynthConfig(sequences=1, **{field: value})
