"""The kept/pruned heatmap's default: on for the demo clip, off by itself for annotating real footage.

The heatmap covers most of a frame in grey blocks: it shows someone exploring pruning on the demo clip
what the model keeps, but hides the image from someone annotating. So it starts on; it is switched off
once a real clip is opened (anything but the demo clip) or a person edits (any undoable step), with a
one-time notice naming the key that brings it back (H). Once a person toggles the heatmap themselves (H,
View → Kept/pruned heatmap, or the Controls checkbox), that choice is theirs: it is remembered across
sessions and nothing switches it for them again.
"""

from __future__ import annotations

from PySide6.QtCore import QObject

from core.app.clips import is_demo_clip
from core.app.document import DocEvent

CHOSEN_KEY = "layers/heatmap_chosen"
NOTICE = ("The kept/pruned heatmap is off so that the image shows. Press H (or View → Kept/pruned heatmap) "
          "to show it again.")


class HeatmapDefault(QObject):
    """Owns the heatmap's automatic state; build it after the window restored its settings."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.action = window.actions_.layers["heatmap"]
        self.chosen = bool(window.settings.value(CHOSEN_KEY, False, bool))
        self._switching = False
        if not self.chosen:  # a saved state that the app itself switched off is not a person's choice
            self._set(True)
        self.action.toggled.connect(self._on_toggled)
        window.clipOpened.connect(self._on_clip_opened)
        window.bridge.changed.connect(self._on_doc_event)

    def _set(self, on: bool) -> None:
        self._switching = True
        try:
            self.action.setChecked(on)
        finally:
            self._switching = False

    def _on_toggled(self, _on: bool) -> None:
        if not self._switching and not self.chosen:
            self.chosen = True
            self.window.settings.set_value(CHOSEN_KEY, True)

    def _on_clip_opened(self, path: str) -> None:
        if not is_demo_clip(path):
            self.switch_off()

    def _on_doc_event(self, event: DocEvent) -> None:
        if event.kind == "history":  # an edit, an import, an undo: a person is annotating
            self.switch_off()

    def switch_off(self) -> bool:
        """Hide the heatmap unless a person chose it; True when it was switched off now."""
        if self.chosen or not self.action.isChecked():
            return False
        self._set(False)
        self.window.notice.notify(NOTICE)
        return True
