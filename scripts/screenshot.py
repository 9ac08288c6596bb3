"""Start the app as `vpp-gui` does (default model), wait for the pass, optionally review, save a screenshot.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshot.py docs/screenshot.png \
        --clip ../shared/data/davis_car_shadow/frames \
        --import ../shared/data/davis_car_shadow/pred_ytvis_results.json --brush

With ``--import`` a results file is imported as a reviewed track and, with ``--brush``, a brush edit is
made on it at ``--frame`` (the stroke is drawn through the canvas tools, as a mouse drag would), so
the picture shows the tracks panel and a correction. Settings and journals go to a temporary folder.

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
    parser.add_argument("--clip", default=None, help="frame folder or video (default: the demo clip)")
    parser.add_argument("--import", dest="import_file", default=None, help="masks to import (YTVIS/DAVIS)")
    parser.add_argument("--brush", action="store_true", help="make a brush edit on the imported track")
    args = parser.parse_args(argv)
    import tempfile

    from PySide6.QtCore import QSettings

    from vpp_gui.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="vpp-screenshot-"))

    import pyqtgraph as pg
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from vpp_gui.app import create_window  # importing vpp_gui clears opencv's Qt plugin path

    app = QApplication([sys.argv[0]])
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    print(f"Qt platform: {app.platformName()}", file=sys.stderr)
    settings = Settings(QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
    window = create_window(args.clip, settings=settings, recover=False, data_dir=tmp / "data")
    window.set_theme(args.theme)
    window.resize(1600, 960)
    window.show()
    start = time.perf_counter()
    while window.controller.state in ("idle", "running") and time.perf_counter() - start < args.timeout:
        app.processEvents()
        time.sleep(0.01)
    print(f"pass {window.controller.state} after {time.perf_counter() - start:.1f} s", file=sys.stderr)
    window.timeline.set_frame(args.frame)
    window.resizeDocks([window.controls_dock, window.tracks_dock], [380, 420], Qt.Orientation.Vertical)
    if args.import_file:
        ids = window.transfers.import_path(args.import_file)
        doc = window.bridge.doc
        if ids:
            doc.set_categories({5: "car"})
            doc.accept(ids)
            doc.select(ids)
            window.tracks.select(ids)
            if args.brush:  # widen the car's mask over its shadow, as a reviewer would
                f = doc.track(ids[0]).frames[args.frame]
                x, y, w, h = (int(v) for v in __import__("core.data.rle", fromlist=["rle_bbox"]).rle_bbox(f.rle))
                tools = window.view.tools
                window.editing.set_tool("brush")
                tools.set_radius(14)
                tools.begin_stroke(x + w * 0.15, y + h * 0.97)
                for k in range(1, 30):
                    tools.extend_stroke(x + w * (0.15 + 0.7 * k / 29), y + h * (0.97 + 0.03 * (k % 2)))
                tools.end_stroke()
                tools._set_mouse((x + w * 0.85, y + h * 1.0))  # the brush circle where the stroke ended
    for _ in range(50):
        app.processEvents()
        time.sleep(0.01)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(args.out)
    if window.bridge.doc is not None:
        window.bridge.doc.mark_clean()  # a screenshot, not work to keep: no "save changes?" prompt
    window.close()
    return 0 if ok and window.controller.state == "done" else 1


if __name__ == "__main__":
    raise SystemExit(main())
