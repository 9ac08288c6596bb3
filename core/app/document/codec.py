"""JSON form of tracks, shared by the project file and the journal, and whole-track diffs.

A track is ``{"id", "category_id", "origin", "review", "edited", "note", "keyframes", "frames"}`` with
``frames`` = ``{"<frame index>": [counts, score, area]}``: ``counts`` is the compressed COCO RLE
string of the mask at the clip's frame size (the size is the clip's, written once per file), and
``keyframes`` the sorted frame indices a person drew or imported (files written before keyframes
existed lack it: a drawn or imported track's frames are then all keyframes, a model track's none).
Everything read is checked (types, ranges, frame indices inside the clip, RLEs that decode to the
clip's size) and a bad value raises :class:`core.errors.DataError` naming the file and the track.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.app.document.tracks import ORIGINS, REVIEW_STATES, FrameMask, Track
from core.data.rle import counts_problems, rle_areas
from core.errors import DataError
from core.values import is_int

MAX_TRACK_ID = 2**31 - 1
_COUNTS = re.compile(r"[0-o]*")  # the 64 characters of COCO's compressed RLE strings


def track_to_json(track: Track) -> dict[str, Any]:
    return {
        "id": track.id,
        "category_id": track.category_id,
        "origin": track.origin,
        "review": track.review,
        "edited": track.edited,
        "note": track.note,
        "keyframes": sorted(track.keyframes),
        "frames": {str(i): [f.rle["counts"], f.score, f.area] for i, f in sorted(track.frames.items())},
    }


def track_from_json(data: Any, *, num_frames: int, height: int, width: int, source: str | Path) -> Track:
    what = f"{source}: track"
    if not isinstance(data, dict):
        raise DataError(f"{what}: expected an object, got {type(data).__name__}")
    tid = _int(data.get("id"), f"{what} 'id'", 0, MAX_TRACK_ID)
    what = f"{source}: track {tid}"
    category = _int(data.get("category_id"), f"{what} 'category_id'", 0, MAX_TRACK_ID)
    origin = data.get("origin", "model")
    if origin not in ORIGINS:
        raise DataError(f"{what}: 'origin' is {origin!r}; valid: {', '.join(ORIGINS)}")
    review = data.get("review", "unreviewed")
    if review not in REVIEW_STATES:
        raise DataError(f"{what}: 'review' is {review!r}; valid: {', '.join(REVIEW_STATES)}")
    edited = data.get("edited", False)
    if not isinstance(edited, bool):
        raise DataError(f"{what}: 'edited' must be true or false")
    note = data.get("note", "")
    if not isinstance(note, str):
        raise DataError(f"{what}: 'note' must be a string")
    frames = frames_from_json(data.get("frames", {}), num_frames=num_frames, height=height, width=width,
                              what=what)
    keys = keyframes_from_json(data, num_frames=num_frames, what=what)
    return Track(tid, category, origin, review, edited, frames, note,
                 frozenset(frames) if keys is None and origin != "model" else frozenset(keys or ()))


def keyframes_from_json(data: dict, *, num_frames: int, what: str) -> list[int] | None:
    """The track's ``keyframes`` (None when the file predates them)."""
    if "keyframes" not in data:
        return None
    keys = data["keyframes"]
    if not isinstance(keys, list) or len(keys) > num_frames:
        raise DataError(f"{what}: 'keyframes' must be a list of at most {num_frames} frame indices")
    return [_int(k, f"{what} keyframe", 0, num_frames - 1) for k in keys]


def frames_from_json(data: Any, *, num_frames: int, height: int, width: int, what: str) -> dict[int, FrameMask]:
    if not isinstance(data, dict):
        raise DataError(f"{what}: 'frames' must be an object of frame index -> [counts, score, area]")
    frames: dict[int, FrameMask] = {}
    rles = []
    for key, value in data.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()):
            raise DataError(f"{what}: frame key {key!r} is not a frame index")
        index = int(key)
        if index >= num_frames:
            raise DataError(f"{what}: frame {index} is outside the clip of {num_frames} frames")
        if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)):
            raise DataError(f"{what}: frame {index} must be [counts string, score, area]")
        if not _COUNTS.fullmatch(value[0]):
            raise DataError(f"{what}: frame {index} mask counts hold characters outside the COCO RLE alphabet")
        score = value[1]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise DataError(f"{what}: frame {index} has score {score!r}; expected a number in [0, 1]")
        area = _int(value[2], f"{what} frame {index} area", 0, height * width)
        rle = {"size": [height, width], "counts": value[0]}
        rles.append((index, rle))
        frames[index] = FrameMask(rle, float(score), area)
    problems = counts_problems([r for _, r in rles]) if rles else []
    for (index, _), why in zip(rles, problems):
        if why is not None:
            raise DataError(f"{what}: frame {index} mask is not a valid RLE of a {height}x{width} frame ({why})")
    # the stored area is a cache: what counts (exports, empty frames) is the mask itself
    for (index, rle), area in zip(rles, rle_areas([r for _, r in rles]) if rles else []):
        if int(area) != frames[index].area:
            frames[index] = FrameMask(rle, frames[index].score, int(area))
    return frames


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise DataError(f"{what} must be an integer in {lo}..{hi}, got {value!r}")
    return value


# -- diffs (the journal writes a change to a track it already knows as a diff) -------------------------


def track_diff(before: Track, after: Track) -> dict[str, Any]:
    """What turns ``before`` into ``after``: its attributes, frames set and frames removed."""
    full = track_to_json(after)
    del full["frames"]
    changed = {str(i): [f.rle["counts"], f.score, f.area] for i, f in sorted(after.frames.items())
               if not f.same(before.frames.get(i))}
    removed = sorted(i for i in before.frames if i not in after.frames)
    return {"attrs": full, "set": changed, "del": removed}


def apply_diff(before: Track, diff: Any, *, num_frames: int, height: int, width: int, source: str | Path) -> Track:
    what = f"{source}: change of track {before.id}"
    if not isinstance(diff, dict) or not isinstance(diff.get("attrs"), dict):
        raise DataError(f"{what}: expected an object with 'attrs', 'set' and 'del'")
    removed = diff.get("del", [])
    if not isinstance(removed, list) or not all(is_int(i) for i in removed):
        raise DataError(f"{what}: 'del' must be a list of frame indices")
    base = track_from_json({**diff["attrs"], "frames": {}}, num_frames=num_frames, height=height, width=width,
                           source=source)
    if base.id != before.id:
        raise DataError(f"{what}: the change names track {base.id}")
    frames = dict(before.frames)
    for i in removed:
        frames.pop(i, None)
    frames.update(frames_from_json(diff.get("set", {}), num_frames=num_frames, height=height, width=width,
                                   what=what))
    keys = keyframes_from_json(diff["attrs"], num_frames=num_frames, what=what)
    return base.with_(frames=frames, keyframes=before.keyframes if keys is None else frozenset(keys))
