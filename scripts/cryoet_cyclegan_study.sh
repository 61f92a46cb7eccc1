#!/usr/bin/env bash
# The working CryoETGAN CycleGAN's seed and ablation study (bundles/cryoet_gan/docs/README.md, "The working CycleGAN"):
# the recipe (residual bound 0.1 z) with seeds 0-2, the paper's Table 4 on this data (least squares instead of
# Wasserstein, without spectral norm, both; seed 0), each 20 epochs after the shipped physics GAN; then one
# evaluate.json run scoring every G_ds (classifier accuracy, classes, Frechet, PRDC) and every G_sd (S -> D table) on
# the held-out tomograms. With BOUNDS="0.1 0.25 0.5" the recipe's seeds are also run with the larger residual
# bounds of the docs' bound table.
# Runs go to bundles/cryoet_gan/runs/ (not shipped), the table to bundles/cryoet_gan/eval/evaluate_study.
# Usage: [BOUNDS="0.1 0.25 0.5"] bash scripts/cryoet_cyclegan_study.sh [--eval-only]
# About 20 min of wall time on 2 CPU cores for the six default trainings side by side (OMP_NUM_THREADS=1 each).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
B=bundles/cryoet_gan
R=$B/runs
M=$B/models
BOUNDS=${BOUNDS:-0.1}
RECIPE=(--generator_kind physics_residual --physics_init "$M/g_ds_physics.pt" --physics_lr 0 --rotate_prob 0.5
  --g_sd_pretrain_steps 300 --cycle_criterion mse --lambda_cycle 10 --lambda_cycle_b 10 --lambda_adv_a 0
  --max_epochs 20 --snapshot_interval 135 --save_interval 5)
train() {  # name gan_mode spectral_norm seed residual_bound
  OMP_NUM_THREADS=1 "$PY" -m monai.bundle run --config_file "$B/configs/train.json" --output_dir "$R/$1" \
    "${RECIPE[@]}" --gan_mode "$2" --spectral_norm "$3" --seed "$4" --residual_bound "$5" > "$R/$1.log" 2>&1
}
mkdir -p "$R"
if [ "${1:-}" != "--eval-only" ]; then  # --eval-only: score runs already there
  for bound in $BOUNDS; do
    for seed in 0 1 2; do train "cyc_b${bound}_s$seed" wgan_gp true "$seed" "$bound" & done
  done
  train cyc_lsgan_sn_s0 lsgan true 0 0.1 &
  train cyc_wgan_nosn_s0 wgan_gp false 0 0.1 &
  train cyc_lsgan_nosn_s0 lsgan false 0 0.1 &
  wait
fi
GF="{\"physics_gan\": [\"physics\", \"$M/g_ds_physics.pt\"]"
IF="{\"pretrained_only_g_sd\": \"$R/cyc_b0.1_s0/g_sd_pretrained.pt\""
add() {  # row run residual_bound
  GF="$GF, \"$1\": [\"physics_residual\", \"$R/$2/model.pt\", {\"residual_bound\": $3}]"
  IF="$IF, \"$1_g_sd\": \"$R/$2/g_sd.pt\""
}
for bound in $BOUNDS; do for seed in 0 1 2; do add "bound${bound}_seed$seed" "cyc_b${bound}_s$seed" "$bound"; done; done
for name in lsgan_sn wgan_nosn lsgan_nosn; do add "ablation_$name" "cyc_${name}_s0" 0.1; done
GF="$GF, \"cyclegan\": [\"cyclegan\", \"$M/g_ds_cyclegan.pt\"]}"
IF="$IF, \"cyclegan_g_sd\": \"$M/g_sd_cyclegan.pt\"}"
OMP_NUM_THREADS=1 "$PY" -m monai.bundle run --config_file "['$B/configs/train.json','$B/configs/evaluate.json']" \
  --output_dir "$B/eval/evaluate_study" --overwrite true --generator_files "$GF" --inverse_files "$IF"
