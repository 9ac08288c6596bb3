"""One-at-a-time background jobs where only the latest request matters (the review and evaluation panels).

:class:`LatestRunner` runs a function on its own one-thread pool (a superqt FunctionWorker, as the sweep
panel does). While a job runs, a new :meth:`~LatestRunner.submit` waits; a newer submit replaces the
waiting one (it would be stale before it started). Every job ends in exactly one ``done(tag, result,
seconds)`` or ``failed(tag, exception)``, on the UI thread (queued); ``tag`` is whatever the caller
passed (e.g. a :class:`core.app.review_state.Ticket`), so the caller decides whether the result is still
wanted. :attr:`~LatestRunner.thread_ids` records the thread each job ran on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from superqt.utils import FunctionWorker


def _call(tag: Any, fn: Callable, args: tuple) -> tuple:
    """On the pool thread: (tag, ok, result or exception, seconds, thread id); never raises."""
    t0 = time.perf_counter()
    try:
        value, ok = fn(*args), True
    except Exception as exc:  # reported through `failed`
        value, ok = exc, False
    return tag, ok, value, time.perf_counter() - t0, threading.get_ident()


class LatestRunner(QObject):
    done = Signal(object, object, float)  # tag, result, seconds
    failed = Signal(object, object)  # tag, exception

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._running: FunctionWorker | None = None
        self._waiting: tuple | None = None
        self._alive: set[FunctionWorker] = set()  # until their `finished` (the pool thread still uses them)
        self.thread_ids: list[int] = []

    @property
    def busy(self) -> bool:
        return self._running is not None or self._waiting is not None

    def submit(self, tag: Any, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` after the running job; replaces a job still waiting (it is dropped unreported)."""
        self._waiting = (tag, fn, args)
        if self._running is None:
            self._next()

    def drop_waiting(self) -> None:
        self._waiting = None

    def _next(self) -> None:
        if self._waiting is None:
            return
        tag, fn, args = self._waiting
        self._waiting = None
        worker = FunctionWorker(_call, tag, fn, args)
        worker.setAutoDelete(False)
        worker.returned.connect(self._on_returned)  # a slot of this QObject: queued to the UI thread
        worker.finished.connect(partial(self._alive.discard, worker), Qt.ConnectionType.QueuedConnection)
        self._alive.add(worker)
        self._running = worker
        self._pool.start(worker)

    def _on_returned(self, out: tuple) -> None:
        tag, ok, value, seconds, thread_id = out
        self._running = None
        self.thread_ids.append(thread_id)
        if ok:
            self.done.emit(tag, value, seconds)
        else:
            self.failed.emit(tag, value)
        self._next()

    def shutdown(self, msecs: int = 10000) -> bool:
        """Drop the waiting job and wait for the running one (call before the window goes)."""
        self._waiting = None
        return self._pool.waitForDone(msecs)
