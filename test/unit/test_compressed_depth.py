"""Depth through compressed_depth_image_transport (egopress_core.rosbag.compressed_depth): a stream
worked out by hand from the transport's rvl_codec.cpp, round trips through an independent port of
its encoder (test/support/compressed_depth_encoder.py), and damaged or foreign input refused with
a reason."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from compressed_depth_encoder import DEPTH_MAX_M, compress_rvl, encode_compressed_depth

from egopress_core.image_encodings import ImageEncodingError
from egopress_core.rosbag.compressed_depth import _rvl, decode_compressed_depth, parse_format


def _depth_mm(seed: int, shape=(48, 64)) -> np.ndarray:
    """A hand-like blob in front of a table, with holes (0) as a structured-light sensor leaves."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    depth = 900 + 2 * rows + rng.integers(-3, 4, shape)
    depth[(rows - 20) ** 2 + (cols - 30) ** 2 < 120] = 450 + rng.integers(0, 30)
    depth[rng.random(shape) < 0.15] = 0
    depth[:, :5] = 0
    return depth.astype(np.uint16)


def test_rvl_stream_worked_out_by_hand():
    # [0, 0, 5, 5, 0, 7]: counts 2 and 2, deltas +5 (zigzag 10 = nibbles 0xA, 0x1) and 0, counts 1
    # and 1, delta +2 (zigzag 4): nibbles 2 2 A 1 0 1 1 4 = one word 0x22A10114.
    payload = struct.pack("<II", 6, 1) + struct.pack("<I", 0x22A10114)
    np.testing.assert_array_equal(_rvl(payload), [[0, 0, 5, 5, 0, 7]])
    assert compress_rvl(np.array([[0, 0, 5, 5, 0, 7]], dtype=np.uint16)) == payload


# The old format string ("16UC1; compressedDepth") named no codec: it was always png.
@pytest.mark.parametrize(("codec", "old_format"), [("png", False), ("rvl", False), ("png", True)])
def test_millimetres_round_trip_exactly(codec, old_format):
    depth = _depth_mm(1)
    depth[3, 10] = 65000  # beyond the publisher's depth_max: written as no reading
    image_format, data = encode_compressed_depth(depth, "16UC1", codec, old_format=old_format)
    metres = decode_compressed_depth(image_format, data)
    expected = np.where((depth > 0) & (depth <= DEPTH_MAX_M * 1000), depth / 1000.0, np.nan)
    np.testing.assert_allclose(metres, expected, rtol=0, atol=1e-6)
    assert metres.dtype == np.float32 and np.isnan(metres[3, 10])


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_metres_come_back_within_the_inverse_depth_quantisation(codec):
    metres = _depth_mm(2).astype(np.float32) / 1000.0
    metres[metres == 0] = np.nan
    image_format, data = encode_compressed_depth(metres, "32FC1", codec)
    decoded = decode_compressed_depth(image_format, data)
    np.testing.assert_array_equal(np.isnan(decoded), np.isnan(metres))
    # The transport's default quantisation keeps about 0.1 mm at half a metre, 1 mm at 1 m.
    assert np.nanmax(np.abs(decoded - metres)) < 1.5e-3


def test_rvl_survives_wrapping_deltas_and_a_stream_of_zeros():
    depth = np.array([[65535, 1, 0, 0, 40000, 2], [0, 0, 0, 0, 0, 0]], dtype=np.uint16)
    np.testing.assert_array_equal(_rvl(compress_rvl(depth)), depth)
    np.testing.assert_array_equal(_rvl(compress_rvl(np.zeros((3, 4), np.uint16))), np.zeros((3, 4)))


def test_foreign_and_damaged_input_is_refused_with_a_reason():
    with pytest.raises(ImageEncodingError, match="not a compressedDepth image"):
        parse_format("jpeg")
    with pytest.raises(ImageEncodingError, match="codec 'zstd' is not supported"):
        parse_format("16UC1; compressedDepth zstd")
    with pytest.raises(ImageEncodingError, match="encoding 'rgb8' is not supported"):
        parse_format("rgb8; compressedDepth png")
    image_format, data = encode_compressed_depth(_depth_mm(3), "16UC1", "rvl")
    with pytest.raises(ImageEncodingError, match="no image after its 12-byte header"):
        decode_compressed_depth(image_format, data[:12])
    with pytest.raises(ImageEncodingError, match="rvl image ends after"):
        decode_compressed_depth(image_format, data[: len(data) // 2])
    png_format, png = encode_compressed_depth(_depth_mm(3), "16UC1", "png")
    with pytest.raises(ImageEncodingError, match="png image cannot be decoded"):
        decode_compressed_depth(png_format, png[:12] + b"\x00" * 40)
