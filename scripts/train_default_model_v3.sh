#!/usr/bin/env bash
# Reproduce resources/default_model.safetensors (v3) and its model-card tables, on a CPU:
#     scripts/train_default_model_v3.sh            (rerun to resume; see resources/MODEL_CARD.md for the time)
# v3 starts from v2's shipped file (taken from git history) and trains at a 512-px long side on videos
# alternating the plain and the camouflage scene (recipes/default_model_v3.json). Data goes to data/,
# runs and logs to runs/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
vpp=.venv/bin/vpp
mkdir -p runs
v2=b5b4fe7  # the last commit that shipped v2
[ -f runs/shipped_v2.safetensors ] || git show "$v2:resources/default_model.safetensors" > runs/shipped_v2.safetensors
[ -f runs/shipped_v2.json ] || git show "$v2:resources/default_model.json" > runs/shipped_v2.json
common="--frames 12 --width 512 --height 288 --max-objects 6 --max-distractors 2 --seed 0"
# training: 800 videos alternating plain and camouflage; validation: 200 camouflage + 100 plain videos
[ -f data/mix/train/instances.json ] || $vpp make-synthetic --out data/mix --train-videos 800 --val-videos 0 $common --scene mixed
[ -f data/camo/valid/instances.json ] || $vpp make-synthetic --out data/camo --train-videos 0 --val-videos 200 $common --scene camouflage
[ -f data/plain/valid/instances.json ] || $vpp make-synthetic --out data/plain --train-videos 0 --val-videos 100 $common --scene plain
# stage 1: dense + sparse from v2's file (run 3, training noise on the keep ranking of scale 1 as it was then)
$vpp train --config recipes/default_model_v3.json 2>&1 | tee -a runs/default_model_v3.log
# stage 2: sparse fine-tune of stage 1 on exactly the inference selection (selection_noise 0)
$vpp train --config recipes/default_model_v3_finetune.json 2>&1 | tee -a runs/default_model_v3_finetune.log
$vpp export-model runs/default_v3_ft/last.safetensors resources/default_model.safetensors --half --pkr 0.4
$vpp model-card --split data/camo/valid --pkr 0.7 0.55 0.4 --markdown runs/model_card_v3.md --json runs/model_card_v3.json
