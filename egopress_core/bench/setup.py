"""The model under test and the held-out data it runs on, loaded once per benchmark.

The model is an :class:`~egopress_core.pipeline.EgoPressPipeline`: a checkpoint loaded by
:meth:`~egopress_core.pipeline.EgoPressPipeline.from_checkpoint`, or an untrained preset wrapped
by its constructor. Held-out sequences are preprocessed by the pipeline exactly as ``egopress
eval`` preprocesses them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from egopress_core.bench.options import BenchOptions
from egopress_core.errors import CheckpointError, DataError
from egopress_core.options import RuntimeOptions


@dataclass
class BenchSetup:
    """The pipeline under test and the held-out data it runs on.

    Attributes:
        pipeline: the loaded model with its hand, mask, preprocessing and readout (fp32, eager).
        description: what was loaded, for the report.
        trained: False for an untrained preset (quality figures are meaningless then).
        sequences: the held-out sequences.
        batches: the first ``quality_frames`` frames of the first ``quality_sequences``
            sequences, as (B = 1) window batches with their ground truth.
        batch_names: the names of those sequences.
    """

    pipeline: Any  # EgoPressPipeline
    description: str
    trained: bool
    sequences: list = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    batch_names: list[str] = field(default_factory=list)

    @property
    def model(self):
        return self.pipeline.model

    def pipeline_for(self, runtime: RuntimeOptions):
        """A pipeline running with ``runtime``: the loaded one if it already does; otherwise one
        over the same model for another precision (autocast only), or over a deep copy of it for
        channels-last or ``torch.compile``, which change the model in place."""
        from egopress_core.pipeline import EgoPressPipeline

        base = self.pipeline
        if runtime == base.runtime:
            return base
        model = base.model
        if runtime.channels_last or runtime.compile:
            model = copy.deepcopy(model)
        return EgoPressPipeline(model, base.uv_mask, hand=base.hand, runtime=runtime, sampling=base.sampling,
                                crop=base.crop, contact=base.contact)


def start_run(options: BenchOptions, *, video_model_only: bool) -> tuple[torch.device, dict[str, Any], Any, str, bool]:
    """(device, machine description, pipeline, its description, trained) of a benchmark run:
    ``options.device`` resolved, torch's intra-op threads set when ``options.threads`` is given
    (otherwise torch's own count, as the pressure node's ``torch_threads: 0``), the model loaded
    (refused unless it is EgoPressDiff when ``video_model_only``: the sampler timings need one)."""
    from egopress_core.bench.timing import machine_info
    from egopress_core.runtime import resolve_device

    device = resolve_device(options.device)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    machine = machine_info(device)
    return (device, machine, *load_pipeline(options, device, video_model_only=video_model_only))


def load_pipeline(options: BenchOptions, device: torch.device, *, video_model_only: bool):
    """(pipeline, description, trained) of ``options.checkpoint`` or ``options.config``."""
    from egopress_core.pipeline import EgoPressPipeline

    runtime = RuntimeOptions(device=str(device))
    if options.checkpoint is not None:
        path = Path(options.checkpoint)
        pipeline = EgoPressPipeline.from_checkpoint(path, runtime=runtime)
        if video_model_only and not pipeline.is_video_model:
            raise CheckpointError(f"{path} holds a {type(pipeline.model).__name__}, which has no sampler to time; give "
                                  "an EgoPressDiff checkpoint, or time it live with --live")
        return pipeline, f"checkpoint {path}", True
    from egopress_core.data.sources import hand_uv_mask
    from egopress_core.model.config import preset_config
    from egopress_core.model.egopressdiff import EgoPressDiff

    mask = hand_uv_mask(tuple(preset_config(options.config).uv_size))
    torch.manual_seed(options.seed)
    model = EgoPressDiff(preset_config(options.config, uv_layout=mask.layout_id))
    pipeline = EgoPressPipeline(model, mask, runtime=runtime)
    return pipeline, f"preset {options.config!r}, untrained (seed {options.seed})", False


def held_out_sequences(options: BenchOptions, workdir: Path, frames_needed: int) -> list:
    """Sequences of ``options.data``; generated there first (``egopress demo``'s held-out seed)
    when the folder does not exist."""
    from egopress_core.data.synthetic import HELD_OUT_SEED
    from egopress_core.data.sources import open_data_source

    root = Path(options.data) if options.data is not None else workdir / "held_out"
    if not root.exists():
        # The renderer (open3d) is imported only when data must be made: timing given data needs
        # none of it, e.g. on an accelerator machine without open3d.
        from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset

        config = SynthConfig(sequences=options.quality_sequences, frames=frames_needed, seed=HELD_OUT_SEED,
                             image_sizes=(tuple(options.image_size),))
        root = generate_dataset(config, root, progress=False)
    sequences = open_data_source(root, split="all").sequences()
    if not sequences:
        raise DataError(f"{root} holds no sequence")
    return sequences


def sequence_batches(setup: BenchSetup, options: BenchOptions) -> tuple[list[dict[str, Any]], list[str]]:
    """The first ``quality_frames`` frames of the first ``quality_sequences`` held-out sequences,
    as (B = 1) window batches preprocessed exactly as ``egopress eval`` preprocesses them
    (:meth:`~egopress_core.pipeline.EgoPressPipeline.prepare_sequence`)."""
    batches, names = [], []
    for sequence in setup.sequences[: options.quality_sequences]:
        batch = setup.pipeline.prepare_sequence(sequence)
        length = batch["rgb"].shape[1]
        keep = min(options.quality_frames, length)
        # Per-frame fields are (1, N, ...); the UV mask is shared by all frames.
        batches.append({key: value[:, :keep] if key != "uv_mask" and isinstance(value, torch.Tensor)
                        and value.ndim >= 2 and value.shape[1] == length else value
                        for key, value in batch.items()})
        names.append(sequence.name)
    return batches, names


def camera_frames(sequence, count: int) -> list:
    """``count`` annotated frames of the sequence, cycling through it if it is shorter."""
    annotated = [index for index in range(len(sequence)) if sequence.frame(index).joints is not None]
    if not annotated:
        raise DataError(f"sequence {sequence.name} has no frame with a hand for the streaming benchmark")
    return [sequence.frame(annotated[i % len(annotated)]) for i in range(count)]
