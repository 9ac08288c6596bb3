"""A type-to-filter category picker (relabel, new track): type a few letters or an id, Enter.

``pick_category(parent, {1: "person", 2: "dog"}, current=1)`` -> the chosen id, or None (Esc).
With ``create=doc.add_category``, a typed name that no label has is offered as "Create label
'chair'" (the last row; the only one, so Enter takes it, when nothing matches).
"""

from __future__ import annotations

from collections.abc import Callable

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
CREATE_ROLE = ID_ROLE + 2  # True on the "Create label" row
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
                 *, title: str = "Choose a category", create: Callable[[str], int] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self._chosen: int | None = None
        self._create = create
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("type a name or an id…" if create is None else "type a name (a new one creates "
                                       "a label) or an id…")
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
        self.create_item = QListWidgetItem("", self.list)
        self.create_item.setData(CREATE_ROLE, True)
        self.create_item.setHidden(True)
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
        """The ids the filter lets through, in list order (the "Create label" row is not one)."""
        return [self.list.item(r).data(ID_ROLE) for r in self._visible_rows() if self.list.item(r) is not
                self.create_item]

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(ID_ROLE) if item is not None and not item.isHidden() else None

    def new_name(self) -> str | None:
        """The name the "Create label" row offers (None when it is not shown)."""
        return None if self.create_item.isHidden() else self.filter.text().strip()

    def chosen(self) -> int | None:
        """The accepted id (None until accepted, or after Esc)."""
        return self._chosen

    # -- choosing ----------------------------------------------------------------------------------
    def accept_current(self) -> None:
        """Take the current row (the first match when none is current); nothing happens without a match."""
        rows = self._visible_rows()
        item = self.list.currentItem()
        if item is None or item.isHidden():
            if not rows:
                return
            item = self.list.item(rows[0])
        if item is self.create_item:
            try:
                cid = self._create(self.filter.text().strip()) if self._create is not None else None
            except ValueError as exc:  # e.g. a name with a line break
                QMessageBox.warning(self, self.windowTitle(), str(exc))
                return
            if cid is None:
                return
        else:
            cid = item.data(ID_ROLE)
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
        name = text.strip()
        exact = False
        for r in range(self.list.count()):
            item = self.list.item(r)
            if item is self.create_item:
                continue
            item.setHidden(not matches(text, item.data(ID_ROLE), item.data(ID_ROLE + 1)))
            exact |= item.data(ID_ROLE + 1).casefold() == name.casefold() or (
                name.isdigit() and int(name) == item.data(ID_ROLE))
        offer = self._create is not None and bool(name) and not exact
        self.create_item.setText(f"Create label '{name}'" if offer else "")
        self.create_item.setHidden(not offer)
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
                  title: str = "Choose a category", create: Callable[[str], int] | None = None) -> int | None:
    """Ask for a category; returns its id, or None (cancelled, or there are no categories to choose from).

    ``create(name) -> id``: makes a new label of a typed name (then there is always something to choose).
    """
    if not categories and create is None:
        QMessageBox.warning(parent, title, "There are no categories yet: load a model or import a file "
                            "that names its categories first.")
        return None
    dialog = CategoryDialog(categories, current, parent, title=title, create=create)
    try:
        return dialog.chosen() if dialog.exec() == QDialog.DialogCode.Accepted else None
    finally:
        dialog.deleteLater()
