"""Frame sources: a folder of images, a video file or a YouTube-VIS split, with lazy decoding.

Every source gives ``len()``, ``fps``, ``size`` (width, height), per-frame ``names`` and
``frame(i)`` -> ``[H, W, 3]`` RGB uint8 (read-only: copy before drawing on it). Decoded frames go to
an LRU cache bounded in bytes; :meth:`FrameSource.stream` reads them in order without caching (one pass
of ``vpp infer``, with :class:`core.data.prefetch.Prefetcher` reading ahead on a thread), and with
``fit=(w, h)`` gives them already at a model's input size, decoded no larger than needed (a JPEG at a DCT
reduction, a video frame resized before its colour conversion). Opening
decodes only the first frame (to learn the size), so a GUI can show it at once, whatever the length.

Frames whose size differs from the first frame are resized to it (area interpolation when
shrinking, linear when enlarging) and their indices are recorded in ``resized``: a model needs one
size per clip, and refusing would make one odd frame spoil a long folder. ``resized_note`` says so in
one line, naming the first odd frame and both sizes (``vpp infer`` prints it as a warning).

A frame that cannot be decoded raises :class:`FrameReadError` naming the file and the index. Reading
the frames in order (iterating, as a run does) or :meth:`FrameSource.scan` in ``"raise"`` mode names
every unreadable frame, not only the first (:class:`CorruptFramesError`: the first few and a count).
With ``on_corrupt="skip"``, call :meth:`FrameSource.scan` once: it decodes every frame, drops the bad
ones (listed in ``skipped``) and renumbers the rest; before a scan, bad frames still raise.

Decoding is bounded (:mod:`core.data.imageio`): an image or video frame of more than
``MAX_FRAME_PIXELS`` pixels is refused from its header, before it is decoded; only regular files are
read (never a device or a pipe), of at most ``MAX_IMAGE_FILE_BYTES``.

:func:`core.data.ytvis_dataset.load_ytvis_dataset` reads a YTVIS split (annotations + ``JPEGImages``) and gives one
:class:`FolderSource` per video, its frames listed by the video's ``file_names``. Every name must stay
inside the split's image folder: names with ``..``, absolute paths, drive letters or backslashes are
refused when the split is loaded (one :class:`DataError` naming the annotation file, each video and
name), so an annotation file can never make us read outside the folder. Symlinks inside the folder are
the user's own layout (datasets often link video folders to another disk) and are followed; devices and
pipes are never read, whatever a link points to.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from core.data.cache import ByteLRU
from core.data.errors import CorruptFramesError, FrameReadError
from core.data.imageio import (
    IMAGE_EXTENSIONS,
    ImageDecodeError,
    check_image_size,
    decode_image,
    decode_image_reduced,
    read_image_bytes,
)
from core.errors import DataError

OnCorrupt = Literal["raise", "skip"]
DEFAULT_CACHE_BYTES = 512 * 2**20
DEFAULT_FPS = 25.0
#: When a run hits an unreadable frame, the rest is checked to name every bad one; counting stops here.
MAX_COUNTED_BAD_FRAMES = 1000


def natural_key(name: str) -> list:
    """Sort key that orders ``2.jpg`` before ``10.jpg`` (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


class FrameSource(ABC):
    """Common machinery: index mapping (after skips), byte-bounded cache, size policy, context manager."""

    def __init__(self, path: str | Path, count: int, *, cache_bytes: int, on_corrupt: OnCorrupt) -> None:
        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"on_corrupt must be 'raise' or 'skip', not {on_corrupt!r}")
        self.path = Path(path)
        self.on_corrupt: OnCorrupt = on_corrupt
        self._order = list(range(count))  # visible index -> stored frame number
        self._cache = ByteLRU(cache_bytes)
        self._size: tuple[int, int] | None = None
        self._resized: set[int] = set()
        self._first_odd: tuple[int, tuple[int, int]] | None = None  # (stored frame, its own size)
        self._skipped: list[tuple[str, str]] = []
        self._closed = False

    # -- to implement -------------------------------------------------------------------------------
    @abstractmethod
    def _decode(self, raw: int) -> np.ndarray:
        """Stored frame number -> RGB uint8 (any size); raise ImageDecodeError or FrameReadError."""

    def _decode_reduced(self, raw: int, fit: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        """Stored frame number -> (RGB uint8 of any size, the frame's own (width, height)) for a caller that
        resizes it to ``fit``: a source that can decode smaller (a JPEG's DCT reduction) or resize cheaper (a
        video frame before its colour conversion) overrides this; by default the whole frame."""
        img = self._decode(raw)
        return img, (int(img.shape[1]), int(img.shape[0]))

    @abstractmethod
    def _raw_name(self, raw: int) -> str: ...

    @property
    @abstractmethod
    def fps(self) -> float: ...

    # -- public interface -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._order)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every frame this source returns (the first readable frame's size)."""
        assert self._size is not None
        return self._size

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._raw_name(r) for r in self._order)

    @property
    def resized(self) -> tuple[int, ...]:
        """Visible indices of frames decoded so far that had another size and were resized."""
        pos = {r: i for i, r in enumerate(self._order)}
        return tuple(sorted(pos[r] for r in self._resized if r in pos))

    @property
    def resized_note(self) -> str | None:
        """One line about frames of another size decoded so far, naming the first and both sizes, or None:
        ``"frame 00012.jpg is 640x480, the clip is 1280x720: resized (and 3 more frames of another size)"``."""
        if self._first_odd is None or self._size is None:
            return None
        raw, (w, h) = self._first_odd
        tw, th = self._size
        more = len(self._resized) - 1
        tail = f" (and {more} more frame{'s' if more != 1 else ''} of another size)" if more else ""
        return f"frame {self._raw_name(raw)} is {w}x{h}, the clip is {tw}x{th}: resized{tail}"

    @property
    def skipped(self) -> tuple[tuple[str, str], ...]:
        """(name, reason) of frames :meth:`scan` dropped (``on_corrupt="skip"``)."""
        return tuple(self._skipped)

    def frame(self, i: int, *, fit: tuple[int, int] | None = None) -> np.ndarray:
        """Frame ``i`` (negative indices count from the end) as ``[H, W, 3]`` RGB uint8, read-only.

        ``fit=(width, height)``: the frame resized to exactly that size, decoded as cheaply as its format allows
        (as :meth:`stream` with ``fit``: the same pixels), neither taken from nor put in the cache."""
        if self._closed:
            raise RuntimeError(f"{self.path}: the source is closed")
        n = len(self._order)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range: {self.path} has {n} frames")
        raw = self._order[i % n]
        if fit is not None:
            fit = _checked_fit(fit)
            img = self._checked(raw, fit=fit)
            img.flags.writeable = False
            return img
        cached = self._cache.get(raw)
        if cached is not None:
            return cached
        img = self._checked(raw)
        img.flags.writeable = False
        self._cache.put(raw, img)
        return img

    def __getitem__(self, i: int) -> np.ndarray:
        return self.frame(i)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Frames in order. At the first unreadable frame the rest are checked too (not cached) and the
        error names every bad one (up to :data:`MAX_COUNTED_BAD_FRAMES`)."""
        return self.stream(cache=True)

    def stream(self, *, cache: bool = False, fit: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """Frames in order, as iterating does, for one pass over the clip: with ``cache=False`` the frames are not
        kept in the cache (those already there are used), so a long run holds no more than the frame in hand.
        Frames are read-only either way.

        ``fit=(width, height)``: every frame comes resized to exactly that size (a model's input), decoded as
        cheaply as its format allows: a JPEG at the largest DCT reduction that still gives at least that size
        (then resized, see :func:`_fit_interpolation`), a video frame resized once (area) before its colour
        conversion, other images decoded whole and resized (area when shrinking, linear when enlarging). The
        cache is neither used nor filled, so a pass gives the same pixels whatever was viewed before.
        :attr:`size` stays the frames' full size (masks come back at that size); :meth:`frame` is unchanged."""
        if fit is not None:
            fit = _checked_fit(fit)
        n = len(self)
        for i in range(n):
            try:
                if fit is not None:
                    if self._closed:
                        raise RuntimeError(f"{self.path}: the source is closed")
                    img = self._checked(self._order[i], fit=fit)
                    img.flags.writeable = False
                elif cache:
                    img = self.frame(i)
                else:
                    if self._closed:
                        raise RuntimeError(f"{self.path}: the source is closed")
                    raw = self._order[i]
                    img = self._cache.get(raw)
                    if img is None:
                        img = self._checked(raw)
                        img.flags.writeable = False
            except FrameReadError as exc:
                self._raise_all_bad(i, exc, limit=MAX_COUNTED_BAD_FRAMES)
                raise  # pragma: no cover - _raise_all_bad always raises
            yield img

    def scan(self) -> tuple[str, ...]:
        """Decode every frame once (not cached). With ``on_corrupt="skip"`` drop unreadable frames and
        return their names; with ``"raise"`` raise a :class:`FrameReadError` naming every bad frame
        (:class:`CorruptFramesError` when there are several)."""
        if self.on_corrupt == "raise":
            for i, raw in enumerate(list(self._order)):
                try:
                    self._checked(raw)
                except FrameReadError as exc:
                    self._raise_all_bad(i, exc)
            return ()
        bad = []
        for raw in list(self._order):
            try:
                self._checked(raw)
            except FrameReadError as exc:
                bad.append((raw, exc.reason))
        if bad:
            dropped = {r for r, _ in bad}
            self._order = [r for r in self._order if r not in dropped]
            self._skipped += [(self._raw_name(r), why) for r, why in bad]
            if not self._order:
                raise DataError(f"{self.path}: none of the frames can be read ({bad[0][1]})")
        return tuple(self._raw_name(r) for r, _ in bad)

    def close(self) -> None:
        self._closed = True
        self._cache.clear()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self._size or (0, 0)
        return f"{type(self).__name__}({str(self.path)!r}, frames={len(self)}, size={w}x{h}, fps={self.fps:g})"

    # -- helpers --------------------------------------------------------------------------------------
    def _frame_path(self, raw: int) -> Path:
        return self.path

    def _raise_all_bad(self, i: int, first: FrameReadError, *, limit: int | None = None) -> None:
        """Frame ``i`` failed with ``first``: check frames ``i+1 ..`` (up to ``limit`` bad ones in all) and
        raise one error naming all of them (``first`` itself when it is the only one)."""
        bad = [(i, self._raw_name(self._order[i]), first.reason)]
        complete = True
        for j in range(i + 1, len(self._order)):
            raw = self._order[j]
            if self._cache.get(raw) is not None:
                continue
            try:
                self._checked(raw)
            except FrameReadError as exc:
                bad.append((j, self._raw_name(raw), exc.reason))
                if limit is not None and len(bad) >= limit and j + 1 < len(self._order):
                    complete = False
                    break
        if len(bad) == 1:
            raise FrameReadError(first.path, i, first.reason) from first
        raise CorruptFramesError(self.path, first.path, bad, complete=complete) from first

    def _checked(self, raw: int, fit: tuple[int, int] | None = None) -> np.ndarray:
        """Decode stored frame ``raw``, at the clip's size, or (``fit``) resized to ``fit`` (see :meth:`stream`)."""
        index = bisect.bisect_left(self._order, raw)
        try:
            if fit is None:
                img = self._decode(raw)
                h, w = img.shape[:2]
            else:
                img, (w, h) = self._decode_reduced(raw, fit)
            check_image_size(w, h)  # a decoder that gave no size beforehand (see also VideoSource)
        except ImageDecodeError as exc:
            raise FrameReadError(self._frame_path(raw), index, str(exc)) from exc
        if self._size is None:
            self._size = (w, h)
        elif (w, h) != self._size:
            if fit is None:
                tw, th = self._size
                interp = cv2.INTER_AREA if w * h > tw * th else cv2.INTER_LINEAR
                img = cv2.resize(img, (tw, th), interpolation=interp)
            self._resized.add(raw)
            if self._first_odd is None or raw < self._first_odd[0]:
                self._first_odd = (raw, (w, h))
        if fit is not None and (img.shape[1], img.shape[0]) != fit:
            img = cv2.resize(img, fit, interpolation=_fit_interpolation(img.shape[1], img.shape[0], (w, h), fit))
        return img

    def _open_first(self) -> None:
        """Decode the first readable frame to learn the size (skipping bad ones in skip mode)."""
        while self._order:
            try:
                self.frame(0)
                return
            except FrameReadError as exc:
                if self.on_corrupt == "raise":
                    raise
                self._skipped.append((self._raw_name(self._order[0]), exc.reason))
                self._order.pop(0)
        raise DataError(f"{self.path}: none of the frames can be read")


def _checked_fit(fit: tuple[int, int]) -> tuple[int, int]:
    fit = (int(fit[0]), int(fit[1]))
    if fit[0] < 1 or fit[1] < 1:
        raise ValueError(f"fit must be a positive (width, height), got {fit}")
    return fit


def _fit_interpolation(width: int, height: int, full: tuple[int, int], fit: tuple[int, int]) -> int:
    """How :meth:`FrameSource.stream` resizes a ``width x height`` decode of a frame of size ``full`` to ``fit``.

    A frame decoded whole: area when shrinking, else linear (decided on the long sides, as
    :func:`core.preprocess.resize_frame` decides: the same bytes as the plain path). A JPEG decoded at a DCT
    reduction (smaller than its full size) is already low-passed by libjpeg's scaled IDCT and is less than twice
    the input (else a larger reduction was taken): bilinear, a tenth of area's cost at that ratio, and as close
    to the full decode area-resized (mean |difference| 0.53 grey levels against area's 0.61 on the 4K car clip);
    area again where even 1/8 leaves it twice the input or more."""
    if (width, height) == tuple(full):
        return cv2.INTER_AREA if max(fit) < max(full) else cv2.INTER_LINEAR
    return cv2.INTER_LINEAR if width < 2 * fit[0] and height < 2 * fit[1] else cv2.INTER_AREA


class FolderSource(FrameSource):
    """Images in a folder (jpg/jpeg/png/bmp/tif/tiff/webp, any case), in natural order, or an explicit list.

    Args:
        path: the folder.
        fps: frames per second to report (folders have none; default 25).
        cache_bytes: budget of the decoded-frame cache.
        on_corrupt: "raise" or "skip" (see :meth:`scan`).
        files, names: an explicit frame list and the names to report (see :meth:`from_files`).
        confine: a folder every frame must resolve inside (symlinks followed), checked at each read; a
            frame that resolves elsewhere is a :class:`FrameReadError` and is never opened.
    """

    def __init__(self, path: str | Path, *, fps: float = DEFAULT_FPS, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 on_corrupt: OnCorrupt = "raise", files: Sequence[str | Path] | None = None,
                 names: Sequence[str] | None = None, confine: str | Path | None = None) -> None:
        folder = Path(path)
        self._confine = Path(confine).resolve() if confine is not None else None
        if files is None:
            if not folder.exists():
                raise DataError(f"{folder}: folder does not exist; check the path")
            if not folder.is_dir():
                raise DataError(f"{folder}: is not a folder; pass a folder of frames or use open_source() for videos")
            try:
                entries = [e.name for e in os.scandir(folder)
                           if not e.name.startswith(".") and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS
                           and e.is_file()]
            except OSError as exc:
                raise DataError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from exc
            if not entries:
                raise DataError(f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}); "
                                "pass the folder that holds the frames")
            entries.sort(key=natural_key)
            self._files = [folder / e for e in entries]
        else:
            self._files = [Path(f) for f in files]
            if not self._files:
                raise DataError(f"{folder}: the frame list is empty")
        self._names = list(names) if names is not None else [f.name for f in self._files]
        if len(self._names) != len(self._files):
            raise ValueError("names and files differ in length")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self._fps = float(fps)
        super().__init__(folder, len(self._files), cache_bytes=cache_bytes, on_corrupt=on_corrupt)
        self._open_first()

    @classmethod
    def from_files(cls, files: Sequence[str | Path], *, root: str | Path | None = None,
                   names: Sequence[str] | None = None, **kwargs) -> FolderSource:
        """A source over an explicit, ordered file list (e.g. a YTVIS video's ``file_names``)."""
        root = Path(root) if root is not None else (Path(files[0]).parent if files else Path("."))
        return cls(root, files=files, names=names, **kwargs)

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(self._files[r] for r in self._order)

    def _raw_name(self, raw: int) -> str:
        return self._names[raw]

    def _frame_path(self, raw: int) -> Path:
        return self._files[raw]

    def _bytes(self, raw: int) -> bytes:
        path = self._files[raw]
        if self._confine is not None:
            real = Path(os.path.realpath(path))
            if not real.is_relative_to(self._confine):
                raise ImageDecodeError(f"the path resolves outside {self._confine} (to {real}); refused")
            path = real
        try:
            return read_image_bytes(path)
        except FileNotFoundError:
            raise ImageDecodeError("the file is missing") from None

    def _decode(self, raw: int) -> np.ndarray:
        return decode_image(self._bytes(raw))

    def _decode_reduced(self, raw: int, fit: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        return decode_image_reduced(self._bytes(raw), fit)


class VideoSource(FrameSource):
    """Frames of a video file decoded by OpenCV (FFmpeg), with random access.

    Sequential reads (``i == last + 1``) just decode the next frame; other indices seek with
    ``CAP_PROP_POS_FRAMES``. The frame count comes from the container header when it gives a positive
    number (``count_frames="auto"``, the default: opening stays instant); ``"decode"`` counts by
    decoding the whole file once at open, for files whose header is known to be wrong. If the header
    over-counts, reading a missing tail frame raises :class:`FrameReadError` naming its index.
    Names are ``00000.jpg``-style, for exporting frames or masks per frame.
    """

    def __init__(self, path: str | Path, *, fps: float | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 on_corrupt: OnCorrupt = "raise", count_frames: Literal["auto", "decode"] = "auto") -> None:
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: video file does not exist; check the path")
        if not path.is_file():
            raise DataError(f"{path}: is not a file; for a folder of frames use FolderSource or open_source()")
        if count_frames not in ("auto", "decode"):
            raise ValueError(f"count_frames must be 'auto' or 'decode', not {count_frames!r}")
        self._lock = threading.Lock()
        self._cap = self._open(path)
        self._next = 0
        width, height = self._cap.get(cv2.CAP_PROP_FRAME_WIDTH), self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        if np.isfinite(width) and np.isfinite(height) and width > 0 and height > 0:
            try:  # from the container header: before a frame is decoded (or counted by decoding)
                check_image_size(int(width), int(height), what="video frames are")
            except ImageDecodeError as exc:
                self._cap.release()
                raise DataError(f"{path}: {exc}") from None
        header = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        count = int(header) if count_frames == "auto" and np.isfinite(header) and 0 < header < 2**31 else -1
        if count < 0:
            count = self._count_by_decoding(path)
        if count == 0:
            self._cap.release()
            raise DataError(f"{path}: the video has no decodable frames; check that the file is complete")
        rate = self._cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if fps else (float(rate) if np.isfinite(rate) and 0 < rate < 1000 else DEFAULT_FPS)
        super().__init__(path, count, cache_bytes=cache_bytes, on_corrupt=on_corrupt)
        try:
            self._open_first()
        except DataError:
            self._cap.release()
            raise

    @staticmethod
    def _open(path: Path) -> cv2.VideoCapture:
        # OpenCV logs its own WARN lines for files it cannot open; our error below says it better
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
            ok = cap.isOpened()
        except cv2.error:
            ok = False
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not ok:
            raise DataError(f"{path}: not a video OpenCV can read (mp4, avi, mkv, mov, webm ...); "
                            "check the file, or pass a folder of frames instead")
        return cap

    def _count_by_decoding(self, path: Path) -> int:
        n = 0
        with self._lock:
            while self._cap.grab():
                n += 1
            self._cap.release()
            self._cap = self._open(path)
            self._next = 0
        return n

    @property
    def fps(self) -> float:
        return self._fps

    def _raw_name(self, raw: int) -> str:
        return f"{raw:05d}.jpg"

    def _decode(self, raw: int) -> np.ndarray:
        return self._read(raw, None)[0]

    def _decode_reduced(self, raw: int, fit: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        return self._read(raw, fit)

    def _read(self, raw: int, fit: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
        """Decode frame ``raw`` -> (RGB, its decoded (width, height)); with ``fit``, resized to ``fit`` (area when
        shrinking) before the BGR -> RGB conversion: the same bytes as converting first, on fewer pixels."""
        with self._lock:
            try:
                if raw != self._next:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, float(raw))
                ok, img = self._cap.read()
            except cv2.error as exc:
                ok, img = False, None
                reason = f"OpenCV error: {exc}"
            else:
                reason = "the decoder returned no frame (corrupt data or past the real end of the video)"
            self._next = raw + 1 if ok else -1
        if not ok or img is None:
            raise ImageDecodeError(reason)
        size = (int(img.shape[1]), int(img.shape[0]))
        if fit is not None and size != fit:
            interp = cv2.INTER_AREA if max(fit) < max(size) else cv2.INTER_LINEAR
            img = cv2.resize(img, fit, interpolation=interp)
        if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size  # the same bytes as img[..., ::-1], 50x faster
        rgb = np.ascontiguousarray(img[..., ::-1]) if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
        return rgb, size

    def close(self) -> None:
        with self._lock:
            self._cap.release()
        super().close()


def open_source(path: str | Path, **kwargs) -> FrameSource:
    """A folder -> :class:`FolderSource`; a file -> :class:`VideoSource`. Keyword options pass through."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: does not exist; pass a folder of frames or a video file")
    if p.is_dir():
        return FolderSource(p, **kwargs)
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        raise DataError(f"{p}: is a single image; pass the folder that holds the frames")
    return VideoSource(p, **kwargs)


__all__ = ["FolderSource", "FrameSource", "VideoSource", "natural_key", "open_source"]
