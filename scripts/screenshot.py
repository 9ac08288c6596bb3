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
from pathlib import Path

from screenshot_common import close_window, open_window, pump, settle


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
    from PySide6.QtCore import Qt

    app, window = open_window(args.clip, args.theme)
    took = pump(app, lambda: window.controller.state not in ("idle", "running"), args.timeout, "inference pass")
    print(f"pass {window.controller.state} after {took:.1f} s", file=sys.stderr)
    window.timeline.set_frame(args.frame)
    window.resizeDocks([window.controls_dock, window.tracks_dock], [380, 420], Qt.Orientation.Vertical)
    if args.import_file:
        ids = window.transfers.import_path(args.import_file)
        doc = window.bridge.doc
        if ids:
            doc.relabel(ids, doc.add_category("car"))
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
    settle(app, 50)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(args.out)
    state = window.controller.state
    close_window(window)
    return 0 if ok and state == "done" else 1


if __name__ == "__main__":
    raise SystemExit(main())
