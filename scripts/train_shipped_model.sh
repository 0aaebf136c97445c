#!/usr/bin/env bash
# How the shipped checkpoints (egopress_core/assets/checkpoints/egopressdiff_compact and
# baseline_compact, the default since 2026-12-06) are made, and the comparison that chose the default.
# Run from the repository root after `make setup`. OUT defaults to /tmp/egopress-shipped.
# The shipped weights' stages 1-2 were trained on data of generator 1.x, stage 3 on generator
# 2.1's and stage 4 on 2.2's; run today, every stage gets the current generator's renders.
set -euo pipefail
. scripts/env.sh
OUT=${OUT:-/tmp/egopress-shipped}
STEPS=${STEPS:-1000}
# Training and validation data: disjoint seeds (the demo generates with seed 90000).
egopress synth --out "$OUT/data/train" --sequences 64 --frames 48 --seed 1 --image-size 256 256 --workers 2
egopress synth --out "$OUT/data/val" --sequences 14 --frames 48 --seed 2 --image-size 256 256 --workers 2
# Stage 1: EgoPressDiff compact with the UV-aligned geometry conditioning (use_uv_geometry,
# beyond the paper: per texel image evidence and the height above the surface the hand touches).
OMP_NUM_THREADS=1 egopress train --config compact --data "$OUT/data/train" --val-data "$OUT/data/val" \
    --out "$OUT/run" --max-steps "$STEPS" --set model.overrides.use_uv_geometry=true
# Stage 2: the same model trained on from stage 1's weights with a fresh warm-up + cosine schedule
# (its validation was still rising at the end of stage 1).
OMP_NUM_THREADS=1 egopress train --config compact --data "$OUT/data/train" --val-data "$OUT/data/val" \
    --out "$OUT/run_continued" --max-steps "$STEPS" \
    --set model.init_from="$OUT/run/model" --set model.overrides.use_uv_geometry=true
# Stage 3: fine-tuned from stage 2 on fresh data with the meshes users have: the camera-only
# path's (MediaPipe, depth lifting, fit; data.hands=estimated), on renders a real detector sees
# (generator 2.1). Frames where no hand is found carry no mesh and are not scored.
egopress synth --out "$OUT/data/train_2" --sequences 64 --frames 48 --seed 1 --image-size 256 256 --workers 2
egopress synth --out "$OUT/data/val_2" --sequences 14 --frames 48 --seed 2 --image-size 256 256 --workers 2
OMP_NUM_THREADS=1 egopress train --config compact --data "$OUT/data/train_2" --val-data "$OUT/data/val_2" \
    --out "$OUT/run_estimated" --max-steps "$STEPS" \
    --set model.init_from="$OUT/run_continued/model" --set model.overrides.use_uv_geometry=true --set data.hands=estimated
# Stage 4 (trained for the comparison, not shipped: level with stage 3, README "Beyond the
# generator's default ranges"): 1000 more steps on fresh data of wider ranges than the generator's
# defaults: camera 0.3-0.8 m from the hand (default 0.3-0.5) and a wider spread of hand shapes
# (shape std 1.5; default 1), the camera-only path's meshes.
WIDE="--hand-distance 0.3 0.8 --shape-std 1.5"
egopress synth --out "$OUT/data/train_wide" --sequences 64 --frames 48 --seed 21 --image-size 256 256 --workers 2 $WIDE
egopress synth --out "$OUT/data/val_wide" --sequences 14 --frames 48 --seed 22 --image-size 256 256 --workers 2 $WIDE
OMP_NUM_THREADS=1 egopress train --config compact --data "$OUT/data/train_wide" --val-data "$OUT/data/val_wide" \
    --out "$OUT/run_wide" --max-steps "$STEPS" \
    --set model.init_from="$OUT/run_estimated/model" --set model.overrides.use_uv_geometry=true --set data.hands=estimated
# Ship the EMA weights in half precision (half the size; loading casts back to float32).
ship() {
python - "$1" "$2" <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
source, target = Path(sys.argv[1]), Path(sys.argv[2])
target.mkdir(parents=True, exist_ok=True)
weights = {name: t.half() if t.is_floating_point() else t for name, t in load_file(source / "model.safetensors").items()}
save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
shutil.copy(source / "config.json", target / "config.json")
PY
}
ship "$OUT/run_estimated/model" egopress_core/assets/checkpoints/egopressdiff_compact
# The per-frame baseline of the README's comparison (issue 22): the same evidence (UV geometry)
# and stage 4's data and meshes, trained from scratch for as many steps as the four stages together.
OMP_NUM_THREADS=1 egopress train --config baseline_compact --data "$OUT/data/train_wide" --val-data "$OUT/data/val_wide" \
    --out "$OUT/run_baseline" --max-steps $((4 * STEPS)) --set model.overrides.use_uv_geometry=true --set data.hands=estimated
ship "$OUT/run_baseline/model" egopress_core/assets/checkpoints/baseline_compact
# The comparison on held-out seeds (the README's tables "With the camera-only path's meshes" and
# "Which model is the default"): the generator's default ranges, every gesture including the
# weak-evidence ones, and the wider ranges of stage 4.
egopress synth --out "$OUT/data/heldout" --sequences 14 --frames 48 --seed 7000 --image-size 256 256 --workers 2
egopress synth --out "$OUT/data/heldout_all" --sequences 20 --frames 48 --seed 7100 --image-size 256 256 --workers 2 \
    --gestures all
egopress synth --out "$OUT/data/heldout_wide" --sequences 16 --frames 48 --seed 7300 --image-size 256 256 --workers 2 $WIDE
for set in heldout heldout_all heldout_wide; do
python benchmarks/quality.py --out "$OUT/quality_$set" --data "$OUT/data/$set" --no-train --hands estimated \
    --variants full,baseline --checkpoint full=egopress_core/assets/checkpoints/egopressdiff_compact \
    --checkpoint baseline=egopress_core/assets/checkpoints/baseline_compact
done
# The baseline's two readouts on the same estimates (README, "Which model is the default").
OMP_NUM_THREADS=2 python benchmarks/baseline_readout.py --data "$OUT/data/heldout" "$OUT/data/heldout_all" \
    "$OUT/data/heldout_wide" --out "$OUT/baseline_readout.json"
