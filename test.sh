#!/usr/bin/env bash
# Set up the environment (first time only) and run the whole check: ruff, import contracts, pytest.
# Extra arguments go to pytest, e.g. ./test.sh -k ytvis
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
export QT_QPA_PLATFORM=offscreen
.venv/bin/ruff check .
.venv/bin/lint-imports
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$rc"
