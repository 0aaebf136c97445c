"""Writing rosbag2 recordings with ``rosbags``, with the package's message definitions embedded.

Every connection carries its full ``ros2msg`` definition and RIHS01 type hash (rosbag2 format 8+),
so ``ros2 bag play``, Foxglove and ``rosbags`` read the custom ``egopress_ros`` messages without
the package installed. Copied connections keep the input's definition, hash, serialization
format and offered QoS profiles.
"""

from __future__ import annotations

import os
from pathlib import Path

from egopress_core.errors import ConfigError

STORAGES = ("sqlite3", "mcap")
COMPRESSIONS = ("none", "message", "file", "storage")
BAG_VERSIONS = (8, 9)
# A topic whose type is unknown and whose bag stores no definition still needs a hash for the
# writer; rosbag2 leaves it empty, rosbags requires one, so this placeholder marks "unknown".
UNKNOWN_TYPE_HASH = "RIHS01_" + "0" * 64


def default_qos(depth: int = 10):
    """Reliable, volatile, keep-last ``depth``: the QoS the live pressure node publishes with."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST, depth=depth, reliability=QosReliability.RELIABLE,
        durability=QosDurability.VOLATILE, deadline=never, lifespan=never, liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=never, avoid_ros_namespace_conventions=False,
    )  # fmt: skip


def check_output_options(storage: str, compression: str, version: int) -> None:
    if storage not in STORAGES:
        raise ConfigError(f"storage must be one of {STORAGES}. Got {storage!r}")
    if compression not in COMPRESSIONS:
        raise ConfigError(f"compression must be one of {COMPRESSIONS}. Got {compression!r}")
    if compression == "storage" and storage != "mcap":
        raise ConfigError("compression 'storage' (zstd mcap chunks) needs storage 'mcap'")
    if version not in BAG_VERSIONS:
        raise ConfigError(f"bag version must be one of {BAG_VERSIONS}. Got {version!r}")


class BagWriter:
    """A new rosbag2 folder at ``path`` (which must not exist).

    Args:
        path: the bag folder to create.
        store: rosbags type store holding every type written with :meth:`add_topic`.
        storage: "sqlite3" or "mcap".
        compression: "none", "message" (zstd per message), "file" (zstd per storage file) or
            "storage" (zstd mcap chunks, mcap only).
        version: rosbag2 metadata version, 8 (Jazzy and later read it) or 9 (Kilted).

    mcap files get their chunk and data-section CRCs when the bag is closed
    (:func:`~egopress_core.rosbag.mcap_integrity.add_crcs`), so damage to them can be detected.
    """

    def __init__(self, path: str | os.PathLike, store, storage: str = "sqlite3", compression: str = "none",
                 version: int = 8) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        check_output_options(storage, compression, version)
        self.path = Path(path)
        self.store = store
        self.storage = storage
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=version, storage_plugin=plugin)
        if compression != "none":
            mode = {"message": CompressionMode.MESSAGE, "file": CompressionMode.FILE,
                    "storage": CompressionMode.STORAGE}[compression]
            self._writer.set_compression(mode, CompressionFormat.ZSTD)
        self._writer.open()
        self._closed = False
        self.counts: dict[str, int] = {}

    def add_topic(self, topic: str, msgtype: str, qos=None):
        """A new connection whose definition comes from the type store (the package's own
        messages with their ``.msg`` comments)."""
        from egopress_core.rosbag.typestore import message_definition

        definition, digest = message_definition(self.store, msgtype)
        return self._writer.add_connection(
            topic, msgtype, msgdef=definition, rihs01=digest, offered_qos_profiles=[qos or default_qos()]
        )

    def add_copy_of(self, connection) -> tuple[object, str | None]:
        """A connection like ``connection`` of an input bag: same topic, type, definition, hash,
        serialization format and QoS. Returns (connection, a note when the input lacked a
        definition and none could be made, else None)."""
        definition = connection.msgdef.data
        digest = connection.digest
        note = None
        if not definition or not digest:
            if connection.msgtype in self.store.fielddefs:
                generated, generated_digest = self.store.generate_msgdef(connection.msgtype, ros_version=2)[0], self.store.hash_rihs01(connection.msgtype)
                definition = definition or generated
                digest = digest or generated_digest
            else:
                note = (f"{connection.topic}: type {connection.msgtype} has no definition in the input bag and is unknown "
                        "to rosbags; copied with an empty definition")
                digest = digest or UNKNOWN_TYPE_HASH
        copied = self._writer.add_connection(
            connection.topic, connection.msgtype, msgdef=definition, rihs01=digest,
            serialization_format=connection.ext.serialization_format,
            offered_qos_profiles=list(connection.ext.offered_qos_profiles),
        )  # fmt: skip
        return copied, note

    def write(self, connection, timestamp_ns: int, data: bytes | memoryview) -> None:
        self._writer.write(connection, int(timestamp_ns), data)
        self.counts[connection.topic] = self.counts.get(connection.topic, 0) + 1

    def write_message(self, connection, timestamp_ns: int, message) -> None:
        self.write(connection, timestamp_ns, self.store.serialize_cdr(message, connection.msgtype))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()
            if self.storage == "mcap":
                from egopress_core.rosbag.mcap_integrity import add_crcs

                # Whole-file zstd (.mcap.zstd) is checksummed by its zstd frame instead.
                for path in sorted(self.path.glob("*.mcap")):
                    add_crcs(path)

    def abort(self) -> None:
        """Close without finishing (the caller deletes the folder)."""
        if not self._closed:
            self._closed = True
            self._writer.abort()

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
