"""The evaluation dock: the clip's figures against the loaded ground truth, and a per-category table.

It shows a :class:`core.app.review.EvaluationReport` (the figures of ``vpp eval``: AP_track, AP50, AP75,
AR1, AR10, mAP_bbox, mAP_segm; -1 = undefined, shown as "—") and the state of the computation, which
the review controller runs on a worker thread: "computing…" while one runs, and the time of the last
result. The panel computes nothing itself.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

#: (report key, what the panel calls it, tooltip)
FIGURES = (("AP_track", "AP_track", "YouTube-VIS video AP (IoU .50:.05:.95)"),
           ("AP50", "AP50", "video AP at track IoU 0.5"), ("AP75", "AP75", "video AP at track IoU 0.75"),
           ("AR1", "AR1", "video AR, 1 track per video"), ("AR10", "AR10", "video AR, 10 tracks per video"),
           ("mAP_bbox", "mAP bbox", "per-frame COCO box AP"), ("mAP_segm", "mAP segm", "per-frame COCO mask AP"))
NO_GT = "Load the clip's ground truth (File → Load ground truth…) to evaluate the tracks."


def figure_text(value) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if v < 0 or v != v else f"{v:.3f}"


class EvalPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.status = QLabel(NO_GT, self)
        self.status.setWordWrap(True)
        grid = QGridLayout()
        self.values: dict[str, QLabel] = {}
        for i, (key, title, tip) in enumerate(FIGURES):
            name = QLabel(title, self)
            name.setToolTip(tip)
            value = QLabel("—", self)
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            value.setToolTip(tip)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(name, i // 2, 2 * (i % 2))
            grid.addWidget(value, i // 2, 2 * (i % 2) + 1)
            self.values[key] = value
        self.table = QTableWidget(0, 1 + len(FIGURES), self)
        self.table.setHorizontalHeaderLabels(["Category", *(t for _, t, _ in FIGURES)])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addLayout(grid)
        layout.addWidget(QLabel("Per category", self))
        layout.addWidget(self.table, 1)
        self.report = None
        self._when: float | None = None
        self._took: float | None = None

    def clear(self, message: str = NO_GT) -> None:
        self.report = None
        self._when = self._took = None
        for label in self.values.values():
            label.setText("—")
        self.table.setRowCount(0)
        self.status.setText(message)

    def set_computing(self) -> None:
        """A computation started: say so, keep the last figures on screen until it ends."""
        self.status.setText("computing…" + (f" (last result {self._stamp()})" if self._when is not None else ""))

    def set_error(self, message: str) -> None:
        self.status.setText(f"evaluation failed: {message}")

    def set_report(self, report, *, when: float | None = None, took: float | None = None) -> None:
        self.report = report
        self._when = time.time() if when is None else when
        self._took = took
        for key, label in self.values.items():
            label.setText(figure_text(report.overall.get(key, -1.0)))
        per = sorted(report.per_category.items())
        self.table.setRowCount(len(per))
        for r, (cid, figures) in enumerate(per):
            name = report.categories.get(cid, f"class {cid}")
            if report.class_agnostic:
                name = "all objects (class-agnostic)"
            self.table.setItem(r, 0, QTableWidgetItem(name))
            for c, (key, _t, _tip) in enumerate(FIGURES, start=1):
                cell = QTableWidgetItem(figure_text(figures.get(key, -1.0)))
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, cell)
        self.table.resizeColumnsToContents()
        self.status.setText(f"updated {self._stamp()}" + (f" in {took:.2f} s" if took is not None else ""))

    def figures(self) -> dict[str, str]:
        """The texts on screen per figure key (tests)."""
        return {key: label.text() for key, label in self.values.items()}

    def _stamp(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self._when))
