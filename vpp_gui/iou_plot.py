"""The per-frame IoU plot under the timeline: :attr:`core.app.review.Review.frame_iou` against the frame index.

Not-annotated frames are NaN and left as gaps (``connect="finite"``); every annotated frame also gets a
dot, so a sparse GT (every 5th frame) still shows. A line marks the current frame; a click emits
``seekRequested(frame)``. Hidden while no ground truth is loaded.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtGui import QColor

from vpp_gui.plots import TITLE_WIDTH, UNIT_TICKS, ClickToSeek, frame_under
from vpp_gui.theme import Theme

COLOR = "#ffe600"  # the GT outlines' yellow


class IouPlot(ClickToSeek, pg.PlotWidget):
    seekRequested = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFixedHeight(90)
        self.setMenuEnabled(False)
        self.hideButtons()
        item = self.getPlotItem()
        item.setMouseEnabled(x=True, y=False)
        item.setLabel("left", "IoU")
        item.getAxis("left").setWidth(40 + TITLE_WIDTH)  # its x axis lines up with the plots' below
        item.getAxis("bottom").setStyle(showValues=True)
        self.setYRange(0, 1.02, padding=0)
        item.getAxis("left").setTicks([UNIT_TICKS])
        self.curve = self.plot(pen=pg.mkPen(COLOR, width=1.5), connect="finite", symbol="o", symbolSize=4,
                               symbolPen=None, symbolBrush=pg.mkBrush(COLOR))
        self.cursor = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#e57373", width=1))
        self.addItem(self.cursor, ignoreBounds=True)
        self._values = np.zeros(0)
        self._count = 0
        self.scene().sigMouseClicked.connect(self._on_click)
        self.hide()

    def set_clip(self, count: int) -> None:
        self._count = count
        if self.isVisible():  # hidden, its x link would push a range computed for its stale geometry onto the
            self.setXRange(0, max(1, count - 1), padding=0.01)  # plots below (25..95 on a 60-frame clip)
        self.set_values(None)

    def set_values(self, frame_iou: np.ndarray | None) -> None:
        """Per-frame IoU (NaN: not annotated); None clears the plot."""
        if frame_iou is None:
            self._values = np.zeros(0)
            self.curve.setData([], [])
            return
        y = np.asarray(frame_iou, dtype=float)
        self._values = y
        self.curve.setData(np.arange(len(y), dtype=float), y)
        self._count = max(self._count, len(y))
        self.setXRange(0, max(1, self._count - 1), padding=0.01)

    def values(self) -> np.ndarray:
        """What is plotted, per frame (NaN where there is a gap)."""
        return self._values.copy()

    def gaps(self) -> list[int]:
        """The frames left out of the curve (not annotated)."""
        return [int(i) for i in np.flatnonzero(~np.isfinite(self._values))]

    def set_cursor(self, frame: int) -> None:
        self.cursor.setValue(frame)

    def set_theme(self, theme: Theme) -> None:
        self.setBackground(QColor(theme.plot_background))
        for name in ("left", "bottom"):
            axis = self.getPlotItem().getAxis(name)
            axis.setPen(pg.mkPen(theme.plot_foreground))
            axis.setTextPen(pg.mkPen(theme.plot_foreground))

    def frame_at(self, scene_pos) -> int | None:
        return frame_under(self.getPlotItem().getViewBox(), scene_pos, self._count)
