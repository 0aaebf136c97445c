"""On-disk format of the synthetic data set (version 1), and its lazy reader.

Layout::

    DATASET/
      dataset.json                  {"format": "egopress-synthetic", "format_version": 1,
                                     "generator_version": ..., "seed": ..., "sequences": N, ...}
      seq_00000/
        meta.json                   gesture, force profile, seed, camera, appearance, hand model,
                                    UV layout, frame count, fps, generator version
        rgb.npy           (T, H, W, 3)    uint8
        depth_mm.npy      (T, H, W)       uint16, millimetres along the optical axis, 0 = hole
        uv_pressure_kpa.npy (T, Hu, Wu)   float32, kPa, row 0 at v = 1
        vertex_pressure_kpa.npy (T, V)    float32, kPa
        pad_pressure_kpa.npy (T, Hp, Wp)  float32, kPa, pad-plane image (row 0 at y = +max)
        vertices.npy      (T, V, 3)       float32, metres, camera frame
        joints.npy        (T, 21, 3)      float32, metres, camera frame
        global_orient.npy (T, 3), hand_pose.npy (T, 45), betas.npy (T, 10), transl.npy (T, 3)
                                          float32, MANO parameters in the camera frame
        camera_from_world.npy (T, 4, 4)   float64, world = pad frame (z = 0 pad plane, +z down)
        intrinsics.npy    (3, 3)          float64
        force_n.npy       (T,)            float32, total normal force (pad integral)
        target_force_n.npy (T,)           float32, the force the gesture commanded
      seq_00001/ ...

Each array is a plain ``.npy`` file opened memory-mapped, so a data set larger than RAM is read
frame by frame. A sequence folder is written under a temporary name and renamed when complete,
so a folder named ``seq_*`` is always whole; that is what resuming relies on.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np

from egopress_core.data.records import FrameRecord, ManoParams
from egopress_core.errors import DataError

FORMAT_NAME = "egopress-synthetic"
FORMAT_VERSION = 1

FRAME_ARRAYS = (
    "rgb",
    "depth_mm",
    "uv_pressure_kpa",
    "vertex_pressure_kpa",
    "pad_pressure_kpa",
    "vertices",
    "joints",
    "global_orient",
    "hand_pose",
    "betas",
    "transl",
    "camera_from_world",
    "force_n",
    "target_force_n",
)


def sequence_dir_name(index: int) -> str:
    return f"seq_{index:05d}"


def write_sequence(root: Path, index: int, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Writes one complete sequence atomically (temporary folder, then rename)."""
    missing = [name for name in (*FRAME_ARRAYS, "intrinsics") if name not in arrays]
    if missing:
        raise DataError(f"sequence {index} lacks arrays {missing}")
    final = root / sequence_dir_name(index)
    staging = root / (sequence_dir_name(index) + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(staging / f"{name}.npy", np.ascontiguousarray(array))
    (staging / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(staging, final)
    return final


class SyntheticSequence:
    """One synthetic sequence, read lazily (memory-mapped arrays); a SequenceSource."""

    def __init__(self, path: Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        try:
            self.meta = json.loads(meta_path.read_text())
        except FileNotFoundError as error:
            raise DataError(f"{meta_path}: missing; is {self.path} a synthetic sequence?") from error
        except json.JSONDecodeError as error:
            raise DataError(f"{meta_path}: not valid JSON ({error})") from error
        version = self.meta.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(
                f"{meta_path}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
            )
        self.name = self.meta["name"]
        self.fps = float(self.meta["fps"])
        self.hand_model = self.meta["hand_model"]
        self.uv_layout = self.meta["uv_layout"]
        self.hand_side = self.meta["hand_side"]
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str) -> np.ndarray:
        """The memory-mapped array ``name`` (see the module docstring for shapes)."""
        if name not in self._arrays:
            path = self.path / f"{name}.npy"
            try:
                self._arrays[name] = np.load(path, mmap_mode="r")
            except FileNotFoundError as error:
                raise DataError(f"{path}: missing array {name!r}") from error
            except ValueError as error:
                raise DataError(f"{path}: corrupt array {name!r} ({error})") from error
        return self._arrays[name]

    def __len__(self) -> int:
        return int(self.meta["frames"])

    def annotation_flags(self) -> np.ndarray:
        """(T,) bool: every synthetic frame carries full ground truth."""
        return np.ones(len(self), dtype=bool)

    def __getstate__(self) -> dict:
        # Memory maps are reopened in each DataLoader worker rather than pickled.
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def frame(self, index: int) -> FrameRecord:
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} out of range for {self.name} ({len(self)} frames)")
        a = self.array
        return FrameRecord(
            sequence=self.name,
            index=index,
            timestamp_s=index / self.fps,
            rgb=np.asarray(a("rgb")[index]),
            depth_m=np.asarray(a("depth_mm")[index], dtype=np.float32) / 1000.0,
            intrinsics=np.asarray(a("intrinsics"), dtype=np.float64),
            hand_side=self.hand_side,
            has_annotation=True,
            mano=ManoParams(
                global_orient=np.asarray(a("global_orient")[index]),
                hand_pose=np.asarray(a("hand_pose")[index]),
                betas=np.asarray(a("betas")[index]),
                transl=np.asarray(a("transl")[index]),
            ),
            vertices=np.asarray(a("vertices")[index]),
            joints=np.asarray(a("joints")[index]),
            uv_pressure_kpa=np.asarray(a("uv_pressure_kpa")[index]),
            vertex_pressure_kpa=np.asarray(a("vertex_pressure_kpa")[index]),
            pad_pressure_kpa=np.asarray(a("pad_pressure_kpa")[index]),
            camera_from_world=np.asarray(a("camera_from_world")[index]),
            extras={"force_n": float(a("force_n")[index]), "gesture": self.meta["gesture"]},
        )

    def __iter__(self) -> Iterator[FrameRecord]:
        for index in range(len(self)):
            yield self.frame(index)


class SyntheticDataset:
    """A synthetic data set folder; a DatasetSource."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such data folder")
        info_path = self.root / "dataset.json"
        if not info_path.is_file():
            raise DataError(f"{info_path}: missing; generate data with `egopress synth --out {self.root}`")
        self.info = json.loads(info_path.read_text())
        if self.info.get("format") != FORMAT_NAME:
            raise DataError(f"{info_path}: format {self.info.get('format')!r} is not {FORMAT_NAME!r}")
        self._sequences = [SyntheticSequence(path) for path in sorted(self.root.glob("seq_[0-9]*")) if path.is_dir() and not path.name.endswith(".partial")]
        if not self._sequences:
            raise DataError(f"{self.root}: holds no complete sequences")

    def sequences(self) -> list[SyntheticSequence]:
        return list(self._sequences)
