"""EgoPressPipeline: a loaded checkpoint and everything around it that turns frames into pressure.

In the spirit of a diffusers pipeline, one object owns the components of a checkpoint — the model
(EgoPressDiff or the per-frame baseline), the hand model, its UV atlas at the model's resolution,
the UV hand mask, the UV-geometry builder of models that take it, the preprocessing and the
pressure readout — and every runtime path goes through it::

    pipeline = EgoPressPipeline.from_checkpoint(path, runtime=RuntimeOptions(device="cuda"))
    output = pipeline(sequence)                # offline: overlapping windows, context both ways
    stream = pipeline.stream()                 # live: push(frame) -> estimate, reset()
    frames = pipeline.readout(maps, vertices)  # UV map -> per-vertex pressure, contact, force, CoP

The live node and the bag labeller (:mod:`egopress_core.rosbag.labeller`), ``egopress eval``,
``egopress bench``, the demo and the quality benchmark all use it; none of them assembles a
checkpoint or builds model conditions by hand. Data flows one way (``docs/design.md``, "Data
flow"): camera frame -> hand mesh -> :mod:`~egopress_core.preprocessing` ->
:meth:`EgoPressPipeline.conditions` -> model -> :class:`~egopress_core.postprocess.PressureReadout`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from egopress_core.assets import DEFAULT_CHECKPOINT
from egopress_core.errors import CheckpointError, ConfigError, DataError
from egopress_core.options import (
    LIVE_SAMPLING,
    OFFLINE_SAMPLING,
    ContactOptions,
    CropOptions,
    RuntimeOptions,
    SamplingOptions,
    StreamOptions,
)
from egopress_core.postprocess import PressureReadout
from egopress_core.runtime import (
    autocast_context,
    check_runtime,
    compile_options,
    prepare_model_for_inference,
    release_accelerator_memory,
)

# The UV hand mask a training run saves next to its model (what the model's loss was masked with).
UV_MASK_FILE = "hand_uv_mask.json"
# Per-frame fields of a window batch the model is conditioned on.
FRAME_FIELDS = ("rgb", "depth_m", "intrinsics", "joints", "vertices", "valid")


def load_pressure_model(directory: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """The model a checkpoint folder holds (EgoPressDiff or the per-frame baseline), in eval mode.

    Raises:
        CheckpointError: no readable ``config.json``, a format no model kind writes, or weights
            that do not fit.
    """
    from egopress_core.model.kinds import checkpoint_kind

    return checkpoint_kind(directory).model_class.from_pretrained(directory, map_location=map_location).eval()


@dataclass(frozen=True)
class PipelineOutput:
    """What an offline call returns.

    Attributes:
        uv_pressure_kpa: (B, N, Hu, Wu) float32 kPa, >= 0, zero outside the UV mask.
        inputs: the window batch the model saw (``FRAME_FIELDS``, ``uv_mask``, ``uv_geometry``
            and, for data-set sequences, the ground truth ``uv_pressure_kpa``).
    """

    uv_pressure_kpa: np.ndarray
    inputs: dict[str, Any]


class EgoPressPipeline:
    """A checkpoint's model with its hand, atlas, mask, preprocessing and readout.

    Build it with :meth:`from_checkpoint`; the constructor takes already-loaded parts (tests build
    tiny models this way).

    Args:
        model: EgoPressDiff or the per-frame baseline, trained on ``uv_mask``'s layout.
        uv_mask: :class:`~egopress_core.data.sources.HandUVMask` the model was trained with.
        hand: its hand model (default: loaded from the mask's paths).
        runtime, sampling, crop, contact: the option sets (:mod:`egopress_core.options`);
            ``sampling`` defaults to :data:`~egopress_core.options.OFFLINE_SAMPLING` (a stream
            defaults to :data:`~egopress_core.options.LIVE_SAMPLING`). ``runtime.device`` is
            where ``model`` is moved.

    Raises:
        CheckpointError: the mask is of another UV layout or resolution than the model, or the
            hand model does not fit the mask.
    """

    def __init__(
        self,
        model,
        uv_mask,
        hand=None,
        runtime: RuntimeOptions | None = None,
        sampling: SamplingOptions | None = None,
        crop: CropOptions | None = None,
        contact: ContactOptions | None = None,
    ) -> None:
        from egopress_core.conditioning import UVGeometryBuilder
        from egopress_core.hand.hand_model import load_hand_model
        from egopress_core.uv_atlas import UVAtlas

        self.runtime = _checked("runtime", runtime, RuntimeOptions)
        self.sampling = _checked("sampling", sampling, SamplingOptions, OFFLINE_SAMPLING)
        self.crop = _checked("crop", crop, CropOptions)
        self.contact = _checked("contact", contact, ContactOptions)
        config = model.config
        if tuple(uv_mask.uv_size) != tuple(config.uv_size):
            raise CheckpointError(f"the UV mask is {uv_mask.uv_size} but the model's uv_size is {tuple(config.uv_size)}")
        if not uv_mask.matches(config.uv_layout):
            raise CheckpointError(f"the model was trained on UV layout {config.uv_layout!r}; "
                                  f"the hand's atlas is {uv_mask.layout_id!r}")
        self.uv_mask = uv_mask
        self.hand = hand if hand is not None else load_hand_model(uv_mask.side, uv_mask.hand_model_path, uv_mask.uv_obj_path)
        if self.hand.side != uv_mask.side:
            raise CheckpointError(f"hand model is the {self.hand.side} hand but the UV mask is of the {uv_mask.side} hand")
        if self.hand.uv_obj_path is None:
            raise CheckpointError(f"hand model {self.hand.model_path} has no UV atlas OBJ")
        # The atlas at the model's resolution: maps the model's UV maps to vertices and areas.
        self.atlas = UVAtlas.from_obj(self.hand.uv_obj_path, resolution=tuple(config.uv_size),
                                      name=self.hand.uv_layout_name)
        if self.atlas.num_vertices != self.hand.num_vertices:
            raise CheckpointError(f"UV atlas {self.hand.uv_obj_path} has {self.atlas.num_vertices} vertices, "
                                  f"the hand model {self.hand.num_vertices}")
        # UV-aligned evidence for models that take it, built as in training.
        self.uv_geometry = UVGeometryBuilder.for_model(self.atlas, config)
        self.readout = PressureReadout(self.atlas, self.contact)
        self._uv_mask_tensor = uv_mask.tensor()
        self.model = model.eval()
        # The folder it was loaded from (from_checkpoint), for reports.
        self.checkpoint: Path | None = None
        self._apply_runtime(self.runtime)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        runtime: RuntimeOptions | None = None,
        sampling: SamplingOptions | None = None,
        crop: CropOptions | None = None,
        contact: ContactOptions | None = None,
        hand_side: str | None = None,
        hand_model_path: str | os.PathLike | None = None,
        uv_obj_path: str | os.PathLike | None = None,
        uv_mask=None,
    ) -> "EgoPressPipeline":
        """Load a checkpoint folder and the UV mask it was trained with.

        The mask is, in order: ``uv_mask`` if given (e.g. the hand a data set was made with),
        the folder's ``hand_uv_mask.json`` (written by training), or the mask of ``hand_side``
        (default right) of ``hand_model_path`` (default: the bundled hand); it must match the
        checkpoint's UV layout.

        Args:
            path: checkpoint folder (``config.json``, ``model.safetensors``) of either model kind;
                None: :data:`~egopress_core.assets.DEFAULT_CHECKPOINT`.
            runtime: device, precision, channels-last, compile; checked against this machine
                before anything is loaded.
            hand_side: if given, the checkpoint's hand must be this one.

        Raises:
            CheckpointError: missing or unreadable checkpoint, a mask that does not match, or the
                wrong hand.
            ConfigError: a device, precision or compile mode this machine cannot run.
        """
        from egopress_core.data.sources import HandUVMask, hand_uv_mask

        runtime = _checked("runtime", runtime, RuntimeOptions)
        folder = Path(path) if path else DEFAULT_CHECKPOINT
        if not folder.is_dir():
            hint = ("" if path else " (no checkpoint given and the package's default checkpoint is missing; "
                    "train one with `egopress train` and pass its model folder)")
            raise CheckpointError(f"checkpoint folder {folder} does not exist{hint}")
        device = check_runtime(runtime)
        model = load_pressure_model(folder, map_location=device)
        if uv_mask is None:
            mask_file = folder / UV_MASK_FILE
            if mask_file.is_file():
                try:
                    uv_mask = HandUVMask.load(mask_file)
                except (DataError, KeyError) as error:
                    raise CheckpointError(f"{mask_file}: {error}") from error
            else:
                uv_mask = hand_uv_mask(tuple(model.config.uv_size), hand_side or "right", hand_model_path, uv_obj_path)
        if hand_side is not None and uv_mask.side != hand_side:
            raise CheckpointError(f"checkpoint {folder} estimates the {uv_mask.side} hand, not the {hand_side} hand")
        if not uv_mask.matches(model.config.uv_layout):
            raise CheckpointError(f"checkpoint {folder} was trained on UV layout {model.config.uv_layout!r}, "
                                  f"but the hand model's atlas is {uv_mask.layout_id!r}; give the hand model it was "
                                  "trained with")
        pipeline = cls(model, uv_mask, runtime=runtime, sampling=sampling, crop=crop, contact=contact)
        pipeline.checkpoint = folder
        return pipeline

    # -- properties ------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def is_video_model(self) -> bool:
        """EgoPressDiff (windows of frames, a live stream) rather than the per-frame baseline."""
        from egopress_core.model.egopressdiff import EgoPressDiff

        return isinstance(self.model, EgoPressDiff)

    @property
    def window_length(self) -> int:
        return int(self.model.config.num_frames)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.model.config.image_size)  # type: ignore[return-value]

    @property
    def uv_size(self) -> tuple[int, int]:
        return tuple(self.model.config.uv_size)  # type: ignore[return-value]

    @property
    def uv_layout_id(self) -> str:
        """Layout id of the published maps: the hand's atlas at the model's UV resolution."""
        return self.atlas.layout_id

    @property
    def hand_side(self) -> str:
        return self.uv_mask.side

    @property
    def faces(self) -> np.ndarray:
        return self.hand.faces

    @property
    def topology_id(self) -> str:
        return self.hand.topology_id

    def describe(self) -> dict[str, Any]:
        """What was loaded (reports, logs)."""
        return {"checkpoint": None if self.checkpoint is None else str(self.checkpoint), "model": type(self.model).__name__,
                "device": str(self.device), "window": self.window_length, "image_size": list(self.image_size),
                "uv_size": list(self.uv_size), "uv_layout_id": self.uv_layout_id, "topology_id": self.topology_id,
                "hand_side": self.hand_side}

    # -- runtime ---------------------------------------------------------------------------

    def to(self, runtime: RuntimeOptions | str | torch.device) -> "EgoPressPipeline":
        """Move the model (and apply precision, channels-last, compile) to ``runtime``: a
        :class:`RuntimeOptions`, or a device keeping the other runtime options. Streams made
        before restart their window on their next frame.

        Moving to the CPU frees cached accelerator memory. A U-Net compiled before stays wrapped
        (torch has no undo); it is simply not called while the model is parked.

        Raises:
            ConfigError: an unusable device, or a precision or compile mode it cannot run; the
                pipeline is then unchanged.
        """
        if not isinstance(runtime, RuntimeOptions):
            runtime = dataclasses.replace(self.runtime, device=str(runtime))
        check_runtime(runtime)
        leaving_accelerator = self.device.type != "cpu"
        self._apply_runtime(runtime)
        if leaving_accelerator and self.device.type == "cpu":
            release_accelerator_memory()
        return self

    def _apply_runtime(self, runtime: RuntimeOptions) -> None:
        device = check_runtime(runtime)
        self.model.to(device)
        if self.is_video_model:
            prepare_model_for_inference(self.model, channels_last=runtime.channels_last, compile=runtime.compile,
                                        compile_options=compile_options(runtime))
        self.runtime = runtime

    # -- conditions ------------------------------------------------------------------------

    def uv_mask_tensor(self) -> torch.Tensor:
        """(1, 1, Hu, Wu) float32 UV hand mask (CPU)."""
        return self._uv_mask_tensor

    def complete_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """``batch`` with the UV mask and, for models that take it, the UV geometry added.

        Args:
            batch: window batch: ``rgb`` (B, N, 3, H, W), ``depth_m`` (B, N, 1, H, W),
                ``intrinsics`` (B, N, 3, 3), ``joints`` (B, N, 21, 3), ``vertices`` (B, N, V, 3),
                ``valid`` (B, N), at model resolution (:mod:`egopress_core.preprocessing`).
        """
        missing = [key for key in FRAME_FIELDS if key not in batch]
        if missing:
            raise DataError(f"window batch is missing {missing}")
        completed = dict(batch)
        completed.setdefault("uv_mask", self._uv_mask_tensor)
        if self.uv_geometry is not None and completed.get("uv_geometry") is None:
            completed["uv_geometry"] = self.uv_geometry(completed)
        return completed

    def conditions(self, batch: Mapping[str, Any]):
        """The model's conditions of a window batch of any length (see :meth:`complete_batch`)."""
        return self.model.build_conditions(self.complete_batch(batch), check_window=False)

    def prepare_sequence(self, sequence) -> dict[str, Any]:
        """A data-set sequence (:class:`~egopress_core.data.records.SequenceSource`) as one
        (B = 1) window batch, preprocessed exactly as in training, with its ground truth."""
        from egopress_core.data.windows import ClipWindowDataset, WindowConfig

        length = len(sequence)
        window = WindowConfig(window=length, stride=length, image_size=self.image_size, uv_size=self.uv_size,
                              crop=self.crop.crop, hand_margin=self.crop.hand_margin,
                              min_crop_fraction=self.crop.min_crop_fraction, depth_resize=self.crop.depth_resize,
                              skip_invalid=False, min_valid_frames=0)
        item = ClipWindowDataset([sequence], window)[0]
        batch = {key: value[None] if isinstance(value, torch.Tensor) else value for key, value in item.items()}
        return self.complete_batch(batch)

    # -- offline ---------------------------------------------------------------------------

    @torch.no_grad()
    def estimate(self, batch: Mapping[str, Any], sampling: SamplingOptions | None = None, seed: int | None = None,
                 progress: bool = False) -> torch.Tensor:
        """UV pressure of whole sequences: (B, N, 1, Hu, Wu) kPa on the model's device.

        EgoPressDiff covers each sequence with overlapping windows blended across both directions
        of context (:func:`~egopress_core.inference.estimate_sequence`); the per-frame baseline
        classifies each frame.

        Args:
            batch: window batch of any length N (see :meth:`complete_batch`).
            sampling: overrides the pipeline's sampling options for this call.
            seed: overrides ``sampling.seed`` (e.g. one seed per labelled chunk).
        """
        from egopress_core.inference import estimate_sequence

        sampling = _checked("sampling", sampling, SamplingOptions, self.sampling)
        conditions = self.conditions(batch)
        if not self.is_video_model:
            with autocast_context(self.device, self.runtime.precision):
                return self.model.sample(conditions)
        if sampling.stride is not None and sampling.stride > self.window_length:
            raise ConfigError(f"SamplingOptions.stride must be at most the model's window ({self.window_length}). "
                              f"Got {sampling.stride}")
        return estimate_sequence(
            self.model, conditions, stride=sampling.stride, num_inference_steps=sampling.num_inference_steps,
            scheduler=sampling.scheduler, guidance_scale=sampling.guidance_scale,
            seed=sampling.seed if seed is None else int(seed), warm_start_strength=sampling.warm_start_strength,
            progress=progress, window_batch_size=sampling.window_batch_size, precision=self.runtime.precision,
        )

    def __call__(self, inputs, sampling: SamplingOptions | None = None, seed: int | None = None,
                 progress: bool = False) -> PipelineOutput:
        """Offline pressure for a data-set sequence or a window batch (context both ways).

        Args:
            inputs: a :class:`~egopress_core.data.records.SequenceSource` (preprocessed as in
                training, :meth:`prepare_sequence`) or a window batch (:meth:`complete_batch`).
        """
        batch = self.complete_batch(inputs) if isinstance(inputs, Mapping) else self.prepare_sequence(inputs)
        pressure = self.estimate(batch, sampling=sampling, seed=seed, progress=progress)
        return PipelineOutput(uv_pressure_kpa=pressure[:, :, 0].float().cpu().numpy(), inputs=batch)

    # -- live ------------------------------------------------------------------------------

    def stream(self, sampling: SamplingOptions | None = None, options: StreamOptions | None = None,
               record_timings: bool = False, cache_frame_features: bool = True):
        """A live stream over this pipeline: ``add`` / ``step`` (or ``push``) camera frames,
        ``reset()`` for a new scene (:class:`~egopress_core.stream.PressureStream`). The per-frame
        baseline streams too, each frame on its own (the sampler options do not apply to it).

        Args:
            sampling: default :data:`~egopress_core.options.LIVE_SAMPLING`.
            options: the stream's time bookkeeping.
            record_timings: time the model's stages of every frame.
            cache_frame_features: encode each frame once (False re-encodes every window; same
                results, for comparison).
        """
        from egopress_core.stream import PressureStream

        return PressureStream(self, _checked("sampling", sampling, SamplingOptions, LIVE_SAMPLING),
                              _checked("options", options, StreamOptions), record_timings=record_timings,
                              cache_frame_features=cache_frame_features)


def _checked(name: str, value: Any, cls: type, default: Any = None) -> Any:
    if value is None:
        return default if default is not None else cls()
    if not isinstance(value, cls):
        raise ConfigError(f"{name} must be a {cls.__name__}. Got {type(value).__name__}")
    return value
