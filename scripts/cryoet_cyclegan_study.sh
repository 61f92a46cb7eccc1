#!/usr/bin/env bash
# The working CryoETGAN CycleGAN's seed and ablation study (bundles/cryoet_gan/docs/README.md, "The working CycleGAN"):
# the recipe with seeds 0-2, then the paper's Table 4 on this data (least squares instead of Wasserstein, without
# spectral norm, both; seed 0), each 20 epochs after the shipped physics GAN; then one evaluate.json run scoring every
# G_ds (classifier accuracy, classes, Frechet, PRDC) and every G_sd (S -> D table) on the held-out tomograms.
# Runs go to bundles/cryoet_gan/runs/ (not shipped), the table to bundles/cryoet_gan/eval/evaluate_study.
# Usage: bash scripts/cryoet_cyclegan_study.sh [--eval-only]. About 12 min of wall time on 2 CPU cores with the five trainings side by side (OMP_NUM_THREADS=1 each).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
B=bundles/cryoet_gan
R=$B/runs
M=$B/models
RECIPE=(--generator_kind physics_residual --physics_init "$M/g_ds_physics.pt" --physics_lr 0 --rotate_prob 0.5
  --g_sd_pretrain_steps 300 --cycle_criterion mse --lambda_cycle 10 --lambda_cycle_b 10 --lambda_adv_a 0
  --max_epochs 20 --snapshot_interval 135 --save_interval 5)
train() {  # name gan_mode spectral_norm seed
  OMP_NUM_THREADS=1 "$PY" -m monai.bundle run --config_file "$B/configs/train.json" --output_dir "$R/$1" \
    "${RECIPE[@]}" --gan_mode "$2" --spectral_norm "$3" --seed "$4" > "$R/$1.log" 2>&1
}
mkdir -p "$R"
if [ "${1:-}" != "--eval-only" ]; then  # --eval-only: score runs already there
  train fin_rec_s0 wgan_gp true 0 &
  train fin_rec_s1 wgan_gp true 1 &
  train fin_rec_s2 wgan_gp true 2 &
  train fin_lsgan_sn_s0 lsgan true 0 &
  train fin_wgan_nosn_s0 wgan_gp false 0 &
  train fin_lsgan_nosn_s0 lsgan false 0 &
  wait
fi
gen() { printf '"%s": ["physics_residual", "%s"]' "$1" "$2"; }
GF="{\"physics_gan\": [\"physics\", \"$M/g_ds_physics.pt\"], $(gen physics_cyclegan "$R/fin_rec_s0/model.pt"),
 $(gen physics_cyclegan_seed1 "$R/fin_rec_s1/model.pt"), $(gen physics_cyclegan_seed2 "$R/fin_rec_s2/model.pt"),
 $(gen ablation_lsgan_sn "$R/fin_lsgan_sn_s0/model.pt"), $(gen ablation_wgan_no_sn "$R/fin_wgan_nosn_s0/model.pt"),
 $(gen ablation_lsgan_no_sn "$R/fin_lsgan_nosn_s0/model.pt"), \"cyclegan\": [\"cyclegan\", \"$M/g_ds_cyclegan.pt\"]}"
IF="{\"physics_cyclegan_g_sd\": \"$R/fin_rec_s0/g_sd.pt\", \"physics_cyclegan_seed1_g_sd\": \"$R/fin_rec_s1/g_sd.pt\",
 \"physics_cyclegan_seed2_g_sd\": \"$R/fin_rec_s2/g_sd.pt\", \"pretrained_only_g_sd\": \"$R/fin_rec_s0/g_sd_pretrained.pt\",
 \"ablation_lsgan_sn_g_sd\": \"$R/fin_lsgan_sn_s0/g_sd.pt\", \"ablation_wgan_no_sn_g_sd\": \"$R/fin_wgan_nosn_s0/g_sd.pt\",
 \"ablation_lsgan_no_sn_g_sd\": \"$R/fin_lsgan_nosn_s0/g_sd.pt\", \"cyclegan_g_sd\": \"$M/g_sd_cyclegan.pt\"}"
OMP_NUM_THREADS=1 "$PY" -m monai.bundle run --config_file "['$B/configs/train.json','$B/configs/evaluate.json']" \
  --output_dir "$B/eval/evaluate_study" --overwrite true --generator_files "$GF" --inverse_files "$IF"
