"""The Edit menu, the mask tools and the tracks panel, wired to the document (all edits go through it).

Selection rule: the tools act on ``doc.selected`` (the current track first). With no track selected,
a brush stroke, a polygon or an accepted box makes a new track of the current label (the selector
above the Tracks panel; R with nothing selected chooses it, and relabelling makes its label the
current one); ``N`` clears the selection. The R picker creates a label from a name no label has;
Ctrl+L edits the labels.
Every error of an edit is shown with its reason; the document is unchanged then.
"""

from __future__ import annotations

import functools
import logging

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QApplication

from core.app.document import DocEvent, brush_mask, polygon_mask
from core.errors import VPPError
from vpp_gui.box_tool import BoxTool
from vpp_gui.category_picker import pick_category
from vpp_gui.label_selector import LabelSelector
from vpp_gui.labels_dialog import LabelsDialog
from vpp_gui.overlay import track_color

log = logging.getLogger(__name__)
NEW_TRACK_COLOR = (255, 255, 255)


def _guarded(method):
    """Show an edit's error to the user instead of raising into Qt."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (ValueError, KeyError, VPPError, OSError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            log.info("edit refused: %s", message)
            self.window.show_error("Cannot edit", str(message))
            return None

    return wrapper


class EditController(QObject):
    """Connects actions, the canvas tools and the tracks panel to ``bridge.doc``."""

    def __init__(self, window, bridge, actions, tools, panel) -> None:
        super().__init__(window)
        self.window, self.bridge, self.actions, self.tools, self.panel = window, bridge, actions, tools, panel
        self.labels = LabelSelector(window.settings, panel)  # the label of new tracks, above the table
        panel.add_header(self.labels)
        self.labels.edit_button.clicked.connect(lambda: actions.labels.trigger())
        a = actions
        for act, slot in ((a.undo, self.undo), (a.redo, self.redo), (a.relabel, self.relabel),
                          (a.accept, self.accept), (a.reject, self.reject), (a.delete, self.delete),
                          (a.delete_from, self.delete_from), (a.merge, self.merge), (a.split, self.split),
                          (a.new_track, self.new_track), (a.hide, self.toggle_hidden), (a.solo, self.solo),
                          (a.select_all, self.select_all), (a.grow, tools.grow_radius),
                          (a.shrink, tools.shrink_radius), (a.close_polygon, self.finish_gesture),
                          (a.refine_edge, self.refine_edge),
                          (a.remove_point, tools.remove_last_point), (a.labels, self.edit_labels)):
            act.triggered.connect(lambda _checked=False, s=slot: s())
        for name, act in a.tools.items():
            act.triggered.connect(lambda _checked=False, n=name: self.set_tool(n))
        tools.toolChanged.connect(self._on_tool_changed)
        tools.radiusChanged.connect(lambda r: window.statusBar().showMessage(f"brush radius {r} px", 2000))
        tools.strokeFinished.connect(self._on_stroke)
        tools.polygonFinished.connect(self._on_polygon)
        tools.clicked.connect(self._on_click)
        self.box = BoxTool(tools, self)  # Box tool (K) and Refine edge (Ctrl+K): GrabCut off the UI thread
        tools.boxFinished.connect(self._on_box)
        tools.hintFinished.connect(self._on_hint)
        self.box.accepted.connect(self._on_box_accepted)
        self.box.refined.connect(self._on_refined)
        self.box.refineFailed.connect(lambda _tag, why: window.show_error("Cannot refine the edge", why))
        self.box.message.connect(self._say)
        window.timeline.frameChanged.connect(lambda i: self.box.drop() if self.box.frame not in (None, i) else None)
        panel.selectionChanged.connect(self._on_panel_selection)
        panel.trackActivated.connect(self._on_track_activated)
        bridge.changed.connect(self._on_doc_event)
        bridge.replaced.connect(self._on_replaced)
        self._on_tool_changed(tools.tool())
        self.update_actions()

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def doc(self):
        return self.bridge.doc

    def frame(self) -> int:
        return self.window.timeline.frame

    def _need_doc(self):
        if self.doc is None:
            raise ValueError("Open a clip first (File → Open).")
        return self.doc

    def _selection(self, at_least: int = 1) -> tuple[int, ...]:
        doc = self._need_doc()
        if len(doc.selected) < at_least:
            raise ValueError("Select a track first: click its mask (Select tool, V) or its row in the Tracks panel."
                             if at_least == 1 else f"Select at least {at_least} tracks (Ctrl+click rows or masks).")
        return doc.selected

    def _say(self, text: str) -> None:
        self.window.statusBar().showMessage(text, 5000)

    # -- Edit menu ---------------------------------------------------------------------------------
    @_guarded
    def undo(self) -> None:
        cmd = self._need_doc().undo()
        self._say(f"Undone: {cmd.label}" if cmd else "Nothing to undo")

    @_guarded
    def redo(self) -> None:
        cmd = self._need_doc().redo()
        self._say(f"Redone: {cmd.label}" if cmd else "Nothing to redo")

    @_guarded
    def relabel(self, category_id: int | None = None) -> None:
        """R: relabel the selected tracks, or (nothing selected) choose the label of new tracks; a typed
        name that no label has creates that label. The label becomes the current one."""
        doc = self._need_doc()
        ids = doc.selected
        if category_id is None:
            current = doc.track(ids[0]).category_id if ids else self.labels.current_id()
            category_id = pick_category(self.window, doc.categories, current, create=doc.add_category,
                                        title="Relabel" if ids else "Label of new tracks")
            if category_id is None:
                return
        if ids:
            doc.relabel(ids, category_id)
        self.labels.set_labels(doc.labels)
        self.labels.set_current(category_id)
        if not ids:
            self._say(f"New tracks will be labelled {doc.category_name(category_id)}")

    @_guarded
    def edit_labels(self) -> None:
        dialog = LabelsDialog(self._need_doc(), self.window, folder=self.window.folders.start("labels"))
        try:
            dialog.exec()
        finally:
            dialog.deleteLater()

    @_guarded
    def accept(self) -> None:
        self._toggle_review("accepted")

    @_guarded
    def reject(self) -> None:
        self._toggle_review("rejected")

    def _toggle_review(self, state: str) -> None:
        ids = self._selection()
        doc = self.doc
        already = all(doc.track(t).review == state for t in ids)
        doc.set_review(ids, "unreviewed" if already else state)

    @_guarded
    def delete(self) -> None:
        self.doc.delete(self._selection())

    @_guarded
    def delete_from(self) -> None:
        self.doc.delete_from(self._selection()[0], self.frame())

    @_guarded
    def merge(self) -> None:
        self.doc.merge(self._selection(2))

    @_guarded
    def split(self) -> None:
        new_id = self.doc.split(self._selection()[0], self.frame())
        self.doc.select([new_id])
        self._say(f"Split: frames from {self.frame()} on are now track {new_id}")

    @_guarded
    def new_track(self) -> None:
        self._need_doc().select([])
        if self.tools.tool() not in ("brush", "polygon", "box"):
            self.set_tool("brush")
        self._say("Draw with the brush (B), a polygon (P) or a box (K): it becomes a new track")

    @_guarded
    def toggle_hidden(self) -> None:
        ids = self._selection()
        doc = self.doc
        doc.set_hidden(ids, hidden=not all(t in doc.hidden for t in ids))

    @_guarded
    def solo(self) -> None:
        doc = self._need_doc()
        doc.set_solo(doc.current if doc.current is not None else None)

    @_guarded
    def select_all(self) -> None:
        doc = self._need_doc()
        doc.select(sorted(doc.tracks))

    # -- tools -------------------------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        self.tools.set_tool(name)

    def _on_tool_changed(self, name: str) -> None:
        act = self.actions.tools.get(name)
        if act is not None and not act.isChecked():
            act.setChecked(True)
        polygon = name == "polygon"
        self.actions.close_polygon.setEnabled(polygon or name == "box")
        self.actions.remove_point.setEnabled(polygon)
        if name != "box":
            self.box.drop()

    def finish_gesture(self) -> None:
        """Enter: close the polygon, or accept the box's mask."""
        if self.tools.tool() == "box":
            self.box.accept()
        else:
            self.tools.close_polygon()

    def escape(self) -> bool:
        """Esc: drop the gesture in progress (polygon, stroke, the box and its strokes); False when there was none."""
        busy = self.tools.busy() or self.box.active or self.tools.box_rect() is not None
        self.tools.cancel()
        self.box.drop()
        return busy

    def _new_track_category(self) -> int:
        """The current label; a project without labels gets its first one, "object"."""
        doc = self.doc
        current = self.labels.current_id()
        if current is not None and current in doc.categories:
            return current
        first = next(iter(doc.categories), None)
        return first if first is not None else doc.add_category("object")

    def _apply_drawn(self, mask, *, erase: bool, what: str) -> None:
        doc = self._need_doc()
        current = doc.current
        if current is not None:
            doc.paint(current, self.frame(), mask, erase=erase)
            return
        if erase:
            raise ValueError("Select the track to erase from first (Select tool, V, then click its mask).")
        category = self._new_track_category()
        new_id = doc.create_track(self.frame(), mask, category, note=f"drawn ({what}) on frame {self.frame()}")
        doc.select([new_id])
        self._say(f"New track {new_id} ({doc.category_name(category)}); R relabels it")

    @_guarded
    def _on_stroke(self, points, radius: float, erase: bool) -> None:
        clip = self._need_doc().clip
        self._apply_drawn(brush_mask(points, radius, clip.height, clip.width), erase=erase,
                          what="eraser" if erase else "brush")

    @_guarded
    def _on_polygon(self, points, subtract: bool = False) -> None:
        clip = self._need_doc().clip
        self._apply_drawn(polygon_mask(points, clip.height, clip.width), erase=subtract, what="polygon")

    # -- box to mask and refine (vpp_gui.box_tool) ---------------------------------------------------
    def _image(self):
        """The shown frame's RGB pixels (what GrabCut looks at)."""
        self._need_doc()
        if self.window.source is None:
            raise ValueError("Open a clip first (File → Open).")
        return self.window.source.frame(self.frame())

    @_guarded
    def _on_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.box.set_box(self.frame(), self._image(), (x0, y0, x1, y1))

    @_guarded
    def _on_hint(self, points, radius: float, foreground: bool) -> None:
        self.box.add_hint(self.frame(), self._image(), points, radius, foreground=foreground)

    @_guarded
    def _on_box_accepted(self, frame: int, mask) -> None:
        doc = self._need_doc()
        if frame != self.frame():
            raise ValueError(f"the box was drawn on frame {frame}, but frame {self.frame()} is shown: draw it again")
        if doc.current is None:
            self._apply_drawn(mask, erase=False, what="box")
        # added to what the track has on this frame (as the brush adds), one undo step
        elif doc.set_mask(doc.current, frame, doc.mask(doc.current, frame) | mask, label="Box to mask") is not None:
            self._say(f"Track {doc.current}: the box's mask is added to its mask on frame {frame} (Ctrl+Z undoes it)")

    @_guarded
    def refine_edge(self) -> None:
        """Ctrl+K: snap the current track's mask edge on the shown frame to the image (GrabCut in a band)."""
        track_id, frame = self._selection()[0], self.frame()
        before = self.doc.track(track_id).frames.get(frame)
        if before is None or before.area == 0:
            raise ValueError(f"Track {track_id} has no mask on frame {frame}: draw one first, or go to a frame "
                             "where it has one.")
        self.box.refine((self.doc, track_id, frame, before), self._image(), before.decode())
        self._say(f"Refining the edge of track {track_id}…")

    @_guarded
    def _on_refined(self, tag, mask) -> None:
        doc, track_id, frame, before = tag
        if doc is not self.doc or track_id not in doc.tracks or doc.track(track_id).frames.get(frame) is not before:
            self._say("The mask changed while its edge was being refined: nothing done (Ctrl+K refines it again)")
            return
        cmd = doc.set_mask(track_id, frame, mask, label="Refine edge")
        self._say("Edge refined (Ctrl+Z undoes it)" if cmd else "The edge already follows the image: nothing changed")

    @_guarded
    def _on_click(self, x: float, y: float) -> None:
        doc = self._need_doc()
        if self.tools.tool() == "fill":
            if doc.current is None:
                raise ValueError("Select the track whose hole to fill first (Select tool, V).")
            if doc.fill_holes(doc.current, self.frame(), (int(x), int(y))) is None:
                self._say("No hole of the current track there: click inside a hole of its mask")
            return
        hit = doc.track_at(self.frame(), x, y)
        add = bool(QApplication.keyboardModifiers() & Qt.KeyboardModifier.ControlModifier)
        if add and hit is not None:
            ids = [t for t in doc.selected if t != hit] if hit in doc.selected else [*doc.selected, hit]
            doc.select(ids)
        else:
            doc.select([hit] if hit is not None else [])

    # -- panel and document ------------------------------------------------------------------------
    def _on_panel_selection(self, ids) -> None:
        if self.doc is not None:
            self.doc.select(ids)

    def _on_track_activated(self, track_id: int) -> None:
        doc = self.doc
        if doc is None or track_id not in doc.tracks:
            return
        target = doc.track(track_id).nearest_frame(self.frame())  # stays here when the track is on this frame
        if track_id not in doc.selected:
            doc.select([track_id])
        if target is not None and target != self.frame():
            self.window.timeline.set_frame(target)

    def _on_replaced(self) -> None:
        self.box.drop()
        self.panel.set_document(self.doc)
        self.labels.set_labels(self.doc.labels if self.doc is not None else (), fresh=True)
        self.update_actions()

    def _on_doc_event(self, event: DocEvent) -> None:
        doc = self.doc
        if event.kind in ("tracks", "view", "categories"):
            self.panel.refresh(event.tracks or None)
        if event.kind == "categories" and doc is not None:
            self.labels.set_labels(doc.labels)
        if event.kind == "view" and doc is not None:
            self.panel.select(doc.selected)
        if event.kind in ("view", "history", "tracks") and doc is not None:
            current = doc.current
            self.tools.set_color(track_color(current) if current is not None else NEW_TRACK_COLOR)
        if event.kind in ("view", "history", "tracks"):
            self.update_actions()

    def update_actions(self) -> None:
        doc = self.doc
        a = self.actions
        have = doc is not None
        n = len(doc.selected) if have else 0
        a.undo.setEnabled(have and doc.history.can_undo)
        a.redo.setEnabled(have and doc.history.can_redo)
        a.undo.setText(f"&Undo {doc.history.undo_label}" if have and doc.history.can_undo else "&Undo")
        a.redo.setText(f"&Redo {doc.history.redo_label}" if have and doc.history.can_redo else "&Redo")
        for act in (a.accept, a.reject, a.delete, a.hide):
            act.setEnabled(n >= 1)
        a.relabel.setEnabled(have)  # nothing selected: R chooses the label of new tracks
        a.labels.setEnabled(have)
        for act in (a.delete_from, a.split, a.solo):
            act.setEnabled(n >= 1 or (act is a.solo and have and doc.solo is not None))
        a.merge.setEnabled(n >= 2)
        a.refine_edge.setEnabled(n >= 1)
        a.new_track.setEnabled(have)
        a.select_all.setEnabled(have)
