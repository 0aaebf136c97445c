"""Conditioning: pose maps, depth normalisation, UV geometry, pressure normaliser, validation."""

from __future__ import annotations

import math

import pytest
import torch

from egopress_core.conditioning import (
    HAND_BONES,
    NUM_POSE_CHANNELS,
    UV_GEOMETRY_CHANNELS,
    EgoPressConditions,
    PressureNormalizer,
    build_conditions,
    fit_surface_plane,
    hand_reference_depth,
    hand_silhouette,
    normalize_depth,
    render_pose_maps,
    uv_geometry_from_mesh,
)
from egopress_core.errors import ConfigError, DataError
from egopress_core.model.config import tiny_config
from model_batches import make_window_batch


def _camera(batch: int = 1, frames: int = 1, focal: float = 100.0, centre: float = 16.0) -> torch.Tensor:
    k = torch.tensor([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]])
    return k.expand(batch, frames, 3, 3).clone()


def test_hand_bones_cover_openpose_tree():
    assert NUM_POSE_CHANNELS == 20
    children = sorted(child for _, child in HAND_BONES)
    assert children == list(range(1, 21))  # every joint but the wrist has exactly one parent bone


def test_pose_map_is_a_gaussian_line_along_the_bone():
    joints = torch.zeros(1, 1, 21, 3)
    joints[..., 2] = 1.0
    joints[0, 0, 1] = torch.tensor([0.10, 0.0, 1.0])  # thumb CMC 10 px right of the wrist
    maps = render_pose_maps(joints, _camera(), (32, 32), sigma=1.5)
    assert maps.shape == (1, 1, NUM_POSE_CHANNELS, 32, 32)
    bone = maps[0, 0, 0]  # wrist -> thumb 1
    # On the segment (row 16, columns 16..26): peak 1; 3 px off the line: exp(-9 / (2 * 1.5^2)).
    assert torch.allclose(bone[16, 16:27], torch.ones(11), atol=1e-5)
    assert bone[19, 20].item() == pytest.approx(math.exp(-9 / 4.5), rel=1e-4)
    # Beyond the endpoint the distance is to the endpoint: 4 px past the tip.
    assert bone[16, 30].item() == pytest.approx(math.exp(-16 / 4.5), rel=1e-4)
    assert bone.max() <= 1.0 and bone.min() >= 0.0


def test_pose_maps_empty_for_invalid_frames_and_joints_behind_camera():
    joints = torch.zeros(1, 2, 21, 3)
    joints[..., 2] = 0.5
    joints[0, :, 1] = torch.tensor([0.02, 0.0, 0.5])
    joints[0, :, 2] = torch.tensor([0.03, 0.0, -0.2])  # behind the camera
    maps = render_pose_maps(joints, _camera(frames=2), (32, 32), valid=torch.tensor([[True, False]]))
    assert maps[0, 0, 0].max() > 0.99  # wrist -> joint 1 visible
    assert maps[0, 0, 1].max() == 0.0  # joint 1 -> joint 2 has an endpoint behind the camera
    assert maps[0, 1].max() == 0.0  # invalid frame


def test_render_pose_maps_rejects_bad_shapes():
    with pytest.raises(DataError, match="joints"):
        render_pose_maps(torch.zeros(1, 1, 20, 3), _camera(), (8, 8))
    with pytest.raises(DataError, match="intrinsics"):
        render_pose_maps(torch.zeros(1, 1, 21, 3), _camera(frames=2), (8, 8))


def test_normalize_depth_relative_to_hand_with_validity():
    depth = torch.tensor([0.0, 0.40, 0.45, 0.90, 0.10]).reshape(1, 1, 1, 1, 5)
    out = normalize_depth(depth, torch.tensor([[0.40]]), clip_m=0.1)
    assert out.shape == (1, 1, 2, 1, 5)
    assert torch.allclose(out[0, 0, 0, 0], torch.tensor([0.0, 0.0, 0.5, 1.0, -1.0]), atol=1e-6)
    assert torch.equal(out[0, 0, 1, 0], torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0]))


def test_hand_reference_depth_falls_back_to_valid_frames_then_observed_depth():
    joints = torch.zeros(2, 3, 21, 3)
    joints[0, :, :, 2] = torch.tensor([0.30, 0.50, 0.70])[:, None]
    valid = torch.tensor([[True, False, True], [False, False, False]])
    depth = torch.zeros(2, 3, 1, 2, 2)
    depth[1, :, 0, 0, 0] = 0.8
    reference = hand_reference_depth(joints, valid, depth)
    assert reference[0, 0] == pytest.approx(0.30)
    assert reference[0, 2] == pytest.approx(0.70)
    assert reference[0, 1] == pytest.approx(0.30)  # lower median of the valid frames (0.30, 0.70)
    assert torch.allclose(reference[1], torch.full((3,), 0.8))  # no valid frame: observed depth


def test_pressure_normalizer_round_trip_and_range():
    normalizer = PressureNormalizer(reference_kpa=1.0, max_kpa=100.0)
    pressure = torch.tensor([0.0, 0.5, 1.0, 10.0, 100.0])
    encoded = normalizer.encode(pressure)
    assert encoded[0] == -1.0 and encoded[-1] == pytest.approx(1.0)
    assert torch.all(encoded[1:] > encoded[:-1])
    assert torch.allclose(normalizer.decode(encoded), pressure, rtol=1e-4, atol=1e-5)
    # Out of range: clamped on both sides, never negative; zero outside the mask.
    decoded = normalizer.decode(torch.tensor([-3.0, 2.0, 0.0]), uv_mask=torch.tensor([1.0, 1.0, 0.0]))
    assert decoded.tolist() == pytest.approx([0.0, 100.0, 0.0])
    with pytest.raises(ConfigError, match="pressure_max_kpa"):
        PressureNormalizer(reference_kpa=5.0, max_kpa=2.0)


def test_build_conditions_shapes_and_validation():
    config = tiny_config()
    batch = make_window_batch(config, batch_size=2)
    conditions = build_conditions(batch)
    height, width = config.image_size
    assert isinstance(conditions, EgoPressConditions)
    assert conditions.depth.shape == (2, config.num_frames, 2, height, width)
    assert conditions.pose_maps.shape == (2, config.num_frames, NUM_POSE_CHANNELS, height, width)
    assert conditions.uv_mask.shape == (2, 1, *config.uv_size)
    assert conditions.pose_maps.amax() > 0.5  # the synthetic hand is in view
    window = conditions.window(1, 3)
    assert window.num_frames == 2 and window.uv_mask.shape == conditions.uv_mask.shape


def test_build_conditions_nan_and_missing_fields():
    config = tiny_config()
    batch = make_window_batch(config, batch_size=1)
    # NaN on an invalid frame is tolerated (zeroed), on a valid frame it is an error.
    batch["valid"][0, 1] = False
    batch["vertices"][0, 1] = float("nan")
    conditions = build_conditions(batch)
    assert torch.all(conditions.vertices[0, 1] == 0)
    batch["joints"][0, 0, 3, 0] = float("nan")
    with pytest.raises(DataError, match="joints contains NaN"):
        build_conditions(batch)
    batch = make_window_batch(config, batch_size=1)
    batch["depth_m"][0, 0, 0, 0, 0] = float("inf")
    with pytest.raises(DataError, match="depth_m"):
        build_conditions(batch)
    del batch["intrinsics"]
    with pytest.raises(DataError, match="intrinsics"):
        build_conditions(batch)


def test_uv_geometry_samples_image_at_texel_and_detects_occlusion():
    # One triangle facing the camera at z = 0.5; all texels on face 0 at its centroid.
    vertices = torch.tensor([[[[-0.05, -0.05, 0.5], [0.05, -0.05, 0.5], [0.0, 0.05, 0.5]]]])
    faces = torch.tensor([[0, 1, 2]])
    texel_face = torch.tensor([[0, 0], [0, -1]])
    bary = torch.full((2, 2, 3), 1.0 / 3.0)
    rgb = torch.zeros(1, 1, 3, 32, 32)
    rgb[:, :, 0] = 0.25
    depth = torch.full((1, 1, 1, 32, 32), 0.52)
    geometry = uv_geometry_from_mesh(
        vertices, faces, texel_face, bary, rgb, depth, _camera(), depth_clip_m=0.05
    )
    assert geometry.shape == (1, 1, UV_GEOMETRY_CHANNELS, 2, 2)
    assert geometry[0, 0, 4].tolist() == [[1.0, 1.0], [1.0, 0.0]]  # visible on the hand, 0 off it
    assert geometry[0, 0, 0, 0, 0].item() == pytest.approx(0.25)
    assert geometry[0, 0, 3, 0, 0].item() == pytest.approx((0.52 - 0.50) / 0.05, abs=1e-4)  # observed - mesh
    # Something 5 cm in front of the mesh occludes it.
    occluded = uv_geometry_from_mesh(
        vertices, faces, texel_face, bary, rgb, torch.full_like(depth, 0.45), _camera(), depth_clip_m=0.05
    )
    assert occluded[0, 0, 4].sum() == 0 and occluded[0, 0, :3].abs().sum() == 0


def _plane_depth(size: int = 32, focal: float = 100.0, centre: float = 16.0, tilt: float = 0.0,
                 distance: float = 0.5) -> torch.Tensor:
    """(size, size) depth of the plane z = distance + tilt * x seen by :func:`_camera`."""
    rows, columns = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return distance / (1.0 - tilt * (columns - centre) / focal)


def test_fit_surface_plane_recovers_a_tilted_plane_despite_clutter():
    depth = _plane_depth(tilt=0.2)
    depth[4:10, 4:10] = 0.45  # something on the pad, not masked
    depth[20:30, 20:30] = 0.3  # the hand: excluded
    depth[0, :] = 0.0  # missing readings
    exclude = torch.zeros(1, 32, 32, dtype=torch.bool)
    exclude[:, 20:30, 20:30] = True
    normal, point, valid = fit_surface_plane(depth[None], _camera()[0], exclude)
    expected = torch.tensor([0.2, 0.0, -1.0]) / (1.0 + 0.2 ** 2) ** 0.5  # towards the camera
    assert bool(valid[0])
    assert torch.allclose(normal[0], expected, atol=1e-4)
    assert float((point[0] - torch.tensor([0.0, 0.0, 0.5])) @ normal[0]) == pytest.approx(0.0, abs=1e-5)
    # Too few pixels left, or no plane at all: no surface.
    _, _, valid = fit_surface_plane(depth[None], _camera()[0], torch.ones(1, 32, 32, dtype=torch.bool))
    assert not bool(valid[0])
    rough = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.4 + 0.3
    _, _, valid = fit_surface_plane(rough, _camera()[0], torch.zeros(1, 32, 32, dtype=torch.bool))
    assert not bool(valid[0])


def test_fit_surface_plane_is_not_tilted_by_a_forearm_reaching_in():
    """A head camera sees the forearm come in from the image's bottom edge, rising from the table
    towards the camera; it is not the hand, so it is not excluded, and it covers a large part of
    a hand crop. The surface is still the table behind it."""
    depth = _plane_depth(tilt=0.2)
    rows = torch.arange(32).float()[:, None].expand(32, 32)
    forearm = (rows >= 12) & (torch.arange(32)[None, :] >= 6) & (torch.arange(32)[None, :] < 26)
    # 3 cm above the table at the wrist (row 12), 12 cm near the camera (row 31).
    depth = torch.where(forearm, depth - (0.03 + 0.09 * (rows - 12) / 19), depth)
    exclude = torch.zeros(1, 32, 32, dtype=torch.bool)
    exclude[:, 4:12, 10:22] = True  # the hand
    normal, point, valid = fit_surface_plane(depth[None], _camera()[0], exclude)
    expected = torch.tensor([0.2, 0.0, -1.0]) / (1.0 + 0.2 ** 2) ** 0.5
    assert bool(valid[0]) and torch.allclose(normal[0], expected, atol=1e-3)
    assert float((point[0] - torch.tensor([0.0, 0.0, 0.5])) @ normal[0]) == pytest.approx(0.0, abs=1e-4)


def test_hand_silhouette_splats_and_dilates_the_vertices():
    vertices = torch.tensor([[[0.0, 0.0, 0.5], [0.05, 0.0, 0.5], [0.0, 0.0, -0.5]]])  # pixels (16,16), (26,16); behind
    mask = hand_silhouette(vertices, _camera()[0], (32, 32), dilation_px=3)
    assert mask.shape == (1, 32, 32) and int(mask.sum()) == 18
    assert bool(mask[0, 15:18, 15:18].all()) and bool(mask[0, 15:18, 25:28].all())
    with pytest.raises(ConfigError, match="dilation_px must be an odd positive integer"):
        hand_silhouette(vertices, _camera()[0], (32, 32), dilation_px=2)


@pytest.mark.parametrize("height_m", [-0.002, 0.0, 0.004, 0.03])
def test_uv_geometry_surface_height_reads_the_plane_around_the_hand(height_m):
    """A small triangle (a fingertip) over a table whose surface under it is hidden: the table
    around its silhouette says how high above it the texel is (negative: pressed into it)."""
    z = 0.5 - height_m
    vertices = torch.tensor([[[[-0.002, -0.002, z], [0.002, -0.002, z], [0.0, 0.002, z]]]])
    faces = torch.tensor([[0, 1, 2]])
    texel_face = torch.tensor([[0, 0], [0, -1]])
    bary = torch.full((2, 2, 3), 1.0 / 3.0)
    rgb = torch.zeros(1, 1, 3, 32, 32)
    depth = _plane_depth()[None, None, None].clone()
    depth[..., 15:18, 15:18] = z - 0.01  # the fingertip's visible top
    geometry = uv_geometry_from_mesh(vertices, faces, texel_face, bary, rgb, depth, _camera())
    assert geometry[0, 0, 5, 0, 0].item() == pytest.approx(math.tanh(height_m / 0.005), abs=1e-3)
    assert geometry[0, 0, 5, 1, 1].item() == 0.0  # off the hand
    # No surface in view: "far from any surface" (1), not "touching".
    holes = uv_geometry_from_mesh(vertices, faces, texel_face, bary, rgb, torch.zeros_like(depth), _camera())
    assert holes[0, 0, 5].tolist() == [[1.0, 1.0], [1.0, 0.0]]
    with pytest.raises(ConfigError, match="surface_height_scale_m must be > 0"):
        uv_geometry_from_mesh(vertices, faces, texel_face, bary, rgb, depth, _camera(), surface_height_scale_m=0)


def _window_batch_with_the_hand_in_view():
    """A tiny config and a (B = 2) window batch whose vertices are the rest hand 0.4 m ahead."""
    from egopress_core.hand.hand_model import load_hand_model

    config = tiny_config()
    batch = make_window_batch(config, batch_size=2, seed=3)
    with torch.no_grad():
        rest = load_hand_model("right").rest().vertices[0]
    batch["vertices"] = (rest - rest.mean(0) + torch.tensor([0.0, 0.0, 0.4])).expand(2, config.num_frames, -1, 3).clone()
    return config, batch


def test_uv_geometry_builder_matches_the_function_on_a_window_batch():
    from egopress_core.conditioning import UVGeometryBuilder
    from egopress_core.data.sources import hand_uv_mask

    config, batch = _window_batch_with_the_hand_in_view()
    atlas = hand_uv_mask(tuple(config.uv_size), "right").model_atlas()
    builder = UVGeometryBuilder.from_atlas(atlas, depth_clip_m=0.1)
    geometry = builder(batch)
    assert geometry.shape == (2, config.num_frames, UV_GEOMETRY_CHANNELS, *config.uv_size)
    expected = uv_geometry_from_mesh(batch["vertices"], torch.tensor(atlas.faces.tolist()),
                                     torch.tensor(atlas.texel_face.tolist()),
                                     torch.tensor(atlas.texel_barycentric.tolist()),
                                     batch["rgb"], batch["depth_m"], batch["intrinsics"], depth_clip_m=0.1)
    assert torch.equal(geometry, expected)
    assert geometry[:, :, 4].sum() > 0  # the hand is in view
    import pickle

    assert torch.equal(pickle.loads(pickle.dumps(builder))(batch), geometry)  # DataLoader workers


def test_uv_geometry_without_depth_reads_no_depth():
    """A model without depth (use_depth=False) gets UV geometry with no depth evidence: no
    residual, no occlusion, no surface plane, whatever the depth map holds or whether it is there."""
    from egopress_core.conditioning import UVGeometryBuilder
    from egopress_core.data.sources import hand_uv_mask

    config, batch = _window_batch_with_the_hand_in_view()
    # A flat surface just behind the hand, and an occluder over the top rows: both are depth evidence.
    depth = torch.full_like(batch["depth_m"], 0.42)
    depth[..., : depth.shape[-2] // 3, :] = 0.2
    batch["depth_m"] = depth
    atlas = hand_uv_mask(tuple(config.uv_size), "right").model_atlas()
    with_depth = UVGeometryBuilder.from_atlas(atlas, depth_clip_m=0.1)(batch)
    builder = UVGeometryBuilder.from_atlas(atlas, depth_clip_m=0.1, use_depth=False)
    without = builder(batch)
    on_hand = torch.as_tensor(atlas.texel_face >= 0)

    assert torch.equal(without[:, :, 3], torch.zeros_like(without[:, :, 3]))  # no depth residual
    assert torch.equal(without[:, :, 5], on_hand.float().expand_as(without[:, :, 5]))  # no plane: 1 on the hand
    assert without[:, :, 4].sum() > with_depth[:, :, 4].sum()  # the occluder no longer hides texels
    assert not torch.equal(with_depth[:, :, 3], without[:, :, 3])  # the depth map did carry evidence
    no_depth_batch = {key: value for key, value in batch.items() if key != "depth_m"}
    assert torch.equal(builder(no_depth_batch), without)
    with pytest.raises(DataError, match="depth_m"):
        UVGeometryBuilder.from_atlas(atlas, depth_clip_m=0.1)(no_depth_batch)
    with pytest.raises(ConfigError, match="use_depth must be a bool"):
        UVGeometryBuilder.from_atlas(atlas, depth_clip_m=0.1, use_depth=0)


def test_uv_geometry_builder_for_a_model_config_follows_its_switches():
    from egopress_core.conditioning import UVGeometryBuilder
    from egopress_core.data.sources import hand_uv_mask
    from egopress_core.model.bin_classifier import BinClassifierConfig

    config = tiny_config()
    atlas = hand_uv_mask(tuple(config.uv_size), "right").model_atlas()
    assert UVGeometryBuilder.for_model(atlas, config) is None
    builder = UVGeometryBuilder.for_model(atlas, config.replace(use_uv_geometry=True))
    assert builder.use_depth and builder.depth_clip_m == config.depth_clip_m
    assert not UVGeometryBuilder.for_model(atlas, config.replace(use_uv_geometry=True, use_depth=False)).use_depth
    assert UVGeometryBuilder.for_model(atlas, BinClassifierConfig(use_uv_geometry=True)).use_depth


def test_surface_height_tells_contact_frames_on_generated_data(synthetic):
    """On the generator's pressing and hovering hands (annotated meshes), "some texel at or below
    the fitted pad plane" agrees with "the ground truth has contact" on nearly every frame."""
    from egopress_core.conditioning import UVGeometryBuilder
    from egopress_core.data.sources import open_data_source, resolve_hand_uv_mask
    from egopress_core.data.windows import ClipWindowDataset, WindowConfig
    from egopress_core.model.config import preset_config

    config = preset_config("compact")
    sequences = open_data_source(synthetic).sequences()
    mask = resolve_hand_uv_mask(sequences, tuple(config.uv_size), None, None)
    builder = UVGeometryBuilder.from_atlas(mask.model_atlas(), config.depth_clip_m)
    on_hand = builder.texel_face.flatten() >= 0
    agree = frames = contact_frames = 0
    for sequence in sequences:
        # The whole sequence as one window, preprocessed as in training (and by the pipeline).
        window = WindowConfig(window=len(sequence), stride=len(sequence), image_size=tuple(config.image_size),
                              uv_size=tuple(config.uv_size), skip_invalid=False, min_valid_frames=0)
        batch = {key: value[None] for key, value in ClipWindowDataset([sequence], window)[0].items()
                 if isinstance(value, torch.Tensor)}
        batch["uv_geometry"] = builder(batch)
        lowest = batch["uv_geometry"][0, :, 5].flatten(1)[:, on_hand].min(dim=1).values
        contact = batch["uv_pressure_kpa"][0, :, 0].flatten(1).amax(dim=1) > 1.0
        agree += int(((lowest <= 0) == contact).sum())
        frames += len(contact)
        contact_frames += int(contact.sum())
    assert 0 < contact_frames < frames  # both kinds of frame are there to tell apart
    assert agree / frames >= 0.85
