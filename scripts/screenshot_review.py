"""Screenshots of the research-review features: the main window with ground truth, and the PKR sweep panel.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshot_review.py \
        --clip ../shared/data/davis_car_shadow/frames --gt ../shared/data/davis_car_shadow/masks \
        --import ../shared/data/davis_car_shadow/pred_ytvis_results.json \
        --review docs/review.png --sweep docs/sweep.png

Starts the app as `vpp-gui` does (default model, settings and journals in a temporary folder), waits for
the pass, imports ``--import`` as an accepted "car" track (optional), loads ``--gt`` through the window's review
controller (File → Load ground truth), waits until the Review and Evaluation docks have their figures,
shows GT and predictions together at ``--frame`` and writes the window to ``--review``. With ``--sweep`` it
then opens Inference → PKR sweep (as a floating panel), runs it on the clip with that GT at the panel's
default PKRs (dense, VPP and random drop, each pass from the first frame), waits until it is done and writes
the panel (plot and table) to ``--sweep``. PNGs wider than ``--width`` are scaled down, and a PNG over
``--max-kb`` is reduced to 256 colours (Pillow), so the files stay small enough for the README.
"""

from __future__ import annotations

import argparse
import sys

from screenshot_common import close_window, open_window, pump, save_png, settle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", required=True, help="frame folder or video")
    parser.add_argument("--gt", required=True, help="ground truth: YouTube-VIS GT JSON or DAVIS PNG folder")
    parser.add_argument("--import", dest="import_file", default=None, help="results to import (YTVIS/DAVIS)")
    parser.add_argument("--review", default=None, help="PNG of the main window with GT and the review docks")
    parser.add_argument("--sweep", default=None, help="run the PKR sweep and write its panel as PNG here")
    parser.add_argument("--frame", type=int, default=20)
    parser.add_argument("--theme", choices=("dark", "light"), default="dark")
    parser.add_argument("--x-axis", choices=("ms_per_frame", "gflops_per_frame"), default="ms_per_frame")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per wait (pass, GT, sweep)")
    parser.add_argument("--width", type=int, default=1600, help="scale wider screenshots down to this")
    parser.add_argument("--max-kb", type=int, default=380, help="quantize a PNG above this size")
    args = parser.parse_args(argv)

    from PySide6.QtCore import Qt

    app, window = open_window(args.clip, args.theme)
    ok = True
    try:
        took = pump(app, lambda: window.controller.state not in ("idle", "running"), args.timeout, "inference pass")
        print(f"pass {window.controller.state} after {took:.1f} s", file=sys.stderr)
        ok = window.controller.state == "done"
        doc = window.bridge.doc
        if args.import_file:
            ids = window.transfers.import_path(args.import_file)
            if ids:
                doc.relabel(ids, doc.add_category("car"))  # a label of its own ("ring" is the model's 5)
                doc.accept(ids)
                doc.select(ids)
                window.tracks.select(ids)
        review = window.review
        if not review.load(args.gt):
            return 1
        pump(app, lambda: review.state.has_gt, args.timeout, "loading the ground truth")
        pump(app, lambda: window.eval_panel.report is not None and not review.computing, args.timeout,
             "review and evaluation")
        print(f"evaluation: {window.eval_panel.figures()}", file=sys.stderr)
        review.set_mode("both")
        # the right docks take the full height: Controls, Review against GT (tabbed with Tracks), Evaluation
        window.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        window.removeDockWidget(window.eval_dock)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, window.eval_dock)
        window.eval_dock.show()
        window.review_dock.raise_()
        window.resizeDocks([window.controls_dock], [470], Qt.Orientation.Horizontal)
        window.resizeDocks([window.controls_dock, window.review_dock, window.eval_dock], [190, 420, 300],
                           Qt.Orientation.Vertical)
        window.timeline.set_frame(args.frame)
        settle(app)
        if args.review:
            save_png(window, args.review, args.width, args.max_kb)
        if args.sweep:
            panel = window.sweep_panel
            window.actions_.sweep.trigger()
            window.sweep_dock.setFloating(True)
            window.sweep_dock.resize(1500, 620)
            panel.set_gt(args.gt)
            panel.x_axis.setCurrentIndex(panel.x_axis.findData(args.x_axis))
            if not panel.run():
                print(f"sweep did not start: {panel.message.text()}", file=sys.stderr)
                return 1
            took = pump(app, lambda: not panel.running, args.timeout, "PKR sweep")
            print(f"sweep {panel.state} after {took:.1f} s: {panel.message.text()}", file=sys.stderr)
            for r in panel.result.rows if panel.result is not None else []:
                print(f"  {r.name:12s} kept {r.keep_ratio:.3f}  {r.ms_per_frame:6.1f} ms  "
                      f"{r.gflops_per_frame:5.2f} GFLOPs  AP_track {r.AP_track:.3f}", file=sys.stderr)
            settle(app)
            ok = ok and panel.state == "done"
            save_png(panel, args.sweep, args.width, args.max_kb)
    finally:
        close_window(window)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
