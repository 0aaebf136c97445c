"""Training and validation windows: data sets, the UV hand mask, and resumable loaders.

Batch order is a pure function of ``(seed, epoch, process index)``: each epoch is one pass of a
:class:`~torch.utils.data.distributed.DistributedSampler` (seeded, ``set_epoch``), so the k-th
micro-batch of a run can be found again after a restart by skipping the epoch's first batches
(:func:`accelerate.skip_first_batches`, which skips sampler indices without reading data).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import default_collate
from torch.utils.data.distributed import DistributedSampler

from egopress_core.data.sources import (
    HandUVMask,
    detect_kind,
    holdout_split,
    open_data_sources,
    resolve_hand_uv_mask,
)
from egopress_core.data.windows import ClipWindowDataset, WindowConfig
from egopress_core.conditioning import UVGeometryBuilder
from egopress_core.errors import ConfigError, DataError
from egopress_core.training.config import TrainConfig

logger = logging.getLogger(__name__)


class WindowCollator:
    """``default_collate`` plus the shared UV hand mask (``uv_mask`` (1, Hu, Wu)) and, for models
    with ``use_uv_geometry``, the batch's ``uv_geometry`` (computed in the loader's workers);
    picklable."""

    def __init__(self, uv_mask: torch.Tensor, uv_geometry: UVGeometryBuilder | None = None) -> None:
        self.uv_mask = uv_mask
        self.uv_geometry = uv_geometry

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = default_collate(items)
        batch["uv_mask"] = self.uv_mask
        if self.uv_geometry is not None:
            batch["uv_geometry"] = self.uv_geometry(batch)
        return batch


@dataclass
class TrainingData:
    """Everything the loop reads.

    Attributes:
        train: training windows (augmented per the window config).
        val: validation windows (no augmentation), or None.
        uv_mask: the UV hand mask at model resolution.
        window: the training WindowConfig.
        sources: human-readable descriptions of the train / val sources.
        uv_geometry: adds ``uv_geometry`` to batches (models with ``use_uv_geometry``), or None.
    """

    train: ClipWindowDataset
    val: ClipWindowDataset | None
    uv_mask: HandUVMask
    window: WindowConfig
    sources: dict[str, str]
    uv_geometry: UVGeometryBuilder | None = None

    @property
    def collate(self) -> WindowCollator:
        return WindowCollator(self.uv_mask.tensor(), self.uv_geometry)


def _windows(sequences: list, window: WindowConfig, what: str) -> ClipWindowDataset:
    dataset = ClipWindowDataset(sequences, window)
    if len(dataset) == 0:
        report = dataset.report
        raise DataError(
            f"{what}: no window of {window.window} frames: {report['sequences']} sequence(s), "
            f"{report['too_short']} shorter than the window, {report['skipped_invalid']} window(s) skipped "
            f"for fewer than {window.min_valid_frames} annotated frames")
    return dataset


def build_datasets(config: TrainConfig, model_config: Any, window: WindowConfig | None = None) -> TrainingData:
    """Open the data folders, split off validation, resolve the UV hand mask, cut windows.

    Raises:
        ConfigError / DataError: no data folder, empty or unknown folders, mixed UV layouts,
            a hand model whose atlas is not the data's layout, no complete window.
    """
    data = config.data
    if not data.train:
        raise ConfigError("data.train is empty: pass --data DIR (a synthetic folder or an EgoPressure root)")
    window = window if window is not None else config.window_config(model_config)
    options = dict(hand_side=data.hand_side, image_scale=data.image_scale)
    train_source = open_data_sources(data.train, split=data.split, **options)
    train_sequences = train_source.sequences()
    val_sequences: list = []
    val_description = ""
    if data.val:
        val_source = open_data_sources(data.val, split=data.val_split, **options)
        val_sequences, val_description = val_source.sequences(), val_source.description
    elif config.validation.every_steps > 0:
        egopressure_roots = [p for p in data.train if detect_kind(p) == "egopressure"]
        if egopressure_roots and data.split != data.val_split and data.split != "all":
            val_source = open_data_sources(egopressure_roots, split=data.val_split, **options)
            val_sequences, val_description = val_source.sequences(), val_source.description
        else:
            train_sequences, val_sequences = holdout_split(train_sequences, data.val_fraction, config.seed)
            val_description = f"{len(val_sequences)} sequence(s) held out of {train_source.description}"
            if not val_sequences:
                raise ConfigError("validation.every_steps > 0 needs validation data: pass --val-data or set "
                                  "data.val_fraction > 0")

    if data.hands != "annotated":
        from egopress_core.data.hands import with_hands

        train_sequences = [with_hands(sequence, data.hands) for sequence in train_sequences]
        val_sequences = [with_hands(sequence, data.hands) for sequence in val_sequences]
    uv_mask = resolve_hand_uv_mask(train_sequences + val_sequences, tuple(model_config.uv_size),
                                   data.hand_model_path, data.uv_obj_path)
    train = _windows(train_sequences, window, f"training data ({train_source.description})")
    val = None
    if val_sequences:
        val_window = dataclasses.replace(window, augment=None, stride=data.val_stride or window.window,
                                         cover_tail=False)
        val = _windows(val_sequences, val_window, f"validation data ({val_description})")
    uv_geometry = UVGeometryBuilder.for_model(uv_mask.model_atlas(), model_config)
    return TrainingData(train=train, val=val, uv_mask=uv_mask, window=window,
                        sources={"train": train_source.description, "val": val_description}, uv_geometry=uv_geometry)


class EpochBatches:
    """Endless, resumable micro-batches of one process: epoch after epoch of a seeded sampler.

    Args:
        dataset: training windows.
        batch_size: windows per micro-batch (per process).
        collate: batch collation.
        seed: sampler seed (the same on every process; each process takes its own shard).
        process_index, num_processes: this process's shard.
        num_workers: DataLoader workers.
    """

    def __init__(self, dataset: ClipWindowDataset, batch_size: int, collate: WindowCollator, seed: int,
                 process_index: int = 0, num_processes: int = 1, num_workers: int = 0) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.collate = collate
        self.num_workers = num_workers
        self.sampler = DistributedSampler(dataset, num_replicas=num_processes, rank=process_index, shuffle=True,
                                          seed=seed, drop_last=True)
        self.batches_per_epoch = len(self.sampler) // batch_size
        if self.batches_per_epoch == 0:
            raise DataError(
                f"the training data has {len(dataset)} window(s), fewer than optim.batch_size={batch_size} x "
                f"{num_processes} process(es): lower the batch size or the window stride, or add data")

    def loader(self, epoch: int, skip_batches: int = 0) -> DataLoader:
        """The DataLoader of ``epoch``, starting after its first ``skip_batches`` batches."""
        from accelerate import skip_first_batches

        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
                            collate_fn=self.collate, num_workers=self.num_workers,
                            pin_memory=torch.cuda.is_available())
        return skip_first_batches(loader, skip_batches) if skip_batches else loader

    def iterate(self, start_micro_batch: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(epoch, batch)`` forever, starting at micro-batch ``start_micro_batch`` of the run."""
        epoch, skip = divmod(int(start_micro_batch), self.batches_per_epoch)
        while True:
            for batch in self.loader(epoch, skip):
                yield epoch, batch
            epoch, skip = epoch + 1, 0


def validation_loader(dataset: ClipWindowDataset, num_windows: int, batch_size: int, collate: WindowCollator,
                      num_workers: int = 0) -> DataLoader:
    """The first-``num_windows`` evenly spaced validation windows, in a fixed order."""
    count = min(num_windows, len(dataset))
    indices = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(np.int64)).tolist()
    return DataLoader(dataset, batch_size=batch_size, sampler=indices, shuffle=False, drop_last=False,
                      collate_fn=collate, num_workers=num_workers)


def check_window_batch(model: Any, batch: Mapping[str, Any], what: str) -> None:
    """Validate one batch against the model (shapes, window length, NaN) before training starts.

    Raises:
        DataError: naming ``what`` and the problem.
    """
    try:
        conditions = model.build_conditions(batch)
        pressure = batch.get("uv_pressure_kpa")
        if pressure is None:
            raise DataError("window batch has no uv_pressure_kpa (the training target)")
        expected = (conditions.batch_size, conditions.num_frames, 1, *model.config.uv_size)
        if tuple(pressure.shape) != expected:
            raise DataError(f"uv_pressure_kpa must have shape {expected}; got {tuple(pressure.shape)}")
        if not bool(torch.isfinite(pressure[conditions.frame_valid.to(pressure.device)]).all()):
            raise DataError("uv_pressure_kpa contains NaN or infinite values on frames marked valid")
        if not bool(conditions.frame_valid.any()):
            logger.warning("%s: the first batch has no annotated frame", what)
    except DataError as error:
        raise DataError(f"{what}: {error}") from None
