"""What the screenshot scripts share: start the app as `vpp-gui` does, wait on it, write a small PNG.

Settings and journals go to a temporary folder; importing :mod:`vpp_gui` clears opencv's Qt plugin path.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def open_window(clip: str | None, theme: str, size: tuple[int, int] = (1600, 960)):
    """``(app, window)``: a QApplication and the main window on ``clip`` (None: the demo clip), shown."""
    import pyqtgraph as pg
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from vpp_gui.app import create_window
    from vpp_gui.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="vpp-screenshot-"))
    app = QApplication([sys.argv[0]])
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    print(f"Qt platform: {app.platformName()}", file=sys.stderr)
    settings = Settings(QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
    window = create_window(clip, settings=settings, recover=False, data_dir=tmp / "data")
    window.set_theme(theme)
    window.resize(*size)
    window.show()
    return app, window


def settle(app, rounds: int = 80) -> None:
    """Let pending paints and timers run (``rounds`` x 10 ms)."""
    for _ in range(rounds):
        app.processEvents()
        time.sleep(0.01)


def close_window(window) -> None:
    """Close without the "save changes?" prompt: a screenshot is not work to keep."""
    if window.bridge.doc is not None:
        window.bridge.doc.mark_clean()
    window.close()


def pump(app, until, timeout: float, what: str) -> float:
    """Process events until ``until()`` is true; the seconds it took (raises after ``timeout``)."""
    start = time.perf_counter()
    while not until():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
        app.processEvents()
        time.sleep(0.01)
    return time.perf_counter() - start


def save_png(widget, path: str, width: int, max_kb: int) -> None:
    """Grab ``widget`` and write it as PNG (scaled to ``width``; quantized if still over ``max_kb``)."""
    from PySide6.QtCore import Qt

    image = widget.grab().toImage()
    if image.width() > width:
        image = image.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), "PNG", 0):  # quality 0: zlib's strongest compression, lossless
        raise OSError(f"cannot write {out}")
    if out.stat().st_size > max_kb * 1024:
        from PIL import Image

        with Image.open(out) as im:
            small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        small.save(out, optimize=True)
    print(f"wrote {out} ({image.width()}x{image.height()}, {out.stat().st_size // 1024} KB)", file=sys.stderr)
