"""Signal adapter over the Qt-free :class:`core.app.document.Document`: its events as Qt signals.

The document lives on the UI thread (worker results reach it through queued signals), so the
listener runs there too and the signals are direct.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from core.app.document import DocEvent, Document


class DocumentBridge(QObject):
    changed = Signal(object)  # a DocEvent
    replaced = Signal()  # another document (or none) is now open

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.doc: Document | None = None
        self._unsubscribe = None

    def set_document(self, doc: Document | None) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.doc = doc
        if doc is not None:
            self._unsubscribe = doc.subscribe(self._on_event)
        self.replaced.emit()

    def _on_event(self, event: DocEvent) -> None:
        self.changed.emit(event)
