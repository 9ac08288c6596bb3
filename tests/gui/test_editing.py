"""Reviewing and correcting in the app: tracks panel, every tool, undo/redo, save → reopen, the close prompt,
recovery after a crash. Drives the real window (offscreen) through its actions and the canvas tools."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

CLIP = "davis_car_shadow/frames"
PRED = "davis_car_shadow/pred_ytvis_results.json"
FRAMES, HEIGHT, WIDTH = 40, 480, 854


@pytest.fixture
def window(make_window, shared_data, wait_done):
    w = make_window(shared_data / CLIP)
    wait_done(w)
    return w


def _imported(w, shared_data) -> int:
    ids = w.transfers.import_path(shared_data / PRED)
    assert len(ids) == 1
    return ids[0]


def _stroke(w, points, *, tool="brush"):
    w.editing.set_tool(tool)
    t = w.view.tools
    t.begin_stroke(*points[0])
    for p in points[1:]:
        t.extend_stroke(*p)
    t.end_stroke()


def test_import_shows_in_panel_and_brush_eraser_undo_redo(window, shared_data, qtbot):
    w = window
    doc = w.bridge.doc
    tid = _imported(w, shared_data)
    w.tracks.refresh_now()
    assert tid in [r.id for r in doc.rows()]
    assert tid in _panel_ids(w)
    # clicking its row seeks to its first frame and selects it
    w.tracks.select([tid])
    assert doc.selected == (tid,)
    w.timeline.set_frame(5)
    before = doc.mask(tid, 5).copy()
    assert not before[20:30, 20:60].any()  # the car is not in the top-left corner
    _stroke(w, [(25, 25), (55, 25)])
    after = doc.mask(tid, 5)
    assert after[25, 25] and after[25, 55] and after[25, 40]
    assert (after & ~before).sum() > 100 and (before & ~after).sum() == 0
    assert doc.track(tid).edited and w.isWindowModified()
    # eraser removes exactly inside its stroke
    _stroke(w, [(40, 25)], tool="eraser")
    erased = doc.mask(tid, 5)
    assert not erased[25, 40] and erased[25, 25]
    # undo twice restores the exact previous masks; redo (both keys) re-applies
    qtbot.keyClick(w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(doc.mask(tid, 5), after)
    qtbot.keyClick(w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(doc.mask(tid, 5), before)
    qtbot.keyClick(w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert np.array_equal(doc.mask(tid, 5), after)
    qtbot.keyClick(w, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(doc.mask(tid, 5), erased)


def _panel_ids(w) -> list[int]:
    from vpp_gui.tracks_panel import TRACK_ID_ROLE

    w.tracks.refresh_now()
    model = w.tracks.table.model()
    return sorted(int(model.data(model.index(r, 0), TRACK_ID_ROLE)) for r in range(model.rowCount()))


def test_relabel_shows_in_label_and_panel(window, shared_data, monkeypatch):
    w = window
    doc = w.bridge.doc
    tid = _imported(w, shared_data)
    person = doc.add_category("person")  # the test model's categories are class_1 … class_40
    w.tracks.select([tid])
    monkeypatch.setattr("vpp_gui.editing.pick_category", lambda parent, cats, current=None, **_kw: person)
    w.actions_.relabel.trigger()
    assert doc.track(tid).category_id == person
    w.timeline.set_frame(3)
    w.show_frame()
    texts = [item.toPlainText() for item in w.view._label_items if item.isVisible()]
    assert any(t.startswith(f"person #{tid}") for t in texts), texts
    row = next(r for r in doc.rows() if r.id == tid)
    assert row.category == "person"


def test_new_track_merge_split_delete_change_the_panel(window, shared_data):
    w = window
    doc = w.bridge.doc
    tid = _imported(w, shared_data)
    # N clears the selection: the next stroke is a new track, on the current frame
    w.actions_.new_track.trigger()
    w.timeline.set_frame(2)
    _stroke(w, [(700, 60), (760, 60)])
    new = doc.current
    assert new is not None and new != tid and doc.track(new).origin == "user"
    assert set(doc.track(new).frames) == {2}
    n_before = len(_panel_ids(w))
    # merge (Ctrl+M): the drawn one joins the imported track
    doc.select([tid, new])
    w.actions_.merge.trigger()
    assert new not in doc.tracks and len(_panel_ids(w)) == n_before - 1
    assert doc.mask(tid, 2)[60, 730]
    # split at frame 20 (S): a new row with frames 20..39
    w.tracks.select([tid])
    w.timeline.set_frame(20)
    w.actions_.split.trigger()
    tail = doc.current
    assert tail != tid and doc.track(tail).first == 20 and doc.track(tid).last == 19
    assert len(_panel_ids(w)) == n_before
    # delete from this frame on (Shift+Delete), then the whole track (Delete)
    w.tracks.select([tid])
    w.timeline.set_frame(10)
    w.actions_.delete_from.trigger()
    assert doc.track(tid).last == 9
    w.actions_.delete.trigger()
    assert tid not in doc.tracks and tid not in _panel_ids(w)
    w.actions_.undo.trigger()
    assert doc.track(tid).last == 9


def test_polygon_fill_accept_reject_hide_and_canvas_selection(window, shared_data):
    w = window
    doc = w.bridge.doc
    w.timeline.set_frame(0)
    w.actions_.new_track.trigger()
    w.editing.set_tool("polygon")
    t = w.view.tools
    for p in ((100, 100), (200, 100), (200, 200), (100, 200)):
        t.add_polygon_point(*p)
    assert t.close_polygon()
    poly = doc.current
    m = doc.mask(poly, 0)
    assert m[150, 150] and not m[90, 150] and 9000 < m.sum() < 11000
    # a hole, then the fill tool fills it
    doc.paint(poly, 0, _disk(150, 150, 10), erase=True)
    assert not doc.mask(poly, 0)[150, 150]
    w.editing.set_tool("fill")
    t.click(150, 150)
    assert doc.mask(poly, 0)[150, 150]
    # click on the mask (select tool) selects its row; click outside clears
    w.editing.set_tool("select")
    doc.select([])
    t.click(120, 120)
    assert doc.selected == (poly,) and w.tracks.selected() == (poly,)
    # accept / reject toggle, hide / solo
    w.actions_.accept.trigger()
    assert doc.track(poly).review == "accepted"
    w.actions_.reject.trigger()
    assert doc.track(poly).review == "rejected"
    w.actions_.reject.trigger()
    assert doc.track(poly).review == "unreviewed"
    w.actions_.hide.trigger()
    assert not doc.visible(poly)
    assert all(i.track_id != poly for i in doc.frame_instances(0))
    w.actions_.hide.trigger()
    assert doc.visible(poly)


def _disk(x, y, r):
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    return (xx - x) ** 2 + (yy - y) ** 2 <= r * r


def test_save_reopen_round_trip_and_title(window, shared_data, make_window, tmp_path, wait_done, monkeypatch):
    w = window
    doc = w.bridge.doc
    tid = _imported(w, shared_data)
    w.tracks.select([tid])
    w.timeline.set_frame(7)
    _stroke(w, [(30, 30), (90, 30)])
    assert w.isWindowModified() and "[*]" in w.windowTitle()
    path = tmp_path / "review.vppproj"
    monkeypatch.setattr(w.projects, "ask_save_path", lambda start: str(path))
    w.actions_.save.trigger()
    assert path.is_file() and not w.isWindowModified() and doc.path == path.resolve()
    rows = doc.rows()
    masks = {t: doc.mask(t, 7) for t in doc.tracks}

    w2 = make_window(project=path)
    doc2 = w2.bridge.doc
    assert doc2 is not doc and doc2.path == path.resolve()
    assert [(r.id, r.category_id, r.first, r.last, r.review, r.edited) for r in doc2.rows()] == \
        [(r.id, r.category_id, r.first, r.last, r.review, r.edited) for r in rows]
    for t, m in masks.items():
        assert np.array_equal(doc2.mask(t, 7), m)
    assert w2.controller.state == "done" and not w2.controller.running  # no pass wiped the project's tracks
    assert not w2.isWindowModified()


def test_close_prompt_keeps_unsaved_edits(window, shared_data, monkeypatch):
    w = window
    doc = w.bridge.doc
    _imported(w, shared_data)
    assert doc.dirty
    asked = []
    monkeypatch.setattr(w.projects, "ask_unsaved", lambda name: asked.append(name) or QMessageBox.StandardButton.Cancel)
    assert not w.close()
    assert asked and w.isVisible() and w.bridge.doc is doc
    journal = doc.journal_path
    assert journal is not None and journal.is_file()
    monkeypatch.setattr(w.projects, "ask_unsaved", lambda name: QMessageBox.StandardButton.Discard)
    assert w.close()
    assert not journal.exists()  # discarded on purpose: nothing to recover


def test_recovery_offered_after_a_crash(make_window, shared_data, tmp_path, isolated_settings, monkeypatch):
    from core.app.document import ClipInfo, Document

    data_dir = isolated_settings.parent / "appdata"
    clip = ClipInfo.open(shared_data / CLIP)
    doc = Document(clip, categories={5: "car", 26: "person"})
    doc.start_journal(data_dir)
    doc.import_file(shared_data / PRED)
    tid = next(iter(doc.tracks))
    doc.paint(tid, 4, _disk(40, 40, 12))
    doc.relabel([tid], 26)
    expected = doc.mask(tid, 4)
    journal = doc.journal_path
    doc._journal.close(delete=False)  # the process "died": the journal stays, unlocked
    from vpp_gui.project_io import ProjectIO

    monkeypatch.setattr(ProjectIO, "ask_recover", lambda self, c: QMessageBox.StandardButton.Yes)
    w = make_window(recover=True)
    rec = w.bridge.doc
    assert rec is not None and rec.dirty
    assert np.array_equal(rec.mask(tid, 4), expected) and rec.track(tid).category_id == 26
    assert rec.journal_path == journal  # it keeps recording into the same journal
    assert tid in _panel_ids(w)
    rec.undo()  # the undo history survived the crash too
    assert rec.track(tid).category_id == 5


def test_edits_survive_re_inference_and_undo_reaches_across_it(window, shared_data, qtbot, wait_done):
    w = window
    doc = w.bridge.doc
    tid = _imported(w, shared_data)
    w.tracks.select([tid])
    w.timeline.set_frame(3)
    _stroke(w, [(20, 400), (60, 400)])
    edited = {i: doc.mask(tid, i) for i in (0, 3, 39)}
    model_before = {t for t, tr in doc.tracks.items() if not tr.protected}
    first = w.controller.results
    with qtbot.waitSignal(w.controller.stateChanged, timeout=5000, check_params_cb=lambda s: s == "running"):
        w.controls.pkr_slider.setValue(0.8)
    wait_done(w)
    assert w.controller.results is not first and w.controller.results.is_complete
    # the person's track is exactly as it was; the unreviewed model tracks were replaced
    for i, m in edited.items():
        assert np.array_equal(doc.mask(tid, i), m)
    assert not (model_before & set(doc.tracks))
    # undo after the re-inference takes back the brush stroke
    w.actions_.undo.trigger()
    assert not doc.mask(tid, 3)[400, 40]


def test_import_of_another_clip_s_masks_is_refused_with_the_file_named(window, shared_data, tmp_path, dialogs):
    import json

    w = window
    data = json.loads((shared_data / PRED).read_text())
    data[0]["segmentations"] = data[0]["segmentations"][:39]
    bad = tmp_path / "other_clip.json"
    bad.write_text(json.dumps(data))
    n = len(w.bridge.doc.tracks)
    assert w.transfers.import_path(bad) == []
    assert dialogs and "other_clip.json" in dialogs[-1][1] and "40" in dialogs[-1][1]
    assert len(w.bridge.doc.tracks) == n


def test_app_export_into_the_clip_folder_is_refused(make_window, shared_data, qtbot, wait_done, tmp_path):
    import shutil

    frames = tmp_path / "frames"
    shutil.copytree(shared_data / CLIP, frames)
    w = make_window(frames)
    wait_done(w)
    with qtbot.waitSignal(w.exporter.failed, timeout=60_000) as blocker:
        assert w.export_to("davis", frames)
    assert str(frames) in blocker.args[0]
    assert sorted(p.name for p in frames.iterdir()) == sorted(p.name for p in (shared_data / CLIP).iterdir())
