#!/usr/bin/env python3
"""Builds the MediaPipe hand-landmarker bundle of the ``mediapipe`` backend (run by ``make setup``).

    .venv/bin/python scripts/build_hand_landmarker.py [--cache DIR] [--check]

Downloads the pinned mediapipe 0.10.21 wheel with pip (only into the cache: it is never
installed, and is kept for the next run), checks its sha256, takes the two TFLite hand models out
of it, and writes the stored-zip ``.task`` bundle the Tasks ``HandLandmarker`` loads, with the
wheel's licence and a notice of the source beside it. Pins, names and the target folder:
``egopress_core/assets/hand_landmarker/__init__.py``. The files are replaced atomically (the
bundle last), so an interrupted run leaves the previous state; a bundle whose sha256 differs from
the pin is never installed. A bundle already in place with the pinned sha256 is left alone.

Standard library only (and pip for the download); it reads the pins without importing the rest
of the library. Exit status 0 when the bundle is in place, 1 otherwise (with one line saying why).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS_FILE = ROOT / "egopress_core" / "assets" / "hand_landmarker" / "__init__.py"
# Fixed zip metadata, so that the same models always give the same bytes (and the pinned sha256).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_MODE = 0o644
ZIP_UNIX = 3  # "made by" Unix, whatever the machine


class BuildError(RuntimeError):
    """A step failed; the message says which and what to do."""


def load_pins():
    """The pins module, loaded from its file (importing ``egopress_core`` is not needed)."""
    spec = importlib.util.spec_from_file_location("_egopress_hand_landmarker_pins", PINS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_cache() -> Path:
    venv = os.environ.get("EGOPRESS_VENV") or str(ROOT / ".venv")
    return Path(venv) / "cache" / "wheels"


def bundle_in_place(pins) -> bool:
    return pins.BUNDLE_PATH.is_file() and pins.LICENSE_PATH.is_file() and sha256_of(pins.BUNDLE_PATH) == pins.BUNDLE_SHA256


def fetch_wheel(pins, cache: Path) -> Path:
    """The pinned wheel in ``cache``, downloaded with pip unless a copy with the pinned sha256 is
    there already."""
    wheel = cache / pins.SOURCE_WHEEL
    if wheel.is_file() and sha256_of(wheel) == pins.SOURCE_WHEEL_SHA256:
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as folder:
        # The wheel is only unzipped, so the tags pick exactly the pinned file on any machine.
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
            "--implementation", "cp", "--abi", "cp311", "--platform", "manylinux_2_28_x86_64", "--dest", folder,
            "--disable-pip-version-check", pins.SOURCE_REQUIREMENT,
        ]  # fmt: skip
        print(f"build_hand_landmarker: downloading {pins.SOURCE_WHEEL} (~36 MB, kept in {cache})", flush=True)
        finished = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        downloaded = Path(folder) / pins.SOURCE_WHEEL
        if finished.returncode != 0 or not downloaded.is_file():
            tail = " | ".join(finished.stdout.strip().splitlines()[-3:])
            raise BuildError(f"pip could not download {pins.SOURCE_REQUIREMENT} ({tail}); check the connection to PyPI, "
                             f"or put {pins.SOURCE_WHEEL} into {cache} by hand")  # fmt: skip
        digest = sha256_of(downloaded)
        if digest != pins.SOURCE_WHEEL_SHA256:
            raise BuildError(f"{pins.SOURCE_WHEEL} from PyPI has sha256 {digest}, not the pinned {pins.SOURCE_WHEEL_SHA256}; refusing to use it")
        os.replace(downloaded, wheel)
    return wheel


def bundle_bytes(pins, wheel: Path) -> tuple[list[tuple[str, bytes]], bytes]:
    """The bundle's members (checked against their pins) and the wheel's licence text."""
    members = []
    with zipfile.ZipFile(wheel) as archive:
        for name, source, expected in pins.BUNDLE_MEMBERS:
            data = archive.read(source)
            digest = hashlib.sha256(data).hexdigest()
            if digest != expected:
                raise BuildError(f"{source} in {wheel.name} has sha256 {digest}, not the pinned {expected}")
            members.append((name, data))
        licence = archive.read(pins.SOURCE_LICENSE_MEMBER)
    return members, licence


def stored_zip(members: list[tuple[str, bytes]]) -> bytes:
    """A zip archive of ``members`` (name, data), stored uncompressed, with fixed metadata.

    Written byte by byte here rather than with :mod:`zipfile`, so that the bytes (and so the
    pinned sha256) do not depend on the Python version's zip writer: per member a local header
    and the data, then the central directory and its end record (PKWARE APPNOTE 4.3), no extra
    fields, no data descriptors. :mod:`zipfile` reads it back (``verify_zip``)."""
    year, month, day, hour, minute, second = ZIP_DATE
    dos_time = hour << 11 | minute << 5 | second // 2
    dos_date = (year - 1980) << 9 | month << 5 | day
    version = 20  # 2.0: what zipfile writes for stored members
    local, central = [], []
    offset = 0
    for name, data in members:
        encoded = name.encode("ascii")
        crc = zlib.crc32(data)
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, version, 0, 0, dos_time, dos_date, crc, len(data), len(data), len(encoded), 0)
        central.append(struct.pack("<I4B4HI2I5H2I", 0x02014B50, version, ZIP_UNIX, version, 0, 0, 0, dos_time, dos_date,
                                   crc, len(data), len(data), len(encoded), 0, 0, 0, 0, ZIP_MODE << 16, offset) + encoded)  # fmt: skip
        local.append(header + encoded + data)
        offset += len(local[-1])
    directory = b"".join(central)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), offset, 0)
    return b"".join(local) + directory + end


def verify_zip(path: Path, members: list[tuple[str, bytes]]) -> None:
    """The written archive reads back as exactly ``members``, uncompressed."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if [info.filename for info in infos] != [name for name, _ in members] or any(info.compress_type != zipfile.ZIP_STORED for info in infos):
            raise BuildError(f"{path} does not read back as the stored members {[name for name, _ in members]}")
        for name, data in members:
            if archive.read(name) != data:
                raise BuildError(f"{path}: member {name} reads back changed")


def notice_text(pins) -> str:
    lines = [
        "MediaPipe hand-landmarker bundle of EgoPress (the `mediapipe` hand-mesh backend).",
        "",
        f"{pins.BUNDLE_PATH.name} is a stored zip of two files taken unchanged from {pins.SOURCE_WHEEL}",
        f"(PyPI, {pins.SOURCE_REQUIREMENT}, sha256 {pins.SOURCE_WHEEL_SHA256}):",
    ]
    lines += [f"  {name} = {source} (sha256 {digest})" for name, source, digest in pins.BUNDLE_MEMBERS]
    lines += [
        "",
        "MediaPipe is Copyright The MediaPipe Authors and licensed under the Apache License 2.0;",
        f"the licence file of that wheel ({pins.SOURCE_LICENSE_MEMBER}) is {pins.LICENSE_PATH.name} in this folder.",
        "Built by scripts/build_hand_landmarker.py of the EgoPress repository.",
        "",
    ]
    return "\n".join(lines)


def build(pins, cache: Path) -> None:
    wheel = fetch_wheel(pins, cache)
    members, licence = bundle_bytes(pins, wheel)
    folder = pins.BUNDLE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    temporaries = {}
    try:
        for target, writer in (
            (pins.LICENSE_PATH, lambda path: path.write_bytes(licence)),
            (pins.NOTICE_PATH, lambda path: path.write_text(notice_text(pins))),
            (pins.BUNDLE_PATH, lambda path: path.write_bytes(stored_zip(members))),
        ):
            handle, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
            os.close(handle)
            temporaries[target] = Path(name)
            writer(Path(name))
            os.chmod(name, ZIP_MODE)
        verify_zip(temporaries[pins.BUNDLE_PATH], members)
        digest = sha256_of(temporaries[pins.BUNDLE_PATH])
        if digest != pins.BUNDLE_SHA256:
            raise BuildError(f"the assembled bundle has sha256 {digest}, not the pinned {pins.BUNDLE_SHA256}; nothing was installed")
        for target, temporary in temporaries.items():  # the bundle last: present means complete
            os.replace(temporary, target)
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help="where the wheel is kept (default: $EGOPRESS_VENV/cache/wheels, else .venv/cache/wheels)")
    parser.add_argument("--check", action="store_true", help="only check that the bundle is in place with its pinned sha256")
    args = parser.parse_args(argv)
    pins = load_pins()
    try:
        if bundle_in_place(pins):
            print(f"build_hand_landmarker: {pins.BUNDLE_PATH} is in place (sha256 {pins.BUNDLE_SHA256[:12]}...)")
            return 0
        if args.check:
            raise BuildError(f"{pins.BUNDLE_PATH} is missing or not the pinned bundle; build it with: {pins.BUILD_COMMAND}")
        build(pins, args.cache or default_cache())
    except (BuildError, OSError, zipfile.BadZipFile, KeyError) as error:
        print(f"build_hand_landmarker: error: {error}", file=sys.stderr)
        return 1
    print(f"build_hand_landmarker: wrote {pins.BUNDLE_PATH} ({pins.BUNDLE_PATH.stat().st_size} bytes) with {pins.LICENSE_PATH.name} and {pins.NOTICE_PATH.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
