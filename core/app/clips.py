"""The clips the app opens: a frame folder or a video file, read by :mod:`core.data.sources`, and the demo clip.

The window opens a clip with a large frame cache (:data:`VIEW_CACHE_BYTES`, frames shown and stepped over),
the worker with a small one (:data:`PASS_CACHE_BYTES`: a pass reads frames in order). Opening fails with a
:class:`core.errors.DataError` (or ``OSError``) naming the path.
"""

from __future__ import annotations

from pathlib import Path

VIEW_CACHE_BYTES = 256 * 2**20
PASS_CACHE_BYTES = 64 * 2**20  # the worker reads frames in order; a small cache is enough


def open_clip(path: str | Path, *, cache_bytes: int = VIEW_CACHE_BYTES):
    """The frames of ``path`` (a folder of frames or a video file): a :class:`core.data.sources.FrameSource`
    (``len``, ``size``, ``fps``, ``names``, ``frame(i)``, ``close()``)."""
    from core.data.sources import open_source

    return open_source(path, cache_bytes=cache_bytes)


def open_clip_for_pass(path: str) -> object:
    """The clip as a model pass reads it (:func:`open_clip` with :data:`PASS_CACHE_BYTES`)."""
    return open_clip(path, cache_bytes=PASS_CACHE_BYTES)


def demo_clip() -> Path:
    """The demo clip shipped with the project (it may not be installed: check ``is_dir()``)."""
    from core.resources import DEMO_CLIP

    return DEMO_CLIP


def is_demo_clip(path: str | Path | None) -> bool:
    """Whether ``path`` is the demo clip."""
    return path is not None and Path(path).resolve() == demo_clip().resolve()
