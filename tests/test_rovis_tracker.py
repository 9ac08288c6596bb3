"""ROVIS tracking rules, each on hand-made head outputs (class / mask logits) with known scores and overlaps.

Masks live on a 1 x 20 strip: ``(a, b)`` is columns a..b-1 inside. Two 10-wide masks shifted by s overlap with
IoU (10 - s) / (10 + s): s=1 -> 0.82, s=2 -> 0.67, s=3 -> 0.54, s=5 -> 0.33, s=10 -> 0.
"""

from __future__ import annotations

import math

import pytest
import torch

from core.model.m2f_head import Mask2FormerOutput
from core.model.m2f_postprocess import topk_instances
from core.model.rovis_tracker import RovisTracker, mask_iou_matrix, mask_nms

Q, K, W, C = 4, 3, 20, 4  # learned queries, classes, strip width, query width


def head_out(objs, *, t=0, frame=0) -> Mask2FormerOutput:
    """``objs``: ``(query, class, class prob, (a, b)[, mask prob inside])``; every other query says "no object"."""
    n = Q + t
    cls = torch.full((n, K + 1), -30.0)
    cls[:, K] = 30.0
    masks = torch.full((n, 1, W), -30.0)
    emb = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, C) + 100.0 * frame
    for q, c, p, (a, b), *inside in objs:
        probs = torch.full((K + 1,), 1e-9)
        probs[c], probs[K] = p, 1.0 - p - (K - 1) * 1e-9
        cls[q] = probs.log()
        masks[q, 0, a:b] = 30.0 if not inside else math.log(inside[0] / (1 - inside[0]))
    return Mask2FormerOutput(cls[None], masks[None], emb[None], [], Q)


def step(tracker: RovisTracker, objs, frame=None):
    feats, embeds = tracker.track_queries()
    t = 0 if feats is None else feats.shape[0]
    f = tracker.frame_index + 1 if frame is None else frame
    res = tracker.update(head_out(objs, t=t, frame=f))
    return res, feats, embeds


def test_score_is_class_prob_times_mean_mask_prob_inside():
    tr = RovisTracker()
    res, _, _ = step(tr, [(0, 1, 0.5, (0, 10), 0.8), (1, 2, 0.5, (10, 20), 0.55)])
    # 0.5 * 0.8 = 0.4 > 0.3 starts a track; 0.5 * 0.55 = 0.275 does not
    assert res.ids.tolist() == [1]
    assert res.scores.tolist() == pytest.approx([0.4], abs=1e-5)
    assert res.labels.tolist() == [1]
    assert res.detections.queries[res.kept].tolist() == [0]


def test_new_track_needs_more_than_0_3():
    tr = RovisTracker()
    ids, kept = step(tr, [(0, 0, 0.31, (0, 10)), (1, 0, 0.29, (10, 20))])[0]
    assert ids.tolist() == [1] and len(kept) == 1
    assert tr.live_ids == [1]


def test_existing_track_is_kept_at_0_25_and_its_query_is_not_updated_below_0_3():
    tr = RovisTracker()
    step(tr, [(0, 0, 0.9, (0, 10))])
    first_query = tr.track_queries()[0][0].clone()
    # frame 1: the track query (index Q + 0) at 0.27 keeps the track; a learned query at 0.27 starts nothing
    res, feats, embeds = step(tr, [(Q + 0, 0, 0.27, (0, 10)), (1, 1, 0.27, (10, 20))])
    assert feats.shape == (1, C) and torch.equal(embeds, torch.zeros(1, C))  # zero position embedding
    assert res.ids.tolist() == [1]
    assert torch.equal(tr.track_queries()[0][0], first_query)  # 0.27 < 0.3: not updated
    # frame 2: at 0.5 the query is updated to this frame's embedding of query Q + 0
    step(tr, [(Q + 0, 0, 0.5, (0, 10))])
    assert torch.equal(tr.track_queries()[0][0], torch.full((C,), Q + 0 + 200.0))
    # frame 3: at 0.24 the track is not continued (but not dropped: it is lost, not gone)
    res, _, _ = step(tr, [(Q + 0, 0, 0.24, (0, 10))])
    assert res.ids.tolist() == [] and tr.live_ids == [1]


def test_nms_0_7_among_continued_tracks():
    for shift, survivors in ((1, [1]), (2, [1, 2])):  # IoU 0.82 > 0.7: the weaker goes; 0.67: both stay
        tr = RovisTracker()
        step(tr, [(0, 0, 0.9, (0, 10)), (1, 1, 0.8, (10, 20))])
        res, _, _ = step(tr, [(Q + 0, 0, 0.9, (0, 10)), (Q + 1, 1, 0.8, (shift, shift + 10))])
        assert res.ids.tolist() == survivors, shift


def test_nms_0_4_against_existing_tracks_which_are_protected():
    tr = RovisTracker()
    step(tr, [(0, 0, 0.9, (0, 10))])
    # a strong new candidate overlapping a weak continued track by IoU 0.54: the new one goes, the track stays
    res, _, _ = step(tr, [(Q + 0, 0, 0.26, (0, 10)), (1, 1, 0.95, (3, 13))])
    assert res.ids.tolist() == [1]
    # overlapping by IoU 0.33 < 0.4: a new track
    res, _, _ = step(tr, [(Q + 0, 0, 0.9, (0, 10)), (1, 1, 0.95, (5, 15))])
    assert res.ids.tolist() == [1, 2]
    # two continued tracks overlapping by IoU 0.54 (< 0.7) both stay: the 0.4 NMS never suppresses them
    res, _, _ = step(tr, [(Q + 0, 0, 0.9, (0, 10)), (Q + 1, 1, 0.8, (3, 13))])
    assert res.ids.tolist() == [1, 2]


def test_nms_0_4_among_new_candidates_best_first():
    tr = RovisTracker()
    res, _, _ = step(tr, [(0, 0, 0.6, (0, 10)), (1, 1, 0.9, (3, 13)), (2, 2, 0.8, (10, 20))])
    # 0.9 first; 0.8 at (10, 20) overlaps it by 3/17 = 0.18: kept; 0.6 at (0, 10) overlaps it by 0.54: dropped
    assert res.ids.tolist() == [1, 2]
    assert res.detections.queries[res.kept].tolist() == [1, 2]


def test_one_query_with_two_classes_gives_one_track():
    out = head_out([(0, 0, 0.5, (0, 10))])
    out.class_logits[0, 0] = torch.tensor([0.45, 0.40, 1e-9, 0.15]).log()
    tr = RovisTracker()
    res = tr.update(out)
    assert res.ids.tolist() == [1] and res.labels.tolist() == [0]
    det = topk_instances(out.class_logits[0], out.mask_logits[0])
    assert det.queries[:2].tolist() == [0, 0]  # both pairs of query 0 were candidates above 0.3


def test_lost_tracks_are_fed_for_10_frames_then_dropped():
    tr = RovisTracker()
    step(tr, [(0, 0, 0.9, (0, 10))], frame=0)
    for f in range(1, 10):
        _, feats, _ = step(tr, [], frame=f)
        assert feats is not None and feats.shape[0] == 1, f
    # frame 10 is the 10th frame without it: still a query there, and it can be picked up again
    tr_revive = RovisTracker()
    step(tr_revive, [(0, 0, 0.9, (0, 10))], frame=0)
    for f in range(1, 10):
        step(tr_revive, [], frame=f)
    res, _, _ = step(tr_revive, [(Q + 0, 0, 0.9, (0, 10))], frame=10)
    assert res.ids.tolist() == [1] and tr_revive.live_ids == [1]
    # not picked up at frame 10: gone afterwards
    _, feats, _ = step(tr, [], frame=10)
    assert feats.shape[0] == 1
    assert tr.live_ids == [] and tr.track_queries() == (None, None)


def test_ids_are_new_per_track_and_reset_restarts_them():
    tr = RovisTracker()
    assert step(tr, [(0, 0, 0.9, (0, 10)), (1, 1, 0.8, (10, 20))])[0].ids.tolist() == [1, 2]
    assert step(tr, [(Q + 1, 1, 0.8, (10, 20)), (2, 2, 0.7, (0, 10))])[0].ids.tolist() == [2, 3]
    assert tr.static_query_ids == [0, 1, 2]
    tr.reset()
    assert tr.live_ids == [] and tr.frame_index == -1
    assert step(tr, [(3, 0, 0.9, (0, 10))])[0].ids.tolist() == [1]


def test_track_query_indices_must_have_been_handed_out():
    tr = RovisTracker()
    with pytest.raises(ValueError, match="track queries"):
        tr.update(head_out([(Q + 0, 0, 0.9, (0, 10))], t=1))


def test_mask_iou_and_nms_follow_the_release():
    masks = torch.zeros(3, 1, W, dtype=torch.bool)
    masks[0, 0, 0:10] = True
    masks[1, 0, 1:11] = True
    iou = mask_iou_matrix(masks)
    assert iou[0, 1].item() == pytest.approx(9 / 11)
    assert iou[2, 2].item() == pytest.approx(1.0)  # two empty masks: (0 + 1e-6) / (0 + 1e-6)
    assert iou[0, 2].item() == pytest.approx(0.0, abs=1e-6)
    assert mask_nms(masks[:2], 0.7).tolist() == [True, False]
    assert mask_nms(masks[:2], 0.7, protected=2).tolist() == [True, True]
    assert mask_nms(masks[:2], 0.85).tolist() == [True, True]
