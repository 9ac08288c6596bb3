"""Export the current pass in any format of :mod:`core.formats` (YouTube-VIS JSON or zip, DAVIS PNGs, COCO, ...).

:func:`core.app.exports.write_export` (all or nothing, atomic, with a run record beside the output) runs
on a superqt FunctionWorker (no torch involved) so a long clip does not freeze the window.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from superqt.utils import FunctionWorker

from core.app.exports import incomplete_message, write_export

__all__ = ["Exporter", "incomplete_message", "write_export"]


class Exporter(QObject):
    """Runs one export at a time on a worker thread; reports with ``finished`` / ``failed``."""

    finished = Signal(str)  # summary
    failed = Signal(str)  # message

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._workers: set[FunctionWorker] = set()  # each held until its thread is done
        self._busy = False  # cleared before finished/failed, so a slot may start the next export

    @property
    def busy(self) -> bool:
        return self._busy

    def start(self, func, *args, **kwargs) -> bool:
        if self._busy:
            return False
        worker = FunctionWorker(func, *args, **kwargs)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(lambda: self._workers.discard(worker))
        self._workers.add(worker)
        self._busy = True
        worker.start()
        return True

    def _on_returned(self, summary: str) -> None:
        self._busy = False
        self.finished.emit(summary)

    def _on_error(self, exc: Exception) -> None:
        from core.app.studio import user_message

        self._busy = False
        self.failed.emit(user_message(exc))
