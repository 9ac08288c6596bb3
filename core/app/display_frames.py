"""Frames for the view: decoded at the view's resolution, cached, and read ahead in the direction of stepping.

A 4K frame shown fitted in a window needs about a ninth of its pixels. :class:`DisplayFrames` gives frame
``i`` at a display size ``(w, h)``: a JPEG file is decoded at a reduced size by the decoder itself (its DCT
scaling: 1/2, 1/4 or 1/8, the smallest that still has ``w x h`` pixels) and brought to ``(w, h)`` once
(linear interpolation below a factor of 2, area above); other formats and video frames are decoded in full
(through the source, which caches them) and brought down the same way. The display frame is kept in a
byte-bounded cache, so stepping back over it costs nothing. At the frame's own size it is simply
``source.frame(i)`` (the source's cache).

:func:`display_size` picks the size: the frame fitted in the view's device pixels (the device pixel ratio
counted), its scale rounded up to a 1/32 step so that small resizes keep the cache; the full frame when
that scale is above :data:`FULL_FROM` (a small clip is shown as it is) or when the view is zoomed in past
the fitted scale (more pixels are needed than the fitted frame has).

:meth:`DisplayFrames.read_ahead` plans the next :data:`READ_AHEAD` frames in the direction of stepping
(fewer at full size, which the source's own cache holds); one daemon thread decodes them, nearest first.
A new plan (another direction, another size, a jump) replaces the old one at once: the frame being decoded
is finished, the rest is dropped. The thread touches the source like the UI does (``source.frame``) and
holds no frame outside the caches, so memory stays bounded by the two caches. A frame the thread fails
to read is left alone: showing it reads it again, and that raises the error naming the file.

Qt-free; the view and the main window (:mod:`vpp_gui.frame_view`, :mod:`vpp_gui.main_window`) drive it.
"""

from __future__ import annotations

import math
import threading

import cv2
import numpy as np

from core.data.cache import ByteLRU
from core.data.imageio import decode_image_reduced, image_size, jpeg_reduction, read_image_bytes

DISPLAY_CACHE_BYTES = 96 * 2**20  # display-size frames: about 30 fitted 4K frames at 1340x750
READ_AHEAD = 6  # display-size frames decoded ahead of the one shown
FULL_READ_AHEAD = 2  # full-size frames ahead (they go to the source's cache, a few 4K frames)
FULL_FROM = 0.7  # a fitted scale above this shows the full frame: downscaling would save little
SCALE_STEP = 32  # the fitted scale is rounded up to a multiple of 1/SCALE_STEP
ZOOM_SLACK = 1.15  # zoomed in this far past the fitted frame's pixels: show the full frame


def fit_size(frame_w: int, frame_h: int, view_w: float, view_h: float) -> tuple[int, int]:
    """(w, h) of the frame fitted in a view of ``view_w x view_h`` device pixels (see the module docstring)."""
    if frame_w < 1 or frame_h < 1:
        raise ValueError(f"frame size must be positive, got {frame_w}x{frame_h}")
    if view_w < 1 or view_h < 1:
        return frame_w, frame_h  # not laid out yet: nothing to fit to
    s = min(view_w / frame_w, view_h / frame_h)
    s = math.ceil(s * SCALE_STEP) / SCALE_STEP
    if s > FULL_FROM:
        return frame_w, frame_h
    return max(1, round(frame_w * s)), max(1, round(frame_h * s))


def display_size(frame_w: int, frame_h: int, view_w: float, view_h: float, zoom: float) -> tuple[int, int]:
    """The size to show the frame at: fitted (:func:`fit_size`) unless ``zoom`` (device pixels per frame
    pixel at the view's current range) needs more pixels than that, then the full frame."""
    w, h = fit_size(frame_w, frame_h, view_w, view_h)
    if (w, h) != (frame_w, frame_h) and zoom > ZOOM_SLACK * w / frame_w:
        return frame_w, frame_h
    return w, h


def _shrink(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``img`` at ``width x height``: linear below a factor of 2 (every pixel still counts, and it is several
    times faster than area interpolation), area from 2 on."""
    if img.shape[1] == width and img.shape[0] == height:
        return img
    near = img.shape[1] < 2 * width and img.shape[0] < 2 * height
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR if near else cv2.INTER_AREA)


def reduced_jpeg(path, frame_w: int, frame_h: int, width: int, height: int) -> np.ndarray | None:
    """The JPEG at ``path`` (a ``frame_w x frame_h`` frame) decoded at 1/2, 1/4 or 1/8 scale, the smallest with
    at least ``width x height`` pixels (:func:`core.data.imageio.decode_image_reduced`, as the model's reads);
    None when the file is not a JPEG of that size, no reduced scale fits or the reduced decode fails (the
    caller decodes it in full, which reports the error). A file that cannot be read raises
    ``ImageDecodeError`` or ``OSError``."""
    if jpeg_reduction(frame_w, frame_h, width, height) == 1:
        return None
    data = read_image_bytes(path)
    if data[:2] != b"\xff\xd8" or image_size(data) != (frame_w, frame_h):
        return None
    img, _ = decode_image_reduced(data, (width, height))
    return None if img.shape[:2] == (frame_h, frame_w) else img


class DisplayFrames:
    """Frames of ``source`` at display sizes, cached, with a read-ahead thread (see the module docstring).

    ``frame(i, size)`` raises what ``source.frame(i)`` raises for a frame that cannot be read.
    """

    def __init__(self, source, *, cache_bytes: int = DISPLAY_CACHE_BYTES, ahead: int | None = None) -> None:
        self.source = source
        self.ahead = max(0, int(READ_AHEAD if ahead is None else ahead))
        self._cache = ByteLRU(cache_bytes)
        self._cond = threading.Condition()
        self._plan: list[int] = []
        self._plan_size: tuple[int, int] | None = None
        self._loading: tuple[int, int, int] | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self.loaded_ahead = 0  # frames the thread decoded (for tests and the benchmark)

    # -- frames -----------------------------------------------------------------------------------------
    @property
    def full_size(self) -> tuple[int, int]:
        return tuple(self.source.size)

    def is_cached(self, index: int, size: tuple[int, int]) -> bool:
        """Whether frame ``index`` at display ``size`` is in the display cache (always False at the full size:
        those frames are the source's, and ``source.frame`` returns a cached one at once)."""
        return tuple(size) != self.full_size and (index, *size) in self._cache

    def frame(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """Frame ``index`` at ``size`` (w, h), read-only; waits for the read-ahead thread when it is decoding
        that very frame rather than decoding it twice."""
        size = (int(size[0]), int(size[1]))
        if size == self.full_size:
            self._wait_for((index, *size))
            return self.source.frame(index)
        key = (index, *size)
        img = self._cache.get(key)
        if img is None and self._wait_for(key):
            img = self._cache.get(key)
        if img is None:
            img = self._load(index, size)
        return img

    def _wait_for(self, key: tuple[int, int, int]) -> bool:
        with self._cond:
            if self._loading != key:
                return False
            self._cond.wait_for(lambda: self._loading != key, timeout=2.0)
            return True

    def _load(self, index: int, size: tuple[int, int]) -> np.ndarray:
        if size == self.full_size:
            return self.source.frame(index)
        w, h = size
        img = None
        # a folder of frames: decode the file at a reduced size (not for a folder confined to a dataset's
        # image folder, whose reads go through its own checks)
        files = getattr(self.source, "files", None)
        if files is not None and getattr(self.source, "_confine", None) is None and 0 <= index < len(files):
            try:
                img = reduced_jpeg(files[index], *self.full_size, w, h)
            except (OSError, ValueError):
                img = None  # the full decode below reports it, naming the file and frame
        if img is None:
            img = self.source.frame(index)
        img = _shrink(img, w, h)
        img.flags.writeable = False
        self._cache.put((index, w, h), img)
        return img

    # -- read-ahead --------------------------------------------------------------------------------------
    def read_ahead(self, index: int, direction: int, size: tuple[int, int]) -> None:
        """Plan the frames after ``index`` in ``direction`` (+1 forward, -1 backward) at ``size``, nearest
        first, replacing the previous plan."""
        if self._closed or self.ahead == 0:
            return
        size = (int(size[0]), int(size[1]))
        step = -1 if direction < 0 else 1
        count = min(self.ahead, FULL_READ_AHEAD) if size == self.full_size else self.ahead
        n = len(self.source)
        plan = [i for i in (index + step * k for k in range(1, count + 1))
                if 0 <= i < n and not self.is_cached(i, size)]
        with self._cond:
            self._plan, self._plan_size = plan, size
            if plan and self._thread is None:
                self._thread = threading.Thread(target=self._work, name="vpp-display-read-ahead", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    @property
    def planned(self) -> tuple[int, ...]:
        """Frames still to read ahead, in order."""
        with self._cond:
            return tuple(self._plan)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until the plan is done (for tests and benchmarks); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._plan and self._loading is None, timeout=timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._plan or self._closed)
                if self._closed:
                    return
                index = self._plan.pop(0)
                size = self._plan_size
                if self.is_cached(index, size):
                    self._cond.notify_all()
                    continue
                self._loading = (index, *size)
            try:
                self._load(index, size)
                self.loaded_ahead += 1
            except Exception:  # shown later: the frame is read again and its error reported
                pass
            finally:
                with self._cond:
                    self._loading = None
                    self._cond.notify_all()

    def clear(self) -> None:
        """Drop the display frames and the plan (the source's cache is the source's)."""
        with self._cond:
            self._plan = []
        self._cache.clear()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (after the frame it is decoding) and drop the display frames."""
        with self._cond:
            self._closed = True
            self._plan = []
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._cache.clear()

