"""Physics and geometry pieces of the synthetic generator, checked against closed forms."""

import numpy as np
import open3d as o3d
import pytest

from egopress_core.data.synthetic import contact
from egopress_core.data.synthetic.camera import AZIMUTH_DEG, look_at_camera_from_world, project, sample_camera_rig
from egopress_core.data.synthetic.generator import PAD_PITCH_M, pad_pressure_image, vertex_curvature_radius
from egopress_core.data.synthetic.profiles import hover_profile, press_profile


@pytest.mark.parametrize("radius, depth", [(0.008, 0.001), (0.008, 0.003), (0.03, 0.002)])
def test_local_hertz_integrates_to_hertz_sphere_force(radius, depth):
    # Integrate the local law over a sphere (Hertz's parabolic profile) pressed into the plane.
    r = np.linspace(0.0, np.sqrt(2 * radius * depth), 20001)
    sag = r**2 / (2 * radius)
    pressure_pa = contact.hertz_pressure_kpa(depth - sag, radius).astype(np.float64) * 1000.0
    force = np.trapezoid(pressure_pa * 2 * np.pi * r, r)
    assert force == pytest.approx(contact.hertz_sphere_force_n(radius, depth), rel=1e-3)


def test_no_pressure_without_penetration():
    pressure = contact.hertz_pressure_kpa(np.array([-0.01, -1e-6, 0.0, 1e-4]), 0.01)
    assert pressure[:3].tolist() == [0.0, 0.0, 0.0]
    assert pressure[3] > 0


def test_solve_push_depth_meets_target_and_is_monotone():
    radius = 0.008

    def force_of_push(push):
        return contact.hertz_sphere_force_n(radius, push)

    pushes = [contact.solve_push_depth(force_of_push, f) for f in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert pushes[0] == 0.0
    assert all(b > a for a, b in zip(pushes, pushes[1:]))
    assert force_of_push(pushes[2]) == pytest.approx(1.0, abs=2e-3)
    # unreachable targets saturate at the maximum push rather than looping
    assert contact.solve_push_depth(force_of_push, 1e6, max_push_m=0.01) == 0.01


def test_curvature_radius_of_a_sphere():
    sphere = o3d.geometry.TriangleMesh.create_sphere(radius=0.012, resolution=30)
    radius = vertex_curvature_radius(np.asarray(sphere.vertices), np.asarray(sphere.triangles))
    assert np.median(radius) == pytest.approx(0.012, rel=0.05)
    plane = o3d.geometry.TriangleMesh.create_box(0.2, 0.2, 0.001)
    flat = vertex_curvature_radius(np.asarray(plane.vertices), np.asarray(plane.triangles))
    assert flat.max() <= 0.06


def test_pad_image_conserves_force_inside_pad():
    rng = np.random.default_rng(0)
    points = rng.uniform([-0.05, -0.03], [0.05, 0.03], size=(500, 2))
    forces = rng.uniform(0.0, 0.01, size=500)
    image = pad_pressure_image(points, forces)
    assert image.shape == (105, 185)
    total = image.astype(np.float64).sum() * 1000.0 * PAD_PITCH_M**2
    assert total == pytest.approx(forces.sum(), rel=1e-5)
    # +y is the top row, +x the right column
    corner = pad_pressure_image(np.array([[0.1, 0.06]]), np.array([1.0]))
    row, col = np.unravel_index(np.argmax(corner), corner.shape)
    assert row < 10 and col > 165
    # outside the pad: not measured
    assert pad_pressure_image(np.array([[0.5, 0.0]]), np.array([1.0])).sum() == 0


def test_camera_looks_at_target_and_keeps_far_side_up():
    target = np.array([0.01, 0.02, 0.0])
    eye = np.array([0.0, -0.3, -0.3])
    pose = look_at_camera_from_world(eye, target, world_up=np.array([0.0, 1.0, 0.0]))
    assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(pose[:3, :3]) == pytest.approx(1.0)
    k = np.array([[200.0, 0, 128], [0, 200.0, 128], [0, 0, 1]])
    in_camera = pose[:3, :3] @ target + pose[:3, 3]
    assert project(in_camera, k) == pytest.approx([128, 128])
    far = pose[:3, :3] @ (target + [0, 0.05, 0]) + pose[:3, 3]
    assert project(far, k)[1] < 128  # the far side of the pad appears higher in the image


def test_camera_rig_sees_the_hand_for_every_frame():
    rng = np.random.default_rng(3)
    rig = sample_camera_rig(rng, np.array([0.0, 0.0, -0.03]), 40, (240, 320))
    for pose in rig.camera_from_world:
        point = pose[:3, :3] @ np.array([0.0, 0.0, -0.03]) + pose[:3, 3]
        u, v = project(point, rig.intrinsics)
        assert point[2] > 0.2 and 0 < u < 320 and 0 < v < 240


@pytest.mark.parametrize("heading", [-0.5, 0.0, 0.5])
@pytest.mark.parametrize("thumb_sign", [1.0, -1.0])
def test_camera_looks_from_behind_the_hand_from_its_thumb_side(heading, thumb_sign):
    # A head camera is behind the working hand and inside its arm: the hand points up the picture
    # and the camera stands on the thumb's side of the line the hand points along.
    centre = np.array([0.0, 0.0, -0.03])
    forward = np.array([-np.sin(heading), np.cos(heading), 0.0])  # HandPoser.world_orientation's yaw
    thumb = thumb_sign * np.array([np.cos(heading), np.sin(heading), 0.0])
    for seed in range(5):
        rig = sample_camera_rig(np.random.default_rng(seed), centre, 2, (480, 640), hand_heading=heading, thumb_side=thumb)
        pose = rig.camera_from_world[0]
        eye = -pose[:3, :3].T @ pose[:3, 3]
        level = (eye - centre)[:2] / np.linalg.norm((eye - centre)[:2])
        turn = np.degrees(np.arccos(np.clip(np.dot(level, -forward[:2]), -1, 1)))
        assert AZIMUTH_DEG[0] - 1 < turn < AZIMUTH_DEG[1] + 1
        assert np.dot(level, thumb[:2]) > 0
        base, tip = (project(pose[:3, :3] @ p + pose[:3, 3], rig.intrinsics) for p in (centre, centre + 0.08 * forward))
        up = np.degrees(np.arctan2(abs(tip[0] - base[0]), base[1] - tip[1]))
        assert up < 60, up  # up the picture, not across it


def test_force_profiles():
    rng = np.random.default_rng(0)
    press = press_profile(rng, 64, peak_force_n=3.0)
    assert press.force_n[0] == 0 and press.force_n[-1] == 0 and press.force_n.max() > 1.0
    assert (press.gap_m > 0).all()
    hover = hover_profile(rng, 64)
    assert (hover.force_n == 0).all() and (hover.gap_m >= 0.004).all()
