#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv. Sourced by run.sh and test.sh.
# Re-installs only when pyproject.toml changed since the last successful install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

pick_python() {
    # torch 2.14.1 wheels are provided for CPython 3.11 on this platform; prefer it.
    for py in python3.11 python3 python; do
        if command -v "$py" >/dev/null 2>&1; then echo "$py"; return 0; fi
    done
    echo "error: no python3 found; install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv)" >&2
    return 1
}

if [ ! -x "$venv/bin/python" ]; then
    py="$(pick_python)"
    echo "[setup] creating virtual environment in .venv with $($py --version 2>&1)" >&2
    "$py" -m venv "$venv" || {
        echo "error: could not create a venv; on Debian install python3-venv (apt-get install python3-venv)" >&2
        exit 1
    }
fi

stamp="$venv/.vpp-install-stamp"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing dependencies (first run downloads/installs torch; this can take a few minutes)" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet -e "$root[dev]" >&2
    echo "$want" > "$stamp"
fi
