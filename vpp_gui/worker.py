"""Runs :func:`core.app.studio.guarded_pass` on a superqt GeneratorWorker, one pass at a time.

The runner has its own one-thread pool, so passes run strictly one after another: a replaced pass
stops at its next frame boundary (``quit()``) before the next one starts, and the model and session
are only ever touched by that one pool thread. Messages reach the UI thread through a queued signal.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from superqt.utils import GeneratorWorker

from core.app.studio import ModelFactory, ModelStore, PreviewChannel, RunRequest, default_model_factory, guarded_pass

CLIP_CACHE_BYTES = 64 * 2**20  # the worker reads frames in order; a small cache is enough


def open_clip_for_worker(path: str):
    from core.data.sources import open_source

    return open_source(path, cache_bytes=CLIP_CACHE_BYTES)


class InferenceRunner(QObject):
    """``start(request)`` replaces any running pass; every message comes out of :attr:`message`."""

    message = Signal(object)  # a core.app.studio.Message

    def __init__(self, model_factory: ModelFactory = default_model_factory,
                 open_clip: Callable[[str], object] = open_clip_for_worker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._models = ModelStore(model_factory)
        self._open_clip = open_clip
        self._channel = PreviewChannel()
        self._worker: GeneratorWorker | None = None
        self._workers: set[GeneratorWorker] = set()  # alive until their `finished`

    @property
    def model_factory(self) -> ModelFactory:
        """How this runner loads models (the sweep panel loads its model the same way)."""
        return self._models.factory

    def start(self, request: RunRequest, preview: int | None = None) -> None:
        self.cancel()
        self._channel = PreviewChannel()
        self._channel.want(preview)
        worker = GeneratorWorker(guarded_pass, request, self._models, self._channel, self._open_clip)
        worker.setAutoDelete(False)
        worker.yielded.connect(self._relay, Qt.ConnectionType.QueuedConnection)
        worker.finished.connect(partial(self._forget, worker), Qt.ConnectionType.QueuedConnection)
        self._workers.add(worker)
        self._worker = worker
        self._pool.start(worker)

    def preview(self, index: int | None) -> None:
        """Ask the running pass to preview frame ``index`` before its next frame."""
        self._channel.want(index)

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.quit()
            self._worker = None

    @property
    def busy(self) -> bool:
        return bool(self._workers)

    def shutdown(self, msecs: int = 10000) -> bool:
        """Stop everything and wait for the pool thread (call before the app quits)."""
        self.cancel()
        for w in list(self._workers):
            w.quit()
        return self._pool.waitForDone(msecs)

    def _relay(self, msg) -> None:
        self.message.emit(msg)

    def _forget(self, worker: GeneratorWorker) -> None:
        self._workers.discard(worker)
