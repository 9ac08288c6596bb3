"""Where a track is and where to go next: its frame runs, keyframe navigation and propagation targets.

Qt-free helpers behind the app's keyframe strip and keys (``Ctrl+Left`` / ``Ctrl+Right`` previous /
next keyframe, ``Ctrl+Shift+Right`` next frame without a mask, ``T`` / ``Shift+T`` propagate), so
the rules are tested without a window:

- :func:`runs` turns a track's frames into ``(first, last)`` runs (what the strip draws as bars).
- :func:`previous_keyframe` / :func:`next_keyframe` / :func:`next_gap` return a frame, or None when
  there is none in that direction (the caller says so).
- :func:`propagation_stop` is the frame a propagation request ends on (inclusive), given the choice
  "to the next keyframe", "N frames" or "to the clip's end"; :func:`core.app.document.propagation.plan`
  then uses the keyframes inside the range as anchors, so the next keyframe is never overwritten.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable
from typing import Literal

PropagateTo = Literal["keyframe", "frames", "end"]
PROPAGATE_TO: tuple[PropagateTo, ...] = ("keyframe", "frames", "end")


def runs(frames: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted runs of consecutive frames, each ``(first, last)`` inclusive: ``{1, 2, 3, 7}`` -> ``[(1, 3), (7, 7)]``."""
    out: list[tuple[int, int]] = []
    for f in sorted(frames):
        if out and f == out[-1][1] + 1:
            out[-1] = (out[-1][0], f)
        else:
            out.append((f, f))
    return out


def previous_keyframe(keyframes: Collection[int], frame: int) -> int | None:
    """The last keyframe before ``frame``, or None."""
    keys = sorted(keyframes)
    i = bisect.bisect_left(keys, frame)
    return keys[i - 1] if i > 0 else None


def next_keyframe(keyframes: Collection[int], frame: int) -> int | None:
    """The first keyframe after ``frame``, or None."""
    keys = sorted(keyframes)
    i = bisect.bisect_right(keys, frame)
    return keys[i] if i < len(keys) else None


def next_gap(frames: Collection[int], frame: int, num_frames: int) -> int | None:
    """The first frame after ``frame`` (inside the clip) where the track has no mask, or None."""
    f = frame + 1
    while f < num_frames:
        if f not in frames:
            return f
        f += 1
    return None


def propagation_stop(keyframes: Collection[int], frame: int, direction: int, to: PropagateTo, count: int,
                     num_frames: int) -> int:
    """The last frame (inclusive) that propagating from ``frame`` in ``direction`` (+1 forward, -1
    backward) covers: the next keyframe that way (else the clip's end), ``count`` frames, or the clip's end."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    if to not in PROPAGATE_TO:
        raise ValueError(f"unknown propagation target {to!r}; valid: {', '.join(PROPAGATE_TO)}")
    end = num_frames - 1 if direction > 0 else 0
    if to == "frames":
        if count < 1:
            raise ValueError(f"propagate at least 1 frame, got {count}")
        return min(end, frame + count) if direction > 0 else max(end, frame - count)
    if to == "keyframe":
        key = next_keyframe(keyframes, frame) if direction > 0 else previous_keyframe(keyframes, frame)
        if key is not None:
            return key
    return end
