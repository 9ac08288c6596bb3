"""The Labels dialog (Edit → Labels…, Ctrl+L): the project's label set, keyboard-first.

Type a name and Enter adds a label; F2 renames the selected one, Delete deletes it (only a label no
track uses), Ctrl+Up / Ctrl+Down move it; Colour… picks its colour; Load… adds the labels of a
YouTube-VIS ground truth or of a text file with one name per line. Every change goes to the
document at once (journalled and saved with the project; label edits are not undo steps, see
:mod:`core.app.document.labels`). A refused change is explained and changes nothing.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QColorDialog,
    QDialog,
    QFileDialog,
    QGridLayout,
    QInputDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.app.document import Document
from core.errors import VPPError
from vpp_gui.label_selector import swatch

ID_ROLE = int(Qt.ItemDataRole.UserRole)
LABEL_FILTERS = "Label files (*.json *.txt);;YouTube-VIS ground truth (*.json);;Text, one name per line (*.txt);;" \
                "All files (*)"


def _guarded(method):
    """Show why a change was refused (the document is unchanged then) instead of raising into Qt."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (ValueError, VPPError, OSError) as exc:
            QMessageBox.warning(self, "Labels", str(exc))
            return None

    return wrapper


class LabelsDialog(QDialog):
    """Edits ``doc``'s labels; ``folder``: where Load… starts."""

    def __init__(self, doc: Document, parent: QWidget | None = None, *, folder: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Labels")
        self.doc, self._folder = doc, folder
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("new label: type a name, Enter adds it")
        self.name.returnPressed.connect(lambda: self.add())
        self.list = QListWidget(self)
        self.list.itemDoubleClicked.connect(lambda _item: self.rename())
        buttons = QGridLayout()
        for row, (text, slot, tip) in enumerate((
                ("Add", lambda: self.add(), "Add the label typed above (Enter)"),
                ("Rename…", lambda: self.rename(), "Rename the selected label (F2); its tracks follow"),
                ("Colour…", lambda: self.recolor(), "Pick the selected label's colour"),
                ("Delete", lambda: self.delete(), "Delete the selected label (Delete); only when no track uses it"),
                ("Move up", lambda: self.move(-1), "Move the selected label up (Ctrl+Up)"),
                ("Move down", lambda: self.move(1), "Move the selected label down (Ctrl+Down)"),
                ("Load…", lambda: self.load(), "Add the labels of a YouTube-VIS ground truth or a text file "
                 "with one name per line"),
                ("Close", self.accept, ""))):
            button = QPushButton(text, self)
            button.setAutoDefault(False)  # Enter in the name field adds, it does not close
            button.setToolTip(tip)
            button.clicked.connect(lambda _checked=False, s=slot: s())
            buttons.addWidget(button, row, 0)
        buttons.setRowStretch(8, 1)  # below the eight buttons
        grid = QGridLayout()
        grid.addWidget(self.list, 0, 0)
        grid.addLayout(buttons, 0, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.name)
        layout.addLayout(grid)
        for keys, slot in (("F2", self.rename), (QKeySequence.StandardKey.Delete, self.delete),
                           ("Ctrl+Up", lambda: self.move(-1)), ("Ctrl+Down", lambda: self.move(1))):
            shortcut = QShortcut(QKeySequence(keys), self.list)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(lambda s=slot: s())
        self.resize(460, 420)
        self.refresh()
        self.name.setFocus()

    # -- reading -----------------------------------------------------------------------------------
    def refresh(self, select: int | None = None) -> None:
        """Re-read the labels (keeping the selected one, or selecting ``select``)."""
        keep = select if select is not None else self.selected_id()
        uses = Counter(t.category_id for t in self.doc.tracks.values())
        self.list.clear()
        for label in self.doc.labels:
            n = uses.get(label.id, 0)
            item = QListWidgetItem(swatch(label.color, 14), f"{label.name}    (id {label.id}, "
                                   f"{n} track{'s' if n != 1 else ''})", self.list)
            item.setData(ID_ROLE, label.id)
            item.setToolTip(f"{label.name}: id {label.id}, colour {label.color}")
            if label.id == keep:
                self.list.setCurrentItem(item)

    def selected_id(self) -> int | None:
        item = self.list.currentItem()
        return int(item.data(ID_ROLE)) if item is not None else None

    def _need_selection(self) -> int:
        label_id = self.selected_id()
        if label_id is None:
            raise ValueError("Select a label in the list first.")
        return label_id

    # -- changing ----------------------------------------------------------------------------------
    @_guarded
    def add(self, name: str | None = None) -> int | None:
        """Add ``name`` (default: the text typed above); an existing name is selected, not duplicated."""
        text = self.name.text() if name is None else name
        label_id = self.doc.add_category(text)
        self.name.clear()
        self.refresh(select=label_id)
        return label_id

    @_guarded
    def rename(self, name: str | None = None) -> None:
        label_id = self._need_selection()
        if name is None:
            name, ok = QInputDialog.getText(self, "Rename label", "New name:", text=self.doc.category_name(label_id))
            if not ok:
                return
        self.doc.rename_category(label_id, name)
        self.refresh()

    @_guarded
    def recolor(self, color: str | None = None) -> None:
        label_id = self._need_selection()
        if color is None:
            chosen = QColorDialog.getColor(QColor(self.doc.category_color(label_id)), self,
                                           f"Colour of {self.doc.category_name(label_id)}")
            if not chosen.isValid():
                return
            color = chosen.name()
        self.doc.recolor_category(label_id, color)
        self.refresh()

    @_guarded
    def delete(self) -> None:
        self.doc.delete_category(self._need_selection())
        self.refresh()

    @_guarded
    def move(self, step: int) -> None:
        label_id = self._need_selection()
        order = [label.id for label in self.doc.labels]
        k = order.index(label_id)
        j = max(0, min(len(order) - 1, k + step))
        order.insert(j, order.pop(k))
        self.doc.reorder_categories(order)
        self.refresh()

    @_guarded
    def load(self, path: str | Path | None = None) -> list[int] | None:
        """Add the labels of a YouTube-VIS ground truth (its ids kept where free) or a text file."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load a label set", self._folder, LABEL_FILTERS)
            if not path:
                return None
        before = set(self.doc.categories)
        ids = self.doc.load_categories(path)
        new = sum(i not in before for i in ids)
        self.refresh(select=ids[0] if ids else None)
        self.setWindowTitle(f"Labels: {len(ids)} loaded from {Path(path).name}, {new} new")
        return ids
