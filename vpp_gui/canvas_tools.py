"""The mask tools' canvas overlay: turns mouse input on the frame into tool gestures and draws them live.

:class:`ToolOverlay` lies in the frame view's ViewBox above the mask layers and covers the frame's
rectangle, in the same coordinates as the ImageItems (item x, y in 0..width, 0..height; frame pixel
(col, row) covers [col, col + 1) x [row, row + 1)). It never edits data: it emits gestures and the
window applies them to the document.

Coordinates in the signals are frame pixels with pixel centres at whole numbers (the convention of
:func:`core.app.document.tracks.draw_stroke`, ``brush_mask`` and ``polygon_mask``, which round), clamped
to the frame: a stroke or polygon point is ``item position - 0.5``; a click is the pixel's index
(whole numbers, so ``int()`` and ``round()`` agree). A box is the exception: its edges are item
positions clamped to the frame (pixel col covers [col, col + 1)), the end-exclusive box of
:mod:`core.app.document.grabcut`.

Polygon clicks: every click adds a point, however fast it follows the last one. Qt reports the
second of two quick clicks as a double-click (pyqtgraph: ``ev.double()``) *instead of* a click;
treating that as "close" (as this overlay once did) dropped the point and closed the polygon
half-drawn, so quick clicking split one polygon into several, each its own undo step. A polygon
closes only by Enter (:meth:`close_polygon`) or a click on its first point.

Live drawing is cheap: a stroke is drawn segment by segment into one ``[H, W]`` uint8 canvas with
:func:`~core.app.document.tracks.draw_stroke`; a 2-entry lookup table (transparent / the colour) turns only
the new segment's box into an ``[H, W, 4]`` RGBA buffer that a child ImageItem shows, and only that
box is repainted. (An Indexed8 image of the canvas would need no buffer, but Qt converts all of it on
every paint: ~4x slower to draw than RGBA.)
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem

from core.app.document.tracks import draw_stroke

Tool = Literal["select", "brush", "eraser", "polygon", "box", "fill"]
TOOLS: tuple[Tool, ...] = get_args(Tool)
PAINT_TOOLS = ("brush", "eraser")
MIN_RADIUS, MAX_RADIUS = 1, 500
RADIUS_STEP = 1.25
CLOSE_DISTANCE_PX = 8.0  # a polygon click this near (screen px) to the first point closes it
STROKE_ALPHA = 153  # ~60 %
ERASER_RGBA = (255, 255, 255, 150)
HINT_RGBA = {"fg": (40, 230, 70, 190), "bg": (240, 50, 50, 190)}  # the box tool's object / background strokes
LEFT = Qt.MouseButton.LeftButton
SHIFT, CTRL = Qt.KeyboardModifier.ShiftModifier, Qt.KeyboardModifier.ControlModifier

Point = tuple[float, float]
StrokeMode = Literal["paint", "erase", "fg", "bg"]


class ToolOverlay(pg.GraphicsObject):
    """Mouse gestures of the mask tools on the frame (see the module docstring for coordinates).

    select / fill: a left click emits :attr:`clicked`; left drags are left to the ViewBox (pan).
    brush / eraser: a left press-drag-release (or a click) emits :attr:`strokeFinished`.
    polygon: left clicks add points (quick ones too), Shift at the first click makes a subtracting
    polygon; dragging a point moves it; a click on the first point or :meth:`close_polygon` emits
    :attr:`polygonFinished`. box: a left drag emits :attr:`boxFinished` (the box stays drawn until
    :meth:`set_box_rect` (None) or :meth:`cancel`); Shift-drag / Ctrl-drag paint object / background
    hint strokes (:attr:`hintFinished`). Middle drags and the wheel always pan / zoom.
    """

    strokeFinished = Signal(object, float, bool)  # points [(x, y), ...], radius, erase
    polygonFinished = Signal(object, bool)  # points [(x, y), ...] (>= 3), subtract
    boxFinished = Signal(float, float, float, float)  # x0, y0, x1, y1: edges in frame pixels (see above)
    hintFinished = Signal(object, float, bool)  # points, radius, foreground (False: background)
    clicked = Signal(float, float)  # select / fill: the clicked pixel (x, y)
    toolChanged = Signal(str)
    radiusChanged = Signal(int)

    def __init__(self, parent: QGraphicsItem | None = None) -> None:
        super().__init__(parent)
        self._tool: Tool = "select"
        self._radius = 12
        self._color: tuple[int, int, int] = (0, 200, 255)
        self._width = self._height = 0
        self._canvas = np.zeros((0, 0), np.uint8)
        self._stroke: list[Point] | None = None
        self._stroke_radius = self._radius
        self._mode: StrokeMode = "paint"
        self._rgba = np.zeros((0, 0, 4), np.uint8)  # what the live ImageItem shows
        self._box = (0, 0, 0, 0)  # x0, y0, x1, y1: the stroke's pixels so far lie inside
        self._shared = False  # the ImageItem's QImage wraps self._rgba: a repaint shows its changes
        self._polygon: list[Point] = []
        self._subtract = False  # the polygon in progress erases (Shift at its first click)
        self._dragged: int | None = None  # the polygon point being dragged
        self._rect: tuple[float, float, float, float] | None = None  # the box shown (item coordinates)
        self._rect_start: Point | None = None  # where the box being dragged started
        self._mouse: Point | None = None  # the last hover / drag position, None when outside
        self._live = pg.ImageItem(axisOrder="row-major")
        self._live.setParentItem(self)
        self._live.setFlag(QGraphicsItem.GraphicsItemFlag.ItemStacksBehindParent)  # outlines on top
        self._live.hide()

    # -- state ---------------------------------------------------------------------------------------
    def set_frame_size(self, width: int, height: int) -> None:
        width, height = int(width), int(height)
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be at least 1x1, got {width}x{height}")
        if (width, height) == (self._width, self._height):
            return
        self.cancel()
        self.prepareGeometryChange()
        self._width, self._height = width, height
        self._canvas = np.zeros((height, width), np.uint8)
        self._rgba = np.zeros((height, width, 4), np.uint8)
        self._shared = False
        self._live.clear()
        self._live.hide()
        self.update()

    def frame_size(self) -> tuple[int, int]:
        return self._width, self._height

    def set_tool(self, tool: Tool) -> None:
        """Switch tools; drops the gesture in progress (an unfinished polygon or stroke)."""
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; valid: {', '.join(TOOLS)}")
        if tool == self._tool:
            return
        self.cancel()
        self._tool = tool
        if tool == "select":
            self.unsetCursor()
        else:
            self.setCursor(Qt.CursorShape.CrossCursor)
        self.update()
        self.toolChanged.emit(tool)

    def tool(self) -> Tool:
        return self._tool

    def set_radius(self, radius: int) -> None:
        """The brush / eraser radius in frame pixels, clamped to 1..500."""
        r = min(MAX_RADIUS, max(MIN_RADIUS, round(float(radius))))
        if r == self._radius:
            return
        old = self._radius
        self._radius = r
        if self._mouse is not None and self._tool in PAINT_TOOLS:
            self.update(self._circle_rect(self._mouse, max(old, r)))
        self.radiusChanged.emit(r)

    def radius(self) -> int:
        return self._radius

    def grow_radius(self) -> None:
        self.set_radius(max(self._radius + 1, round(self._radius * RADIUS_STEP)))

    def shrink_radius(self) -> None:
        self.set_radius(min(self._radius - 1, round(self._radius / RADIUS_STEP)))

    def set_color(self, rgb: tuple[int, int, int]) -> None:
        """The live stroke's and polygon's colour (the selected track's)."""
        self._color = tuple(int(c) for c in rgb[:3])
        if self._stroke is not None and self._mode == "paint":
            self._render(self._box)
            self._live.setImage(self._rgba, autoLevels=False, levels=None)
        self.update()

    def color(self) -> tuple[int, int, int]:
        return self._color

    def busy(self) -> bool:
        """A stroke, a polygon or a box drag is in progress."""
        return self._stroke is not None or bool(self._polygon) or self._rect_start is not None

    def cancel(self) -> None:
        """Drop the gesture in progress and the box shown (Escape): nothing is emitted."""
        if self._stroke is not None:
            self._stroke = None
            self._clear_canvas()
        if self._polygon or self._rect is not None:
            self._polygon, self._subtract, self._dragged = [], False, None
            self._rect = self._rect_start = None
            self.update()

    # -- strokes (brush / eraser) ------------------------------------------------------------------------
    def begin_stroke(self, x: float, y: float) -> bool:
        """Start a stroke at (x, y); False (nothing starts) unless the tool is brush or eraser."""
        if self._tool not in PAINT_TOOLS:
            return False
        return self._start_stroke(x, y, "erase" if self._tool == "eraser" else "paint")

    def begin_hint(self, x: float, y: float, *, foreground: bool) -> bool:
        """Start a box-tool hint stroke (object or background) at (x, y); False unless the tool is box."""
        if self._tool != "box":
            return False
        return self._start_stroke(x, y, "fg" if foreground else "bg")

    def _start_stroke(self, x: float, y: float, mode: StrokeMode) -> bool:
        if not self._canvas.size:
            return False
        if self._stroke is not None:
            self._stroke = None
            self._clear_canvas()
        p = self._clamp(x, y)
        self._stroke, self._stroke_radius, self._mode = [p], self._radius, mode
        draw_stroke(self._canvas, [p], self._stroke_radius)
        self._box = self._segment_box(p, p)
        self._render(self._box)
        self._live.setImage(self._rgba, autoLevels=False, levels=None)
        self._live.render()  # now, to see whether its QImage wraps the buffer (no copy)
        qimage = self._live.qimage
        self._shared = qimage is not None and \
            np.frombuffer(qimage.constBits(), np.uint8).ctypes.data == self._rgba.ctypes.data
        self._live.show()
        return True

    def extend_stroke(self, x: float, y: float) -> None:
        """Add a point: only the new segment (previous point to this one) is drawn."""
        if self._stroke is None:
            return
        p = self._clamp(x, y)
        if p == self._stroke[-1]:
            return
        draw_stroke(self._canvas, [self._stroke[-1], p], self._stroke_radius)
        box = self._segment_box(self._stroke[-1], p)
        self._stroke.append(p)
        self._box = (min(self._box[0], box[0]), min(self._box[1], box[1]),
                     max(self._box[2], box[2]), max(self._box[3], box[3]))
        self._render(box)
        if self._shared:  # repaint only the new segment's box
            self._live.update(QRectF(box[0], box[1], box[2] - box[0], box[3] - box[1]))
        else:
            self._live.setImage(self._rgba, autoLevels=False, levels=None)

    def end_stroke(self) -> None:
        """Emit :attr:`strokeFinished` (or, for a hint, :attr:`hintFinished`) with the stroke's points, then
        clear the live canvas."""
        if self._stroke is None:
            return
        points, self._stroke = self._stroke, None
        self._clear_canvas()
        if self._mode in ("fg", "bg"):
            self.hintFinished.emit(points, float(self._stroke_radius), self._mode == "fg")
        else:
            self.strokeFinished.emit(points, float(self._stroke_radius), self._mode == "erase")

    def stroke_canvas(self) -> np.ndarray:
        """The live ``[H, W]`` uint8 canvas (1 where the stroke in progress paints); read-only use."""
        return self._canvas

    # -- polygon -------------------------------------------------------------------------------------
    def add_polygon_point(self, x: float, y: float, *, subtract: bool = False) -> None:
        """Add a point; ``subtract`` on the first point makes the polygon erase (ignored later)."""
        if self._tool != "polygon" or not self._canvas.size:
            return
        p = self._clamp(x, y)
        if not self._polygon:
            self._subtract = bool(subtract)
        if not self._polygon or p != self._polygon[-1]:
            self._polygon.append(p)
            self.update()

    def polygon_points(self) -> list[Point]:
        return list(self._polygon)

    def polygon_subtracts(self) -> bool:
        """The polygon in progress erases from the current track (Shift was held at its first click)."""
        return bool(self._polygon) and self._subtract

    def move_polygon_point(self, index: int, x: float, y: float) -> None:
        """Move point ``index`` of the polygon in progress (dragging it with the mouse)."""
        self._polygon[index] = self._clamp(x, y)
        self.update()

    def close_polygon(self) -> bool:
        """Enter: emit :attr:`polygonFinished` if there are at least 3 points; False otherwise."""
        if len(self._polygon) < 3:
            return False
        points, subtract = self._polygon, self._subtract
        self._polygon, self._subtract, self._dragged = [], False, None
        self.update()
        self.polygonFinished.emit(points, subtract)
        return True

    def remove_last_point(self) -> None:
        """Backspace: drop the polygon's last point."""
        if self._polygon:
            self._polygon.pop()
            self._dragged = None
            self.update()

    # -- box -----------------------------------------------------------------------------------------
    def finish_box(self, ax: float, ay: float, bx: float, by: float) -> bool:
        """A box dragged from corner (ax, ay) to (bx, by) (item coordinates): shown and emitted as
        :attr:`boxFinished` (x0 <= x1, y0 <= y1, clamped to the frame). False unless the tool is box."""
        if self._tool != "box" or not self._canvas.size:
            return False
        (ax, ay), (bx, by) = self._clamp_edge(ax, ay), self._clamp_edge(bx, by)
        self._rect_start = None
        self.set_box_rect((min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)))
        self.boxFinished.emit(*self._rect)
        return True

    def set_box_rect(self, rect: tuple[float, float, float, float] | None) -> None:
        """The box drawn on the frame (x0, y0, x1, y1 edges) or None; the box tool's owner clears it."""
        self._rect = None if rect is None else tuple(float(v) for v in rect)
        self.update()

    def box_rect(self) -> tuple[float, float, float, float] | None:
        return self._rect

    # -- select / fill ---------------------------------------------------------------------------------
    def click(self, x: float, y: float) -> None:
        """A left click at frame pixel (x, y) with the select or fill tool."""
        if self._tool in ("select", "fill") and self._canvas.size:
            self.clicked.emit(*self._clamp(x, y))

    # -- mouse -------------------------------------------------------------------------------------------
    def hoverEvent(self, ev) -> None:
        if ev.isExit():
            self._set_mouse(None)
            return
        on_point = self._tool == "polygon" and self._point_near(ev.pos()) is not None
        if self._tool in PAINT_TOOLS or self._tool == "box" or on_point:
            ev.acceptDrags(LEFT)  # the drag is ours even if another item lies above
        ev.acceptClicks(LEFT)
        if self._tool == "polygon":
            self.setCursor(Qt.CursorShape.SizeAllCursor if on_point else Qt.CursorShape.CrossCursor)
        self._set_mouse(self._to_pixel(ev.pos()))

    def mouseClickEvent(self, ev) -> None:
        if ev.button() != LEFT or not self._canvas.size:
            ev.ignore()
            return
        ev.accept()
        if self._tool == "polygon":
            # every click counts, the second of a quick pair too (Qt sends it as a double-click only)
            if len(self._polygon) >= 3 and self._near_first(ev.pos()):
                self.close_polygon()
            else:
                shift = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
                self.add_polygon_point(*self._to_pixel(ev.pos()), subtract=shift)
        elif self._tool == "box" or ev.double():  # box: only drags; else the first click counted already
            return
        elif self._tool in PAINT_TOOLS:
            if self.begin_stroke(*self._to_pixel(ev.pos())):
                self.end_stroke()
        else:
            self.click(math.floor(ev.pos().x()), math.floor(ev.pos().y()))

    def mouseDragEvent(self, ev) -> None:
        if ev.button() != LEFT or self._tool not in (*PAINT_TOOLS, "polygon", "box"):
            ev.ignore()  # select / fill, middle button: the ViewBox pans
            return
        if self._tool == "polygon":
            self._drag_point(ev)
            return
        if ev.isStart():
            down = ev.buttonDownPos()
            if self._tool == "box" and not ev.modifiers() & (SHIFT | CTRL):
                self._rect_start = self._clamp_edge(down.x(), down.y())
            elif not (self.begin_stroke(*self._to_pixel(down)) if self._tool in PAINT_TOOLS else
                      self.begin_hint(*self._to_pixel(down), foreground=bool(ev.modifiers() & SHIFT))):
                ev.ignore()
                return
        ev.accept()
        if self._rect_start is not None:  # a box
            (ax, ay), (bx, by) = self._rect_start, self._clamp_edge(ev.pos().x(), ev.pos().y())
            if ev.isFinish():
                self.finish_box(ax, ay, bx, by)
            else:
                self.set_box_rect((min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)))
            return
        p = self._to_pixel(ev.pos())
        self._set_mouse(p)
        self.extend_stroke(*p)
        if ev.isFinish():
            self.end_stroke()

    def _drag_point(self, ev) -> None:
        """Polygon: a drag that starts on one of its points moves it; any other drag pans."""
        if ev.isStart():
            self._dragged = self._point_near(ev.buttonDownPos())
        if self._dragged is None or self._dragged >= len(self._polygon):
            self._dragged = None
            ev.ignore()
            return
        ev.accept()
        self.move_polygon_point(self._dragged, *self._to_pixel(ev.pos()))
        if ev.isFinish():
            self._dragged = None

    # -- drawing -----------------------------------------------------------------------------------------
    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._width, self._height)

    def paint(self, painter: QPainter, *args) -> None:
        show_circle = self._mouse is not None and (self._tool in PAINT_TOOLS or
                                                   (self._tool == "box" and self._stroke is not None))
        if not (self._polygon or show_circle or self._rect is not None):
            return
        painter.setClipRect(self.boundingRect())
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self._rect is not None:
            x0, y0, x1, y1 = self._rect
            painter.setPen(_pen(QColor(0, 0, 0, 180), 3.0))
            painter.drawRect(QRectF(x0, y0, x1 - x0, y1 - y0))
            painter.setPen(_pen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine))
            painter.drawRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        # a subtracting polygon is drawn like the eraser: white, dashed
        color = QColor(*ERASER_RGBA[:3]) if self._subtract else QColor(*self._color)
        if self._polygon:
            pts = [QPointF(x + 0.5, y + 0.5) for x, y in self._polygon]
            path = QPainterPath(pts[0])
            for p in pts[1:]:
                path.lineTo(p)
            painter.setPen(_pen(color, 2.0, Qt.PenStyle.DashLine if self._subtract else Qt.PenStyle.SolidLine))
            painter.drawPath(path)
            if self._mouse is not None and self._tool == "polygon":
                painter.setPen(_pen(color, 1.5, Qt.PenStyle.DashLine))
                painter.drawLine(pts[-1], QPointF(self._mouse[0] + 0.5, self._mouse[1] + 0.5))
            painter.setPen(_pen(QColor(255, 255, 255), 10.0 if len(pts) >= 3 else 7.0))
            painter.drawPoint(pts[0])  # the closing target
            painter.setPen(_pen(color, 6.0))
            painter.drawPoints(pts)
        if show_circle:
            center = QPointF(self._mouse[0] + 0.5, self._mouse[1] + 0.5)
            r = float(self._radius)
            painter.setPen(_pen(QColor(0, 0, 0, 160), 3.0))
            painter.drawEllipse(center, r, r)
            style = Qt.PenStyle.DashLine if self._tool == "eraser" else Qt.PenStyle.SolidLine
            painter.setPen(_pen(QColor(255, 255, 255), 1.5, style))  # white: visible on the stroke's colour
            painter.drawEllipse(center, r, r)

    # -- helpers -----------------------------------------------------------------------------------------
    def _clamp(self, x: float, y: float) -> Point:
        return (min(max(float(x), 0.0), max(self._width - 1, 0.0)),
                min(max(float(y), 0.0), max(self._height - 1, 0.0)))

    def _to_pixel(self, pos: QPointF) -> Point:
        """Item position -> frame pixel coordinates (pixel centres at whole numbers), clamped."""
        return self._clamp(pos.x() - 0.5, pos.y() - 0.5)

    def _clamp_edge(self, x: float, y: float) -> Point:
        """An item position clamped to the frame's rectangle (a box edge, not a pixel centre)."""
        return min(max(float(x), 0.0), float(self._width)), min(max(float(y), 0.0), float(self._height))

    def _lut(self) -> np.ndarray:
        if self._mode == "paint":
            rgba = (*self._color, STROKE_ALPHA)
        else:
            rgba = ERASER_RGBA if self._mode == "erase" else HINT_RGBA[self._mode]
        return np.array([(0, 0, 0, 0), rgba], np.uint8)

    def _segment_box(self, a: Point, b: Point) -> tuple[int, int, int, int]:
        """The pixels a segment a-b of the stroke can touch: x0, y0, x1, y1 (end-exclusive, clipped)."""
        r = self._stroke_radius + 2
        return (max(0, math.floor(min(a[0], b[0])) - r), max(0, math.floor(min(a[1], b[1])) - r),
                min(self._width, math.ceil(max(a[0], b[0])) + r + 1),
                min(self._height, math.ceil(max(a[1], b[1])) + r + 1))

    def _render(self, box: tuple[int, int, int, int]) -> None:
        x0, y0, x1, y1 = box
        self._rgba[y0:y1, x0:x1] = self._lut()[self._canvas[y0:y1, x0:x1]]

    def _clear_canvas(self) -> None:
        x0, y0, x1, y1 = self._box  # only the stroke's box was drawn on
        self._canvas[y0:y1, x0:x1] = 0
        self._rgba[y0:y1, x0:x1] = 0
        self._box = (0, 0, 0, 0)
        self._live.hide()

    def _screen_scale(self) -> float:
        """Screen pixels per frame pixel (1 before the view is shown)."""
        dt = self.deviceTransform_()
        scale = math.sqrt(abs(dt.determinant())) if dt is not None else 0.0
        return scale if math.isfinite(scale) and scale > 0 else 1.0

    def _margin(self) -> float:
        """A few screen pixels in item units (for cosmetic pens at the edge of an update rect)."""
        return max(1.0, 6.0 / self._screen_scale())

    def _circle_rect(self, p: Point, radius: float) -> QRectF:
        m = radius + self._margin()
        return QRectF(p[0] + 0.5 - m, p[1] + 0.5 - m, 2 * m, 2 * m)

    def _set_mouse(self, p: Point | None) -> None:
        old, self._mouse = self._mouse, p
        if old == p:
            return
        if self._tool in PAINT_TOOLS or (self._tool == "box" and self._stroke is not None):
            for q in (old, p):
                if q is not None:
                    self.update(self._circle_rect(q, self._radius))
        elif self._tool == "polygon" and self._polygon:
            xs = [self._polygon[-1][0]] + [q[0] for q in (old, p) if q is not None]
            ys = [self._polygon[-1][1]] + [q[1] for q in (old, p) if q is not None]
            m = self._margin()
            self.update(QRectF(min(xs) + 0.5 - m, min(ys) + 0.5 - m,
                               max(xs) - min(xs) + 2 * m, max(ys) - min(ys) + 2 * m))

    def _near_first(self, pos: QPointF) -> bool:
        first = QPointF(self._polygon[0][0] + 0.5, self._polygon[0][1] + 0.5)
        return QLineF(first, pos).length() * self._screen_scale() <= CLOSE_DISTANCE_PX

    def _point_near(self, pos: QPointF) -> int | None:
        """The polygon point within CLOSE_DISTANCE_PX screen pixels of ``pos`` (the nearest), or None."""
        if not self._polygon:
            return None
        scale = self._screen_scale()
        dist = [QLineF(QPointF(x + 0.5, y + 0.5), pos).length() * scale for x, y in self._polygon]
        best = min(range(len(dist)), key=dist.__getitem__)
        return best if dist[best] <= CLOSE_DISTANCE_PX else None


def _pen(color: QColor, width: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(color, width, style)
    pen.setCosmetic(True)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    return pen
