"""The review dock: the predictions against the loaded ground truth.

A table with one row per predicted track matched to a GT track (its GT track and the track IoU), and two
lists: *misses* (GT tracks no prediction matched) and *false tracks* (predictions that match no GT).
Clicking (or Enter on) a row emits ``predActivated(track id)`` or, for a miss, ``gtActivated(gt id)``;
the window selects the track and, as for a click in the Tracks panel, stays on the frame shown when the track
is on it, else seeks to its nearest frame (a miss: seeks to the GT track's first frame, its outline flashes). The
load buttons emit ``loadRequested("file")`` / ``loadRequested("folder")``. The panel only shows what it is given
(:meth:`set_review`); the matching is :func:`core.app.review.review_tracks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

ID_ROLE = int(Qt.ItemDataRole.UserRole) + 1
SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 2
MATCH_COLUMNS = ("Track", "GT", "Category", "Track IoU")
NO_GT_TEXT = "No ground truth loaded. File → Load ground truth… (Ctrl+Shift+G): a YouTube-VIS GT JSON or a " \
             "folder of DAVIS PNG masks for this clip."


class _NumItem(QTableWidgetItem):
    """A table cell showing ``text`` that sorts by a number."""

    def __init__(self, value: float | int, text: str) -> None:
        super().__init__(text)
        self.setData(SORT_ROLE, value)
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        mine, theirs = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if mine is None or theirs is None:
            return super().__lt__(other)
        return mine < theirs


class ReviewPanel(QWidget):
    loadRequested = Signal(str)  # "file" (a YTVIS GT JSON) or "folder" (DAVIS PNGs)
    predActivated = Signal(int)  # a predicted track's id
    gtActivated = Signal(int)  # a GT track's id (a miss)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.load_button = QPushButton("Load GT JSON…", self)
        self.load_button.setToolTip("Load the clip's YouTube-VIS ground-truth JSON (Ctrl+Shift+G)")
        self.load_button.clicked.connect(lambda: self.loadRequested.emit("file"))
        self.load_folder_button = QPushButton("Load GT folder…", self)
        self.load_folder_button.setToolTip("Load a folder of DAVIS PNG masks (one per frame, or some frames)")
        self.load_folder_button.clicked.connect(lambda: self.loadRequested.emit("folder"))
        self.info = QLabel(NO_GT_TEXT, self)
        self.info.setWordWrap(True)
        self.matches = QTableWidget(0, len(MATCH_COLUMNS), self)
        self.matches.setHorizontalHeaderLabels(list(MATCH_COLUMNS))
        self.matches.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.matches.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.matches.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.matches.verticalHeader().setVisible(False)
        self.matches.horizontalHeader().setStretchLastSection(True)
        self.matches.setSortingEnabled(True)
        self.matches.cellClicked.connect(lambda r, _c: self._activate_row(r))
        self.matches.cellActivated.connect(lambda r, _c: self._activate_row(r))
        self.misses = QListWidget(self)
        self.misses.setToolTip("Ground-truth tracks that no prediction matches (click: show it)")
        self.false_tracks = QListWidget(self)
        self.false_tracks.setToolTip("Predicted tracks that match no ground-truth track (click: select it)")
        for widget, signal in ((self.misses, self.gtActivated), (self.false_tracks, self.predActivated)):
            widget.itemClicked.connect(lambda item, s=signal: s.emit(int(item.data(ID_ROLE))))
            widget.itemActivated.connect(lambda item, s=signal: s.emit(int(item.data(ID_ROLE))))
        self.matches_title = QLabel("Matched tracks", self)
        self.misses_title = QLabel("Misses", self)
        self.false_title = QLabel("False tracks", self)

        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.load_button)
        row.addWidget(self.load_folder_button)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addWidget(self.info)
        layout.addWidget(self.matches_title)
        layout.addWidget(self.matches, 3)
        lists = QHBoxLayout()
        for title, widget in ((self.misses_title, self.misses), (self.false_title, self.false_tracks)):
            col = QVBoxLayout()
            col.addWidget(title)
            col.addWidget(widget)
            lists.addLayout(col)
        layout.addLayout(lists, 2)
        self.set_review(None)

    # -- showing ------------------------------------------------------------------------------------
    def set_gt_info(self, text: str) -> None:
        self.info.setText(text or NO_GT_TEXT)

    def set_review(self, review, *, pred_name: Callable[[int], str] = str,
                   gt_name: Callable[[int], str] = str) -> None:
        """Show a :class:`core.app.review.Review` (None: empty lists). ``pred_name(id)`` / ``gt_name(id)``
        give the text after the id (category, frames)."""
        matches = list(review.matches) if review is not None else []
        self.matches.setSortingEnabled(False)
        self.matches.setRowCount(len(matches))
        for r, m in enumerate(matches):
            iou = float(m.iou)
            cells = (_NumItem(int(m.pred_id), f"#{m.pred_id}"), _NumItem(int(m.gt_id), f"GT #{m.gt_id}"),
                     QTableWidgetItem(pred_name(int(m.pred_id))),
                     _NumItem(iou if math.isfinite(iou) else -1.0, f"{iou:.3f}" if math.isfinite(iou) else "—"))
            for c, cell in enumerate(cells):
                cell.setData(ID_ROLE, int(m.pred_id))
                self.matches.setItem(r, c, cell)
        self.matches.setSortingEnabled(True)
        self.matches.resizeColumnsToContents()
        self._fill(self.misses, list(review.misses) if review is not None else [], lambda g: f"GT #{g}  {gt_name(g)}")
        self._fill(self.false_tracks, list(review.false_tracks) if review is not None else [],
                   lambda p: f"#{p}  {pred_name(p)}")
        self.matches_title.setText(f"Matched tracks ({len(matches)})")
        self.misses_title.setText(f"Misses: GT without a prediction ({self.misses.count()})")
        self.false_title.setText(f"False tracks: no GT ({self.false_tracks.count()})")

    @staticmethod
    def _fill(widget: QListWidget, ids: list[int], text: Callable[[int], str]) -> None:
        widget.clear()
        for i in ids:
            item = QListWidgetItem(text(int(i)))
            item.setToolTip(item.text())  # the whole text where a narrow dock elides it
            item.setData(ID_ROLE, int(i))
            widget.addItem(item)

    # -- reading (tests, keyboard) ------------------------------------------------------------------
    def matched_ids(self) -> list[tuple[int, int]]:
        """(predicted id, GT id) of every row, in the table's order."""
        out = []
        for r in range(self.matches.rowCount()):
            out.append((int(self.matches.item(r, 0).data(ID_ROLE)),
                        int(self.matches.item(r, 1).data(SORT_ROLE))))
        return out

    def miss_ids(self) -> list[int]:
        return [int(self.misses.item(i).data(ID_ROLE)) for i in range(self.misses.count())]

    def false_ids(self) -> list[int]:
        return [int(self.false_tracks.item(i).data(ID_ROLE)) for i in range(self.false_tracks.count())]

    def _activate_row(self, row: int) -> None:
        item = self.matches.item(row, 0)
        if item is not None:
            self.predActivated.emit(int(item.data(ID_ROLE)))
