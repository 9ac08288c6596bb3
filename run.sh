#!/usr/bin/env bash
# Set up the environment (first time only) and start VPP Studio on the embedded demo clip and model.
# Arguments go to the app, e.g. ./run.sh path/to/video.mp4
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
bash scripts/check_qt_libs.sh
exec .venv/bin/vpp-gui "$@"
