"""A small rosbag2 of synthetic egocentric RGB-D, laid out like a RealSense recording
(``egopress sample-bag``), for the demo, the tests and for trying the labeller.

Topics (all stamps are the frame's capture time; bag times are a few milliseconds later, as a
recorder receiving the messages would log them):

===========================================  ======================================  ===================
topic                                        type                                    content
===========================================  ======================================  ===================
``/camera/color/image_raw``                  sensor_msgs/Image ``rgb8``              colour
``/camera/aligned_depth_to_color/image_raw`` sensor_msgs/Image ``16UC1``             depth, mm, 0 = hole
``/camera/color/camera_info``                sensor_msgs/CameraInfo                  pinhole K
``/camera/aligned_depth_to_color/camera_info`` sensor_msgs/CameraInfo                same K
``/ground_truth/hand_mesh``                  egopress_ros/HandMesh                   true hand (``--backend ground_truth``)
``/ground_truth/hand_keypoints``             sensor_msgs/PointCloud2 (x, y, z, confidence) true joints (``--backend keypoints``)
``/ground_truth/hand_contact``               egopress_ros/HandContact                true per-vertex pressure
===========================================  ======================================  ===================

Frame id ``camera_color_optical_frame``. The frames come from ``egopress synth`` (one sequence,
generated into a temporary folder with the same generator, or taken from an existing synthetic
data set), so the ground truth is the generator's physically simulated pressure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from egopress_core.errors import ConfigError, DataError
from egopress_core.rosbag.topics import (  # noqa: F401 - re-exported: the sample's topics
    CAMERA_INFO_TOPIC,
    COLOR_FRAME_ID,
    COLOR_TOPIC,
    DEPTH_CAMERA_INFO_TOPIC,
    DEPTH_TOPIC,
    GROUND_TRUTH_CONTACT_TOPIC,
    GROUND_TRUTH_KEYPOINTS_TOPIC,
    GROUND_TRUTH_MESH_TOPIC,
)

# Capture time of the first frame: fixed, so the same options give the same bag.
START_STAMP_NS = 1_700_000_000 * 1_000_000_000
# Receive latency a recorder would log on top of the capture stamp (mean, jitter), ns.
_LATENCY_NS = {"color": (8_000_000, 1_500_000), "depth": (9_000_000, 1_500_000), "info": (8_200_000, 500_000),
               "ground_truth": (10_000_000, 500_000)}
# A RealSense colour stream's 640 x 480, at which the generator's framing gives the hand the
# share of the picture it has in a head camera's recordings (about 200 px across), so that the
# default camera-only backend (MediaPipe) finds it. 3 s are ~140 MB uncompressed (~1.5 MB a
# frame, as a real RealSense bag); tests that write many bags pass a small image_size.
DEFAULT_IMAGE_SIZE = (480, 640)


@dataclass(frozen=True)
class SampleBagInfo:
    """What :func:`write_sample_bag` wrote."""

    path: Path
    frames: int
    fps: float
    image_size: tuple[int, int]
    storage: str
    compression: str
    stamps_ns: tuple[int, ...]
    topics: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    sequence: str = ""


def _folder_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def sequence_to_bag(
    sequence,
    out: str | os.PathLike,
    storage: str = "mcap",
    compression: str = "none",
    max_frames: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> SampleBagInfo:
    """Writes one :class:`~egopress_core.data.synthetic.storage.SyntheticSequence` as a rosbag2
    folder ``out`` (which must not exist), topics as in the module docstring.

    Args:
        sequence: the synthetic sequence (full ground truth).
        out: bag folder to create.
        storage, compression: as :class:`~egopress_core.rosbag.writer.BagWriter`.
        max_frames: write only the first frames.
        seed: seeds the simulated receive latency.
    """
    from tqdm import tqdm

    from egopress_core.contact import summarize_contact
    from egopress_core.hand.hand_model import load_hand_model
    from egopress_core import messages as m
    from egopress_core.rosbag.messages import bag_factory
    from egopress_core.rosbag.typestore import CAMERA_INFO, HAND_CONTACT, HAND_MESH, IMAGE, POINT_CLOUD2, egopress_typestore
    from egopress_core.rosbag.writer import BagWriter
    from egopress_core.perception.types import HandMeshEstimate
    from egopress_core.data.records import ManoParams
    from egopress_core.uv_atlas import UVAtlas

    out = Path(out)
    if out.exists():
        raise DataError(f"{out} exists already; choose another --out or delete it")
    frames = len(sequence) if max_frames is None else min(int(max_frames), len(sequence))
    if frames < 1:
        raise ConfigError(f"the bag needs at least one frame. Got {frames}")
    hand = load_hand_model(side=sequence.hand_side)
    if hand.topology_id != sequence.meta.get("topology_id", hand.topology_id):
        raise DataError(f"{sequence.path}: made with hand topology {sequence.meta['topology_id']}, but the bundled "
                        f"{sequence.hand_side} hand is {hand.topology_id}; only data of the bundled hand can be written")
    # Vertex areas (a third of each adjacent face) do not depend on the atlas resolution.
    atlas = UVAtlas.from_obj(hand.uv_obj_path, resolution=(16, 16), name=hand.uv_layout_name)
    store = egopress_typestore()
    factory = bag_factory(store)
    rng = np.random.default_rng(seed)
    fps = float(sequence.fps)
    intrinsics = np.asarray(sequence.array("intrinsics"), dtype=np.float64)
    rgb, depth_mm = sequence.array("rgb"), sequence.array("depth_mm")
    image_hw = tuple(int(v) for v in rgb.shape[1:3])
    stamps = [START_STAMP_NS + round(index * 1e9 / fps) for index in range(frames)]

    def received(kind: str, stamp: int) -> int:
        mean, jitter = _LATENCY_NS[kind]
        return stamp + int(mean + rng.uniform(-jitter, jitter))

    # rosbags names the storage file after the bag folder, so the bag is written under its final
    # name inside a hidden staging folder and moved out when complete.
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        with BagWriter(staging / out.name, store, storage=storage, compression=compression) as writer:
            color = writer.add_topic(COLOR_TOPIC, IMAGE)
            depth = writer.add_topic(DEPTH_TOPIC, IMAGE)
            info = writer.add_topic(CAMERA_INFO_TOPIC, CAMERA_INFO)
            depth_info = writer.add_topic(DEPTH_CAMERA_INFO_TOPIC, CAMERA_INFO)
            mesh = writer.add_topic(GROUND_TRUTH_MESH_TOPIC, HAND_MESH)
            keypoints = writer.add_topic(GROUND_TRUTH_KEYPOINTS_TOPIC, POINT_CLOUD2)
            contact = writer.add_topic(GROUND_TRUTH_CONTACT_TOPIC, HAND_CONTACT)
            arrays = {name: sequence.array(name) for name in ("vertices", "joints", "global_orient", "hand_pose", "betas",
                                                               "transl", "vertex_pressure_kpa")}
            for index in tqdm(range(frames), desc="sample bag", unit="frame", disable=not progress):
                stamp = stamps[index]
                header = m.header(factory, stamp, COLOR_FRAME_ID)
                pending = [
                    (received("color", stamp), color, m.image(factory, np.asarray(rgb[index]), "rgb8", header)),
                    (received("depth", stamp), depth, m.image(factory, np.asarray(depth_mm[index]), "16UC1", header)),
                ]
                info_time = received("info", stamp)
                pending.append((info_time, info, m.camera_info(factory, intrinsics, image_hw, header)))
                pending.append((info_time, depth_info, m.camera_info(factory, intrinsics, image_hw, header)))
                vertices = np.asarray(arrays["vertices"][index], dtype=np.float32)
                joints = np.asarray(arrays["joints"][index], dtype=np.float32)
                estimate = HandMeshEstimate(
                    mano=ManoParams(global_orient=np.asarray(arrays["global_orient"][index]), hand_pose=np.asarray(arrays["hand_pose"][index]),
                                    betas=np.asarray(arrays["betas"][index]), transl=np.asarray(arrays["transl"][index])),
                    vertices=vertices, joints=joints, confidence=1.0, estimator="ground_truth", hand_side=sequence.hand_side,
                    hand_model=hand.name, topology_id=hand.topology_id, stamp=stamp / 1e9,
                )  # fmt: skip
                truth_time = received("ground_truth", stamp)
                pending.append((truth_time, mesh, m.hand_mesh(factory, header, sequence.hand_side, hand.name, hand.topology_id,
                                                              hand.num_vertices, "ground_truth", estimate)))
                pending.append((truth_time, keypoints, m.keypoints_point_cloud(factory, joints, header, np.ones(len(joints), np.float32))))
                vertices64 = vertices.astype(np.float64)
                summary = summarize_contact(np.asarray(arrays["vertex_pressure_kpa"][index]), vertices64, atlas.vertex_area(vertices64))
                pending.append((truth_time, contact, m.hand_contact(factory, summary, header, sequence.hand_side, hand.topology_id)))
                for timestamp, connection, message in sorted(pending, key=lambda item: item[0]):
                    writer.write_message(connection, timestamp, message)
        os.replace(staging / out.name, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    topics = {COLOR_TOPIC: IMAGE, DEPTH_TOPIC: IMAGE, CAMERA_INFO_TOPIC: CAMERA_INFO, DEPTH_CAMERA_INFO_TOPIC: CAMERA_INFO,
              GROUND_TRUTH_MESH_TOPIC: HAND_MESH, GROUND_TRUTH_KEYPOINTS_TOPIC: POINT_CLOUD2, GROUND_TRUTH_CONTACT_TOPIC: HAND_CONTACT}
    return SampleBagInfo(path=out, frames=frames, fps=fps, image_size=image_hw, storage=storage, compression=compression,
                         stamps_ns=tuple(stamps), topics=topics, size_bytes=_folder_size(out), sequence=str(sequence.name))


def sample_synth_config(
    seconds: float = 3.0,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    gesture: str | None = None,
    seed: int = 0,
    uv_resolution: int = 224,
):
    """The :class:`~egopress_core.data.synthetic.generator.SynthConfig` of the sequence the
    sample bag holds (arguments as :func:`write_sample_bag`), so that benchmarks and tests can
    generate exactly what the bag records without writing a bag."""
    from egopress_core.data.synthetic.generator import FPS, GESTURES, SynthConfig

    if not (isinstance(seconds, (int, float)) and seconds > 0):
        raise ConfigError(f"seconds must be a positive number. Got {seconds!r}")
    if gesture is not None and gesture not in GESTURES:
        raise ConfigError(f"gesture must be one of {GESTURES}. Got {gesture!r}")
    return SynthConfig(sequences=1, frames=max(2, int(round(seconds * FPS))), seed=seed, image_sizes=(tuple(image_size),),
                       gestures=(gesture or GESTURES[0],), uv_resolution=uv_resolution)


def write_sample_bag(
    out: str | os.PathLike,
    seconds: float = 3.0,
    storage: str = "mcap",
    compression: str = "none",
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    gesture: str | None = None,
    seed: int = 0,
    synthetic_data: str | os.PathLike | None = None,
    sequence_name: str | None = None,
    uv_resolution: int = 224,
    progress: bool = True,
) -> SampleBagInfo:
    """The sample bag: ``seconds`` of one synthetic sequence at 30 Hz.

    Args:
        out: bag folder to create (must not exist).
        seconds: length of the recording.
        storage, compression: as :class:`~egopress_core.rosbag.writer.BagWriter`.
        image_size: (H, W) of the generated images (ignored with ``synthetic_data``).
        gesture: gesture of the generated sequence (default: the generator's first, a single press).
        seed: generator seed.
        synthetic_data: take the sequence from this ``egopress synth`` folder instead of generating.
        sequence_name: which sequence of ``synthetic_data`` (default: the first).
        uv_resolution: UV resolution of the generator's contact simulation (lower is faster and
            coarser; the bag holds per-vertex ground truth only).
    """
    from egopress_core.data.synthetic.generator import FPS, generate_dataset
    from egopress_core.data.synthetic.storage import SyntheticDataset

    if not (isinstance(seconds, (int, float)) and seconds > 0):
        raise ConfigError(f"seconds must be a positive number. Got {seconds!r}")
    frames = max(2, int(round(seconds * FPS)))
    if synthetic_data is not None:
        sequences = SyntheticDataset(synthetic_data).sequences()
        if sequence_name is not None:
            chosen = [s for s in sequences if s.name == sequence_name]
            if not chosen:
                raise DataError(f"{synthetic_data} has no sequence {sequence_name!r}; it has {[s.name for s in sequences]}")
            sequences = chosen
        if len(sequences[0]) < frames:
            raise DataError(f"{sequences[0].path} has {len(sequences[0])} frames; {seconds} s needs {frames}")
        return sequence_to_bag(sequences[0], out, storage, compression, max_frames=frames, seed=seed, progress=progress)
    config = sample_synth_config(seconds, image_size, gesture, seed, uv_resolution)
    with tempfile.TemporaryDirectory(prefix="egopress_sample_") as scratch:
        root = generate_dataset(config, Path(scratch) / "synth", workers=1, progress=progress)
        sequence = SyntheticDataset(root).sequences()[0]
        return sequence_to_bag(sequence, out, storage, compression, seed=seed, progress=progress)
