"""A document's propagation runs: plan a track's segments, run them over the clip's frames, commit.

Plain functions over a :class:`~core.app.document.document.Document`; its ``propagate``, ``fill_between``,
``model_snap`` and ``commit_propagation`` methods call them. The planning and the optical flow are
:mod:`core.app.document.propagation`'s; the step committed is :func:`core.app.document.edits.propagated`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from core.app.document import edits, propagation
from core.app.document.history import Command
from core.app.document.propagation import FrameReader, Progress, PropagationOptions, PropagationResult, Segment, Snap
from core.app.document.tracks import Track
from core.data.rle import decode_rle

if TYPE_CHECKING:
    from core.app.document.document import Document


def propagate(doc: Document, track_id: int, start: int, stop: int, *, frames: FrameReader | None = None,
              snap: bool = False, options: PropagationOptions | None = None,
              cancel: threading.Event | None = None, progress: Progress | None = None) -> Command | None:
    """Carry the track's mask from ``start`` toward ``stop`` (see :meth:`Document.propagate`)."""
    track = doc.track(track_id)
    segments = propagation.plan(track, doc._frame(start), doc._frame(stop), doc.clip.num_frames)
    return run(doc, track, segments, start, stop, frames, snap, options, cancel, progress)


def fill_between(doc: Document, track_id: int, frame: int, *, frames: FrameReader | None = None,
                 snap: bool = False, options: PropagationOptions | None = None,
                 cancel: threading.Event | None = None, progress: Progress | None = None) -> Command | None:
    """Fill the gap(s) between the keyframes around ``frame`` (see :meth:`Document.fill_between`)."""
    track = doc.track(track_id)
    segments = propagation.plan_fill(track, doc._frame(frame))
    first = min(s.left for s in segments if s.left is not None) if segments else frame
    last = max(s.right for s in segments if s.right is not None) if segments else frame
    return run(doc, track, segments, first, last, frames, snap, options, cancel, progress)


def run(doc: Document, track: Track, segments: list[Segment], start: int, stop: int,
        frames: FrameReader | None, snap: bool, options: PropagationOptions | None,
        cancel: threading.Event | None, progress: Progress | None) -> Command | None:
    """Run ``segments`` of ``track`` (over ``frames``, default: the clip opened from disk) and commit."""
    snapper = doc.model_snap() if snap else None
    if frames is None:
        from core.data.sources import open_source

        with open_source(doc.clip.path) as source:
            result = propagation.propagate(track, segments, source.frame, doc.clip.height, doc.clip.width,
                                           start=start, stop=stop, options=options, snap=snapper,
                                           cancel=cancel, progress=progress)
    else:
        result = propagation.propagate(track, segments, frames, doc.clip.height, doc.clip.width, start=start,
                                       stop=stop, options=options, snap=snapper, cancel=cancel,
                                       progress=progress)
    return doc.commit_propagation(result)


def model_snap(doc: Document) -> Snap | None:
    """A snap onto ``doc``'s current pass's instances (None when no pass ran)."""
    results = doc.results
    if results is None:
        return None

    def candidates(index: int) -> list[np.ndarray]:
        frame = results.get(index)
        return [] if frame is None else [decode_rle(r) for r in frame.rles]

    return propagation.snap_to_instances(candidates)


def commit_propagation(doc: Document, result: PropagationResult) -> Command | None:
    """Apply ``result`` to ``doc`` as one undoable step (see :meth:`Document.commit_propagation`)."""
    doc.last_propagation = result
    track = doc.track(result.track_id)
    label = (f"Propagate track {track.id} {result.start}→{result.stop}"
             + (" (cancelled)" if result.cancelled else ""))
    return doc._commit(label, edits.propagated(track, result.masks))
