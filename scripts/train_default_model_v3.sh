#!/usr/bin/env bash
# Reproduce resources/default_model.safetensors (v3) and its model-card tables, on a CPU:
#     scripts/train_default_model_v3.sh            (rerun to resume; see resources/MODEL_CARD.md for the time)
# v3 starts from v2's shipped file (taken from git history) and trains on the camouflage scene at a
# 512-px long side (recipes/default_model_v3.json). Data goes to data/, runs and logs to runs/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
vpp=.venv/bin/vpp
mkdir -p runs
v2=b5b4fe7  # the last commit that shipped v2
[ -f runs/shipped_v2.safetensors ] || git show "$v2:resources/default_model.safetensors" > runs/shipped_v2.safetensors
[ -f runs/shipped_v2.json ] || git show "$v2:resources/default_model.json" > runs/shipped_v2.json
[ -f data/camo/valid/instances.json ] || $vpp make-synthetic --out data/camo --train-videos 500 --val-videos 200 \
    --frames 12 --width 512 --height 288 --max-objects 6 --max-distractors 2 --scene camouflage --seed 0
$vpp train --config recipes/default_model_v3.json 2>&1 | tee -a runs/default_model_v3.log
$vpp export-model runs/default_v3/last.safetensors resources/default_model.safetensors --half --pkr 0.4
$vpp model-card --split data/camo/valid --pkr 0.7 0.55 0.4 --markdown runs/model_card_v3.md --json runs/model_card_v3.json
