"""``sensor_msgs/Image`` <-> numpy on the message's raw fields: the image half of
:mod:`egopress_core.messages`, shared by the live nodes (rclpy messages) and the bag tools
(rosbags messages). Neither ``cv_bridge`` nor rclpy is needed; where ``cv_bridge`` is installed,
``test/integration/ros/test_ros_bridges.py`` checks that both agree.

A "message" here is anything with the ``sensor_msgs/Image`` fields ``height``, ``width``,
``step``, ``encoding``, ``is_bigendian`` and ``data`` (bytes, ``array.array('B')``, a uint8 numpy
array or a list of ints): an rclpy message, a rosbags message or a ``SimpleNamespace``.

Encodings follow REP 118 and ``sensor_msgs/image_encodings.hpp``:

- colour: ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8`` (grey becomes three equal channels);
- depth: ``16UC1`` / ``mono16`` in millimetres (0 = no reading) or ``32FC1`` in metres
  (NaN / +-inf = no reading).

Rows may be padded (``step`` > width x pixel size) and ``is_bigendian`` is honoured. Anything
else raises :class:`ImageEncodingError`, naming the encoding or the inconsistent field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egopress_core.errors import DataError

# encoding -> (channels, channel order giving RGB, or None for grey)
COLOR_ENCODINGS: dict[str, tuple[int, tuple[int, int, int] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}
# encoding -> (numpy type without byte order, metres per unit)
DEPTH_ENCODINGS: dict[str, tuple[str, float]] = {"16UC1": ("u2", 0.001), "mono16": ("u2", 0.001), "32FC1": ("f4", 1.0)}
# Every encoding read or written here: encoding -> (numpy type without byte order, channels).
PIXEL_FORMATS: dict[str, tuple[str, int]] = {
    **{name: ("u1", channels) for name, (channels, _) in COLOR_ENCODINGS.items()},
    **{name: (dtype, 1) for name, (dtype, _) in DEPTH_ENCODINGS.items()},
}


class ImageEncodingError(DataError):
    """An image whose encoding is not supported or whose fields do not fit together."""


@dataclass(frozen=True)
class EncodedImage:
    """The raw fields of a ``sensor_msgs/Image`` (little-endian, unpadded rows).

    Attributes:
        data: (step x height,) uint8.
    """

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


def pixel_format(encoding: str) -> tuple[str, int]:
    """(numpy type without byte order, channels) of ``encoding``.

    Raises:
        ImageEncodingError: an encoding this module does not read or write.
    """
    if encoding not in PIXEL_FORMATS:
        raise ImageEncodingError(f"image encoding {encoding!r} is not supported; supported: {sorted(PIXEL_FORMATS)}")
    return PIXEL_FORMATS[encoding]


def _raw_bytes(data) -> np.ndarray:
    """A message's ``data`` field as a flat uint8 array (a view where the type allows it)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1) if data.dtype == np.uint8 else np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a list of ints (a message built by hand)
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def check_layout(msg, channels: int, dtype: str) -> tuple[int, int]:
    """(H, W) of an image whose size, ``step`` and data length fit ``channels`` x ``dtype`` pixels.

    Raises:
        ImageEncodingError: zero size, a step shorter than a row, or data of the wrong length.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageEncodingError(f"image is empty ({width}x{height})")
    row_bytes = width * channels * np.dtype(dtype).itemsize
    if step < row_bytes:
        raise ImageEncodingError(f"image step {step} is shorter than a row of {width} {msg.encoding} pixels ({row_bytes} bytes)")
    size = len(msg.data)
    if size != step * height:
        raise ImageEncodingError(f"image data has {size} bytes; step {step} x height {height} = {step * height}")
    return height, width


def image_pixels(msg, channels: int, dtype: str) -> np.ndarray:
    """(H, W, channels) pixels of an image as ``dtype`` in native byte order.

    Raises:
        ImageEncodingError: see :func:`check_layout`.
    """
    height, width = check_layout(msg, channels, dtype)
    row_bytes = width * channels * np.dtype(dtype).itemsize
    rows = _raw_bytes(msg.data).reshape(height, int(msg.step))[:, :row_bytes]
    recorded = np.dtype((">" if msg.is_bigendian else "<") + dtype)
    pixels = np.ascontiguousarray(rows).view(recorded).reshape(height, width, channels)
    return pixels.astype(recorded.newbyteorder("="), copy=False)


def decode_image(msg) -> np.ndarray:
    """Pixels of an image in any supported encoding, as recorded: (H, W) for one channel, else
    (H, W, C); the encoding's dtype in native byte order (what ``cv_bridge`` gives for
    ``"passthrough"``). The inverse of :func:`encode_image`.

    Raises:
        ImageEncodingError: an unsupported encoding; see also :func:`check_layout`.
    """
    dtype, channels = pixel_format(str(msg.encoding))
    pixels = image_pixels(msg, channels, dtype)
    return pixels[:, :, 0] if channels == 1 else pixels


def decode_color(msg, remap_hint: str = "check the topic remapping") -> np.ndarray:
    """(H, W, 3) uint8 RGB of a colour image (rgb8, bgr8, rgba8, bgra8, mono8).

    Args:
        remap_hint: what to check when a depth image arrives instead (said in the error).
    """
    encoding = str(msg.encoding)
    if encoding not in COLOR_ENCODINGS:
        hint = f" (this looks like a depth image: {remap_hint})" if encoding in DEPTH_ENCODINGS else ""
        raise ImageEncodingError(f"colour image encoding {encoding!r} is not supported; expected one of "
                                 f"{sorted(COLOR_ENCODINGS)}{hint}")
    channels, order = COLOR_ENCODINGS[encoding]
    pixels = image_pixels(msg, channels, "u1")
    if order is None:
        return np.repeat(pixels, 3, axis=2)
    if order == (0, 1, 2) and channels == 3:
        return pixels
    return np.ascontiguousarray(pixels[:, :, list(order)])


def decode_depth(msg, remap_hint: str = "check the topic remapping") -> np.ndarray:
    """(H, W) float32 metres of a depth image, missing readings as recorded: 0 for 16UC1 /
    mono16, NaN or +-inf for 32FC1 (callers that need 0 for them clean up).

    Args:
        remap_hint: what to check when a colour image arrives instead (said in the error).
    """
    encoding = str(msg.encoding)
    if encoding not in DEPTH_ENCODINGS:
        hint = f" (this looks like a colour image: {remap_hint})" if encoding in COLOR_ENCODINGS else ""
        raise ImageEncodingError(f"depth image encoding {encoding!r} is not supported; expected 16UC1 / mono16 "
                                 f"(millimetres) or 32FC1 (metres){hint}")
    dtype, scale = DEPTH_ENCODINGS[encoding]
    pixels = image_pixels(msg, 1, dtype)[:, :, 0]
    return pixels.astype(np.float32) * np.float32(scale) if scale != 1.0 else pixels.astype(np.float32, copy=False)


def encode_image(pixels: np.ndarray, encoding: str) -> EncodedImage:
    """The Image fields of (H, W) or (H, W, C) pixels; ``encoding`` must fit their dtype and
    channels (rgb8 / bgr8 / rgba8 / bgra8 / mono8 uint8, 16UC1 / mono16 uint16, 32FC1 float32).

    Raises:
        ImageEncodingError: an unknown encoding, or pixels of another dtype or channel count.
    """
    if encoding not in PIXEL_FORMATS:
        raise ImageEncodingError(f"cannot write image encoding {encoding!r}; supported: {sorted(PIXEL_FORMATS)}")
    dtype, channels = PIXEL_FORMATS[encoding]
    pixels = np.asarray(pixels)
    have = 1 if pixels.ndim == 2 else pixels.shape[2] if pixels.ndim == 3 else -1
    if pixels.dtype != np.dtype(dtype) or have != channels:
        raise ImageEncodingError(f"{encoding} needs {channels}-channel {np.dtype(dtype)} pixels; got {pixels.dtype} {pixels.shape}")
    little = np.ascontiguousarray(pixels, dtype=np.dtype("<" + dtype))
    height, width = little.shape[:2]
    return EncodedImage(height=int(height), width=int(width), encoding=encoding, is_bigendian=0,
                        step=int(width * channels * np.dtype(dtype).itemsize), data=little.reshape(-1).view(np.uint8))
