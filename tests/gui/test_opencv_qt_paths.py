"""opencv-python points Qt at its own Qt 5 plugins when imported; the app must undo that before Qt starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_importing_the_app_clears_opencv_plugin_path():
    code = (
        "import os, cv2; from pathlib import Path; import vpp_gui;"
        "v = os.environ.get('QT_QPA_PLATFORM_PLUGIN_PATH', '');"
        "d = Path(cv2.__file__).resolve().parent;"
        "print('BAD' if v and d in Path(v).resolve().parents else 'OK')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_QPA_PLATFORM_PLUGIN")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"


def test_opencv_really_sets_the_variable_so_the_test_above_means_something():
    code = "import os, cv2; print(os.environ.get('QT_QPA_PLATFORM_PLUGIN_PATH', ''))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_QPA_PLATFORM_PLUGIN")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    import cv2

    from_version = getattr(getattr(cv2, "version", None), "headless", True)
    if not from_version:  # the non-headless wheel: it sets the path
        assert "cv2" in out.stdout
