"""`egopress train` under torchrun: two CPU processes (gloo DDP) finish and write a checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from egopress_core.data.synthetic.generator import SynthConfig, generate_dataset
from egopress_core.model import EgoPressDiff

REPO = Path(__file__).resolve().parents[3]  # test/integration/training/<this file>

# slow: torchrun starts two training processes (~20 s).
pytestmark = pytest.mark.slow


def test_two_process_ddp_on_cpu(tmp_path):
    data, out = tmp_path / "data", tmp_path / "run"
    generate_dataset(SynthConfig(sequences=3, frames=12, image_sizes=((48, 48),), seed=5), data, progress=False)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "egopress_core.cli.main", "train", "--config", "tiny", "--data", str(data), "--out", str(out),
        "--max-steps", "3", "--set", "checkpoint.every_steps=3", "--set", "validation.every_steps=3",
        "--set", "data.statistics_windows=4", "--set", "logging.plot=false", "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    try:
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"torchrun did not finish in 300 s:\n{error.stdout}\n{error.stderr}")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "2 process(es)" in log and "finished at step 3" in log

    checkpoint = out / "checkpoints" / "step_000003"
    assert (out / "checkpoints" / "latest").read_text().strip() == checkpoint.name
    # Every process's RNG state is saved (what a DDP resume restores).
    assert (checkpoint / "random_states_0.pkl").is_file() and (checkpoint / "random_states_1.pkl").is_file()
    state = json.loads((checkpoint / "training_state.json").read_text())
    assert state["num_processes"] == 2 and state["step"] == 3
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    assert [r["step"] for r in records if r["kind"] == "val"] == [3]
    model = EgoPressDiff.from_pretrained(out / "model")
    assert model.config.num_frames == 4
