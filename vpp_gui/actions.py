"""The window's actions and menus, with their shortcuts; the Help list is generated from them.

Shortcuts follow the conventions in ``docs/users.md``. One conflict is resolved on purpose: CVAT's
D / F step frames (annotators use them constantly), so *fit* is ``0`` or ``Shift+F`` rather than ``F``.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

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
        self.export_ytvis = _action(w, "&Export YouTube-VIS…", ("Ctrl+E",),
                                    tip="Save the results as YouTube-VIS JSON (or a zip for the server)")
        self.export_davis = _action(w, "Export &DAVIS masks…", ("Ctrl+Shift+E",),
                                    tip="Save one indexed PNG mask per frame")
        self.quit = _action(w, "&Quit", ("Ctrl+Q",))

        self.layers = {
            "masks": _action(w, "&Masks", ("M",), checkable=True, checked=True, tip="Show instance masks"),
            "contours": _action(w, "&Contours", ("C",), checkable=True, checked=True, tip="Show mask contours"),
            "labels": _action(w, "&Labels", ("L",), checkable=True, checked=True,
                              tip="Show labels: category #track score"),
            "heatmap": _action(w, "Kept/pruned &heatmap", ("H",), checkable=True, checked=True,
                               tip="Show which patches the model kept"),
        }
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

        self.run = _action(w, "&Run inference", ("Ctrl+R",), tip="Run the whole clip again with the current settings")
        self.cancel = _action(w, "&Cancel inference", ("Esc",), tip="Stop the running inference")

        self.shortcuts = _action(w, "&Keyboard shortcuts", ("F1",))
        self.about = _action(w, "&About VPP Studio")

    def build_menus(self, window: QMainWindow, docks: list) -> None:
        bar = window.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.open, self.open_video])
        file_menu.addMenu(self.recent_menu)
        file_menu.addSeparator()
        file_menu.addActions([self.export_ytvis, self.export_davis])
        file_menu.addSeparator()
        file_menu.addAction(self.quit)

        view = bar.addMenu("&View")
        view.addActions(list(self.layers.values()))
        view.addSeparator()
        view.addAction(self.fit)
        view.addSeparator()
        view.addActions(list(self.themes.values()))
        view.addSeparator()
        for dock in docks:
            view.addAction(dock.toggleViewAction())

        play = bar.addMenu("&Playback")
        play.addActions([self.play, self.prev, self.next, self.first, self.last])
        run = bar.addMenu("&Inference")
        run.addActions([self.run, self.cancel])
        help_menu = bar.addMenu("&Help")
        help_menu.addActions([self.shortcuts, self.about])

    def all(self) -> list[QAction]:
        return [self.open, self.open_video, self.export_ytvis, self.export_davis, self.quit, *self.layers.values(),
                self.fit, self.play, self.prev, self.next, self.first, self.last, self.run, self.cancel, self.shortcuts]


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
