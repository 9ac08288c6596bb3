"""The current label: a selector above the Tracks panel. New tracks (drawn with nothing selected) take it.

The choice is remembered by *name* in the settings (``labels/current``): label ids belong to a
project, so in the next clip or project the label of that name is the current one as soon as it
exists (until a person picks another there), else its first label is. Relabelling (R) also makes
the chosen label the current one: the label used last.
The selector never takes the keyboard focus (letters are the app's shortcuts); R with no track
selected chooses it from the keyboard.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton, QWidget

from core.app.document.labels import Label
from vpp_gui.settings import Settings

SETTINGS_KEY = "labels/current"


def swatch(color: str, size: int = 12) -> QIcon:
    """A small square of ``color`` ("#rrggbb"), for lists of labels."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


class LabelSelector(QWidget):
    """"New tracks: [label ▾] [Labels…]"; ``labelChosen(id)`` when a person picks another label."""

    labelChosen = Signal(int)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._picked_here = False  # a person chose a label in this document (the remembered name yields)
        self.combo = QComboBox(self)
        self.combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.combo.setToolTip("The label of new tracks (drawn with nothing selected); R with no track selected "
                              "chooses it from the keyboard")
        self.edit_button = QToolButton(self)
        self.edit_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.edit_button.setText("Labels…")
        caption = QLabel("New tracks:", self)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(caption)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.edit_button)
        self.combo.activated.connect(self._picked)

    def set_labels(self, labels: Sequence[Label], *, fresh: bool = False) -> None:
        """Show ``labels`` (in order): the remembered name's label until a person picks one in this
        document (``fresh``: another document is open now), else the current one, else the first."""
        if fresh:
            self._picked_here = False
        keep = self.current_id()
        remembered = str(self._settings.value(SETTINGS_KEY, "", str) or "").casefold()
        self.combo.blockSignals(True)
        try:
            self.combo.clear()
            for label in labels:
                self.combo.addItem(swatch(label.color), label.name, label.id)
            ids = [label.id for label in labels]
            by_name = next((label.id for label in labels if label.name.casefold() == remembered), None)
            if by_name is not None and (not self._picked_here or keep not in ids):
                choice: int | None = by_name
            else:
                choice = keep if keep in ids else (ids[0] if ids else None)
            self.combo.setCurrentIndex(ids.index(choice) if choice is not None else -1)
        finally:
            self.combo.blockSignals(False)
        self.combo.setEnabled(bool(labels))

    def current_id(self) -> int | None:
        value = self.combo.currentData()
        return int(value) if value is not None else None

    def current_name(self) -> str:
        return self.combo.currentText()

    def set_current(self, label_id: int) -> None:
        """Make ``label_id`` the current label (and remember its name); unknown ids change nothing."""
        index = self.combo.findData(int(label_id))
        if index >= 0:
            self.combo.setCurrentIndex(index)
            self._remember(index)

    def _picked(self, index: int) -> None:
        label_id = self.combo.itemData(index)
        if label_id is not None:
            self._remember(index)
            self.labelChosen.emit(int(label_id))

    def _remember(self, index: int) -> None:
        self._picked_here = True
        self._settings.set_value(SETTINGS_KEY, self.combo.itemText(index))
