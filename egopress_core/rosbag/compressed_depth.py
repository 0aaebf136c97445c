"""Depth images as ``compressed_depth_image_transport`` writes them (``.../compressedDepth`` topics).

Bags recorded to save disk often hold the depth stream through this transport: a
``sensor_msgs/CompressedImage`` whose ``format`` is ``"<encoding>; compressedDepth <codec>"``
("png" or "rvl"; older publishers write ``"<encoding>; compressedDepth"``, meaning png) and whose
``data`` is a 12-byte header (int32 format, float32 ``depthParam[2]``), then the codec's bytes:

- ``16UC1`` / ``mono16``: the millimetres themselves, losslessly (values beyond the publisher's
  ``depth_max`` were written as 0);
- ``32FC1``: metres quantised as inverse depth, ``q = A / depth + B`` (uint16, 0 = no reading),
  with ``A, B = depthParam``; decoded as ``depth = A / (q - B)``.

The codecs: png through Pillow; RVL (Wilson's run-length / variable-length coding, the transport's
``rvl_codec.cpp``) here, vectorised with numpy. No Python library reads this transport:
``rosbags-image`` decodes plain JPEG / PNG only, and the transport's own decoder is C++ inside ROS.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from egopress_core.image_encodings import ImageEncodingError

HEADER = struct.Struct("<iff")  # compressionFormat (INV_DEPTH = 0), depthParam[0], depthParam[1]
MILLIMETRE_ENCODINGS = ("16UC1", "mono16")
INVERSE_DEPTH_ENCODING = "32FC1"
CODECS = ("png", "rvl")


def is_compressed_depth(image_format: str) -> bool:
    """Whether a CompressedImage ``format`` names this transport."""
    return "compresseddepth" in image_format.lower()


def parse_format(image_format: str) -> tuple[str, str]:
    """(encoding, codec) of a compressedDepth ``format``; raises ImageEncodingError otherwise."""
    encoding, _, transport = (part.strip() for part in image_format.partition(";"))
    words = transport.split()
    if not words or words[0].lower() != "compresseddepth":
        raise ImageEncodingError(f"CompressedImage format {image_format!r} is not a compressedDepth image "
                                 "(compressed_depth_image_transport); is the topic a colour stream?")
    codec = words[1].lower() if len(words) > 1 else "png"
    if codec not in CODECS:
        raise ImageEncodingError(f"compressedDepth codec {codec!r} is not supported; expected one of {list(CODECS)}")
    if encoding not in (*MILLIMETRE_ENCODINGS, INVERSE_DEPTH_ENCODING):
        raise ImageEncodingError(f"compressedDepth image of encoding {encoding!r} is not supported; expected one of "
                                 f"{[*MILLIMETRE_ENCODINGS, INVERSE_DEPTH_ENCODING]}")
    return encoding, codec


def decode_compressed_depth(image_format: str, data: bytes) -> np.ndarray:
    """(H, W) float32 metres of a compressedDepth image; missing readings are NaN.

    Raises:
        ImageEncodingError: another format, an unsupported encoding or codec, or damaged data.
    """
    encoding, codec = parse_format(image_format)
    data = bytes(data)
    if len(data) <= HEADER.size:
        raise ImageEncodingError(f"compressedDepth image of {len(data)} bytes has no image after its "
                                 f"{HEADER.size}-byte header")
    _, quant_a, quant_b = HEADER.unpack_from(data)
    payload = data[HEADER.size:]
    values = _png(payload) if codec == "png" else _rvl(payload)
    if encoding in MILLIMETRE_ENCODINGS:
        return np.where(values > 0, values.astype(np.float32) * np.float32(0.001), np.float32(np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        metres = np.float32(quant_a) / (values.astype(np.float32) - np.float32(quant_b))
    return np.where(values > 0, metres, np.float32(np.nan)).astype(np.float32)


def _png(payload: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(payload)) as image:
            if image.format != "PNG":
                raise ImageEncodingError(f"compressedDepth png image holds {image.format}")
            values = np.asarray(image)
    except (UnidentifiedImageError, OSError) as error:
        raise ImageEncodingError(f"compressedDepth png image cannot be decoded: {error}") from None
    if values.ndim != 2 or values.dtype.kind not in "ui" or values.max(initial=0) > 0xFFFF:
        raise ImageEncodingError(f"compressedDepth png image is {values.dtype} of shape {values.shape}; "
                                 "expected one 16-bit channel")
    return values.astype(np.uint16)


def _rvl(payload: bytes) -> np.ndarray:
    """uint16 image of an RVL stream: uint32 width, height, then 32-bit little-endian words of
    4-bit nibbles, most significant first; each value is a run of 3-bit groups, least significant
    first, whose nibbles carry 0x8 while more follow. The values are, repeated: a count of zero
    pixels, a count of non-zero pixels, and for each of those the zigzag-coded difference to the
    previous non-zero pixel."""
    if len(payload) < 8:
        raise ImageEncodingError("compressedDepth rvl image is shorter than its 8-byte size")
    width, height = struct.unpack_from("<II", payload)
    pixels = width * height
    words = np.frombuffer(payload, dtype="<u4", count=(len(payload) - 8) // 4, offset=8)
    # The transport's own sanity bound: RVL compresses at most ~4:1 (2 bytes a pixel).
    if not pixels or pixels > 5 * len(payload):
        raise ImageEncodingError(f"compressedDepth rvl image reports {width}x{height} pixels for {len(payload)} bytes")
    nibbles = ((words[:, None] >> np.arange(28, -4, -4, dtype=np.uint32)) & 0xF).ravel().astype(np.int64)
    last = (nibbles & 0x8) == 0
    value_of = np.concatenate(([0], np.cumsum(last)[:-1]))  # which value each nibble belongs to
    first = np.concatenate(([0], np.flatnonzero(last) + 1))  # each value's first nibble
    shift = 3 * (np.arange(nibbles.size) - first[value_of])
    if shift.max(initial=0) > 30:
        raise ImageEncodingError("compressedDepth rvl image is damaged (a value longer than 32 bits)")
    # Nibbles after the last complete value (none from a well-formed stream) are left out.
    count = int(last.sum())
    values = np.bincount(value_of, weights=(nibbles & 0x7) << shift, minlength=count)[:count].astype(np.int64)

    # Runs are sequential (each count says where the next begins): walk them with plain ints,
    # then place the pixels of all runs at once.
    counts = values.tolist()
    run_pixel, run_value, run_length = [], [], []
    cursor, pixel = 0, 0
    while pixel < pixels:
        if cursor + 1 >= len(counts):
            raise ImageEncodingError(f"compressedDepth rvl image ends after {pixel} of {pixels} pixels")
        pixel += counts[cursor]
        nonzeros = counts[cursor + 1]
        if pixel + nonzeros > pixels:
            raise ImageEncodingError(f"compressedDepth rvl image is damaged (a run passes its last pixel, {pixels})")
        if cursor + 2 + nonzeros > len(counts):
            raise ImageEncodingError(f"compressedDepth rvl image ends after {pixel} of {pixels} pixels")
        run_pixel.append(pixel)
        run_value.append(cursor + 2)
        run_length.append(nonzeros)
        pixel += nonzeros
        cursor += 2 + nonzeros
    lengths = np.asarray(run_length, dtype=np.int64)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    zigzag = values[np.repeat(np.asarray(run_value, dtype=np.int64), lengths) + within]
    deltas = (zigzag >> 1) ^ -(zigzag & 1)
    image = np.zeros(pixels, dtype=np.uint16)
    image[np.repeat(np.asarray(run_pixel, dtype=np.int64), lengths) + within] = (np.cumsum(deltas) & 0xFFFF).astype(np.uint16)
    return image.reshape(height, width)
