"""Offline labelling of a rosbag2 recording with hand meshes and EgoPressDiff pressure
(``egopress label-bag``, ``ros2 run egopress_ros label_bag``).

The output bag holds every message of the input untouched (same bytes, bag times, connections,
definitions and QoS) plus, for every synchronised colour frame, stamped with that image's header
stamp and logged at its bag time:

====================================  =========================  =====================================
topic (``--namespace``, default        type                       when
``/egopress``)
====================================  =========================  =====================================
``<ns>/hand_mesh``                    egopress_ros/HandMesh      every frame (confidence 0: no hand)
``<ns>/uv_pressure``                  egopress_ros/UVPressure    frames with a hand
``<ns>/hand_contact``                 egopress_ros/HandContact   frames with a hand
``<ns>/uv_pressure/image``            sensor_msgs/Image rgb8     frames with a hand (colour-mapped map)
``<ns>/uv_pressure/image_raw``        sensor_msgs/Image 32FC1    frames with a hand (kPa)
``<ns>/hand_contact/points``          sensor_msgs/PointCloud2    frames with a hand (x, y, z, pressure, contact)
====================================  =========================  =====================================

These are the live pressure node's outputs (same conversions, :mod:`egopress_core.contact`), so a
labelled bag and a live recording can be mixed. As there, a frame without a hand gets no
pressure: a hand the tracker lost may still be pressing, so "no contact" would be a false label.

How it runs:

1. **Index** (:mod:`~egopress_core.rosbag.index`): synchronised frames and contiguous segments.
2. **Plan**: each segment is cut into chunks of ``chunk_frames`` frames. A chunk is estimated
   with ``context_frames`` more frames of its segment on each side, so frames at a chunk's edge
   still get context from both directions; the context's estimates are discarded. Chunks of
   equal length are batched ``batch_size`` at a time into one model call.
3. **Label** each batch: read its frames back by bag time, estimate the hand mesh (backend
   ``ground_truth`` | ``keypoints`` | ``mediapipe``), crop and resize each frame as the live node
   does (:mod:`egopress_core.preprocessing`), and run the checkpoint's
   :class:`~egopress_core.pipeline.EgoPressPipeline` offline over the whole span (overlapping
   windows blended with tent weights, noise seeded by ``seed`` and the batch number). The batch's results are saved in the
   work folder ``.<OUT>.labelling/`` next to the output, atomically.
4. **Write** the output bag into the work folder, then rename it to ``OUT`` and delete the work
   folder. A report (``OUT.report.json``) lists what was skipped and why.

An interrupted run (crash, Ctrl-C, power loss) leaves the work folder; ``resume=True``
(``--resume``) checks that the input bag, the checkpoint and every option are unchanged and
labels only the batches not saved yet. Each batch depends only on its own frames and seed, so the
resumed output is identical to an uninterrupted one. The input bag is only ever read.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from egopress_core.errors import ConfigError, DataError, EgoPressError
from egopress_core.files import replacing, write_json_atomic
from egopress_core.options import config_differences
from egopress_core.rosbag import accounting
from egopress_core.rosbag.index import BagIndex, FrameRef
from egopress_core.rosbag.label_options import LabelOptions, report_path_for, work_dir_for
from egopress_core.rosbag.label_plan import (
    Chunk,
    ChunkGroup,
    LabelReport,
    checkpoint_fingerprint,
    files_fingerprint,
    plan_chunks,
    plan_hash,
)

STATE_FORMAT = "egopress-label-state"
# 2: options nested by concern (sampling, runtime, crop, contact).
STATE_VERSION = 2


class HandTopologyError(DataError):
    """The estimated hand meshes follow another topology than the checkpoint's hand (fatal)."""


@dataclass
class BagPlan:
    """A bag's index and chunk groups, and its report so far: made once by
    :meth:`BagLabeller.plan`, taken by every process that labels part of the bag."""

    index: BagIndex
    groups: list[ChunkGroup]
    report: LabelReport


class LabelModels:
    """The checkpoint's pipeline and the hand-mesh estimator for one :class:`LabelOptions`,
    loaded once (a fleet worker labels many bags with them)."""

    def __init__(self, pipeline, estimator) -> None:
        self.pipeline = pipeline
        self.estimator = estimator

    @classmethod
    def load(cls, options: LabelOptions) -> "LabelModels":
        """Raises CheckpointError / ConfigError for a bad checkpoint, stride or backend."""
        from egopress_core.perception import build_estimator
        from egopress_core.pipeline import EgoPressPipeline

        pipeline = EgoPressPipeline.from_checkpoint(options.checkpoint, runtime=options.runtime, sampling=options.sampling,
                                                    crop=options.crop, contact=options.contact,
                                                    hand_model_path=options.hand_model_path)
        window = pipeline.window_length
        if options.sampling.stride is not None and options.sampling.stride > window:
            raise ConfigError(f"stride must be at most the model's window ({window}). Got {options.sampling.stride}")
        # Built before any bag is read, so that a missing optional backend (mediapipe) fails at once.
        model_path = options.hand_model_path or pipeline.uv_mask.hand_model_path
        side = pipeline.hand_side
        if options.backend == "ground_truth":
            estimator = build_estimator("ground_truth", side=side, model_path=model_path)
        else:
            estimator = build_estimator(options.backend, side=side, model_path=model_path,
                                        depth_refinement=options.depth_refinement, min_confidence=options.min_hand_confidence)
        return cls(pipeline, estimator)


class _Timer:
    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + seconds


class BagLabeller:
    """One labelling run of ``input_bag`` into ``output_bag`` (see the module docstring).

    Args:
        input_bag: rosbag2 folder or ``.mcap`` / ``.db3`` file.
        output_bag: bag folder to create (must not exist).
        options: :class:`LabelOptions`.
        resume: continue an interrupted run of the same command.
        progress: tqdm bars.
        batch_callback: called with the batch number after each batch's results are saved
            (hook for tests and progress reporting; an exception raised there stops the run and
            leaves it resumable).
        accept_loss: keep the output even when input messages could not be copied into it
            (damaged regions); the report lists them either way. Without it such a run fails
            and stays resumable.
        models: the checkpoint's pipeline and estimator, already loaded for these options (a
            fleet worker labels many bags with one); None: loaded by the run.

    The run's steps are public so that :mod:`egopress_core.rosbag.fleet` can spread one bag
    over processes: :meth:`plan` (index, chunk plan, work folder) in one, :meth:`label_group`
    in any (after :meth:`adopt` of the plan), :meth:`write_output` in one, each saving what it
    made in the work folder exactly as :meth:`run` does.
    """

    def __init__(self, input_bag: str | os.PathLike, output_bag: str | os.PathLike, options: LabelOptions | None = None,
                 resume: bool = False, progress: bool = True, batch_callback: Callable[[int], None] | None = None,
                 accept_loss: bool = False, models: LabelModels | None = None) -> None:
        self.input = Path(input_bag)
        self.output = Path(output_bag)
        self.options = options or LabelOptions()
        self.resume = bool(resume)
        self.accept_loss = bool(accept_loss)
        self.progress = bool(progress)
        self.batch_callback = batch_callback
        self.work = work_dir_for(self.output)
        self.report = LabelReport(input=str(self.input), output=str(self.output), options=self.options.to_dict())
        self.timer = _Timer()
        self.models = models
        self.reader = None

    # -- entry point -----------------------------------------------------------------------

    def run(self) -> LabelReport:
        """Labels the bag; returns the report (also saved next to the output).

        Raises:
            DataError / ConfigError / CheckpointError: bad input, options or checkpoint (the
                report, saved anyway, says what was found before the error). Nothing is
                created under the output's name unless the run completes.
        """
        self.check_paths()
        with self.reporting():
            self._load_model()
            with self.opened():
                self.plan()
                self._label_all()
                self.write_output()
            self.remove_work_folder()
        return self.report

    def remove_work_folder(self) -> None:
        """After the output is written: the saved groups are not needed any more."""
        shutil.rmtree(self.work, ignore_errors=True)

    @contextmanager
    def reporting(self, started: float | None = None, finished_status: str = "complete"):
        """Runs the block, sets the report's status (``finished_status``, ``interrupted`` or
        ``failed`` with the error) and saves the report next to the output, whatever happens.
        ``started``: perf_counter time the run's total counts from (default: now)."""
        started = time.perf_counter() if started is None else started
        try:
            yield self.report
            self.report.status = finished_status
        except KeyboardInterrupt:
            self.report.status = "interrupted"
            self.report.error = f"interrupted; run the same command with --resume to continue (work folder {self.work})"
            raise
        except EgoPressError as error:
            self.report.status = "failed"
            self.report.error = str(error)
            raise
        except Exception as error:
            self.report.status = "failed"
            self.report.error = f"{type(error).__name__}: {error}"
            raise
        finally:
            if self.reader is not None:
                self.report.unreadable = self.reader.unreadable_report()
                self.report.integrity = self.reader.integrity_report()
            self.report.timings_s = {name: round(value, 3) for name, value in self.timer.totals.items()}
            self.report.timings_s["total"] = round(time.perf_counter() - started, 3)
            if self.output.parent.is_dir():
                self.report.save(report_path_for(self.output))

    def check_paths(self) -> None:
        """Raises DataError for a missing input, an output that exists, or a work folder or report in the way."""
        if not self.input.exists():
            raise DataError(f"{self.input}: no such bag")
        if self.output.exists():
            raise DataError(f"{self.output} exists already; choose another output (the labeller never overwrites)")
        resolved_input, resolved_output = self.input.resolve(), self.output.resolve()
        if resolved_output == resolved_input or resolved_input in resolved_output.parents:
            raise DataError(f"the output {self.output} must not be inside the input bag {self.input}")
        if not self.output.parent.is_dir():
            raise DataError(f"{self.output.parent}: the output's folder does not exist")
        if self.work.exists() and not self.resume:
            raise DataError(f"an interrupted labelling into {self.output} left {self.work}; run the same command with "
                            "--resume to continue it, or delete that folder to start over")
        report = report_path_for(self.output)
        if report.exists() and not LabelReport.was_written_for(report, self.output):
            # Only the report of an earlier run into this same output (failed or interrupted) is replaced.
            raise DataError(f"{report} exists already and the labeller never overwrites a file it did not make; move it "
                            "or choose another output")

    @contextmanager
    def opened(self):
        """The input bag open for reading (``self.reader``) while the block runs."""
        from egopress_core.rosbag.reader import BagReader
        from egopress_core.rosbag.typestore import egopress_typestore

        self.store = egopress_typestore()
        with BagReader(self.input) as reader:
            self.reader = reader
            try:
                yield reader
            finally:
                # What was read stays in the report; the closed reader is not used again.
                self.report.unreadable = reader.unreadable_report()
                self.report.integrity = reader.integrity_report()
                self.reader = None

    def plan(self) -> None:
        """Indexes the open bag, plans its chunk groups and prepares (or checks, on resume) the
        work folder. Needs the model (:meth:`_load_model`) for its window length."""
        from egopress_core.rosbag.index import build_index

        options, reader = self.options, self.reader
        for item in reader.integrity_report():
            if item.get("damaged_chunks"):
                self.report.notes.append(f"{item['file']}: {len(item['damaged_chunks'])} chunk(s) fail their CRC; their "
                                         "messages cannot be trusted and are not read")
            elif item.get("chunks") and not item.get("chunks_with_crc"):
                self.report.notes.append(f"{item['file']} carries no chunk CRCs (written without them): damage inside "
                                         "its chunks cannot be detected")
        storage = options.storage or reader.storage_identifier
        if options.compression == "storage" and storage != "mcap":
            raise ConfigError("compression 'storage' (zstd mcap chunks) needs storage 'mcap'; the input is "
                              f"{reader.storage_identifier}, pass --storage mcap")
        self.report.storage = storage
        clashing = sorted(set(options.output_topics().values()) & set(reader.topics))
        if clashing:
            raise DataError(f"{self.input} already has topics {clashing}; choose another --namespace for the labels")
        started = time.perf_counter()
        try:
            self.index = build_index(reader, self.store, options.topics, options.sync_slop_s, options.max_gap_s, self.progress)
        finally:
            self.report.unreadable = reader.unreadable_report()
        self.timer.add("index", time.perf_counter() - started)
        self._describe_index()
        window = self.pipeline.window_length
        chunk_frames = options.chunk_frames or 8 * window
        context = window // 2 if options.context_frames is None else options.context_frames
        self.groups = plan_chunks(self.index.segments, chunk_frames, context, options.batch_size)
        self.report.batches = {"total": len(self.groups), "chunk_frames": chunk_frames, "context_frames": context,
                               "batch_size": options.batch_size, "resumed": 0}
        self._prepare_work_folder()

    def planned(self) -> BagPlan:
        """What :meth:`plan` found, for :meth:`adopt` in another process."""
        return BagPlan(index=self.index, groups=list(self.groups), report=copy.deepcopy(self.report))

    def adopt(self, plan: BagPlan) -> None:
        """Takes the plan made by :meth:`plan` (in this or another process) instead of planning."""
        self.index, self.groups = plan.index, list(plan.groups)
        self.report = copy.deepcopy(plan.report)

    # -- model and estimator ---------------------------------------------------------------

    def _load_model(self) -> None:
        """The pipeline and estimator (``self.models`` if given, else loaded from the options)."""
        if self.models is None:
            started = time.perf_counter()
            self.models = LabelModels.load(self.options)
            self.timer.add("load", time.perf_counter() - started)
        self.pipeline, self.estimator = self.models.pipeline, self.models.estimator
        self.checkpoint = self.pipeline.checkpoint
        self.report.model = self.pipeline.describe()

    # -- index and work folder ---------------------------------------------------------------

    def _describe_index(self) -> None:
        index, report = self.index, self.report
        report.frames = {"colour_messages": index.message_counts.get(self.options.topics.color, 0),
                         "synchronised": len(index.frames), "fps": round(index.fps, 3)}
        report.segments = [{"start_stamp_ns": index.frames[a].stamp_ns, "end_stamp_ns": index.frames[b - 1].stamp_ns,
                            "frames": b - a} for a, b in index.segments]
        report.gaps = list(index.gaps)
        report.skipped = index.skipped.entries()
        lenses = {calibration.distortion: calibration for calibration in index.calibrations}
        report.notes.extend(note for calibration in lenses.values()
                            if (note := calibration.distortion_note(self.options.topics.color)))

    def _state(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "input": str(self.input.resolve()),
            "input_files": files_fingerprint(self.reader.files()),
            "checkpoint": checkpoint_fingerprint(self.checkpoint),
            "options": json.loads(json.dumps(self.options.to_dict())),
            "plan": plan_hash(self.index, self.groups),
        }

    def _prepare_work_folder(self) -> None:
        state = self._state()
        path = self.work / "state.json"
        if self.work.exists():
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                raise DataError(f"{path}: unreadable state of the interrupted run ({error}); delete {self.work} to start over") from None
            for key, meaning in (("format", "work folder format"), ("version", "work folder version"),
                                 ("input_files", "input bag"), ("checkpoint", "checkpoint"),
                                 ("options", "options"), ("plan", "frames found in the input")):
                if saved.get(key) != state[key]:
                    detail = ""
                    if key == "options":
                        detail = f" ({', '.join(config_differences(saved.get('options', {}), state['options']))})"
                    raise DataError(f"cannot resume into {self.output}: the {meaning} changed since the interrupted run{detail}; "
                                    f"rerun with the same input and options, or delete {self.work} to start over")
            done = sum(1 for group in self.groups if self._group_path(group).is_file())
            self.report.batches["resumed"] = done
            self.report.notes.append(f"resumed: {done} of {len(self.groups)} batches were already labelled")
        else:
            if self.resume:
                self.report.notes.append(f"--resume: no interrupted run into {self.output} was found; labelled from the start")
            self.work.mkdir()
            write_json_atomic(path, state)

    def _group_path(self, group: ChunkGroup) -> Path:
        return self.work / f"batch_{group.number:06d}.npz"

    # -- labelling ---------------------------------------------------------------------------

    def _label_all(self) -> None:
        from tqdm.auto import tqdm

        pending = self.pending_groups()
        total = sum(group.frames for group in self.groups)
        done = total - sum(group.frames for group in pending)
        with tqdm(total=total, initial=done, desc="label", unit="frame", disable=not self.progress, dynamic_ncols=True) as bar:
            for group in pending:
                self.label_group(group)
                bar.update(group.frames)
                if self.batch_callback is not None:
                    self.batch_callback(group.number)

    def pending_groups(self) -> list[ChunkGroup]:
        """The planned groups whose results are not saved yet."""
        return [group for group in self.groups if not self._group_path(group).is_file()]

    def label_group(self, group: ChunkGroup) -> None:
        """Labels one group of the plan and saves its results in the work folder, atomically."""
        results = self._label_group(group)
        path = self._group_path(group)
        # A fleet may run the same group twice at once (a worker it thought lost): both land whole.
        with replacing(path) as temporary:
            np.savez(temporary, **results)

    def _label_group(self, group: ChunkGroup) -> dict[str, np.ndarray]:
        """Estimates every chunk of the group; returns the arrays saved for its core frames."""
        import torch

        spans = [self._prepare_span(chunk) for chunk in group.chunks]
        pipeline = self.pipeline
        started = time.perf_counter()
        if any(span["valid"].any() for span in spans):
            batch = {key: torch.stack([span[key] for span in spans]) for key in ("rgb", "depth_m", "intrinsics", "joints", "vertices", "valid")}
            pressure = pipeline(batch, seed=self.options.sampling.seed + group.number).uv_pressure_kpa  # (B, N, Hu, Wu)
        else:
            pressure = np.zeros((len(spans), spans[0]["valid"].shape[0], *pipeline.uv_size), dtype=np.float32)
        self.timer.add("model", time.perf_counter() - started)

        rows: dict[str, list] = {key: [] for key in spans[0]["frames"]}
        rows["uv_pressure_kpa"] = []
        for chunk, span, maps in zip(group.chunks, spans, pressure):
            core = slice(chunk.start - chunk.span_start, chunk.stop - chunk.span_start)
            for key, values in span["frames"].items():
                rows[key].extend(values[core])
            has_hand = np.asarray(span["frames"]["has_hand"][core], dtype=bool)
            rows["uv_pressure_kpa"].extend(np.where(has_hand[:, None, None], np.clip(maps[core], 0.0, None), 0.0).astype(np.float32))
        results = {key: np.asarray(values) for key, values in rows.items()}
        results["position"] = np.concatenate([np.arange(c.start, c.stop) for c in group.chunks]).astype(np.int64)
        return results

    def _prepare_span(self, chunk: Chunk) -> dict[str, Any]:
        """Reads, estimates and preprocesses the frames of one chunk's span, in stamp order."""
        import torch

        from egopress_core.preprocessing import HandCropTracker

        frames = self.index.frames[chunk.span_start: chunk.span_stop]
        pipeline = self.pipeline
        num_vertices, (height, width) = pipeline.hand.num_vertices, pipeline.image_size
        count = len(frames)
        tensors = {"rgb": torch.zeros(count, 3, height, width), "depth_m": torch.zeros(count, 1, height, width),
                   "intrinsics": torch.eye(3).repeat(count, 1, 1), "joints": torch.zeros(count, 21, 3),
                   "vertices": torch.zeros(count, num_vertices, 3), "valid": torch.zeros(count, dtype=torch.bool)}
        per_frame = {"has_frame": np.zeros(count, bool), "has_hand": np.zeros(count, bool), "confidence": np.zeros(count, np.float32),
                     "global_orient": np.full((count, 3), np.nan, np.float32), "hand_pose": np.full((count, 45), np.nan, np.float32),
                     "betas": np.full((count, 10), np.nan, np.float32), "transl": np.full((count, 3), np.nan, np.float32),
                     "vertices": np.full((count, num_vertices, 3), np.nan, np.float32),
                     "joints": np.full((count, 21, 3), np.nan, np.float32), "problem": np.array([""] * count, dtype=object)}
        self.estimator.reset()
        tracker = HandCropTracker(pipeline.image_size, pipeline.crop)
        for offset, parts in self._read_span(frames):
            frame = frames[offset]
            try:
                self._prepare_frame(frame, parts, offset, tracker, tensors, per_frame)
            except HandTopologyError:
                raise
            except DataError as error:
                per_frame["problem"][offset] = f"frame skipped: {error}"
        per_frame["problem"] = per_frame["problem"].astype(str)
        return {**tensors, "frames": per_frame}

    def _read_span(self, frames: list[FrameRef]):
        """(offset in ``frames``, {role: (msgtype, message)}) for each frame, in order; a frame
        whose messages could not be read comes with the parts found (possibly none)."""
        from egopress_core.messages import stamp_to_ns

        wanted: dict[tuple[str, int], list[tuple[int, str]]] = {}
        deadline = []
        for offset, frame in enumerate(frames):
            for role, ref in (("color", frame.color), ("depth", frame.depth), ("hand_mesh", frame.hand_mesh),
                              ("keypoints", frame.keypoints)):
                if ref is not None:
                    wanted.setdefault((ref.topic, ref.stamp_ns), []).append((offset, role))
            deadline.append(max(ref.bag_ns for ref in frame.refs()))
        topics = {topic for topic, _ in wanted}
        connections = [c for topic in topics for c in self.reader.connections_of(topic)]
        needed = [sum(1 for _ in frame.refs()) for frame in frames]
        parts: list[dict] = [{} for _ in frames]
        start = min(ref.bag_ns for frame in frames for ref in frame.refs())
        stop = max(deadline) + 1
        next_offset = 0
        read_started = time.perf_counter()
        for connection, bag_ns, data in self.reader.messages(connections, start, stop):
            while next_offset < len(frames) and (len(parts[next_offset]) == needed[next_offset] or bag_ns > deadline[next_offset]):
                self.timer.add("read", time.perf_counter() - read_started)
                yield next_offset, parts[next_offset]
                parts[next_offset] = {}
                next_offset += 1
                read_started = time.perf_counter()
            try:
                message = self.store.deserialize_cdr(data, connection.msgtype)
            except Exception:  # noqa: BLE001 - reported by the index pass already
                continue
            for offset, role in wanted.get((connection.topic, stamp_to_ns(message.header.stamp)), []):
                if offset >= next_offset and role not in parts[offset]:
                    parts[offset][role] = (connection.msgtype, message)
        self.timer.add("read", time.perf_counter() - read_started)
        for offset in range(next_offset, len(frames)):
            yield offset, parts[offset]

    def _prepare_frame(self, frame: FrameRef, parts: dict, offset: int, tracker, tensors: dict, per_frame: dict) -> None:
        import torch

        from egopress_core.preprocessing import preprocess_frame, project_edge_coordinates
        from egopress_core.rosbag.messages import color_to_rgb, depth_to_metres

        missing = [role for role in ("color", "depth") if role not in parts]
        if missing:
            raise DataError(f"its {' and '.join(missing)} message could not be read again (damaged bag region)")
        started = time.perf_counter()
        rgb = color_to_rgb(parts["color"][1], parts["color"][0])
        depth = depth_to_metres(parts["depth"][1], parts["depth"][0])
        calibration = self.index.calibrations[frame.calibration]
        if depth.shape != rgb.shape[:2]:
            raise DataError(f"depth image {depth.shape[1]}x{depth.shape[0]} is not aligned to the colour image "
                            f"{rgb.shape[1]}x{rgb.shape[0]}")
        if calibration.width and calibration.height and (calibration.height, calibration.width) != rgb.shape[:2]:
            raise DataError(f"camera_info is for {calibration.width}x{calibration.height} images, the colour image is "
                            f"{rgb.shape[1]}x{rgb.shape[0]}")
        intrinsics = calibration.intrinsics
        self.timer.add("decode", time.perf_counter() - started)

        started = time.perf_counter()
        try:
            estimate, reason = self._estimate_hand(frame, parts, rgb, depth, intrinsics)
        except HandTopologyError:
            raise
        except DataError as error:  # this frame's hand input is unusable: no hand, the frame is still seen
            estimate, reason = None, f"hand input unusable ({error})"
        self.timer.add("hand", time.perf_counter() - started)
        started = time.perf_counter()
        if estimate is not None:
            if estimate.topology_id != self.pipeline.topology_id:
                raise HandTopologyError(f"the {self.options.backend} hand mesh has topology {estimate.topology_id!r} but the "
                                        f"checkpoint's hand is {self.pipeline.topology_id!r}; pass --hand-model of the checkpoint's hand")
            per_frame["has_hand"][offset] = True
            per_frame["confidence"][offset] = estimate.confidence
            for name in ("global_orient", "hand_pose", "betas", "transl"):
                per_frame[name][offset] = np.asarray(getattr(estimate, name), dtype=np.float32)
            per_frame["vertices"][offset] = estimate.vertices
            per_frame["joints"][offset] = estimate.joints
            points = project_edge_coordinates(estimate.vertices, intrinsics)
        else:
            per_frame["problem"][offset] = f"no hand: {reason}" if reason else "no hand"
            points = None
        box = tracker.update(rgb.shape[:2], points)
        inputs = preprocess_frame(rgb, depth, intrinsics, box, self.pipeline.image_size, self.pipeline.crop.depth_resize)
        tensors["rgb"][offset] = inputs.rgb
        tensors["depth_m"][offset] = inputs.depth_m
        tensors["intrinsics"][offset] = inputs.intrinsics
        if estimate is not None:
            tensors["joints"][offset] = torch.from_numpy(np.asarray(estimate.joints, dtype=np.float32))
            tensors["vertices"][offset] = torch.from_numpy(np.asarray(estimate.vertices, dtype=np.float32))
            tensors["valid"][offset] = True
        per_frame["has_frame"][offset] = True
        self.timer.add("preprocess", time.perf_counter() - started)

    def _estimate_hand(self, frame: FrameRef, parts: dict, rgb, depth, intrinsics):
        """(HandMeshEstimate or None, reason for None)."""
        from egopress_core.data.records import FrameRecord, ManoParams
        from egopress_core import messages as m
        from egopress_core.perception import HandKeypoints, RGBDFrame

        backend, estimator = self.options.backend, self.estimator
        stamp = frame.stamp_ns / 1e9
        if backend == "ground_truth":
            if "hand_mesh" not in parts:
                return None, "no hand mesh message for this frame"
            fields = m.hand_mesh_from_msg(parts["hand_mesh"][1])
            has_hand = fields.has_hand
            if has_hand and fields.topology_id != self.pipeline.topology_id:
                raise HandTopologyError(f"the hand meshes on {self.options.topics.hand_mesh} have topology {fields.topology_id!r} but "
                                        f"the checkpoint's hand is {self.pipeline.topology_id!r}; label with a checkpoint of that hand")
            record = FrameRecord(
                sequence=str(self.input.name), index=0, timestamp_s=stamp, rgb=rgb, depth_m=depth, intrinsics=intrinsics,
                hand_side=fields.hand_side, has_annotation=has_hand,
                mano=ManoParams(global_orient=fields.global_orient, hand_pose=fields.hand_pose, betas=fields.betas,
                                transl=fields.translation) if has_hand else None,
                vertices=fields.vertices if has_hand else None, joints=fields.joints if has_hand else None, uv_pressure_kpa=None,
            )  # fmt: skip
            estimate = estimator.estimate(RGBDFrame.from_record(record))
        elif backend == "keypoints":
            if "keypoints" not in parts:
                return None, "no keypoints message for this frame"
            fields = m.keypoints_from_point_cloud(parts["keypoints"][1])
            if not fields.has_hand:
                return None, "the keypoint tracker reported no hand"
            keypoints = HandKeypoints(points_3d=fields.points_3d, points_2d=fields.points_2d, confidence=fields.confidence)
            estimate = estimator.estimate(RGBDFrame(rgb=rgb, depth_m=depth, intrinsics=intrinsics, stamp=stamp, keypoints=keypoints))
        else:
            estimate = estimator.estimate(RGBDFrame(rgb=rgb, depth_m=depth, intrinsics=intrinsics, stamp=stamp))
        if estimate is None or not estimate.has_hand:
            return None, estimator.last_failure or "the estimator found no hand"
        return estimate, None

    # -- writing -----------------------------------------------------------------------------

    def write_output(self) -> None:
        """Writes the output bag from the open input and every saved group's results, then
        renames it into place (the work folder stays; :meth:`run` removes it)."""
        from tqdm.auto import tqdm

        from egopress_core.rosbag.index import SkipLog
        from egopress_core.rosbag.typestore import HAND_CONTACT, HAND_MESH, IMAGE, POINT_CLOUD2, UV_PRESSURE
        from egopress_core.rosbag.writer import BagWriter

        options, reader, storage = self.options, self.reader, self.report.storage
        order: list[tuple[int, int, int]] = []  # (colour bag time, position, group)
        for group in self.groups:
            for chunk in group.chunks:
                order.extend((self.index.frames[p].color.bag_ns, p, group.number) for p in range(chunk.start, chunk.stop))
        order.sort()
        self._group_cache: dict[int, dict] = {}
        self._problems = SkipLog()
        self._counted_groups: set[int] = set()
        self._stats = {"with_pressure": 0, "without_hand": 0, "not_decodable": 0}
        # rosbags names the storage file after the bag folder: the bag is written under its final
        # name inside the work folder, then moved.
        temporary = self.work / "bag" / self.output.name
        if temporary.parent.exists():
            shutil.rmtree(temporary.parent)
        temporary.parent.mkdir()
        types = {"hand_mesh": HAND_MESH, "uv_pressure": UV_PRESSURE, "hand_contact": HAND_CONTACT, "image": IMAGE,
                 "image_raw": IMAGE, "points": POINT_CLOUD2}
        started = time.perf_counter()
        try:
            with BagWriter(temporary, self.store, storage=storage, compression=options.compression, version=options.bag_version) as writer:
                copies = {}
                copied: dict[str, int] = {}
                for connection in reader.connections:
                    copies[connection.id], note = writer.add_copy_of(connection)
                    if note:
                        self.report.notes.append(note)
                outputs = {key: writer.add_topic(topic, types[key]) for key, topic in options.output_topics().items()}
                cursor = 0
                total = reader.message_count + len(order) or None
                with tqdm(total=total, desc="write", unit="msg", disable=not self.progress, dynamic_ncols=True, leave=False) as bar:
                    for connection, bag_ns, data in reader.messages(reader.connections):
                        while cursor < len(order) and order[cursor][0] < bag_ns:
                            self._write_frame(writer, outputs, *order[cursor])
                            cursor += 1
                            bar.update()
                        writer.write(copies[connection.id], bag_ns, data)
                        copied[connection.topic] = copied.get(connection.topic, 0) + 1
                        bar.update()
                    for item in order[cursor:]:
                        self._write_frame(writer, outputs, *item)
                        bar.update()
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        self.timer.add("write", time.perf_counter() - started)
        self.report.topics_written = dict(writer.counts)
        skipped = SkipLog()
        skipped.merge(self.index.skipped.entries())
        skipped.merge(self._problems.entries())
        self.report.skipped = skipped.entries()
        self.report.frames.update(self._stats)
        # Every input message must be in the output, or the run says which are not.
        accounts = accounting.account(reader.topic_counts(), read=copied, written=copied)
        self.report.accounting = [item.to_dict() for item in accounts]
        summary = accounting.check(accounts, self.accept_loss, "The labelled bag was not saved; run the same command "
                                   "with --resume --accept-loss to keep it without them (the report lists them)")
        if summary is not None:
            self.report.notes.append(f"accepted loss (--accept-loss): {summary}")
        os.replace(temporary, self.output)

    def _group_results(self, number: int) -> dict:
        """A saved batch's arrays plus its contact summaries (computed once, batched)."""
        if number in self._group_cache:
            return self._group_cache[number]
        if len(self._group_cache) >= 2:  # frames are written in time order: older batches are done
            del self._group_cache[next(iter(self._group_cache))]
        path = self._group_path(self.groups[number])
        with np.load(path, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}
        hand = arrays["has_hand"]
        summaries: list = [None] * len(hand)
        forces = np.zeros(len(hand))
        if hand.any():
            frames = self.pipeline.readout(arrays["uv_pressure_kpa"][hand], arrays["vertices"][hand])
            for row, frame in zip(np.flatnonzero(hand), frames):
                summaries[row], forces[row] = frame.contact, frame.uv_total_force_n
        arrays["summaries"] = summaries
        arrays["uv_force_n"] = forces
        arrays["row_of"] = {int(p): i for i, p in enumerate(arrays["position"])}
        self._group_cache[number] = arrays
        if number not in self._counted_groups:
            self._counted_groups.add(number)
            self._stats["with_pressure"] += int(hand.sum())
            self._stats["without_hand"] += int((arrays["has_frame"] & ~hand).sum())
            self._stats["not_decodable"] += int((~arrays["has_frame"]).sum())
            for position, problem in zip(arrays["position"], arrays["problem"]):
                if problem:
                    self._problems.add(self.options.topics.color, str(problem), self.index.frames[int(position)].stamp_ns)
        return arrays

    def _write_frame(self, writer, outputs: dict, bag_ns: int, position: int, group: int) -> None:
        from egopress_core.data.records import ManoParams
        from egopress_core import messages as m
        from egopress_core.perception.types import HandMeshEstimate
        from egopress_core.rosbag.messages import bag_factory
        from egopress_core.visualize import colorize

        arrays = self._group_results(group)
        row = arrays["row_of"][position]
        if not arrays["has_frame"][row]:
            return
        frame = self.index.frames[position]
        store, live, options = self.store, self.pipeline, self.options
        factory = bag_factory(store)
        header = m.header(factory, frame.stamp_ns, frame.frame_id)
        hand = live.hand
        estimate = None
        if arrays["has_hand"][row]:
            estimate = HandMeshEstimate(
                mano=ManoParams(global_orient=arrays["global_orient"][row], hand_pose=arrays["hand_pose"][row],
                                betas=arrays["betas"][row], transl=arrays["transl"][row]),
                vertices=arrays["vertices"][row], joints=arrays["joints"][row], confidence=float(arrays["confidence"][row]),
                estimator=options.backend, hand_side=live.hand_side, hand_model=hand.name, topology_id=hand.topology_id,
                stamp=frame.stamp_ns / 1e9,
            )  # fmt: skip
        writer.write_message(outputs["hand_mesh"], bag_ns, m.hand_mesh(
            factory, header, live.hand_side, hand.name, hand.topology_id, hand.num_vertices, options.backend, estimate))
        if estimate is None:
            return
        uv_map = arrays["uv_pressure_kpa"][row]
        summary = arrays["summaries"][row]
        writer.write_message(outputs["uv_pressure"], bag_ns, m.uv_pressure(
            factory, uv_map, header, live.hand_side, live.uv_layout_id, options.contact.contact_threshold_kpa, float(arrays["uv_force_n"][row])))
        writer.write_message(outputs["hand_contact"], bag_ns, m.hand_contact(factory, summary, header, live.hand_side, hand.topology_id))
        if options.mirrors:
            colours = colorize(uv_map, options.visualization_max_kpa, options.colormap, mask=live.uv_mask.mask)
            writer.write_message(outputs["image"], bag_ns, m.image(factory, colours, "rgb8", header))
            writer.write_message(outputs["image_raw"], bag_ns, m.image(factory, uv_map.astype(np.float32), "32FC1", header))
            writer.write_message(outputs["points"], bag_ns, m.contact_point_cloud(factory, arrays["vertices"][row], summary, header))


def label_bag(input_bag: str | os.PathLike, output_bag: str | os.PathLike, options: LabelOptions | None = None,
              resume: bool = False, progress: bool = True,
              batch_callback: Callable[[int], None] | None = None, accept_loss: bool = False) -> LabelReport:
    """Labels ``input_bag`` into the new bag ``output_bag``; see :class:`BagLabeller`."""
    return BagLabeller(input_bag, output_bag, options, resume=resume, progress=progress, batch_callback=batch_callback,
                       accept_loss=accept_loss).run()
