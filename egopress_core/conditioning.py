"""Sensor window -> EgoPressDiff conditions (sensors -> hand -> conditioning -> model).

A window batch (from the clip-window data set, the live node or the rosbag labeller) is a dict of
tensors:

- ``rgb`` (B, T, 3, H, W) float in [0, 1];
- ``depth_m`` (B, T, 1, H, W) metres aligned to ``rgb``, 0 where the sensor has no reading;
- ``intrinsics`` (B, T, 3, 3) pinhole K of the (resized) colour image;
- ``joints`` (B, T, 21, 3) metres, camera frame, OpenPose hand order;
- ``vertices`` (B, T, V, 3) metres, camera frame, any topology;
- ``valid`` (B, T) bool: frames with a hand annotation (joints, vertices, pressure);
- ``uv_mask`` (B, 1, Hu, Wu) or (1, Hu, Wu) or (Hu, Wu): texels that lie on the hand;
- ``uv_pressure_kpa`` (B, T, 1, Hu, Wu) kPa, the training target (not a condition);
- optional ``uv_geometry`` (B, T, 6, Hu, Wu), see :func:`uv_geometry_from_mesh`.

This module turns that into an :class:`EgoPressConditions`: RGB for the image encoder, depth
normalised around the hand, rendered 2D skeleton maps for PoseNet, vertices for the Vertex
Encoder; and maps pressure in kPa to the model's [-1, 1] space and back
(:class:`PressureNormalizer`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from egopress_core.errors import ConfigError, DataError

NUM_HAND_JOINTS = 21

# OpenPose hand order: 0 wrist; thumb 1-4, index 5-8, middle 9-12, ring 13-16, little 17-20
# (MCP/CMC, PIP, DIP, tip). One bone per (parent, child) pair: 5 fingers x 4 bones.
HAND_BONES: tuple[tuple[int, int], ...] = tuple(
    pair
    for finger in range(5)
    for pair in (
        (0, 1 + 4 * finger),
        (1 + 4 * finger, 2 + 4 * finger),
        (2 + 4 * finger, 3 + 4 * finger),
        (3 + 4 * finger, 4 + 4 * finger),
    )
)
NUM_POSE_CHANNELS = len(HAND_BONES)  # one soft line map per bone

# UV-aligned geometry channels (beyond the paper): sampled RGB (3), observed minus mesh depth (1),
# visibility (1), height above the surface the hand may touch (1).
UV_GEOMETRY_CHANNELS = 6

# Points closer than this to the camera plane are not projected (behind or at the camera).
_MIN_PROJECTION_DEPTH_M = 1e-3


# ----------------------------------------------------------------------------------------------
# Pose maps
# ----------------------------------------------------------------------------------------------


def project_points(points: torch.Tensor, intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole projection of camera-frame points.

    Args:
        points: (..., N, 3) metres, camera frame (+z forward).
        intrinsics: (..., 3, 3) K matrices (pixel coordinates: integer = pixel centre).

    Returns:
        pixels: (..., N, 2) (u, v) pixel coordinates; arbitrary where not in front.
        in_front: (..., N) bool, z > 1 mm.
    """
    z = points[..., 2]
    in_front = z > _MIN_PROJECTION_DEPTH_M
    safe_z = torch.where(in_front, z, torch.ones_like(z))
    normalised = points[..., :2] / safe_z[..., None]
    fx = intrinsics[..., 0, 0, None]
    fy = intrinsics[..., 1, 1, None]
    cx = intrinsics[..., 0, 2, None]
    cy = intrinsics[..., 1, 2, None]
    skew = intrinsics[..., 0, 1, None]
    u = fx * normalised[..., 0] + skew * normalised[..., 1] + cx
    v = fy * normalised[..., 1] + cy
    return torch.stack([u, v], dim=-1), in_front


def render_pose_maps(
    joints: torch.Tensor,
    intrinsics: torch.Tensor,
    image_size: tuple[int, int],
    sigma: float = 1.5,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Render the 2D hand skeleton as one soft line map per bone.

    Each map is ``exp(-d^2 / (2 sigma^2))`` with ``d`` the pixel's distance to the projected
    bone segment, so a bone is a Gaussian-profiled line of peak 1. Bones with an endpoint behind
    the camera, and all bones of invalid frames, are empty.

    Args:
        joints: (B, T, 21, 3) metres, camera frame, OpenPose hand order.
        intrinsics: (B, T, 3, 3) K of the image the maps align with.
        image_size: (H, W) of the maps.
        sigma: line half-width in pixels (Gaussian standard deviation).
        valid: optional (B, T) bool; frames marked False get empty maps.

    Returns:
        (B, T, 20, H, W) float maps in [0, 1], one channel per :data:`HAND_BONES` entry.
    """
    if joints.ndim != 4 or joints.shape[-2:] != (NUM_HAND_JOINTS, 3):
        raise DataError(f"joints must have shape (B, T, 21, 3); got {tuple(joints.shape)}")
    if intrinsics.shape != (*joints.shape[:2], 3, 3):
        raise DataError(
            f"intrinsics must have shape {(*joints.shape[:2], 3, 3)} to match joints; "
            f"got {tuple(intrinsics.shape)}"
        )
    if not sigma > 0:
        raise ConfigError(f"sigma must be > 0 pixels; got {sigma}")
    height, width = int(image_size[0]), int(image_size[1])
    batch, frames = joints.shape[:2]
    dtype = joints.dtype if joints.dtype.is_floating_point else torch.float32

    # 1. Project the joints and gather bone endpoints: (B, T, 20, 2) each.
    pixels, in_front = project_points(joints.to(dtype), intrinsics.to(dtype))
    parents = torch.tensor([p for p, _ in HAND_BONES], device=joints.device)
    children = torch.tensor([c for _, c in HAND_BONES], device=joints.device)
    start, end = pixels[:, :, parents], pixels[:, :, children]
    bone_visible = in_front[:, :, parents] & in_front[:, :, children]
    if valid is not None:
        bone_visible = bone_visible & valid.to(torch.bool)[:, :, None]

    # 2. Distance of every pixel centre to every segment: clamp the projection parameter to [0, 1].
    ys = torch.arange(height, device=joints.device, dtype=dtype)
    xs = torch.arange(width, device=joints.device, dtype=dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(1, 1, 1, -1, 2)
    direction = (end - start)[..., None, :]  # (B, T, 20, 1, 2)
    length_sq = (direction**2).sum(-1).clamp_min(1e-12)
    offset = grid - start[..., None, :]  # (B, T, 20, HW, 2)
    t = ((offset * direction).sum(-1) / length_sq).clamp(0.0, 1.0)
    distance_sq = ((offset - t[..., None] * direction) ** 2).sum(-1)

    # 3. Gaussian line profile, empty where the bone is not visible.
    maps = torch.exp(-distance_sq / (2.0 * sigma**2)) * bone_visible[..., None].to(dtype)
    return maps.reshape(batch, frames, NUM_POSE_CHANNELS, height, width)


# ----------------------------------------------------------------------------------------------
# Depth
# ----------------------------------------------------------------------------------------------


def hand_reference_depth(joints: torch.Tensor, valid: torch.Tensor, depth_m: torch.Tensor) -> torch.Tensor:
    """Depth each frame's depth map is normalised around: the hand's median joint depth.

    Frames without a valid hand use the median reference of the window's valid frames (the hand
    rarely jumps in depth within a window); windows without any valid frame fall back to the
    frame's median observed depth (0 where nothing is observed).

    Args:
        joints: (B, T, 21, 3) metres, camera frame.
        valid: (B, T) bool.
        depth_m: (B, T, 1, H, W) metres, 0 = missing.

    Returns:
        (B, T) metres.
    """
    valid = valid.to(torch.bool)
    joint_median = joints[..., 2].median(dim=-1).values  # (B, T)
    window_median = torch.stack(
        [
            row[mask].median() if bool(mask.any()) else row.new_tensor(float("nan"))
            for row, mask in zip(joint_median, valid)
        ]
    )  # (B,)
    observed = depth_m.flatten(2)
    observed = torch.where(observed > 0, observed, torch.full_like(observed, float("nan")))
    observed_median = observed.nanmedian(dim=-1).values.nan_to_num(0.0)  # (B, T)
    fallback = torch.where(window_median.isnan()[:, None], observed_median, window_median[:, None])
    return torch.where(valid, joint_median, fallback)


def normalize_depth(depth_m: torch.Tensor, reference_m: torch.Tensor, clip_m: float) -> torch.Tensor:
    """Depth relative to the hand, scaled to [-1, 1], plus a validity channel.

    Args:
        depth_m: (B, T, 1, H, W) metres, 0 = missing.
        reference_m: (B, T) metres, e.g. :func:`hand_reference_depth`.
        clip_m: half-range in metres; offsets beyond +-clip_m saturate at +-1.

    Returns:
        (B, T, 2, H, W): channel 0 = clamp((depth - reference) / clip_m, -1, 1), 0 where missing;
        channel 1 = 1 where the sensor has a reading, else 0.
    """
    if not clip_m > 0:
        raise ConfigError(f"depth_clip_m must be > 0; got {clip_m}")
    observed = depth_m > 0
    relative = ((depth_m - reference_m[:, :, None, None, None]) / clip_m).clamp(-1.0, 1.0)
    relative = torch.where(observed, relative, torch.zeros_like(relative))
    return torch.cat([relative, observed.to(depth_m.dtype)], dim=2)


# ----------------------------------------------------------------------------------------------
# UV-aligned geometry (beyond the paper)
# ----------------------------------------------------------------------------------------------


def hand_silhouette(vertices: torch.Tensor, intrinsics: torch.Tensor, image_size: tuple[int, int],
                    dilation_px: int = 3) -> torch.Tensor:
    """Pixels the hand mesh covers: its vertices splatted into the image and dilated.

    Args:
        vertices: (N, V, 3) metres, camera frame.
        intrinsics: (N, 3, 3).
        image_size: (H, W).
        dilation_px: odd side of the square the splat is dilated by; it must bridge the gaps
            between neighbouring vertices at the image's scale.

    Returns:
        (N, H, W) bool.
    """
    if isinstance(dilation_px, bool) or not isinstance(dilation_px, int) or dilation_px < 1 or dilation_px % 2 == 0:
        raise ConfigError(f"dilation_px must be an odd positive integer. Got {dilation_px!r}")
    count, num_vertices = vertices.shape[:2]
    height, width = image_size
    pixels, in_front = project_points(vertices, intrinsics)
    column, row = pixels[..., 0].round().long(), pixels[..., 1].round().long()
    inside = in_front & (column >= 0) & (column < width) & (row >= 0) & (row < height)
    flat = row.clamp(0, height - 1) * width + column.clamp(0, width - 1)
    splat = torch.zeros(count, height * width, device=vertices.device, dtype=vertices.dtype)
    splat.scatter_add_(1, flat, inside.to(vertices.dtype))
    dilated = F.max_pool2d(splat.reshape(count, 1, height, width), dilation_px, stride=1, padding=dilation_px // 2)
    return dilated[:, 0] > 0


def fit_surface_plane(
    depth_m: torch.Tensor,
    intrinsics: torch.Tensor,
    exclude: torch.Tensor,
    inlier_schedule_m: tuple[float, ...] = (0.02, 0.008),
    min_inlier_fraction: float = 0.5,
    min_coverage: float = 0.05,
    max_rms_m: float = 0.005,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dominant plane of each depth image outside ``exclude``: the pad or table a hand
    presses on, seen around the hand (it is hidden under the hand itself).

    A least-squares plane (smallest principal axis of the back-projected points), first of the
    farther half of the usable pixels (the surface lies behind what else is in view: a forearm
    reaching in from the image's edge can cover a third of a hand crop), then refitted to every
    usable pixel within each distance of ``inlier_schedule_m`` of the previous fit, so the
    hand's unmasked fringe, a forearm or a small object do not tilt it.

    Args:
        depth_m: (N, H, W) metres along the optical axis, 0 = missing.
        intrinsics: (N, 3, 3).
        exclude: (N, H, W) bool, pixels not on the surface (the hand's silhouette).
        inlier_schedule_m: successive inlier distances, metres.
        min_inlier_fraction: a fit must explain at least this fraction of the usable pixels
            (with a reading, not excluded),
        min_coverage: cover at least this fraction of the image,
        max_rms_m: and leave its inliers an RMS distance from the plane no larger than this.

    Returns:
        normal: (N, 3) unit normals, pointing to the camera's side.
        point: (N, 3) a point on the plane (the inliers' centroid), metres.
        valid: (N,) bool, the fit met the three conditions (otherwise no surface was found).
    """
    count, height, width = depth_m.shape
    rows, columns = torch.meshgrid(
        torch.arange(height, device=depth_m.device, dtype=depth_m.dtype),
        torch.arange(width, device=depth_m.device, dtype=depth_m.dtype), indexing="ij",
    )
    depth = depth_m.reshape(count, -1)
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
    cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]
    skew = intrinsics[:, 0, 1, None]
    y = (rows.reshape(1, -1) - cy) / fy
    x = (columns.reshape(1, -1) - cx - skew * y) / fx
    points = torch.stack([x * depth, y * depth, depth], dim=-1)  # (N, H*W, 3)
    usable_pixels = (depth > 0) & ~exclude.reshape(count, -1)
    usable = usable_pixels.to(depth.dtype).sum(1)
    # The first fit sees only the farther half of the usable pixels: the surface lies behind
    # whatever else is in view (the forearm reaching in, the hand's fringe), which would tilt it.
    far_depth = torch.nanmedian(torch.where(usable_pixels, depth, torch.full_like(depth, float("nan"))), dim=1).values
    weight = (usable_pixels & (depth >= far_depth.nan_to_num(0.0)[:, None])).to(depth.dtype)
    normal = point = eigenvalues = None
    for inlier_m in (None, *inlier_schedule_m):
        if inlier_m is not None:
            # Every usable pixel near the plane so far counts, not only those of the first fit.
            distance = ((points - point[:, None]) * normal[:, None]).sum(-1).abs()
            weight = (usable_pixels & (distance < inlier_m)).to(depth.dtype)
        total = weight.sum(1).clamp_min(1.0)
        point = (weight[..., None] * points).sum(1) / total[:, None]
        centred = points - point[:, None]
        covariance = torch.einsum("np,npi,npj->nij", weight, centred, centred) / total[:, None, None]
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        normal = eigenvectors[:, :, 0]
        # The camera (origin) is on the positive side.
        normal = torch.where(((-point) * normal).sum(-1, keepdim=True) < 0, -normal, normal)
    inliers = weight.sum(1)
    valid = ((inliers >= min_inlier_fraction * usable) & (inliers >= min_coverage * height * width)
             & (eigenvalues[:, 0].clamp_min(0).sqrt() <= max_rms_m))
    return normal, point, valid


def uv_geometry_from_mesh(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    texel_face: torch.Tensor,
    texel_barycentric: torch.Tensor,
    rgb: torch.Tensor,
    depth_m: torch.Tensor,
    intrinsics: torch.Tensor,
    depth_clip_m: float = 0.05,
    visibility_tolerance_m: float = 0.01,
    surface_height_scale_m: float = 0.005,
    silhouette_dilation_px: int = 3,
) -> torch.Tensor:
    """Per-texel image evidence, laid out on the UV atlas.

    Each texel's surface point (barycentric mix of its face's posed vertices) is projected into
    the camera; there the RGB image and the depth map are sampled bilinearly. A texel is visible
    when it projects inside the image in front of the camera and the observed depth is not nearer
    than the mesh by more than ``visibility_tolerance_m`` (nearer = occluded, e.g. by other
    fingers or an object). A missing depth reading does not count as occlusion.

    The last channel is each texel's height above the surface the hand may touch, which an
    egocentric camera mostly cannot see: the pressed side of a finger faces away from it. That
    surface is modelled as the dominant plane of the depth image outside the hand's silhouette
    (:func:`fit_surface_plane`: EgoPressure's pad, a table); the channel is
    ``tanh(height / surface_height_scale_m)``, negative where the mesh dips into the surface
    (a pressing hand's annotated mesh does), near 1 well above it, and 1 where no plane was
    found. On held-out synthetic frames with annotated meshes, "some texel at or below the
    plane" alone tells frames with contact from frames without for 96% of frames.

    Args:
        vertices: (B, T, V, 3) metres, camera frame.
        faces: (F, 3) long vertex indices.
        texel_face: (Hu, Wu) long face index per texel, -1 outside the hand.
        texel_barycentric: (Hu, Wu, 3) barycentric weights per texel.
        rgb: (B, T, 3, H, W) in [0, 1].
        depth_m: (B, T, 1, H, W) metres, 0 = missing.
        intrinsics: (B, T, 3, 3).
        depth_clip_m: observed-minus-mesh depth is divided by this and clipped to [-1, 1].
        visibility_tolerance_m: see above.
        surface_height_scale_m: height above the surface at which the last channel reaches
            tanh(1) = 0.76, metres.
        silhouette_dilation_px: see :func:`hand_silhouette`.

    Returns:
        (B, T, 6, Hu, Wu): RGB (3, zero where not visible), depth residual (1, zero where not
        visible or no reading), visibility (1), height above the surface (1). Texels outside the
        hand are 0.
    """
    if not surface_height_scale_m > 0:
        raise ConfigError(f"surface_height_scale_m must be > 0. Got {surface_height_scale_m!r}")
    batch, frames, num_vertices = vertices.shape[:3]
    height_uv, width_uv = texel_face.shape
    height, width = rgb.shape[-2:]
    on_hand = texel_face >= 0
    if bool((texel_face >= faces.shape[0]).any()):
        raise DataError(f"texel_face indexes face {int(texel_face.max())} but faces has {faces.shape[0]}")
    if bool((faces >= num_vertices).any()):
        raise DataError(f"faces index vertex {int(faces.max())} but vertices has {num_vertices}")

    # 1. Texel surface points: (B, T, Hu*Wu, 3).
    corner_ids = faces[texel_face.clamp_min(0).reshape(-1)]  # (Hu*Wu, 3)
    corners = vertices[:, :, corner_ids]  # (B, T, Hu*Wu, 3, 3)
    weights = texel_barycentric.reshape(1, 1, -1, 3, 1).to(vertices.dtype)
    points = (corners * weights).sum(dim=3)

    # 2. Project and sample the images at the texel's pixel (grid_sample's align_corners=True
    #    convention maps -1/+1 to the first/last pixel centre).
    pixels, in_front = project_points(points, intrinsics)
    grid_x = pixels[..., 0] / max(width - 1, 1) * 2.0 - 1.0
    grid_y = pixels[..., 1] / max(height - 1, 1) * 2.0 - 1.0
    grid = torch.stack([grid_x, grid_y], dim=-1).reshape(batch * frames, 1, -1, 2)
    inside = in_front & (grid_x.abs() <= 1.0) & (grid_y.abs() <= 1.0)
    sampled_rgb = F.grid_sample(
        rgb.flatten(0, 1), grid, mode="bilinear", padding_mode="border", align_corners=True
    ).reshape(batch, frames, 3, -1)
    # Nearest for depth: bilinear would blend foreground and background at silhouettes.
    sampled_depth = F.grid_sample(
        depth_m.flatten(0, 1), grid, mode="nearest", padding_mode="border", align_corners=True
    ).reshape(batch, frames, -1)

    # 3. Visibility and depth residual.
    has_reading = sampled_depth > 0
    residual = sampled_depth - points[..., 2]
    occluded = has_reading & (residual < -visibility_tolerance_m)
    visible = inside & ~occluded & on_hand.reshape(1, 1, -1)
    visible_f = visible.to(rgb.dtype)
    residual_channel = (residual / depth_clip_m).clamp(-1.0, 1.0) * (visible & has_reading).to(rgb.dtype)

    # 4. Height above the surface plane fitted around the hand's silhouette.
    flat_vertices, flat_intrinsics = vertices.flatten(0, 1), intrinsics.flatten(0, 1)
    silhouette = hand_silhouette(flat_vertices, flat_intrinsics, (height, width), silhouette_dilation_px)
    normal, plane_point, found = fit_surface_plane(depth_m.flatten(0, 2), flat_intrinsics, silhouette)
    texel_height = ((points.flatten(0, 1) - plane_point[:, None]) * normal[:, None]).sum(-1)
    surface_height = torch.where(found[:, None], torch.tanh(texel_height / surface_height_scale_m),
                                 torch.ones_like(texel_height))
    surface_height = surface_height.reshape(batch, frames, -1) * on_hand.reshape(1, 1, -1).to(rgb.dtype)
    geometry = torch.cat(
        [sampled_rgb * visible_f[:, :, None], residual_channel[:, :, None], visible_f[:, :, None],
         surface_height[:, :, None]], dim=2,
    )
    return geometry.reshape(batch, frames, UV_GEOMETRY_CHANNELS, height_uv, width_uv)


class UVGeometryBuilder:
    """``uv_geometry`` of window batches (:func:`uv_geometry_from_mesh`) for one hand atlas.

    Holds the atlas tables at the model's UV resolution; picklable, so DataLoader workers can
    call it from the collate function. The training collator, evaluation, the live estimator
    and the rosbag labeller all add ``uv_geometry`` through it, so models with
    ``use_uv_geometry`` see the same evidence everywhere.

    Args:
        faces: (F, 3) vertex indices of the hand mesh.
        texel_face: (Hu, Wu) face of each texel, -1 off the hand.
        texel_barycentric: (Hu, Wu, 3) barycentric weights of each texel.
        depth_clip_m: scale of the depth-residual channel (the model's ``depth_clip_m``).
        use_depth: False builds the channels as if the depth map had no reading anywhere (the
            model's ``use_depth``): no depth residual, no occlusion test, no surface plane, so a
            model without depth gets no depth evidence through the UV geometry either.
    """

    def __init__(self, faces, texel_face, texel_barycentric, depth_clip_m: float, use_depth: bool = True) -> None:
        # Own copies: atlas arrays may be read-only views of cached tables.
        self.faces = torch.as_tensor(np.array(faces, dtype=np.int64))
        self.texel_face = torch.as_tensor(np.array(texel_face, dtype=np.int64))
        self.texel_barycentric = torch.as_tensor(np.array(texel_barycentric, dtype=np.float32))
        if self.texel_face.ndim != 2 or tuple(self.texel_barycentric.shape) != (*self.texel_face.shape, 3):
            raise DataError(f"texel_face (Hu, Wu) and texel_barycentric (Hu, Wu, 3) disagree: "
                            f"{tuple(self.texel_face.shape)} and {tuple(self.texel_barycentric.shape)}")
        if not depth_clip_m > 0:
            raise ConfigError(f"depth_clip_m must be > 0. Got {depth_clip_m!r}")
        self.depth_clip_m = float(depth_clip_m)
        if not isinstance(use_depth, bool):
            raise ConfigError(f"use_depth must be a bool. Got {use_depth!r}")
        self.use_depth = use_depth

    @classmethod
    def from_atlas(cls, atlas, depth_clip_m: float, use_depth: bool = True) -> "UVGeometryBuilder":
        """From a :class:`~egopress_core.uv_atlas.UVAtlas` at the model's UV resolution."""
        return cls(atlas.faces, atlas.texel_face, atlas.texel_barycentric, depth_clip_m, use_depth)

    @classmethod
    def for_model(cls, atlas, config) -> "UVGeometryBuilder | None":
        """The builder a model's config asks for, None when the model takes no UV geometry.

        Args:
            atlas: :class:`~egopress_core.uv_atlas.UVAtlas` at ``config.uv_size``.
            config: an :class:`~egopress_core.model.config.EgoPressDiffConfig` or a
                :class:`~egopress_core.model.bin_classifier.BinClassifierConfig`.
        """
        if not config.use_uv_geometry:
            return None
        # The per-frame baseline has no depth switch: it always takes depth.
        return cls.from_atlas(atlas, config.depth_clip_m, getattr(config, "use_depth", True))

    @property
    def uv_size(self) -> tuple[int, int]:
        return int(self.texel_face.shape[0]), int(self.texel_face.shape[1])

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, T, 6, Hu, Wu) from the batch's ``vertices``, ``rgb``, ``depth_m`` (not read
        without ``use_depth``) and ``intrinsics`` (shapes as in the module docstring), on their
        device."""
        needed = ("vertices", "rgb", "depth_m", "intrinsics") if self.use_depth else ("vertices", "rgb", "intrinsics")
        missing = [key for key in needed if key not in batch]
        if missing:
            raise DataError(f"uv_geometry needs {missing} in the window batch; it has {sorted(batch)}")
        if self.use_depth:
            depth = batch["depth_m"].float()
            if depth.ndim == 4:
                depth = depth[:, :, None]
        else:
            rgb = batch["rgb"]
            depth = torch.zeros((*rgb.shape[:2], 1, *rgb.shape[-2:]), device=rgb.device)  # 0 = no reading
        device = batch["vertices"].device
        return uv_geometry_from_mesh(
            batch["vertices"].float(), self.faces.to(device), self.texel_face.to(device),
            self.texel_barycentric.to(device), batch["rgb"].float(), depth, batch["intrinsics"].float(),
            depth_clip_m=self.depth_clip_m,
        )


# ----------------------------------------------------------------------------------------------
# Pressure normalisation
# ----------------------------------------------------------------------------------------------


class PressureNormalizer:
    """kPa <-> model space [-1, 1], logarithmic so low pressures keep resolution.

    ``x = log1p(p / p0) / log1p(p_max / p0) * 2 - 1`` with pressure clamped to [0, p_max]; zero
    pressure maps to -1. Decoding inverts it, clamps to [0, p_max] and zeroes texels outside
    the UV hand mask.

    Args:
        reference_kpa: p0, the pressure scale where the map turns from linear to logarithmic.
        max_kpa: p_max, the pressure mapped to +1.
    """

    def __init__(self, reference_kpa: float, max_kpa: float) -> None:
        if not reference_kpa > 0:
            raise ConfigError(f"pressure_reference_kpa must be > 0; got {reference_kpa}")
        if not max_kpa > reference_kpa:
            raise ConfigError(
                f"pressure_max_kpa must exceed pressure_reference_kpa ({reference_kpa}); got {max_kpa}"
            )
        self.reference_kpa = float(reference_kpa)
        self.max_kpa = float(max_kpa)
        self._log_range = math.log1p(self.max_kpa / self.reference_kpa)

    def encode(self, pressure_kpa: torch.Tensor) -> torch.Tensor:
        """(..., Hu, Wu) kPa -> same shape in [-1, 1]."""
        clamped = pressure_kpa.clamp(0.0, self.max_kpa)
        return torch.log1p(clamped / self.reference_kpa) / self._log_range * 2.0 - 1.0

    def decode(self, normalized: torch.Tensor, uv_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(..., Hu, Wu) model space -> kPa >= 0, zero where ``uv_mask`` (broadcastable) is 0."""
        unit = ((normalized.clamp(-1.0, 1.0) + 1.0) * 0.5) * self._log_range
        pressure = (torch.expm1(unit) * self.reference_kpa).clamp_min(0.0)
        if uv_mask is not None:
            pressure = pressure * (uv_mask > 0.5).to(pressure.dtype)
        return pressure

    def to_dict(self) -> dict[str, float]:
        return {"reference_kpa": self.reference_kpa, "max_kpa": self.max_kpa}


# ----------------------------------------------------------------------------------------------
# Conditions
# ----------------------------------------------------------------------------------------------


@dataclass
class EgoPressConditions:
    """Everything EgoPressDiff is conditioned on, for a batch of windows.

    Attributes:
        rgb: (B, T, 3, H, W) in [0, 1].
        depth: (B, T, 2, H, W) normalised depth and validity (:func:`normalize_depth`).
        pose_maps: (B, T, 20, H, W) rendered bone maps (:func:`render_pose_maps`).
        vertices: (B, T, V, 3) metres, camera frame; zero on invalid frames.
        frame_valid: (B, T) bool, frames with a hand.
        uv_mask: (B, 1, Hu, Wu) float, 1 on hand texels.
        uv_geometry: optional (B, T, 5, Hu, Wu) (:func:`uv_geometry_from_mesh`).
    """

    rgb: torch.Tensor
    depth: torch.Tensor
    pose_maps: torch.Tensor
    vertices: torch.Tensor
    frame_valid: torch.Tensor
    uv_mask: torch.Tensor
    uv_geometry: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.rgb.shape[-2]), int(self.rgb.shape[-1])

    @property
    def uv_size(self) -> tuple[int, int]:
        return int(self.uv_mask.shape[-2]), int(self.uv_mask.shape[-1])

    def validate(self) -> EgoPressConditions:
        """Check shapes agree and values are finite; raise :class:`DataError` naming the field."""
        batch, frames = self.rgb.shape[:2]
        height, width = self.rgb.shape[-2:]
        expected = {
            "rgb": (batch, frames, 3, height, width),
            "depth": (batch, frames, 2, height, width),
            "pose_maps": (batch, frames, NUM_POSE_CHANNELS, height, width),
            "frame_valid": (batch, frames),
        }
        for name, shape in expected.items():
            actual = tuple(getattr(self, name).shape)
            if actual != shape:
                raise DataError(f"conditions.{name} must have shape {shape}; got {actual}")
        if (
            self.vertices.ndim != 4
            or tuple(self.vertices.shape[:2]) != (batch, frames)
            or self.vertices.shape[-1] != 3
        ):
            raise DataError(
                f"conditions.vertices must have shape ({batch}, {frames}, V, 3); "
                f"got {tuple(self.vertices.shape)}"
            )
        if self.uv_mask.ndim != 4 or tuple(self.uv_mask.shape[:2]) != (batch, 1):
            raise DataError(
                f"conditions.uv_mask must have shape ({batch}, 1, Hu, Wu); got {tuple(self.uv_mask.shape)}"
            )
        if self.uv_geometry is not None:
            shape = (batch, frames, UV_GEOMETRY_CHANNELS, *self.uv_size)
            if tuple(self.uv_geometry.shape) != shape:
                raise DataError(
                    f"conditions.uv_geometry must have shape {shape}; got {tuple(self.uv_geometry.shape)}"
                )
        for item in fields(self):
            value = getattr(self, item.name)
            if (
                isinstance(value, torch.Tensor)
                and value.is_floating_point()
                and not bool(torch.isfinite(value).all())
            ):
                raise DataError(f"conditions.{item.name} contains NaN or infinite values")
        return self

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> EgoPressConditions:
        """Move every tensor; ``dtype`` applies to floating-point tensors only."""

        def move(value: torch.Tensor | None) -> torch.Tensor | None:
            if value is None:
                return None
            if value.is_floating_point():
                return value.to(device=device, dtype=dtype)
            return value.to(device=device)

        return EgoPressConditions(**{item.name: move(getattr(self, item.name)) for item in fields(self)})

    def window(self, start: int, stop: int) -> EgoPressConditions:
        """Frames [start, stop) of every per-frame field (uv_mask is shared)."""
        per_frame = {
            item.name: getattr(self, item.name)[:, start:stop]
            for item in fields(self)
            if item.name != "uv_mask" and getattr(self, item.name) is not None
        }
        return replace(self, **per_frame)


def _uv_mask_batch(mask: torch.Tensor, batch: int) -> torch.Tensor:
    """(Hu, Wu) | (1, Hu, Wu) | (B, 1, Hu, Wu) -> (B, 1, Hu, Wu) float."""
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3:
        mask = mask[None]
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, batch):
        raise DataError(
            f"uv_mask must have shape (Hu, Wu), (1, Hu, Wu) or ({batch}, 1, Hu, Wu); got {tuple(mask.shape)}"
        )
    return mask.to(torch.float32).expand(batch, -1, -1, -1)


def build_conditions(
    batch: Mapping[str, torch.Tensor],
    pose_sigma_px: float = 1.5,
    depth_clip_m: float = 0.15,
    reference_depth_m: torch.Tensor | None = None,
) -> EgoPressConditions:
    """Turn a window batch (see module docstring) into validated conditions.

    Joints and vertices of frames with ``valid`` False are replaced by zeros before use (data
    sources may leave NaN there); NaN anywhere else raises :class:`DataError`.

    Args:
        batch: the window batch dict.
        pose_sigma_px: line width of the rendered skeleton (:func:`render_pose_maps`).
        depth_clip_m: depth normalisation half-range (:func:`normalize_depth`).
        reference_depth_m: optional (B, T) depth to normalise around; default
            :func:`hand_reference_depth`.

    Returns:
        :class:`EgoPressConditions` on the batch's device.
    """
    required = ("rgb", "depth_m", "intrinsics", "joints", "vertices", "valid", "uv_mask")
    missing = [key for key in required if key not in batch]
    if missing:
        raise DataError(f"window batch is missing {missing}; it has {sorted(batch)}")
    rgb = batch["rgb"]
    if rgb.ndim != 5 or rgb.shape[2] != 3:
        raise DataError(f"rgb must have shape (B, T, 3, H, W); got {tuple(rgb.shape)}")
    num_batch, frames, _, height, width = rgb.shape
    rgb = rgb.float()
    depth_m = batch["depth_m"].float()
    if depth_m.ndim == 4:
        depth_m = depth_m[:, :, None]
    if tuple(depth_m.shape) != (num_batch, frames, 1, height, width):
        raise DataError(
            f"depth_m must have shape {(num_batch, frames, 1, height, width)}; "
            f"got {tuple(batch['depth_m'].shape)}"
        )
    valid = batch["valid"]
    if tuple(valid.shape) != (num_batch, frames):
        raise DataError(f"valid must have shape {(num_batch, frames)}; got {tuple(valid.shape)}")
    valid = valid.to(torch.bool)
    joints = batch["joints"].float()
    vertices = batch["vertices"].float()
    intrinsics = batch["intrinsics"].float()
    if tuple(joints.shape) != (num_batch, frames, NUM_HAND_JOINTS, 3):
        raise DataError(
            f"joints must have shape {(num_batch, frames, NUM_HAND_JOINTS, 3)}; got {tuple(joints.shape)}"
        )
    if vertices.ndim != 4 or tuple(vertices.shape[:2]) != (num_batch, frames) or vertices.shape[-1] != 3:
        raise DataError(
            f"vertices must have shape ({num_batch}, {frames}, V, 3); got {tuple(vertices.shape)}"
        )
    if tuple(intrinsics.shape) != (num_batch, frames, 3, 3):
        raise DataError(
            f"intrinsics must have shape {(num_batch, frames, 3, 3)}; got {tuple(intrinsics.shape)}"
        )

    # Checked before use so a NaN never travels into the networks as garbage features.
    for name, value in (("rgb", rgb), ("depth_m", depth_m), ("intrinsics", intrinsics)):
        if not bool(torch.isfinite(value).all()):
            raise DataError(f"{name} contains NaN or infinite values")
    for name, value in (("joints", joints), ("vertices", vertices)):
        if not bool(torch.isfinite(value[valid]).all()):
            raise DataError(f"{name} contains NaN or infinite values on frames marked valid")
    joints = torch.where(valid[:, :, None, None], joints, torch.zeros_like(joints))
    vertices = torch.where(valid[:, :, None, None], vertices, torch.zeros_like(vertices))

    if reference_depth_m is None:
        reference_depth_m = hand_reference_depth(joints, valid, depth_m)
    uv_geometry = batch.get("uv_geometry")
    conditions = EgoPressConditions(
        rgb=rgb,
        depth=normalize_depth(depth_m, reference_depth_m.to(depth_m), depth_clip_m),
        pose_maps=render_pose_maps(joints, intrinsics, (height, width), sigma=pose_sigma_px, valid=valid),
        vertices=vertices,
        frame_valid=valid,
        uv_mask=_uv_mask_batch(batch["uv_mask"], num_batch).to(rgb.device),
        uv_geometry=None if uv_geometry is None else uv_geometry.float(),
    )
    return conditions.validate()
