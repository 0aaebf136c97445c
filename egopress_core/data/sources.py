"""Open a data folder as a :class:`~egopress_core.data.records.DatasetSource`, split it, and
derive the UV hand mask its maps are laid out on.

- :func:`open_data_source` recognises a synthetic data set (``dataset.json``, written by
  ``egopress synth``) or an EgoPressure download root (``data/`` + ``configs/``).
- :func:`holdout_split` holds out whole sequences for validation, reproducibly (by name).
- :func:`hand_uv_mask` is *the* UV hand mask at model resolution: the hand model's UV atlas
  rasterised at the data's native resolution (224 x 224 for MANO's layout), area-resized to the
  model's UV size exactly as clip windows resize the pressure maps, and kept wherever any hand
  texel contributes. Training, evaluation and inference all call it, so a model sees one mask.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from egopress_core.data.records import SequenceSource
from egopress_core.errors import ConfigError, DataError
from egopress_core.files import write_json_atomic

SYNTHETIC_MARKER = "dataset.json"
EGOPRESSURE_MARKER = "data"
DEFAULT_UV_RESOLUTION = (224, 224)


@dataclass
class SequenceList:
    """A DatasetSource over an explicit list of sequences (a filtered or split source).

    Attributes:
        sequence_list: the sequences.
        description: where they came from, for messages.
    """

    sequence_list: list
    description: str = ""

    def sequences(self) -> list:
        return list(self.sequence_list)

    def __len__(self) -> int:
        return len(self.sequence_list)


def detect_kind(path: str | os.PathLike) -> str:
    """``"synthetic"`` or ``"egopressure"`` for a data folder; :class:`DataError` otherwise."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder")
    if (root / SYNTHETIC_MARKER).is_file():
        return "synthetic"
    if (root / EGOPRESSURE_MARKER).is_dir():
        return "egopressure"
    entries = sorted(p.name for p in root.iterdir())[:8]
    raise DataError(
        f"{root} is not a data folder: expected {SYNTHETIC_MARKER} (a synthetic data set from "
        f"`egopress synth --out {root}`) or {EGOPRESSURE_MARKER}/ (an EgoPressure download root); "
        f"it holds {entries if entries else 'nothing'}")


def sequence_hand_side(sequence: SequenceSource) -> str:
    """The hand side of a sequence (attribute, else its first frame's record)."""
    side = getattr(sequence, "hand_side", None)
    if side is None:
        side = sequence.frame(0).hand_side
    return str(side)


def open_data_source(
    path: str | os.PathLike,
    split: str = "train",
    hand_side: str | None = None,
    image_scale: float = 1.0,
    camera: str = "0",
) -> SequenceList:
    """Open a synthetic folder or an EgoPressure root as a DatasetSource.

    Args:
        path: the folder.
        split: EgoPressure split ("train", "test", "all"); synthetic folders have no predefined
            split, so any value reads all their sequences (use :func:`holdout_split`).
        hand_side: keep only sequences of this hand ("right"/"left"), or None for all.
        image_scale: EgoPressure RGB decode scale.
        camera: EgoPressure camera key ("0" = egocentric).

    Raises:
        DataError: missing or empty folder, unknown layout, no sequence of ``hand_side``.
    """
    if hand_side not in (None, "right", "left"):
        raise ConfigError(f"hand_side must be 'right', 'left' or None. Got {hand_side!r}")
    kind = detect_kind(path)
    if kind == "synthetic":
        from egopress_core.data.synthetic.storage import SyntheticDataset

        sequences = SyntheticDataset(path).sequences()
        description = f"synthetic {path}"
    else:
        from egopress_core.data.egopressure import EgoPressureDataset

        sequences = EgoPressureDataset(path, split=split, camera=camera, image_scale=image_scale).sequences()
        description = f"EgoPressure {path} (split {split!r})"
    if hand_side is not None:
        kept = [s for s in sequences if sequence_hand_side(s) == hand_side]
        if not kept:
            raise DataError(f"{description}: none of its {len(sequences)} sequences shows the {hand_side} hand")
        sequences = kept
        description += f", {hand_side} hand"
    return SequenceList(sequences, description)


def open_data_sources(paths: Sequence[str | os.PathLike], **options: Any) -> SequenceList:
    """:func:`open_data_source` over several folders, concatenated."""
    if not paths:
        raise ConfigError("no data folder given")
    parts = [open_data_source(path, **options) for path in paths]
    return SequenceList([s for part in parts for s in part.sequences()],
                        "; ".join(part.description for part in parts))


def holdout_split(
    sequences: Sequence[SequenceSource], fraction: float, seed: int = 0
) -> tuple[list, list]:
    """Split sequences into (train, held-out) reproducibly.

    The order is a hash of ``(seed, name)``, so a sequence stays on its side when others are
    added. At least one sequence is held out when ``fraction > 0`` and at least one is kept.

    Raises:
        DataError: fewer than two sequences with ``fraction > 0``.
    """
    sequences = list(sequences)
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"fraction must be in [0, 1); got {fraction}")
    if fraction == 0.0:
        return sequences, []
    if len(sequences) < 2:
        raise DataError(f"cannot hold out validation sequences from {len(sequences)} sequence(s); "
                        "give a validation data folder or more sequences")

    def key(item: tuple[int, Any]) -> str:
        name = str(getattr(item[1], "name", item[0]))
        return hashlib.sha1(f"{seed}:{name}:{item[0]}".encode()).hexdigest()

    ranked = sorted(enumerate(sequences), key=key)
    count = min(len(sequences) - 1, max(1, round(fraction * len(sequences))))
    held = {index for index, _ in ranked[:count]}
    return ([s for i, s in enumerate(sequences) if i not in held],
            [s for i, s in enumerate(sequences) if i in held])


# ----------------------------------------------------------------------------------------------
# UV hand mask
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandUVMask:
    """The UV hand mask of a hand model's atlas at model resolution.

    Attributes:
        mask: (Hu, Wu) bool, texels any hand texel of the full-resolution atlas falls in.
        layout_id: ``UVAtlas.layout_id`` of the full-resolution atlas (what models record).
        layout_name: the atlas name (EgoPressure names layouts by it).
        side: "right" or "left".
        source_resolution: (H, W) the atlas was rasterised at (the data's UV maps).
        hand_model_path, uv_obj_path: what the mask was built from (None: bundled hand).
    """

    mask: np.ndarray
    layout_id: str
    layout_name: str
    side: str
    source_resolution: tuple[int, int]
    hand_model_path: str | None = None
    uv_obj_path: str | None = None

    @property
    def uv_size(self) -> tuple[int, int]:
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    def tensor(self):
        """(1, Hu, Wu) float32 torch tensor, 1 on the hand (the window batch's ``uv_mask``)."""
        import torch

        return torch.from_numpy(self.mask.astype(np.float32))[None]

    def matches(self, source_layout: str) -> bool:
        """Whether a data source's ``uv_layout`` names this atlas (full id, or name only)."""
        return source_layout in (self.layout_id, self.layout_name)

    def model_atlas(self):
        """The hand's :class:`~egopress_core.uv_atlas.UVAtlas` at this mask's (model) resolution."""
        from egopress_core.hand.hand_model import load_hand_model
        from egopress_core.uv_atlas import UVAtlas

        hand = load_hand_model(side=self.side, model_path=self.hand_model_path, uv_obj_path=self.uv_obj_path)
        return UVAtlas.from_obj(hand.uv_obj_path, resolution=self.uv_size, name=hand.uv_layout_name)

    def spec(self) -> dict[str, Any]:
        """JSON-ready arguments that rebuild this mask with :func:`hand_uv_mask`."""
        return {"uv_size": list(self.uv_size), "side": self.side, "hand_model_path": self.hand_model_path,
                "uv_obj_path": self.uv_obj_path, "source_resolution": list(self.source_resolution),
                "layout_id": self.layout_id, "layout_name": self.layout_name}

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`spec` as JSON (atomically)."""
        write_json_atomic(path, self.spec(), sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HandUVMask":
        """Rebuild the mask a :meth:`save` file describes, checking the atlas is unchanged."""
        try:
            spec = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read UV mask spec {path}: {error}") from error
        mask = hand_uv_mask(tuple(spec["uv_size"]), spec["side"], spec.get("hand_model_path"),
                            spec.get("uv_obj_path"), tuple(spec["source_resolution"]))
        if mask.layout_id != spec.get("layout_id"):
            raise DataError(f"{path}: the hand model's UV atlas is now {mask.layout_id!r}, "
                            f"the file was written for {spec.get('layout_id')!r}")
        return mask


@lru_cache(maxsize=8)
def _atlas_mask(side: str, hand_model_path: str | None, uv_obj_path: str | None,
                resolution: tuple[int, int]) -> tuple[np.ndarray, str, str]:
    from egopress_core.hand.hand_model import load_hand_model
    from egopress_core.uv_atlas import UVAtlas

    hand = load_hand_model(side=side, model_path=hand_model_path, uv_obj_path=uv_obj_path)
    if hand.uv_obj_path is None:
        raise DataError(f"hand model {hand.model_path} has no UV atlas OBJ; set its uv_obj_path")
    atlas = UVAtlas.from_obj(hand.uv_obj_path, resolution=resolution, name=hand.uv_layout_name)
    return np.asarray(atlas.mask, dtype=bool), atlas.layout_id, atlas.name


def hand_uv_mask(
    uv_size: tuple[int, int],
    side: str = "right",
    hand_model_path: str | os.PathLike | None = None,
    uv_obj_path: str | os.PathLike | None = None,
    source_resolution: tuple[int, int] = DEFAULT_UV_RESOLUTION,
) -> HandUVMask:
    """The UV hand mask at ``uv_size`` (see the module docstring).

    Args:
        uv_size: (Hu, Wu) model resolution.
        side: hand side of the model.
        hand_model_path: MANO-format pickle or folder; None = the bundled hand.
        uv_obj_path: atlas OBJ overriding the hand model's.
        source_resolution: (H, W) of the data's UV maps (the atlas's rasterisation).

    Returns:
        :class:`HandUVMask`.
    """
    import torch

    from egopress_core.data.windows import area_resize

    uv_size = (int(uv_size[0]), int(uv_size[1]))
    source_resolution = (int(source_resolution[0]), int(source_resolution[1]))
    model_path = None if hand_model_path is None else os.fspath(hand_model_path)
    obj_path = None if uv_obj_path is None else os.fspath(uv_obj_path)
    full, layout_id, name = _atlas_mask(side, model_path, obj_path, source_resolution)
    coverage = area_resize(torch.from_numpy(full.astype(np.float64)), uv_size).numpy()
    mask = coverage > 0.0  # area weights are exactly 0 where no hand texel overlaps
    mask.flags.writeable = False
    return HandUVMask(mask=mask, layout_id=layout_id, layout_name=name, side=side,
                      source_resolution=source_resolution, hand_model_path=model_path, uv_obj_path=obj_path)


def source_uv_resolution(sequences: Sequence[SequenceSource]) -> tuple[int, int]:
    """(H, W) of the sources' UV pressure maps, read from the first annotated frame."""
    for sequence in sequences:
        flags_of = getattr(sequence, "annotation_flags", None)
        candidates = np.flatnonzero(flags_of()) if callable(flags_of) else range(len(sequence))
        for index in list(candidates)[:8]:
            record = sequence.frame(int(index))
            if record.uv_pressure_kpa is not None:
                return tuple(int(v) for v in np.shape(record.uv_pressure_kpa)[:2])  # type: ignore[return-value]
    raise DataError("no annotated frame with a UV pressure map in the data; cannot tell its UV resolution")


def resolve_hand_uv_mask(
    sequences: Sequence[SequenceSource],
    uv_size: tuple[int, int],
    hand_model_path: str | os.PathLike | None = None,
    uv_obj_path: str | os.PathLike | None = None,
) -> HandUVMask:
    """The mask for training on ``sequences``; they must share one hand side and UV layout.

    Raises:
        DataError: several layouts or sides, or the hand model's atlas is not the data's layout.
    """
    sequences = list(sequences)
    if not sequences:
        raise DataError("no sequences to train on")
    layouts = sorted({str(getattr(s, "uv_layout", "")) for s in sequences})
    sides = sorted({sequence_hand_side(s) for s in sequences})
    if len(layouts) > 1 or len(sides) > 1:
        raise DataError(f"the data mixes UV layouts {layouts} / hand sides {sides}; one model learns one "
                        "layout: set data.hand_side (or train on one kind of data)")
    resolution = source_uv_resolution(sequences)
    mask = hand_uv_mask(uv_size, sides[0], hand_model_path, uv_obj_path, resolution)
    if not mask.matches(layouts[0]):
        raise DataError(f"the data's UV layout {layouts[0]!r} is not the hand model's atlas {mask.layout_id!r}; "
                        "set data.hand_model_path / data.uv_obj_path to the hand the data was made with")
    return mask
