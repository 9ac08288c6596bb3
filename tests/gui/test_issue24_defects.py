"""Issue 24, section 5: the defects found annotating real clips, each as a test through the real window.

- clicking a track's row jumped to its first frame even when the track was on the frame shown;
- the kept/pruned heatmap was on for real clips (it hides the image);
- after opening a project the plots were empty, their x axis wrong, and no model path was shown;
- at 1600x960 the Tracks dock hid columns behind a scroll bar and the sweep's PKR field showed "0.3";
- file dialogs started in the home folder instead of the clip's folder.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from core.resources import DEMO_CLIP
from vpp_gui.heatmap_default import CHOSEN_KEY
from vpp_gui.tracks_panel import COLUMNS, TRACK_ID_ROLE

CLIP = "davis_car_shadow/frames"
PRED = "davis_car_shadow/pred_ytvis_results.json"


@pytest.fixture
def window(make_window, shared_data, wait_done):
    w = make_window(shared_data / CLIP)
    wait_done(w)
    return w


def _square(doc, x: int) -> np.ndarray:
    m = np.zeros((doc.clip.height, doc.clip.width), bool)
    m[100:160, x:x + 60] = True
    return m


def _click_row(w, qtbot, track_id: int) -> None:
    w.tracks.refresh_now()
    table = w.tracks.table
    row = next(r for r in range(w.tracks.proxy.rowCount())
               if w.tracks.proxy.index(r, 0).data(TRACK_ID_ROLE) == track_id)
    rect = table.visualRect(w.tracks.proxy.index(row, 1))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


# -- the Tracks panel: a click stays on the frame when the track is there -----------------------------


def test_row_click_stays_on_the_frame_or_goes_to_the_nearest(window, qtbot):
    w = window
    doc = w.bridge.doc
    cat = min(doc.categories)
    tid = doc.create_track(10, _square(doc, 100), cat)
    doc.paint(tid, 20, _square(doc, 100))
    other = doc.create_track(30, _square(doc, 300), cat)
    assert sorted(doc.track(tid).frames) == [10, 20]
    doc.select([other])
    w.timeline.set_frame(20)
    _click_row(w, qtbot, tid)
    assert doc.selected == (tid,) and w.timeline.frame == 20  # on the frame shown: stay (it jumped to 10)
    doc.select([other])
    w.timeline.set_frame(17)
    _click_row(w, qtbot, tid)
    assert w.timeline.frame == 20  # absent here: the nearest frame holding it, not the first
    doc.select([other])
    w.timeline.set_frame(15)
    _click_row(w, qtbot, tid)
    assert w.timeline.frame == 10  # a tie goes to the earlier frame


# -- the heatmap: on for the demo, off for real work, once, with the key named ----------------------------


def test_heatmap_off_on_a_real_clip_with_a_notice_naming_h(window):
    w = window
    assert not w.actions_.layers["heatmap"].isChecked()
    assert not w.controls.checks["heatmap"].isChecked()
    assert w.notice.isVisible() and "Press H" in w.notice.label.text()


def test_heatmap_on_for_the_demo_until_a_person_edits(make_window, wait_done, qtbot):
    w = make_window(DEMO_CLIP)
    wait_done(w)
    act = w.actions_.layers["heatmap"]
    assert act.isChecked() and not w.notice.isVisible()
    doc = w.bridge.doc
    doc.create_track(0, _square(doc, 10), min(doc.categories))  # the first edit
    assert not act.isChecked() and "Press H" in w.notice.label.text()


def test_a_persons_heatmap_choice_is_kept(window, make_window, shared_data, wait_done):
    w = window
    act = w.actions_.layers["heatmap"]
    w.notice.dismiss()
    act.trigger()  # H: the person wants it back
    assert act.isChecked() and w.settings.value(CHOSEN_KEY, False, bool)
    doc = w.bridge.doc
    doc.create_track(0, _square(doc, 10), min(doc.categories))
    assert act.isChecked() and not w.notice.isVisible()  # an edit no longer hides it
    w.bridge.doc.mark_clean()
    w.close()
    w2 = make_window(shared_data / CLIP)  # the next session keeps the choice, on a real clip too
    wait_done(w2)
    assert w2.actions_.layers["heatmap"].isChecked()


# -- opening a project: plots, x range, model path --------------------------------------------------------


def test_opened_project_fills_the_plots_with_the_clips_range_and_shows_the_model(
        make_window, shared_data, wait_done, tmp_path, qtbot):
    clip = tmp_path / "clip60"
    clip.mkdir()
    frames = sorted((shared_data / CLIP).glob("*.jpg"))
    for i in range(60):
        shutil.copy(frames[i % len(frames)], clip / f"{i:05d}.jpg")
    w = make_window(clip)
    wait_done(w)
    doc = w.bridge.doc
    tid = doc.create_track(5, _square(doc, 100), min(doc.categories))
    doc.paint(tid, 50, _square(doc, 120))
    project = doc.save(tmp_path / "clip60.vppproj")
    w.close()
    w2 = make_window(DEMO_CLIP)  # a window already showing another clip opens the project
    wait_done(w2)
    assert w2.projects.open(project)
    qtbot.wait(2 * 300 + 100)  # past the plots' refresh throttle: nothing may clear them afterwards
    left, right = w2.plots.plots["tracks"].viewRange()[0]
    assert -1 < left <= 0 and 59 <= right < 60.5  # was 25..95 (the hidden IoU plot's link)
    curves = [c for c in w2.plots.plots["tracks"].listDataItems() if c.getData()[0] is not None]
    assert curves and all(len(c.getData()[0]) == 60 for c in curves)  # the project's track scores
    assert "Ctrl+R" in w2.plots.hint.textItem.toPlainText()  # why kept ratio / ms / GFLOPs are empty
    spec = w2.controls.model()
    assert spec.location() and w2.controls.model_note.text() == spec.location()


# -- the default layout at 1600x960 ----------------------------------------------------------------------


def test_default_layout_shows_every_tracks_column_and_a_readable_sweep(window, shared_data, qtbot):
    w = window
    assert (w.width(), w.height()) == (1600, 960)
    w.transfers.import_path(shared_data / PRED)
    w.tracks.refresh_now()
    qtbot.wait(50)
    table = w.tracks.table
    header = table.horizontalHeader()
    assert not table.horizontalScrollBar().isVisible()
    assert header.length() <= table.viewport().width()
    fm = table.fontMetrics()
    for col, title in enumerate(COLUMNS):  # every column on screen and wide enough for its title
        assert header.sectionViewportPosition(col) + header.sectionSize(col) <= table.viewport().width()
        assert header.sectionSize(col) >= fm.horizontalAdvance(title), title
    w.actions_.sweep.trigger()
    qtbot.wait(50)
    edit = w.sweep_panel.pkr_edit
    assert edit.isVisible() and edit.width() > edit.fontMetrics().horizontalAdvance(edit.text())
    w.review.load(shared_data / "davis_car_shadow/gt_ytvis.json")
    qtbot.waitUntil(lambda: w.review_panel.matches.rowCount() > 0, timeout=20000)
    matches = w.review_panel.matches
    assert matches.horizontalHeader().length() <= matches.viewport().width()
    assert not matches.horizontalScrollBar().isVisible()


# -- file dialogs start beside the clip / project -----------------------------------------------------------


def test_every_file_dialog_starts_in_the_clips_folder(window, shared_data, monkeypatch, tmp_path):
    w = window
    starts: list[tuple[str, str]] = []

    def record(kind):
        def fake(_parent, title, start="", *_a, **_k):
            starts.append((title, str(start)))
            return "" if kind == "dir" else ("", "")
        return fake

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", record("dir"))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", record("file"))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", record("file"))
    w.settings.set_folder("export", str(tmp_path))  # a last-used folder exists, yet the clip's folder wins
    a = w.actions_
    for act in (a.open, a.open_video, a.open_project, a.import_results, a.import_davis, a.load_gt,
                a.load_gt_folder, a.export_ytvis, a.export_davis, a.export_coco, a.save_as):
        act.trigger()
    clip_folder = str((shared_data / CLIP).parent)
    assert len(starts) == 11
    for title, start in starts:
        assert start == clip_folder or start.startswith(clip_folder + "/"), (title, start)
    starts.clear()
    (tmp_path / "work").mkdir()
    project = w.bridge.doc.save(tmp_path / "work" / "p.vppproj")  # now the project's folder wins
    a.export_coco.trigger()
    a.import_results.trigger()
    assert [s for _t, s in starts] == [str(project.parent / "coco.json"), str(project.parent)]
