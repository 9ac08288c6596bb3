"""Status bar widgets: the measured numbers of the shown frame, the run's progress with Cancel, notes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

if TYPE_CHECKING:  # annotations only: the GUI gets results from core.app's run control
    from core.results import CompactFrame


def frame_stats_text(frame: CompactFrame | None, preview: bool = False) -> str:
    if frame is None:
        return "no result for this frame yet"
    text = (f"kept {_measured(frame.keep_ratio, '.1%')}  ·  {_measured(frame.gflops, '.2f')} GFLOPs  ·  "
            f"{_measured(frame.ms, '.0f')} ms/frame  ·  "
            f"{frame.num_instances} instance{'s' if frame.num_instances != 1 else ''}")
    return text + ("  ·  preview" if preview else "")


def _measured(value: float, spec: str) -> str:
    """A measured figure, or an em dash where the frame carries none (a document opened without a run)."""
    return format(value, spec) if math.isfinite(value) else "\u2014"


class StatusPanel(QWidget):
    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 4, 0)
        self.note = QLabel("", self)
        self.note.setObjectName("untrainedNote")
        self.note.hide()
        self.stats = QLabel("", self)
        self.stats.setToolTip("Measured on the shown frame: kept token ratio, model GFLOPs, wall-clock ms")
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.progress.setFormat("inference %v / %m")
        self.cancel = QPushButton("Cancel", self)
        self.cancel.setToolTip("Stop the running inference (Esc)")
        self.cancel.clicked.connect(self.cancelRequested)
        row.addWidget(self.note)
        row.addWidget(self.stats)
        row.addWidget(self.progress)
        row.addWidget(self.cancel)
        self.set_running(False)

    def set_stats(self, frame: CompactFrame | None, preview: bool = False) -> None:
        self.stats.setText(frame_stats_text(frame, preview))

    def set_note(self, text: str, color: str = "#f0b429") -> None:
        self.note.setText(text)
        self.note.setStyleSheet(f"QLabel#untrainedNote {{ color: {color}; font-weight: bold; padding-right: 8px; }}")
        self.note.setVisible(bool(text))

    def set_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel.setVisible(running)

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(done)
