"""Dark and light themes: a Fusion palette for the widgets and matching pyqtgraph colours."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget

THEMES = ("dark", "light")


@dataclass(frozen=True)
class Theme:
    name: str
    window: str
    base: str
    alt_base: str
    text: str
    button: str
    highlight: str
    muted: str
    warning: str
    plot_background: str
    plot_foreground: str
    view_background: str


DARK = Theme("dark", window="#2b2d31", base="#1e1f22", alt_base="#26282c", text="#e6e6e6", button="#34363b",
             highlight="#3d7bd9", muted="#9aa0a6", warning="#f0b429", plot_background="#1e1f22",
             plot_foreground="#c8c8c8", view_background="#141517")
LIGHT = Theme("light", window="#f3f3f3", base="#ffffff", alt_base="#f7f7f7", text="#1e1e1e", button="#e8e8e8",
              highlight="#2f6fd0", muted="#5f6368", warning="#a15c00", plot_background="#ffffff",
              plot_foreground="#303030", view_background="#d9d9d9")


def get_theme(name: str) -> Theme:
    return LIGHT if name == "light" else DARK


def apply_theme(app: QApplication, name: str, root: QWidget | None = None) -> Theme:
    """Set the Fusion style and a palette on ``app``; returns the theme for pyqtgraph widgets.

    Widgets with a style sheet keep the old palette until re-polished: those under ``root`` are (only the
    window being themed is walked, never widgets of other windows, which may be half torn down)."""
    theme = get_theme(name)
    app.setStyle("Fusion")
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: theme.window,
        QPalette.ColorRole.WindowText: theme.text,
        QPalette.ColorRole.Base: theme.base,
        QPalette.ColorRole.AlternateBase: theme.alt_base,
        QPalette.ColorRole.ToolTipBase: theme.base,
        QPalette.ColorRole.ToolTipText: theme.text,
        QPalette.ColorRole.Text: theme.text,
        QPalette.ColorRole.Button: theme.button,
        QPalette.ColorRole.ButtonText: theme.text,
        QPalette.ColorRole.Highlight: theme.highlight,
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: theme.muted,
        QPalette.ColorRole.Link: theme.highlight,
    }
    for role, color in roles.items():
        pal.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(theme.muted))
    app.setPalette(pal)
    for widget in ([root, *root.findChildren(QWidget)] if root is not None else []):
        if widget.styleSheet():
            widget.setStyleSheet(widget.styleSheet())
    return theme
