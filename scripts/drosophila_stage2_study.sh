#!/usr/bin/env bash
# Stage-2 (mask -> EM) study of drosophila_skip_patch (docs/README.md, "Stage-2 discriminator ablation and diagnosis"):
# the shipped train.json recipe from scratch with the skip-patch discriminator, the two plain PatchGANs of the paper's
# ablation (16 px, 70 px), and two diagnosis variants of the skip-patch recipe (no texture-statistics losses; no
# flips and rotations in the discriminator's DiffAugment, so that it sees the generator's one-sided relief always on
# the same side), same seed, data and iterations; then every checkpoint's EMA generator judged by the
# classifier two-sample test of evaluate.json (EM from the held-out masks vs sections 16-19) with the texture and
# FCN diagnostics (scripts/drosophila_stage2_curve.py).
# Runs go to bundles/drosophila_skip_patch/runs/s2_<name> (not shipped), curves to runs/s2_<name>_curve.
# Usage: [EPOCHS=30] bash scripts/drosophila_stage2_study.sh [--curves-only]   (50 iterations per epoch)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
B=bundles/drosophila_skip_patch
R=$B/runs
MODE=${1:-}
EPOCHS=${EPOCHS:-30}
declare -A ARGS=(
  [skip_patch]="--discriminator_kind skip_patch"
  [patch16]="--discriminator_kind patch16"
  [patch70]="--discriminator_kind patch70"
  [no_texture]="--discriminator_kind skip_patch --lambda_texture 0"
  [no_fliprot]="--discriminator_kind skip_patch --augment_policy [\"translation\",\"cutout\"]"
)
mkdir -p "$R"
if [ "$MODE" != "--curves-only" ]; then
  for name in "${!ARGS[@]}"; do
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 "$PY" -m monai.bundle run --config_file "$B/configs/train.json" --output_dir "$R/s2_$name" \
      --seed 0 --max_epochs "$EPOCHS" --save_interval 5 ${ARGS[$name]} > "$R/s2_$name.log" 2>&1 &
  done
  wait
fi
for name in "${!ARGS[@]}"; do
  OMP_NUM_THREADS=1 "$PY" scripts/drosophila_stage2_curve.py --run_dir "$R/s2_$name" --output_dir "$R/s2_${name}_curve" \
    --n_draws 4 --c2st_seeds 3 > "$R/s2_${name}_curve.log" 2>&1 &
  while [ "$(jobs -r | wc -l)" -ge 2 ]; do sleep 5; done
done
wait
