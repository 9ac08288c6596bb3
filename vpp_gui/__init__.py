"""VPP Studio desktop app (PySide6 + pyqtgraph): a thin view over core."""

from __future__ import annotations

import os
from pathlib import Path


def _undo_opencv_qt_paths() -> None:
    """opencv-python (the non-headless wheel) sets ``QT_QPA_PLATFORM_PLUGIN_PATH`` to its own Qt 5
    xcb plugin when ``cv2`` is imported; Qt 6 would then fail on a real display with "could not load
    the Qt platform plugin xcb". Import cv2 first, then drop the variables that point into it."""
    import cv2

    cv2_dir = Path(cv2.__file__).resolve().parent
    for var in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        value = os.environ.get(var)
        if value and cv2_dir in Path(value).resolve().parents:
            del os.environ[var]


_undo_opencv_qt_paths()
