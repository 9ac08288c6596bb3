"""The keyframe strip under the timeline: per visible track, which frames it covers and its keyframes.

One compact row per visible track (id order): the track's id in its colour, a bar over each run of
frames with a mask, a diamond on each keyframe (frames a person drew, edited or imported), the
current frame as a vertical line, the selected track's row highlighted. At most :data:`MAX_ROWS`
rows show; the wheel or the scroll bar scrolls, and the selected track is scrolled into view.

Painting touches only the rows on screen, and a row's runs are computed once per version of its
track (tracks are immutable; a live model track grows, so its frame count is part of the key):
1000 tracks cost what the visible rows cost. Document events are coalesced (one refresh per
:data:`REFRESH_MS`). A click (or a drag) seeks to the frame under the mouse and selects the row's
track (:attr:`StripCanvas.cellClicked`); on the id column it only selects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QHBoxLayout, QScrollBar, QToolTip, QWidget

from core.app.document import DocEvent, Document, Track
from core.app.document.keyframes import runs
from vpp_gui.overlay import track_color

ROW_H = 12  # pixels per track row
MAX_ROWS = 6  # rows on screen at once (more scroll)
LABEL_W = 40  # the id column
PAD = 2  # above and below the rows; left / right of the frame area
REFRESH_MS = 100
_EVENTS = frozenset({"tracks", "view", "results", "history"})


@dataclass(frozen=True)
class Coverage:
    """What a row draws: the track's frame runs (inclusive) and its keyframes, both sorted."""

    runs: tuple[tuple[int, int], ...]
    keyframes: tuple[int, ...]


class StripCanvas(QWidget):
    """The painted rows (see the module docstring); :class:`KeyframeStrip` adds the scroll bar."""

    cellClicked = Signal(int, int)  # track id, frame (-1: the id column was clicked)
    firstRowChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(False)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # letters and arrows are the window's shortcuts
        self.doc: Document | None = None
        self.frame = 0
        self._ids: list[int] = []
        self._row_of: dict[int, int] = {}
        self._first = 0
        self._cache: dict[int, tuple[Track, int, Coverage]] = {}
        self._drag_track: int | None = None
        self.frame_axis: Callable[[float, QWidget], float | None] | None = None  # see KeyframeStrip.follow_axis
        font = QFont(self.font())
        font.setPixelSize(ROW_H - 3)
        self.setFont(font)

    # -- model ---------------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return self.doc.clip.num_frames if self.doc is not None else 0

    def row_ids(self) -> list[int]:
        """The track ids of the rows, top to bottom (all rows, not only those on screen)."""
        return list(self._ids)

    def visible_ids(self) -> list[int]:
        """The track ids of the rows on screen."""
        return self._ids[self._first:self._first + self.rows_shown()]

    def rows_shown(self) -> int:
        return max(0, min(len(self._ids) - self._first, MAX_ROWS))

    def coverage(self, track_id: int, track: Track | None = None) -> Coverage:
        """The runs and keyframes of a track, computed once per version of the track."""
        track = track if track is not None else self.doc.track(track_id)
        cached = self._cache.get(track_id)
        if cached is not None and cached[0] is track and cached[1] == len(track.frames):
            return cached[2]
        cov = Coverage(tuple(runs(track.frames)), tuple(sorted(track.keyframes)))
        self._cache[track_id] = (track, len(track.frames), cov)
        return cov

    def rebuild(self) -> None:
        """Rows from the document: its visible tracks in id order."""
        doc = self.doc
        self._ids = sorted(t for t in doc.tracks if doc.visible(t)) if doc is not None else []
        self._row_of = {t: i for i, t in enumerate(self._ids)}
        self._cache = {t: v for t, v in self._cache.items() if t in self._row_of}
        self.set_first_row(self._first)
        self.update()

    # -- scrolling -----------------------------------------------------------------------------------
    @property
    def first_row(self) -> int:
        return self._first

    def max_first_row(self) -> int:
        return max(0, len(self._ids) - MAX_ROWS)

    def set_first_row(self, row: int) -> None:
        row = max(0, min(int(row), self.max_first_row()))
        if row != self._first:
            self._first = row
            self.update()
        self.firstRowChanged.emit(self._first)

    def ensure_visible(self, track_id: int) -> None:
        row = self._row_of.get(track_id)
        if row is None:
            return
        if row < self._first:
            self.set_first_row(row)
        elif row >= self._first + MAX_ROWS:
            self.set_first_row(row - MAX_ROWS + 1)

    # -- geometry ------------------------------------------------------------------------------------
    def _span(self) -> tuple[float, float]:
        """The frame area's left edge and width in pixels: where the plots below put frames -0.5 and n - 0.5
        (:meth:`KeyframeStrip.follow_axis`), so frame k's cell sits over the plots' x = k; else the strip's width."""
        n = self.num_frames
        if self.frame_axis is not None and n > 0:
            a, b = self.frame_axis(-0.5, self), self.frame_axis(n - 0.5, self)
            if a is not None and b is not None and b - a >= 1:
                return float(a), float(b - a)
        left = LABEL_W + PAD
        return float(left), float(max(1, self.width() - left - PAD))

    def _frame_area(self) -> QRectF:
        """Where bars may be drawn: right of the id column."""
        return QRectF(LABEL_W + PAD, 0, max(0, self.width() - LABEL_W - PAD), self.height())

    def x_of(self, frame: int) -> float:
        """The x of the centre of ``frame``'s cell."""
        left, width = self._span()
        return left + (frame + 0.5) * width / max(1, self.num_frames)

    def frame_at(self, x: float) -> int | None:
        """The frame under ``x`` (clamped to the clip), None over the id column or without a clip."""
        left, width = self._span()
        n = self.num_frames
        if n == 0 or x < LABEL_W:
            return None
        return max(0, min(n - 1, math.floor((x - left) * n / width)))

    def row_y(self, row: int) -> int:
        """The top of row ``row`` (an index into :meth:`row_ids`) on screen."""
        return PAD + (row - self._first) * ROW_H

    def track_at(self, y: float) -> int | None:
        """The track id of the row under ``y``, or None."""
        if y < PAD:
            return None
        row = self._first + int((y - PAD) // ROW_H)
        if row >= self._first + self.rows_shown():
            return None
        return self._ids[row]

    def cell_center(self, track_id: int, frame: int) -> QPointF:
        """Where to click to reach ``frame`` of ``track_id`` (its row must be on screen)."""
        return QPointF(self.x_of(frame), self.row_y(self._row_of[track_id]) + ROW_H / 2)

    # -- painting ------------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        p = QPainter(self)
        pal = self.palette()
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        n = self.num_frames
        if self.doc is None or n == 0 or not self._ids:
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(self.rect().adjusted(6, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter,
                       "keyframe strip: tracks and their keyframes appear here")
            p.end()
            return
        left, width = self._span()
        per = width / n
        selected = set(self.doc.selected)
        tracks = self.doc.tracks  # rows may lag behind the document until the coalesced refresh
        highlight = pal.color(QPalette.ColorRole.Highlight)
        for i, tid in enumerate(self.visible_ids()):
            track = tracks.get(tid)
            if track is None:
                continue
            y = PAD + i * ROW_H
            if tid in selected:
                band = QColor(highlight)
                band.setAlpha(70)
                p.fillRect(QRectF(0, y, self.width(), ROW_H), band)
            color = QColor(*track_color(tid))
            p.setPen(color)
            font = p.font()
            font.setBold(tid in selected)
            p.setFont(font)
            p.drawText(QRectF(2, y, LABEL_W - 4, ROW_H), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       f"#{tid}")
            cov = self.coverage(tid, track)
            bar = QColor(color)
            bar.setAlpha(150)
            p.save()
            p.setClipRect(self._frame_area())  # the plots may be zoomed: frames off their left edge stay hidden
            for a, b in cov.runs:
                p.fillRect(QRectF(left + a * per, y + 3, max(1.0, (b - a + 1) * per), ROW_H - 6), bar)
            self._draw_keys(p, cov.keyframes, left, per, y)
            p.restore()
        p.setClipRect(self._frame_area())
        x = left + (self.frame + 0.5) * per
        p.setPen(QPen(highlight, 1.5))
        p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        p.end()

    def _draw_keys(self, p: QPainter, keys: tuple[int, ...], left: float, per: float, y: float) -> None:
        if not keys:
            return
        r = (ROW_H - 4) / 2
        cy = y + ROW_H / 2
        path = QPainterPath()
        last_x = -1e9
        for k in keys:
            cx = left + (k + 0.5) * per
            if cx - last_x < 1.0:  # many keyframes per pixel: one diamond is enough
                continue
            last_x = cx
            path.moveTo(cx, cy - r)
            path.lineTo(cx + r, cy)
            path.lineTo(cx, cy + r)
            path.lineTo(cx - r, cy)
            path.closeSubpath()
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor(20, 20, 20), 1))
        p.setBrush(QColor(255, 255, 255))
        p.drawPath(path)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setBrush(Qt.BrushStyle.NoBrush)

    # -- mouse ---------------------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        tid = self.track_at(event.position().y())
        if tid is None:
            return
        frame = self.frame_at(event.position().x())
        self._drag_track = tid if frame is not None else None
        self.cellClicked.emit(tid, -1 if frame is None else frame)

    def mouseMoveEvent(self, event) -> None:
        if self._drag_track is not None and event.buttons() & Qt.MouseButton.LeftButton:
            frame = self.frame_at(event.position().x())
            if frame is not None and frame != self.frame:
                self.cellClicked.emit(self._drag_track, frame)

    def mouseReleaseEvent(self, event) -> None:
        self._drag_track = None

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() // 120
        if steps:
            self.set_first_row(self._first - steps)
        event.accept()

    def event(self, event) -> bool:
        if event.type() == event.Type.ToolTip:
            tid = self.track_at(event.pos().y())
            if tid is not None and self.doc is not None and tid in self.doc.tracks:
                QToolTip.showText(event.globalPos(), self._tip(tid), self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)

    def _tip(self, track_id: int) -> str:
        cov = self.coverage(track_id)
        frames = sum(b - a + 1 for a, b in cov.runs)
        keys = ", ".join(str(k) for k in cov.keyframes[:12]) + (" …" if len(cov.keyframes) > 12 else "")
        return (f"track #{track_id} ({self.doc.category_name(self.doc.track(track_id).category_id)}): "
                f"{frames} frame(s) in {len(cov.runs)} run(s); keyframes: {keys or 'none'}\n"
                "click: go to that frame and select the track")


class KeyframeStrip(QWidget):
    """The strip with its scroll bar; follows a document (:meth:`set_document`) and the current frame."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = StripCanvas(self)
        self.scroll = QScrollBar(Qt.Orientation.Vertical, self)
        self.scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 0, 6, 0)
        row.setSpacing(0)
        row.addWidget(self.canvas, 1)
        row.addWidget(self.scroll)
        self.scroll.valueChanged.connect(self.canvas.set_first_row)
        self.canvas.firstRowChanged.connect(self._sync_scroll)
        self._unsubscribe = None
        self._current: int | None = None
        self._timer = QTimer(self, singleShot=True, interval=REFRESH_MS)
        self._timer.timeout.connect(self.refresh_now)
        self.setToolTip("Keyframe strip: a bar where each track has masks, ◆ its keyframes; click to go there")
        self.refresh_now()

    @property
    def cellClicked(self):
        return self.canvas.cellClicked

    def set_document(self, doc: Document | None) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.canvas.doc = doc
        self.canvas._cache.clear()
        self.canvas._first = 0
        self._current = None
        if doc is not None:
            self._unsubscribe = doc.subscribe(self._on_event)
        self.refresh_now()

    def follow_axis(self, frame_x: Callable[[float, QWidget], float | None], changed) -> None:
        """Line the frames up with plots below: ``frame_x(frame, widget)`` is the x in ``widget`` where the
        plots draw ``frame`` (None while they are not shown); ``changed`` (a signal) fires when that moves
        (a zoom, a pan, a resize)."""
        self.canvas.frame_axis = frame_x
        changed.connect(self.canvas.update)
        self.canvas.update()

    def set_frame(self, frame: int) -> None:
        if frame != self.canvas.frame:
            self.canvas.frame = frame
            self.canvas.update()

    def _on_event(self, event: DocEvent) -> None:
        if event.kind in _EVENTS and not self._timer.isActive():
            self._timer.start()

    def refresh_now(self) -> None:
        """Rebuild the rows now (document events do it coalesced)."""
        self._timer.stop()
        c = self.canvas
        c.rebuild()
        shown = max(1, min(MAX_ROWS, len(c.row_ids())))
        self.setFixedHeight(shown * ROW_H + 2 * PAD)
        current = c.doc.current if c.doc is not None else None
        if current is not None and current != self._current:
            c.ensure_visible(current)
        self._current = current
        self._sync_scroll(c.first_row)

    def _sync_scroll(self, first: int) -> None:
        s = self.scroll
        s.blockSignals(True)
        s.setRange(0, self.canvas.max_first_row())
        s.setPageStep(max(1, self.canvas.rows_shown()))
        s.setValue(first)
        s.blockSignals(False)
        s.setVisible(s.maximum() > 0)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._sync_scroll(self.canvas.first_row)
