"""Reading a LeRobot v3.0 dataset folder back, for users without ``lerobot`` (it does not install
beside this package's pins) and for the tests that compare an export with its labelled bags."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from egopress_core.errors import DataError
from egopress_core.export.lerobot import CODEBASE_VERSION



class LeRobotDatasetReader:
    """Reads a LeRobot v3.0 dataset folder the way ``LeRobotDataset.__getitem__`` does: the frame's
    row from ``data/``, its video frame at ``from_timestamp + timestamp`` of the episode's mp4.

    A small reference reader for checks and users without ``lerobot``: it decodes a whole video
    file into memory on first use; train with ``LeRobotDataset``.

    Args:
        root: the data set folder.
        tolerance_s: largest distance between the requested and the decoded video time
            (LeRobot's default ``1 / fps - 1e-4``).
    """

    def __init__(self, root: str | os.PathLike, tolerance_s: float | None = None) -> None:
        import pyarrow.parquet as pq

        self.root = Path(root)
        try:
            self.info = json.loads((self.root / "meta" / "info.json").read_text())
        except (OSError, ValueError) as error:
            raise DataError(f"{self.root}: not a LeRobot dataset ({error})") from None
        if self.info.get("codebase_version") != CODEBASE_VERSION:
            raise DataError(f"{self.root}: format {self.info.get('codebase_version')!r}, this reader reads {CODEBASE_VERSION}")
        self.fps = int(self.info["fps"])
        self.tolerance_s = 1.0 / self.fps - 1e-4 if tolerance_s is None else tolerance_s
        self.features = self.info["features"]
        self.episodes = pq.read_table(sorted((self.root / "meta" / "episodes").glob("*/*.parquet"))).to_pylist()
        tables = [pq.read_table(path) for path in sorted((self.root / "data").glob("*/*.parquet"))]
        import pyarrow as pa

        self.data = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        tasks = pq.read_table(self.root / "meta" / "tasks.parquet")
        self.tasks = dict(zip(tasks.column("task_index").to_pylist(), tasks.column("__index_level_0__").to_pylist()))
        self.stats = json.loads((self.root / "meta" / "stats.json").read_text())
        self._decoded: dict[str, list[tuple[float, np.ndarray]]] = {}

    def __len__(self) -> int:
        return self.data.num_rows

    def _video_frames(self, path: Path) -> list[tuple[float, np.ndarray]]:
        import av

        key = str(path)
        if key not in self._decoded:
            with av.open(key) as container:
                self._decoded = {key: [(float(frame.time), frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]}
        return self._decoded[key]

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = {key: values[0] for key, values in self.data.slice(index, 1).to_pydict().items()}
        episode = self.episodes[row["episode_index"]]
        item: dict[str, Any] = {}
        for key, feature in self.features.items():
            if feature["dtype"] == "video":
                path = self.root / self.info["video_path"].format(
                    video_key=key, chunk_index=episode[f"videos/{key}/chunk_index"], file_index=episode[f"videos/{key}/file_index"])
                query = episode[f"videos/{key}/from_timestamp"] + row["timestamp"]
                frames = self._video_frames(path)
                distance, image = min(((abs(time - query), image) for time, image in frames), key=lambda pair: pair[0])
                if distance > self.tolerance_s:
                    raise DataError(f"{path}: no video frame within {self.tolerance_s} s of {query} s (nearest {distance} s away)")
                item[key] = image
            else:
                item[key] = np.asarray(row[key], dtype=np.dtype(feature["dtype"]))
        item["task"] = self.tasks[row["task_index"]]
        return item
