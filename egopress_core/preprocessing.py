"""Camera frame -> model input: the crop and resize that training windows and inference share.

The training windows (:class:`~egopress_core.data.windows.ClipWindowDataset`) and the pipeline
(:class:`~egopress_core.pipeline.EgoPressPipeline`, live and offline) both bring a camera frame
to the model's resolution with the functions here, so a model sees at run time exactly what it
was trained on (``docs/design.md``, "Model inputs"):

- the crop box (:func:`crop_box`): with ``crop="hand"`` a box around the projected hand
  vertices, ``hand_margin`` on each side, at least ``min_crop_fraction`` of the image's short
  side, the model's aspect ratio; with ``crop="full"`` the largest centred box. Parts outside the
  image are black / depth holes;
- RGB resized from uint8 with antialiased bilinear interpolation; depth with ``"min"`` (nearest
  surface in each output pixel's footprint) or ``"nearest"``, never averaged (an average invents
  surfaces between hand and table and blends holes into readings);
- intrinsics follow exactly: ``K' = A K`` (:func:`crop_resize_intrinsics`).

Training uses one box per window; a live stream has no future frames, so
:class:`HandCropTracker` keeps its box while the hand stays well inside it and is not much
smaller, and re-centres otherwise. Consecutive frames then share a crop most of the time, as in
training windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from egopress_core.errors import ConfigError, DataError
from egopress_core.options import DEPTH_RESIZE_MODES, CropOptions

# A held crop is replaced when the fresh box around the hand is this many times smaller.
_HOLD_MAX_SHRINK = 1.5
# Points closer than this to the camera plane are not projected.
_MIN_PROJECTION_DEPTH_M = 1e-3


# ----------------------------------------------------------------------------------------------
# Resizing
# ----------------------------------------------------------------------------------------------


def resize_depth(depth: torch.Tensor, size: tuple[int, int], mode: str = "min") -> torch.Tensor:
    """Resize depth maps whose zeros are holes without inventing in-between surfaces.

    Args:
        depth: (N, 1, H, W) metres, 0 = hole.
        size: (Ho, Wo).
        mode: ``"min"`` (nearest valid surface in each output pixel's footprint; a hole only if
            the whole footprint is) or ``"nearest"`` (pixel-centre aligned nearest sample).
    Returns:
        (N, 1, Ho, Wo) metres, 0 = hole.
    """
    if mode == "nearest":
        return F.interpolate(depth, size=size, mode="nearest-exact")
    if mode != "min":
        raise ConfigError(f"depth resize mode must be one of {DEPTH_RESIZE_MODES}. Got {mode!r}")
    holes_as_far = torch.where(depth > 0, depth, torch.full_like(depth, math.inf))
    nearest = -F.adaptive_max_pool2d(-holes_as_far, size)
    return torch.where(torch.isfinite(nearest), nearest, torch.zeros_like(nearest))


def crop_padded(image: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Crop ``image[y0:y0+height, x0:x0+width]`` (any leading H, W layout) with zero padding."""
    out = np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
    src_x0, src_y0 = max(x0, 0), max(y0, 0)
    src_x1, src_y1 = min(x0 + width, image.shape[1]), min(y0 + height, image.shape[0])
    if src_x1 > src_x0 and src_y1 > src_y0:
        out[src_y0 - y0:src_y1 - y0, src_x0 - x0:src_x1 - x0] = image[src_y0:src_y1, src_x0:src_x1]
    return out


def crop_resize_intrinsics(intrinsics: np.ndarray, box: tuple[int, int, int, int],
                           size: tuple[int, int]) -> np.ndarray:
    """K of an image cropped to ``box = (x0, y0, w, h)`` and resized to ``size = (H, W)``.

    Pixel-centred convention: input centre ``u`` lands at ``(u - x0 + 0.5) * W / w - 0.5``.
    """
    x0, y0, width, height = box
    scale_x, scale_y = size[1] / width, size[0] / height
    transform = np.array([
        [scale_x, 0.0, 0.5 * scale_x - 0.5 - scale_x * x0],
        [0.0, scale_y, 0.5 * scale_y - 0.5 - scale_y * y0],
        [0.0, 0.0, 1.0],
    ])
    return transform @ np.asarray(intrinsics, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Crop box
# ----------------------------------------------------------------------------------------------


def project_edge_coordinates(points_xyz: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points -> (M, 2) pixel "edge" coordinates (pixel j spans [j, j + 1)),
    for the points in front of the camera (z > 1 mm)."""
    xyz = np.asarray(points_xyz, dtype=np.float64)
    xyz = xyz[xyz[:, 2] > _MIN_PROJECTION_DEPTH_M]
    projected = xyz @ np.asarray(intrinsics, dtype=np.float64).T
    return projected[:, :2] / projected[:, 2:3] + 0.5


def crop_extent(
    image_hw: tuple[int, int],
    image_size: tuple[int, int],
    hand_points: np.ndarray | None = None,
    hand_margin: float = 0.3,
    min_crop_fraction: float = 0.1,
) -> tuple[np.ndarray, float, float]:
    """(centre (2,), width, height) in pixels of the crop before rounding (see :func:`crop_box`);
    training jitters this extent before :func:`round_box`."""
    img_h, img_w = int(image_hw[0]), int(image_hw[1])
    aspect = image_size[1] / image_size[0]
    if img_w / img_h >= aspect:
        box_h, box_w = float(img_h), img_h * aspect
    else:
        box_w, box_h = float(img_w), img_w / aspect
    centre = np.array([img_w / 2.0, img_h / 2.0])
    if hand_points is not None and len(hand_points):
        low, high = hand_points.min(axis=0), hand_points.max(axis=0)
        centre = (low + high) / 2.0
        side = float(np.max(high - low)) * (1.0 + 2.0 * hand_margin)
        side = max(side, min_crop_fraction * min(img_h, img_w), 1.0)
        # A hand larger than the image fills the view; bigger boxes only add padding.
        side = min(side, float(max(img_h, img_w)))
        box_w, box_h = side * max(aspect, 1.0), side * max(1.0 / aspect, 1.0)
    return centre, box_w, box_h


def round_box(centre: np.ndarray, box_w: float, box_h: float) -> tuple[int, int, int, int]:
    """(x0, y0, w, h) integer box of a crop extent."""
    width, height = max(1, round(box_w)), max(1, round(box_h))
    x0, y0 = round(centre[0] - width / 2.0), round(centre[1] - height / 2.0)
    return int(x0), int(y0), int(width), int(height)


def crop_box(
    image_hw: tuple[int, int],
    image_size: tuple[int, int],
    hand_points: np.ndarray | None = None,
    hand_margin: float = 0.3,
    min_crop_fraction: float = 0.1,
) -> tuple[int, int, int, int]:
    """(x0, y0, w, h) integer crop box of an ``image_hw`` image for a model input of
    ``image_size``, as the training windows choose it (without augmentation).

    Args:
        image_hw: (H, W) of the camera image.
        image_size: (H, W) of the model input (sets the box's aspect ratio).
        hand_points: (N, 2) edge coordinates of the hand (:func:`project_edge_coordinates`), or
            None / empty for the largest centred box (``crop="full"``).
        hand_margin, min_crop_fraction: as :class:`~egopress_core.options.CropOptions`.
    """
    return round_box(*crop_extent(image_hw, image_size, hand_points, hand_margin, min_crop_fraction))


class HandCropTracker:
    """The crop box of a live stream (see the module docstring).

    A held box is kept while (1) the image size is unchanged, (2) the hand's projected extent
    stays inside the box with at least half the margin left on every side, and (3) a fresh box
    would not be more than 1.5 times smaller. Otherwise the fresh box replaces it.

    Args:
        image_size: (H, W) of the model input.
        options: :class:`~egopress_core.options.CropOptions`.
    """

    def __init__(self, image_size: tuple[int, int], options: CropOptions | None = None) -> None:
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.options = options or CropOptions()
        self.reset()

    def reset(self) -> None:
        self._box: tuple[int, int, int, int] | None = None
        self._image_hw: tuple[int, int] | None = None
        self.boxes_made = 0

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        return self._box

    def update(self, image_hw: tuple[int, int], hand_points: np.ndarray | None) -> tuple[int, int, int, int]:
        """The box for this frame; ``hand_points`` are edge coordinates (None: no hand)."""
        options = self.options
        image_hw = (int(image_hw[0]), int(image_hw[1]))
        if options.crop == "full" or hand_points is None or not len(hand_points):
            fresh = crop_box(image_hw, self.image_size)
            if options.crop == "full" or self._box is None or self._image_hw != image_hw:
                self._set(fresh, image_hw)
            return self._box  # type: ignore[return-value]
        fresh = crop_box(image_hw, self.image_size, hand_points, options.hand_margin, options.min_crop_fraction)
        if (not options.hold_crop or self._box is None or self._image_hw != image_hw
                or not self._holds(hand_points, fresh)):
            self._set(fresh, image_hw)
        return self._box  # type: ignore[return-value]

    def _set(self, box: tuple[int, int, int, int], image_hw: tuple[int, int]) -> None:
        if box != self._box:
            self.boxes_made += 1
        self._box, self._image_hw = box, image_hw

    def _holds(self, hand_points: np.ndarray, fresh: tuple[int, int, int, int]) -> bool:
        x0, y0, width, height = self._box  # type: ignore[misc]
        low, high = hand_points.min(axis=0), hand_points.max(axis=0)
        inset = 0.5 * self.options.hand_margin * float(np.max(high - low))
        inside = (low[0] - inset >= x0 and low[1] - inset >= y0
                  and high[0] + inset <= x0 + width and high[1] + inset <= y0 + height)
        not_too_big = max(width, height) <= _HOLD_MAX_SHRINK * max(fresh[2], fresh[3])
        return bool(inside and not_too_big)


# ----------------------------------------------------------------------------------------------
# One frame -> model inputs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInputs:
    """One frame at model resolution (the per-frame slice of a clip window).

    Attributes:
        rgb: (3, H, W) float32 in [0, 1].
        depth_m: (1, H, W) float32 metres, 0 = no reading.
        intrinsics: (3, 3) float32, K of the cropped and resized image.
        box: (x0, y0, w, h) the crop in camera pixels.
    """

    rgb: torch.Tensor
    depth_m: torch.Tensor
    intrinsics: torch.Tensor
    box: tuple[int, int, int, int]


def check_camera_frame(rgb, depth_m, intrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (rgb uint8 (H, W, 3), depth float32 (H, W) with holes as 0, K float64 (3, 3)).

    NaN, infinite and negative depth readings are holes (REP 118 marks missing 32FC1 readings
    with NaN / infinity) and become 0.

    Raises:
        DataError: naming the array that has the wrong type, shape or values.
    """
    from egopress_core.perception.types import validate_intrinsics

    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        described = f"{rgb.dtype} {tuple(rgb.shape)}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise DataError(f"rgb must be a (H, W, 3) uint8 array; got {described}")
    if not isinstance(depth_m, np.ndarray) or depth_m.ndim != 2 or not np.issubdtype(depth_m.dtype, np.floating):
        described = f"{depth_m.dtype} {tuple(depth_m.shape)}" if isinstance(depth_m, np.ndarray) else type(depth_m).__name__
        raise DataError(f"depth_m must be a (H, W) floating-point array in metres; got {described}")
    if depth_m.shape != rgb.shape[:2]:
        raise DataError(f"depth image {depth_m.shape[1]}x{depth_m.shape[0]} is not aligned to the colour image "
                        f"{rgb.shape[1]}x{rgb.shape[0]} (W x H); use the depth stream aligned to colour")
    depth = depth_m.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return rgb, depth, validate_intrinsics(intrinsics)


def preprocess_frame(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    intrinsics: np.ndarray,
    box: tuple[int, int, int, int],
    image_size: tuple[int, int],
    depth_resize: str = "min",
) -> ModelInputs:
    """Crop ``box`` out of one frame and resize it to ``image_size``.

    Args:
        rgb: (H, W, 3) uint8; depth_m: (H, W) float32 metres, 0 = hole; intrinsics: (3, 3).
        box: (x0, y0, w, h); parts outside the image are black / holes.
        image_size: (H', W') model input size.
        depth_resize: "min" or "nearest".
    """
    image_size = (int(image_size[0]), int(image_size[1]))
    crop = crop_padded(np.asarray(rgb, dtype=np.uint8), *box)
    # Resampling uint8 directly is ~50x faster than float on a CPU; the result is the float
    # result rounded to 1/255.
    image = torch.from_numpy(crop).permute(2, 0, 1)[None]
    resized = F.interpolate(image, size=image_size, mode="bilinear", align_corners=False, antialias=True)
    depth_crop = crop_padded(np.asarray(depth_m, dtype=np.float32), *box)
    depth = resize_depth(torch.from_numpy(depth_crop)[None, None], image_size, depth_resize)[0]
    matrix = crop_resize_intrinsics(intrinsics, box, image_size).astype(np.float32)
    return ModelInputs(rgb=resized[0].float() / 255.0, depth_m=depth, intrinsics=torch.from_numpy(matrix), box=box)
