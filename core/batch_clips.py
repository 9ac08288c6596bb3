"""The clips of a batch and how they are shared out: what ``vpp infer`` runs, one :class:`Clip` each.

A clip is a sub-folder of frames or a video file of a folder of clips (:func:`folder_clips`, ids 1..N
in natural name order), or a video of a YTVIS split (:func:`split_clips`, ids as in instances.json).
:func:`assign` shards them over the ranks: sorted by frame count (longest first, ties by video id), one
by one onto the least-loaded rank (ties to the lowest rank), so every rank computes the same plan with
no communication. :mod:`core.batch_infer` runs them (and re-exports these names).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.data.imageio import IMAGE_EXTENSIONS
from core.data.sources import FrameSource, natural_key, open_source

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".ts", ".3gp", ".ogv"})


@dataclass(frozen=True)
class Clip:
    """One clip of a batch: ``frames`` is the count used for balancing (0 when it cannot be told cheaply)."""

    video_id: int
    name: str
    path: Path
    frames: int
    opener: Callable[..., FrameSource] = field(compare=False, repr=False)


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _entries(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return [e for e in it if not e.name.startswith(".")]
    except OSError:
        return []


def _clip_entries(path: Path) -> list[os.DirEntry]:
    return [e for e in _entries(path)
            if e.is_dir() or (e.is_file() and Path(e.name).suffix.lower() in VIDEO_EXTENSIONS)]


def is_clip_folder(path: str | os.PathLike) -> bool:
    """A folder holding no frames itself but sub-folders of frames and/or video files (one clip each)."""
    path = Path(path)
    if not path.is_dir():
        return False
    entries = _entries(path)
    if any(e.is_file() and _is_image(e.name) for e in entries):
        return False  # a folder of frames: one clip
    return bool(_clip_entries(path))


def _count_frames(path: Path) -> int:
    """A cheap frame count, for balancing only: image files of a folder, the container's count of a video."""
    if path.is_dir():
        return sum(1 for e in _entries(path) if e.is_file() and _is_image(e.name))
    try:
        import cv2

        cap = cv2.VideoCapture(str(path))
        try:
            return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0) if cap.isOpened() else 0
        finally:
            cap.release()
    except Exception:  # a count for balancing only; the clip itself fails later with a message
        return 0


def folder_clips(path: str | os.PathLike) -> list[Clip]:
    """The clips of a folder: each sub-folder (of frames) and each video file in it; ids 1..N by natural name."""
    path = Path(path)
    entries = sorted(_clip_entries(path), key=lambda e: natural_key(e.name))
    clips = []
    for vid, e in enumerate(entries, 1):
        p = path / e.name
        name = e.name if p.is_dir() else (Path(e.name).stem or e.name)
        clips.append(Clip(vid, name, p, _count_frames(p), lambda p=p, **kw: open_source(p, **kw)))
    return clips


def split_clips(split) -> list[Clip]:
    """The videos of a YTVIS split, with their ids and names as ``vpp infer`` gives them."""
    out = []
    for v in split.gt.videos:
        first = split.frame_paths(v.id)
        where = first[0].parent if first else split.image_root
        out.append(Clip(v.id, split.video_name(v.id), where, len(v.file_names),
                        lambda vid=v.id, **kw: split.video_source(vid, **kw)))
    return out


def clip_inputs(clips: Sequence[Clip]) -> list[Path]:
    """Symlinked clips and frames of a folder of clips (their targets are inputs too)."""
    out: list[Path] = []
    for c in clips:
        if c.path.is_symlink():
            out.append(c.path)
        if c.path.is_dir():
            out += [Path(e.path) for e in _entries(c.path) if e.is_symlink()]
    return out


def assign(clips: Sequence[Clip], world: int) -> list[list[Clip]]:
    """Greedy longest-first onto the least-loaded rank; each rank's clips in video-id order."""
    if world < 1:
        raise ValueError(f"world size must be at least 1, got {world}")
    loads = [0] * world
    ranks: list[list[Clip]] = [[] for _ in range(world)]
    for c in sorted(clips, key=lambda c: (-c.frames, c.video_id)):
        r = min(range(world), key=lambda i: (loads[i], i))
        ranks[r].append(c)
        loads[r] += max(c.frames, 1)
    return [sorted(r, key=lambda c: c.video_id) for r in ranks]
