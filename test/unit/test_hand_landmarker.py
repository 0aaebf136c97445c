"""The hand-landmarker bundle of the default ``mediapipe`` backend and its one handedness
convention.

- ``scripts/build_hand_landmarker.py`` (run by ``make setup``): deterministic stored-zip bytes,
  the sha256 checks of the wheel and the bundle, atomic installation with the licence beside the
  bundle, a clear error when the download fails; exercised on a stand-in wheel, offline.
- The bundle ``make setup`` built: its pinned sha256, its members, its licence.
- Handedness: one default (``egopress_core.assets.hand_landmarker``) for the library, the node's
  parameter and the shipped config; the labeller does not set its own.
- The requirement's platform marker names the machines the library expects mediapipe on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import subprocess
import types
import zipfile
from pathlib import Path

import pytest
import yaml

from egopress_core.assets import hand_landmarker as pins

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_hand_landmarker.py"


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_hand_landmarker", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stand_in(tmp_path: Path, builder) -> tuple[types.SimpleNamespace, Path]:
    """Pins like the real ones, for a small wheel of stand-in models in a cache folder."""
    members = {"a/detector.tflite": b"detector model" * 100, "b/landmarks.tflite": b"landmark model" * 300}
    cache = tmp_path / "cache"
    cache.mkdir(parents=True)
    wheel = cache / "stand_in-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr("stand_in-1.0.dist-info/LICENSE", "Apache License\nVersion 2.0\n")
    bundle_members = (("hand_detector.tflite", "a/detector.tflite", sha256(members["a/detector.tflite"])),
                      ("hand_landmarks_detector.tflite", "b/landmarks.tflite", sha256(members["b/landmarks.tflite"])))  # fmt: skip
    folder = tmp_path / "bundle"
    stand = types.SimpleNamespace(
        BUNDLE_DIR=folder, BUNDLE_PATH=folder / "hand_landmarker.task", LICENSE_PATH=folder / "LICENSE", NOTICE_PATH=folder / "NOTICE",
        SOURCE_REQUIREMENT="stand_in==1.0", SOURCE_WHEEL=wheel.name, SOURCE_WHEEL_SHA256=sha256(wheel.read_bytes()),
        SOURCE_LICENSE_MEMBER="stand_in-1.0.dist-info/LICENSE", BUNDLE_MEMBERS=bundle_members, BUILD_COMMAND="make setup",
    )  # fmt: skip
    stand.BUNDLE_SHA256 = sha256(builder.stored_zip([(name, members[source]) for name, source, _ in bundle_members]))
    return stand, cache


def test_stored_zip_is_what_zipfile_reads_and_writes(builder):
    members = [("hand_detector.tflite", bytes(range(256)) * 40), ("hand_landmarks_detector.tflite", b"\x00" * 999)]
    data = builder.stored_zip(members)
    # zipfile, given the same fixed metadata, writes the same bytes (the pinned sha256 was first
    # taken from its output); the script writes them itself so that no Python version changes them.
    reference = io.BytesIO()
    with zipfile.ZipFile(reference, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, payload in members:
            info = zipfile.ZipInfo(name, date_time=builder.ZIP_DATE)
            info.create_system, info.external_attr = builder.ZIP_UNIX, builder.ZIP_MODE << 16
            archive.writestr(info, payload)
    assert data == reference.getvalue()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert [(info.filename, info.compress_type) for info in archive.infolist()] == [(name, zipfile.ZIP_STORED) for name, _ in members]
        assert all(archive.read(name) == payload for name, payload in members)


def test_build_installs_the_bundle_with_its_licence(tmp_path, builder, monkeypatch):
    stand, cache = stand_in(tmp_path, builder)
    monkeypatch.setattr(builder.subprocess, "run", lambda *args, **kwargs: pytest.fail("the cached wheel must not be downloaded"))
    builder.build(stand, cache)
    assert sha256(stand.BUNDLE_PATH.read_bytes()) == stand.BUNDLE_SHA256
    assert stand.LICENSE_PATH.read_text().startswith("Apache License")
    assert "stand_in==1.0" in stand.NOTICE_PATH.read_text() and "Apache License 2.0" in stand.NOTICE_PATH.read_text()
    assert sorted(path.name for path in stand.BUNDLE_DIR.iterdir()) == ["LICENSE", "NOTICE", "hand_landmarker.task"]
    assert builder.bundle_in_place(stand)


def test_build_refuses_bytes_that_differ_from_the_pins(tmp_path, builder, monkeypatch):
    stand, cache = stand_in(tmp_path, builder)
    # The bundle's pin: nothing is installed, no temporary file is left behind.
    stand.BUNDLE_SHA256 = "0" * 64
    with pytest.raises(builder.BuildError, match="not the pinned"):
        builder.build(stand, cache)
    assert not stand.BUNDLE_DIR.exists() or not any(stand.BUNDLE_DIR.iterdir())

    # A model whose sha256 differs from its pin.
    stand, cache = stand_in(tmp_path / "again", builder)
    name, source, _ = stand.BUNDLE_MEMBERS[0]
    stand.BUNDLE_MEMBERS = ((name, source, "1" * 64),) + stand.BUNDLE_MEMBERS[1:]
    with pytest.raises(builder.BuildError, match=f"{source} in .* has sha256"):
        builder.build(stand, cache)

    # A cached wheel that is not the pinned one is downloaded again; a failing download says so.
    stand, cache = stand_in(tmp_path / "third", builder)
    stand.SOURCE_WHEEL_SHA256 = "2" * 64
    failed = subprocess.CompletedProcess([], 1, stdout="ERROR: No matching distribution found for stand_in==1.0\n")
    monkeypatch.setattr(builder.subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(builder.BuildError, match="pip could not download stand_in==1.0 .*No matching distribution"):
        builder.build(stand, cache)


@pytest.mark.skipif(not pins.BUNDLE_PATH.is_file(), reason=f"the hand-landmarker bundle is not built ({pins.BUILD_COMMAND})")
def test_the_built_bundle_is_the_pinned_one(builder):
    data = pins.BUNDLE_PATH.read_bytes()
    assert sha256(data) == pins.BUNDLE_SHA256
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert [info.filename for info in archive.infolist()] == [name for name, _, _ in pins.BUNDLE_MEMBERS]
        for name, _, digest in pins.BUNDLE_MEMBERS:
            assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED and sha256(archive.read(name)) == digest
    assert "Apache License" in pins.LICENSE_PATH.read_text() and "Version 2.0" in pins.LICENSE_PATH.read_text()
    assert pins.SOURCE_WHEEL_SHA256 in pins.NOTICE_PATH.read_text()
    assert builder.main(["--check"]) == 0


def test_handedness_has_one_default():
    from egopress_core.perception.mediapipe_backend import LandmarkerConfig
    from egopress_ros.hand_mesh_node import PARAMETERS
    from egopress_ros.parameters import spec_table

    spec = spec_table(PARAMETERS)["mediapipe_handedness"]
    assert spec.default == LandmarkerConfig().handedness == pins.DEFAULT_HANDEDNESS
    assert spec.choices == pins.HANDEDNESS_MODES
    config = yaml.safe_load((REPO / "config" / "pressure.yaml").read_text())["/**/hand_mesh_node"]["ros__parameters"]
    assert config["mediapipe_handedness"] == pins.DEFAULT_HANDEDNESS
    assert config["backend"] == spec_table(PARAMETERS)["backend"].default == "mediapipe"
    # The offline labeller builds the backend without a handedness of its own: the library's.
    labeller = (REPO / "egopress_core" / "rosbag" / "labeller.py").read_text()
    assert "handedness" not in labeller and "landmarker" not in labeller


def test_the_requirement_is_left_out_where_no_wheel_exists():
    from packaging.requirements import Requirement

    lines = [line for line in (REPO / "requirements" / "core.txt").read_text().splitlines() if line.startswith("mediapipe")]
    assert len(lines) == 1
    requirement = Requirement(lines[0])
    assert str(requirement.specifier) == "==0.10.35"
    for machine in pins.MEDIAPIPE_MACHINES:
        assert requirement.marker.evaluate({"platform_machine": machine}), machine
    assert not requirement.marker.evaluate({"platform_machine": "aarch64"})
    lock = (REPO / "requirements" / "lock.txt").read_text().splitlines()
    assert "mediapipe==0.10.35" in lock and not (REPO / "requirements" / "mediapipe.txt").exists()
