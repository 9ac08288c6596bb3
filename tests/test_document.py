"""core.app.document: model passes, edits, undo (dirty state, projects and export: test_document_files.py)."""

from __future__ import annotations

import numpy as np
import pytest

from core.app.document import SHADOW_IOU, ClipInfo, Document, brush_mask
from core.data.rle import encode_mask
from core.results import ClipResults, CompactFrame

T, H, W = 6, 30, 40  # a 6-frame 40x30 clip
CATS = {1: "person", 2: "dog", 3: "cat"}


# -- helpers (also used by test_journal.py) ----------------------------------------------------------


def clip_info(frames=T, h=H, w=W, path="/clips/dojo") -> ClipInfo:
    return ClipInfo(path, frames, h, w)


def rect(y0, x0, y1, x1, h=H, w=W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def compact(index, instances, h=H, w=W) -> CompactFrame:
    """``instances``: (pass track id, category id, score, [H, W] bool mask)."""
    rles = tuple(encode_mask(m) for *_, m in instances)
    return CompactFrame(
        index=index, height=h, width=w,
        track_ids=np.asarray([i[0] for i in instances], np.int64),
        category_ids=np.asarray([i[1] for i in instances], np.int64),
        scores=np.asarray([i[2] for i in instances], np.float32),
        rles=rles, areas=np.asarray([int(m.sum()) for *_, m in instances], np.int64),
        kept=np.zeros((0, 1, 1), bool), stage_names=(), keep_ratio=0.5, gflops=1.0, ms=2.0)


def random_pass(seed=0, n_objects=3, frames=T, h=H, w=W, *, pid0=10):
    """Per-frame random rectangles, one column band per object (no two objects overlap).

    Returns ({pass id: {frame: mask}}, {pass id: category}, [CompactFrame per frame]).
    """
    rng = np.random.default_rng(seed)
    band = w // n_objects
    masks: dict[int, dict[int, np.ndarray]] = {}
    cats = {}
    out = []
    for f in range(frames):
        inst = []
        for k in range(n_objects):
            pid = pid0 + k
            cats[pid] = 1 + k % 3
            y0 = int(rng.integers(0, h // 2))
            y1 = int(rng.integers(y0 + 2, h + 1))
            x0 = k * band + int(rng.integers(0, band // 2))
            x1 = int(rng.integers(x0 + 2, (k + 1) * band + 1))
            m = rect(y0, x0, y1, x1, h, w)
            masks.setdefault(pid, {})[f] = m
            inst.append((pid, cats[pid], 0.5 + 0.1 * k, m))
        out.append(compact(f, inst, h, w))
    return masks, cats, out


def run_pass(doc: Document, frames, run=None) -> None:
    doc.begin_pass(ClipResults(doc.clip.num_frames, doc.clip.height, doc.clip.width), run)
    for f in frames:
        doc.add_model_frame(f)


def model_doc(seed=0, n_objects=3):
    """A document after one full model pass; returns (doc, {pass id: doc track id}, pass masks)."""
    doc = Document(clip_info(), categories=CATS)
    masks, _, frames = random_pass(seed, n_objects)
    run_pass(doc, frames)
    ids = {}
    for tid, t in doc.tracks.items():
        for pid, per_frame in masks.items():
            if all(np.array_equal(t.frames[f].decode(), m) for f, m in per_frame.items()):
                ids[pid] = tid
    assert len(ids) == n_objects
    return doc, ids, masks


def snapshot(doc: Document) -> dict:
    """Everything about the tracks, bit for bit (RLE counts are a unique encoding of a mask)."""
    return {t.id: (t.category_id, t.origin, t.review, t.edited, t.note,
                   {i: (f.rle["counts"], tuple(f.rle["size"]), f.score, f.area) for i, f in t.frames.items()})
            for t in doc.tracks.values()}


def masks_of(doc: Document, track_id: int) -> dict[int, np.ndarray]:
    return {i: f.decode() for i, f in doc.track(track_id).frames.items()}


# -- model passes ---------------------------------------------------------------------------------------


def test_a_pass_builds_one_track_per_object_with_the_pass_masks():
    doc = Document(clip_info(), categories=CATS)
    masks, cats, frames = random_pass(1)
    events = []
    doc.subscribe(events.append)
    run_pass(doc, frames, run={"model": "m.safetensors", "pkr": 0.4})
    assert doc.results is not None and doc.results.is_complete
    assert len(doc.tracks) == 3
    assert {e.kind for e in events} >= {"results", "tracks"}
    seen = set()
    for t in doc.tracks.values():
        pid = next(p for p, per in masks.items() if np.array_equal(t.frames[0].decode(), per[0]))
        seen.add(pid)
        assert sorted(t.frames) == list(range(T))
        for f, m in masks[pid].items():
            assert np.array_equal(doc.mask(t.id, f), m)
            assert t.frames[f].area == m.sum()
        assert t.origin == "model" and t.review == "unreviewed" and not t.edited and not t.protected
        assert t.category_id == cats[pid]
        assert t.score == pytest.approx(0.5 + 0.1 * (pid - 10), abs=1e-6)
        assert "m.safetensors" in t.note
    assert seen == set(masks)
    # begin_pass with results already filled adds them at once (the same tracks; only the note differs)
    doc2 = Document(clip_info(), categories=CATS)
    full = ClipResults(T, H, W)
    for f in frames:
        full.add(f)
    doc2.begin_pass(full)

    def strip(s):
        return {k: v[:4] + v[5:] for k, v in s.items()}

    assert strip(snapshot(doc2)) == strip(snapshot(doc))


def test_pass_category_is_the_score_weighted_vote_and_empty_instances_are_absent():
    doc = Document(clip_info(), categories=CATS)
    m = rect(2, 2, 10, 10)
    frames = [compact(0, [(7, 1, 0.9, m)]), compact(1, [(7, 2, 0.5, m)]), compact(2, [(7, 2, 0.5, m)]),
              compact(3, [(7, 2, 0.3, np.zeros((H, W), bool))])]
    doc.begin_pass(ClipResults(T, H, W))
    doc.add_model_frame(frames[0])
    (tid,) = doc.tracks
    assert doc.track(tid).category_id == 1
    doc.add_model_frame(frames[1])
    assert doc.track(tid).category_id == 1  # 0.9 vs 0.5
    doc.add_model_frame(frames[2])
    assert doc.track(tid).category_id == 2  # 0.9 vs 1.0
    doc.add_model_frame(frames[3])
    assert sorted(doc.track(tid).frames) == [0, 1, 2]


def test_begin_pass_refuses_results_of_another_shape():
    doc = Document(clip_info())
    with pytest.raises(ValueError, match="do not fit"):
        doc.begin_pass(ClipResults(T, H + 1, W))
    with pytest.raises(RuntimeError):
        doc.add_model_frame(compact(0, []))


def test_a_second_pass_replaces_only_unreviewed_model_tracks():
    doc, ids, masks = model_doc(seed=2, n_objects=6)
    t_acc, t_rej, t_paint, t_relabel, t_keep1, t_keep2 = (ids[p] for p in sorted(ids))
    doc.accept([t_acc])
    doc.reject([t_rej])
    doc.paint(t_paint, 3, rect(0, 0, 2, 2))
    doc.relabel([t_relabel], 3)
    user = doc.create_track(2, rect(20, 30, 28, 38), 2)
    (imported,) = doc.add_tracks([(1, 0.7, {1: encode_mask(rect(25, 0, 29, 5))})])
    protected = {tid: v for tid, v in snapshot(doc).items() if doc.track(tid).protected}
    assert set(protected) == {t_acc, t_rej, t_paint, t_relabel, user, imported}
    doc.set_hidden([t_keep1, t_acc])
    doc.set_solo(t_keep2)

    # the new pass: 100 exactly on the accepted track; 101 on half (rounded up) of the rejected track's
    # frame 0 (IoU >= 0.5); 102 just under the threshold on the user's track; 104 in empty space
    rej0 = doc.mask(t_rej, 0)
    on_rej = np.flatnonzero(rej0.ravel())
    rej_half = np.zeros((H, W), bool)
    rej_half.ravel()[on_rej[: (on_rej.size + 1) // 2]] = True
    assert rej_half.sum() / rej0.sum() >= SHADOW_IOU
    user_mask = rect(20, 30, 28, 38)  # 64 px
    under = np.zeros((H, W), bool)
    under.ravel()[np.flatnonzero(user_mask.ravel())[:31]] = True  # IoU 31/64 < 0.5
    free = rect(0, 36, 5, 40)  # 6 bands of 6 px: columns 36.. hold no object
    frames = []
    for f in range(T):
        inst = [(100, 1, 0.9, masks[min(ids)][f]), (104, 1, 0.4, free)]
        if f == 0:
            inst.append((101, 1, 0.8, rej_half))
        if f == 2:
            inst.append((102, 2, 0.7, under))
        frames.append(compact(f, inst))
    doc.begin_pass(ClipResults(T, H, W))
    for fr in frames:
        doc.add_model_frame(fr)

    after = snapshot(doc)
    for tid, v in protected.items():
        assert after[tid] == v  # bit for bit
    assert t_keep1 not in doc.tracks and t_keep2 not in doc.tracks
    assert doc.hidden == {t_acc} and doc.solo is None  # view state of removed tracks goes with them
    new = [t for t in doc.tracks.values() if not t.protected]
    # 100 is the accepted object again and 101 overlaps the rejected one: neither is added
    got = sorted((sorted(t.frames), t.category_id) for t in new)
    assert got == sorted([([2], 2), (list(range(T)), 1)])  # 102 on frame 2 only, 104 everywhere
    for t in new:
        if len(t.frames) == T:
            assert all(np.array_equal(t.frames[f].decode(), free) for f in range(T))
        if sorted(t.frames) == [2]:
            assert np.array_equal(t.frames[2].decode(), under)


def test_shadow_threshold_is_inclusive():
    doc = Document(clip_info(), categories=CATS)
    mine = rect(0, 0, 10, 10)  # 100 px
    tid = doc.create_track(0, mine, 1)
    half = rect(0, 0, 5, 10)  # IoU 50 / 100 = 0.5 exactly
    less = rect(0, 0, 4, 10) | rect(4, 0, 5, 9)  # IoU 49 / 100
    assert SHADOW_IOU == 0.5
    run_pass(doc, [compact(0, [(1, 1, 0.9, half)]), compact(1, [(1, 1, 0.9, half)])])
    model = [t for t in doc.tracks.values() if t.id != tid]
    assert [sorted(t.frames) for t in model] == [[1]]  # frame 0 shadowed, frame 1 (no person track there) added
    run_pass(doc, [compact(0, [(1, 1, 0.9, less)])])
    model = [t for t in doc.tracks.values() if t.id != tid]
    assert [sorted(t.frames) for t in model] == [[0]]
    assert np.array_equal(model[0].frames[0].decode(), less)


@pytest.mark.parametrize("touch", ["accept", "reject", "paint", "relabel", "delete_frames"])
def test_a_track_touched_mid_pass_is_frozen(touch):
    doc = Document(clip_info(), categories=CATS)
    masks, _, frames = random_pass(3, n_objects=2)
    doc.begin_pass(ClipResults(T, H, W))
    for fr in frames[:3]:
        doc.add_model_frame(fr)
    target = next(t.id for t in doc.tracks.values()
                  if np.array_equal(t.frames[0].decode(), masks[10][0]))
    other = next(t for t in doc.tracks if t != target)
    {"accept": lambda: doc.accept([target]), "reject": lambda: doc.reject([target]),
     "paint": lambda: doc.paint(target, 1, rect(0, 0, 1, 1)), "relabel": lambda: doc.relabel([target], 3),
     "delete_frames": lambda: doc.delete_frames(target, [2])}[touch]()
    frozen = snapshot(doc)[target]
    for fr in frames[3:]:
        doc.add_model_frame(fr)
    assert snapshot(doc)[target] == frozen
    assert max(doc.track(target).frames) <= 2
    successor = [t for t in doc.tracks.values() if t.id not in (target, other)]
    assert len(successor) == 1
    s = successor[0]
    assert sorted(s.frames) == [3, 4, 5] and s.review == "unreviewed" and s.origin == "model" and not s.edited
    for f in (3, 4, 5):
        assert np.array_equal(s.frames[f].decode(), masks[10][f])
    assert sorted(doc.track(other).frames) == list(range(T))  # the untouched one keeps growing


# -- edits ------------------------------------------------------------------------------------------------


def test_relabel():
    doc, _, _ = model_doc()
    a, b, c = sorted(doc.tracks)
    cmd = doc.relabel([a, b], 3)
    assert cmd is not None and {ch.track_id for ch in cmd.changes} == {a, b}
    assert doc.track(a).category_id == 3 and doc.track(b).category_id == 3 and doc.track(a).edited
    assert doc.rows()[0].category == "cat"
    assert doc.relabel([a], 3) is None  # nothing to change: not an undo step
    assert len(doc.history) == 1
    with pytest.raises(ValueError, match="unknown category 9"):
        doc.relabel([c], 9)
    with pytest.raises(KeyError):
        doc.relabel([999], 1)


def test_accept_reject_set_review():
    doc, _, _ = model_doc()
    a, b, c = sorted(doc.tracks)
    doc.accept([a, b])
    assert doc.track(a).review == doc.track(b).review == "accepted" and not doc.track(a).edited
    assert doc.track(a).protected
    doc.reject([b])
    assert doc.track(b).review == "rejected"
    assert doc.accept([a]) is None
    doc.set_review([b], "unreviewed")
    assert doc.track(b).review == "unreviewed" and not doc.track(b).protected
    with pytest.raises(ValueError, match="unknown review state"):
        doc.set_review([c], "maybe")


def test_delete_delete_from_delete_frames():
    doc, _, _ = model_doc()
    a, b, c = sorted(doc.tracks)
    doc.select([a, b])
    doc.delete([a])
    assert a not in doc.tracks and doc.selected == (b,)
    doc.delete_from(b, 4)
    assert sorted(doc.track(b).frames) == [0, 1, 2, 3] and doc.track(b).edited
    assert doc.delete_from(b, 5) is None
    doc.delete_from(b, 0)  # nothing left before frame 0: the whole track goes
    assert b not in doc.tracks
    doc.delete_frames(c, [1, 3])
    assert sorted(doc.track(c).frames) == [0, 2, 4, 5]
    assert doc.delete_frames(c, [1]) is None
    with pytest.raises(ValueError, match="outside the clip"):
        doc.delete_frames(c, [T])


def test_merge_takes_the_union_where_both_have_masks():
    doc = Document(clip_info(), categories=CATS)
    ma = {f: rect(0, f, 10, 10 + f) for f in range(4)}
    mb = {f: rect(5, 20, 15, 30 - f) for f in range(2, 6)}
    a, b = doc.add_tracks([(1, 0.6, {f: encode_mask(m) for f, m in ma.items()}),
                           (2, 0.8, {f: encode_mask(m) for f, m in mb.items()})])
    c = doc.create_track(5, rect(25, 35, 29, 39), 3)
    doc.accept([a])
    doc.merge([a, b, c])
    assert set(doc.tracks) == {a}
    t = doc.track(a)
    assert sorted(t.frames) == list(range(T))
    assert t.category_id == 1 and t.review == "accepted" and t.edited
    for f in range(T):
        expected = ma.get(f, np.zeros((H, W), bool)) | mb.get(f, np.zeros((H, W), bool))
        if f == 5:
            expected = expected | rect(25, 35, 29, 39)
        assert np.array_equal(doc.mask(a, f), expected), f
        assert t.frames[f].area == expected.sum()
    assert t.frames[2].score == pytest.approx(0.8)
    with pytest.raises(ValueError, match="at least two"):
        doc.merge([a])
    with pytest.raises(ValueError, match="at least two"):
        doc.merge([a, a])


def test_split_moves_frames_to_a_new_track():
    doc, _, _ = model_doc()
    a = min(doc.tracks)
    before = masks_of(doc, a)
    doc.accept([a])
    new = doc.split(a, 2)
    assert new == max(doc.tracks) and new not in (a,)
    assert sorted(doc.track(a).frames) == [0, 1] and sorted(doc.track(new).frames) == [2, 3, 4, 5]
    assert doc.track(new).category_id == doc.track(a).category_id
    assert doc.track(new).review == "accepted" and doc.track(new).edited and doc.track(a).edited
    for f, m in before.items():
        assert np.array_equal(doc.mask(a if f < 2 else new, f), m)
    with pytest.raises(ValueError, match="only after"):
        doc.split(a, 0)
    with pytest.raises(ValueError, match="only before"):
        doc.split(a, 5)
    with pytest.raises(ValueError, match="outside the clip"):
        doc.split(new, T)


def test_paint_and_erase_are_pixel_exact():
    rng = np.random.default_rng(4)
    doc, _, _ = model_doc()
    a = min(doc.tracks)
    current = doc.mask(a, 1)
    for k in range(20):
        pts = [(float(x), float(y)) for x, y in zip(rng.uniform(-5, W + 5, 3), rng.uniform(-5, H + 5, 3))]
        stroke = brush_mask(pts, float(rng.uniform(0.5, 4)), H, W)
        erase = bool(k % 3 == 2)
        doc.paint(a, 1, stroke, erase=erase)
        current = current & ~stroke if erase else current | stroke
        assert np.array_equal(doc.mask(a, 1), current)
        if current.any():
            assert doc.track(a).frames[1].area == current.sum()
        else:
            assert 1 not in doc.track(a).frames
    # painting onto a frame the track lacks adds it; erasing there changes nothing
    doc.delete_frames(a, [4])
    assert doc.paint(a, 4, rect(0, 0, 3, 3), erase=True) is None
    doc.paint(a, 4, rect(0, 0, 3, 3))
    assert np.array_equal(doc.mask(a, 4), rect(0, 0, 3, 3))
    # 0/1 numbers are accepted as masks
    doc.paint(a, 4, rect(5, 5, 6, 6).astype(np.uint8))
    assert np.array_equal(doc.mask(a, 4), rect(0, 0, 3, 3) | rect(5, 5, 6, 6))


def test_set_mask_and_empty_mask_removes_the_frame():
    doc, _, _ = model_doc()
    a = min(doc.tracks)
    m = np.random.default_rng(5).random((H, W)) < 0.4
    doc.set_mask(a, 2, m)
    assert np.array_equal(doc.mask(a, 2), m) and doc.track(a).edited
    assert doc.set_mask(a, 2, m) is None
    doc.set_mask(a, 2, np.zeros((H, W), bool))
    assert 2 not in doc.track(a).frames


def test_fill_holes_all_or_the_one_under_a_point():
    doc = Document(clip_info(), categories=CATS)
    ring = rect(2, 2, 20, 30)
    ring[5:8, 5:8] = False  # hole 1
    ring[10:15, 20:25] = False  # hole 2
    ring[0:3, 10:12] = False  # a bay open to the border: not a hole
    tid = doc.create_track(0, ring, 1)
    doc.fill_holes(tid, 0, point=(6, 6))  # (x, y) inside hole 1
    expected = ring.copy()
    expected[5:8, 5:8] = True
    assert np.array_equal(doc.mask(tid, 0), expected)
    assert doc.fill_holes(tid, 0, point=(0, 0)) is None  # outside any hole
    assert doc.fill_holes(tid, 0, point=(4, 4)) is None  # on the mask
    doc.fill_holes(tid, 0)
    expected[10:15, 20:25] = True
    assert np.array_equal(doc.mask(tid, 0), expected)
    assert not doc.mask(tid, 0)[2, 10]  # the bay stays open
    assert doc.fill_holes(tid, 0) is None


def test_create_track():
    doc = Document(clip_info(), categories=CATS)
    m = rect(3, 4, 9, 12)
    tid = doc.create_track(3, m, 2)
    t = doc.track(tid)
    assert t.origin == "user" and t.protected and sorted(t.frames) == [3] and t.category_id == 2
    assert np.array_equal(doc.mask(tid, 3), m) and t.frames[3].area == m.sum()
    assert doc.create_track(0, m, 2) == tid + 1
    with pytest.raises(ValueError, match="empty"):
        doc.create_track(0, np.zeros((H, W), bool), 1)
    with pytest.raises(ValueError, match="outside the clip"):
        doc.create_track(T, m, 1)


@pytest.mark.parametrize("tool", ["paint", "erase", "set_mask", "create_track"])
def test_masks_of_the_wrong_shape_are_refused_naming_the_shape(tool):
    doc, _, _ = model_doc()
    a = min(doc.tracks)
    bad = np.ones((W, H), bool)
    before = snapshot(doc)
    call = {"paint": lambda: doc.paint(a, 0, bad), "erase": lambda: doc.paint(a, 0, bad, erase=True),
            "set_mask": lambda: doc.set_mask(a, 0, bad), "create_track": lambda: doc.create_track(0, bad, 1)}[tool]
    with pytest.raises(ValueError, match=r"\(40, 30\).*30x40"):
        call()
    assert snapshot(doc) == before and len(doc.history) == 0


def test_import_tracks_of_another_size_are_refused():
    doc = Document(clip_info())
    with pytest.raises(ValueError, match="size"):
        doc.add_tracks([(1, 1.0, {0: encode_mask(np.ones((H + 1, W), bool))})])
    assert not doc.tracks and len(doc.history) == 0


# -- undo / redo ----------------------------------------------------------------------------------------


def _edits(doc):
    a, b, c = sorted(doc.tracks)
    return {
        "relabel": lambda: doc.relabel([a, b], 3),
        "accept": lambda: doc.accept([a]),
        "reject": lambda: doc.reject([b, c]),
        "delete": lambda: doc.delete([a, c]),
        "delete_from": lambda: doc.delete_from(b, 3),
        "delete_frames": lambda: doc.delete_frames(c, [0, 5]),
        "merge": lambda: doc.merge([a, b]),
        "split": lambda: doc.split(c, 3),
        "paint": lambda: doc.paint(a, 2, rect(0, 0, 30, 3)),
        "erase": lambda: doc.paint(a, 2, rect(0, 0, 30, 40), erase=True),
        "set_mask": lambda: doc.set_mask(b, 1, rect(1, 1, 4, 4)),
        "fill_holes": lambda: (doc.set_mask(a, 0, rect(0, 0, 9, 9) & ~rect(3, 3, 5, 5)), doc.fill_holes(a, 0)),
        "create_track": lambda: doc.create_track(4, rect(20, 20, 25, 25), 1),
        "import": lambda: doc.add_tracks([(2, 0.5, {1: encode_mask(rect(0, 0, 2, 2))})]),
    }


@pytest.mark.parametrize("edit", ["relabel", "accept", "reject", "delete", "delete_from", "delete_frames", "merge",
                                  "split", "paint", "erase", "set_mask", "fill_holes", "create_track",
                                  "import"])
def test_undo_restores_exactly_and_redo_reapplies(edit):
    doc, _, _ = model_doc()
    start = snapshot(doc)
    start_masks = {tid: masks_of(doc, tid) for tid in doc.tracks}
    steps = 2 if edit == "fill_holes" else 1
    _edits(doc)[edit]()
    done = snapshot(doc)
    assert done != start
    assert len(doc.history) == steps
    for _ in range(steps):
        assert doc.undo() is not None
    assert snapshot(doc) == start
    assert set(doc.tracks) == set(start_masks)
    for tid, per in start_masks.items():
        assert set(doc.track(tid).frames) == set(per)
        for f, m in per.items():
            assert np.array_equal(doc.mask(tid, f), m)
    assert doc.undo() is None
    for _ in range(steps):
        assert doc.redo() is not None
    assert snapshot(doc) == done
    assert doc.redo() is None


def test_a_new_edit_clears_redo():
    doc, _, _ = model_doc()
    a = min(doc.tracks)
    doc.paint(a, 0, rect(0, 0, 2, 2))
    doc.paint(a, 0, rect(5, 5, 7, 7))
    doc.undo()
    assert doc.history.can_redo and doc.history.redo_label == "Brush"
    doc.accept([a])
    assert not doc.history.can_redo and doc.redo() is None
    assert doc.history.undo_label == "Accept"
    assert not doc.mask(a, 0)[5, 5]


def _changing_stroke(doc, tid, rng, erase):
    """A stroke that changes the track's mask (brush: adds a pixel; eraser: removes one)."""
    while True:
        f = int(rng.integers(0, T))
        x, y = rng.uniform(0, W, 2)
        stroke = brush_mask([(x, y), (x + 3, y + 1)], 1.5, H, W)
        current = doc.mask(tid, f)
        if (current & stroke).any() if erase else (stroke & ~current).any():
            return f, stroke


def test_150_brush_strokes_undo_all_back_to_the_start():
    rng = np.random.default_rng(6)
    doc, _, _ = model_doc()
    a = min(doc.tracks)
    start = snapshot(doc)
    start_masks = masks_of(doc, a)
    for k in range(150):
        erase = k % 4 == 3
        f, stroke = _changing_stroke(doc, a, rng, erase)
        assert doc.paint(a, f, stroke, erase=erase) is not None
    end = snapshot(doc)
    assert len(doc.history) == 150
    for _ in range(150):
        assert doc.undo() is not None
    assert doc.undo() is None
    assert snapshot(doc) == start
    assert all(np.array_equal(doc.mask(a, f), m) for f, m in start_masks.items())
    for _ in range(150):
        doc.redo()
    assert snapshot(doc) == end


def test_undo_limit_drops_the_oldest():
    doc = Document(clip_info(), categories=CATS, undo_limit=3)
    tid = doc.create_track(0, rect(0, 0, 2, 2), 1)
    for k in range(5):
        doc.paint(tid, 0, rect(5, k, 6, k + 1))
    assert len(doc.history) == 3
    for _ in range(3):
        doc.undo()
    assert doc.undo() is None
    assert np.array_equal(doc.mask(tid, 0), rect(0, 0, 2, 2) | rect(5, 0, 6, 2))


def test_undo_across_a_re_inference():
    doc, ids, masks = model_doc(seed=7)
    a = ids[10]
    before_edit = doc.track(a)
    before_snapshot = snapshot(doc)[a]
    doc.paint(a, 0, rect(0, 0, 30, 2))
    edited = snapshot(doc)[a]
    # the model runs again: same objects, slightly moved
    _, _, frames = random_pass(8)
    run_pass(doc, frames)
    assert snapshot(doc)[a] == edited
    others = {tid for tid in doc.tracks if tid != a}
    assert others and all(not doc.track(t).protected for t in others)
    doc.undo()
    assert snapshot(doc)[a] == before_snapshot
    assert doc.track(a) == before_edit
    for f, m in masks[10].items():
        assert np.array_equal(doc.mask(a, f), m)
    assert {tid for tid in doc.tracks if tid != a} == others  # the new pass's tracks stay
    doc.redo()
    assert snapshot(doc)[a] == edited


def test_undo_of_an_edit_made_mid_pass_restores_the_frozen_track():
    doc = Document(clip_info(), categories=CATS)
    _, _, frames = random_pass(9, n_objects=1)
    doc.begin_pass(ClipResults(T, H, W))
    for fr in frames[:3]:
        doc.add_model_frame(fr)
    (tid,) = doc.tracks
    before = snapshot(doc)[tid]
    doc.paint(tid, 0, rect(0, 0, 1, 1))
    for fr in frames[3:]:
        doc.add_model_frame(fr)
    doc.undo()
    assert snapshot(doc)[tid] == before  # the pass did not write into the undone-to state
    assert sorted(doc.track(tid).frames) == [0, 1, 2]
