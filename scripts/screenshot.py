"""Start the app as `vpp-gui` does (demo clip, default model), wait for the pass, save a screenshot.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshot.py docs/screenshot.png

Runs on whatever Qt platform is configured (xcb under xvfb-run: a check that the app starts on a
real X server, with opencv-python installed), seeks to a frame, and writes the window as PNG.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--frame", type=int, default=20)
    parser.add_argument("--theme", choices=("dark", "light"), default="dark")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from vpp_gui.app import create_window  # importing vpp_gui clears opencv's Qt plugin path

    app = QApplication([sys.argv[0]])
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    print(f"Qt platform: {app.platformName()}", file=sys.stderr)
    window = create_window()
    window.set_theme(args.theme)
    window.resize(1600, 960)
    window.show()
    start = time.perf_counter()
    while window.controller.state in ("idle", "running") and time.perf_counter() - start < args.timeout:
        app.processEvents()
        time.sleep(0.01)
    print(f"pass {window.controller.state} after {time.perf_counter() - start:.1f} s", file=sys.stderr)
    window.timeline.set_frame(args.frame)
    for _ in range(50):
        app.processEvents()
        time.sleep(0.01)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(args.out)
    window.close()
    return 0 if ok and window.controller.state == "done" else 1


if __name__ == "__main__":
    raise SystemExit(main())
