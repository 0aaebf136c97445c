"""benchmarks/baseline_readout.py: the per-frame baseline's readouts scored on the same estimates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]  # test/integration/training/<this file>


@pytest.mark.slow
def test_readout_benchmark_scores_the_checkpoint_readout_as_eval_does(synthetic, tmp_path):
    from egopress_core.data.sources import open_data_source, resolve_hand_uv_mask
    from egopress_core.evaluation import EvalOptions, evaluate
    from egopress_core.model.bin_classifier import READOUTS
    from egopress_core.model.config import tiny_config
    from tiny_checkpoints import save_tiny_baseline_checkpoint

    mask = resolve_hand_uv_mask(open_data_source(synthetic).sequences(), tuple(tiny_config().uv_size))
    checkpoint = save_tiny_baseline_checkpoint(tmp_path / "baseline", mask)

    out = tmp_path / "readout.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "baseline_readout.py"), "--data", str(synthetic),
                           "--checkpoint", str(checkpoint), "--hands", "annotated", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = report["results"][str(synthetic)]
    assert sorted(rows) == sorted(READOUTS) and report["checkpoint_readout"] == "argmax"
    own = evaluate(checkpoint, synthetic, tmp_path / "eval.json", EvalOptions(hands="annotated"), split="all",
                   figure=False, progress=False)["metrics"]
    for key in ("volumetric_iou", "contact_iou", "mae_kpa"):
        assert rows["argmax"][key] == pytest.approx(own[key], abs=1e-6), key
    assert rows["argmax"]["vs_checkpoint_readout"] is None  # the reference itself
    assert set(rows["contact_probability"]["per_sequence"]) <= {s.name for s in open_data_source(synthetic).sequences()}
    assert "contact_probability" in done.stdout

    with_video_model = subprocess.run([sys.executable, str(REPO / "benchmarks" / "baseline_readout.py"), "--data",
                                       str(synthetic), "--checkpoint", str(REPO / "egopress_core" / "assets" /
                                                                            "checkpoints" / "egopressdiff_compact")],
                                      capture_output=True, text=True, timeout=600)
    assert with_video_model.returncode == 2 and "not the per-frame baseline" in with_video_model.stderr
