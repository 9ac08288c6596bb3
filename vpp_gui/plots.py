"""Per-frame plots under the timeline: kept ratio, ms per frame, GFLOPs and each track's score.

The x axes are linked and show frame indices; a line marks the current frame; a click on any plot
emits ``seekRequested(frame)``. ``set_results`` is cheap to call often: the window throttles it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor

from vpp_gui.overlay import track_color
from vpp_gui.theme import Theme

if TYPE_CHECKING:  # annotations only: the GUI gets results from core.app's run control
    from core.results import ClipResults

SERIES = (("keep_ratio", "kept ratio", "#4fc3f7"), ("ms", "ms / frame", "#ffb74d"), ("gflops", "GFLOPs", "#81c784"))
TITLE_WIDTH = 78
MAX_TRACK_CURVES = 12
UNIT_TICKS = [(0.0, "0"), (0.5, "0.5"), (1.0, "1")]  # the y ticks of the 0..1 plots


class FewTicksAxis(pg.AxisItem):
    """A y axis for a plot a few dozen pixels high: two or three round ticks, no minor ones."""

    def tickSpacing(self, minVal, maxVal, size):  # pyqtgraph names the override
        span = maxVal - minVal
        if not np.isfinite(span) or span <= 0:
            return super().tickSpacing(minVal, maxVal, size)
        raw = span / 3.0  # a step over a third of the span: at most three ticks
        mag = 10.0 ** np.floor(np.log10(raw))
        step = next(k * mag for k in (1.0, 2.0, 5.0, 10.0) if k * mag > raw)
        return [(step, 0.0)]


class ClickToSeek:
    """For a plot of frames: a left click on one emits ``seekRequested(frame)``. The plot connects its scene's
    ``sigMouseClicked`` to :meth:`_on_click` and has ``_count`` (frames) and ``frame_at(scene_pos)``."""

    def _on_click(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._count == 0:
            return
        frame = self.frame_at(event.scenePos())
        if frame is not None:
            self.seekRequested.emit(frame)


class PlotsPanel(ClickToSeek, pg.GraphicsLayoutWidget):
    seekRequested = Signal(int)
    frameAxisChanged = Signal()  # where frames are drawn moved: zoom, pan, resize (see frame_x)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(150)
        self.ci.layout.setSpacing(2)
        self.ci.setContentsMargins(2, 2, 2, 2)
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.cursors: list[pg.InfiniteLine] = []
        self.titles: list[pg.LabelItem] = []
        first = None
        names = [*SERIES, ("tracks", "track scores", None)]
        for row, (key, title, color) in enumerate(names):
            title_item = self.addLabel(title, row=row, col=0, justify="right", size="9pt")
            title_item.setFixedWidth(TITLE_WIDTH)
            self.titles.append(title_item)
            plot = self.addPlot(row=row, col=1, axisItems={"left": FewTicksAxis("left")})
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setMouseEnabled(x=True, y=False)
            plot.enableAutoRange(x=False)
            # no grid: pyqtgraph draws it with the axes on every repaint (~30 ms of 38 for these
            # four plots at 1080p), and the plots repaint while inference runs
            plot.getAxis("left").setWidth(40)
            plot.getAxis("left").enableAutoSIPrefix(False)
            if row < len(names) - 1:
                plot.getAxis("bottom").setStyle(showValues=False)
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            if color is not None:
                self.curves[key] = plot.plot(pen=pg.mkPen(color, width=1.5))
            cursor = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#e57373", width=1))
            plot.addItem(cursor, ignoreBounds=True)
            self.cursors.append(cursor)
            self.plots[key] = plot
        self.plots["keep_ratio"].setYRange(0, 1.02, padding=0)
        self.plots["tracks"].setYRange(0, 1.0, padding=0.02)
        for key in ("keep_ratio", "tracks"):
            self.plots[key].getAxis("left").setTicks([UNIT_TICKS])
        self.plots["tracks"].setLabel("bottom", "frame")
        self._track_curves: dict[int, pg.PlotDataItem] = {}
        self._count = 0
        self.hint = pg.TextItem("", color="#9e9e9e", anchor=(0, 0))  # why a plot is empty (see set_results)
        self.plots["keep_ratio"].addItem(self.hint, ignoreBounds=True)
        self.plots["keep_ratio"].sigXRangeChanged.connect(self._place_hint)
        view = self.plots["keep_ratio"].getViewBox()
        view.sigXRangeChanged.connect(self.frameAxisChanged)
        view.sigResized.connect(self.frameAxisChanged)
        self.scene().sigMouseClicked.connect(self._on_click)

    def frame_x(self, frame: float, widget) -> float | None:
        """The x in ``widget``'s coordinates where the plots draw ``frame`` (None while the plots are hidden)."""
        if not self.isVisible():
            return None
        scene = self.plots["keep_ratio"].getViewBox().mapViewToScene(QPointF(frame, 0.0))
        return float(widget.mapFromGlobal(self.mapToGlobal(self.mapFromScene(scene))).x())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.frameAxisChanged.emit()

    def set_clip(self, count: int) -> None:
        self._count = count
        self.clear_results()
        self.plots["keep_ratio"].setXRange(0, max(1, count - 1), padding=0.01)

    def clear_results(self) -> None:
        self.hint.setText("")
        for curve in self.curves.values():
            curve.setData([], [])
        for curve in self._track_curves.values():
            self.plots["tracks"].removeItem(curve)
        self._track_curves.clear()

    def set_results(self, results: ClipResults | None, *, missing_hint: str = "") -> None:
        """Plot ``results`` (a pass's, or a document's tracks); ``missing_hint`` is shown where the kept
        ratio, ms and GFLOPs plots have no value at all (e.g. a project: they are not saved in it)."""
        if results is None:
            self.clear_results()
            return
        x = np.arange(results.num_frames, dtype=float)
        series = results.series()
        empty = True
        for key, curve in self.curves.items():
            y = series[key]
            done = np.isfinite(y)
            empty = empty and not done.any()
            curve.setData(x[done], y[done], skipFiniteCheck=True)
        self.hint.setText(missing_hint if empty else "")
        self._place_hint()
        tracks = results.track_scores(MAX_TRACK_CURVES)
        for tid in [t for t in self._track_curves if t not in tracks]:
            self.plots["tracks"].removeItem(self._track_curves.pop(tid))
        for tid, scores in tracks.items():
            curve = self._track_curves.get(tid)
            if curve is None:
                curve = self.plots["tracks"].plot(pen=pg.mkPen(track_color(tid), width=1.5), connect="finite",
                                                  name=f"#{tid}")
                self._track_curves[tid] = curve
            curve.setData(x, scores)
        top = np.nanmax([np.nanmax(s) for s in tracks.values()]) if tracks else 1.0
        self.plots["tracks"].setYRange(0, max(0.05, float(top) * 1.1), padding=0)

    def _place_hint(self, *_args) -> None:
        left, right = self.plots["keep_ratio"].viewRange()[0]
        self.hint.setPos(left + 0.01 * (right - left), 1.0)

    def set_cursor(self, frame: int) -> None:
        for cursor in self.cursors:
            cursor.setValue(frame)

    def set_theme(self, theme: Theme) -> None:
        self.setBackground(QColor(theme.plot_background))
        for plot in self.plots.values():
            for name in ("left", "bottom"):
                axis = plot.getAxis(name)
                axis.setPen(pg.mkPen(theme.plot_foreground))
                axis.setTextPen(pg.mkPen(theme.plot_foreground))
        for title in self.titles:
            title.setText(title.text, color=theme.plot_foreground)

    def frame_at(self, scene_pos) -> int | None:
        """The frame under a scene position, if it is inside one of the plots."""
        for plot in self.plots.values():
            frame = frame_under(plot.getViewBox(), scene_pos, self._count)
            if frame is not None:
                return frame
        return None



def frame_under(view_box: pg.ViewBox, scene_pos, count: int) -> int | None:
    """The frame (x axis = frame index, clamped to ``0..count-1``) under ``scene_pos``, if inside ``view_box``."""
    if not view_box.sceneBoundingRect().contains(scene_pos):
        return None
    return int(np.clip(round(view_box.mapSceneToView(scene_pos).x()), 0, max(0, count - 1)))
