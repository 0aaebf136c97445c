"""Points the ROS 2 wheels' exported CMake targets at this interpreter.

The PyPI ROS wheels are built in a manylinux container whose Python lives in
``/opt/python/cp3XX-cp3XX``; their exported ``*__rosidl_generator_py`` targets name that
interpreter's include dir and its numpy include dir, which do not exist here. Building our own
messages against those targets fails until the paths name this interpreter's include dir
and ``numpy.get_include()`` (``docs/ros_packaging.md``, "ROS 2 from PyPI wheels").

Run it with the virtual environment's python (it imports that environment's numpy):

    .venv/bin/python scripts/patch_ros_wheels.py [PREFIX]

PREFIX defaults to ``sys.prefix``. Idempotent: a second run finds nothing to change.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import sysconfig
import tempfile
from pathlib import Path

# The wheel builder's paths, for any CPython 3 minor version.
_BUILDER_NUMPY_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+t?/lib/python3\.\d+t?/site-packages/numpy/(?:_core|core)/include"
)
_BUILDER_PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+t?/include/python3\.\d+t?")


def _python_include_dir() -> str:
    include_dir = sysconfig.get_paths()["include"]
    if not (Path(include_dir) / "Python.h").is_file():
        raise SystemExit(
            f"error: {include_dir}/Python.h is missing; install this Python's development "
            "headers (Debian/Ubuntu: python3-dev) and run again"
        )
    return include_dir


def _numpy_include_dir() -> str:
    try:
        import numpy
    except ImportError as error:
        raise SystemExit(f"error: numpy is not installed in {sys.prefix}: {error}") from None
    return numpy.get_include()


def _write_atomically(path: Path, text: str) -> None:
    mode = path.stat().st_mode
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def patch_prefix(prefix: Path) -> list[Path]:
    """Rewrites the builder's include paths in ``<prefix>/share/*/cmake/*.cmake``.

    Returns the files changed (empty when already patched).
    """
    share = prefix / "share"
    if not share.is_dir():
        raise SystemExit(f"error: {share} does not exist; are the ROS wheels installed in {prefix}?")
    candidates = sorted(share.glob("*/cmake/*.cmake"))
    to_patch = [
        path
        for path in candidates
        if "/opt/python/" in path.read_text(encoding="utf-8", errors="replace")
    ]
    if not to_patch:
        return []
    python_include = _python_include_dir()
    numpy_include = _numpy_include_dir()
    changed = []
    for path in to_patch:
        original = path.read_text(encoding="utf-8")
        # numpy first: its path also starts with the builder's prefix.
        patched = _BUILDER_NUMPY_INCLUDE.sub(numpy_include, original)
        patched = _BUILDER_PYTHON_INCLUDE.sub(python_include, patched)
        if patched != original:
            _write_atomically(path, patched)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "prefix",
        nargs="?",
        type=Path,
        default=Path(sys.prefix),
        help="prefix holding the wheels' share/ (default: this interpreter's sys.prefix)",
    )
    args = parser.parse_args(argv)
    changed = patch_prefix(args.prefix)
    if changed:
        print(f"patched the wheel builder's include paths in {len(changed)} CMake files under {args.prefix}/share")
    return 0


if __name__ == "__main__":
    sys.exit(main())
