"""The window's actions and menus, with their shortcuts; the Help list is generated from them.

Shortcuts follow the conventions in ``docs/users.md``. One conflict is resolved on purpose: CVAT's
D / F step frames (annotators use them constantly), so *fit* is ``0`` or ``Shift+F`` rather than ``F``.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

from core.app.exports import codecs
from vpp_gui.theme import THEMES


def _action(parent: QObject, text: str, shortcuts: tuple[str, ...] = (), *, checkable: bool = False,
            checked: bool = False, tip: str = "") -> QAction:
    act = QAction(text, parent)
    if shortcuts:
        act.setShortcuts([QKeySequence(s) for s in shortcuts])
    if checkable:
        act.setCheckable(True)
        act.setChecked(checked)
    keys = ", ".join(QKeySequence(s).toString(QKeySequence.SequenceFormat.NativeText) for s in shortcuts)
    act.setToolTip(f"{tip or text.replace('…', '').replace('&', '')}" + (f" ({keys})" if keys else ""))
    act.setStatusTip(tip)
    return act


class Actions:
    """All QActions of the main window (``window`` owns them)."""

    def __init__(self, window: QMainWindow) -> None:
        w = window
        self.open = _action(w, "&Open frame folder…", ("Ctrl+O",), tip="Open a folder of frames")
        self.open_video = _action(w, "Open &video file…", ("Ctrl+Shift+O",), tip="Open a video file (mp4, avi, mkv…)")
        self.recent_menu = QMenu("Open &Recent", w)
        # File → Export: one entry per format of core.formats (a format joining another's dialog has none),
        # also reachable as ``export_<name>``
        self.exports = {c.name: _action(w, c.menu_label, c.menu_shortcut, tip=c.menu_tip)
                        for c in codecs() if c.menu_label and not c.menu_joins}
        for name, act in self.exports.items():
            setattr(self, f"export_{name}", act)
        self.quit = _action(w, "&Quit", ("Ctrl+Q",))
        self.open_project = _action(w, "Open &project…", ("Ctrl+Alt+O",), tip="Open a VPP Studio project (*.vppproj)")
        self.save = _action(w, "&Save project", ("Ctrl+S",), tip="Save the clip, settings, results and every edit")
        self.save_as = _action(w, "Save project &as…", ("Ctrl+Shift+S",))
        self.import_results = _action(w, "&Import masks…", ("Ctrl+I",),
                                      tip="Import YouTube-VIS results or ground truth (JSON/zip) for the open clip")
        self.import_davis = _action(w, "Import DAVIS PNG masks…", tip="Import a folder of DAVIS indexed PNG masks")
        self.load_gt = _action(w, "Load &ground truth…", ("Ctrl+Shift+G",),
                               tip="Compare the tracks with a YouTube-VIS GT JSON or a DAVIS PNG folder")
        self.load_gt_folder = _action(w, "Load ground truth (DAVIS PNG folder)…",
                                      tip="Compare the tracks with a folder of DAVIS PNG masks")

        # Edit: every track operation, keyboard-first (the selected tracks; the first one is the current one)
        self.undo = _action(w, "&Undo", ("Ctrl+Z",))
        self.redo = _action(w, "&Redo", ("Ctrl+Shift+Z", "Ctrl+Y"))
        self.relabel = _action(w, "Re&label…", ("R",), tip="Change the label of the selected tracks (a new name "
                               "creates a label; nothing selected: the label of new tracks)")
        self.labels = _action(w, "La&bels…", ("Ctrl+L",), tip="Add, rename, recolour, delete, reorder or load "
                              "the project's labels")
        self.accept = _action(w, "&Accept", ("A",), tip="Mark the selected tracks as reviewed and correct")
        self.reject = _action(w, "Re&ject", ("X",), tip="Mark the selected tracks as wrong (kept, not exported)")
        self.delete = _action(w, "&Delete track", ("Delete",), tip="Delete the selected tracks")
        self.delete_from = _action(w, "Delete from this &frame on", ("Shift+Delete",),
                                   tip="Delete the selected track from the current frame to the end")
        self.merge = _action(w, "&Merge tracks", ("Ctrl+M",), tip="Merge the selected tracks into the first one")
        self.split = _action(w, "&Split at this frame", ("S",),
                             tip="Split the selected track: frames from here on become a new track")
        self.new_track = _action(w, "&New track", ("N",), tip="Clear the selection: the next stroke or polygon "
                                 "makes a new track")
        self.hide = _action(w, "&Hide / show", ("Ctrl+H",), tip="Hide or show the selected tracks")
        self.solo = _action(w, "S&olo", ("O",), tip="Show only the selected track (again: show all)")
        self.select_all = _action(w, "Select all tracks", ("Ctrl+A",))
        self.tools = {
            "select": _action(w, "Select / pan", ("V",), checkable=True, checked=True,
                              tip="Click a mask to select its track; drag to pan"),
            "brush": _action(w, "&Brush", ("B",), checkable=True, tip="Paint into the current track"),
            "eraser": _action(w, "&Eraser", ("E",), checkable=True, tip="Erase from the current track"),
            "polygon": _action(w, "&Polygon", ("P",), checkable=True,
                               tip="Click points (drag one to move it); Enter or a click on the first point closes; "
                                   "Shift at the first click: the polygon erases from the current track "
                                   "(Backspace removes the last point)"),
            "box": _action(w, "Bo&x to mask", ("K",), checkable=True,
                           tip="Drag a box around an object: GrabCut previews its mask. Shift-drag marks the "
                               "object, Ctrl-drag the background (brush radius [ ]), each runs GrabCut again. "
                               "Enter adds it to the current track's mask on this frame (nothing selected: a new "
                               "track); Esc drops the box"),
            "fill": _action(w, "&Fill hole", ("G",), checkable=True, tip="Click a hole of the current mask to fill it"),
        }
        self.tool_group = QActionGroup(w)
        for act in self.tools.values():
            self.tool_group.addAction(act)
        self.grow = _action(w, "Larger brush", ("]",))
        self.shrink = _action(w, "Smaller brush", ("[",))
        self.close_polygon = _action(w, "Close polygon / accept box", ("Return", "Enter"))
        self.refine_edge = _action(w, "Refine mask &edge", ("Ctrl+K",),
                                   tip="Snap the current track's mask edge on this frame to the image (GrabCut in "
                                       "a band around the edge; one undo step)")
        self.remove_point = _action(w, "Remove last polygon point", ("Backspace",))

        self.layers = {
            "masks": _action(w, "&Masks", ("M",), checkable=True, checked=True, tip="Show instance masks"),
            "contours": _action(w, "&Contours", ("C",), checkable=True, checked=True, tip="Show mask contours"),
            "labels": _action(w, "&Labels", ("L",), checkable=True, checked=True,
                              tip="Show labels: category #track score"),
            "heatmap": _action(w, "Kept/pruned &heatmap", ("H",), checkable=True, checked=True,
                               tip="Show which patches the model kept"),
        }
        # what is drawn once a GT is loaded (GT as dashed outlines, predictions as filled masks); Ctrl+G cycles
        self.gt_group = QActionGroup(w)
        self.gt_modes = {
            "both": _action(w, "Ground truth and predictions", checkable=True, checked=True),
            "gt": _action(w, "Ground truth only", checkable=True),
            "pred": _action(w, "Predictions only", checkable=True),
        }
        for act in self.gt_modes.values():
            self.gt_group.addAction(act)
        self.cycle_gt = _action(w, "Cycle ground truth / predictions / both", ("Ctrl+G",),
                                tip="Show GT and predictions, GT only, predictions only")
        self.fit = _action(w, "&Fit to window", ("0", "Shift+F"), tip="Fit the frame to the view")
        self.theme_group = QActionGroup(w)
        self.themes = {}
        for name in THEMES:
            act = _action(w, f"{name.capitalize()} theme", checkable=True)
            self.theme_group.addAction(act)
            self.themes[name] = act

        self.play = _action(w, "&Play / pause", ("Space",))
        self.prev = _action(w, "Pre&vious frame", ("Left", "D"))
        self.next = _action(w, "&Next frame", ("Right", "F"))
        self.first = _action(w, "&First frame", ("Home",))
        self.last = _action(w, "&Last frame", ("End",))
        # Propagate (vpp_gui.propagation): carry the selected track's mask through the clip; keyframe keys
        self.propagate_forward = _action(w, "Propagate &forward", ("T",), tip="Carry the selected track's mask "
                                         "from this frame forward (to: the choice above the Tracks panel)")
        self.propagate_backward = _action(w, "Propagate &backward", ("Shift+T",), tip="Carry the selected track's "
                                          "mask from this frame backward (to: the choice above the Tracks panel)")
        self.fill_between = _action(w, "Fill between &keyframes", ("Ctrl+T",), tip="Fill the frames between the "
                                    "selected track's keyframes around this frame, from both sides")
        self.prev_keyframe = _action(w, "Previous keyframe", ("Ctrl+Left",), tip="Go to the selected track's "
                                     "previous keyframe")
        self.next_keyframe = _action(w, "Next keyframe", ("Ctrl+Right",), tip="Go to the selected track's next "
                                     "keyframe")
        self.next_gap = _action(w, "Next frame without a mask", ("Ctrl+Shift+Right",), tip="Go to the next frame "
                                "where the selected track has no mask")

        self.run = _action(w, "&Run inference", ("Ctrl+R",), tip="Run the whole clip again with the current settings")
        self.cancel = _action(w, "&Cancel propagation or inference", ("Esc",),
                              tip="Stop the running propagation (its finished frames are kept), else the inference")
        self.sweep = _action(w, "PKR &sweep…", ("Ctrl+Shift+W",),
                             tip="Run the clip at several PKRs against its ground truth and plot accuracy vs speed")

        self.shortcuts = _action(w, "&Keyboard shortcuts", ("F1",))
        self.about = _action(w, "&About VPP Studio")

    def build_menus(self, window: QMainWindow, docks: list) -> None:
        bar = window.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.open, self.open_video])
        file_menu.addMenu(self.recent_menu)
        file_menu.addSeparator()
        file_menu.addActions([self.open_project, self.save, self.save_as])
        file_menu.addSeparator()
        file_menu.addActions([self.import_results, self.import_davis])
        file_menu.addActions([self.load_gt, self.load_gt_folder])
        file_menu.addSeparator()
        file_menu.addActions(list(self.exports.values()))
        file_menu.addSeparator()
        file_menu.addAction(self.quit)

        edit = bar.addMenu("&Edit")
        edit.addActions([self.undo, self.redo])
        edit.addSeparator()
        edit.addActions([self.relabel, self.accept, self.reject, self.delete, self.delete_from, self.merge, self.split,
                         self.new_track])
        edit.addSeparator()
        edit.addActions([self.hide, self.solo, self.select_all])
        edit.addSeparator()
        edit.addAction(self.labels)
        tools = bar.addMenu("&Tools")
        tools.addActions(list(self.tools.values()))
        tools.addSeparator()
        tools.addActions([self.grow, self.shrink, self.close_polygon, self.remove_point])
        tools.addSeparator()
        tools.addAction(self.refine_edge)

        view = bar.addMenu("&View")
        view.addActions(list(self.layers.values()))
        view.addSeparator()
        view.addAction(self.fit)
        view.addSeparator()
        view.addActions([*self.gt_modes.values(), self.cycle_gt])
        view.addSeparator()
        view.addActions(list(self.themes.values()))
        view.addSeparator()
        for dock in docks:
            view.addAction(dock.toggleViewAction())

        play = bar.addMenu("&Playback")
        play.addActions([self.play, self.prev, self.next, self.first, self.last])
        play.addSeparator()
        play.addActions([self.prev_keyframe, self.next_keyframe, self.next_gap])
        propagate = bar.addMenu("P&ropagate")
        propagate.addActions([*self.propagation(), self.cancel])
        run = bar.addMenu("&Inference")
        run.addActions([self.run, self.cancel])
        run.addSeparator()
        run.addAction(self.sweep)
        help_menu = bar.addMenu("&Help")
        help_menu.addActions([self.shortcuts, self.about])

    def all(self) -> list[QAction]:
        return [self.open, self.open_video, self.open_project, self.save, self.save_as, self.import_results,
                *self.exports.values(), self.quit, *self.editing(), *self.tools.values(), self.grow,
                self.shrink, self.close_polygon, self.remove_point, *self.layers.values(), self.fit, self.cycle_gt,
                self.load_gt, self.play,
                self.prev, self.next, self.first, self.last, *self.propagation(), self.prev_keyframe,
                self.next_keyframe, self.next_gap, self.run, self.cancel, self.sweep, self.shortcuts]

    def propagation(self) -> list[QAction]:
        """Propagate forward / backward, fill between keyframes (also in the frame view's right-click menu)."""
        return [self.propagate_forward, self.propagate_backward, self.fill_between]

    def editing(self) -> list[QAction]:
        """The actions that need an open document."""
        return [self.undo, self.redo, self.relabel, self.accept, self.reject, self.delete, self.delete_from,
                self.merge, self.split, self.new_track, self.hide, self.solo, self.select_all, self.labels,
                self.refine_edge]


def shortcuts_html(actions: Actions) -> str:
    """The Help → Keyboard shortcuts table, built from the actions themselves."""
    rows = []
    for act in actions.all():
        keys = " or ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in act.shortcuts())
        if keys:
            text = act.text().replace("&", "").rstrip("…")
            rows.append(f"<tr><td><b>{keys}</b></td><td>&nbsp;&nbsp;{text}</td></tr>")
    rows += ["<tr><td><b>Wheel</b></td><td>&nbsp;&nbsp;Zoom the frame</td></tr>",
             "<tr><td><b>Drag</b></td><td>&nbsp;&nbsp;Pan the frame (left or middle button)</td></tr>",
             "<tr><td><b>Click a plot</b></td><td>&nbsp;&nbsp;Go to that frame</td></tr>"]
    return "<table>" + "".join(rows) + "</table>"
