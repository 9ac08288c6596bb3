"""Right-click on a mask in the frame view: a menu of what can be done to that track.

The track under the cursor (:meth:`core.app.document.Document.track_at`, the top-most visible mask) is
selected first, then the menu offers the window's own actions, which act on the selection: Relabel…,
Propagate forward / backward, Fill between keyframes, Accept, Reject, Delete. Their keys show in the
menu, so the menu also teaches them. A right-click beside every mask shows nothing.

The menu listens on the frame view's viewport for the context-menu event (Qt sends one after a
right-button press whatever the scene did with the press), so the canvas tools are left alone.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QObject, QPoint, QPointF
from PySide6.QtWidgets import QMenu


class MaskMenu(QObject):
    """Installs itself on ``window.view``; :meth:`menu_for` builds the menu (tests use it directly)."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        window.view.graphics.viewport().installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.ContextMenu:
            x, y = self.frame_point(QPointF(event.pos()))
            return self.open_at(x, y, event.globalPos())
        return False

    def frame_point(self, viewport_pos: QPointF) -> tuple[float, float]:
        """Frame pixel coordinates (x, y) under a position in the frame view's viewport."""
        view = self.window.view
        p = view.view.mapSceneToView(view.graphics.mapToScene(viewport_pos.toPoint()))
        return p.x(), p.y()

    def menu_for(self, x: float, y: float) -> QMenu | None:
        """Select the track under frame pixel (x, y) and build its menu; None when no mask is there."""
        doc = self.window.bridge.doc
        if doc is None or not (math.isfinite(x) and math.isfinite(y)):
            return None
        track_id = doc.track_at(self.window.timeline.frame, math.floor(x), math.floor(y))
        if track_id is None:
            return None
        if doc.selected != (track_id,):
            doc.select([track_id])
        a = self.window.actions_
        menu = QMenu(self.window)
        menu.setToolTipsVisible(True)
        track = doc.track(track_id)
        menu.addSection(f"Track #{track_id} ({doc.category_name(track.category_id)})")
        menu.addAction(a.relabel)
        menu.addSeparator()
        menu.addActions(a.propagation())
        menu.addSeparator()
        menu.addActions([a.accept, a.reject, a.delete])
        return menu

    def open_at(self, x: float, y: float, global_pos: QPoint) -> bool:
        """Show the menu for the mask at frame pixel (x, y); False (nothing shown) beside every mask."""
        menu = self.menu_for(x, y)
        if menu is None:
            return False
        menu.aboutToHide.connect(menu.deleteLater)  # deleted later: a chosen action is triggered after the hide
        menu.popup(global_pos)
        return True
