"""The project's labels in the app: R creates a label by name and drawing uses it, the current-label selector
drives new tracks (and is remembered), the Labels dialog (Ctrl+L), label colours in the Tracks panel, and an
import that never renames the tracks already there."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication

from vpp_gui.category_picker import CategoryDialog
from vpp_gui.labels_dialog import LabelsDialog
from vpp_gui.tracks_panel import CATEGORY, TRACK_ID_ROLE

CLIP = "davis_car_shadow/frames"
PRED = "davis_car_shadow/pred_ytvis_results.json"
GT = "davis_car_shadow/gt_ytvis.json"
DAVIS = "davis_car_shadow/pred_masks"  # indexed PNG masks (no classes)


@pytest.fixture
def window(make_window, shared_data, wait_done):
    w = make_window(shared_data / CLIP)
    wait_done(w)
    return w


def _stroke(w, points):
    w.editing.set_tool("brush")
    t = w.view.tools
    t.begin_stroke(*points[0])
    for p in points[1:]:
        t.extend_stroke(*p)
    t.end_stroke()


def _draw_new_track(w, y: int) -> int:
    """N, then a brush stroke: the id of the new track."""
    w.actions_.new_track.trigger()
    before = set(w.bridge.doc.tracks)
    _stroke(w, [(100, y), (180, y)])
    (new,) = set(w.bridge.doc.tracks) - before
    return new


def _answer_picker(qtbot, text: str, seen: list):
    """When the R picker is up: type ``text`` and press Enter (recording what it offered)."""

    def answer():
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, CategoryDialog):
            dialog.filter.setText(text)
            seen.append(dialog.new_name())
            qtbot.keyClick(dialog.filter, Qt.Key.Key_Return)
        elif dialog is not None:
            dialog.reject()

    QTimer.singleShot(50, answer)


@pytest.fixture
def fail_safe():
    """Never hang the run on a modal dialog."""

    def close():
        dialog = QApplication.activeModalWidget()
        if dialog is not None:
            dialog.reject()

    guard = QTimer()
    guard.timeout.connect(close)
    guard.start(8000)
    yield
    guard.stop()


def test_r_creates_a_label_by_name_and_drawing_uses_it(window, qtbot, fail_safe):
    w = window
    doc = w.bridge.doc
    assert "chair" not in doc.categories.values()
    # nothing selected: R chooses the label of new tracks; a new name is offered as a new label
    doc.select([])
    seen: list = []
    _answer_picker(qtbot, "chair", seen)
    qtbot.keyClick(w, Qt.Key.Key_R)
    assert seen == ["chair"]
    chair = next(k for k, v in doc.categories.items() if v == "chair")
    assert w.editing.labels.current_id() == chair and w.editing.labels.current_name() == "chair"
    new = _draw_new_track(w, 60)
    assert doc.category_name(doc.track(new).category_id) == "chair"
    # a selected track: R + a new name creates the label and relabels the track; the next new track takes it too
    seen.clear()
    _answer_picker(qtbot, "  Table ", seen)
    w.actions_.relabel.trigger()
    assert seen == ["Table"]
    assert doc.category_name(doc.track(new).category_id) == "Table" and doc.track(new).edited
    other = _draw_new_track(w, 120)
    assert doc.category_name(doc.track(other).category_id) == "Table"
    # an existing name (any case) is not offered as new: it is picked
    seen.clear()
    _answer_picker(qtbot, "CHAIR", seen)
    w.actions_.relabel.trigger()
    assert seen == [None] and doc.category_name(doc.track(other).category_id) == "chair"
    assert list(doc.categories.values()).count("chair") == 1


def test_the_selector_drives_new_tracks_and_is_remembered(window, make_window, shared_data, wait_done, tmp_path):
    w = window
    doc = w.bridge.doc
    sel = w.editing.labels
    assert [sel.combo.itemText(i) for i in range(sel.combo.count())] == list(doc.categories.values())
    chair, table = doc.add_category("chair"), doc.add_category("table")
    assert sel.combo.findData(table) >= 0  # the selector follows the document's labels
    index = sel.combo.findData(table)
    sel.combo.setCurrentIndex(index)
    sel.combo.activated.emit(index)  # what a click on the item does
    assert doc.category_name(doc.track(_draw_new_track(w, 80)).category_id) == "table"
    sel.combo.setCurrentIndex(sel.combo.findData(chair))
    sel.combo.activated.emit(sel.combo.findData(chair))
    assert doc.track(_draw_new_track(w, 140)).category_id == chair
    # the label is remembered by name: another clip's document takes it as soon as it has that label
    sel.combo.activated.emit(sel.combo.findData(table))
    w2 = make_window(shared_data / CLIP)
    wait_done(w2)
    doc2 = w2.bridge.doc
    assert "table" not in doc2.categories.values()
    names = tmp_path / "labels.txt"
    names.write_text("chair\ntable\n")
    doc2.load_categories(names)
    assert w2.editing.labels.current_name() == "table"
    assert doc2.category_name(doc2.track(_draw_new_track(w2, 80)).category_id) == "table"


def test_labels_dialog_edits_the_project_labels(window, qtbot, dialogs, tmp_path, fail_safe):
    w = window
    doc = w.bridge.doc
    seen = []

    def act():
        dialog = QApplication.activeModalWidget()
        seen.append(type(dialog).__name__)
        if isinstance(dialog, LabelsDialog):
            qtbot.keyClicks(dialog.name, "judoka")
            qtbot.keyClick(dialog.name, Qt.Key.Key_Return)
            dialog.accept()

    QTimer.singleShot(50, act)
    qtbot.keyClick(w, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert seen == ["LabelsDialog"] and "judoka" in doc.categories.values()
    assert w.isWindowModified()  # a label edit is a person's work: unsaved

    dialog = LabelsDialog(doc, w)
    qtbot.addWidget(dialog)
    chair = dialog.add("chair")
    assert dialog.selected_id() == chair and doc.categories[chair] == "chair"
    dialog.rename("armchair")
    dialog.recolor("#ff0000")
    assert doc.categories[chair] == "armchair" and doc.category_color(chair) == "#ff0000"
    dialog.move(-1)
    assert list(doc.categories)[-2] == chair
    # a label in use cannot be deleted: the reason is shown and nothing changes
    track = doc.create_track(0, _square(doc), chair)
    dialog.refresh()
    dialog.delete()
    assert chair in doc.categories and "used by 1 track" in dialogs[-1][1]
    # the label's colour is shown beside the track's label in the Tracks panel
    w.tracks.refresh_now()
    model = w.tracks.table.model()
    row = next(r for r in range(model.rowCount()) if model.index(r, 0).data(TRACK_ID_ROLE) == track)
    assert model.index(row, CATEGORY).data(Qt.ItemDataRole.DecorationRole) == QColor("#ff0000")
    doc.delete([track])
    dialog.delete()
    assert chair not in doc.categories
    # load a label set from a text file and from a ground truth; a bad file is explained
    text = tmp_path / "names.txt"
    text.write_text("stool\n\nJUDOKA\nmat\n")
    ids = dialog.load(text)
    assert [doc.categories[i] for i in ids] == ["stool", "judoka", "mat"]
    assert "3 loaded from names.txt, 2 new" in dialog.windowTitle()
    dialog.load(tmp_path / "missing.txt")
    assert "missing.txt" in dialogs[-1][1]


def _square(doc):
    import numpy as np

    m = np.zeros((doc.clip.height, doc.clip.width), bool)
    m[10:40, 10:40] = True
    return m


def test_importing_a_ground_truth_never_renames_a_track(window, shared_data):
    w = window
    doc = w.bridge.doc
    (pred,) = w.transfers.import_path(shared_data / PRED)  # a results file: its id 5 is the model's class_5 here
    drawn = _draw_new_track(w, 60)
    before = {r.id: r.category for r in doc.rows()}
    (gt,) = w.transfers.import_path(shared_data / GT)  # its "car" is id 5 too
    after = {r.id: r.category for r in doc.rows()}
    assert {t: after[t] for t in before} == before and pred in before and drawn in before
    assert after[gt] == "car" and doc.track(gt).category_id != 5
    w.tracks.refresh_now()
    model = w.tracks.table.model()
    shown = {model.index(r, 0).data(TRACK_ID_ROLE): model.index(r, CATEGORY).data() for r in range(model.rowCount())}
    assert shown[gt] == "car" and shown[pred] == before[pred]


def test_a_davis_import_takes_the_current_label_and_a_results_file_its_own(window, shared_data):
    """DAVIS PNG masks carry no class: their tracks take the label chosen above the Tracks panel ("object"
    only when none is chosen); a YouTube-VIS file's tracks keep the classes the file names."""
    w = window
    doc = w.bridge.doc
    sel = w.editing.labels
    chair = doc.add_category("chair")
    index = sel.combo.findData(chair)
    sel.combo.setCurrentIndex(index)
    sel.combo.activated.emit(index)  # what a click on the item does
    labels = dict(doc.categories)
    ids = w.transfers.import_path(shared_data / DAVIS)
    assert ids and {doc.track(t).category_id for t in ids} == {chair}
    assert doc.categories == labels  # no label "object" created
    (gt,) = w.transfers.import_path(shared_data / GT)
    assert doc.category_name(doc.track(gt).category_id) == "car"
    sel.combo.setCurrentIndex(-1)  # no label chosen
    (plain,) = w.transfers.import_path(shared_data / DAVIS)
    assert doc.category_name(doc.track(plain).category_id) == "object"
