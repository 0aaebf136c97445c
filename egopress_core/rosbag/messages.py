"""The rosbags side of :mod:`egopress_core.messages`: a message factory over the rosbags type
store, and what only bags need.

The builders and readers themselves are in :mod:`egopress_core.messages`, shared with the live
nodes, so a labelled bag and a live recording hold the same bytes for the same frame. Here:

- :func:`bag_factory`: the :class:`~egopress_core.messages.MessageFactory` of a rosbags
  ``Typestore`` (:func:`~egopress_core.rosbag.typestore.egopress_typestore`);
- :func:`color_to_rgb`: colour ``Image`` (``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``) or
  JPEG / PNG ``sensor_msgs/CompressedImage``, which recorded bags often hold;
- :func:`depth_to_metres`: depth ``16UC1`` / ``mono16`` millimetres or ``32FC1`` metres, raw or
  through ``compressed_depth_image_transport`` (png / rvl), with missing readings (0, NaN, inf)
  as 0, which the labeller's preprocessing expects.

Undecodable images raise :data:`UnsupportedEncoding`, which the labeller reports and skips.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from egopress_core import image_encodings
from egopress_core.messages import MessageFactory
from egopress_core.rosbag.compressed_depth import decode_compressed_depth, is_compressed_depth
from egopress_core.rosbag.topics import TOPIC_OPTIONS
from egopress_core.rosbag.typestore import COMPRESSED_IMAGE, IMAGE

# An image whose encoding or layout cannot be decoded (the labeller reports and skips it).
UnsupportedEncoding = image_encodings.ImageEncodingError

# Field defaults other than zero that ROS message definitions declare but rosbags' type store
# does not keep (rclpy's classes apply them): without this, a DELETE Marker written to a bag
# would hold a zero quaternion where the live node's holds the identity.
_ROS_DEFAULTS: dict[str, dict[str, Any]] = {"geometry_msgs/msg/Quaternion": {"w": 1.0}}
# rosbags base type -> numpy dtype of its array fields ("char" and "byte" are octets in ROS 2).
_NUMPY_TYPES = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
    "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}  # fmt: skip


class RosbagsFactory(MessageFactory):
    """Message classes of a rosbags ``Typestore`` (``store.types[name]``), whose dataclasses have
    no defaults and whose serialiser wants numpy arrays of the exact element type for array
    fields; constructors here supply both."""

    def __init__(self, store) -> None:
        super().__init__()
        self.store = store

    def _make_constructor(self, typename: str) -> Callable[..., Any]:
        from rosbags.interfaces import Nodetype

        cls = self.store.types[typename]
        defaults: dict[str, Callable[[], Any]] = {}
        arrays: dict[str, Any] = {}
        for name, (kind, detail) in self.store.fielddefs[typename][1]:
            declared = _ROS_DEFAULTS.get(typename, {})
            if name in declared:
                defaults[name] = lambda value=declared[name]: value
            elif kind == Nodetype.NAME:
                defaults[name] = lambda sub=detail: self.new(sub)
            elif kind == Nodetype.BASE:
                defaults[name] = _base_default(detail[0])
            else:  # ARRAY (fixed size) or SEQUENCE; detail = (element description, size or bound)
                (element_kind, element), size = detail
                dtype = _NUMPY_TYPES.get(element[0]) if element_kind == Nodetype.BASE else None
                if dtype is not None:
                    arrays[name] = dtype
                    defaults[name] = lambda dtype=dtype, n=(size if kind == Nodetype.ARRAY else 0): np.zeros(n, dtype)
                elif element_kind == Nodetype.NAME:
                    n = size if kind == Nodetype.ARRAY else 0
                    defaults[name] = lambda sub=element, n=n: [self.new(sub) for _ in range(n)]
                else:  # strings
                    defaults[name] = lambda n=(size if kind == Nodetype.ARRAY else 0): [""] * n

        def construct(**fields: Any):
            for name, dtype in arrays.items():
                if name in fields:
                    fields[name] = _numpy_array(fields[name], dtype)
            for name, default in defaults.items():
                if name not in fields:
                    fields[name] = default()
            return cls(**fields)

        return construct


def _base_default(base_type: str) -> Callable[[], Any]:
    if base_type in ("string", "bounded_string"):
        return str
    if base_type == "bool":
        return bool
    if base_type.startswith("float"):
        return float
    return int


def _numpy_array(value: Any, dtype) -> np.ndarray:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return np.frombuffer(value, dtype=np.uint8).view(dtype)
    return np.ascontiguousarray(value, dtype=dtype).reshape(-1)


@lru_cache(maxsize=8)
def _factory(store) -> RosbagsFactory:
    return RosbagsFactory(store)


def bag_factory(store=None) -> RosbagsFactory:
    """The message factory of ``store`` (default: :func:`~egopress_core.rosbag.typestore.egopress_typestore`),
    one per store so that its constructors are made once."""
    if store is None:
        from egopress_core.rosbag.typestore import egopress_typestore

        store = egopress_typestore()
    return _factory(store)


# ----------------------------------------------------------------------------------------------
# Camera images as bags hold them
# ----------------------------------------------------------------------------------------------


def color_to_rgb(msg, msgtype: str = IMAGE) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a colour ``Image`` or a JPEG / PNG ``CompressedImage``."""
    if msgtype == COMPRESSED_IMAGE:
        return _decode_compressed(msg)
    if msgtype != IMAGE:
        raise UnsupportedEncoding(f"colour topic has type {msgtype}; expected {IMAGE} or {COMPRESSED_IMAGE}")
    return image_encodings.decode_color(msg, f"check {TOPIC_OPTIONS['color']}")


def _decode_compressed(msg) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if is_compressed_depth(str(msg.format)):
        raise UnsupportedEncoding(f"CompressedImage format {msg.format!r} is a compressed depth image, not colour")
    try:
        with Image.open(io.BytesIO(np.asarray(msg.data, dtype=np.uint8).tobytes())) as image:
            if image.format not in ("JPEG", "PNG"):
                raise UnsupportedEncoding(f"CompressedImage holds {image.format}; JPEG and PNG are supported")
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise UnsupportedEncoding(f"CompressedImage (format {msg.format!r}) cannot be decoded: {error}") from None


def depth_to_metres(msg, msgtype: str = IMAGE) -> np.ndarray:
    """(H, W) float32 metres of a depth ``Image`` or a compressedDepth ``CompressedImage``
    (:mod:`~egopress_core.rosbag.compressed_depth`); missing readings are 0."""
    if msgtype == COMPRESSED_IMAGE:
        depth = decode_compressed_depth(str(msg.format), np.asarray(msg.data, dtype=np.uint8).tobytes())
    elif msgtype != IMAGE:
        raise UnsupportedEncoding(f"depth topic has type {msgtype}; expected {IMAGE} (16UC1 / mono16 / 32FC1) "
                                  f"or a compressedDepth {COMPRESSED_IMAGE}")
    else:
        depth = image_encodings.decode_depth(msg, f"check {TOPIC_OPTIONS['depth']}")
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0.0)).astype(np.float32, copy=False)
