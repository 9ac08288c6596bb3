"""Number boxes that leave the window's letter keys alone.

A spin box or a number field is a line edit underneath, and a line edit claims every printable key
before the window's shortcuts see it (Qt asks the focused widget first, with a ``ShortcutOverride``
event). So while the propagation "N fr" box had the focus, T went into the box instead of
propagating. :func:`keep_window_keys` makes a number box claim only the keys a number is typed with
(digits, the sign, the decimal point and separator, and any ``also`` characters, the editing keys
and Ctrl / Alt combinations as before); any other printable key (T, Shift+T, A, Space…) reaches the
window's shortcut, or the box when no shortcut takes it.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QLineEdit, QWidget

NUMBER_CHARS = frozenset("0123456789.,+-")
_TYPING_MODS = Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.KeypadModifier


class _WindowKeys(QObject):
    """The event filter: a printable key that is no part of a number is not the box's to claim."""

    def __init__(self, parent: QWidget, chars: frozenset[str]) -> None:
        super().__init__(parent)
        self._chars = chars

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and self._not_a_number_key(event):
            event.ignore()  # not claimed: the window's shortcut runs (with none, the key press comes to the box)
            return True
        return False

    def _not_a_number_key(self, event) -> bool:
        text = event.text()
        if event.modifiers() & ~_TYPING_MODS or len(text) != 1 or not text.isprintable():
            return False  # Ctrl / Alt combinations, arrows, Backspace, Enter...: as the box has them
        return text not in self._chars


def keep_window_keys(box: QWidget, also: str = "") -> None:
    """Let the window's single-key shortcuts work while ``box`` (a spin box, a number field, or a widget
    holding them, like superqt's labelled slider) has the focus; digits and ``also`` still go into it."""
    keys = _WindowKeys(box, NUMBER_CHARS | frozenset(also))
    for widget in [box, *box.findChildren(QLineEdit)]:  # the focus may sit on the box or on its line edit
        widget.installEventFilter(keys)
