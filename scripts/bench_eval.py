"""Time ``core.evaluation.ytvis_eval.evaluate`` on a synthetic set (default 200 videos), for the README.

    .venv/bin/python scripts/bench_eval.py [--videos 200] [--frames 16] [--width 320 --height 240]

Ground truth comes from the synthetic generator (in memory, no JPEGs); results are the ground-truth
tracks perturbed (masks shifted, some frames dropped, scores random) plus false positives.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.rle import encode_masks
from core.data.synthetic import CATEGORIES, generate_clip
from core.data.ytvis import YtvisAnnotation, YtvisCategory, YtvisGroundTruth, YtvisResult, YtvisVideo
from core.evaluation.ytvis_eval import evaluate, format_table


def _segs(masks: np.ndarray, present: np.ndarray) -> list:
    rles = iter(encode_masks(masks[present]))
    return [next(rles) if p else None for p in present]


def build(videos: int, frames: int, width: int, height: int, seed: int = 0):
    """Ground truth from ``videos`` synthetic clips; results = perturbed GT tracks + false positives."""
    rng = np.random.default_rng(seed)
    clips = [generate_clip([seed, 7, v], width, height, frames) for v in range(videos)]
    vids, anns, results = [], [], []
    for v, clip in enumerate(clips, start=1):
        vids.append(YtvisVideo(v, width, height, tuple(f"v{v}/{t:05d}.jpg" for t in range(frames))))
        for inst in clip.instances:
            anns.append(YtvisAnnotation.from_segmentations(len(anns) + 1, v, inst.category_id,
                                                           _segs(inst.masks, inst.present), height=height,
                                                           width=width))
            moved = np.roll(inst.masks, tuple(rng.integers(-3, 4, 2)), axis=(1, 2))
            keep = inst.present & (rng.random(frames) > 0.1)
            results.append(YtvisResult(v, inst.category_id, float(rng.uniform(0.3, 1.0)), tuple(_segs(moved, keep))))
        for inst in clips[v % videos].instances:  # false positives: the next clip's objects, random classes
            results.append(YtvisResult(v, int(rng.integers(1, len(CATEGORIES) + 1)), float(rng.uniform(0, 0.6)),
                                       tuple(_segs(inst.masks, inst.present))))
    cats = tuple(YtvisCategory(i + 1, n) for i, n in enumerate(CATEGORIES))
    return YtvisGroundTruth(tuple(vids), tuple(anns), cats), tuple(results)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    args = ap.parse_args()
    t0 = time.perf_counter()
    gt, results = build(args.videos, args.frames, args.width, args.height)
    t1 = time.perf_counter()
    track = evaluate(gt, results, frame_metrics=False)
    t2 = time.perf_counter()
    figures = evaluate(gt, results)
    t3 = time.perf_counter()
    print(format_table(figures))
    print(f"{args.videos} videos x {args.frames} frames ({args.width}x{args.height}), {len(gt.annotations)} GT "
          f"tracks, {len(results)} result tracks; generation {t1 - t0:.2f} s")
    print(f"evaluate, video AP only: {t2 - t1:.2f} s; with per-frame mAP_bbox/mAP_segm: {t3 - t2:.2f} s")
    return 0 if track["AP"] >= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
