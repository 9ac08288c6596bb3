"""The tracks panel (model + sort proxy + table) and the type-to-filter category picker."""

from __future__ import annotations

import numpy as np
import pytest
import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from core.app.document import ClipInfo, Document
from core.data.rle import encode_mask
from vpp_gui.category_picker import CategoryDialog, pick_category
from vpp_gui.overlay import track_color
from vpp_gui.tracks_panel import (
    CATEGORY,
    EDITED,
    FIRST,
    FRAMES,
    ID,
    LAST,
    REVIEW,
    SCORE,
    VISIBLE,
    TracksPanel,
)

H, W = 30, 40


def box(y0, x0, y1, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture
def doc():
    """Tracks 1 (person, frames 0-2, drawn), 2 (dog, frame 3), 3 (cat, 1-4, imported 0.30),
    4 (dog, 5, imported 0.90), 5 (person, imported 0.55, frames 2 and 4)."""
    d = Document(ClipInfo("/tmp/x", num_frames=6, height=H, width=W))
    d.set_categories({1: "person", 2: "dog", 3: "cat"})
    t1 = d.create_track(0, box(0, 0, 5, 5), 1)
    d.paint(t1, 2, box(0, 0, 3, 3))
    d.paint(t1, 1, box(1, 1, 4, 4))
    d.create_track(3, box(10, 10, 20, 20), 2)
    rle = encode_mask(box(5, 5, 9, 9))
    d.add_tracks([(3, 0.30, {1: rle, 4: rle}), (2, 0.90, {5: rle}), (1, 0.55, {2: rle, 4: rle})], note="from a.json")
    return d


@pytest.fixture
def panel(qtbot, doc):
    p = TracksPanel()
    qtbot.addWidget(p)
    p.resize(700, 300)
    p.set_document(doc)
    p.show()
    qtbot.waitExposed(p)
    return p


def column(panel, col, role=Qt.ItemDataRole.DisplayRole):
    px = panel.proxy
    return [px.index(r, col).data(role) for r in range(px.rowCount())]


def ids_in_view(panel):
    return [int(v) for v in column(panel, ID)]


def click(qtbot, panel, track_id, modifier=Qt.KeyboardModifier.NoModifier):
    table = panel.table
    row = ids_in_view(panel).index(track_id)
    index = panel.proxy.index(row, CATEGORY)
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, modifier, table.visualRect(index).center())


def test_rows_show_every_track_with_its_cells(panel, doc):
    assert ids_in_view(panel) == [1, 2, 3, 4, 5]
    assert column(panel, CATEGORY) == ["person", "dog", "cat", "dog", "person"]
    assert column(panel, FIRST) == ["0", "3", "1", "5", "2"]
    assert column(panel, LAST) == ["2", "3", "4", "5", "4"]
    assert column(panel, FRAMES) == ["3", "1", "2", "1", "2"]
    assert column(panel, SCORE) == ["1.00", "1.00", "0.30", "0.90", "0.55"]
    assert column(panel, EDITED) == ["✎"] * 5  # drawn or imported: all by a person
    assert column(panel, EDITED, Qt.ItemDataRole.ToolTipRole)[:3] == [
        "drawn by a person, edited by a person", "drawn by a person", "imported"]
    assert column(panel, CATEGORY, Qt.ItemDataRole.ToolTipRole) == ["drawn", "drawn"] + ["from a.json"] * 3
    assert column(panel, REVIEW) == ["unreviewed"] * 5 and column(panel, VISIBLE) == ["shown"] * 5
    chip = panel.proxy.index(2, ID).data(Qt.ItemDataRole.DecorationRole)
    assert isinstance(chip, QColor) and (chip.red(), chip.green(), chip.blue()) == track_color(3)
    assert panel.summary.text() == "5 tracks · 5 by a person · 0 rejected"


def test_review_hidden_and_edited_marks(panel, doc):
    doc.accept([1])
    doc.reject([3])
    doc.set_hidden([2])
    doc.relabel([4], 3)
    panel.refresh_now()
    assert column(panel, REVIEW)[:3] == ["✓ accepted", "unreviewed", "✗ rejected"]
    assert column(panel, VISIBLE)[:3] == ["shown", "hidden", "shown"]
    assert panel.proxy.index(3, EDITED).data(Qt.ItemDataRole.ToolTipRole) == "imported, edited by a person"
    font = panel.proxy.index(1, CATEGORY).data(Qt.ItemDataRole.FontRole)
    assert font is not None and font.italic()
    assert panel.proxy.index(0, CATEGORY).data(Qt.ItemDataRole.FontRole) is None
    grey = panel.proxy.index(2, CATEGORY).data(Qt.ItemDataRole.ForegroundRole)
    assert grey is not None and panel.proxy.index(0, CATEGORY).data(Qt.ItemDataRole.ForegroundRole) is None
    assert panel.summary.text() == "5 tracks · 5 by a person · 1 rejected"


def test_sorting_by_score_and_by_id_is_numeric(panel, doc):
    for k in range(6, 12):  # ids up to 11, so a text sort would put 10 before 2
        doc.create_track(0, box(k, k, k + 2, k + 2), 1)
    panel.refresh_now()
    panel.table.sortByColumn(ID, Qt.SortOrder.DescendingOrder)
    assert ids_in_view(panel) == list(range(11, 0, -1))
    panel.table.sortByColumn(ID, Qt.SortOrder.AscendingOrder)
    assert ids_in_view(panel) == list(range(1, 12))
    panel.table.sortByColumn(SCORE, Qt.SortOrder.AscendingOrder)
    assert ids_in_view(panel)[:3] == [3, 5, 4]  # 0.30, 0.55, 0.90, then the 1.00s by id
    assert ids_in_view(panel)[3:] == [1, 2, *range(6, 12)]
    panel.table.sortByColumn(SCORE, Qt.SortOrder.DescendingOrder)
    assert ids_in_view(panel)[-3:] == [4, 5, 3]


def test_a_track_without_frames_shows_dashes_and_sorts_last(panel, doc):
    doc.delete_frames(2, [3])  # track 2 had only frame 3
    panel.refresh_now()
    assert column(panel, FIRST)[1] == "—" and column(panel, LAST)[1] == "—" and column(panel, FRAMES)[1] == "0"
    panel.table.sortByColumn(FIRST, Qt.SortOrder.AscendingOrder)
    assert ids_in_view(panel) == [1, 3, 5, 4, 2]
    panel.table.sortByColumn(FIRST, Qt.SortOrder.DescendingOrder)
    assert ids_in_view(panel) == [4, 5, 3, 1, 2]


def test_relabel_shows_the_new_name(panel, doc):
    doc.relabel([2], 3)
    panel.refresh_now()
    assert column(panel, CATEGORY)[1] == "cat"


def test_the_panel_follows_the_document_coalesced(qtbot, panel, doc):
    doc.relabel([2], 3)
    assert column(panel, CATEGORY)[1] == "dog"  # not yet: refreshes are coalesced
    qtbot.waitUntil(lambda: column(panel, CATEGORY)[1] == "cat", timeout=2000)
    panel.set_document(None)
    assert panel.proxy.rowCount() == 0 and panel.summary.text() == "no clip open"
    doc.relabel([2], 1)  # no longer followed
    panel.refresh_now()
    assert panel.proxy.rowCount() == 0


def test_selection_survives_refresh_resort_and_new_tracks(qtbot, panel, doc):
    panel.select([3, 5])
    assert panel.selected() == (3, 5)
    resets = []
    panel.model.modelReset.connect(lambda: resets.append(1))
    doc.paint(3, 0, box(0, 0, 2, 2))  # same ids: no reset, the row is updated in place
    panel.refresh_now()
    assert resets == [] and column(panel, FRAMES)[2] == "3" and panel.selected() == (3, 5)
    panel.table.sortByColumn(SCORE, Qt.SortOrder.AscendingOrder)
    assert panel.selected() == (3, 5)
    selected_rows = sorted(i.row() for i in panel.table.selectionModel().selectedRows())
    assert [ids_in_view(panel)[r] for r in selected_rows] == [3, 5]
    inserted = []
    panel.model.rowsInserted.connect(lambda _parent, first, last: inserted.append((first, last)))
    new = doc.create_track(1, box(20, 20, 25, 25), 2)  # a new id after the others: inserted, no reset
    panel.refresh_now()
    assert resets == [] and inserted == [(5, 5)] and new in ids_in_view(panel) and panel.selected() == (3, 5)
    doc.delete([1])
    panel.refresh_now()
    doc.undo()  # id 1 comes back before the others: a reset, the selection is restored
    with qtbot.assertNotEmitted(panel.selectionChanged):
        panel.refresh_now()
    assert resets == [1, 1] and ids_in_view(panel)[:3] == [3, 5, 4] and panel.selected() == (3, 5)


def test_select_emits_selection_changed_but_never_activates(qtbot, panel):
    with qtbot.assertNotEmitted(panel.trackActivated), qtbot.waitSignal(panel.selectionChanged) as sig:
        panel.select([4])
    assert sig.args == [(4,)] and panel.selected() == (4,)
    with qtbot.assertNotEmitted(panel.selectionChanged):
        panel.select([4])  # unchanged: no signal
    with qtbot.waitSignal(panel.selectionChanged) as sig:
        panel.select([])
    assert sig.args == [()]
    panel.select([99])  # unknown ids are skipped
    assert panel.selected() == ()


def test_click_activates_and_ctrl_click_extends_the_selection(qtbot, panel):
    with qtbot.waitSignal(panel.trackActivated) as sig:
        click(qtbot, panel, 3)
    assert sig.args == [3] and panel.selected() == (3,)
    with qtbot.waitSignal(panel.selectionChanged) as sig:
        click(qtbot, panel, 1, Qt.KeyboardModifier.ControlModifier)
    assert sig.args == [(1, 3)]  # the last clicked one first


def test_deleted_track_leaves_the_table_and_the_selection(qtbot, panel, doc):
    panel.select([2, 4])
    doc.delete([2])
    with qtbot.waitSignal(panel.selectionChanged) as sig:
        panel.refresh_now()
    assert ids_in_view(panel) == [1, 3, 4, 5] and sig.args == [(4,)]
    assert panel.summary.text() == "4 tracks · 4 by a person · 0 rejected"


@pytest.fixture
def window(qtbot, panel):
    """The panel in a window that binds M and Return, like the main window's actions."""
    w = QWidget()
    qtbot.addWidget(w)
    QVBoxLayout(w).addWidget(panel)
    triggered = []
    for key in ("M", "Return"):
        act = QAction(key, w)
        act.setShortcut(QKeySequence(key))
        act.triggered.connect(lambda _=False, k=key: triggered.append(k))
        w.addAction(act)
    w.show()
    w.activateWindow()
    qtbot.waitActive(w)
    panel.table.setFocus()
    yield triggered
    w.close()


def test_enter_activates_and_letters_stay_the_windows_shortcuts(qtbot, panel, window):
    panel.select([2])
    assert panel.table.hasFocus()
    with qtbot.waitSignal(panel.trackActivated) as sig:
        qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    assert sig.args == [2] and window == []  # Enter went to the table, not to the window's Return
    qtbot.keyClick(panel.table, Qt.Key.Key_M)
    assert window == ["M"]
    qtbot.keyClick(panel.table, Qt.Key.Key_5)  # no keyboard search: "5" does not jump to track 5
    qtbot.keyClick(panel.table, Qt.Key.Key_D)
    assert panel.selected() == (2,)
    qtbot.keyClick(panel.table, Qt.Key.Key_Down)  # arrows still move
    assert panel.selected() == (3,)


def categories():
    return {1: "person", 2: "dog", 3: "cat", 17: "horse", 4: "Dolphin"}


def test_category_dialog_lists_by_name_and_filters(qtbot):
    dialog = CategoryDialog(categories(), current=3)
    qtbot.addWidget(dialog)
    assert dialog.visible_ids() == [3, 2, 4, 17, 1]  # cat, dog, Dolphin, horse, person
    assert dialog.list.item(0).text() == "cat (3)" and dialog.current_id() == 3
    dialog.filter.setText("do")
    assert dialog.visible_ids() == [2, 4]
    dialog.filter.setText("DOG")
    assert dialog.visible_ids() == [2]
    dialog.accept_current()
    assert dialog.chosen() == 2 and dialog.result() == CategoryDialog.DialogCode.Accepted


def test_category_dialog_numeric_filter_keys_and_cancel(qtbot):
    dialog = CategoryDialog(categories())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.filter.setText("o")  # dog, Dolphin, horse, person; cat (current) is filtered out
    assert dialog.visible_ids() == [2, 4, 17, 1] and dialog.current_id() == 2
    qtbot.keyClick(dialog.filter, Qt.Key.Key_Down)
    qtbot.keyClick(dialog.filter, Qt.Key.Key_Down)
    assert dialog.current_id() == 17
    qtbot.keyClick(dialog.filter, Qt.Key.Key_Up)
    qtbot.keyClick(dialog.filter, Qt.Key.Key_Return)
    assert dialog.chosen() == 4 and not dialog.isVisible()
    other = CategoryDialog(categories(), current=1)
    qtbot.addWidget(other)
    other.show()
    qtbot.keyClick(other.filter, Qt.Key.Key_Escape)
    assert other.chosen() is None and other.result() == CategoryDialog.DialogCode.Rejected
    numeric = CategoryDialog(categories())
    qtbot.addWidget(numeric)
    numeric.filter.setText("17")
    assert numeric.visible_ids() == [17]
    numeric.filter.setText("1")  # an exact id: 1, not 17
    assert numeric.visible_ids() == [1]
    numeric.accept_current()
    assert numeric.chosen() == 1
    empty = CategoryDialog(categories())
    qtbot.addWidget(empty)
    empty.filter.setText("zebra")
    assert empty.visible_ids() == []
    empty.accept_current()  # no match: stays open, nothing chosen
    assert empty.chosen() is None and empty.result() != CategoryDialog.DialogCode.Accepted


def test_pick_category_returns_the_typed_choice_or_none(qtbot, dialogs):
    assert pick_category(None, {}) is None
    assert len(dialogs) == 1 and "no categories" in dialogs[0][1]

    def answer(text):
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, CategoryDialog):
            dialog.filter.setText(text)
            qtbot.keyClick(dialog.filter, Qt.Key.Key_Enter)

    def fail_safe():  # never hang the run on a modal dialog
        dialog = QApplication.activeModalWidget()
        if dialog is not None:
            dialog.reject()

    guard = QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(fail_safe)
    guard.start(5000)
    try:
        QTimer.singleShot(50, lambda: answer("hor"))
        assert pick_category(None, categories(), current=1) == 17
        QTimer.singleShot(50, fail_safe)
        assert pick_category(None, categories(), current=1) is None
    finally:
        guard.stop()


def test_scroll_position_survives_updates_and_a_hidden_panel_catches_up(qtbot, panel, doc):
    for k in range(60):
        doc.create_track(k % 6, box(k % 25, k % 35, k % 25 + 3, k % 35 + 3), 1 + k % 3)
    panel.refresh_now()
    qtbot.wait(10)
    bar = panel.table.verticalScrollBar()
    bar.setValue(bar.maximum() // 2)
    value = bar.value()
    assert value > 0
    doc.paint(30, 5, box(0, 0, 2, 2))  # in place
    panel.refresh_now()
    assert bar.value() == value
    doc.delete([1])  # a reset
    panel.refresh_now()
    qtbot.wait(10)
    assert bar.value() == value and 1 not in ids_in_view(panel)
    panel.hide()
    doc.relabel([2], 3)
    qtbot.wait(250)  # the coalesced refresh came and found the panel hidden
    assert column(panel, CATEGORY)[0] == "dog"
    panel.show()
    assert column(panel, CATEGORY)[0] == "cat"


def test_a_deleted_panel_stops_listening(qtbot, doc):
    p = TracksPanel()
    p.set_document(doc)
    calls = []
    doc.subscribe(calls.append)
    p.deleteLater()
    qtbot.waitUntil(lambda: not shiboken6.isValid(p), timeout=2000)
    doc.relabel([2], 3)  # no RuntimeError from a deleted QTimer
    doc.relabel([2], 1)
    assert len(calls) == 4 and len(doc._listeners) == 1  # tracks + history per edit; the panel unsubscribed
