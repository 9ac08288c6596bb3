#!/usr/bin/env python
"""Measure mask propagation against ground truth: mean J (mask IoU) over the frames it filled, ms per frame.

    python scripts/bench_propagate.py ../shared/data/davis_car_shadow/frames \
        --gt ../shared/data/davis_car_shadow/masks

Three cases, each through :class:`core.app.document.Document` exactly as the app runs them:

- ``keyframes every N``: the GT mask on frames 0, N, 2N, ... and the last frame; fill between them;
- ``forward from first``: the GT mask on the first frame only, propagated to the end;
- ``backward from last``: the GT mask on the last frame only, propagated to the start.

Each case runs with the default method (object motion on the edge band) and with plain per-pixel DIS
warping (``--no-plain`` skips it), so the table compares both in one run. ``--gt``: a YTVIS
ground-truth JSON or a folder of DAVIS PNG masks; ``--track`` picks its object (default: the one on
most frames). Frames are decoded once before timing (the app has them cached too).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.app.document import Document
from core.app.document.propagation import PropagationOptions
from core.data.rle import decode_rle
from core.data.sources import open_source
from core.export import import_tracks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clip", help="frame folder or video")
    ap.add_argument("--gt", required=True, help="YTVIS ground-truth JSON or DAVIS PNG mask folder")
    ap.add_argument("--track", type=int, default=None, help="which GT object (0-based; default: most frames)")
    ap.add_argument("--every", type=int, default=10, help="keyframe spacing for the fill case (default 10)")
    ap.add_argument("--no-plain", action="store_true", help="skip plain per-pixel warping")
    args = ap.parse_args(argv)

    with open_source(args.clip) as source:
        frames = [np.asarray(source.frame(i)) for i in range(len(source))]
    doc = Document.open_clip(args.clip)
    n, h, w = doc.clip.shape
    gt_tracks = import_tracks(args.gt, num_frames=n, height=h, width=w).tracks
    if not gt_tracks:
        print(f"error: {args.gt} holds no masks for this clip", file=sys.stderr)
        return 2
    pick = args.track if args.track is not None else max(range(len(gt_tracks)),
                                                          key=lambda k: len(gt_tracks[k].frames))
    gt = {i: decode_rle(r) for i, r in gt_tracks[pick].frames.items()}
    have = sorted(i for i, m in gt.items() if m.any())
    if len(have) < 2:
        print(f"error: GT object {pick} has a mask on fewer than 2 frames", file=sys.stderr)
        return 2
    first, last = have[0], have[-1]
    keys = sorted({*range(first, last + 1, args.every), last} & set(have))
    cases = [(f"keyframes every {args.every}", keys, "fill"), ("forward from first", [first], "forward"),
             ("backward from last", [last], "backward")]
    methods = [("flow + object motion", PropagationOptions())]
    if not args.no_plain:
        methods.append(("plain DIS warping", PropagationOptions(object_motion=False)))
    print(f"{doc.clip.name}: {n} frames of {w}x{h}, GT object {pick} on frames {first}..{last}")
    print("| case | method | mean J | frames filled | ms per frame |\n|---|---|---|---|---|")
    for name, anchors, how in cases:
        for label, options in methods:
            j, filled, ms = run_case(doc, frames, gt, anchors, how, first, last, options)
            print(f"| {name} | {label} | {j:.3f} | {filled} | {ms:.1f} |", flush=True)
    return 0


def run_case(doc: Document, frames, gt, anchors, how, first, last, options):
    tid = doc.create_track(anchors[0], gt[anchors[0]], doc.add_category("object"))
    for k in anchors[1:]:
        doc.set_mask(tid, k, gt[k])
    t0 = time.perf_counter()
    if how == "fill":
        for a, b in itertools.pairwise(anchors):
            if b - a > 1:
                doc.fill_between(tid, a + 1, frames=frames.__getitem__, options=options)
        planned = last - first + 1 - len(anchors)
    elif how == "forward":
        doc.propagate(tid, first, last, frames=frames.__getitem__, options=options)
        planned = last - first
    else:
        doc.propagate(tid, last, first, frames=frames.__getitem__, options=options)
        planned = last - first
    elapsed = time.perf_counter() - t0
    track = doc.track(tid)
    scores = []
    for i in range(first, last + 1):
        if i in anchors or i not in gt:
            continue
        pred = track.frames[i].decode() if i in track.frames else np.zeros_like(gt[i])
        union = np.logical_or(pred, gt[i]).sum()
        scores.append(np.logical_and(pred, gt[i]).sum() / union if union else 1.0)
    doc.delete([tid])
    return float(np.mean(scores)), len(track.frames) - len(anchors), 1000 * elapsed / max(1, planned)


if __name__ == "__main__":
    raise SystemExit(main())
