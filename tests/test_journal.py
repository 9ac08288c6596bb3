"""core.app.document journal: every edit on disk before it returns; recovery after a crash (kill -9 included)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_document import CATS, H, T, W, clip_info, masks_of, model_doc, random_pass, rect, run_pass, snapshot

from core.app.document import Document, find_recoverable, journal_path_for
from core.app.document.journal import journal_in_use, read_journal
from core.data.rle import encode_mask
from core.data.ytvis import parse_ytvis_results
from core.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _state(doc: Document) -> tuple:
    return snapshot(doc), dict(doc.categories), doc.settings, doc._next_id


def _history(doc: Document) -> tuple[list, list]:
    """The undo history by value: the states undo reaches (newest first) and those redo reaches."""
    back, forward = [], []
    while doc.undo() is not None:
        back.append(snapshot(doc))
    for _ in back:
        doc.redo()
    while doc.redo() is not None:
        forward.append(snapshot(doc))
    for _ in forward:
        doc.undo()
    return back, forward


def _edit_session(doc: Document) -> None:
    """A mix of every kind of journalled change, undo and redo included."""
    ids = sorted(doc.tracks)
    a, b = ids[0], ids[1]
    doc.paint(a, 1, rect(0, 0, 5, 5))
    doc.paint(a, 1, rect(2, 2, 4, 4), erase=True)
    doc.set_categories({4: "bird"})
    doc.relabel([b], 4)
    u = doc.create_track(2, rect(20, 20, 26, 30), 2)
    doc.merge([a, u])
    doc.undo()
    doc.redo()
    new = doc.split(a, 3)
    doc.accept([new])
    doc.reject([b])
    doc.set_settings(doc.settings.replace(pkr=0.3))
    doc.delete_frames(a, [0])
    doc.fill_holes(a, 1)
    doc.undo()
    doc.undo()
    doc.add_tracks([(1, 0.4, {4: encode_mask(rect(10, 10, 14, 14))})])


def _unsaved_doc():
    doc = Document(clip_info(), categories=CATS)
    doc.add_tracks([(1, 0.9, {f: encode_mask(rect(1, 1 + f, 10, 12 + f)) for f in range(T)}),
                    (2, 0.6, {f: encode_mask(rect(15, 20, 25, 30 - f)) for f in range(1, T)})])
    return doc


# -- recovery ---------------------------------------------------------------------------------------------


def test_recover_an_unsaved_document_with_its_undo_history(tmp_path):
    doc = _unsaved_doc()
    path = doc.start_journal(tmp_path)
    assert path.parent == tmp_path / "journals" and path == doc.journal_path
    _edit_session(doc)
    live, history = _state(doc), _history(doc)
    doc.stop_journal(delete=False)
    rec = Document.recover(path, clip=clip_info())
    assert _state(rec) == live
    assert rec.path is None and rec.dirty
    assert _history(rec) == history
    assert len(rec.history) == len(doc.history) and rec.history.can_redo == doc.history.can_redo
    # undo after recovery restores masks exactly, and redo re-applies
    for d in (doc, rec):
        d.undo()
        d.undo()
    assert snapshot(rec) == snapshot(doc)
    rec.redo()
    doc.redo()
    assert snapshot(rec) == snapshot(doc)
    a = min(doc.tracks)
    for f, m in masks_of(doc, a).items():
        assert np.array_equal(rec.mask(a, f), m)


def test_recover_edits_of_model_tracks_of_an_unsaved_document(tmp_path):
    """The journal of a document never saved holds a person's tracks; the model's untouched ones are not in it."""
    doc, ids, masks = model_doc()
    a, b, c = (ids[p] for p in sorted(ids))
    doc.accept([a])  # protected before the journal starts: in its header
    path = doc.start_journal(tmp_path)
    doc.paint(b, 0, rect(0, 0, 2, 2))
    rec = Document.recover(path)
    assert set(rec.tracks) == {a, b}
    assert snapshot(rec)[a] == snapshot(doc)[a] and snapshot(rec)[b] == snapshot(doc)[b]
    rec.undo()
    assert not rec.track(b).protected
    for f, m in masks[sorted(ids)[1]].items():
        assert np.array_equal(rec.mask(b, f), m)
    assert c not in rec.tracks
    assert rec.create_track(0, rect(0, 0, 1, 1), 1) == doc.create_track(0, rect(0, 0, 1, 1), 1)


def test_recover_with_a_saved_project_as_base(tmp_path):
    doc, _, _ = model_doc(seed=3)
    doc.accept([min(doc.tracks)])
    project = doc.save(tmp_path / "p.vppproj")
    path = doc.start_journal()
    assert path == journal_path_for(project) and path.name == ".p.vppproj.journal"
    header = read_journal(path).header
    assert header["base"] == str(project) and header["tracks"] == []
    _edit_session(doc)
    m = sorted(doc.tracks)[-1]
    doc.paint(m, 5, rect(0, 30, 3, 33))
    live, history = _state(doc), _history(doc)
    doc.stop_journal(delete=False)
    rec = Document.recover(path, clip=clip_info())
    assert _state(rec) == live  # the project's model tracks included
    assert rec.path == project and rec.dirty
    assert _history(rec) == history
    # a new model pass after the journal started: a person's tracks are recovered
    doc.resume_journal(path)
    _, _, frames = random_pass(5)
    run_pass(doc, frames)
    t = min(t for t in doc.tracks if not doc.track(t).protected)
    doc.relabel([t], 3)
    doc.stop_journal(delete=False)
    rec = Document.recover(path)
    people = {k: v for k, v in snapshot(doc).items() if doc.track(k).protected}
    assert {k: v for k, v in snapshot(rec).items() if rec.track(k).protected} == people
    assert all(not rec.track(k).protected for k in set(rec.tracks) - set(people))


def test_saving_restarts_the_journal_beside_the_project(tmp_path):
    doc = _unsaved_doc()
    first = doc.start_journal(tmp_path)
    doc.accept([1])
    project = doc.save(tmp_path / "p.vppproj")
    assert not first.exists()  # the edits are in the project now
    assert doc.journal_path == journal_path_for(project) and read_journal(doc.journal_path).edits == 0
    doc.reject([2])
    doc.stop_journal(delete=False)
    rec = Document.recover(journal_path_for(project))
    assert snapshot(rec) == snapshot(doc)
    rec.undo()
    assert rec.track(2).review == "unreviewed" and rec.undo() is None  # history starts at the save


def test_resume_journal_keeps_recording_after_a_recovery(tmp_path):
    for saved in (False, True):
        folder = tmp_path / str(saved)
        folder.mkdir()
        doc = _unsaved_doc()
        if saved:
            doc.save(folder / "p.vppproj")
        path = doc.start_journal(folder)
        doc.paint(1, 0, rect(20, 0, 25, 5))
        doc.relabel([2], 3)
        doc.stop_journal(delete=False)  # crash
        rec = Document.recover(path)
        rec.resume_journal(path)
        rec.undo()
        rec.create_track(3, rect(0, 30, 4, 34), 1)
        rec.stop_journal(delete=False)  # crash again
        again = Document.recover(path)
        assert _state(again) == _state(rec)
        assert _history(again) == _history(rec)
        assert len(again.history) == 2 and again.history.can_redo is False


def test_undo_and_redo_of_edits_made_before_the_journal_started(tmp_path):
    """Saving restarts the journal but keeps the undo history: undoing past the save must recover too."""
    doc = _unsaved_doc()
    doc.paint(1, 0, rect(20, 0, 25, 5))  # A
    doc.relabel([2], 3)  # B
    doc.accept([1])  # C, undone before the save: redone after it
    doc.undo()
    doc.save(tmp_path / "p.vppproj")
    path = doc.start_journal()
    doc.redo()  # C
    doc.undo()  # C
    doc.undo()  # B
    doc.undo()  # A
    doc.redo()  # A
    doc.reject([2])  # D (B and C can no longer be redone)
    doc.undo()
    live, history = _state(doc), _history(doc)
    doc.stop_journal(delete=False)
    rec = Document.recover(path)
    assert _state(rec) == live
    assert _history(rec) == history
    # an unsaved document whose journal starts after some edits
    doc = _unsaved_doc()
    doc.paint(1, 0, rect(20, 0, 25, 5))
    path = doc.start_journal(tmp_path)
    doc.undo()
    doc.undo()  # the import itself
    doc.redo()
    assert len(doc.tracks) == 2
    live = _state(doc)
    doc.stop_journal(delete=False)
    rec = Document.recover(path)
    assert _state(rec) == live and _history(rec) == _history(doc)


def test_start_journal_on_a_saved_project_with_unsaved_edits(tmp_path):
    """A journal started on edits the project file does not hold (e.g. after a recovery) replays onto them."""
    doc, _, _ = model_doc(seed=4)
    a, b, c = sorted(doc.tracks)
    project = doc.save(tmp_path / "p.vppproj")
    doc.paint(a, 0, rect(0, 0, 4, 4))
    doc.set_categories({4: "bird"})
    doc.relabel([b], 4)
    path = doc.start_journal()  # dirty: the file lacks the two edits above
    doc.paint(a, 0, rect(5, 0, 7, 2))
    doc.relabel([c], 4)
    doc.stop_journal(delete=False)
    rec = Document.recover(path)
    assert _state(rec) == _state(doc) and rec.path == project
    # the documented way on after a recovery: start_journal (or resume_journal) and go on editing
    rec.start_journal()
    rec.delete([b])
    rec.undo()
    rec.undo()  # a command from before this journal: the undo record carries it
    rec.stop_journal(delete=False)
    again = Document.recover(path)
    assert _state(again) == _state(rec)
    assert rec.track(c).category_id != 4 and rec.track(b).category_id == 4  # both undos applied


def test_a_torn_last_line_is_dropped_and_every_complete_record_recovers(tmp_path):
    doc = _unsaved_doc()
    path = doc.start_journal(tmp_path)
    _edit_session(doc)
    before_last = _state(doc)
    doc.paint(1, 4, rect(0, 0, 30, 40))
    doc.stop_journal(delete=False)
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    last = raw[:-1].rfind(b"\n") + 1
    for cut in (len(raw) - 1, last + 20, last + 1):
        path.write_bytes(raw[:cut])
        contents = read_journal(path)
        assert contents.torn_tail
        rec = Document.recover(path)
        assert _state(rec) == before_last


@pytest.mark.parametrize("where", ["middle", "last_complete", "header"])
def test_a_flipped_byte_refuses_the_whole_journal(tmp_path, where):
    doc = _unsaved_doc()
    project = doc.save(tmp_path / "p.vppproj")
    project_bytes = project.read_bytes()
    path = doc.start_journal()
    _edit_session(doc)
    doc.stop_journal(delete=False)
    raw = bytearray(path.read_bytes())
    lines = bytes(raw).split(b"\n")
    number = {"middle": len(lines) // 2, "last_complete": len(lines) - 2, "header": 0}[where]
    offset = sum(len(x) + 1 for x in lines[:number]) + len(lines[number]) // 2
    raw[offset] ^= 0x04
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"\.p\.vppproj\.journal: line {number + 1} is damaged"):
        Document.recover(path)
    assert project.read_bytes() == project_bytes  # nothing applied anywhere
    [cand] = find_recoverable(projects=[project])
    assert cand.problem is not None and cand.edits == 0


def test_journals_of_another_clip_or_project_version_are_refused(tmp_path):
    doc = _unsaved_doc()
    path = doc.start_journal(tmp_path)
    doc.accept([1])
    doc.stop_journal(delete=False)
    for other in (clip_info(frames=T + 1), clip_info(h=H + 2), clip_info(w=W - 1)):
        with pytest.raises(DataError, match="not for the open clip"):
            Document.recover(path, clip=other)
    assert Document.recover(path, clip=clip_info(path="/elsewhere/dojo")).track(1).review == "accepted"

    project = doc.save(tmp_path / "p.vppproj")
    jpath = doc.start_journal()
    doc.reject([2])
    doc.stop_journal(delete=False)
    other = Document.load(project)
    other.delete([1])
    other.save()  # the project changes after the journal started
    with pytest.raises(DataError, match="changed after this journal started"):
        Document.recover(jpath)
    project.unlink()
    with pytest.raises(DataError, match="no longer exists"):
        Document.recover(jpath)


@pytest.mark.parametrize("damage", ["empty", "not_journal", "newer", "unknown_kind", "bad_change"])
def test_other_damage_is_refused_naming_the_file(tmp_path, damage):
    from core.app.document.journal import encode_line

    doc = _unsaved_doc()
    path = doc.start_journal(tmp_path)
    doc.paint(1, 0, rect(20, 0, 22, 2))
    doc.stop_journal(delete=False)
    lines = path.read_bytes().split(b"\n")[:-1]
    header = json.loads(lines[0].partition(b" ")[2])
    if damage == "empty":
        path.write_bytes(b"")
    else:
        if damage == "not_journal":
            header["format"] = "something"
        elif damage == "newer":
            header["version"] = 99
        body = [encode_line(header)] + [x + b"\n" for x in lines[1:]]
        if damage == "unknown_kind":
            body.append(encode_line({"kind": "explode"}))
        elif damage == "bad_change":
            body.append(encode_line({"kind": "edit", "label": "x", "next_id": 3,
                                     "changes": [{"id": 77, "before": "current", "after": {"diff": {}}}]}))
        path.write_bytes(b"".join(body))
    with pytest.raises(DataError, match=re.escape(path.name)):
        Document.recover(path)


# -- the journal file -------------------------------------------------------------------------------------


def test_each_record_is_in_the_file_before_the_edit_returns(tmp_path):
    doc = _unsaved_doc()
    path = doc.start_journal(tmp_path)
    steps = [("Brush", lambda: doc.paint(1, 0, rect(20, 0, 22, 2))), ("Accept", lambda: doc.accept([2])),
             (None, lambda: doc.undo()), (None, lambda: doc.redo()),
             ("New track", lambda: doc.create_track(0, rect(0, 30, 3, 33), 1))]
    for n, (label, edit) in enumerate(steps, 1):
        edit()
        raw = path.read_bytes()  # through another file handle than the writer's
        assert raw.endswith(b"\n")
        contents = read_journal(path)
        assert contents.edits == n and not contents.torn_tail
        rec = contents.records[-1]
        if label is None:
            assert rec["kind"] == ("undo" if n == 3 else "redo")
        else:
            assert rec["kind"] == "edit" and rec["label"] == label
    assert _state(Document.recover(path)) == _state(doc)


def test_find_recoverable_skips_journals_in_use(tmp_path):
    doc = _unsaved_doc()
    path = doc.start_journal(tmp_path)
    doc.accept([1])
    doc.relabel([2], 3)
    assert journal_in_use(path)
    assert find_recoverable(tmp_path) == []
    doc.stop_journal(delete=False)  # what a dead process leaves: the file, no lock
    assert not journal_in_use(path)
    [cand] = find_recoverable(tmp_path)
    assert cand.path == path and cand.edits == 2 and cand.problem is None and cand.base is None
    assert cand.clip == "/clips/dojo"


def test_an_idle_journal_left_behind_is_removed(tmp_path):
    doc = Document(clip_info())
    path = doc.start_journal(tmp_path)
    doc.stop_journal(delete=False)
    assert path.exists()
    assert find_recoverable(tmp_path) == []
    assert not path.exists()


def test_a_second_window_cannot_take_over_a_journal_in_use(tmp_path):
    doc = _unsaved_doc()
    project = doc.save(tmp_path / "p.vppproj")
    first = Document.load(project)
    path = first.start_journal()
    first.accept([1])
    second = Document.load(project)
    with pytest.raises(DataError, match="in use"):
        second.start_journal()
    first.reject([2])  # the first window's journal is intact and still recording
    assert read_journal(path).edits == 2
    first.stop_journal(delete=False)
    assert _state(Document.recover(path)) == _state(first)


# -- kill -9 ----------------------------------------------------------------------------------------------

CHILD_LIB = r'''
import numpy as np
from core.data.rle import encode_mask
from core.app.document import ClipInfo, Document, brush_mask
from core.results import ClipResults, CompactFrame

T, H, W = 6, 30, 40
CATS = {1: "person", 2: "dog", 3: "cat"}


def rect(y0, x0, y1, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def start(kind, folder, journal=True):
    doc = Document(ClipInfo("/clips/kill", T, H, W), categories=CATS)
    doc.add_tracks([(1 + k % 3, 0.5 + 0.1 * k, {f: encode_mask(rect(2 + k, 1 + 9 * k, 12 + k + f, 8 + 9 * k))
                                                 for f in range(T) if (f + k) % 5})
                    for k in range(4)])
    path = None
    if kind == "saved":  # a model pass too: its unreviewed tracks are in the project only
        doc.begin_pass(ClipResults(T, H, W))
        for f in range(T):
            masks = [rect(18, 2 + 12 * k, 26 + f % 3, 9 + 12 * k) for k in range(3)]
            doc.add_model_frame(CompactFrame(
                index=f, height=H, width=W, track_ids=np.arange(3, dtype=np.int64),
                category_ids=np.asarray([1, 2, 3], np.int64), scores=np.asarray([0.9, 0.6, 0.3], np.float32),
                rles=tuple(encode_mask(m) for m in masks), areas=np.asarray([m.sum() for m in masks], np.int64),
                kept=np.zeros((0, 1, 1), bool), stage_names=(), keep_ratio=0.5, gflops=1.0, ms=1.0))
        if journal:
            doc.save(folder / "kill.vppproj")
    if journal:
        path = doc.start_journal() if kind == "saved" else doc.start_journal(folder)
    return doc, path


def step(doc, rng):
    """One journalled action (an edit, undo or redo), chosen by ``rng`` from the document's state."""
    ids = sorted(doc.tracks)
    r = float(rng.random())
    f = int(rng.integers(T))
    if ids:
        tid = ids[int(rng.integers(len(ids)))]
        if r < 0.45:
            x, y = float(rng.uniform(0, W)), float(rng.uniform(0, H))
            dx, dy = float(rng.uniform(-6, 6)), float(rng.uniform(-6, 6))
            stroke = brush_mask([(x, y), (x + dx, y + dy)], float(rng.uniform(1, 3)), H, W)
            if doc.paint(tid, f, stroke, erase=r < 0.12) is not None:
                return "erase" if r < 0.12 else "brush"
        elif r < 0.55:
            doc.relabel([tid], 1 + doc.track(tid).category_id % 3)
            return "relabel"
        elif r < 0.62:
            other = ids[int(rng.integers(len(ids)))]
            if other != tid:
                doc.merge([tid, other])
                return "merge"
        elif r < 0.70:
            frames = doc.track(tid).frames
            if any(i < f for i in frames) and any(i >= f for i in frames):
                doc.split(tid, f)
                return "split"
        elif r < 0.76:
            if doc.set_review([tid], ("accepted", "rejected", "unreviewed")[int(rng.integers(3))]) is not None:
                return "review"
        elif r < 0.80:
            if doc.delete_frames(tid, [f]) is not None:
                return "delete_frames"
        elif r < 0.88:
            if doc.undo() is not None:
                return "undo"
        elif r < 0.94:
            if doc.redo() is not None:
                return "redo"
        elif r < 0.96:
            doc.delete([tid])
            return "delete"
    y0, x0 = int(rng.integers(0, H - 3)), int(rng.integers(0, W - 3))
    doc.create_track(f, rect(y0, x0, y0 + 3, x0 + 3), int(rng.integers(1, 4)))
    return "create"
'''

CHILD_MAIN = r'''
import sys, time
from pathlib import Path
exec(LIB)
doc, path = start(sys.argv[1], Path(sys.argv[2]))
print("journal", path, flush=True)
rng = np.random.default_rng(1)
for n in range(1, 100000):
    what = step(doc, rng)
    print("ack", n, what, flush=True)
    time.sleep(0.003)
'''


def _lib():
    ns: dict = {}
    exec(CHILD_LIB, ns)
    return ns


@pytest.mark.parametrize("kind", ["unsaved", "saved"])
def test_kill_9_loses_no_acknowledged_edit(tmp_path, kind):
    N = 40
    script = f"LIB = {CHILD_LIB!r}\n{CHILD_MAIN}"
    child = subprocess.Popen([sys.executable, "-c", script, kind, str(tmp_path)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        first = child.stdout.readline().split()
        assert first and first[0] == "journal", child.stderr.read()
        path = Path(first[1])
        acks = []
        while len(acks) < N:
            line = child.stdout.readline()
            assert line, f"the child stopped early: {child.stderr.read()}"
            acks.append(line.split())
        assert child.poll() is None  # still editing
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    acks += [line.split() for line in child.stdout.read().splitlines()]
    assert [int(a[1]) for a in acks] == list(range(1, len(acks) + 1))

    assert not journal_in_use(path)
    if kind == "unsaved":
        [cand] = find_recoverable(tmp_path)
    else:
        [cand] = find_recoverable(projects=[tmp_path / "kill.vppproj"])
    contents = read_journal(path)
    K = contents.edits
    assert cand.path == path and cand.edits == K
    assert N <= len(acks) <= K <= len(acks) + 1  # every acknowledged edit is in the journal

    lib = _lib()
    rec = Document.recover(path, clip=clip_info(path="/clips/kill"))
    replay, _ = lib["start"](kind, tmp_path, journal=False)
    rng = np.random.default_rng(1)
    kinds = [lib["step"](replay, rng) for _ in range(K)]
    assert kinds[: len(acks)] == [a[2] for a in acks]
    assert {"brush", "relabel"} <= set(kinds)
    assert snapshot(rec) == snapshot(replay)
    assert rec.categories == replay.categories and rec._next_id == replay._next_id
    # the recovered history is the replay's, less commands made before the journal started (the import)
    rec_back, rec_forward = _history(rec)
    rep_back, rep_forward = _history(replay)
    assert rec_forward == rep_forward and rec_back == rep_back[: len(rec_back)]
    assert len(rep_back) - len(rec_back) in (0, 1)
    assert snapshot(rec) == snapshot(replay)

    # what the recovered document exports is valid
    out = tmp_path / "out"
    out.mkdir()
    rec.export({"ytvis": out / "r.json", "davis": out / "masks", "coco": out / "c.json"})
    data = json.loads((out / "r.json").read_text())
    parsed = parse_ytvis_results(data, source=out / "r.json")
    expected = [t for t in rec.tracks.values() if t.review != "rejected" and any(f.area for f in t.frames.values())]
    assert len(parsed) == len(expected) > 0
    for entry in data:
        assert len(entry["segmentations"]) == T
        assert all(s is None or s["size"] == [H, W] for s in entry["segmentations"])
        assert math.isfinite(entry["score"]) and 0 <= entry["score"] <= 1
    assert len(list((out / "masks").glob("*.png"))) == T
