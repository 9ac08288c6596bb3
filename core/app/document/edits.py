"""The track operations as pure functions: old tracks in, new tracks out (the document commits them).

Every function returns ``{track_id: new Track | None}`` (``None``: the track is removed) and never
changes its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.app.document.tracks import FrameMask, Review, Track

Updates = dict[int, "Track | None"]


def relabel(tracks: Sequence[Track], category_id: int) -> Updates:
    return {t.id: t.with_(category_id=int(category_id), edited=True) for t in tracks if t.category_id != category_id}


def set_review(tracks: Sequence[Track], review: Review) -> Updates:
    return {t.id: t.with_(review=review) for t in tracks if t.review != review}


def delete(tracks: Sequence[Track]) -> Updates:
    return {t.id: None for t in tracks}


def delete_frames(track: Track, frames: Sequence[int] | range) -> Updates:
    gone = set(frames) & set(track.frames)
    if not gone:
        return {}
    return {track.id: track.with_(frames={i: f for i, f in track.frames.items() if i not in gone}, edited=True)}


def delete_from(track: Track, frame: int) -> Updates:
    """Remove the track's frames ``>= frame`` (the whole track when nothing is left before it)."""
    kept = {i: f for i, f in track.frames.items() if i < frame}
    if len(kept) == len(track.frames):
        return {}
    if not kept:
        return {track.id: None}
    return {track.id: track.with_(frames=kept, edited=True)}


def split(track: Track, frame: int, new_id: int) -> Updates:
    """Frames ``>= frame`` move to a new track ``new_id`` (same category and review); both are edited."""
    head = {i: f for i, f in track.frames.items() if i < frame}
    tail = {i: f for i, f in track.frames.items() if i >= frame}
    if not head or not tail:
        raise ValueError(f"cannot split track {track.id} at frame {frame}: it has frames only "
                         f"{'after' if not head else 'before'} it (first {track.first}, last {track.last})")
    return {track.id: track.with_(frames=head, edited=True),
            new_id: Track(new_id, track.category_id, track.origin, track.review, True, tail,
                          f"split from track {track.id} at frame {frame}", track.keyframes & tail.keys())}


def merge(target: Track, others: Sequence[Track]) -> Updates:
    """``others`` join ``target`` (its id, category and review); where both have a mask the union is kept."""
    if not others:
        raise ValueError("merging needs at least two tracks")
    frames = dict(target.frames)
    keys = set(target.keyframes)
    for other in others:
        keys |= other.keyframes
        for i, f in other.frames.items():
            mine = frames.get(i)
            if mine is None:
                frames[i] = f
            else:
                frames[i] = FrameMask.from_mask(mine.decode() | f.decode(), max(mine.score, f.score))
    out: Updates = {o.id: None for o in others}
    out[target.id] = target.with_(frames=frames, edited=True, keyframes=frozenset(keys))
    return out


def set_mask(track: Track, frame: int, mask: np.ndarray, *, score: float | None = None) -> Updates:
    """Replace the track's mask on ``frame`` (a person's: the frame becomes a keyframe); an empty mask
    removes the frame from the track."""
    old = track.frames.get(frame)
    frames = dict(track.frames)
    if not mask.any():
        if old is None:
            return {}
        del frames[frame]
    else:
        new = FrameMask.from_mask(mask, score if score is not None else (old.score if old else 1.0))
        if new.same(old):
            return {} if frame in track.keyframes else {track.id: track.keyed([frame]).with_(edited=True)}
        frames[frame] = new
    return {track.id: track.with_(frames=frames, edited=True, keyframes=track.keyframes | {frame})}


def propagated(track: Track, masks: dict[int, FrameMask]) -> Updates:
    """The track with ``masks`` on frames that are not its keyframes (those are never overwritten)."""
    frames = dict(track.frames)
    changed = False
    for i, m in masks.items():
        if i in track.keyframes or m.same(frames.get(i)):
            continue
        frames[i] = m
        changed = True
    return {track.id: track.with_(frames=frames, edited=True)} if changed else {}


def paint(track: Track, frame: int, stroke: np.ndarray, *, erase: bool = False) -> Updates:
    """Add ``stroke`` to (or, with ``erase``, remove it from) the track's mask on ``frame``."""
    old = track.frames.get(frame)
    if old is None:
        if erase:
            return {}
        return set_mask(track, frame, stroke)
    current = old.decode()
    return set_mask(track, frame, current & ~stroke if erase else current | stroke)
