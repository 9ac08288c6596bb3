"""core.results: compact per-frame storage and the FrameResults -> YTVIS / DAVIS conversion."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from core.data.ytvis import parse_ytvis_results
from core.results import ClipResults, CompactFrame

H, W = 24, 32


def box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def fake_result(index, tracks, *, kept=None, keep_ratio=0.5):
    """``tracks``: list of (track_id, category_id, score, mask)."""
    masks = np.stack([t[3] for t in tracks]) if tracks else np.zeros((0, H, W), bool)
    return SimpleNamespace(
        index=index, track_ids=np.array([t[0] for t in tracks], np.int64),
        category_ids=np.array([t[1] for t in tracks], np.int64),
        scores=np.array([t[2] for t in tracks], np.float32), masks=masks,
        kept=np.ones((4, 2, 2), bool) if kept is None else kept,
        stage_names=("Map-SM", "block 3", "block 6", "block 9"),
        keep_ratio=keep_ratio, gflops=1.5, ms=12.0)


def test_compact_frame_round_trips_masks_and_is_small():
    a, b = box(2, 10, 3, 20), box(12, 20, 0, 5)
    f = CompactFrame.from_result(fake_result(3, [(7, 2, 0.9, a), (8, 5, 0.4, b)]))
    assert f.index == 3 and f.num_instances == 2 and (f.height, f.width) == (H, W)
    assert np.array_equal(f.mask(0), a) and np.array_equal(f.mask(1), b)
    assert f.areas.tolist() == [a.sum(), b.sum()]
    assert f.bboxes()[0].tolist() == [3, 2, 17, 8]
    with pytest.raises(ValueError):
        f.scores[0] = 1.0  # read-only
    big = np.zeros((20, 2160, 3840), bool)
    big[:, 100:900, 200:1400] = True
    r = fake_result(0, [(i, 1, 0.5, big[i]) for i in range(20)])
    assert CompactFrame.from_result(r).nbytes < big.nbytes / 1000


def test_to_ytvis_one_entry_per_track_weighted_category_mean_score():
    clip = ClipResults(3, H, W)
    a = box(0, 5, 0, 5)
    clip.add(CompactFrame.from_result(fake_result(0, [(1, 3, 0.9, a), (2, 4, 0.5, box(6, 9, 6, 9))])))
    clip.add(CompactFrame.from_result(fake_result(1, [(1, 5, 0.3, a), (2, 4, 0.5, np.zeros((H, W), bool))])))
    clip.add(CompactFrame.from_result(fake_result(2, [(1, 5, 0.2, a)])))
    assert clip.is_complete
    out = clip.to_ytvis(video_id=9)
    assert [e["video_id"] for e in out] == [9, 9]
    t1, t2 = out
    assert t1["category_id"] == 3  # 0.9 for class 3 beats 0.3 + 0.2 for class 5
    assert t1["score"] == pytest.approx((0.9 + 0.3 + 0.2) / 3)
    assert all(s is not None for s in t1["segmentations"])
    assert t2["segmentations"][1] is None and t2["segmentations"][2] is None  # empty mask = absent
    assert t2["score"] == pytest.approx(0.5)
    parsed = parse_ytvis_results(out)  # core's validator accepts it
    assert len(parsed) == 2 and isinstance(out[0]["segmentations"][0]["counts"], str)


def test_ties_go_to_the_smaller_category_and_missing_frames_are_none():
    clip = ClipResults(4, H, W)
    clip.add(CompactFrame.from_result(fake_result(1, [(5, 8, 0.5, box(0, 3, 0, 3))])))
    clip.add(CompactFrame.from_result(fake_result(2, [(5, 6, 0.5, box(0, 3, 0, 3))])))
    assert not clip.is_complete and clip.count == 2
    (entry,) = clip.to_ytvis(1)
    assert entry["category_id"] == 6
    assert entry["segmentations"][0] is None and entry["segmentations"][3] is None


def test_series_track_scores_and_davis_labels():
    clip = ClipResults(2, H, W)
    top, low = box(0, 10, 0, 10), box(5, 15, 5, 15)
    clip.add(CompactFrame.from_result(fake_result(0, [(4, 1, 0.3, low), (9, 1, 0.8, top)], keep_ratio=0.4)))
    series = clip.series()
    assert series["keep_ratio"][0] == pytest.approx(0.4) and np.isnan(series["keep_ratio"][1])
    scores = clip.track_scores()
    assert set(scores) == {4, 9} and np.isnan(scores[4][1])
    assert list(clip.track_scores(max_tracks=1)) == [9]
    objects = clip.davis_objects()
    assert objects == [9, 4]
    labels = clip.davis_label_map(0, objects)
    assert labels.dtype == np.uint8 and labels.shape == (H, W)
    assert labels[7, 7] == 1  # overlap: the higher score (track 9 = object 1) wins
    assert labels[12, 12] == 2 and labels[20, 30] == 0
    assert not clip.davis_label_map(1, objects).any()


def test_wrong_shapes_are_refused():
    clip = ClipResults(2, H, W)
    other = SimpleNamespace(**{**vars(fake_result(0, [])), "masks": np.zeros((0, 10, 10), bool)})
    with pytest.raises(ValueError, match="10x10"):
        clip.add(CompactFrame.from_result(other))
    with pytest.raises(ValueError, match="outside"):
        clip.add(CompactFrame.from_result(fake_result(5, [])))
