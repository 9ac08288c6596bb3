#!/usr/bin/env bash
# Reproduce resources/default_model.safetensors and the table of resources/MODEL_CARD.md, on a CPU:
#     scripts/train_default_model.sh            (about 70 min on 2 cores; rerun to resume)
# v1: recipes/default_model.json; v2 (shipped): v1's float16 export with the prune gates retrained
# (recipes/default_model_objectness.json: masked training + objectness loss). See the model card.
# Data goes to data/, the run and its log to runs/ (both git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
vpp=.venv/bin/vpp
mkdir -p runs
[ -f data/shapes/train/instances.json ] || $vpp make-synthetic --out data/shapes --train-videos 400 \
    --val-videos 40 --frames 12 --width 320 --height 240 --seed 0
$vpp train --config recipes/default_model.json 2>&1 | tee -a runs/default_model.log
$vpp export-model runs/default_model/last.safetensors runs/shipped_v1.safetensors --half --pkr 0.4
$vpp train --config recipes/default_model_objectness.json 2>&1 | tee -a runs/default_model_objectness.log
$vpp export-model runs/default_obj/last.safetensors resources/default_model.safetensors --half --pkr 0.4
$vpp model-card --split data/shapes/valid --markdown runs/model_card_table.md --json runs/model_card.json
