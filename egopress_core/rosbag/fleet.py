"""Labelling a fleet of recordings on a Ray cluster (``egopress label-bags``).

Every bag found in the inputs is labelled into ``OUT_DIR/<its relative path>`` exactly as
``egopress label-bag`` would (same options, same output bytes, same report next to it), by
long-lived Ray actors that each hold one loaded pipeline (:class:`FleetWorker`: one per GPU, or
per ``cpus_per_worker`` CPUs).

Work units are the steps of :class:`~egopress_core.rosbag.labeller.BagLabeller`, so that one long
bag spreads over every worker:

* **plan** a bag (index it, plan its chunk groups, create or check its work folder) on one worker;
  the plan goes back to the driver, which puts it in Ray's object store for the others;
* **label** one chunk group on any worker, saved atomically in the bag's work folder (the same
  files ``label-bag --resume`` uses);
* **write** the output bag on one worker once every group is saved: the same code as
  ``label-bag``, from the same saved results, so the bytes are the same.

Fault tolerance: workers are actors with ``max_restarts`` (Ray starts a killed worker again, on
any node with room). A unit whose worker died is put back in the queue and goes to the next free
worker; a unit that killed workers ``MAX_UNIT_ATTEMPTS`` times fails its bag, not the fleet. A
bag whose labelling raises an error fails alone (its report says why, as ``label-bag``'s would).
The driver keeps ``OUT_DIR/manifest.json`` (each bag's status, counts, report, error); rerunning
the same command skips finished bags and resumes the others from their saved groups.

Paths: every worker reads the inputs and writes ``OUT_DIR`` by the paths the driver was given, so
on a cluster they must be on a file system all nodes mount at the same place.

Ray is imported only when a fleet runs (``import egopress_core`` does not load it). Why it is
built this way: docs/design.md, "Labelling a fleet".
"""

from __future__ import annotations

import glob
import json
import os
import socket
import time
from collections import OrderedDict, deque
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from egopress_core.errors import ConfigError, DataError, EgoPressError
from egopress_core.files import write_json_atomic
from egopress_core.options import config_differences
from egopress_core.rosbag.label_options import LabelOptions, report_path_for
from egopress_core.rosbag.reader import STORAGE_SUFFIXES, is_ros1_bag, ros1_bag_message

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "egopress-fleet-manifest"
MANIFEST_VERSION = 1
# Restarts Ray gives each worker actor (a killed process or a lost node); after them it is gone.
MAX_WORKER_RESTARTS = 4
# Workers a unit may take down (die while running it) before its bag is failed: a bag that
# crashes the process (a native library fault) must not take the whole fleet with it.
MAX_UNIT_ATTEMPTS = 3
# Input bags a worker keeps open (reader, plan) between units.
OPEN_BAGS_PER_WORKER = 2
# A list file's comment lines start with this.
LIST_COMMENT = "#"


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetBag:
    """One input bag and where its labels go, relative to the output folder."""

    input: Path
    relative: Path

    @property
    def name(self) -> str:
        return self.relative.as_posix()


def is_bag(path: Path) -> bool:
    """A rosbag2 folder (``metadata.yaml``) or a single ``.mcap`` / ``.db3`` file."""
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or (path.is_file() and path.suffix in STORAGE_SUFFIXES)


def _output_name(path: Path) -> Path:
    """The output folder name of an input bag (a single storage file loses its suffix, as a
    ``label-bag`` output is always a bag folder)."""
    return Path(path.stem) if path.is_file() else Path(path.name)


def _bags_under(folder: Path, prefix: Path = Path()) -> list[FleetBag]:
    """Bags found below ``folder`` (not inside other bags, not in hidden folders such as work
    folders), relative to it under ``prefix``."""
    found = []
    for root, folders, files in os.walk(folder):
        root_path = Path(root)
        if "metadata.yaml" in files and root_path != folder:
            found.append(FleetBag(root_path, prefix / root_path.relative_to(folder)))
            folders[:] = []
            continue
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            path = root_path / name
            if path.suffix in STORAGE_SUFFIXES and "metadata.yaml" not in files:
                found.append(FleetBag(path, prefix / path.relative_to(folder).with_suffix("")))
            elif is_ros1_bag(path):
                # Not skipped quietly: the run would look complete without it.
                raise DataError(f"{ros1_bag_message(path)}, or list only the rosbag2 bags to label")
    return found


def _expand(path: Path, relative: Path | None) -> list[FleetBag]:
    """One existing path: a bag, a folder of bags or a list file. ``relative``: the output path
    of ``path`` itself (None: its name)."""
    if is_bag(path):
        return [FleetBag(path, relative if relative is not None else _output_name(path))]
    if is_ros1_bag(path):
        raise DataError(ros1_bag_message(path))
    if path.is_dir():
        return _bags_under(path, relative if relative is not None else Path())
    if path.is_file():
        return _bags_of_list(path)
    raise DataError(f"{path}: not a bag, a folder or a list file")


def _bags_of_list(path: Path) -> list[FleetBag]:
    """A text file naming one bag or folder per line (relative to the file's folder; ``#``
    comments and blank lines are skipped). A relative entry keeps its path under the output
    folder; an absolute one is placed by its name."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a bag, a folder or a readable list of bags ({error})") from None
    found = []
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith(LIST_COMMENT):
            continue
        listed = Path(entry).expanduser()
        target = Path(os.path.normpath(listed if listed.is_absolute() else path.parent / listed))
        if not target.exists():
            raise DataError(f"{path}:{number}: {entry}: no such bag or folder; fix the list")
        inside = not listed.is_absolute() and ".." not in listed.parts
        relative = (listed.with_suffix("") if target.is_file() else listed) if inside else None
        if target.is_file() and not is_bag(target):
            raise DataError(f"{path}:{number}: {entry} is not a bag (a rosbag2 folder, .mcap or .db3); fix the list")
        found.extend(_expand(target, relative))
    return found


def find_bags(inputs: list[str | os.PathLike]) -> list[FleetBag]:
    """The bags of ``inputs`` (bags, folders of bags, globs, list files), each once, in order.

    Raises:
        DataError: an input that does not exist or matches nothing, no bag at all, or two bags
            that would be labelled into the same output path.
    """
    found: list[FleetBag] = []
    for item in inputs:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise DataError(f"{text}: the pattern matches nothing")
            # Relative paths start below the pattern's first wildcard-free folder.
            base = Path(text)
            while glob.has_magic(str(base)):
                base = base.parent
            for match in map(Path, matches):
                if is_ros1_bag(match):
                    raise DataError(ros1_bag_message(match))
                if match.name.startswith(".") or not (is_bag(match) or match.is_dir()):
                    continue
                relative = match.relative_to(base) if match.is_relative_to(base) else Path(match.name)
                found.extend(_expand(match, relative.with_suffix("") if match.is_file() else relative))
        else:
            path = Path(text).expanduser()
            if not path.exists():
                raise DataError(f"{text}: no such bag, folder or list file")
            found.extend(_expand(path, None))
    unique: dict[Path, FleetBag] = {}
    for bag in found:
        unique.setdefault(bag.input.resolve(), bag)
    bags = list(unique.values())
    if not bags:
        raise DataError(f"no bag found in {', '.join(map(os.fspath, inputs))} (a bag is a rosbag2 folder with "
                        "metadata.yaml, or a .mcap / .db3 file)")
    by_output: dict[Path, FleetBag] = {}
    for bag in bags:
        other = by_output.setdefault(bag.relative, bag)
        if other is not bag:
            raise DataError(f"{other.input} and {bag.input} would both be labelled into {bag.relative}; pass their "
                            "parent folders, or list them with distinct relative paths")
    return bags


def labelled_bags_of(path: str | os.PathLike) -> list[Path]:
    """The labelled bags of an ``egopress export-lerobot`` input: a labelled bag itself, or a
    ``label-bags`` output folder (every bag its manifest lists, which must all be complete), or a
    folder of labelled bags.

    Raises:
        DataError: the folder's manifest lists bags that are not labelled yet, or no bag found.
    """
    path = Path(path)
    if is_bag(path):
        return [path]
    manifest = path / MANIFEST_NAME
    if manifest.is_file():
        entries = FleetManifest.read(manifest)["bags"]
        unfinished = [entry["output"] for entry in entries if entry.get("status") != "complete"]
        if unfinished:
            raise DataError(f"{path}: {len(unfinished)} of {len(entries)} bags are not labelled "
                            f"({', '.join(unfinished[:5])}{', ...' if len(unfinished) > 5 else ''}); rerun the same "
                            "`egopress label-bags` command to finish them, or pass the labelled bags one by one")
        return [path / entry["output"] for entry in entries]
    if path.is_dir():
        bags = [bag.input for bag in _bags_under(path)]
        if bags:
            return bags
    raise DataError(f"{path}: not a labelled bag nor a folder of labelled bags")


# ----------------------------------------------------------------------------------------------
# Manifest
# ----------------------------------------------------------------------------------------------


def finished_report(output: Path, input_bag: Path, options: LabelOptions) -> dict | None:
    """The saved report of a complete labelling of ``input_bag`` into ``output`` with
    ``options`` (None if there is none: the bag still needs labelling)."""
    path = report_path_for(output)
    if not output.is_dir() or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    same = (isinstance(saved, dict) and saved.get("status") == "complete" and saved.get("output") == str(output)
            and saved.get("input") == str(input_bag)
            and saved.get("options") == json.loads(json.dumps(options.to_dict())))
    return saved if same else None


class FleetManifest:
    """``OUT_DIR/manifest.json``: the options and each bag's status (pending, planning,
    labelling, writing, complete, failed, interrupted), counts, report and error; saved
    atomically whenever a bag changes state."""

    def __init__(self, out_dir: Path, bags: list[FleetBag], options: LabelOptions) -> None:
        self.path = out_dir / MANIFEST_NAME
        self.out_dir = out_dir
        self.options = json.loads(json.dumps(options.to_dict()))
        self.entries: list[dict] = [
            {"input": str(bag.input), "output": bag.name, "status": "pending", "frames": {}, "batches": {},
             "report": str(report_path_for(Path(bag.name))), "error": None}
            for bag in bags
        ]  # fmt: skip
        self.summary: dict = {}
        # Bags of earlier runs into the same folder that this run was not given: listed as they were.
        self.kept: list[dict] = []

    @staticmethod
    def read(path: Path) -> dict:
        try:
            saved = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise DataError(f"{path}: unreadable manifest ({error}); delete it to start the fleet's bookkeeping over "
                            "(finished bags are still skipped by their reports)") from None
        if not isinstance(saved, dict) or saved.get("format") != MANIFEST_FORMAT or not isinstance(saved.get("bags"), list):
            raise DataError(f"{path} is not an egopress label-bags manifest; choose another output folder")
        return saved

    def check_earlier(self) -> None:
        """An earlier run into the same folder must have used the same options (else its
        finished bags and this run's would be labelled differently)."""
        if not self.path.is_file():
            return
        saved = self.read(self.path)
        outputs = {entry["output"] for entry in self.entries}
        self.kept = [entry for entry in saved["bags"] if isinstance(entry, dict) and entry.get("output") not in outputs]
        if saved.get("options") != self.options:
            differences = ", ".join(config_differences(saved.get("options") or {}, self.options))
            raise DataError(f"{self.out_dir} holds bags labelled with other options ({differences}); rerun with the "
                            "same options, or choose another output folder")

    def save(self) -> None:
        document = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "summary": self.summary, "options": self.options, "bags": self.entries + self.kept}
        write_json_atomic(self.path, document, default=str)


# ----------------------------------------------------------------------------------------------
# Worker (a Ray actor)
# ----------------------------------------------------------------------------------------------


class FleetWorker:
    """Holds one loaded pipeline and labels units of any bag (run as a Ray actor by
    :func:`label_bags`; plain methods, so it also runs in-process).

    A load error (checkpoint, device, backend) is kept and raised by :meth:`describe`, so the
    driver reports it as the one-line error it is instead of a dead actor.
    """

    def __init__(self, options: LabelOptions, accept_loss: bool = False, threads: int | None = None) -> None:
        import torch

        from egopress_core.rosbag.labeller import LabelModels

        if threads is not None:
            # The worker's CPU share, whatever OMP_NUM_THREADS the node was started with. CPU
            # results depend on the thread count (reduction order): label-bag run with the same
            # count writes the same bytes.
            torch.set_num_threads(threads)
        self.options = options
        self.accept_loss = accept_loss
        self.open_bags: OrderedDict[str, tuple[Any, ExitStack]] = OrderedDict()
        self.load_error: BaseException | None = None
        try:
            self.models = LabelModels.load(options)
        except EgoPressError as error:
            self.load_error = error

    def describe(self) -> dict:
        """Process, node and device of this worker."""
        if self.load_error is not None:
            raise self.load_error
        import torch

        return {"pid": os.getpid(), "host": socket.gethostname(), "device": str(self.models.pipeline.device),
                "torch_threads": torch.get_num_threads()}

    # -- units -------------------------------------------------------------------------------

    def plan(self, input_bag: str, output: str) -> tuple[Any, list[int], dict]:
        """Plans a bag (see :meth:`BagLabeller.plan`): (plan, numbers of the groups not saved
        yet, step timings). Its report is saved with status ``labelling`` (``failed`` and the
        error if the bag cannot be labelled)."""
        labeller = self._labeller(input_bag, output)
        labeller.check_paths()
        with labeller.reporting(finished_status="labelling"):
            labeller._load_model()
            stack = ExitStack()
            stack.enter_context(labeller.opened())
            try:
                labeller.plan()
            except BaseException:
                stack.close()
                raise
        self._keep_open(output, labeller, stack)
        pending = [group.number for group in labeller.pending_groups()]
        return labeller.planned(), pending, dict(labeller.timer.totals)

    def label(self, input_bag: str, output: str, plan_box: list, group_number: int) -> dict:
        """Labels one chunk group of a planned bag (nothing if its results are saved already).
        ``plan_box``: [ObjectRef of the plan], boxed so that Ray fetches it only when this
        worker does not hold the bag open yet."""
        labeller = self._adopted(input_bag, output, plan_box)
        group = labeller.groups[group_number]
        before = dict(labeller.timer.totals)
        if labeller._group_path(group).is_file():
            return {"frames": group.frames, "labelled": False, "timings": {}, "pid": os.getpid()}
        labeller.label_group(group)
        spent = {name: value - before.get(name, 0.0) for name, value in labeller.timer.totals.items()}
        return {"frames": group.frames, "labelled": True, "timings": spent, "pid": os.getpid()}

    def write(self, input_bag: str, output: str, plan_box: list, timings: dict, elapsed_s: float) -> dict:
        """Writes the output bag of a bag whose groups are all saved, as ``label-bag`` does,
        removes its work folder and saves its report (complete); returns the report.
        ``timings``: the bag's step timings so far (all workers); ``elapsed_s``: its wall time
        so far, so the report's total is the bag's."""
        saved = finished_report(Path(output), Path(input_bag), self.options)
        if saved is not None:  # written by a worker that died before answering
            return saved
        labeller = self._adopted(input_bag, output, plan_box)
        stack = self.open_bags.pop(output)[1]
        labeller.timer.totals = dict(timings)
        try:
            with labeller.reporting(started=time.perf_counter() - elapsed_s):
                missing = [group.number for group in labeller.pending_groups()]
                if missing:
                    raise DataError(f"batches {missing} of {input_bag} are not in {labeller.work}; rerun the same command")
                with stack:
                    labeller.write_output()
                labeller.remove_work_folder()
        finally:
            stack.close()
        return labeller.report.to_dict()

    def release(self, output: str) -> None:
        """Closes a bag this worker holds open (its labelling failed elsewhere)."""
        item = self.open_bags.pop(output, None)
        if item is not None:
            item[1].close()

    # -- open bags ---------------------------------------------------------------------------

    def _labeller(self, input_bag: str, output: str):
        from egopress_core.rosbag.labeller import BagLabeller

        self.release(output)
        return BagLabeller(input_bag, output, self.options, resume=True, progress=False, accept_loss=self.accept_loss,
                           models=self.models)

    def _keep_open(self, output: str, labeller, stack: ExitStack) -> None:
        self.open_bags[output] = (labeller, stack)
        while len(self.open_bags) > OPEN_BAGS_PER_WORKER:
            self.open_bags.popitem(last=False)[1][1].close()

    def _adopted(self, input_bag: str, output: str, plan_box: list):
        if output in self.open_bags:
            self.open_bags.move_to_end(output)
            return self.open_bags[output][0]
        import ray

        labeller = self._labeller(input_bag, output)
        labeller._load_model()
        labeller.adopt(ray.get(plan_box[0]))
        stack = ExitStack()
        stack.enter_context(labeller.opened())
        self._keep_open(output, labeller, stack)
        return labeller


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


@dataclass
class FleetReport:
    """What a :func:`label_bags` run did (the manifest holds the same per bag)."""

    out_dir: str
    manifest: str
    bags: list[dict]
    workers: list[dict] = field(default_factory=list)
    frames_labelled: int = 0
    wall_s: float = 0.0
    # Until the first worker had its model loaded (Ray's start included when it started here).
    startup_s: float = 0.0
    units_retried: int = 0
    worker_failures: int = 0

    @property
    def failed(self) -> list[dict]:
        return [entry for entry in self.bags if entry["status"] != "complete"]

    def summary(self) -> str:
        complete = sum(entry["status"] == "complete" for entry in self.bags)
        frames = sum(entry["frames"].get("synchronised", 0) for entry in self.bags if entry["status"] == "complete")
        lines = [f"{complete} of {len(self.bags)} bags labelled into {self.out_dir} ({frames} frames); "
                 f"{self.frames_labelled} frames labelled by this run in {self.wall_s:.1f} s"
                 + (f" ({self.frames_labelled / self.wall_s:.2f} frames/s)" if self.wall_s > 0 and self.frames_labelled else "")
                 + f" on {len(self.workers)} worker(s)"]
        if self.worker_failures:
            lines.append(f"  {self.worker_failures} worker failure(s); {self.units_retried} unit(s) run again on another worker")
        for entry in self.bags:
            if entry["status"] != "complete":
                lines.append(f"  {entry['status']}: {entry['output']} ({entry['input']}): {entry['error']}")
        lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)


@dataclass
class _BagState:
    number: int
    bag: FleetBag
    output: Path
    entry: dict
    started: float = 0.0
    plan_box: list | None = None
    groups_left: set = field(default_factory=set)
    frames: int = 0
    timings: dict = field(default_factory=dict)
    open_on: set = field(default_factory=set)


@dataclass(frozen=True)
class _Unit:
    kind: str  # plan | label | write | describe
    bag: int = -1
    group: int = -1


def _worker_resources(options: LabelOptions, cluster: dict, cpus_per_worker: float, workers: int | None) -> tuple[dict, int]:
    """(Ray resources of one worker, number of workers)."""
    device = options.runtime.device
    gpus = int(cluster.get("GPU", 0))
    cpus = float(cluster.get("CPU", 0))
    wants_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    if device.startswith("cuda:"):
        raise ConfigError(f"each label-bags worker is given one GPU of its own by Ray; pass --device cuda (or auto), not {device}")
    if wants_gpu:
        if gpus == 0:
            raise ConfigError(f"--device {device} but the Ray cluster has no GPU; pass --device cpu or add GPU nodes")
        resources, capacity = {"num_gpus": 1, "num_cpus": cpus_per_worker}, gpus
    else:
        resources, capacity = {"num_cpus": cpus_per_worker}, int(cpus // cpus_per_worker)
        if capacity == 0:
            raise ConfigError(f"the Ray cluster has {cpus:g} CPUs, fewer than one worker's {cpus_per_worker:g} "
                              "(--cpus-per-worker); add nodes or ask for fewer CPUs per worker")
    if workers is None:
        workers = capacity
    elif workers > capacity:
        kind = "GPU" if wants_gpu else f"{cpus_per_worker:g} CPU"
        raise ConfigError(f"--workers {workers} but the Ray cluster holds {capacity} workers of one {kind}; ask for at most "
                          f"{capacity}")
    return resources, workers


def check_reachable(address: str | None, timeout_s: float = 10.0) -> None:
    """A HOST:PORT that does not answer fails here in seconds (Ray itself retries for minutes,
    then ends the process)."""
    if not address or address == "auto" or address.startswith("local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address must be auto or HOST:PORT of the Ray head. Got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({error}); start it with `ray start --head` on its "
                          "head node, or check --address") from None


def _wait_for_exit(pids: list[int], timeout_s: float) -> None:
    """Return when none of the local processes ``pids`` exists any more, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    waiting = set(pids)
    while waiting and time.monotonic() < deadline:
        for pid in list(waiting):
            try:
                os.kill(pid, 0)  # signal 0: only asks whether the process exists
            except ProcessLookupError:
                waiting.discard(pid)
            except PermissionError:
                pass  # exists, owned by someone else
        if waiting:
            time.sleep(0.05)


def _absolute_paths(options: LabelOptions) -> LabelOptions:
    """The options with the checkpoint and hand model as absolute paths (workers run elsewhere)."""
    import dataclasses

    changes = {name: str(Path(value).resolve()) for name in ("checkpoint", "hand_model_path")
               if (value := getattr(options, name)) and not Path(value).is_absolute()}
    return dataclasses.replace(options, **changes) if changes else options


def label_bags(inputs: list[str | os.PathLike], out_dir: str | os.PathLike, options: LabelOptions | None = None,
               address: str | None = None, workers: int | None = None, cpus_per_worker: float = 1.0,
               accept_loss: bool = False, progress: bool = True, stall_timeout_s: float = 600.0,
               unit_callback: Callable[[dict], None] | None = None) -> FleetReport:
    """Labels every bag of ``inputs`` into ``out_dir`` on Ray (see the module docstring).

    Args:
        inputs: bags, folders of bags, glob patterns, or text files listing bags.
        out_dir: output folder (created); bag ``a/b`` of an input folder goes to ``out_dir/a/b``.
        options: :class:`LabelOptions`, as ``label-bag``'s.
        address: Ray cluster to join (``auto``, ``HOST:PORT``); None: a local Ray instance
            (unless this process is connected to one already).
        workers: number of workers (default: one per GPU of the cluster, or per
            ``cpus_per_worker`` CPUs without GPUs).
        accept_loss: as ``label-bag --accept-loss``.
        stall_timeout_s: give up when work is left but no worker has been alive this long.
        unit_callback: called in the driver after each unit that succeeded with ``{"kind",
            "bag", "group", "pid", "busy_pids"}`` (the worker's process, the processes running
            units now; for tests: an exception raised there stops the run, resumably).

    Returns:
        FleetReport; bags that failed are in it with their error (the run goes on without them).

    Raises:
        DataError / ConfigError / CheckpointError: bad inputs or options, or a checkpoint that
            does not load (nothing is labelled then).
    """
    options = _absolute_paths(options or LabelOptions())
    # Absolute: a worker's working folder is not the driver's.
    bags = [FleetBag(bag.input.resolve(), bag.relative) for bag in find_bags(inputs)]
    out = Path(out_dir)
    resolved_out = out.resolve()
    for bag in bags:
        source = bag.input.resolve()
        if resolved_out == source or source in resolved_out.parents:
            raise DataError(f"the output folder {out} must not be inside the input bag {bag.input}")
    for item in inputs:
        folder = Path(item)
        if folder.is_dir() and not is_bag(folder) and folder.resolve() in (resolved_out, *resolved_out.parents):
            raise DataError(f"the output folder {out} must not be inside the input folder {folder} (its labelled bags "
                            "would be read as inputs next time); choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    manifest = FleetManifest(out, bags, options)
    manifest.check_earlier()
    states = [_BagState(number, bag, (out / bag.relative).resolve(), entry)
              for number, (bag, entry) in enumerate(zip(bags, manifest.entries))]
    for state in states:
        saved = finished_report(state.output, state.bag.input, options)
        if saved is not None:
            state.entry.update(status="complete", frames=saved.get("frames", {}), batches=saved.get("batches", {}), error=None)
        state.output.parent.mkdir(parents=True, exist_ok=True)
    manifest.save()
    if all(state.entry["status"] == "complete" for state in states):
        # Nothing to label: no cluster, no workers.
        report = FleetReport(out_dir=str(out), manifest=str(manifest.path), bags=manifest.entries)
        manifest.summary = {"bags": {"complete": len(states)}, "frames_labelled_this_run": 0}
        manifest.save()
        return report

    began = time.perf_counter()
    try:
        import ray
    except ImportError:
        raise ConfigError("label-bags runs on Ray, which is not installed here: pip install ray==2.60.0 (make setup "
                          "installs it)") from None
    started_here = False
    if not ray.is_initialized():
        check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, configure_logging=False)
        except ConnectionError as error:
            raise ConfigError(f"cannot join the Ray cluster at {address} ({error}); start it with `ray start --head` on "
                              "its head node, or check --address") from None
        started_here = True
    try:
        return _FleetDriver(ray, manifest, states, options, workers, cpus_per_worker, accept_loss, progress,
                            stall_timeout_s, unit_callback, began).run()
    finally:
        if started_here:
            ray.shutdown()


class _FleetDriver:
    """The scheduling loop of :func:`label_bags`: hands units to free workers, puts back the units
    of workers that died, records each bag's progress in the manifest."""

    def __init__(self, ray, manifest: FleetManifest, states: list[_BagState], options: LabelOptions, workers: int | None,
                 cpus_per_worker: float, accept_loss: bool, progress: bool, stall_timeout_s: float,
                 unit_callback: Callable[[dict], None] | None, began: float) -> None:
        self.ray = ray
        self.manifest = manifest
        self.states = states
        self.options = options
        self.progress = progress
        self.stall_timeout_s = stall_timeout_s
        self.unit_callback = unit_callback
        resources, count = _worker_resources(options, ray.cluster_resources(), cpus_per_worker, workers)
        # max_task_retries=0: a unit whose worker died comes back to this loop, which gives it to
        # the next free worker, rather than waiting for that one worker's restart (which never
        # comes if its node is gone and no other has room).
        actor = ray.remote(FleetWorker).options(max_restarts=MAX_WORKER_RESTARTS, max_task_retries=0, **resources)
        threads = max(1, int(cpus_per_worker))
        self.workers = [actor.remote(options, accept_loss, threads) for _ in range(count)]
        self.worker_info: list[dict] = [{} for _ in self.workers]
        self.alive = [True] * count
        self.attempts: dict[_Unit, int] = {}
        self.queue: deque[_Unit] = deque(_Unit("plan", state.number) for state in states if state.entry["status"] != "complete")
        self.in_flight: dict[Any, tuple[_Unit, int]] = {}
        self.idle: list[int] = []
        self.units_retried = 0
        self.worker_failures = 0
        self.frames_labelled = 0
        self.last_alive = time.monotonic()
        self.last_saved = 0.0
        self.started = began
        self.startup_s = 0.0

    # -- loop --------------------------------------------------------------------------------

    def run(self) -> FleetReport:
        from tqdm.auto import tqdm

        started = self.started
        for number in range(len(self.workers)):
            self._submit(_Unit("describe"), number)
        done_bags = sum(state.entry["status"] == "complete" for state in self.states)
        self.bags_bar = tqdm(total=len(self.states), initial=done_bags, desc="bags", unit="bag", disable=not self.progress,
                             dynamic_ncols=True, position=0)
        self.frames_bar = tqdm(total=None, desc="frames", unit="frame", disable=not self.progress, dynamic_ncols=True,
                               position=1)
        try:
            while self.queue or any(unit.kind != "describe" for unit, _ in self.in_flight.values()):
                self._dispatch()
                if not self.in_flight:
                    raise DataError("no label-bags worker is left to run the remaining work; rerun the same command to resume")
                ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=5.0)
                for ref in ready:
                    self._collect(ref)
                self._check_stalled()
                if time.monotonic() - self.last_saved > 5.0:
                    self._save()
        except KeyboardInterrupt:
            for state in self.states:
                if state.entry["status"] not in ("complete", "failed", "pending"):
                    state.entry.update(status="interrupted", error="interrupted; rerun the same command to resume")
            raise
        finally:
            self.bags_bar.close()
            self.frames_bar.close()
            for worker in self.workers:
                self.ray.kill(worker, no_restart=True)
            if self.in_flight:
                # Until the killed workers' units fail.
                self.ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=30.0)
            # A unit fails as soon as its worker is killed, but the process exits a moment later
            # and may still finish saving a batch (atomically): on this machine, wait for the
            # processes, so that nothing is written after this returns. Workers on other nodes
            # cannot be waited for; a rerun takes such a batch as done.
            _wait_for_exit([info["pid"] for info in self.worker_info
                            if info.get("pid") is not None and info.get("host") == socket.gethostname()], timeout_s=10.0)
            self.wall_s = time.perf_counter() - started
            self._save()
        return self._report()

    def _report(self) -> FleetReport:
        return FleetReport(out_dir=str(self.manifest.out_dir), manifest=str(self.manifest.path), bags=self.manifest.entries,
                           workers=[info for info in self.worker_info if info], frames_labelled=self.frames_labelled,
                           wall_s=self.wall_s, startup_s=self.startup_s, units_retried=self.units_retried,
                           worker_failures=self.worker_failures)

    def _save(self) -> None:
        self.last_saved = time.monotonic()
        counts: dict[str, int] = {}
        for state in self.states:
            counts[state.entry["status"]] = counts.get(state.entry["status"], 0) + 1
        self.manifest.summary = {"bags": counts, "workers": [info for info in self.worker_info if info],
                                 "frames_labelled_this_run": self.frames_labelled, "worker_failures": self.worker_failures,
                                 "units_retried": self.units_retried}
        self.manifest.save()

    def _next_unit(self) -> _Unit | None:
        """Writes first (they free a bag), then groups of planned bags, then a new bag to plan:
        a bag is planned only when no planned work is waiting, so bags finish in order."""
        best = None
        for unit in self.queue:
            rank = {"write": 0, "label": 1, "plan": 2}[unit.kind]
            if best is None or rank < best[0]:
                best = (rank, unit)
            if rank == 0:
                break
        if best is None:
            return None
        self.queue.remove(best[1])
        return best[1]

    def _dispatch(self) -> None:
        while self.idle and self.queue:
            unit = self._next_unit()
            self._submit(unit, self.idle.pop(0))

    def _submit(self, unit: _Unit, number: int) -> None:
        worker = self.workers[number]
        if unit.kind == "describe":
            ref = worker.describe.remote()
        else:
            state = self.states[unit.bag]
            bag_input, output = str(state.bag.input), str(state.output)
            if unit.kind == "plan":
                state.started = state.started or time.perf_counter()
                state.entry["status"] = "planning"
                ref = worker.plan.remote(bag_input, output)
            elif unit.kind == "label":
                ref = worker.label.remote(bag_input, output, state.plan_box, unit.group)
            else:
                state.entry["status"] = "writing"
                ref = worker.write.remote(bag_input, output, state.plan_box, state.timings,
                                          time.perf_counter() - state.started)
            state.open_on.add(number)
        self.in_flight[ref] = (unit, number)

    def _collect(self, ref) -> None:
        unit, number = self.in_flight.pop(ref)
        ray_errors = self.ray.exceptions
        try:
            result = self.ray.get(ref)
        except ray_errors.RayTaskError as error:
            cause = error.cause
            if unit.kind == "describe":
                if isinstance(cause, EgoPressError):
                    raise cause from None  # the options or checkpoint: every worker would fail alike
                self._lose_worker(number, f"{type(cause).__name__}: {cause}")
                return
            message = str(cause) if isinstance(cause, EgoPressError) else f"{type(cause).__name__}: {cause}"
            self._fail_bag(unit.bag, message, save_report=unit.kind == "label")
            self.idle.append(number)
            return
        except (ray_errors.RayActorError, ray_errors.ObjectLostError, ray_errors.OwnerDiedError,
                ray_errors.WorkerCrashedError) as error:
            self._worker_died(unit, number, error)
            return
        self.last_alive = time.monotonic()
        if unit.kind == "describe":
            self.worker_info[number] = {"worker": number, **result}
            self.startup_s = self.startup_s or time.perf_counter() - self.started
            self.idle.append(number)
            return
        self.idle.append(number)
        state = self.states[unit.bag]
        if state.entry["status"] in ("failed",):
            return  # a late answer for a bag that failed meanwhile
        if unit.kind == "plan":
            self._planned(state, *result)
        elif unit.kind == "label":
            self._labelled(state, unit, result)
        else:
            self._written(state, result)
        if self.unit_callback is not None:
            busy = [self.worker_info[other].get("pid") for other_unit, other in self.in_flight.values()
                    if other_unit.kind != "describe"]
            self.unit_callback({"kind": unit.kind, "bag": state.bag.name, "group": unit.group,
                                "pid": result["pid"] if unit.kind == "label" else self.worker_info[number].get("pid"),
                                "busy_pids": [pid for pid in busy if pid is not None]})

    # -- results -----------------------------------------------------------------------------

    def _planned(self, state: _BagState, plan, pending: list[int], timings: dict) -> None:
        state.plan_box = [self.ray.put(plan)]
        state.groups_left = set(pending)
        state.timings = dict(timings)
        state.frames = sum(group.frames for group in plan.groups)
        total = len(plan.groups)
        state.entry.update(status="labelling", frames=dict(plan.report.frames),
                           batches={"total": total, "done": total - len(pending), "resumed": total - len(pending)})
        self.queue.extend(_Unit("label", state.number, number) for number in pending)
        if not pending:
            self.queue.append(_Unit("write", state.number))
        self._update_frame_total()
        self.frames_bar.update(sum(group.frames for group in plan.groups if group.number not in state.groups_left))
        self._save()

    def _labelled(self, state: _BagState, unit: _Unit, result: dict) -> None:
        if unit.group not in state.groups_left:
            return
        state.groups_left.discard(unit.group)
        for name, value in result["timings"].items():
            state.timings[name] = state.timings.get(name, 0.0) + value
        state.entry["batches"]["done"] += 1
        if result["labelled"]:
            self.frames_labelled += result["frames"]
        self.frames_bar.update(result["frames"])
        if not state.groups_left:
            self.queue.append(_Unit("write", state.number))

    def _written(self, state: _BagState, report: dict) -> None:
        state.entry.update(status="complete", frames=report.get("frames", {}), error=None,
                           batches={**state.entry["batches"], "done": state.entry["batches"].get("total", 0)},
                           topics_written=report.get("topics_written", {}), notes=report.get("notes", []),
                           timings_s=report.get("timings_s", {}))
        state.plan_box = None
        self._release(state)
        self.bags_bar.update()
        self._save()

    def _fail_bag(self, number: int, error: str, save_report: bool) -> None:
        """Drops the bag's units; ``save_report``: the worker could not save the failure in the
        bag's report (a failed group, or workers that died), so the driver does."""
        from egopress_core.rosbag.label_plan import LabelReport

        state = self.states[number]
        if state.entry["status"] == "failed":
            return
        state.entry.update(status="failed", error=error)
        for unit in [unit for unit in self.queue if unit.bag == number]:
            self.queue.remove(unit)
        if save_report:
            if state.plan_box is not None:
                report = self.ray.get(state.plan_box[0]).report
            else:
                report = LabelReport(input=str(state.bag.input), output=str(state.output), options=self.manifest.options)
            report.status, report.error = "failed", error
            path = report_path_for(state.output)
            if not path.exists() or LabelReport.was_written_for(path, state.output):
                report.save(path)
        state.plan_box = None
        self._release(state)
        self.bags_bar.update()
        self._save()

    def _release(self, state: _BagState) -> None:
        for number in state.open_on:
            if self.alive[number]:
                self.workers[number].release.remote(str(state.output))
        state.open_on.clear()

    # -- worker failures ---------------------------------------------------------------------

    def _worker_died(self, unit: _Unit, number: int, error: BaseException) -> None:
        """The worker died (or became unreachable) while running ``unit``: the unit goes back to
        the queue for any free worker; the worker is used again once Ray has restarted it."""
        self.worker_failures += 1 if unit.kind != "describe" else 0
        for state in self.states:
            state.open_on.discard(number)
        if unit.kind == "describe":
            if isinstance(error, self.ray.exceptions.ActorDiedError):
                self._lose_worker(number, str(error).splitlines()[0])
            else:
                self._submit(_Unit("describe"), number)
            return
        self.attempts[unit] = self.attempts.get(unit, 0) + 1
        state = self.states[unit.bag]
        if self.attempts[unit] >= MAX_UNIT_ATTEMPTS:
            what = {"plan": "planning it", "label": f"labelling its batch {unit.group}", "write": "writing it"}[unit.kind]
            self._fail_bag(unit.bag, f"{self.attempts[unit]} workers died while {what} (a crash in the worker process or "
                                     "a lost node; see the Ray worker logs)", save_report=True)
        elif state.entry["status"] != "failed":
            self.queue.appendleft(unit)
            self.units_retried += 1
        # Back in the pool when it answers again (after Ray restarted it).
        self._submit(_Unit("describe"), number)

    def _lose_worker(self, number: int, reason: str) -> None:
        self.alive[number] = False
        self.worker_info[number] = {**self.worker_info[number], "worker": number, "lost": reason}
        if not any(self.alive):
            raise DataError(f"every label-bags worker is gone (last: {reason}); rerun the same command to resume")

    def _check_stalled(self) -> None:
        busy = any(unit.kind != "describe" for unit, _ in self.in_flight.values())
        if busy or self.idle or not self.queue:
            self.last_alive = time.monotonic()
        elif time.monotonic() - self.last_alive > self.stall_timeout_s:
            raise DataError(f"no label-bags worker has been available for {self.stall_timeout_s:.0f} s (lost nodes, or "
                            "a cluster without room to restart them); rerun the same command to resume")

    def _update_frame_total(self) -> None:
        """Frames of the planned bags, plus the bags still to plan at their mean (for the ETA)."""
        planned = [state.frames for state in self.states if state.frames]
        waiting = sum(1 for state in self.states if state.entry["status"] in ("pending", "planning"))
        if planned:
            self.frames_bar.total = sum(planned) + round(waiting * sum(planned) / len(planned))
            self.frames_bar.refresh()
