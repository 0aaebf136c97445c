"""CRCs of mcap files: written into what EgoPress writes, checked in what it reads.

MCAP carries a CRC-32 of every chunk's uncompressed records and of the whole data section
(``docs/design.md``, "Recorded data"). ``rosbags`` writes both as 0 ("not available"), so nobody
downstream could tell a damaged chunk from a good one. :func:`add_crcs` fills them in place after
``rosbags`` has closed a file (the record sizes do not change, so every offset in the summary
stays valid); :func:`scan` reads a file with the ``mcap`` package and lists each chunk whose CRC
does not match, or that cannot be decoded, with its time range and per-topic message counts, so a
reader can say what was lost instead of labelling garbage.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from egopress_core.errors import DataError

_MAGIC = b"\x89MCAP0\r\n"
_CHUNK = 0x06
_DATA_END = 0x0F
_FOOTER_SIZE = 1 + 8 + 8 + 8 + 4
# Chunk record body: start time, end time, uncompressed size (8 bytes each), then the CRC.
_CHUNK_CRC_OFFSET = 8 + 8 + 8


@dataclass(frozen=True)
class DamagedChunk:
    """A chunk whose records cannot be trusted: bag time [start_ns, end_ns], messages per topic."""

    file: str
    start_ns: int
    end_ns: int
    messages: dict[str, int]
    error: str

    def to_dict(self) -> dict:
        return {"file": self.file, "start_ns": self.start_ns, "end_ns": self.end_ns,
                "messages": dict(self.messages), "error": self.error}


@dataclass
class ScanResult:
    """What :func:`scan` found in one file."""

    file: str
    chunks: int = 0
    chunks_with_crc: int = 0
    data_crc: str = "absent"  # "absent", "ok" or "mismatch"
    damaged: list[DamagedChunk] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"file": self.file, "chunks": self.chunks, "chunks_with_crc": self.chunks_with_crc,
                "data_crc": self.data_crc, "damaged_chunks": [item.to_dict() for item in self.damaged]}


def _decompress(compression: str, data: bytes, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    raise DataError(f"unsupported mcap chunk compression {compression!r}")


def _record_header(stream) -> tuple[int, int] | None:
    header = stream.read(9)
    if len(header) < 9:
        return None
    return header[0], struct.unpack("<Q", header[1:])[0]


def add_crcs(path: str | os.PathLike) -> int:
    """Fill in the chunk and data-section CRCs of an mcap file written without them, in place
    (call it before the file is moved to its final name). Memory stays at one chunk. Returns the
    number of chunks given a CRC.

    Raises:
        DataError: not an mcap file, or records that do not parse.
    """
    path = Path(path)
    chunks = 0
    data_crc = 0
    with path.open("r+b") as stream:
        magic = stream.read(len(_MAGIC))
        if magic != _MAGIC:
            raise DataError(f"{path}: not an mcap file (bad magic)")
        data_crc = zlib.crc32(magic)
        while True:
            start = stream.tell()
            header = _record_header(stream)
            if header is None:
                raise DataError(f"{path}: no DataEnd record; the file was not closed")
            opcode, length = header
            if opcode == _DATA_END:
                # The data section CRC covers every byte before the DataEnd record, magic included.
                stream.seek(start + 9)
                stream.write(struct.pack("<I", data_crc))
                break
            body = bytearray(stream.read(length))
            if len(body) != length:
                raise DataError(f"{path}: record at byte {start} runs past the end of the file")
            if opcode == _CHUNK:
                (uncompressed_size,) = struct.unpack_from("<Q", body, 16)
                (name_length,) = struct.unpack_from("<I", body, _CHUNK_CRC_OFFSET + 4)
                name_end = _CHUNK_CRC_OFFSET + 8 + name_length
                compression = bytes(body[_CHUNK_CRC_OFFSET + 8:name_end]).decode()
                (records_length,) = struct.unpack_from("<Q", body, name_end)
                records = bytes(body[name_end + 8:name_end + 8 + records_length])
                struct.pack_into("<I", body, _CHUNK_CRC_OFFSET,
                                 zlib.crc32(_decompress(compression, records, uncompressed_size)))
                stream.seek(start + 9)
                stream.write(body)
                chunks += 1
            data_crc = zlib.crc32(struct.pack("<BQ", opcode, length), data_crc)
            data_crc = zlib.crc32(body, data_crc)
    return chunks


def scan(path: str | os.PathLike) -> ScanResult:
    """Check every chunk of an mcap file against its CRC (where it has one) with the ``mcap``
    package, independently of the others, from the summary's chunk index: damage in one chunk
    does not hide the next.

    Raises:
        DataError: the file has no readable summary (a recording cut off before it was closed:
            ``mcap recover`` rebuilds it).
    """
    from mcap.exceptions import McapError
    from mcap.reader import make_reader
    from mcap.records import Chunk, MessageIndex
    from mcap.stream_reader import StreamReader, breakup_chunk

    path = Path(path)
    result = ScanResult(file=path.name)
    with path.open("rb") as stream:
        try:
            summary = make_reader(stream).get_summary()
        except (McapError, ValueError, struct.error, EOFError) as error:
            raise DataError(f"{path}: the mcap summary cannot be read ({error}); a recording cut off before it was "
                            "closed can often be repaired with `mcap recover`") from None
        if summary is None:
            raise DataError(f"{path}: the mcap file has no summary section; `mcap recover` rebuilds it")
        topics = {channel.id: channel.topic for channel in summary.channels.values()}
        for index in summary.chunk_indexes:
            result.chunks += 1
            stream.seek(index.chunk_start_offset)
            raw = stream.read(index.chunk_length + index.message_index_length)
            counts: dict[str, int] = {}
            try:
                records = _records_of(StreamReader(io.BytesIO(raw), skip_magic=True, emit_chunks=True))
                chunk = next(record for record in records if isinstance(record, Chunk))
                for record in records:
                    if isinstance(record, MessageIndex):
                        topic = topics.get(record.channel_id, f"channel {record.channel_id}")
                        counts[topic] = counts.get(topic, 0) + len(record.records)
                if chunk.uncompressed_crc:
                    result.chunks_with_crc += 1
                breakup_chunk(chunk, validate_crc=True)
            except Exception as error:  # noqa: BLE001 - CRC, decompression and parse errors alike
                result.damaged.append(DamagedChunk(path.name, int(index.message_start_time),
                                                   int(index.message_end_time), counts,
                                                   f"{type(error).__name__}: {error}".strip()))
        result.data_crc = _check_data_crc(stream)
    return result


def _records_of(reader) -> list:
    """The records of a chunk and its message indexes (a byte range of a file: it simply ends)."""
    from mcap.exceptions import EndOfFile

    records = []
    iterator = iter(reader.records)
    while True:
        try:
            records.append(next(iterator))
        except (StopIteration, EndOfFile):
            return records


def _check_data_crc(stream) -> str:
    """"absent", "ok" or "mismatch" for the data section CRC, read record by record."""
    stream.seek(0)
    running = zlib.crc32(stream.read(len(_MAGIC)))
    while True:
        header = _record_header(stream)
        if header is None:
            return "mismatch"  # no DataEnd record where the framing says it should be
        opcode, length = header
        if opcode == _DATA_END:
            stored = struct.unpack("<I", stream.read(4))[0]
            return "absent" if stored == 0 else ("ok" if stored == running else "mismatch")
        body = stream.read(length)
        if len(body) != length:
            return "mismatch"
        running = zlib.crc32(struct.pack("<BQ", opcode, length) + body, running)
