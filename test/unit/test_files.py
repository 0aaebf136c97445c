"""The library's one atomic writer (egopress_core.files)."""

import json
import os

import numpy as np
import pytest

from egopress_core.files import replacing, write_bytes_atomic, write_json_atomic, write_text_atomic


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    write_json_atomic(target, {"run": 1})
    with pytest.raises(RuntimeError):
        with replacing(target) as temporary:
            temporary.write_text('{"run": 2, "trunc')
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"run": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_writers_create_folders_keep_the_suffix_and_give_readable_files(tmp_path):
    # np.savez appends ".npz" to a name without it: the temporary keeps the target's suffix.
    with replacing(tmp_path / "deep" / "batch.npz") as temporary:
        assert temporary.parent == tmp_path / "deep" and temporary.suffix == ".npz" and temporary.name.startswith(".")
        np.savez(temporary, x=np.arange(3))
    assert np.load(tmp_path / "deep" / "batch.npz")["x"].tolist() == [0, 1, 2]
    assert write_text_atomic(tmp_path / "a.txt", "text").read_text() == "text"
    assert write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert write_json_atomic(tmp_path / "c.json", {"b": 1, "a": [1]}, sort_keys=True).read_text() == \
        '{\n  "a": [\n    1\n  ],\n  "b": 1\n}\n'
    assert oct(os.stat(tmp_path / "c.json").st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.json", "deep"]
