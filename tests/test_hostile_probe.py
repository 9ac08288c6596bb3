"""The hostile-input probe (scripts/hostile_probe.py) runs in the suite: every case must be handled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_hostile_case_is_handled():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "hostile_probe.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "hostile cases handled" in proc.stdout
