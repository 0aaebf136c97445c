"""The plan of a bag labelling run (chunks of frames with context, batched) and its report."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from egopress_core.files import write_json_atomic
from egopress_core.rosbag.index import BagIndex

@dataclass(frozen=True)
class Chunk:
    """Frames [start, stop) of ``index.frames`` estimated with frames [span_start, span_stop)."""

    number: int
    segment: int
    start: int
    stop: int
    span_start: int
    span_stop: int

    @property
    def span_length(self) -> int:
        return self.span_stop - self.span_start


@dataclass(frozen=True)
class ChunkGroup:
    """Chunks of equal span length estimated in one model call (one saved result)."""

    number: int
    chunks: tuple[Chunk, ...]

    @property
    def frames(self) -> int:
        return sum(chunk.stop - chunk.start for chunk in self.chunks)


def plan_chunks(segments: list[tuple[int, int]], chunk_frames: int, context_frames: int, batch_size: int) -> list[ChunkGroup]:
    """Chunks of every segment (the last one of a segment may be shorter), grouped by equal span
    length in order, at most ``batch_size`` per group."""
    chunks: list[Chunk] = []
    for segment_number, (segment_start, segment_stop) in enumerate(segments):
        for start in range(segment_start, segment_stop, chunk_frames):
            stop = min(start + chunk_frames, segment_stop)
            chunks.append(Chunk(len(chunks), segment_number, start, stop, max(segment_start, start - context_frames),
                                min(segment_stop, stop + context_frames)))
    groups: list[ChunkGroup] = []
    current: list[Chunk] = []
    for chunk in chunks:
        if current and (len(current) == batch_size or current[0].span_length != chunk.span_length):
            groups.append(ChunkGroup(len(groups), tuple(current)))
            current = []
        current.append(chunk)
    if current:
        groups.append(ChunkGroup(len(groups), tuple(current)))
    return groups


def plan_hash(index: BagIndex, groups: list[ChunkGroup]) -> str:
    digest = hashlib.sha1()
    for frame in index.frames:
        digest.update(f"{frame.stamp_ns},{frame.color.bag_ns},{frame.depth.bag_ns};".encode())
    for group in groups:
        digest.update(repr([(c.start, c.stop, c.span_start, c.span_stop) for c in group.chunks]).encode())
    return digest.hexdigest()


def files_fingerprint(files: list[Path]) -> list[list]:
    return [[path.name, path.stat().st_size, path.stat().st_mtime_ns] for path in files]


def checkpoint_fingerprint(directory: Path) -> dict:
    digest = hashlib.sha1()
    for path in sorted(directory.iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    config = directory / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    return {"path": str(directory.resolve()), "sha1": digest.hexdigest()}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


@dataclass
class LabelReport:
    """What a labelling run did (written as ``OUT.report.json``)."""

    input: str
    output: str
    status: str = "running"
    error: str | None = None
    storage: str = ""
    frames: dict = field(default_factory=dict)
    segments: list = field(default_factory=list)
    gaps: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    unreadable: list = field(default_factory=list)
    integrity: list = field(default_factory=list)
    accounting: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    topics_written: dict = field(default_factory=dict)
    batches: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def was_written_for(path: Path, output: Path) -> bool:
        """Whether ``path`` is the report of an earlier labelling run into ``output`` (a file the
        labeller may replace), not someone else's file."""
        try:
            saved = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return (isinstance(saved, dict) and saved.get("output") == str(output)
                and {"input", "status", "options"} <= set(saved))

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_dict(), default=str)

    def summary(self) -> str:
        """A few lines for the terminal."""
        f = self.frames
        lines = [f"{self.status}: {self.input} -> {self.output}"]
        if f:
            lines.append(f"  frames: {f.get('colour_messages', 0)} colour images, {f.get('synchronised', 0)} synchronised, "
                         f"{f.get('with_pressure', 0)} labelled with pressure, {f.get('without_hand', 0)} without a hand, "
                         f"{len(self.segments)} segment(s)")
        if self.timings_s.get("total"):
            labelled = f.get("synchronised", 0)
            lines.append(f"  time: {self.timings_s['total']:.1f} s ({labelled / self.timings_s['total']:.2f} frames/s); "
                         + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings_s.items() if k != "total"))
        for entry in self.skipped:
            lines.append(f"  skipped {entry['count']} on {entry['topic']}: {entry['reason']}")
        for gap in self.gaps:
            lines.append(f"  gap of {gap['seconds']:.3f} s (~{gap['missing_frames']} frames) after stamp {gap['after_stamp_ns']}"
                         + (" -> new segment" if gap["split"] else ""))
        for item in self.unreadable:
            lines.append(f"  unreadable bag time {item['start_ns']}..{item['stop_ns']} ({item['seconds']:.3f} s) on "
                         f"{', '.join(item['topics'])}: {item['error']}")
        for item in self.integrity:
            for chunk in item["damaged_chunks"]:
                lines.append(f"  damaged chunk in {item['file']}, bag time {chunk['start_ns']}..{chunk['end_ns']} "
                             f"({sum(chunk['messages'].values())} messages): {chunk['error']}")
        for item in self.accounting:
            if item["lost"]:
                lines.append(f"  lost {item['lost']} of {item['expected']} on {item['topic']} (metadata "
                             f"{item['metadata']}, storage {item['storage']}, written {item['written']})")
        lines.extend(f"  note: {note}" for note in self.notes)
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)
