"""Hand model (smplx MANO path) and the bundled MANO-format hand."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from egopress_core.errors import ConfigError, DataError
from egopress_core.hand.hand_model import (
    BUNDLED_HAND_DIR,
    BUNDLED_MODEL_FILES,
    FINGERS,
    OPENPOSE_JOINT_NAMES,
    HandModel,
    HandModelConfig,
    load_hand_model,
)
from egopress_core.hand.mano_io import REQUIRED_KEYS, load_mano_pickle, write_mano_pickle
from egopress_core.hand.template_mesh import SHAPE_NAMES, SHAPE_STD, check_closed_manifold, signed_volume

MIRROR = torch.tensor([-1.0, 1.0, 1.0])
AXIS_ANGLE_MIRROR = torch.tensor([1.0, -1.0, -1.0])
TIP_ROWS = {"thumb": 4, "index": 8, "middle": 12, "ring": 16, "little": 20}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    # Tiny matmuls on a busy 2-core machine are dominated by thread hand-off; one thread is faster.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def hands():
    return {side: load_hand_model(side) for side in ("right", "left")}


def random_params(batch: int, seed: int = 0, pose_scale: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 3, generator=g) * 0.6,
        torch.randn(batch, 45, generator=g) * pose_scale,
        torch.randn(batch, 10, generator=g),
        torch.randn(batch, 3, generator=g) * 0.2,
    )


def mirror_params(global_orient, hand_pose, betas, transl):
    batch = global_orient.shape[0]
    return (
        global_orient * AXIS_ANGLE_MIRROR,
        (hand_pose.view(batch, 15, 3) * AXIS_ANGLE_MIRROR).view(batch, 45),
        betas,
        transl * MIRROR,
    )


def fk(hand: HandModel, pose: np.ndarray, betas: np.ndarray | None = None):
    zeros = torch.zeros(1, 3)
    betas_t = torch.zeros(1, 10) if betas is None else torch.tensor(betas, dtype=torch.float32)[None]
    with torch.no_grad():
        return hand(zeros, torch.tensor(pose, dtype=torch.float32)[None], betas_t, zeros)


# ---- forward kinematics -----------------------------------------------------------------------


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("batch", [1, 3])
def test_forward_shapes(hands, side, batch):
    hand = hands[side]
    out = hand(*random_params(batch))
    assert out.vertices.shape == (batch, hand.num_vertices, 3)
    assert out.joints.shape == (batch, 21, 3)
    assert out.vertices.dtype == torch.float32
    assert torch.isfinite(out.vertices).all()
    assert hand.faces.shape == (hand.num_faces, 3) and hand.faces.max() == hand.num_vertices - 1
    assert 700 <= hand.num_vertices <= 1500
    assert len(OPENPOSE_JOINT_NAMES) == 21


def test_identity_properties(hands):
    right, left = hands["right"], hands["left"]
    assert right.name == left.name == "egopress_hand_v1"
    assert right.side == "right" and left.side == "left"
    assert re.fullmatch(r"egopress_hand_v1:\d+v:[0-9a-f]{12}", right.topology_id)
    assert right.topology_id.split(":")[1] == f"{right.num_vertices}v"
    # Reversed winding makes the left hand's face array (and so its id) differ.
    assert right.topology_id != left.topology_id
    assert right.uv_obj_path.is_file() and right.uv_layout_name == "egopress_hand_v1_uv"


def test_batched_equals_single(hands):
    hand = hands["right"]
    params = random_params(3, seed=4)
    batched = hand(*params)
    for b in range(3):
        single = hand(*(p[b : b + 1] for p in params))
        torch.testing.assert_close(single.vertices[0], batched.vertices[b], atol=1e-6, rtol=0)


def test_gradients_flow(hands):
    params = [p.clone().requires_grad_(True) for p in random_params(2, seed=5)]
    hands["right"](*params).joints.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("flat_hand_mean", [True, False])
def test_left_is_the_mirror_of_right(flat_hand_mean):
    right = load_hand_model("right", flat_hand_mean=flat_hand_mean)
    left = load_hand_model("left", flat_hand_mean=flat_hand_mean)
    params = random_params(3, seed=1, pose_scale=0.6)
    out_right = right(*params)
    out_left = left(*mirror_params(*params))
    torch.testing.assert_close(out_left.vertices, out_right.vertices * MIRROR, atol=2e-6, rtol=0)
    torch.testing.assert_close(out_left.joints, out_right.joints * MIRROR, atol=2e-6, rtol=0)


def test_fingertip_joints_are_the_tip_vertices(hands):
    for hand in hands.values():
        out = hand(*random_params(2, seed=2))
        for finger in FINGERS:
            torch.testing.assert_close(out.joints[:, TIP_ROWS[finger]], out.vertices[:, hand.tip_vertex_ids[finger]])
        # Each tip is its finger's extreme point along the last bone in the rest pose.
        rest = hand.rest()
        for finger in FINGERS:
            row = TIP_ROWS[finger]
            last_joint = rest.joints[0, row - 1]
            direction = rest.joints[0, row] - last_joint
            offset = rest.vertices[0] - last_joint
            along = offset @ direction / direction.norm()
            across = torch.linalg.norm(offset - along[:, None] * direction / direction.norm(), dim=1)
            reach = torch.where(across < 0.012, along, -torch.inf)  # vertices of this finger's tube
            assert torch.argmax(reach).item() == hand.tip_vertex_ids[finger]


def test_joints_lie_inside_or_on_the_mesh(hands):
    import open3d as o3d

    hand = hands["right"]
    out = hand(*random_params(2, seed=3, pose_scale=0.3))
    for b in range(2):
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(
            o3d.core.Tensor(out.vertices[b].detach().numpy()), o3d.core.Tensor(hand.faces.astype(np.uint32))
        )
        distance = scene.compute_signed_distance(o3d.core.Tensor(out.joints[b].detach().numpy())).numpy()
        inner = np.delete(distance, list(TIP_ROWS.values()))
        # MANO joints sit inside the skin (negative), at most ~2 cm deep (wrist, thumb CMC).
        assert np.all(inner < 1e-4), inner
        assert np.all(inner > -0.025), inner
        assert np.abs(distance[list(TIP_ROWS.values())]).max() < 1e-5


def test_joint_order_is_openpose(hands):
    joints = hands["right"].rest().joints[0].numpy()
    wrist = joints[0]
    # Each finger's chain runs away from the wrist.
    for finger, tip in TIP_ROWS.items():
        distances = np.linalg.norm(joints[tip - 3 : tip + 1] - wrist, axis=1)
        assert np.all(np.diff(distances) > 0), finger
    # Right hand, palm facing -y, fingers -x: thumb side is +z, little finger side -z.
    mcp_z = [joints[row - 3, 2] for row in (8, 12, 16, 20)]
    assert np.all(np.diff(mcp_z) < 0)
    assert joints[2, 2] > joints[5, 2]
    assert np.allclose(wrist, 0.0, atol=1e-6)


# ---- blend shapes -----------------------------------------------------------------------------


def fist_pose(hand):
    from egopress_core.hand.poses import joint_axes, pose_from_angles

    joints16 = hand.rest().joints[0].numpy()[[0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3]]
    axes = joint_axes(joints16, np.array([0.0, -1.0, 0.0]))
    curled = {finger: (1.45, 1.65, 1.0) for finger in ("index", "middle", "ring", "little")}
    return pose_from_angles(axes, curled)


def test_pose_blend_shapes_correct_the_posed_mesh(hands):
    hand = hands["right"]
    pose = fist_pose(hand)
    with_correctives = fk(hand, pose).vertices[0].numpy().astype(np.float64)
    saved = hand.mano.posedirs.clone()
    try:
        hand.mano.posedirs.zero_()
        plain_lbs = fk(hand, pose).vertices[0].numpy().astype(np.float64)
        rest_without = fk(hand, np.zeros(45)).vertices[0].numpy()
    finally:
        hand.mano.posedirs.copy_(saved)
    rest_with = fk(hand, np.zeros(45)).vertices[0].numpy()
    # No correction at rest; several millimetres at the bent knuckles of a fist.
    assert np.abs(rest_with - rest_without).max() < 1e-7
    offset = np.linalg.norm(with_correctives - plain_lbs, axis=1)
    assert offset.max() > 0.002
    # The correctives counter LBS's volume loss at bent joints.
    rest_volume = signed_volume(hand.template_vertices, hand.faces)
    lbs_loss = rest_volume - signed_volume(plain_lbs, hand.faces)
    corrected_loss = rest_volume - signed_volume(with_correctives, hand.faces)
    assert lbs_loss > 0
    assert abs(corrected_loss) < 0.6 * lbs_loss


def test_shape_parameters_change_size_plausibly(hands):
    hand = hands["right"]
    base = fk(hand, np.zeros(45))

    def measure(out):
        joints = out.joints[0].numpy()
        return {
            "hand_length": np.linalg.norm(joints[12] - joints[0]),  # wrist -> middle tip
            "palm_width": np.linalg.norm(joints[5] - joints[17]),  # index MCP <-> little MCP
            "middle_finger": np.linalg.norm(joints[12] - joints[9]),
            "palm_length": np.linalg.norm(joints[9] - joints[0]),
        }

    reference = measure(base)
    assert 0.17 < reference["hand_length"] < 0.21  # adult hand, metres

    def relative_change(name, value=1.0):
        betas = np.zeros(10)
        betas[SHAPE_NAMES.index(name)] = value
        changed = measure(fk(hand, np.zeros(45), betas))
        return {key: changed[key] / reference[key] - 1 for key in reference}

    scale = relative_change("scale")
    for key, change in scale.items():
        assert change == pytest.approx(SHAPE_STD["scale"], abs=0.005), key
    fingers = relative_change("finger_length")
    assert fingers["middle_finger"] == pytest.approx(SHAPE_STD["finger_length"], abs=0.005)
    assert abs(fingers["palm_width"]) < 0.002 and abs(fingers["palm_length"]) < 0.002
    width = relative_change("palm_width")
    assert width["palm_width"] == pytest.approx(SHAPE_STD["palm_width"], abs=0.01)
    assert abs(width["middle_finger"]) < 0.002
    # Three standard deviations either way still give a valid, plausible hand.
    for sign in (-3.0, 3.0):
        betas = np.full(10, sign)
        out = fk(hand, np.zeros(45), betas)
        assert signed_volume(out.vertices[0].numpy().astype(np.float64), hand.faces) > 0
        assert 0.12 < measure(out)["hand_length"] < 0.27


# ---- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argument, bad, message",
    [
        ("global_orient", torch.zeros(2, 4), "global_orient must have shape (B, 3)"),
        ("hand_pose", torch.zeros(2, 48), "hand_pose must have shape (B, 45)"),
        ("betas", torch.zeros(2, 16), "betas must have shape (B, 10)"),
        ("transl", torch.zeros(3, 3), "transl has batch size 3"),
        ("hand_pose", torch.zeros(2, 45, dtype=torch.long), "hand_pose must be a floating-point tensor"),
        ("betas", [[0.0] * 10] * 2, "betas must be a torch.Tensor"),
    ],
)
def test_forward_rejects_bad_inputs(hands, argument, bad, message):
    params = dict(zip(("global_orient", "hand_pose", "betas", "transl"), random_params(2)))
    params[argument] = bad
    with pytest.raises(DataError, match=re.escape(message)):
        hands["right"](**params)


def bundled_data(side: str = "right") -> dict:
    data, was_chumpy = load_mano_pickle(BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES[side])
    assert not was_chumpy
    return data


@pytest.mark.parametrize("key", ["posedirs", "J_regressor", "hands_mean"])
def test_missing_key_names_key_and_file(tmp_path, key):
    data = bundled_data()
    del data[key]
    path = tmp_path / "MANO_BROKEN_RIGHT.pkl"
    write_mano_pickle(path, data)
    with pytest.raises(DataError, match=rf"MANO_BROKEN_RIGHT\.pkl: MANO model is missing key '{key}'"):
        HandModel(path, "right")


def test_inconsistent_arrays_are_rejected(tmp_path):
    data = bundled_data()
    data["weights"] = data["weights"][:, :15]
    path = tmp_path / "MANO_BAD_RIGHT.pkl"
    write_mano_pickle(path, data)
    with pytest.raises(DataError, match=r"'weights' has shape \(\d+, 15\), expected"):
        HandModel(path, "right")


def test_unknown_topology_needs_a_sidecar(tmp_path):
    path = tmp_path / "MANO_RIGHT.pkl"
    write_mano_pickle(path, bundled_data())
    with pytest.raises(DataError, match="not official MANO's 778.*tip_vertex_ids"):
        HandModel(path, "right")
    sidecar = json.loads((BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES["right"]).with_suffix(".json").read_text())
    sidecar["tip_vertex_ids"]["ring"] = 10**6
    del sidecar["uv_obj"]
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(DataError, match="ring = 1000000 is not a vertex index"):
        HandModel(path, "right")


def test_side_must_match_the_model(tmp_path):
    with pytest.raises(DataError, match="is a right hand model; the config asks for side='left'"):
        HandModel(BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES["right"], "left")


def test_uv_obj_must_match_the_model(tmp_path, hands):
    wrong = tmp_path / "wrong.obj"
    wrong.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/1\n")
    with pytest.raises(DataError, match="has 3 vertices"):
        load_hand_model("right", uv_obj_path=wrong)
    # The other side's OBJ has the same triangles (mirrored winding): accepted.
    left_obj = hands["left"].uv_obj_path
    assert load_hand_model("right", uv_obj_path=left_obj).uv_obj_path == left_obj


def test_config_validation():
    with pytest.raises(ConfigError, match="must be one of \\('right', 'left'\\). Got 'middle'"):
        HandModelConfig(side="middle")
    with pytest.raises(ConfigError, match="uv_obj_path must be a path to an .obj"):
        HandModelConfig(uv_obj_path="atlas.png")
    with pytest.raises(ConfigError, match="model_path must be a .pkl"):
        HandModelConfig(model_path="hand.npz")
    with pytest.raises(DataError, match="MANO model file not found"):
        HandModelConfig(model_path="/nonexistent/MANO_RIGHT.pkl").build()
    assert HandModelConfig(side="left").build().side == "left"


# ---- the bundled asset ------------------------------------------------------------------------


def test_bundled_pickle_is_plain_mano_format_for_smplx(hands):
    import smplx

    path = BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES["right"]
    with open(path, "rb") as handle:
        data = pickle.load(handle, encoding="latin1")  # plain pickle: no chumpy, no egopress classes
    for key in REQUIRED_KEYS:
        assert isinstance(data[key], np.ndarray), key
    assert data["kintree_table"][0, 1:].tolist() == [0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]
    components = data["hands_components"]
    np.testing.assert_allclose(components @ components.T, np.eye(45), atol=1e-8)
    # smplx's own loader, by file name like real MANO, gives the same hand.
    model = smplx.create(str(path), model_type="mano", use_pca=False, flat_hand_mean=True)
    params = random_params(2, seed=6)
    out = model(global_orient=params[0], hand_pose=params[1], betas=params[2], transl=params[3])
    torch.testing.assert_close(out.vertices, hands["right"](*params).vertices)


def test_bundled_mesh_is_closed_and_weights_are_smooth(hands):
    hand = hands["right"]
    check_closed_manifold(hand.faces)
    assert signed_volume(hand.template_vertices, hand.faces) > 0  # outward faces
    weights = hand.mano.lbs_weights.numpy()
    assert np.all(weights >= 0) and np.allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    edges = np.concatenate([hand.faces[:, [0, 1]], hand.faces[:, [1, 2]], hand.faces[:, [2, 0]]])
    jump = np.abs(weights[edges[:, 0]] - weights[edges[:, 1]]).max()
    assert jump < 0.5
    # Every joint moves some skin, and no vertex follows more than four joints.
    assert np.all(weights.max(axis=0) > 0.5)
    assert np.count_nonzero(weights, axis=1).max() <= 4


def read_obj(path: Path):
    vertices, uvs, faces, face_uv = [], [], [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            vertices.append([float(x) for x in line.split()[1:]])
        elif line.startswith("vt "):
            uvs.append([float(x) for x in line.split()[1:]])
        elif line.startswith("f "):
            corners = [c.split("/") for c in line.split()[1:]]
            faces.append([int(c[0]) - 1 for c in corners])
            face_uv.append([int(c[1]) - 1 for c in corners])
    return np.array(vertices), np.array(uvs), np.array(faces), np.array(face_uv)


def rasterize_uv_coverage(uvs: np.ndarray, face_uv: np.ndarray, resolution: int) -> np.ndarray:
    """(R, R) number of UV triangles covering each texel centre (row 0 at v = 1)."""
    count = np.zeros((resolution, resolution), dtype=np.int64)
    centres = (np.arange(resolution) + 0.5) / resolution
    for tri in uvs[face_uv]:
        lo = np.floor(tri.min(axis=0) * resolution).astype(int)
        hi = np.ceil(tri.max(axis=0) * resolution).astype(int)
        u, v = np.meshgrid(centres[lo[0] : hi[0]], centres[lo[1] : hi[1]])
        a, b, c = tri
        det = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        l1 = ((u - a[0]) * (c[1] - a[1]) - (v - a[1]) * (c[0] - a[0])) / det
        l2 = ((b[0] - a[0]) * (v - a[1]) - (b[1] - a[1]) * (u - a[0])) / det
        inside = (l1 > 1e-9) & (l2 > 1e-9) & (l1 + l2 < 1 - 1e-9)
        rows = resolution - 1 - np.arange(lo[1], hi[1])
        count[np.ix_(rows, np.arange(lo[0], hi[0]))] += inside
    return count


def test_uv_atlas_layout(hands):
    from egopress_core.hand.uv_unwrap import signed_uv_areas

    hand = hands["right"]
    vertices, uvs, faces, face_uv = read_obj(hand.uv_obj_path)
    np.testing.assert_allclose(vertices, hand.template_vertices, atol=1e-6)
    np.testing.assert_array_equal(faces, hand.faces)
    assert uvs.min() >= 0 and uvs.max() <= 1
    areas = signed_uv_areas(uvs, face_uv)
    assert np.all(areas > 0), "flipped or degenerate UV triangles"
    assert areas.sum() > 0.5  # most of the square is used
    coverage = rasterize_uv_coverage(uvs, face_uv, 448)
    assert coverage.max() == 1, "UV charts overlap"
    # Seam vertices carry one UV per chart; the 13 charts give far fewer UVs than corners.
    assert hand.num_vertices < len(uvs) < 1.4 * hand.num_vertices
    # Enough texels at 224 x 224 where pressure is: around every fingertip at least 50 texels
    # per cm^2 (texels of at most ~1.4 mm; palmar charts get 1.5x the dorsal density).
    sidecar = json.loads(hand.model_path.with_suffix(".json").read_text())
    chart_of_face = _chart_of_faces(uvs, face_uv)
    texels = rasterize_uv_coverage(uvs, face_uv, 224).sum()
    assert texels > 0.45 * 224 * 224
    corners = vertices[faces]
    face_area_cm2 = 0.5e4 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    for finger in FINGERS:
        tip = hand.tip_vertex_ids[finger]
        near_tip = np.linalg.norm(hand.template_vertices - hand.template_vertices[tip], axis=1) < 0.015
        pad_faces = np.where(near_tip[faces].all(axis=1))[0]
        pad_texels = rasterize_uv_coverage(uvs, face_uv[pad_faces], 224).sum()
        assert pad_texels / face_area_cm2[pad_faces].sum() > 50, finger
    assert len(set(chart_of_face)) == len(sidecar["uv_charts"]) == 13


def _chart_of_faces(uvs, face_uv):
    """Connected components of faces sharing UV indices."""
    import scipy.sparse
    import scipy.sparse.csgraph

    corners = face_uv.ravel()
    faces = np.repeat(np.arange(len(face_uv)), 3)
    incidence = scipy.sparse.coo_matrix((np.ones(len(corners)), (faces, corners)), shape=(len(face_uv), len(uvs)))
    graph = incidence @ incidence.T
    _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
    return labels


def test_generator_is_deterministic_and_matches_the_committed_asset(tmp_path):
    from egopress_core.hand.bundled_hand import write_bundled_hand

    written = write_bundled_hand(tmp_path)
    for side in ("right", "left"):
        committed, _ = load_mano_pickle(BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES[side])
        fresh, _ = load_mano_pickle(written[f"{side}_pkl"])
        assert sorted(committed) == sorted(fresh)
        for key, value in committed.items():
            if isinstance(value, np.ndarray):
                assert value.dtype == fresh[key].dtype, key
                np.testing.assert_allclose(fresh[key], value, rtol=1e-6, atol=1e-9, err_msg=key)
            else:
                assert fresh[key] == value, key
        committed_json = json.loads((BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES[side]).with_suffix(".json").read_text())
        assert json.loads(written[f"{side}_json"].read_text()) == committed_json
        committed_obj = read_obj(BUNDLED_HAND_DIR / committed_json["uv_obj"])
        fresh_obj = read_obj(written[f"{side}_obj"])
        for committed_part, fresh_part in zip(committed_obj, fresh_obj):
            np.testing.assert_allclose(fresh_part, committed_part, atol=2e-7)


def test_preview_render_orientation(hands):
    from egopress_core.hand.preview import Camera, render_mesh

    # The flat right hand seen from its back with the fingers up: the thumb sticks out on the
    # left, below the fingertips (an upside-down or mirrored render would break this).
    hand = hands["right"]
    vertices = hand.template_vertices
    center = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    camera = Camera(eye=center + np.array([0.0, 0.6, 0.0]), center=center, up=np.array([-1.0, 0.0, 0.0]))
    image = render_mesh(vertices, hand.faces, camera, (160, 160))
    rows, cols = np.where(np.any(image < 0.999, axis=2))
    middle = np.median(cols)
    assert middle - cols.min() > 1.3 * (cols.max() - middle)
    leftmost_row = rows[np.argmin(cols)]
    assert leftmost_row > rows.min() + 0.3 * (rows.max() - rows.min())
