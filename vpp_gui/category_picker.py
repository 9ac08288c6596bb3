"""A type-to-filter category picker (relabel, new track): type a few letters or an id, Enter.

``pick_category(parent, {1: "person", 2: "dog"}, current=1)`` -> the chosen id, or None (Esc).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

ID_ROLE = int(Qt.ItemDataRole.UserRole)
_MOVES = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_PageUp: -10, Qt.Key.Key_PageDown: 10}


def matches(text: str, category_id: int, name: str) -> bool:
    """Case-insensitive substring of the name, or exactly the id ("" matches everything)."""
    t = text.strip().casefold()
    return not t or t in name.casefold() or (t.isdigit() and int(t) == category_id)


class CategoryDialog(QDialog):
    """A filter line (focused) over the list of "name (id)", sorted by name.

    Up / Down in the filter move the list's current row; Enter (or double-click, or OK) takes the
    current row, or the first match when none is current; Esc cancels.
    """

    def __init__(self, categories: dict[int, str], current: int | None = None, parent: QWidget | None = None,
                 *, title: str = "Choose a category") -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self._chosen: int | None = None
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("type a name or an id…")
        self.filter.setClearButtonEnabled(True)
        self.list = QListWidget(self)
        self.list.setUniformItemSizes(True)
        self.list.setSelectionMode(QListWidget.SelectionMode.SingleSelection)
        self.none_label = QLabel("no category matches", self)
        self.none_label.setEnabled(False)
        self.none_label.hide()
        for cid, name in sorted(categories.items(), key=lambda kv: (str(kv[1]).casefold(), int(kv[0]))):
            item = QListWidgetItem(f"{name} ({int(cid)})", self.list)
            item.setData(ID_ROLE, int(cid))
            item.setData(ID_ROLE + 1, str(name))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.list)
        layout.addWidget(self.none_label)
        layout.addWidget(buttons)

        self.filter.textChanged.connect(self._apply_filter)
        self.filter.installEventFilter(self)
        self.list.itemDoubleClicked.connect(lambda _item: self.accept_current())
        if current is not None:
            for row in range(self.list.count()):
                if self.list.item(row).data(ID_ROLE) == int(current):
                    self.list.setCurrentRow(row)
                    break
        if self.list.currentRow() < 0 and self.list.count():
            self.list.setCurrentRow(0)
        if self.list.currentItem() is not None:
            self.list.scrollToItem(self.list.currentItem())
        self.filter.setFocus()

    # -- reading -----------------------------------------------------------------------------------
    def visible_ids(self) -> list[int]:
        """The ids the filter lets through, in list order."""
        return [self.list.item(r).data(ID_ROLE) for r in self._visible_rows()]

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(ID_ROLE) if item is not None and not item.isHidden() else None

    def chosen(self) -> int | None:
        """The accepted id (None until accepted, or after Esc)."""
        return self._chosen

    # -- choosing ----------------------------------------------------------------------------------
    def accept_current(self) -> None:
        """Take the current row (the first match when none is current); nothing happens without a match."""
        cid = self.current_id()
        if cid is None:
            rows = self._visible_rows()
            if not rows:
                return
            cid = self.list.item(rows[0]).data(ID_ROLE)
        self._chosen = int(cid)
        super().accept()

    def accept(self) -> None:  # OK, and Enter through the default button
        self.accept_current()

    def reject(self) -> None:
        self._chosen = None
        super().reject()

    # -- filtering and keys ------------------------------------------------------------------------
    def _visible_rows(self) -> list[int]:
        return [r for r in range(self.list.count()) if not self.list.item(r).isHidden()]

    def _apply_filter(self, text: str) -> None:
        for r in range(self.list.count()):
            item = self.list.item(r)
            item.setHidden(not matches(text, item.data(ID_ROLE), item.data(ID_ROLE + 1)))
        rows = self._visible_rows()
        self.none_label.setVisible(not rows)
        if rows and self.current_id() is None:
            self.list.setCurrentRow(rows[0])
        if self.list.currentItem() is not None and rows:
            self.list.scrollToItem(self.list.currentItem())

    def _move(self, step: int) -> None:
        rows = self._visible_rows()
        if not rows:
            return
        row = self.list.currentRow()
        k = rows.index(row) if row in rows else (-1 if step > 0 else len(rows))
        self.list.setCurrentRow(rows[max(0, min(len(rows) - 1, k + step))])

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.filter and event.type() == QEvent.Type.KeyPress:
            key = event.key()
            if key in _MOVES:
                self._move(_MOVES[key])
                return True
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.accept_current()
                return True
        return super().eventFilter(watched, event)


def pick_category(parent: QWidget | None, categories: dict[int, str], current: int | None = None, *,
                  title: str = "Choose a category") -> int | None:
    """Ask for a category; returns its id, or None (cancelled, or there are no categories to choose from)."""
    if not categories:
        QMessageBox.warning(parent, title, "There are no categories yet: load a model or import a file "
                            "that names its categories first.")
        return None
    dialog = CategoryDialog(categories, current, parent, title=title)
    try:
        return dialog.chosen() if dialog.exec() == QDialog.DialogCode.Accepted else None
    finally:
        dialog.deleteLater()
