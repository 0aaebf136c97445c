"""Interrupted labelling continues with --resume and gives the same bag as an uninterrupted run;
a stale or mismatched work folder is refused with a clear message."""

from __future__ import annotations

import pytest
from rosbag_helpers import label_options, read_bag, sample_bag, tiny_checkpoint

from egopress_core.errors import DataError
from egopress_core.rosbag.label_options import report_path_for, work_dir_for
from egopress_core.rosbag.labeller import label_bag


class Interrupted(Exception):
    """Stands for a crash or Ctrl-C after a batch was saved."""


def test_interrupted_then_resumed_labelling_equals_an_uninterrupted_one(tmp_path_factory, tmp_path):
    source = sample_bag(tmp_path_factory, "sqlite3", "none")
    checkpoint = tiny_checkpoint(tmp_path_factory)
    options = label_options(checkpoint, chunk_frames=8, num_inference_steps=1)  # 40 frames: 5 batches

    uninterrupted = tmp_path / "uninterrupted"
    full = label_bag(source, uninterrupted, options, progress=False)
    assert full.batches["total"] == 5

    resumed = tmp_path / "resumed"

    def stop_after_second_batch(number: int) -> None:
        if number == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        label_bag(source, resumed, options, progress=False, batch_callback=stop_after_second_batch)
    work = work_dir_for(resumed)
    assert not resumed.exists(), "an interrupted run must not leave anything under the final name"
    assert sorted(path.name for path in work.glob("batch_*.npz")) == ["batch_000000.npz", "batch_000001.npz"]
    assert "failed" in report_path_for(resumed).read_text()

    with pytest.raises(DataError, match="--resume"):
        label_bag(source, resumed, options, progress=False)
    with pytest.raises(DataError, match=r"options changed.*seed"):
        label_bag(source, resumed, label_options(checkpoint, chunk_frames=8, num_inference_steps=1, seed=3), resume=True,
                  progress=False)

    labelled_batches: list[int] = []
    report = label_bag(source, resumed, options, resume=True, progress=False, batch_callback=labelled_batches.append)
    assert labelled_batches == [2, 3, 4] and report.batches["resumed"] == 2
    assert not work.exists()
    assert read_bag(resumed) == read_bag(uninterrupted)


def test_resume_refuses_a_changed_input(tmp_path_factory, tmp_path):
    import shutil

    checkpoint = tiny_checkpoint(tmp_path_factory)
    source = tmp_path / "input"
    shutil.copytree(sample_bag(tmp_path_factory, "mcap", "none"), source)
    options = label_options(checkpoint, chunk_frames=16, num_inference_steps=1)

    def stop(number: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        label_bag(source, tmp_path / "out", options, progress=False, batch_callback=stop)
    bag_file = next(source.glob("*.mcap"))
    bag_file.write_bytes(bag_file.read_bytes())  # same content, new modification time: treated as another recording
    with pytest.raises(DataError, match="input bag changed"):
        label_bag(source, tmp_path / "out", options, resume=True, progress=False)
    assert not (tmp_path / "out").exists()
