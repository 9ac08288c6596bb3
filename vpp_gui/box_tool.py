"""The box tool and the edge refinement: GrabCut (:mod:`core.app.document.grabcut`) off the UI thread, with a preview.

Design (also in the tool's tooltip and the README): with the Box tool (K) a left drag draws a box
around an object; GrabCut's mask appears as a preview in the current track's colour. Shift-drag
paints *object* strokes (green), Ctrl-drag *background* strokes (red), with the brush radius
([ and ]); each stroke runs GrabCut again on the same box (strokes may come before the box too).
Enter accepts: the mask is added to the current track's mask on this frame (as the brush adds),
or makes a new track when nothing is selected (N). Esc, another frame or another tool drops the box
and its strokes.

GrabCut takes 0.1-0.5 s on the shrunk crop, so it runs on a :class:`~vpp_gui.background.LatestRunner`
(one pool thread; a newer request replaces a waiting one; a result that is no longer wanted is
dropped by its serial number). Enter while GrabCut still runs accepts its result when it arrives.
Refine (Ctrl+K) runs on a second runner, so it never displaces a box request; its result carries
the mask it started from, and the caller applies it only if that mask is still the track's.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, Signal
from PySide6.QtWidgets import QGraphicsItem

from core.app.document import BoxPrompt, box_to_mask, refine_mask
from vpp_gui.background import LatestRunner
from vpp_gui.canvas_tools import HINT_RGBA, ToolOverlay

PREVIEW_ALPHA = 110  # the preview's fill; its outline is opaque
HELP = "Enter accepts, Esc drops; Shift-drag marks the object, Ctrl-drag the background"


def _grabcut_job(image: np.ndarray, box, hints: np.ndarray | None) -> np.ndarray:
    return box_to_mask(image, box, hints=hints)


class BoxTool(QObject):
    """The box tool's state on one frame (a :class:`~core.app.document.BoxPrompt`), its preview and GrabCut runs."""

    accepted = Signal(int, object)  # frame, [H, W] bool mask
    refined = Signal(object, object)  # the caller's tag, [H, W] bool mask
    refineFailed = Signal(object, str)  # tag, why
    message = Signal(str)  # for the status bar

    def __init__(self, tools: ToolOverlay, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tools = tools
        self.frame: int | None = None  # the frame the box and strokes belong to
        self.prompt: BoxPrompt | None = None
        self.mask: np.ndarray | None = None  # the preview: GrabCut's latest wanted result
        self._image: np.ndarray | None = None
        self._serial = 0  # of the latest request; results of older ones are dropped
        self._pending = False  # a request runs or waits
        self._accept_when_done = False
        self._runner = LatestRunner(self)
        self._runner.done.connect(self._on_done)
        self._runner.failed.connect(self._on_failed)
        self._refiner = LatestRunner(self)
        self._refiner.done.connect(lambda tag, mask, _s: self.refined.emit(tag, mask))
        self._refiner.failed.connect(lambda tag, exc: self.refineFailed.emit(tag, _reason(exc)))
        self._layer = pg.ImageItem(axisOrder="row-major")  # the preview, under the overlay's box outline
        self._layer.setParentItem(tools)
        self._layer.setFlag(QGraphicsItem.GraphicsItemFlag.ItemStacksBehindParent)
        self._layer.hide()

    # -- state ---------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """A box or strokes are on the frame (Esc has something to drop)."""
        return self.prompt is not None and (self.prompt.box is not None or self.prompt.has_hints)

    @property
    def busy(self) -> bool:
        """GrabCut is running or waiting for the current box."""
        return self._pending

    def set_box(self, frame: int, image: np.ndarray, box) -> None:
        """A box dragged on ``frame`` (``image`` its RGB pixels): GrabCut runs on it with the frame's strokes."""
        prompt = self._on_frame(frame, image)
        try:
            self.tools.set_box_rect(prompt.set_box(box))
        except ValueError as exc:
            self.tools.set_box_rect(prompt.box)
            self.message.emit(f"Box: {exc}")
            return
        self._request()

    def add_hint(self, frame: int, image: np.ndarray, points, radius: float, *, foreground: bool) -> None:
        """An object (``foreground``) or background stroke on ``frame``: GrabCut runs again if there is a box."""
        prompt = self._on_frame(frame, image)
        prompt.paint_hint(points, radius, foreground=foreground)
        self._render()
        if prompt.box is not None:
            self._request()
        else:
            self.message.emit("Stroke kept: now drag a box around the object")

    def accept(self) -> bool:
        """Enter: hand the preview over (:attr:`accepted`) and start afresh; while GrabCut runs, do so when
        it is done. False when there is no box."""
        if self.prompt is None or self.prompt.box is None:
            self.message.emit("Drag a box around an object first (Box tool, K)")
            return False
        if self._pending:
            self._accept_when_done = True
            self.message.emit("GrabCut is still running: its mask is accepted when it is done")
            return True
        mask, frame = self.mask, self.frame
        if mask is None or frame is None or not mask.any():
            self.message.emit("The box has no mask to accept: drag it around the object, or Shift-drag over it")
            return False
        self.drop()
        self.accepted.emit(frame, mask)
        return True

    def drop(self) -> None:
        """Esc, another frame or tool: forget the box, the strokes and the preview (a running GrabCut's
        result is ignored)."""
        self._serial += 1
        self._runner.drop_waiting()
        self._pending = self._accept_when_done = False
        self.prompt, self.mask, self.frame, self._image = None, None, None, None
        self.tools.set_box_rect(None)
        self._layer.clear()
        self._layer.hide()

    def refine(self, tag: Any, image: np.ndarray, mask: np.ndarray) -> None:
        """Refine ``mask``'s edge on ``image`` off the UI thread; :attr:`refined` (tag, mask) or
        :attr:`refineFailed` (tag, why) follows."""
        self._refiner.submit(tag, refine_mask, image, mask)

    def shutdown(self, msecs: int = 5000) -> bool:
        self.drop()
        return self._runner.shutdown(msecs) and self._refiner.shutdown(msecs)

    # -- internals -----------------------------------------------------------------------------------
    def _on_frame(self, frame: int, image: np.ndarray) -> BoxPrompt:
        if self.prompt is None or self.frame != frame:
            self.drop()
            self.prompt = BoxPrompt(int(image.shape[0]), int(image.shape[1]))
            self.frame = frame
        self._image = image
        return self.prompt

    def _request(self) -> None:
        request = self.prompt.request() if self.prompt is not None else None
        if request is None or self._image is None:
            return
        self._serial += 1
        self._pending = True
        self._runner.submit(self._serial, _grabcut_job, self._image, *request)

    def _on_done(self, serial: int, mask: np.ndarray, seconds: float) -> None:
        if serial != self._serial:
            return
        accept, self._pending, self._accept_when_done = self._accept_when_done, False, False
        self.mask = mask
        self._render()
        if not mask.any():
            self.message.emit("GrabCut found nothing in the box: drag it around the object, or Shift-drag over "
                              "the object")
        elif accept:
            self.accept()
        else:
            self.message.emit(f"Box: {int(mask.sum())} px in {seconds * 1000:.0f} ms. {HELP}")

    def _on_failed(self, serial: int, exc: BaseException) -> None:
        if serial != self._serial:
            return
        self._pending = self._accept_when_done = False
        self.message.emit(f"Box: {_reason(exc)}")

    def _render(self) -> None:
        """Draw the preview mask (the track's colour, outlined) and the strokes, only over their region."""
        prompt = self.prompt
        if prompt is None:
            return
        boxes = [b for b in (prompt.box, prompt.hint_box) if b is not None]
        if not boxes:
            self._layer.hide()
            return
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        rgba = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
        if self.mask is not None:
            part = self.mask[y0:y1, x0:x1]
            color = self.tools.color()
            rgba[part] = (*color, PREVIEW_ALPHA)
            edge = part & ~cv2.erode(part.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
            rgba[edge] = (*color, 255)
        if prompt.hints is not None:
            hints = prompt.hints[y0:y1, x0:x1]
            rgba[hints > 0] = HINT_RGBA["fg"]
            rgba[hints < 0] = HINT_RGBA["bg"]
        self._layer.setImage(rgba, autoLevels=False, levels=None)
        self._layer.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        self._layer.show()


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
