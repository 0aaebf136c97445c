"""Reading rosbag2 recordings read-only with ``rosbags``, surviving damaged parts.

:class:`BagReader` opens a rosbag2 folder (sqlite3 or mcap, uncompressed or zstd-compressed per
file, per message or per mcap chunk) or a single ``.mcap`` / ``.db3`` file. The input is never
written to: rosbags opens sqlite3 databases ``immutable`` and mcap files read-only.

Every message of every connection: ``rosbags``' folder reader pairs the connections of
``metadata.yaml`` with those of the storage files only when their offered QoS profiles are equal,
and silently yields nothing for a connection whose profiles differ (rosbag2 itself writes
deadline / lifespan as 0 in one and as the largest duration in the other). :class:`BagReader`
pairs them by topic and type alone, reads each storage file itself, and adds connections that
only the storage files know, so what the files hold is what is read; :meth:`BagReader.topic_counts`
gives, per topic, the count ``metadata.yaml`` claims and the count the storage files hold.

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
from pathlib import Path, PurePath
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


def _zstd_decompress(data: bytes) -> bytes:
    try:
        from compression import zstd  # Python 3.14
    except ImportError:
        from backports import zstd
    return zstd.decompress(data)


def _repair_hint(path: Path) -> str:
    """How a recording cut off before it was closed is repaired, for the storage it uses."""
    files = [path] if path.is_file() else sorted(path.glob("*.mcap")) + sorted(path.glob("*.db3"))
    if any(item.suffix == ".mcap" for item in files):
        return " (a truncated or corrupt .mcap? A recording cut off before it was closed can often be repaired with `mcap recover`)"
    if any(item.suffix == ".db3" for item in files):
        return " (a truncated or corrupt .db3? Check it with `sqlite3 FILE 'PRAGMA integrity_check'`)"
    return ""


METADATA_KEYS = ("version", "storage_identifier", "relative_file_paths", "duration", "starting_time", "message_count",
                 "topics_with_message_count")


def read_metadata(folder: Path) -> dict:
    """``rosbag2_bagfile_information`` of a bag folder's ``metadata.yaml``, checked for what
    reading needs.

    Raises:
        DataError: missing, unreadable, empty, not YAML, or lacking a key (naming it), with the fix.
    """
    import yaml

    path = folder / "metadata.yaml"
    fix = f"`ros2 bag reindex {folder}` rebuilds it from the storage files"
    if not path.is_file():
        raise DataError(f"{folder}: not a rosbag2 folder, metadata.yaml is missing (an interrupted recording? {fix})")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text (byte {error.start} is {error.object[error.start]:#04x}): a "
                        f"damaged file; {fix}") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read it ({error.strerror})") from None
    if not text.strip():
        raise DataError(f"{path} is empty; {fix}")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DataError(f"{path} is not valid YAML ({str(error).splitlines()[0]}); {fix}") from None
    if not isinstance(document, dict) or not isinstance(document.get("rosbag2_bagfile_information"), dict):
        raise DataError(f"{path} has no rosbag2_bagfile_information section; {fix}")
    information = document["rosbag2_bagfile_information"]
    missing = [key for key in METADATA_KEYS if key not in information]
    if missing:
        raise DataError(f"{path} is incomplete: rosbag2_bagfile_information lacks {', '.join(missing)}; {fix}")
    return information


# Every ROS 1 bag (format 2.0, the only one rosbag1 has written since 2010) starts with this line.
ROS1_BAG_MAGIC = b"#ROSBAG V2.0\n"


def is_ros1_bag(path: Path) -> bool:
    """Whether ``path`` is a ROS 1 bag file (which EgoPress does not read): a ``.bag`` file with
    the format's first line (other files are not opened: folders of recordings hold many)."""
    if path.suffix != ".bag":
        return False
    try:
        with open(path, "rb") as file:
            return file.read(len(ROS1_BAG_MAGIC)) == ROS1_BAG_MAGIC
    except (IsADirectoryError, FileNotFoundError, PermissionError):
        return False


def ros1_bag_message(path: Path) -> str:
    """What to do with a ROS 1 bag: the conversion command, with rosbags' own converter."""
    return (f"{path}: a ROS 1 bag; EgoPress reads rosbag2: convert it with `rosbags-convert --src {path} "
            f"--dst {path.with_suffix('')} --dst-storage mcap` (installed with rosbags) and pass that folder")


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
            if is_ros1_bag(self.path):
                raise DataError(ros1_bag_message(self.path))
            raise DataError(f"{self.path}: not a rosbag2 (expected a bag folder, or a .mcap / .db3 file)")
        if self.path.is_dir():
            self._metadata = read_metadata(self.path)
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except FileNotFoundError:
            raise DataError(
                f"{self.path}: not a rosbag2 folder, metadata.yaml is missing (an interrupted recording? "
                f"`ros2 bag reindex {self.path}` rebuilds it)"
            ) from None
        except Exception as error:  # noqa: BLE001 - rosbags, sqlite3 and zstd raise their own kinds
            raise DataError(f"{self.path}: cannot open the bag: {_describe(error)}{_repair_hint(self.path)}") from None
        self.storage_identifier = self._storage_identifier()
        self.unreadable: list[UnreadableRange] = []
        self._known_bad: dict[frozenset[int], list[tuple[int, int]]] = {}
        self._integrity: list[dict] | None = None
        self._reconcile_connections()

    # -- metadata --------------------------------------------------------------------------

    def _storage_identifier(self) -> str:
        if self.path.is_file():
            return STORAGE_SUFFIXES[self.path.suffix]
        return str(self._metadata["storage_identifier"])

    def _storages(self) -> list:
        """The opened storage files (one for a single-file bag)."""
        storage = self._reader.storage
        return list(getattr(storage, "storages", [storage]))

    def _reconcile_connections(self) -> None:
        """Pair the storage files' connections with the metadata's by topic and type (not QoS).

        A storage connection without a metadata twin becomes a connection of its own; its
        count comes from the storage. Each storage file's connection ids map onto these.
        """
        connections = list(self._reader.connections)
        by_key: dict[tuple[str, str], object] = {}
        for connection in connections:
            by_key.setdefault((connection.topic, connection.msgtype), connection)
        self._storage_maps: list[dict[int, object]] = []
        self._storage_counts: dict[int, int] = {}
        for storage in self._storages():
            mapping: dict[int, object] = {}
            for storage_connection in storage.connections:
                key = (storage_connection.topic, storage_connection.msgtype)
                ours = by_key.get(key)
                if ours is None:
                    ours = storage_connection._replace(id=len(connections) + 1, owner=self)
                    connections.append(ours)
                    by_key[key] = ours
                mapping[storage_connection.id] = ours
                self._storage_counts[ours.id] = self._storage_counts.get(ours.id, 0) + int(storage_connection.msgcount)
            self._storage_maps.append(mapping)
        self._connections = connections

    @property
    def connections(self) -> list:
        return list(self._connections)

    @property
    def topics(self) -> dict[str, str]:
        """topic -> message type."""
        return {connection.topic: connection.msgtype for connection in self._connections}

    def connections_of(self, topic: str) -> list:
        return [connection for connection in self._connections if connection.topic == topic]

    def topic_counts(self) -> dict[str, dict[str, int | None]]:
        """Per topic, the messages ``metadata.yaml`` lists (None for a single-file bag or a topic
        it does not know) and the messages the storage files' own index holds."""
        counts: dict[str, dict[str, int | None]] = {}
        metadata_ids = {connection.id for connection in self._reader.connections}
        single_file = self.path.is_file()
        for connection in self._connections:
            entry = counts.setdefault(connection.topic, {"metadata": None, "storage": 0})
            if not single_file and connection.id in metadata_ids:
                entry["metadata"] = (entry["metadata"] or 0) + int(connection.msgcount)
            entry["storage"] += self._storage_counts.get(connection.id, 0)
        return counts

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        """One past the last message's bag time."""
        return int(self._reader.end_time)

    @property
    def message_count(self) -> int:
        """Messages the storage files hold (what reading yields when nothing is damaged)."""
        return int(sum(self._storage_counts.values()))

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
                for connection, timestamp, data in self._storage_messages(connections, cursor, stop):
                    last = timestamp
                    yield connection, timestamp, data
                return
            except Exception as error:  # noqa: BLE001 - whatever the storage raises on damaged data
                failed = cursor if last is None else last + 1
                resume = self._recovery_point(connections, failed, stop)
                self._record(connections, key, failed, resume, error)
                cursor = resume

    def _storage_messages(self, connections, start: int, stop: int) -> Iterator[tuple]:
        """What rosbags' folder reader yields, but pairing connections by id map, not QoS."""
        wanted = {connection.id for connection in connections}
        per_message = self._reader.compression_mode == "message"
        for storage, mapping in zip(self._storages(), self._storage_maps):
            storage_connections = [c for c in storage.connections if mapping[c.id].id in wanted]
            if not storage_connections:
                continue
            for storage_connection, timestamp, data in storage.messages(storage_connections, start, stop):
                yield mapping[storage_connection.id], timestamp, (_zstd_decompress(data) if per_message else data)

    def _readable_from(self, connections, start: int, stop: int) -> bool:
        try:
            next(iter(self._storage_messages(connections, start, stop)), None)
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

    def integrity_report(self) -> list[dict]:
        """Per mcap storage file, its chunks checked against their CRCs
        (:func:`~egopress_core.rosbag.mcap_integrity.scan`; computed once). Files without CRCs
        are listed with ``chunks_with_crc`` 0: damage inside their chunks cannot be detected."""
        if self._integrity is None:
            from egopress_core.rosbag.mcap_integrity import scan

            names = [] if self.path.is_file() else self._metadata["relative_file_paths"]
            files = [self.path] if self.path.is_file() else [self.path / PurePath(name).name for name in names]
            self._integrity = []
            for path in files:
                if path.suffix != ".mcap":
                    continue
                try:
                    self._integrity.append(scan(path).to_dict())
                except DataError as error:  # reading may still work record by record; say so
                    self._integrity.append({"file": path.name, "error": str(error), "damaged_chunks": []})
        return self._integrity

    def unreadable_report(self) -> list[dict]:
        """:attr:`unreadable` as JSON-ready dicts, merged per time range."""
        merged: dict[tuple[int, int], dict] = {}
        for item in self.unreadable:
            entry = merged.setdefault((item.start_ns, item.stop_ns), item.to_dict())
            entry["topics"] = sorted(set(entry["topics"]) | set(item.topics))
        return [merged[key] for key in sorted(merged)]
