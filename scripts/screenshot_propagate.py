"""A screenshot of annotating with keyframes: polygons on a few frames of a real clip, propagated.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshot_propagate.py \
        docs/propagate.png --clip ../shared/data/davis_car_shadow/frames \
        --gt ../shared/data/davis_car_shadow/masks

The object is drawn as polygons (the fewest points reaching IoU 0.93 with ``--gt``, as
``scripts/annotation_effort.py`` counts them) on frames 0 and 39 and the track is propagated with the
app's own controller (``Ctrl+T`` on a frame between them, run on its worker thread), then the window
shows ``--frame`` with the keyframe strip under the timeline. The model's own pass runs first, so
the strip also shows its tracks.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from screenshot_common import close_window, open_window, pump, save_png, settle

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--clip", required=True)
    parser.add_argument("--gt", required=True, help="YTVIS GT JSON or DAVIS PNG folder (the polygons' shape)")
    parser.add_argument("--keys", default="0,39", help="keyframes to draw (default 0,39)")
    parser.add_argument("--frame", type=int, default=26)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    from annotation_effort import fewest_point_polygon
    from PySide6.QtCore import Qt

    from core.data.rle import decode_rle
    from core.export import import_tracks

    app, window = open_window(args.clip, "dark")
    took = pump(app, lambda: window.controller.state not in ("idle", "running"), args.timeout, "inference pass")
    print(f"pass {window.controller.state} after {took:.1f} s", file=sys.stderr)
    doc = window.bridge.doc
    n, h, w = doc.clip.shape
    gt = max(import_tracks(args.gt, num_frames=n, height=h, width=w).tracks, key=lambda t: len(t.frames))
    keys = [int(k) for k in args.keys.split(",")]
    masks = {k: fewest_point_polygon(decode_rle(gt.frames[k]), 0.93)[0] for k in keys}
    tid = doc.create_track(keys[0], masks[keys[0]], doc.add_category("car"))
    for k in keys[1:]:
        doc.set_mask(tid, k, masks[k])
    doc.accept([tid])
    doc.select([tid])
    window.tracks.select([tid])
    for a, b in itertools.pairwise(keys):
        window.timeline.set_frame((a + b) // 2)
        settle(app, 5)
        window.propagation.fill_between()
        pump(app, lambda: not window.propagation.running, args.timeout, "propagation")
    window.resizeDocks([window.controls_dock, window.tracks_dock], [300, 500], Qt.Orientation.Vertical)
    window.timeline.set_frame(args.frame)
    for layer in ("heatmap",):
        window.actions_.layers[layer].setChecked(False)
    settle(app, 60)
    track = doc.track(tid)
    iou = np.mean([np.logical_and(track.frames[i].decode(), decode_rle(gt.frames[i])).sum()
                   / np.logical_or(track.frames[i].decode(), decode_rle(gt.frames[i])).sum() for i in track.frames])
    print(f"track {tid}: {len(track.frames)} frames, keyframes {sorted(track.keyframes)}, mean J {iou:.3f}; "
          f"{window.statusBar().currentMessage()}", file=sys.stderr)
    save_png(window, args.out, 1600, 700)
    close_window(window)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
