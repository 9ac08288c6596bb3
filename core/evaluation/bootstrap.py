"""How sure is a difference in AP_track between two configurations scored on the same videos?

    delta = paired_bootstrap(gt, results_vpp, results_random, resamples=1000)
    delta.observed, delta.low, delta.high, delta.share_positive

A paired bootstrap over videos: draw the split's videos with replacement, score both result sets on
the same draw with the YouTube-VIS video protocol (AP over IoU .50:.95, all areas, 100 detections),
and take the difference. The track IoUs are computed once per configuration; a resample only redoes
the matching bookkeeping, so 1000 resamples of a 40-video split take about a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.data.ytvis import YtvisGroundTruth, YtvisResult
from core.evaluation.ytvis_eval import AREA_RANGES, MAX_DETS, precision_recall, track_pairs


@dataclass(frozen=True)
class BootstrapDelta:
    """AP_track(a) − AP_track(b) on the full split, and its percentile interval over resamples."""

    observed: float
    low: float
    high: float
    level: float
    share_positive: float  # share of resamples where a scored higher than b
    resamples: int


def _entries(gt: YtvisGroundTruth, results: Sequence[YtvisResult]) -> dict[int, dict[int, tuple]]:
    """video id -> category id -> matched/ignored bookkeeping at the 'all' area range."""
    lo, hi = AREA_RANGES["ytvis"][0]
    out: dict[int, dict[int, tuple]] = {v.id: {} for v in gt.videos}
    for (video, category), pair in track_pairs(gt, results, MAX_DETS[-1]).items():
        out[video][category] = pair.evaluate(lo, hi)
    return out


def video_ap(entries: dict[int, dict[int, tuple]], videos: Sequence[int], categories: Sequence[int]) -> float:
    """AP_track of the videos ``videos`` (repeats allowed): the mean over categories with ground truth of the
    101-point precision averaged over the IoU thresholds; 0.0 when no video in the draw has ground truth."""
    per_category = []
    for c in categories:
        chosen = [entries[v][c] for v in videos if c in entries[v]]
        pr = precision_recall(chosen, MAX_DETS[-1]) if chosen else None
        if pr is not None:
            per_category.append(pr[0].mean())
    return float(np.mean(per_category)) if per_category else 0.0


def paired_bootstrap(gt: YtvisGroundTruth, results_a: Sequence[YtvisResult], results_b: Sequence[YtvisResult], *,
                     resamples: int = 1000, level: float = 0.95, seed: int = 0) -> BootstrapDelta:
    """The difference AP_track(a) − AP_track(b) and its ``level`` percentile interval over video resamples."""
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1, got {resamples}, {level}")
    videos = np.array(sorted(v.id for v in gt.videos))
    if videos.size == 0:
        raise ValueError("the ground truth has no videos")
    ea, eb = _entries(gt, results_a), _entries(gt, results_b)
    seen = {c for entries in (ea, eb) for per_video in entries.values() for c in per_video}
    cats = [c for c in gt.category_ids if c in seen]  # the others add nothing: each draw loops over these only
    observed = video_ap(ea, videos, cats) - video_ap(eb, videos, cats)
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for i in range(resamples):
        draw = rng.choice(videos, size=videos.size, replace=True)
        deltas[i] = video_ap(ea, draw, cats) - video_ap(eb, draw, cats)
    tail = (1 - level) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    return BootstrapDelta(observed, float(low), float(high), level, float((deltas > 0).mean()), resamples)
