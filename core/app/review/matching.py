"""A document's tracks beside the ground truth: which prediction is which object, and how well it fits.

:func:`review_tracks` matches predicted tracks to ground-truth tracks one-to-one and gives, per pair, the
track IoU of the YouTube-VIS protocol (Σ_t |d∩g| / Σ_t |d∪g| over the annotated frames) and the IoU on every
frame. Everything is computed on the RLEs with pycocotools (one ``iou`` call per annotated frame, no mask is
decoded), so 300 frames with 30 tracks on each side at 1920x1080 take a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from pycocotools import mask as mask_utils

from core.app.document.tracks import Track
from core.data.rle import as_coco, rle_areas
from core.evaluation.ground_truth import ClipGroundTruth, GroundTruthTrack

#: The track IoU a prediction needs to match a ground-truth object.
MATCH_IOU = 0.5


@dataclass(frozen=True)
class TrackMatch:
    """A predicted track matched to a GT track: the track IoU and ``per_frame`` IoU ``[num_frames]`` float64.

    ``per_frame`` is NaN where the frame is not annotated or neither track has a mask there; 0 where only one
    of them has one."""

    pred_id: int
    gt_id: int
    iou: float
    per_frame: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True, eq=False)
class Review:
    """The outcome of :func:`review_tracks`.

    ``matches`` (in matching order: predictions by score, descending), ``misses`` (GT track ids without a
    match, ascending), ``false_tracks`` (predicted track ids without a match, ascending).

    ``frame_iou [num_frames]``: per annotated frame, the mean IoU over the objects there: every matched
    pair with a mask on that frame on either side (its IoU on the frame; 0 when only one side has a mask)
    and every *missed* GT object present on the frame, counted as 0 (so a frame where the model misses an
    object is not reported as perfect). Unmatched predictions (false tracks) do not enter it. NaN on frames
    that are not annotated and on annotated frames with nothing to measure (no GT object and no matched
    prediction there).

    ``ious [len(pred_ids), len(gt_ids)]``: the track IoU of every pair (rows ``pred_ids``, columns ``gt_ids``,
    both ascending), categories ignored.
    """

    matches: list[TrackMatch]
    misses: list[int]
    false_tracks: list[int]
    frame_iou: np.ndarray
    ious: np.ndarray
    pred_ids: list[int]
    gt_ids: list[int]
    threshold: float = MATCH_IOU

    @cached_property
    def by_pred(self) -> dict[int, TrackMatch]:
        return {m.pred_id: m for m in self.matches}

    @cached_property
    def by_gt(self) -> dict[int, TrackMatch]:
        return {m.gt_id: m for m in self.matches}


def _frame_overlaps(gt: ClipGroundTruth, preds: list[Track],
                    gts: list[GroundTruthTrack]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per annotated frame: intersections ``[A, P, G]``, predicted areas ``[A, P]``, GT areas ``[A, G]`` (int64)."""
    n_a, n_p, n_g = len(gt.annotated), len(preds), len(gts)
    inter = np.zeros((n_a, n_p, n_g), np.int64)
    pa = np.zeros((n_a, n_p), np.int64)
    ga = np.zeros((n_a, n_g), np.int64)
    size = [gt.height, gt.width]
    for k, t in enumerate(gt.annotated):
        pi, prles = [], []
        for i, tr in enumerate(preds):
            f = tr.frames.get(t)
            if f is None or f.area <= 0:
                continue
            if list(f.rle["size"]) != size:
                raise ValueError(f"track {tr.id}: a mask of size {f.rle['size']} on frame {t}; the ground truth "
                                 f"{gt.path} is {gt.width}x{gt.height}")
            pi.append(i)
            prles.append(f.rle)
        gi = [j for j, g in enumerate(gts) if t in g.frames]
        if pi:
            pc = as_coco(prles)
            pa[k, pi] = rle_areas(pc)
        if gi:
            gc = as_coco([gts[j].frames[t] for j in gi])
            ga[k, gi] = rle_areas(gc)
        if pi and gi:
            # with the crowd flag, iou is |d∩g| / |d|: |d∩g| = round(ratio * |d|) exactly (as core.evaluation)
            ratio = np.asarray(mask_utils.iou(pc, gc, [1] * len(gi))).reshape(len(pi), len(gi))
            inter[k][np.ix_(pi, gi)] = np.rint(np.clip(ratio, 0.0, None) * pa[k, pi][:, None]).astype(np.int64)
    return inter, pa, ga


def review_tracks(gt: ClipGroundTruth, tracks: Mapping[int, Track], *, threshold: float = MATCH_IOU,
                  include_rejected: bool = False) -> Review:
    """Match ``tracks`` (a document's ``doc.tracks``: id -> :class:`~core.app.document.tracks.Track`) to ``gt``.

    Only the annotated frames count. Matching is one-to-one and greedy: predictions in descending order of
    their score (ties: lower id first) each take the unmatched GT track with the highest track IoU
    (ties: lower GT id) that is at least ``threshold`` and has the same category, any category when
    ``gt.class_agnostic`` (DAVIS). Rejected tracks are left out unless ``include_rejected``.
    """
    items = sorted(tracks.items())
    ids = [int(k) for k, t in items if include_rejected or t.review != "rejected"]
    preds = [t for k, t in items if include_rejected or t.review != "rejected"]
    gts = sorted(gt.tracks, key=lambda g: g.id)
    gt_ids = [g.id for g in gts]
    inter, pa, ga = _frame_overlaps(gt, preds, gts)
    total_i = inter.sum(0)
    union = pa.sum(0)[:, None] + ga.sum(0)[None, :] - total_i
    ious = np.where(union > 0, total_i / np.maximum(union, 1), 0.0)

    order = sorted(range(len(preds)), key=lambda i: (-preds[i].score, ids[i]))
    taken = np.zeros(len(gts), bool)
    pairs: list[tuple[int, int]] = []
    gt_cats = np.array([g.category_id for g in gts], np.int64)
    for i in order:
        ok = ~taken & (ious[i] >= threshold)
        if not gt.class_agnostic:
            ok &= gt_cats == preds[i].category_id
        if not ok.any():
            continue
        cand = np.flatnonzero(ok)
        j = int(cand[np.argmax(ious[i, cand])])  # argmax takes the first (lowest GT id) of equal IoUs
        taken[j] = True
        pairs.append((i, j))

    n, annotated = gt.num_frames, np.asarray(gt.annotated, np.int64)
    matches = []
    for i, j in pairs:
        u = pa[:, i] + ga[:, j] - inter[:, i, j]
        per_frame = np.full(n, np.nan)
        per_frame[annotated] = np.where(u > 0, inter[:, i, j] / np.maximum(u, 1), np.nan)
        matches.append(TrackMatch(ids[i], gt_ids[j], float(ious[i, j]), per_frame))

    sums = np.zeros(len(annotated))
    counts = np.zeros(len(annotated))
    for m in matches:
        vals = m.per_frame[annotated]
        present = np.isfinite(vals)
        sums[present] += vals[present]
        counts += present
    counts += (ga[:, ~taken] > 0).sum(1)  # a missed object present on the frame counts as IoU 0
    frame_iou = np.full(n, np.nan)
    frame_iou[annotated] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    matched_pred = {i for i, _ in pairs}
    return Review(matches=matches, misses=[gt_ids[j] for j in range(len(gts)) if not taken[j]],
                  false_tracks=sorted(ids[i] for i in range(len(preds)) if i not in matched_pred),
                  frame_iou=frame_iou, ious=ious, pred_ids=ids, gt_ids=gt_ids, threshold=float(threshold))
