"""The frame view: the frame with its overlay layers; wheel zooms, drag pans, ``fit()`` frames it.

Everything in the view is in frame pixels (the tools, labels, ground truth), whatever resolution an image is
shown at: an image item holding a smaller array (a 4K frame and its layers at the view's resolution, see
:mod:`core.app.display_frames`) is stretched over the frame's rectangle, so it lines up at any size.
:meth:`FrameView.display_size` says which size the frame is wanted at now; ``resolutionChanged`` fires when a
zoom or a resize changes it (zoomed in past the fitted frame's pixels: the full frame; zoomed out: fitted).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

from core.app.display_frames import display_size
from vpp_gui.canvas_tools import ToolOverlay
from vpp_gui.overlay import Label, Layers
from vpp_gui.theme import Theme

LAYERS = ("heatmap", "masks", "contours", "labels")


class FrameView(QWidget):
    """A pyqtgraph ViewBox holding the frame, the heatmap, masks and contours images, and text labels."""

    resolutionChanged = Signal()  # the size the frame is wanted at changed (zoom, resize): show it again

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._stack = QStackedLayout(self)
        self.hint = QLabel(self)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setWordWrap(True)
        self.hint.setObjectName("frameHint")
        self.hint.setMargin(40)
        self.graphics = pg.GraphicsView(self)
        self.graphics.setAcceptDrops(False)  # drops go to the main window
        self.view = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view.setDefaultPadding(0.01)
        self.graphics.setCentralItem(self.view)
        self._stack.addWidget(self.hint)
        self._stack.addWidget(self.graphics)

        self.image = pg.ImageItem(axisOrder="row-major")
        self.items = {name: pg.ImageItem(axisOrder="row-major") for name in ("heatmap", "masks", "contours")}
        self.view.addItem(self.image)
        for z, name in enumerate(("heatmap", "masks", "contours"), start=1):
            self.items[name].setZValue(z)
            self.view.addItem(self.items[name])
        self.gt_item = pg.ImageItem(axisOrder="row-major")  # ground-truth outlines, above the predictions
        self.gt_item.setZValue(4)
        self.view.addItem(self.gt_item)
        self.tools = ToolOverlay()  # the mask tools' gestures: above the contours, below the labels
        self.tools.setZValue(5)
        self.view.addItem(self.tools, ignoreBounds=True)
        self._label_items: list[pg.TextItem] = []
        self._gt_label_items: list[pg.TextItem] = []
        self._pred_on = True  # predictions (masks, contours, labels) drawn; off: ground truth only
        self._visible = dict.fromkeys(LAYERS, True)
        self._opacity = {"heatmap": 0.6, "masks": 0.5, "contours": 1.0, "labels": 1.0}
        for name, item in self.items.items():
            item.setOpacity(self._opacity[name])

        self.badge = QLabel(self.graphics)
        self.badge.setObjectName("frameBadge")
        self.badge.move(10, 10)
        self.badge.hide()
        self.gt_badge = QLabel(self.graphics)  # "GT: not annotated" on frames the GT does not cover
        self.gt_badge.setObjectName("frameGtBadge")
        self.gt_badge.setStyleSheet("QLabel { background: rgba(20, 20, 24, 190); color: #ffe600; padding: 3px 8px; "
                                    "border: 1px dashed #ffe600; border-radius: 4px; }")
        self.gt_badge.move(10, 44)
        self.gt_badge.hide()
        self._size: tuple[int, int] | None = None
        self._shown_size: tuple[int, int] | None = None  # (w, h) of the frame image's pixels
        self._zoom_check = QTimer(self, singleShot=True, interval=40)  # once per burst of wheel / resize steps
        self._zoom_check.timeout.connect(self._check_resolution)
        self.view.sigRangeChanged.connect(lambda *_: self._zoom_check.start())
        self.view.sigResized.connect(lambda *_: self._zoom_check.start())
        self.show_hint("No clip open.")

    # -- content -------------------------------------------------------------------------------------
    def show_hint(self, text: str) -> None:
        """Replace the view by a centred message (no clip, unreadable clip ...)."""
        self.hint.setText(text)
        self._stack.setCurrentWidget(self.hint)
        self._size = None

    def set_frame(self, rgb: np.ndarray, frame_size: tuple[int, int] | None = None) -> None:
        """Show an RGB uint8 ``[h, w, 3]`` image of a frame of ``frame_size`` (W, H; default the image's own
        size) over the frame's rectangle; the view is fitted when the frame size changes."""
        h, w = rgb.shape[:2]
        self.image.setImage(np.ascontiguousarray(rgb), autoLevels=False, levels=None)  # uint8: shown as is
        fw, fh = (w, h) if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.image.setRect(QRectF(0, 0, fw, fh))
        self._shown_size = (w, h)
        self._stack.setCurrentWidget(self.graphics)
        if self._size != (fw, fh):
            self._size = (fw, fh)
            self.tools.set_frame_size(fw, fh)
            self.fit()

    def set_blank(self, width: int, height: int, message: str) -> None:
        """A grey frame with a badge: used when a frame cannot be decoded."""
        self.set_frame(np.full((8, 8, 3), 60, np.uint8), frame_size=(width, height))
        self._shown_size = None  # no resolution to keep up with zooms
        self.set_layers(None)
        self.set_badge(message, warn=True)

    def set_layers(self, layers: Layers | None) -> None:
        """The overlay layers, each an RGBA image at the frame's size or at any smaller size (stretched over
        the frame's rectangle, as the frame's own image is)."""
        layers = layers or Layers()
        for name, item in self.items.items():
            data = getattr(layers, name)
            if data is None:
                item.clear()
                item.hide()
            else:
                item.setImage(data, autoLevels=False, levels=None)
                self._cover_frame(item)
                item.setVisible(self._shown(name))
        self._set_labels(layers.labels or [])

    def _cover_frame(self, item: pg.ImageItem) -> None:
        if self._size is not None and item.image is not None:
            item.setRect(QRectF(0, 0, *self._size))

    # -- resolution ------------------------------------------------------------------------------------
    def pixel_ratio(self) -> float:
        """Device pixels per logical pixel of the view (2 on a HiDPI screen)."""
        return float(self.graphics.viewport().devicePixelRatioF())

    def viewport_pixels(self) -> tuple[float, float]:
        """The view's size in device pixels."""
        vp, r = self.graphics.viewport(), self.pixel_ratio()
        return vp.width() * r, vp.height() * r

    def zoom(self) -> float:
        """Device pixels per frame pixel at the view's current range."""
        px, py = self.view.viewPixelSize()
        unit = max(px, py)
        return self.pixel_ratio() / unit if unit > 0 else 0.0

    def display_size(self, frame_w: int, frame_h: int) -> tuple[int, int]:
        """(w, h) to show a ``frame_w x frame_h`` frame at now (see :func:`core.app.display_frames.display_size`);
        before the first frame of that size is shown (the view not fitted to it yet), the fitted size."""
        vw, vh = self.viewport_pixels()
        zoom = self.zoom() if self._size == (frame_w, frame_h) else 0.0
        return display_size(frame_w, frame_h, vw, vh, zoom)

    @property
    def shown_size(self) -> tuple[int, int] | None:
        """(w, h) of the frame image's pixels as shown (the frame's size, or smaller at the view's resolution)."""
        return self._shown_size

    def _check_resolution(self) -> None:
        if self._size is not None and self._shown_size is not None and \
                self._stack.currentWidget() is self.graphics and self.display_size(*self._size) != self._shown_size:
            self.resolutionChanged.emit()

    def set_badge(self, text: str, *, warn: bool = False) -> None:
        if not text:
            self.badge.hide()
            return
        self.badge.setText(text)
        self.badge.setProperty("warn", warn)
        self.badge.setStyleSheet(
            "QLabel { background: rgba(20, 20, 24, 190); color: %s; padding: 4px 8px; border-radius: 4px; }"
            % ("#f0b429" if warn else "#e6e6e6"))
        self.badge.adjustSize()
        self.badge.show()
        self.badge.raise_()

    def set_gt(self, layer: np.ndarray | None, labels: list[Label], *, not_annotated: bool = False) -> None:
        """Ground-truth outlines (RGBA or None), their labels, and the "not annotated" badge."""
        if layer is None:
            self.gt_item.clear()
            self.gt_item.hide()
        else:
            self.gt_item.setImage(layer, autoLevels=False, levels=None)
            self._cover_frame(self.gt_item)
            self.gt_item.show()
        while len(self._gt_label_items) < len(labels):
            item = pg.TextItem(anchor=(0, 0), fill=pg.mkBrush(20, 20, 20, 200))
            item.setZValue(10)
            self.view.addItem(item)
            self._gt_label_items.append(item)
        for item, lab in zip(self._gt_label_items, labels):
            item.setText(lab.text, color=lab.color)
            item.setPos(lab.x, lab.y)
            item.show()
        for item in self._gt_label_items[len(labels):]:
            item.hide()
        if not_annotated:
            self.gt_badge.setText("GT: not annotated")
            self.gt_badge.adjustSize()
            self.gt_badge.show()
            self.gt_badge.raise_()
        else:
            self.gt_badge.hide()

    # -- layer options ---------------------------------------------------------------------------------
    def _shown(self, name: str) -> bool:
        return self._visible[name] and (self._pred_on or name == "heatmap")

    def set_predictions_visible(self, on: bool) -> None:
        """Draw the predictions' masks, contours and labels (off: only the GT and the heatmap)."""
        self._pred_on = bool(on)
        for name in ("masks", "contours", "labels"):
            self.set_layer_visible(name, self._visible[name])

    def set_layer_visible(self, name: str, on: bool) -> None:
        self._visible[name] = on
        if name == "labels":
            for item in self._label_items:
                item.setVisible(self._shown(name) and bool(item.toPlainText()))
        elif self.items[name].image is not None:
            self.items[name].setVisible(self._shown(name))

    def set_layer_opacity(self, name: str, value: float) -> None:
        self._opacity[name] = float(value)
        if name == "labels":
            for item in self._label_items:
                item.setOpacity(value)
        else:
            self.items[name].setOpacity(value)

    def layer_opacity(self, name: str) -> float:
        return self._opacity[name]

    def fit(self) -> None:
        if self._size is not None:
            w, h = self._size
            self.view.setRange(xRange=(0, w), yRange=(0, h), padding=0.01)

    def set_theme(self, theme: Theme) -> None:
        self.graphics.setBackground(QColor(theme.view_background))
        self.hint.setStyleSheet(f"QLabel#frameHint {{ color: {theme.muted}; font-size: 15px; }}")

    # -- labels ----------------------------------------------------------------------------------------
    def _set_labels(self, labels: list[Label]) -> None:
        while len(self._label_items) < len(labels):
            item = pg.TextItem(anchor=(0, 0))
            item.setZValue(10)
            item.setOpacity(self._opacity["labels"])
            self.view.addItem(item)
            self._label_items.append(item)
        for item, lab in zip(self._label_items, labels):
            if item.toPlainText() != lab.text:  # setText lays the text out again: skip it when unchanged
                item.setText(lab.text, color=(255, 255, 255))
            if getattr(item, "_vpp_color", None) != lab.color:
                r, g, b = lab.color
                item.fill = pg.mkBrush(int(r * 0.55), int(g * 0.55), int(b * 0.55), 210)
                item._vpp_color = lab.color
                item.update()
            item.setPos(lab.x, lab.y)
            item.setVisible(self._shown("labels"))
        for item in self._label_items[len(labels):]:
            item.setText("")
            item.hide()
