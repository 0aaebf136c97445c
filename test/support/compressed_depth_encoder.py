"""The encoder side of compressed_depth_image_transport, for writing test bags: a plain,
pixel-by-pixel port of the transport's ``codec.cpp`` (``encodeCompressedDepthImage``) and
``rvl_codec.cpp`` (``CompressRVL``), kept apart from the library's vectorised decoder so that the
two are independent implementations of the same format."""

from __future__ import annotations

import io
import struct

import numpy as np

# The transport's publisher defaults (compressed_depth_publisher: depth_max 10 m, depth_quantization 100).
DEPTH_MAX_M = 10.0
DEPTH_QUANTIZATION = 100.0


class _NibbleWriter:
    def __init__(self) -> None:
        self.words: list[int] = []
        self.word = 0
        self.written = 0

    def vle(self, value: int) -> None:
        while True:
            nibble = value & 0x7
            value >>= 3
            if value:
                nibble |= 0x8
            self.word = ((self.word << 4) | nibble) & 0xFFFFFFFF
            self.written += 1
            if self.written == 8:
                self.words.append(self.word)
                self.word, self.written = 0, 0
            if not value:
                return

    def finish(self) -> bytes:
        if self.written:
            self.words.append((self.word << 4 * (8 - self.written)) & 0xFFFFFFFF)
        return struct.pack(f"<{len(self.words)}I", *self.words)


def compress_rvl(image: np.ndarray) -> bytes:
    """uint16 (H, W) -> width, height and the RVL stream."""
    pixels = [int(v) for v in np.asarray(image, dtype=np.uint16).ravel()]
    writer, index, previous = _NibbleWriter(), 0, 0
    while index < len(pixels):
        zeros = 0
        while index < len(pixels) and pixels[index] == 0:
            index, zeros = index + 1, zeros + 1
        writer.vle(zeros)
        nonzeros = 0
        while index + nonzeros < len(pixels) and pixels[index + nonzeros]:
            nonzeros += 1
        writer.vle(nonzeros)
        for _ in range(nonzeros):
            current = pixels[index]
            delta = current - previous
            writer.vle(((delta << 1) ^ (delta >> 31)) & 0xFFFFFFFF)
            previous, index = current, index + 1
    height, width = image.shape
    return struct.pack("<II", width, height) + writer.finish()


def encode_compressed_depth(depth: np.ndarray, encoding: str, codec: str = "png",
                            old_format: bool = False) -> tuple[str, bytes]:
    """(format, data) of a CompressedImage carrying ``depth``: uint16 millimetres for 16UC1,
    float32 metres (NaN = no reading) for 32FC1. ``old_format``: the format string of publishers
    from before the codec was named ("16UC1; compressedDepth")."""
    quant_a = quant_b = 0.0
    if encoding == "32FC1":
        quant_a = DEPTH_QUANTIZATION * (DEPTH_QUANTIZATION + 1.0)
        quant_b = 1.0 - quant_a / DEPTH_MAX_M
        metres = np.asarray(depth, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            quantised = np.float32(quant_a) / metres + np.float32(quant_b)
        values = np.where(metres < DEPTH_MAX_M, quantised, 0).astype(np.uint16)  # NaN < max is False: 0
    else:
        values = np.asarray(depth, dtype=np.uint16).copy()
        values[values > int(DEPTH_MAX_M * 1000)] = 0
    if codec == "png":
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(values).save(buffer, format="PNG")
        payload = buffer.getvalue()
    else:
        payload = compress_rvl(values)
    header = struct.pack("<iff", 0, quant_a, quant_b)
    image_format = f"{encoding}; compressedDepth" if old_format else f"{encoding}; compressedDepth {codec}"
    return image_format, header + payload
