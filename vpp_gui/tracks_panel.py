"""The tracks panel: a sortable table of every track of a document (id, category, score, frames, review...).

A :class:`TracksModel` (one row per :class:`core.app.document.TrackRow`) behind a sort proxy and a
:class:`QTableView`. Refreshes are coalesced (at most one per :data:`REFRESH_MS`) and cheap while a
pass runs: changed rows are re-announced (``dataChanged``) and new tracks inserted, so the
selection, the sort and the scroll position stay as they are; only removed (or reused) ids reset
the model, and the selection is restored by id after a reset.

The table is keyboard-friendly without stealing the app's shortcuts: single letters, digits, Space
and Left / Right go on to the window; Up / Down / PageUp / PageDown move, Enter seeks to the track.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

import shiboken6
from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QGuiApplication, QKeyEvent, QPalette
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableView, QVBoxLayout, QWidget

from core.app.document import DocEvent, Document, TrackRow
from vpp_gui.overlay import track_color

#: Coalescing delay of :meth:`TracksPanel.refresh` (ms).
REFRESH_MS = 100
#: ``data(index, TRACK_ID_ROLE)``: the row's track id (int), in every column.
TRACK_ID_ROLE = int(Qt.ItemDataRole.UserRole) + 1

COLUMNS = ("ID", "Category", "Score", "First", "Last", "Frames", "Review", "Edited", "Visible")
ID, CATEGORY, SCORE, FIRST, LAST, FRAMES, REVIEW, EDITED, VISIBLE = range(len(COLUMNS))
HEADER_TIPS = {
    ID: "Track id (its colour in the view)", CATEGORY: "Label (with its colour; Ctrl+L edits the labels)",
    SCORE: "Mean score over the track's frames",
    FIRST: "First frame of the track", LAST: "Last frame of the track", FRAMES: "Number of frames with a mask",
    REVIEW: "Review state (A accepts, X rejects)", EDITED: "✎: drawn, imported or edited by a person",
    VISIBLE: "Shown or hidden in the view (Ctrl+H)",
}
REVIEW_TEXT = {"unreviewed": "unreviewed", "accepted": "✓ accepted", "rejected": "✗ rejected"}
#: The widest text of each column (the Category column stretches), its padding, the sorted column's arrow
#: and the ID column's colour swatch: what :meth:`TracksPanel._fit_columns` sizes the columns by.
COLUMN_SAMPLES = (("0000",), (), ("0.00",), ("00000",), ("00000",), ("00000",), tuple(REVIEW_TEXT.values()), ("✎",),
                  ("hidden", "shown"))
CELL_PAD, SORT_ARROW, ICON_ROOM = 14, 16, 20
REVIEW_ORDER = {"unreviewed": 0, "accepted": 1, "rejected": 2}
_NUMERIC = (ID, SCORE, FIRST, LAST, FRAMES)
_EVENTS = frozenset({"tracks", "view", "categories", "results"})
_SORT_KEYS = (lambda r: r.id, lambda r: r.category.casefold(), lambda r: r.score, lambda r: r.first,
              lambda r: r.last, lambda r: r.num_frames, lambda r: REVIEW_ORDER.get(r.review, 3),
              lambda r: not by_person(r), lambda r: r.hidden)


def by_person(row: TrackRow) -> bool:
    """The ✎ mark: a person drew, imported or edited the track."""
    return row.edited or row.origin != "model"


def edit_reason(row: TrackRow) -> str:
    """Tooltip of the ✎ mark ("" when the track is the model's, unchanged)."""
    parts = {"user": ["drawn by a person"], "import": ["imported"]}.get(row.origin, [])
    if row.edited:
        parts.append("edited by a person")
    return ", ".join(parts)


def summary_text(rows: Sequence[TrackRow]) -> str:
    n = len(rows)
    person = sum(by_person(r) for r in rows)
    rejected = sum(r.review == "rejected" for r in rows)
    return f"{n} track{'s' if n != 1 else ''} · {person} by a person · {rejected} rejected"


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indices as (first, last) runs of consecutive ones."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


class TracksModel(QAbstractTableModel):
    """The rows of :meth:`Document.rows` (in id order), plus each track's note for the tooltip."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._rows: list[TrackRow] = []
        self._notes: dict[int, str] = {}
        self._pos: dict[int, int] = {}
        self._colors: dict[int, QColor] = {}
        self._label_colors: dict[int, QColor] = {}

    # -- updating ----------------------------------------------------------------------------------
    def set_rows(self, rows: Sequence[TrackRow], notes: dict[int, str]) -> bool:
        """Take new rows; returns True when the model was reset (tracks went away or ids were reused).

        Rows of known ids that changed are announced with ``dataChanged``; new ids after the known
        ones (a running pass) are inserted; anything else resets the model.
        """
        rows, old_ids, new_ids = list(rows), [r.id for r in self._rows], [r.id for r in rows]
        n = len(old_ids)
        if new_ids[:n] != old_ids:
            self.beginResetModel()
            self._rows, self._notes, self._pos = rows, dict(notes), {t: i for i, t in enumerate(new_ids)}
            self.endResetModel()
            return True
        changed = [i for i, (old, new) in enumerate(zip(self._rows, rows[:n]))
                   if old != new or self._notes.get(new.id, "") != notes.get(new.id, "")]
        self._rows[:n], self._notes = rows[:n], dict(notes)
        for a, b in _runs(changed):
            self.dataChanged.emit(self.index(a, 0), self.index(b, len(COLUMNS) - 1))
        if len(rows) > n:
            self.beginInsertRows(QModelIndex(), n, len(rows) - 1)
            self._rows = rows
            self._pos.update({t: n + k for k, t in enumerate(new_ids[n:])})
            self.endInsertRows()
        return False

    def set_label_colors(self, colors: dict[int, str]) -> None:
        """The labels' colours (id -> "#rrggbb"), shown beside each row's label; a change redraws that column."""
        if {k: QColor(v) for k, v in colors.items()} == self._label_colors:
            return
        self._label_colors = {k: QColor(v) for k, v in colors.items()}
        if self._rows:
            self.dataChanged.emit(self.index(0, CATEGORY), self.index(len(self._rows) - 1, CATEGORY))

    # -- reading -----------------------------------------------------------------------------------
    def row_of(self, track_id: int) -> int | None:
        return self._pos.get(int(track_id))

    def track_row(self, row: int) -> TrackRow:
        return self._rows[row]

    def sort_key(self, row: int, column: int):
        """A comparable key of the cell (None: empty, sorted last either way)."""
        return _SORT_KEYS[column](self._rows[row])

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return HEADER_TIPS[section]
        return None

    def flags(self, index):
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        r, col = self._rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(r, col)
        if role == TRACK_ID_ROLE:
            return r.id
        if role == Qt.ItemDataRole.DecorationRole and col == ID:
            color = self._colors.get(r.id)
            if color is None:
                color = self._colors[r.id] = QColor(*track_color(r.id))
            return color
        if role == Qt.ItemDataRole.DecorationRole and col == CATEGORY:
            return self._label_colors.get(r.category_id)
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == EDITED and by_person(r):
                return edit_reason(r)
            return self._notes.get(r.id) or None
        if role == Qt.ItemDataRole.ForegroundRole and r.review == "rejected":
            return QGuiApplication.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        if role == Qt.ItemDataRole.FontRole and r.hidden:
            font = QFont()
            font.setItalic(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and col in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _text(r: TrackRow, col: int) -> str:
        if col == ID:
            return str(r.id)
        if col == CATEGORY:
            return r.category
        if col == SCORE:
            return f"{r.score:.2f}"
        if col in (FIRST, LAST):
            value = r.first if col == FIRST else r.last
            return "—" if value is None else str(value)
        if col == FRAMES:
            return str(r.num_frames)
        if col == REVIEW:
            return REVIEW_TEXT.get(r.review, r.review)
        if col == EDITED:
            return "✎" if by_person(r) else ""
        return "hidden" if r.hidden else "shown"


class TracksProxy(QSortFilterProxyModel):
    """Sorts on the model's keys: numbers as numbers, empty cells last in both orders, ties by id."""

    def lessThan(self, left, right) -> bool:
        src = self.sourceModel()
        col = left.column()
        a, b = src.sort_key(left.row(), col), src.sort_key(right.row(), col)
        if a is None or b is None:
            if (a is None) == (b is None):
                return src.track_row(left.row()).id < src.track_row(right.row()).id
            descending = self.sortOrder() == Qt.SortOrder.DescendingOrder
            return (a is None) == descending  # ascending: empty is the largest; descending: the smallest
        if a != b:
            return a < b
        return src.track_row(left.row()).id < src.track_row(right.row()).id


class TrackTable(QTableView):
    """The view: Enter activates the current row; letters, digits, Space, Left / Right go to the window."""

    rowActivated = Signal(QModelIndex)
    _PASS_ON = frozenset({Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Space})

    def keyboardSearch(self, search: str) -> None:  # typing must not jump to rows: letters are shortcuts
        return

    def event(self, event) -> bool:
        # The window binds Return / Enter (close polygon); in the table they mean "go to this track".
        if event.type() == QEvent.Type.ShortcutOverride and self._is_enter(event):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if self._is_enter(event):
            if self.currentIndex().isValid():
                self.rowActivated.emit(self.currentIndex())
            event.accept()
            return
        mods = event.modifiers() & ~(Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.KeypadModifier)
        text = event.text()
        if event.key() in self._PASS_ON or (not mods and text and text.isprintable()):
            event.ignore()  # not ours: let the window's keys work while the table has the focus
            return
        super().keyPressEvent(event)

    @staticmethod
    def _is_enter(event) -> bool:
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        return event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and mods == Qt.KeyboardModifier.NoModifier


class TracksPanel(QWidget):
    """Every track of the document; click or Enter selects a track (the window seeks to it when it is not on
    the frame shown), Ctrl / Shift+click select several.

    The panel follows the document itself (it subscribes to its events and refreshes, coalesced);
    :meth:`refresh` may also be called directly, as often as wanted.
    """

    trackActivated = Signal(int)
    selectionChanged = Signal(tuple)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._doc: Document | None = None
        self._subscription: _Subscription | None = None
        self._emitted: tuple[int, ...] = ()
        self._quiet = 0
        self._stale = False

        self.summary = QLabel("no clip open", self)
        self.model = TracksModel(self)
        self.proxy = TracksProxy(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setDynamicSortFilter(True)
        self.table = TrackTable(self)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(ID, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setTabKeyNavigation(False)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setShowGrid(False)
        self.table.verticalHeader().hide()
        fm = self.table.fontMetrics()
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(fm.height() + 6)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        header.setHighlightSections(False)
        header.setSectionResizeMode(CATEGORY, QHeaderView.ResizeMode.Stretch)
        self._fit_columns()
        header.sortIndicatorChanged.connect(lambda *_: self._fit_columns())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.summary)
        layout.addWidget(self.table)

        self._timer = QTimer(self, singleShot=True, interval=REFRESH_MS)
        self._timer.timeout.connect(self._on_timer)
        self.table.clicked.connect(self._activate)
        self.table.rowActivated.connect(self._activate)
        self.table.selectionModel().selectionChanged.connect(self._selection_moved)
        self.table.selectionModel().currentChanged.connect(self._selection_moved)

    def _fit_columns(self) -> None:
        """Each column as wide as its header or its widest cell, not wider: the sort arrow's room only in the
        sorted column (every header reserves it otherwise, which pushed the last columns out of a side dock)."""
        fm, header = self.table.fontMetrics(), self.table.horizontalHeader()
        sorted_col = header.sortIndicatorSection()
        for col, samples in enumerate(COLUMN_SAMPLES):
            if col == CATEGORY:
                continue
            title = fm.horizontalAdvance(COLUMNS[col]) + (SORT_ARROW if col == sorted_col else 0)
            cells = max(fm.horizontalAdvance(t) for t in samples) + (ICON_ROOM if col == ID else 0)
            header.resizeSection(col, max(title, cells) + CELL_PAD)

    def preferred_width(self) -> int:
        """Wide enough to show every column without a horizontal scroll bar (the window sizes its dock so)."""
        header = self.table.horizontalHeader()
        fixed = sum(header.sectionSize(c) for c in range(len(COLUMNS)) if c != CATEGORY)
        category = self.table.fontMetrics().horizontalAdvance(COLUMNS[CATEGORY]) + CELL_PAD + ICON_ROOM
        return (fixed + category + self.table.verticalScrollBar().sizeHint().width()
                + 2 * self.table.frameWidth() + 4)

    def add_header(self, widget: QWidget) -> None:
        """Put ``widget`` above the table (the current-label selector)."""
        self.layout().insertWidget(0, widget)

    # -- document ----------------------------------------------------------------------------------
    def set_document(self, doc: Document | None) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        self._doc = doc
        if doc is not None:
            self._subscription = _Subscription(self, doc)
        self.refresh_now()

    def refresh(self, ids: Iterable[int] | None = None) -> None:
        """Re-read the document soon (coalesced). ``ids`` (the tracks that changed) is a hint only:
        every row is compared, and only the changed ones are redrawn."""
        if not self._timer.isActive():
            self._timer.start()

    def refresh_now(self) -> None:
        """Re-read the document at once, keeping the selection, the current row, the sort and the scroll."""
        self._timer.stop()
        self._stale = False
        doc = self._doc
        rows = doc.rows() if doc is not None else []
        notes = {tid: t.note for tid, t in doc.tracks.items()} if doc is not None else {}
        selected, current = self.selected(), self._current_id()
        self.model.set_label_colors({label.id: label.color for label in doc.labels} if doc is not None else {})
        self._quiet += 1
        try:
            if self.model.set_rows(rows, notes):
                self._restore(selected, current)
        finally:
            self._quiet -= 1
        self.summary.setText(summary_text(rows) if doc is not None else "no clip open")
        self._announce()

    def _on_timer(self) -> None:
        if not self.isVisible():  # a hidden dock: catch up when it is shown again
            self._stale = True
            return
        self.refresh_now()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh_now()

    # -- selection ---------------------------------------------------------------------------------
    def selected(self) -> tuple[int, ...]:
        """The selected track ids: the current (last clicked) one first, then the others in table order."""
        rows = sorted(self.table.selectionModel().selectedRows(), key=lambda i: i.row())
        ids = [int(i.data(TRACK_ID_ROLE)) for i in rows]
        current = self._current_id()
        if current in ids:
            ids.remove(current)
            ids.insert(0, current)
        return tuple(ids)

    def select(self, ids: Sequence[int]) -> None:
        """Select these tracks (the first becomes current) and scroll to them; unknown ids are skipped.

        Emits ``selectionChanged`` only if the selection changed, never ``trackActivated``.
        """
        if self._timer.isActive() or self._stale:  # e.g. a track made a moment ago
            self.refresh_now()
        self._quiet += 1
        try:
            self._restore(tuple(int(i) for i in ids), int(ids[0]) if len(ids) else None)
        finally:
            self._quiet -= 1
        index = self.table.currentIndex()
        if index.isValid() and self.selected():
            self.table.scrollTo(index)
        self._announce()

    def _proxy_index(self, track_id: int, column: int = 0) -> QModelIndex:
        row = self.model.row_of(track_id)
        if row is None:
            return QModelIndex()
        return self.proxy.mapFromSource(self.model.index(row, column))

    def _current_id(self) -> int | None:
        index = self.table.selectionModel().currentIndex()
        return int(index.data(TRACK_ID_ROLE)) if index.isValid() else None

    def _restore(self, ids: Sequence[int], current: int | None) -> None:
        sm = self.table.selectionModel()
        selection = QItemSelection()
        for tid in ids:
            index = self._proxy_index(tid)
            if index.isValid():
                selection.select(index, index)
        flags = QItemSelectionModel.SelectionFlag
        cur = self._proxy_index(current) if current is not None else QModelIndex()
        if cur.isValid():
            sm.setCurrentIndex(cur, flags.NoUpdate)
        elif not selection.isEmpty():
            sm.setCurrentIndex(selection.indexes()[0], flags.NoUpdate)
        else:
            sm.setCurrentIndex(QModelIndex(), flags.NoUpdate)
        sm.select(selection, flags.ClearAndSelect | flags.Rows)

    def _selection_moved(self, *_args) -> None:
        if not self._quiet:
            self._announce()

    def _announce(self) -> None:
        ids = self.selected()
        if ids != self._emitted:
            self._emitted = ids
            self.selectionChanged.emit(ids)

    def _activate(self, index: QModelIndex | QPersistentModelIndex) -> None:
        if index.isValid():
            self.trackActivated.emit(int(index.data(TRACK_ID_ROLE)))


class _Subscription:
    """Forwards the document's events to the panel, held weakly; a deleted panel unsubscribes itself."""

    def __init__(self, panel: TracksPanel, doc: Document) -> None:
        self._panel = weakref.ref(panel)
        self._unsubscribe = doc.subscribe(self)

    def __call__(self, event: DocEvent) -> None:
        panel = self._panel()
        if panel is None or not shiboken6.isValid(panel):
            self.close()
        elif event.kind in _EVENTS:
            panel.refresh(event.tracks)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
