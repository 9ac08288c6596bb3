"""Ground truth of one clip, and the one code path that restricts it to its annotated frames and scores results.

:func:`load_ground_truth` reads a YouTube-VIS ground-truth JSON or a folder of DAVIS PNG masks for a clip
(``num_frames`` frames of ``height`` x ``width``) into a :class:`ClipGroundTruth`. :func:`restricted_gt_json`,
:func:`restricted_results` and :func:`score` are what :mod:`core.sweep` and :mod:`core.app.review.report` score
with: the GT and results cut to the annotated frames, then ``vpp eval``'s parser and evaluator.

Annotated frames ("not annotated" is not "empty"):

* YouTube-VIS GT: a frame is annotated when some track of the video has a segmentation there (an RLE, even an
  empty one); ``None`` on an annotated frame means that object is absent. A frame where every track is
  ``None`` is not annotated (a sparse GT, e.g. every 5th frame labelled).
* DAVIS folder: a frame is annotated when its PNG exists; an all-background PNG is an annotated, empty frame.
  PNGs are matched to frames by name (``00005.png`` for the frame ``00005.jpg``); a folder with one PNG per
  frame is read in natural order (as :func:`core.export.import_tracks` does); without frame names, PNGs named
  by a frame number (``5.png``, ``00005.png``) give that frame. DAVIS masks carry no classes: every object is
  category 1 ("object") and results are scored class-agnostically.

This module imports neither Qt nor torch.
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Literal

import numpy as np

from core.data.davis import read_davis_png
from core.data.rle import RLE, decode_rle, encode_mask
from core.data.ytvis import YtvisAnnotation, YtvisGroundTruth, parse_ytvis_gt, parse_ytvis_results
from core.errors import DataError
from core.evaluation.ytvis_eval import evaluate
from core.formats.base import choose_video, load_json_file, present_frames
from core.formats.davis import davis_mask_files

GtFormat = Literal["ytvis-gt", "davis"]
#: The one class of DAVIS masks.
DAVIS_CATEGORY: tuple[int, str] = (1, "object")
_WHAT = "give a YouTube-VIS ground-truth JSON (videos/annotations/categories) or a folder of DAVIS PNG masks"


@dataclass(frozen=True)
class GroundTruthTrack:
    """One ground-truth object: frame index -> compressed RLE (str counts), only where the object is present."""

    id: int
    category_id: int
    frames: dict[int, RLE] = field(hash=False)
    iscrowd: int = 0


@dataclass(frozen=True, eq=False)
class ClipGroundTruth:
    """The ground truth of one clip (see the module docstring for what is annotated).

    ``records``: the GT tracks as YouTube-VIS annotation JSON over all ``num_frames`` frames (``id``,
    ``category_id``, ``iscrowd``, ``segmentations`` and, from a YTVIS file, ``areas`` / ``bboxes``) exactly as
    read: what :meth:`to_gt_json` restricts. ``category_json``: the file's categories as JSON objects.
    """

    path: Path
    format: GtFormat
    video_id: int
    num_frames: int
    height: int
    width: int
    frame_names: tuple[str, ...]
    categories: dict[int, str]
    tracks: list[GroundTruthTrack]
    annotated: list[int]
    records: list[dict] = field(repr=False)
    category_json: list[dict] = field(repr=False)

    @property
    def class_agnostic(self) -> bool:
        """True for DAVIS masks: any predicted category matches, results are scored as category 1."""
        return self.format == "davis"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_annotated_set", frozenset(self.annotated))

    def is_annotated(self, frame: int) -> bool:
        return frame in self._annotated_set  # type: ignore[attr-defined]

    def masks_at(self, frame: int) -> list[tuple[int, int, np.ndarray]] | None:
        """(GT track id, category id, ``[H, W]`` bool mask) of every object on ``frame``.

        None: the frame is not annotated (nothing is known there); ``[]``: annotated and empty."""
        if not 0 <= frame < self.num_frames:
            raise IndexError(f"frame {frame} is outside the clip (0..{self.num_frames - 1})")
        if not self.is_annotated(frame):
            return None
        return [(t.id, t.category_id, decode_rle(t.frames[frame])) for t in self.tracks if frame in t.frames]

    def to_gt_json(self, result_categories: Iterable[int] = ()) -> dict:
        """The YTVIS GT JSON of this clip restricted to its annotated frames: what it is scored against."""
        return restricted_gt_json([self], set(result_categories))


def annotated_frames(clip_tracks: Sequence[dict], num_frames: int, *, dense_annotation: bool) -> list[int]:
    """Frame indices that are scored: all when ``dense_annotation``, else those where some track has a
    segmentation (``clip_tracks``: YTVIS annotation JSON over ``num_frames`` frames)."""
    if dense_annotation:
        return list(range(num_frames))
    return [t for t in range(num_frames) if any(tr["segmentations"][t] is not None for tr in clip_tracks)]


def restricted_gt_json(clips: Sequence[ClipGroundTruth], result_categories: Iterable[int] = frozenset()) -> dict:
    """The GT JSON holding only the annotated frames of every clip (clips without any are left out).

    A track seen only on frames that are not annotated is left out. Category ids only the results use are
    added (without ground truth they are left out of every mean, as :mod:`core.evaluation` does), so a model
    with other classes than the GT file is scored, not refused."""
    videos, anns = [], []
    cats: dict[int, dict] = {}
    for c in clips:
        for cat in c.category_json:
            cats.setdefault(cat["id"], cat)
        idx = c.annotated
        if not idx:
            continue
        videos.append({"id": c.video_id, "width": c.width, "height": c.height, "length": len(idx),
                       "file_names": [c.frame_names[t] for t in idx]})
        for tr in c.records:
            if all(tr["segmentations"][t] is None for t in idx):
                continue
            a = {"id": len(anns) + 1, "video_id": c.video_id, "category_id": tr["category_id"],
                 "iscrowd": tr["iscrowd"], "height": c.height, "width": c.width, "length": 1,
                 "segmentations": [tr["segmentations"][t] for t in idx]}
            for key in ("areas", "bboxes"):
                if key in tr:
                    a[key] = [tr[key][t] for t in idx]
            anns.append(a)
    for cid in sorted({a["category_id"] for a in anns} | set(result_categories)):
        cats.setdefault(cid, {"id": cid, "name": f"category {cid}"})
    return {"videos": videos, "annotations": anns, "categories": [cats[k] for k in sorted(cats)]}


def restricted_results(entries: Sequence[dict], frames: Sequence[int], *, class_agnostic: bool = False) -> list[dict]:
    """YTVIS result entries of one video cut to ``frames`` (tracks left with no mask are dropped)."""
    out = []
    for e in entries:
        segs = [e["segmentations"][t] for t in frames]
        if all(s is None for s in segs):
            continue
        out.append({**e, "segmentations": segs, **({"category_id": 1} if class_agnostic else {})})
    return out


def score(gt_json: dict, entries: Sequence[dict], *, source: str = "<sweep>") -> dict[str, float]:
    """``vpp eval``'s figures for results (YTVIS entries) against a GT JSON dict (both parsed as vpp eval does)."""
    gt = parse_ytvis_gt(gt_json, source=source)
    results = parse_ytvis_results(list(entries), gt, source=source)
    return evaluate(gt, results, source=source)


# -- loading ---------------------------------------------------------------------------------------------
def load_ground_truth(path: str | os.PathLike, *, num_frames: int, height: int, width: int,
                      names: Sequence[str] | None = None, video_id: int | None = None) -> ClipGroundTruth:
    """The ground truth at ``path`` for a clip of ``num_frames`` frames of ``height`` x ``width``.

    ``names``: the clip's frame file names (a YTVIS file's video is the one whose ``file_names`` have these
    basenames, else the only one, else the one with the clip's length and size; DAVIS PNGs are matched to
    frames by stem). ``video_id``: take that video of a YTVIS file. Every problem raises :class:`DataError`
    starting with the path and saying what to do."""
    path = Path(path)
    names = tuple(names) if names else ()
    if names and len(names) != num_frames:
        raise ValueError(f"{len(names)} frame names for a clip of {num_frames} frames")
    if not path.exists():
        raise DataError(f"{path}: does not exist; check the path ({_WHAT})")
    if path.is_dir():
        return _load_davis(path, num_frames, height, width, names)
    if zipfile.is_zipfile(path):
        raise DataError(f"{path}: is a zip (YouTube-VIS results hold predictions), not ground truth; {_WHAT}")
    data = load_json_file(path)
    if isinstance(data, list):
        raise DataError(f"{path}: is a YouTube-VIS results file (a list of predicted tracks), not ground truth; "
                        f"{_WHAT}")
    if isinstance(data, dict) and "videos" in data:
        ytvis = parse_ytvis_gt(data, source=path)
        vid = _choose_video(path, ytvis, names, video_id, num_frames, height, width)
        return from_ytvis(path, ytvis, vid, names=names)
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        raise DataError(f"{path}: is a COCO per-frame JSON (one image per frame), not YouTube-VIS ground truth; "
                        f"{_WHAT}")
    raise DataError(f"{path}: not YouTube-VIS ground truth (no 'videos'); {_WHAT}")


def _choose_video(path: Path, ytvis: YtvisGroundTruth, names: Sequence[str], video_id: int | None,
                  num_frames: int, height: int, width: int) -> int:
    if not ytvis.videos:
        raise DataError(f"{path}: holds no video; give the ground truth of the open clip")
    if video_id is None and names:
        want = [PurePath(n).name for n in names]
        by_name = [v.id for v in ytvis.videos if [PurePath(f).name for f in v.file_names] == want]
        if len(by_name) == 1:
            video_id = by_name[0]
    shapes = {v.id: (v.length, (v.height, v.width)) for v in ytvis.videos}
    vid = choose_video(path, shapes, video_id, num_frames, height, width)
    assert vid is not None  # the file holds videos
    return vid


def _record(a: YtvisAnnotation) -> dict:
    return {"id": a.id, "category_id": a.category_id, "iscrowd": a.iscrowd,
            "segmentations": [None if s is None else dict(s) for s in a.segmentations],
            "areas": list(a.areas), "bboxes": [None if b is None else list(b) for b in a.bboxes]}


def _size_mismatch(path: Path, track: int, video, frame: int, size: list) -> str:
    return (f"{path}: track {track} has a mask of [height, width] {size} on frame {frame}, but video {video.id} is "
            f"{video.width}x{video.height}")


def from_ytvis(path: str | os.PathLike, ytvis: YtvisGroundTruth, video_id: int, *,
               names: Sequence[str] = ()) -> ClipGroundTruth:
    """Video ``video_id`` of a parsed YTVIS ground truth (its length and size are the clip's: check first,
    e.g. with :func:`core.formats.base.choose_video`). ``names``: the clip's frame names (default the
    video's ``file_names``)."""
    path = Path(path)
    video = ytvis.video(video_id)
    hw = (video.height, video.width)
    records, tracks = [], []
    for a in ytvis.tracks(video_id):
        frames = present_frames(a.segmentations, hw, functools.partial(_size_mismatch, path, a.id, video))
        records.append(_record(a))
        tracks.append(GroundTruthTrack(a.id, a.category_id, frames, a.iscrowd))
    return ClipGroundTruth(
        path=path, format="ytvis-gt", video_id=video_id, num_frames=video.length, height=video.height,
        width=video.width, frame_names=tuple(names) or tuple(video.file_names),
        categories={c.id: c.name for c in ytvis.categories}, tracks=tracks,
        annotated=annotated_frames(records, video.length, dense_annotation=False), records=records,
        category_json=[c.to_json() for c in ytvis.categories])


def _davis_files(folder: Path) -> list[Path]:
    return davis_mask_files(folder, _WHAT)


def _davis_frame_indices(folder: Path, files: Sequence[Path], num_frames: int, names: Sequence[str]) -> list[int]:
    """The frame of every PNG: by the frames' stems, else in order (one PNG per frame), else by number."""
    stems = [p.stem for p in files]
    distinct = len(set(stems)) == len(stems)
    if names and distinct:
        frame_of = {PurePath(n).stem: i for i, n in enumerate(names)}
        if all(s in frame_of for s in stems):
            return [frame_of[s] for s in stems]
    if len(files) == num_frames:
        return list(range(num_frames))
    head = f"{folder}: holds {len(files)} PNG masks, but the open clip has {num_frames} frames"
    if names:
        frame_of = {PurePath(n).stem for n in names}
        stray = [p.name for p in files if p.stem not in frame_of]
        listed = ", ".join(stray[:3]) + (" ..." if len(stray) > 3 else "")
        raise DataError(f"{head}, and {len(stray)} of the masks ({listed}) are not named after a frame of the clip "
                        f"(e.g. {PurePath(names[0]).stem}.png for {PurePath(names[0]).name}); name every mask after "
                        "its frame, or give one PNG per frame")
    if distinct and all(s.isdigit() for s in stems):
        index = [int(s) for s in stems]
        if max(index) < num_frames and len(set(index)) == len(index):
            return index
    raise DataError(f"{head}; name every mask by its frame number (00005.png for frame 5), or give one PNG per frame")


def _load_davis(folder: Path, num_frames: int, height: int, width: int, names: Sequence[str]) -> ClipGroundTruth:
    files = _davis_files(folder)
    index = _davis_frame_indices(folder, files, num_frames, names)
    frames: dict[int, dict[int, RLE]] = {}
    for t, p in zip(index, files):
        labels = read_davis_png(p)
        if labels.shape != (height, width):
            raise DataError(f"{p}: mask is {labels.shape[1]}x{labels.shape[0]}, but the open clip is {width}x{height}")
        for k in np.unique(labels).tolist():
            if k > 0:
                frames.setdefault(int(k), {})[t] = encode_mask(labels == k)
    cid, cname = DAVIS_CATEGORY
    tracks = [GroundTruthTrack(k, cid, dict(sorted(frames[k].items()))) for k in sorted(frames)]
    records = [{"id": tr.id, "category_id": cid, "iscrowd": 0,
                "segmentations": [tr.frames.get(t) for t in range(num_frames)]} for tr in tracks]
    return ClipGroundTruth(
        path=folder, format="davis", video_id=1, num_frames=num_frames, height=height, width=width,
        frame_names=tuple(names) or tuple(f"{t:05d}.jpg" for t in range(num_frames)), categories={cid: cname},
        tracks=tracks, annotated=sorted(index), records=records, category_json=[{"id": cid, "name": cname}])

