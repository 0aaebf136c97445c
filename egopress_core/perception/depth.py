"""From an aligned depth image to 3D: lifting 2D keypoints, and the hand's point cloud.

Depth is metres along the optical axis (the z of the camera frame), 0 where the sensor has no
reading; pixels follow OpenCV (integer coordinates at pixel centres).

Keypoint lifting (:func:`lift_keypoints`) reads a foreground-biased robust depth in a small
window around each keypoint: holes are skipped, and of the remaining readings only those within
``foreground_band_m`` of the window's nearest readings count, so a fingertip keypoint on the
silhouette reads the finger, not the table behind it. The depth is that of the skin the camera
sees, while the model's joints lie inside the hand, so each keypoint is pushed back along its
ray by a per-joint surface offset (:func:`joint_surface_offsets` measures it on the hand model).
Readings further than ``max_depth_spread_m`` (a hand's extent) from the median reading belong to
something else (an object between camera and hand, background through a gap) and are dropped.
Keypoints without a usable reading take their depth from given relative depths (e.g. MediaPipe's
metric world landmarks) anchored to the keypoints that have one. The readings are otherwise
trusted over the relative depths: on the renders tested here MediaPipe's world-landmark depths
were off by 3-8 cm where the sensor's were within 6 mm, and an occluder closer than the spread
limit is left to the fit's robust kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from egopress_core.errors import DataError
from egopress_core.perception.types import NUM_KEYPOINTS, validate_intrinsics

SOURCE_DEPTH = 0  # depth image reading at the keypoint
SOURCE_RELATIVE = 1  # relative depth anchored to the keypoints with readings
SOURCE_MISSING = -1  # no depth: the keypoint is NaN


@dataclass(frozen=True)
class LiftedKeypoints:
    """Keypoints lifted to the camera frame.

    Attributes:
        points_3d: (21, 3) metres, camera frame; NaN rows where ``source`` is SOURCE_MISSING.
        source: (21,) int8, SOURCE_DEPTH / SOURCE_RELATIVE / SOURCE_MISSING per keypoint.
        surface_depth_m: (21,) depth read from the image (NaN where none was usable).
    """

    points_3d: np.ndarray
    source: np.ndarray
    surface_depth_m: np.ndarray

    @property
    def num_from_depth(self) -> int:
        return int((self.source == SOURCE_DEPTH).sum())

    @property
    def valid(self) -> np.ndarray:
        """(21,) bool: keypoints with a 3D position."""
        return self.source != SOURCE_MISSING


def _check_depth(depth_m) -> np.ndarray:
    if not isinstance(depth_m, np.ndarray) or depth_m.ndim != 2 or not np.issubdtype(depth_m.dtype, np.floating):
        shape = getattr(depth_m, "shape", None)
        raise DataError(f"depth_m must be an (H, W) floating-point array in metres; got {type(depth_m).__name__} {shape}")
    return depth_m


def _check_points_2d(points_2d, name: str = "points_2d") -> np.ndarray:
    points = np.asarray(points_2d, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise DataError(f"{name} must have shape (N, 2) pixels; got {tuple(points.shape)}")
    if np.isinf(points).any():
        raise DataError(f"{name} hold infinite values (use NaN for a missing keypoint)")
    return points


def pixel_rays(points_2d: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(N, 3) rays ``K^-1 [u, v, 1]`` (z = 1) of (N, 2) pixels."""
    homogeneous = np.concatenate([points_2d, np.ones((len(points_2d), 1))], axis=1)
    return homogeneous @ np.linalg.inv(intrinsics).T


def sample_depth(depth_m: np.ndarray, points_2d: np.ndarray, window_radius_px: int = 3, foreground_band_m: float = 0.015) -> np.ndarray:
    """(N,) robust depth around each of (N, 2) pixels, NaN where the window has no reading.

    The window is ``(2 r + 1)^2`` pixels, clipped to the image. Readings <= 0 or non-finite are
    holes. Of the others, those within ``foreground_band_m`` of the window's 10th-percentile
    reading are kept (the surface in front, not the background at a silhouette) and their median
    is returned. Keypoints outside the image or NaN give NaN.
    """
    depth_m = _check_depth(depth_m)
    points_2d = _check_points_2d(points_2d)
    if not isinstance(window_radius_px, (int, np.integer)) or window_radius_px < 0:
        raise DataError(f"window_radius_px must be a non-negative integer; got {window_radius_px!r}")
    height, width = depth_m.shape
    result = np.full(len(points_2d), np.nan)
    finite = np.isfinite(points_2d).all(axis=1)
    # Python's round() and np.rint both round halves to even: the pixel each point falls in.
    columns = np.rint(np.where(finite, points_2d[:, 0], -1.0)).astype(np.int64)
    rows = np.rint(np.where(finite, points_2d[:, 1], -1.0)).astype(np.int64)
    inside = finite & (columns >= 0) & (columns < width) & (rows >= 0) & (rows < height)
    if not inside.any():
        return result
    # All windows at once, (N, (2 r + 1)^2): pixels outside the image count as holes.
    steps = np.arange(-window_radius_px, window_radius_px + 1)
    window_rows = (rows[inside, None, None] + steps[None, :, None]).repeat(len(steps), axis=2).reshape(int(inside.sum()), -1)
    window_columns = (columns[inside, None, None] + steps[None, None, :]).repeat(len(steps), axis=1).reshape(int(inside.sum()), -1)
    in_image = (window_rows >= 0) & (window_rows < height) & (window_columns >= 0) & (window_columns < width)
    readings = depth_m[np.clip(window_rows, 0, height - 1), np.clip(window_columns, 0, width - 1)].astype(np.float64)
    readings[~in_image | ~np.isfinite(readings) | (readings <= 0)] = np.nan
    found = np.isfinite(readings).any(axis=1)
    if not found.any():
        return result
    # Sorted, the holes (NaN) go last: the 10th percentile (linear interpolation, as
    # np.percentile) and the median of the readings up to front + band, which are a prefix.
    ordered = np.sort(readings[found], axis=1)
    count = np.isfinite(ordered).sum(axis=1)
    position = 0.1 * (count - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, count - 1)
    pick = lambda index: np.take_along_axis(ordered, index[:, None], axis=1)[:, 0]  # noqa: E731
    front = pick(low) + (pick(high) - pick(low)) * (position - low)
    kept = (ordered <= (front + foreground_band_m)[:, None]).sum(axis=1)
    result[np.flatnonzero(inside)[found]] = 0.5 * (pick((kept - 1) // 2) + pick(kept // 2))
    return result


def lift_keypoints(
    points_2d,
    depth_m: np.ndarray,
    intrinsics,
    relative_depth_m=None,
    surface_offset_m=None,
    window_radius_px: int = 3,
    foreground_band_m: float = 0.015,
    max_depth_spread_m: float = 0.15,
) -> LiftedKeypoints:
    """Lifts 21 pixel keypoints to metric 3D with an aligned depth image.

    Args:
        points_2d: (21, 2) pixels; NaN rows are missing keypoints.
        depth_m: (H, W) metres aligned to the image of ``points_2d``, 0 = hole.
        intrinsics: (3, 3) pinhole matrix.
        relative_depth_m: (21,) depth of each keypoint's joint relative to the others (any
            common offset), metres, or None; fills the keypoints without a usable reading.
        surface_offset_m: (21,) distance from the visible skin to each joint along the viewing
            ray (see :func:`joint_surface_offsets`), or None for 0.
        window_radius_px, foreground_band_m: see :func:`sample_depth`.
        max_depth_spread_m: readings further than this from the median reading are dropped.

    Returns:
        :class:`LiftedKeypoints`.
    """
    points_2d = _check_points_2d(points_2d)
    if points_2d.shape != (NUM_KEYPOINTS, 2):
        raise DataError(f"points_2d must have shape (21, 2); got {tuple(points_2d.shape)}")
    intrinsics = validate_intrinsics(intrinsics)
    depth_m = _check_depth(depth_m)
    offsets = np.zeros(NUM_KEYPOINTS)
    if surface_offset_m is not None:
        offsets = np.asarray(surface_offset_m, dtype=np.float64)
        if offsets.shape != (NUM_KEYPOINTS,) or not np.all(np.isfinite(offsets)):
            raise DataError(f"surface_offset_m must be 21 finite numbers; got shape {offsets.shape}")
    relative = None
    if relative_depth_m is not None:
        relative = np.asarray(relative_depth_m, dtype=np.float64)
        if relative.shape != (NUM_KEYPOINTS,) or not np.all(np.isfinite(relative)):
            raise DataError(f"relative_depth_m must be 21 finite numbers; got shape {relative.shape}")

    surface = sample_depth(depth_m, points_2d, window_radius_px, foreground_band_m)
    located = np.isfinite(points_2d).all(axis=1)
    surface[~located] = np.nan
    if np.isfinite(surface).any():
        spread = np.abs(surface - np.nanmedian(surface))
        surface[np.nan_to_num(spread, nan=0.0) > max_depth_spread_m] = np.nan
    rays = pixel_rays(np.nan_to_num(points_2d), intrinsics)
    # Joint depth along the optical axis: the surface point pushed back along its ray.
    joint_depth = surface + offsets / np.linalg.norm(rays, axis=1)
    source = np.where(np.isfinite(joint_depth), SOURCE_DEPTH, SOURCE_MISSING).astype(np.int8)

    fill = located & (source == SOURCE_MISSING)
    if relative is not None and fill.any() and (source == SOURCE_DEPTH).any():
        from_depth = source == SOURCE_DEPTH
        anchor = np.median(joint_depth[from_depth] - relative[from_depth])
        joint_depth = np.where(fill, anchor + relative, joint_depth)
        source[fill] = SOURCE_RELATIVE

    points = np.full((NUM_KEYPOINTS, 3), np.nan)
    valid = source != SOURCE_MISSING
    points[valid] = joint_depth[valid, None] * rays[valid]
    return LiftedKeypoints(points_3d=points, source=source, surface_depth_m=surface)


def joint_surface_offsets(hand) -> np.ndarray:
    """(21,) how deep each joint of a hand model lies under the skin, metres, OpenPose order.

    An egocentric camera sees the palm or the back of the hand, so a joint's offset is the mean
    distance from the rest joint to the skin along the palm normal and against it (ray cast on
    the rest mesh with open3d): half the local thickness of the finger, palm or wrist.
    Fingertips are surface vertices of the model and the depth at a fingertip keypoint hits the
    pad next to it, so they get half their DIP's offset.
    """
    import open3d as o3d

    with torch.no_grad():
        rest = hand.rest()
    joints = rest.joints[0].cpu().double().numpy()
    vertices = rest.vertices[0].cpu().double().numpy()
    normal = np.cross(joints[5] - joints[0], joints[17] - joints[0])  # index MCP x little MCP
    normal = normal / np.linalg.norm(normal) * (1.0 if hand.is_right else -1.0)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(np.asarray(hand.faces, dtype=np.uint32)))
    rays = np.concatenate(
        [np.concatenate([joints, np.broadcast_to(normal, joints.shape)], 1), np.concatenate([joints, np.broadcast_to(-normal, joints.shape)], 1)]
    )
    hits = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy().reshape(2, NUM_KEYPOINTS)
    nearest, _ = cKDTree(vertices).query(joints)
    # A ray that leaves through a gap of the mesh (none in a closed model) falls back to the
    # nearest-vertex distance.
    hits = np.where(np.isfinite(hits), hits, nearest[None])
    offsets = hits.mean(axis=0)
    for tip in (4, 8, 12, 16, 20):
        offsets[tip] = 0.5 * offsets[tip - 1]
    return offsets


def hand_point_cloud(
    depth_m: np.ndarray,
    intrinsics,
    anchor_points: np.ndarray,
    radius_m: float = 0.02,
    voxel_m: float = 0.004,
    max_points: int = 1500,
    seed: int = 0,
) -> np.ndarray:
    """(N, 3) depth points (metres, camera frame) of the hand: pixels inside the image box of
    ``anchor_points`` (e.g. the current hand fit's vertices, (M, 3)) whose back-projected point
    lies within ``radius_m`` of an anchor point, voxel-downsampled (open3d) and capped at
    ``max_points`` (seeded random subset). Empty (0, 3) if nothing is near."""
    depth_m = _check_depth(depth_m)
    intrinsics = validate_intrinsics(intrinsics)
    anchors = np.asarray(anchor_points, dtype=np.float64)
    if anchors.ndim != 2 or anchors.shape[1] != 3 or not np.all(np.isfinite(anchors)) or len(anchors) == 0:
        raise DataError(f"anchor_points must be a finite non-empty (M, 3) array; got shape {anchors.shape}")
    in_front = anchors[anchors[:, 2] > 1e-3]
    if len(in_front) == 0:
        return np.zeros((0, 3))
    projected = in_front @ intrinsics.T
    pixels = projected[:, :2] / projected[:, 2:]
    height, width = depth_m.shape
    margin = radius_m * intrinsics[0, 0] / in_front[:, 2].min()
    low = np.floor(pixels.min(axis=0) - margin).astype(int)
    high = np.ceil(pixels.max(axis=0) + margin).astype(int)
    u0, v0 = max(low[0], 0), max(low[1], 0)
    u1, v1 = min(high[0] + 1, width), min(high[1] + 1, height)
    if u0 >= u1 or v0 >= v1:
        return np.zeros((0, 3))
    window = depth_m[v0:v1, u0:u1]
    rows, columns = np.nonzero(np.isfinite(window) & (window > 0))
    if len(rows) == 0:
        return np.zeros((0, 3))
    z = window[rows, columns].astype(np.float64)
    rays = pixel_rays(np.stack([columns + u0, rows + v0], axis=1).astype(np.float64), intrinsics)
    points = rays * z[:, None]
    near, _ = cKDTree(anchors).query(points, distance_upper_bound=radius_m)
    points = points[np.isfinite(near)]
    if len(points) == 0:
        return np.zeros((0, 3))
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    points = np.asarray(cloud.voxel_down_sample(voxel_m).points)
    if len(points) > max_points:
        points = points[np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))]
    return points
