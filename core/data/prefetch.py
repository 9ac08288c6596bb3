"""Read ahead on a background thread: the next frames are decoded (and resized) while the model runs.

    with Prefetcher(source.stream(), depth=4, transform=session.resize) as frames:
        for result in session.run_clip(frames):
            ...

:class:`Prefetcher` iterates ``items`` on one daemon thread, applies ``transform`` there and hands the
results over in order through a queue of at most ``depth`` items, so at most ``depth + 1`` decoded frames
are held. An exception raised while reading or transforming (a :class:`core.data.errors.FrameReadError`
naming the file and frame, say) is raised by ``next()`` in the consumer, after every item read before it,
as the same exception object. :meth:`Prefetcher.close` (also on leaving the ``with`` block, or when the
consumer stops early) stops the thread and waits for it: it finishes the item it is reading, then ends.
``items`` is read by that thread alone, so don't touch the underlying source until the prefetcher is closed;
and close it (or use ``with``): the thread holds the prefetcher, which is never collected while it runs.

:class:`AdaptiveReader` reads on the caller's thread and moves to a :class:`Prefetcher` only once reading has
proved slower than the caller's work between frames (``vpp infer``'s default on a CPU torch keeps busy).

Keep torch out of ``transform``: a torch op on a second thread starts a second OpenMP team on the same
cores as the model's.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_ITEM, _END, _ERROR = 0, 1, 2
_POLL_S = 0.05  # how often a blocked put/get looks at the stop flag or the thread


class Prefetcher(Iterator):
    """Iterate ``items`` (optionally mapped by ``transform``) on a background thread, ``depth`` items ahead.

    ``busy_seconds``: time the thread spent reading and transforming (for a profile).
    """

    def __init__(self, items: Iterable, *, depth: int = 2, transform: Callable[[Any], Any] | None = None,
                 name: str = "vpp-prefetch") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._items = items
        self._transform = transform
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self.busy_seconds = 0.0
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            it = iter(self._items)
            while not self._stop.is_set():
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                if self._transform is not None:
                    item = self._transform(item)
                self.busy_seconds += time.perf_counter() - t
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put((_ERROR, exc))
        finally:
            close = getattr(self._items, "close", None)  # a generator: run its finally blocks on this thread
            if callable(close) and self._stop.is_set():
                with contextlib.suppress(Exception):  # closing after a stop: nobody to report to
                    close()

    def _put(self, message: tuple[int, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        while True:
            try:
                kind, value = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self._done = True  # closed, or the thread ended without a word (cannot happen otherwise)
                    raise StopIteration from None
        if kind == _ITEM:
            return value
        self._done = True
        self._thread.join()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the thread (after the item it is reading) and wait for it; later ``next()`` calls stop."""
        self._done = True
        self._stop.set()
        while self._thread.is_alive():
            try:  # free a put that waits on a full queue
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=_POLL_S)
        while not self._queue.empty():  # drop what is left (frames) now, not at garbage collection
            self._queue.get_nowait()

    @property
    def alive(self) -> bool:
        """Whether the reader thread is still running."""
        return self._thread.is_alive()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AdaptiveReader(Iterator):
    """Read ``items`` on the caller's thread until reading proves to be the bottleneck, then read ahead.

    The first ``probe`` items are read (and ``transform``-ed) inline, timing two things: the reading, and the
    caller's own work between one item and its next request (the model, on ``vpp infer``'s path). When the mean
    read takes at least ``ratio`` times the mean work, the rest go through a :class:`Prefetcher` of ``depth``:
    a frame that decodes slower than the model runs (a 3840x2160 PNG: about 150 ms on one core, against 40-70 ms
    for the default model) is then decoded while the model runs, which pays even where torch keeps every core
    busy. Where reading is cheap next to the work (JPEG at a reduced size, small frames), a reader thread only
    competes with torch's, so it is never started. The first item's work (warm-up) is not counted.

    Items, their order, errors (raised after the items before them) and ``close`` behave as with
    :class:`Prefetcher`; ``switched_at`` is the index of the first item read ahead (None: all inline).
    """

    def __init__(self, items: Iterable, *, depth: int = 4, transform: Callable[[Any], Any] | None = None,
                 probe: int = 6, ratio: float = 1.0, clock: Callable[[], float] = time.perf_counter) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if probe < 3:
            raise ValueError(f"probe must be >= 3 (the first item is the warm-up), got {probe}")
        self._it = iter(items)
        self._transform = transform
        self._depth = depth
        self._probe = probe
        self._ratio = ratio
        self._clock = clock
        self._ahead: Prefetcher | None = None
        self._done = False
        self._count = 0
        self._read_s = 0.0
        self._work_s = 0.0
        self._returned_at: float | None = None
        self.switched_at: int | None = None

    def __iter__(self) -> AdaptiveReader:
        return self

    def __next__(self) -> Any:
        if self._ahead is not None:
            return next(self._ahead)
        if self._done:
            raise StopIteration
        t = self._clock()
        if self._returned_at is not None and self._count >= 2:  # the work on item count-1 (not the first item's)
            self._work_s += t - self._returned_at
        try:
            item = next(self._it)
            if self._transform is not None:
                item = self._transform(item)
        except BaseException:
            self._done = True
            raise
        now = self._clock()
        if self._count >= 1:
            self._read_s += now - t
        self._count += 1
        # means over items 1 .. probe-1 (reads) and 1 .. probe-2 (work done so far)
        if self._count == self._probe and (self._read_s / (self._probe - 1)
                                           >= self._ratio * self._work_s / (self._probe - 2)):
            self.switched_at = self._count
            self._ahead = Prefetcher(self._it, depth=self._depth, transform=self._transform)
        self._returned_at = now
        return item

    @property
    def busy_seconds(self) -> float:
        """Time the reader thread spent reading and transforming (0 while everything is read inline)."""
        return self._ahead.busy_seconds if self._ahead is not None else 0.0

    def close(self) -> None:
        """Stop the reader thread if one was started (see :meth:`Prefetcher.close`), else close ``items``."""
        self._done = True
        if self._ahead is not None:
            self._ahead.close()
            return
        close = getattr(self._it, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()

    def __enter__(self) -> AdaptiveReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
