#!/usr/bin/env bash
# Reproduce resources/default_model.safetensors and the table of resources/MODEL_CARD.md, on a CPU:
#     scripts/train_default_model.sh            (about 55 min on 2 cores; rerun to resume)
# Data goes to data/, the run and its log to runs/ (both git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
vpp=.venv/bin/vpp
mkdir -p runs
[ -f data/shapes/valid/instances.json ] || $vpp make-synthetic --out data/shapes --train-videos 400 \
    --val-videos 40 --frames 12 --width 320 --height 240 --seed 0
$vpp train --config recipes/default_model.json 2>&1 | tee -a runs/default_model.log
$vpp export-model runs/default_model/last.safetensors resources/default_model.safetensors --half --pkr 0.4
$vpp model-card --split data/shapes/valid --markdown runs/model_card_table.md --json runs/model_card.json
