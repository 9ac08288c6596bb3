"""The official YouTube-VIS video protocol (AP_track), written from its specification.

Per video and category: track IoU = Σ_t |d∩g| / Σ_t |d∪g| (a frame where only one side has a mask
adds its area to the union; frames where both are null add nothing); detections sorted by
descending score (stable), at most ``maxDets[-1]`` per (video, category); greedy COCO matching at
IoU thresholds .50:.05:.95 (a crowd ground truth may take several detections and, like every
ignored ground truth, makes its matches ignored); 101-point interpolated precision; maxDets
1/10/100; categories without ground truth are excluded from the means (precision stays -1).
Track area = mean of the non-null, non-zero per-frame areas (ground truth: its ``areas`` field);
area ranges are YouTube-VIS's (small < 128², medium 128²–256², large > 256²) or COCO's on request.

Intersections come from pycocotools' RLE routines, one call per video and frame: ``iou`` with the
crowd flag set returns |d∩g| / |d|, so |d∩g| = round(iou * |d|) exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from pycocotools import mask as mask_utils

from core.data.rle import RLE, as_coco, rle_areas
from core.data.ytvis import YtvisGroundTruth, YtvisResult
from core.errors import DataError
from core.evaluation.coco_frame import SUMMARY_KEYS, evaluate_frames
from core.evaluation.means import SummaryMeans

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETS = (1, 10, 100)
AREA_RANGES = {
    "ytvis": ((0.0, 1e10), (0.0, 128.0**2), (128.0**2, 256.0**2), (256.0**2, 1e10)),
    "coco": ((0.0, 1e10), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e10)),
}


def _areas(tracks: Sequence[Sequence[RLE | None]], length: int) -> np.ndarray:
    """Per-frame mask areas ``[N, T]`` (0 where null)."""
    out = np.zeros((len(tracks), length), np.int64)
    for i, segs in enumerate(tracks):
        idx = [t for t, s in enumerate(segs) if s is not None]
        if idx:
            out[i, idx] = rle_areas([segs[t] for t in idx])
    return out


def intersections(dets: Sequence[Sequence[RLE | None]], gts: Sequence[Sequence[RLE | None]],
                  length: int, det_areas: np.ndarray) -> np.ndarray:
    """Σ_t |d∩g| as an integer matrix ``[D, G]``; one pycocotools call per frame."""
    inter = np.zeros((len(dets), len(gts)), np.int64)
    if not len(dets) or not len(gts):
        return inter
    dc = [[None if s is None else as_coco([s])[0] for s in segs] for segs in dets]
    gc = [[None if s is None else as_coco([s])[0] for s in segs] for segs in gts]
    for t in range(length):
        di = [i for i in range(len(dc)) if dc[i][t] is not None]
        gi = [j for j in range(len(gc)) if gc[j][t] is not None]
        if not di or not gi:
            continue
        ratio = np.asarray(mask_utils.iou([dc[i][t] for i in di], [gc[j][t] for j in gi], [1] * len(gi)))
        ratio = ratio.reshape(len(di), len(gi))
        inter[np.ix_(di, gi)] += np.rint(np.clip(ratio, 0.0, None) * det_areas[di, t][:, None]).astype(np.int64)
    return inter


def track_iou_matrix(dets: Sequence[Sequence[RLE | None]], gts: Sequence[Sequence[RLE | None]]) -> np.ndarray:
    """Track IoU ``[D, G]`` between detected and ground-truth tracks of one video (same length)."""
    if not dets or not gts:
        return np.zeros((len(dets), len(gts)))
    length = len(gts[0])
    if any(len(s) != length for s in (*dets, *gts)):
        raise ValueError("all tracks of a video must have the same number of frames")
    da, ga = _areas(dets, length), _areas(gts, length)
    inter = intersections(dets, gts, length, da)
    union = da.sum(1)[:, None] + ga.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def mean_area(frame_areas: Sequence[float | None] | np.ndarray) -> float:
    """Mean of the non-null, non-zero per-frame areas (0 if there are none)."""
    vals = [float(a) for a in frame_areas if a]
    return float(np.mean(vals)) if vals else 0.0


def _greedy_match(ious: np.ndarray, gt_ignore: np.ndarray, crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO matching of score-sorted detections to ignore-sorted ground truth, per IoU threshold.

    Returns ``matched [T, D]`` and ``ignored [T, D]`` (matched to an ignored ground truth).
    """
    n_t, (n_d, n_g) = len(IOU_THRESHOLDS), ious.shape
    matched = np.zeros((n_t, n_d), bool)
    ignored = np.zeros((n_t, n_d), bool)
    if n_g == 0:
        return matched, ignored
    for ti, thr in enumerate(IOU_THRESHOLDS):
        taken = np.zeros(n_g, bool)
        floor = min(thr, 1 - 1e-10)
        for d in range(n_d):
            ok = (~taken | crowd) & (ious[d] >= floor)
            for pool in (ok & ~gt_ignore, ok & gt_ignore):  # a usable non-ignored match beats an ignored one
                if pool.any():
                    cand = np.flatnonzero(pool)
                    best = cand[ious[d, cand] == ious[d, cand].max()][-1]  # ties: the later one, as COCO
                    matched[ti, d], ignored[ti, d] = True, gt_ignore[best]
                    taken[best] = True
                    break
    return matched, ignored


class TrackPair:
    """Detections and ground truth of one (video, category), with their IoUs and mean areas."""

    def __init__(self, scores, det_area, gt_area, crowd, ious) -> None:
        self.scores, self.det_area, self.gt_area, self.crowd, self.ious = scores, det_area, gt_area, crowd, ious

    def evaluate(self, lo: float, hi: float):
        gt_ignore = self.crowd | (self.gt_area < lo) | (self.gt_area > hi)
        order = np.argsort(gt_ignore, kind="stable")
        gt_ignore = gt_ignore[order]
        matched, ignored = _greedy_match(self.ious[:, order], gt_ignore, self.crowd[order])
        out_of_range = (self.det_area < lo) | (self.det_area > hi)
        ignored |= ~matched & out_of_range[None, :]
        return self.scores, matched, ignored, int((~gt_ignore).sum())


def track_pairs(gt: YtvisGroundTruth, results: Sequence[YtvisResult], max_det: int) -> dict[tuple[int, int], TrackPair]:
    """Track IoUs for every (video, category) that has ground truth or detections."""
    cat_ids = set(gt.category_ids)
    gts_by_video, dets_by_video = defaultdict(list), defaultdict(list)
    for a in gt.annotations:
        gts_by_video[a.video_id].append(a)
    for r in results:
        if r.category_id in cat_ids:
            dets_by_video[r.video_id].append(r)
    pairs = {}
    for video in sorted(gt.videos, key=lambda v: v.id):
        gts, dets = gts_by_video.get(video.id, []), dets_by_video.get(video.id, [])
        if not gts and not dets:
            continue
        kept = []  # the top max_det detections of each category, by score (stable)
        for c in sorted({d.category_id for d in dets}):
            cd = [d for d in dets if d.category_id == c]
            kept += [cd[i] for i in np.argsort([-d.score for d in cd], kind="stable")[:max_det]]
        da = _areas([d.segmentations for d in kept], video.length)
        inter = intersections([d.segmentations for d in kept], [g.segmentations for g in gts], video.length, da)
        ga = _areas([g.segmentations for g in gts], video.length)
        union = da.sum(1)[:, None] + ga.sum(1)[None, :] - inter
        ious = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        for c in sorted({g.category_id for g in gts} | {d.category_id for d in kept}):
            di = [i for i, d in enumerate(kept) if d.category_id == c]
            gi = [j for j, g in enumerate(gts) if g.category_id == c]
            pairs[video.id, c] = TrackPair(
                np.array([kept[i].score for i in di], float), np.array([mean_area(da[i]) for i in di]),
                np.array([mean_area(gts[j].areas) for j in gi]), np.array([bool(gts[j].iscrowd) for j in gi], bool),
                ious[np.ix_(di, gi)])
    return pairs


def precision_recall(entries: list, max_det: int) -> tuple[np.ndarray, np.ndarray] | None:
    """101-point interpolated precision ``[T, R]`` and recall ``[T]`` pooled over videos; None if no GT."""
    n_gt = sum(e[3] for e in entries)
    if n_gt == 0:
        return None
    scores = np.concatenate([e[0][:max_det] for e in entries])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([e[1][:, :max_det] for e in entries], axis=1)[:, order]
    ignored = np.concatenate([e[2][:, :max_det] for e in entries], axis=1)[:, order]
    tp = np.cumsum(matched & ~ignored, axis=1, dtype=float)
    fp = np.cumsum(~matched & ~ignored, axis=1, dtype=float)
    n_t = len(IOU_THRESHOLDS)
    precision = np.zeros((n_t, len(RECALL_THRESHOLDS)))
    recall = np.zeros(n_t)
    if tp.shape[1] == 0:
        return precision, recall
    rc = tp / n_gt
    pr = tp / (tp + fp + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
    recall[:] = rc[:, -1]
    for t in range(n_t):
        idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
        valid = idx < rc.shape[1]
        precision[t, valid] = pr[t, idx[valid]]
    return precision, recall


def evaluate_tracks(gt: YtvisGroundTruth, results: Sequence[YtvisResult], *,
                    area_ranges: Literal["ytvis", "coco"] = "ytvis") -> dict[str, float]:
    """AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l of the YouTube-VIS video protocol (-1: undefined).

    Only categories with ground truth are scored (the others are excluded from every mean), one at a
    time into :class:`~core.evaluation.means.SummaryMeans`: memory follows the categories that occur,
    not the length of the file's category list."""
    ranges = AREA_RANGES[area_ranges]
    pairs = track_pairs(gt, results, MAX_DETS[-1])
    known = set(gt.category_ids)
    by_category: dict[int, list[TrackPair]] = defaultdict(list)
    for (_video, c), pair in sorted(pairs.items()):
        if c in known:
            by_category[c].append(pair)
    n_t, n_r, n_a, n_m = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(ranges), len(MAX_DETS)
    t50, t75 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.5))), int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))
    means = SummaryMeans([t50], [t75], n_m)
    for c in sorted(by_category):
        cat_pairs = by_category[c]
        if not any(len(p.gt_area) for p in cat_pairs):
            continue  # no ground truth: the category stays -1, left out of every mean
        precision = -np.ones((n_t, n_r, n_a, n_m))
        recall = -np.ones((n_t, n_a, n_m))
        for a, (lo, hi) in enumerate(ranges):
            entries = [p.evaluate(lo, hi) for p in cat_pairs]
            for m, max_det in enumerate(MAX_DETS):
                pr = precision_recall(entries, max_det)
                if pr is not None:
                    precision[:, :, a, m], recall[:, a, m] = pr
        means.add(precision, recall)
    return means.figures()


def evaluate(gt: YtvisGroundTruth, results: Sequence[YtvisResult], *,
             area_ranges: Literal["ytvis", "coco"] = "ytvis", frame_metrics: bool = True,
             source: str = "<memory>") -> dict[str, float]:
    """All figures: the video protocol (``AP`` ... ``ARl``, the seed's AP_track) and, with ``frame_metrics``,
    the per-frame COCO ``bbox_*`` (mAP_bbox) and ``segm_*`` (mAP_segm) figures. -1 means undefined.

    Running out of memory raises :class:`DataError` naming ``source`` (the files, for the message)."""
    try:
        figures = evaluate_tracks(gt, results, area_ranges=area_ranges)
        if frame_metrics:
            figures.update(evaluate_frames(gt, results))
        return figures
    except MemoryError:
        pass  # raised below, once the failed evaluation's frames (and their memory) are released
    raise DataError(f"{source}: not enough memory to evaluate {len(results)} result tracks on {len(gt.videos)} "
                    "videos; close other programs, or evaluate fewer videos at a time")


def format_table(figures: Mapping[str, float]) -> str:
    """A fixed-width text table: one row per protocol present in ``figures``, "-" for undefined (-1)."""
    rows = [("video AP (AP_track)", ""), ("frame mAP_bbox", "bbox_"), ("frame mAP_segm", "segm_")]
    head = f"{'':<20}" + "".join(f"{k:>7}" for k in SUMMARY_KEYS)
    lines = [head, "-" * len(head)]
    for label, prefix in rows:
        if f"{prefix}AP" not in figures:
            continue
        cells = []
        for k in SUMMARY_KEYS:
            v = figures.get(prefix + k, -1.0)
            cells.append(f"{'-':>7}" if v < 0 else f"{v:7.3f}")
        lines.append(f"{label:<20}" + "".join(cells))
    return "\n".join(lines)
