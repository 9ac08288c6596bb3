"""A dismissible bar above the frame for a one-time notice (e.g. the synthetic default model on real video)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget


class NoticeBar(QFrame):
    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noticeBar")
        self.setStyleSheet("QFrame#noticeBar { background: #3a3220; border-bottom: 1px solid #f0b429; }"
                           "QFrame#noticeBar QLabel { color: #f5e6c4; padding: 6px; }")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 2, 4, 2)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.close_button = QToolButton(self)
        self.close_button.setText("✕")
        self.close_button.setToolTip("Dismiss (it is not shown again in this session)")
        self.close_button.clicked.connect(self.dismiss)
        row.addWidget(self.label, 1)
        row.addWidget(self.close_button)
        self._shown: set[str] = set()
        self.hide()

    def notify(self, text: str) -> bool:
        """Show ``text`` unless it was shown before; True when shown now. A notice arriving while another
        is up is added below it (one-time notices must not wipe each other out before they are read)."""
        if not text or text in self._shown:
            return False
        self._shown.add(text)
        current = self.label.text() if not self.isHidden() else ""
        self.label.setText(f"{current}\n\n{text}" if current else text)
        self.show()
        return True

    def dismiss(self) -> None:
        self.hide()
        self.dismissed.emit()
