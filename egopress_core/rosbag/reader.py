"""Reading rosbag2 recordings read-only with ``rosbags``, surviving damaged parts.

:class:`BagReader` opens a rosbag2 folder (sqlite3 or mcap, uncompressed or zstd-compressed per
file, per message or per mcap chunk) or a single ``.mcap`` / ``.db3`` file. The input is never
written to: rosbags opens sqlite3 databases ``immutable`` and mcap files read-only.

Damaged data: ``rosbags`` yields messages in timestamp order and raises when it reaches data it
cannot decode (a corrupt mcap chunk, a malformed sqlite page, a truncated file). Every message
yielded before the error is good, so :meth:`BagReader.messages` keeps them, then searches for the
first time from which reading works again (exponential then binary search on the start time, to
``resolution_ns``), records the time range in between as unreadable, and continues there. Each
damaged region costs O(log(duration / resolution)) short reads. A bag damaged in more places than
``max_unreadable_ranges`` is refused as a whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from egopress_core.errors import DataError

STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}


@dataclass(frozen=True)
class UnreadableRange:
    """Bag time [start_ns, stop_ns) that could not be read for ``topics``, and why."""

    start_ns: int
    stop_ns: int
    topics: tuple[str, ...]
    error: str

    def to_dict(self) -> dict:
        return {"start_ns": self.start_ns, "stop_ns": self.stop_ns, "seconds": (self.stop_ns - self.start_ns) / 1e9,
                "topics": list(self.topics), "error": self.error}


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class BagReader:
    """A rosbag2 recording opened for reading.

    Args:
        path: rosbag2 folder (with ``metadata.yaml``) or a single ``.mcap`` / ``.db3`` file.
        resolution_ns: time resolution of the search for the end of a damaged region.
        max_unreadable_ranges: more damaged regions than this is a :class:`DataError`.

    Raises:
        DataError: the path is not a readable rosbag2 (the message says why).
    """

    def __init__(self, path: str | os.PathLike, resolution_ns: int = 1_000_000, max_unreadable_ranges: int = 256) -> None:
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        self.resolution_ns = int(resolution_ns)
        self.max_unreadable_ranges = int(max_unreadable_ranges)
        if not self.path.exists():
            raise DataError(f"{self.path}: no such bag")
        if self.path.is_file() and self.path.suffix not in STORAGE_SUFFIXES:
            raise DataError(f"{self.path}: not a rosbag2 (expected a bag folder, or a .mcap / .db3 file)")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except FileNotFoundError:
            raise DataError(
                f"{self.path}: not a rosbag2 folder, metadata.yaml is missing (an interrupted recording? "
                f"`ros2 bag reindex {self.path}` rebuilds it)"
            ) from None
        except Exception as error:  # noqa: BLE001 - rosbags, sqlite3 and zstd raise their own kinds
            raise DataError(f"{self.path}: cannot open the bag: {_describe(error)} (a truncated or corrupt file? A recording "
                            "cut off before it was closed can often be repaired: `mcap recover` for mcap, "
                            "`ros2 bag reindex` for a lost metadata.yaml)") from None
        self.storage_identifier = self._storage_identifier()
        self.unreadable: list[UnreadableRange] = []
        self._known_bad: dict[frozenset[int], list[tuple[int, int]]] = {}

    # -- metadata --------------------------------------------------------------------------

    def _storage_identifier(self) -> str:
        if self.path.is_file():
            return STORAGE_SUFFIXES[self.path.suffix]
        import yaml

        # rosbags read and checked the file already; only the field it does not expose is taken.
        metadata = yaml.safe_load((self.path / "metadata.yaml").read_text())
        return str(metadata["rosbag2_bagfile_information"]["storage_identifier"])

    @property
    def connections(self) -> list:
        return list(self._reader.connections)

    @property
    def topics(self) -> dict[str, str]:
        """topic -> message type."""
        return {connection.topic: connection.msgtype for connection in self._reader.connections}

    def connections_of(self, topic: str) -> list:
        return [connection for connection in self._reader.connections if connection.topic == topic]

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        """One past the last message's bag time."""
        return int(self._reader.end_time)

    @property
    def message_count(self) -> int:
        return int(self._reader.message_count)

    @property
    def compression(self) -> str:
        mode = self._reader.compression_mode
        return f"{mode} ({self._reader.compression_format})" if mode else "none"

    def files(self) -> list[Path]:
        """The files making up the bag (what the input fingerprint covers)."""
        if self.path.is_file():
            return [self.path]
        return sorted(path for path in self.path.iterdir() if path.is_file())

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- messages --------------------------------------------------------------------------

    def messages(self, connections, start_ns: int | None = None, stop_ns: int | None = None) -> Iterator[tuple]:
        """(connection, bag time ns, raw CDR bytes) of ``connections`` in [start_ns, stop_ns), in
        time order, skipping (and recording in :attr:`unreadable`) damaged regions."""
        connections = list(connections)
        if not connections:
            return
        start = self.start_ns if start_ns is None else int(start_ns)
        stop = self.end_ns if stop_ns is None else int(stop_ns)
        key = frozenset(connection.id for connection in connections)
        cursor = start
        for bad_start, bad_stop in sorted(self._known_bad.get(key, [])):
            if bad_stop <= cursor or bad_start >= stop:
                continue
            yield from self._read_span(connections, key, cursor, min(bad_start, stop))
            cursor = max(cursor, bad_stop)
        if cursor < stop:
            yield from self._read_span(connections, key, cursor, stop)

    def _read_span(self, connections, key, start: int, stop: int) -> Iterator[tuple]:
        cursor = start
        while cursor < stop:
            last = None
            try:
                for connection, timestamp, data in self._reader.messages(connections, cursor, stop):
                    last = timestamp
                    yield connection, timestamp, data
                return
            except Exception as error:  # noqa: BLE001 - whatever the storage raises on damaged data
                failed = cursor if last is None else last + 1
                resume = self._recovery_point(connections, failed, stop)
                self._record(connections, key, failed, resume, error)
                cursor = resume

    def _readable_from(self, connections, start: int, stop: int) -> bool:
        try:
            next(iter(self._reader.messages(connections, start, stop)), None)
        except Exception:  # noqa: BLE001
            return False
        return True

    def _recovery_point(self, connections, failed: int, stop: int) -> int:
        """Smallest start time after ``failed`` (to the resolution) from which reading works."""
        low, step = failed, self.resolution_ns
        high = stop
        while failed + step < stop:
            probe = failed + step
            if self._readable_from(connections, probe, stop):
                high = probe
                break
            low, step = probe, step * 2
        while high - low > self.resolution_ns:
            middle = (low + high) // 2
            if self._readable_from(connections, middle, stop):
                high = middle
            else:
                low = middle
        return high

    def _record(self, connections, key, start: int, stop: int, error: BaseException) -> None:
        self._known_bad.setdefault(key, []).append((start, stop))
        topics = tuple(sorted({connection.topic for connection in connections}))
        self.unreadable.append(UnreadableRange(start, stop, topics, _describe(error)))
        if len(self.unreadable) > self.max_unreadable_ranges:
            raise DataError(
                f"{self.path}: more than {self.max_unreadable_ranges} damaged regions; the bag is too damaged to "
                f"read (last: {_describe(error)} between bag times {start} and {stop} ns)"
            )

    def unreadable_report(self) -> list[dict]:
        """:attr:`unreadable` as JSON-ready dicts, merged per time range."""
        merged: dict[tuple[int, int], dict] = {}
        for item in self.unreadable:
            entry = merged.setdefault((item.start_ns, item.stop_ns), item.to_dict())
            entry["topics"] = sorted(set(entry["topics"]) | set(item.topics))
        return [merged[key] for key in sorted(merged)]
