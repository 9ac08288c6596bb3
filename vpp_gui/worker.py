"""Runs :func:`core.app.studio.guarded_pass` on a superqt FunctionWorker, one pass at a time.

The runner has its own one-thread pool, so passes run strictly one after another: a replaced pass
stops at its next frame boundary (its ``stop`` event, polled by :func:`core.clip_loop.run_clip`) before
the next one starts, and the model and session are only ever touched by that one pool thread. The pass
hands its messages to a signal emitted on the pool thread; they reach the UI thread queued.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from superqt.utils import FunctionWorker

from core.app.clips import open_clip_for_pass
from core.app.studio import ModelFactory, ModelStore, PreviewChannel, RunRequest, default_model_factory, guarded_pass


class InferenceRunner(QObject):
    """``start(request)`` replaces any running pass; every message comes out of :attr:`message`."""

    message = Signal(object)  # a core.app.studio.Message, on the UI thread
    _posted = Signal(object)  # the same, emitted on the pool thread

    def __init__(self, model_factory: ModelFactory = default_model_factory,
                 open_clip: Callable[[str], object] = open_clip_for_pass, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._models = ModelStore(model_factory)
        self._open_clip = open_clip
        self._channel = PreviewChannel()
        self._stop: threading.Event | None = None  # the running pass's
        self._workers: dict[FunctionWorker, threading.Event] = {}  # alive until their `finished`
        self._posted.connect(self._relay, Qt.ConnectionType.QueuedConnection)

    @property
    def model_factory(self) -> ModelFactory:
        """How this runner loads models (the sweep panel loads its model the same way)."""
        return self._models.factory

    def start(self, request: RunRequest, preview: int | None = None) -> None:
        self.cancel()
        self._channel = PreviewChannel()
        self._channel.want(preview)
        stop = threading.Event()
        worker = FunctionWorker(guarded_pass, request, self._models, self._channel, self._open_clip,
                                self._posted.emit, stop.is_set)
        worker.setAutoDelete(False)
        worker.finished.connect(partial(self._forget, worker), Qt.ConnectionType.QueuedConnection)
        self._workers[worker] = stop
        self._stop = stop
        self._pool.start(worker)

    def preview(self, index: int | None) -> None:
        """Ask the running pass to preview frame ``index`` before its next frame."""
        self._channel.want(index)

    def cancel(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None

    @property
    def busy(self) -> bool:
        return bool(self._workers)

    def shutdown(self, msecs: int = 10000) -> bool:
        """Stop everything and wait for the pool thread (call before the app quits)."""
        self.cancel()
        for stop in self._workers.values():
            stop.set()
        return self._pool.waitForDone(msecs)

    def _relay(self, msg) -> None:
        self.message.emit(msg)

    def _forget(self, worker: FunctionWorker) -> None:
        self._workers.pop(worker, None)
