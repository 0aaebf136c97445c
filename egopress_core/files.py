"""Writing files so that a reader never sees half of one: the library's one atomic writer.

Everything the library writes for people or programs to read later (reports, configs, figures,
batches of labels, resumable state) goes through :func:`replacing`: the content is written to a
temporary file beside the target, and renamed onto it only once complete. A crash or an error
leaves the previous file (or none), never a truncated one.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` if the block completes,
    removed if it raises.

    The temporary name is unique (two writers of the same file each land whole, the last one
    wins) and ends with ``path``'s suffix, so writers that pick a format by suffix (matplotlib's
    ``savefig``, ``np.savez``) write the right one. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; these are ordinary data files
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically."""
    with replacing(path) as temporary:
        temporary.write_bytes(payload)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with replacing(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, document: Any, **dumps_options: Any) -> Path:
    """Write ``document`` as indented JSON with a final newline to ``path`` atomically;
    ``dumps_options`` go to :func:`json.dumps` (``sort_keys``, ``default``, ``allow_nan``...)."""
    return write_text_atomic(path, json.dumps(document, **{"indent": 2, **dumps_options}) + "\n")
