#!/usr/bin/env python
"""Count the actions a person needs to annotate one object to a mean J over all frames: by hand, and
with keyframes + propagation.

    python scripts/annotation_effort.py ../shared/data/davis_car_shadow/frames \
        --gt ../shared/data/davis_car_shadow/masks --target 0.9

A simulated annotator draws polygons (the fewest points whose filled polygon reaches IoU ``--polygon``
with the ground truth; each point is one click, closing is one key) through :class:`Document`, as the
app's polygon tool does:

- **by hand**: a polygon on every frame, one key to step to the next frame;
- **with propagation**: a polygon on the first frame and ``T`` (propagate to the end); then, while the
  mean J over all frames is below ``--target``, go to the worst frame (one click on the keyframe strip),
  draw a polygon there (a new keyframe) and fill both of its gaps (``Ctrl+T``), and, when it is the
  last keyframe, propagate from it to the end (``T``).

Every action counted is one a person makes in the app; the masks come from the real propagation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.app.document import Document, polygon_mask
from core.data.rle import decode_rle
from core.data.sources import open_source
from core.export import import_tracks


def fewest_point_polygon(gt: np.ndarray, target: float) -> tuple[np.ndarray, int]:
    """The polygon mask (largest component) with the fewest points reaching IoU ``target``; and its points."""
    contours, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    h, w = gt.shape
    best = None
    lo, hi = 0.1, 60.0  # epsilon (pixels) of Douglas-Peucker: larger = fewer points
    for _ in range(18):
        eps = (lo + hi) / 2
        pts = cv2.approxPolyDP(contour, eps, True).reshape(-1, 2)
        if len(pts) < 3:
            hi = eps
            continue
        m = polygon_mask(pts.tolist(), h, w)
        if iou(m, gt) >= target:
            best, lo = (m, len(pts)), eps
        else:
            hi = eps
    if best is None:
        pts = contour.reshape(-1, 2)
        best = (polygon_mask(pts.tolist(), h, w), len(pts))
    return best


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip")
    ap.add_argument("--gt", required=True, help="YTVIS ground-truth JSON or DAVIS PNG mask folder")
    ap.add_argument("--target", type=float, default=0.9, help="mean J over all frames to reach (default 0.9)")
    ap.add_argument("--polygon", type=float, default=0.93, help="IoU each drawn polygon reaches (default 0.93)")
    args = ap.parse_args(argv)

    with open_source(args.clip) as source:
        frames = [np.asarray(source.frame(i)) for i in range(len(source))]
    doc = Document.open_clip(args.clip)
    n, h, w = doc.clip.shape
    gt_track = max(import_tracks(args.gt, num_frames=n, height=h, width=w).tracks, key=lambda t: len(t.frames))
    gt = [decode_rle(gt_track.frames[i]) if i in gt_track.frames else np.zeros((h, w), bool) for i in range(n)]
    polys = [fewest_point_polygon(g, args.polygon) if g.any() else (g, 0) for g in gt]
    cid = doc.add_category("object")

    # by hand: a polygon on every frame (points + Enter), one key to the next frame
    hand = sum(p + 1 for _, p in polys) + (n - 1)
    hand_j = np.mean([iou(m, g) for (m, _), g in zip(polys, gt)])

    # with propagation
    actions = polys[0][1] + 1 + 1  # polygon on frame 0, then T
    tid = doc.create_track(0, polys[0][0], cid)
    doc.propagate(tid, 0, n - 1, frames=frames.__getitem__)
    log = [f"frame 0: polygon of {polys[0][1]} points, T"]

    def scores():
        t = doc.track(tid)
        return [iou(t.frames[i].decode() if i in t.frames else np.zeros((h, w), bool), gt[i]) for i in range(n)]

    js = scores()
    while np.mean(js) < args.target:
        worst = int(np.argmin([j if i not in doc.track(tid).keyframes else 2.0 for i, j in enumerate(js)]))
        doc.set_mask(tid, worst, polys[worst][0])
        actions += 1 + polys[worst][1] + 1  # go there, polygon (points + Enter)
        step = f"frame {worst}: polygon of {polys[worst][1]} points"
        keys = doc.keyframes(tid)
        if any(k < worst for k in keys) or any(k > worst for k in keys):
            doc.fill_between(tid, worst, frames=frames.__getitem__)
            actions += 1
            step += ", Ctrl+T"
        if worst == max(keys) and worst < n - 1:
            doc.propagate(tid, worst, n - 1, frames=frames.__getitem__)
            actions += 1
            step += ", T"
        log.append(step)
        js = scores()
    print(f"{doc.clip.name}: {n} frames of {w}x{h}; target mean J {args.target}, polygons at IoU {args.polygon}")
    print("| way | actions | keyframes | mean J |\n|---|---|---|---|")
    print(f"| by hand (a polygon on every frame) | {hand} | {n} | {hand_j:.3f} |")
    print(f"| keyframes + propagation | {actions} | {len(doc.keyframes(tid))} | {np.mean(js):.3f} |")
    for line in log:
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
