"""Format builders and readers behind :mod:`core.export` (YTVIS results, COCO per-frame JSON, DAVIS PNGs).

Nothing here stages or commits files: :mod:`core.export` does that. Builders turn
:class:`VideoExport` objects into the content of one format; readers turn a file (or folder) back
into per-video tracks, and are used both to validate what was just written and to import.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from core.data.davis import MAX_OBJECTS_16, read_davis_png, write_davis_png
from core.data.rle import counts_problems, decode_rle, encode_mask, rle_area, rle_bbox, to_compressed
from core.data.sources import natural_key
from core.data.ytvis import YtvisCategory, YtvisGroundTruth, YtvisVideo
from core.errors import DataError
from core.results import ClipResults

#: The run record inside an exported DAVIS folder; its presence marks the folder as ours.
DAVIS_RECORD = "vpp_run.json"


@dataclass(frozen=True)
class VideoExport:
    """One clip to export: YTVIS ``video_id``, a ``name`` (DAVIS sub-folder, COCO file names), its frames."""

    video_id: int
    name: str
    frame_names: tuple[str, ...]
    results: ClipResults


@dataclass(frozen=True)
class ImportedTrack:
    """One imported track: frame index -> compressed RLE (str counts); absent or empty frames are left out."""

    source_id: int  # YTVIS results: 1-based position in the file; GT: annotation id; DAVIS: label; COCO: track_id
    category_id: int
    score: float
    frames: dict[int, dict] = field(hash=False)

    def mask(self, index: int) -> np.ndarray | None:
        """Frame ``index``'s ``[H, W]`` bool mask, or None where the track is absent."""
        rle = self.frames.get(index)
        return None if rle is None else decode_rle(rle)


@dataclass(frozen=True)
class ImportedTracks:
    """What :func:`core.export.import_tracks` found for one clip."""

    path: Path
    format: str  # "ytvis-results", "ytvis-gt", "coco" or "davis"
    video_id: int | None  # None for a DAVIS folder (or a file holding no video)
    categories: tuple[tuple[int, str | None], ...]  # (id, name); name None where the file gives none
    tracks: tuple[ImportedTrack, ...]


# -- export builders ------------------------------------------------------------------------------


def track_ids(clip: ClipResults) -> list[int]:
    """The track IDs of ``clip.to_ytvis`` entries, in the same (ascending) order."""
    return sorted({int(f.track_ids[k]) for f in clip for k in range(f.num_instances) if f.areas[k] > 0})


def ytvis_entries(videos: Sequence[VideoExport]) -> list[dict]:
    return [e for v in videos for e in v.results.to_ytvis(v.video_id)]


def ytvis_reference(videos: Sequence[VideoExport], categories: Sequence[tuple[int, str]]) -> YtvisGroundTruth:
    """A track-less ground truth holding the clips' lengths and sizes, to validate results against."""
    vids = tuple(YtvisVideo(v.video_id, v.results.width, v.results.height, tuple(v.frame_names)) for v in videos)
    return YtvisGroundTruth(vids, (), tuple(YtvisCategory(i, n) for i, n in categories))


def coco_dataset(videos: Sequence[VideoExport], categories: Sequence[tuple[int, str]],
                 info: dict[str, Any]) -> dict[str, Any]:
    """COCO per-frame JSON: one image per frame, one annotation per (frame, track) where the track is present.

    An annotation carries its track's ``category_id`` and ``score`` (as in the YTVIS results) and its ``track_id``.
    """
    images: list[dict] = []
    anns: list[dict] = []
    for v in videos:
        clip = v.results
        first = len(images) + 1
        images += [{"id": first + t, "file_name": f"{v.name}/{PurePath(n).name}", "width": clip.width,
                    "height": clip.height, "video_id": v.video_id, "frame_index": t}
                   for t, n in enumerate(v.frame_names)]
        for tid, entry in zip(track_ids(clip), clip.to_ytvis(v.video_id)):
            for t, seg in enumerate(entry["segmentations"]):
                if seg is not None:
                    anns.append({"id": len(anns) + 1, "image_id": first + t, "category_id": entry["category_id"],
                                 "segmentation": seg, "area": float(rle_area(seg)), "bbox": rle_bbox(seg),
                                 "score": entry["score"], "track_id": tid, "iscrowd": 0})
    return {"info": info, "images": images, "annotations": anns,
            "categories": [{"id": int(i), "name": str(n)} for i, n in categories]}


def _plain_folder_name(name: str) -> bool:
    return (name not in ("", ".", "..") and PurePath(name).name == name and not any(c in name for c in "/\\\0")
            and name.lower() != DAVIS_RECORD)


def davis_folders(videos: Sequence[VideoExport]) -> list[str]:
    """Sub-folder per video ("" for a single video: PNGs go straight into the DAVIS folder).

    A folder is named by the video's ``name``; names used by more than one video (compared without
    case, as some file systems do), and names that are not a plain folder name, get ``-<video_id>``
    appended (``video-<id>`` if the name is unusable), then ``-2``, ``-3`` ... until every folder is distinct.
    """
    if len(videos) == 1:
        return [""]
    plain = [v.name if _plain_folder_name(v.name) else "" for v in videos]
    counts: dict[str, int] = {}
    for n in plain:
        counts[n.lower()] = counts.get(n.lower(), 0) + 1
    wanted = [n if n and counts[n.lower()] == 1 else f"{n or 'video'}-{v.video_id}" for n, v in zip(plain, videos)]
    taken = {n.lower() for n, w in zip(plain, wanted) if n == w}  # names kept as given win
    out: list[str] = []
    for n, w in zip(plain, wanted):
        name, k = w, 1
        if n != w:
            while name.lower() in taken:
                k += 1
                name = f"{w}-{k}"
            taken.add(name.lower())
        out.append(name)
    return out


def check_davis_names(videos: Sequence[VideoExport]) -> list[str]:
    """The DAVIS sub-folders (see :func:`davis_folders`), after checking every video's frames have distinct stems."""
    for v in videos:
        stems = [PurePath(n).stem.lower() for n in v.frame_names]
        if len(set(stems)) != len(stems) or "" in stems:
            raise DataError(f"video {v.video_id} ({v.name}): the frame names do not have distinct, non-empty stems; "
                            "cannot name one DAVIS PNG per frame")
    return davis_folders(videos)


def write_davis_video(folder: Path, video: VideoExport) -> list[int]:
    """One PNG per frame (``<frame stem>.png``) into ``folder``, each read back and compared.

    Every track is written: palette PNGs for up to 255 objects, else 16-bit PNGs for every frame of the
    video (:mod:`core.data.davis`); more than 65535 tracks is a :class:`DataError` naming the video, never
    a silent cut. Returns the track IDs written as objects 1..K.
    """
    clip = video.results
    objects = clip.davis_objects()
    if len(objects) > MAX_OBJECTS_16:
        raise DataError(f"video {video.video_id} ({video.name}): {len(objects)} tracks, more than the "
                        f"{MAX_OBJECTS_16} objects a DAVIS PNG can hold (16-bit); export YouTube-VIS JSON or COCO "
                        "instead, or remove tracks")
    for t, name in enumerate(video.frame_names):
        labels = clip.davis_label_map(t, objects)  # uint16 past 255 objects: 16-bit PNGs for the whole video
        path = folder / f"{PurePath(name).stem}.png"
        write_davis_png(path, labels)
        back = read_davis_png(path)
        if back.shape != labels.shape or not np.array_equal(back, labels):
            raise DataError(f"{path}: the written mask does not read back as written; check the disk")
    return objects


# -- readers --------------------------------------------------------------------------------------


def load_json_file(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not a valid JSON file ({exc}); the file may be truncated") from exc


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_coco(data: Any, source: str | Path) -> dict[str, Any]:
    """Validate a COCO per-frame JSON as :func:`coco_dataset` writes it; returns ``data``. Raises DataError."""
    problems: list[str] = []
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in
                                             ("images", "annotations", "categories")):
        raise DataError(f"{source}: not a COCO per-frame JSON (needs lists 'images', 'annotations', 'categories')")
    sizes: dict[int, tuple[int, int]] = {}
    for i, im in enumerate(data["images"]):
        ok = isinstance(im, dict) and all(isinstance(im.get(k), int) for k in
                                          ("id", "width", "height", "video_id", "frame_index"))
        if not ok or im["id"] in sizes:
            problems.append(f"images[{i}]: needs unique int id and int width, height, video_id, frame_index")
            continue
        sizes[im["id"]] = (im["height"], im["width"])
    cats = {c.get("id") for c in data["categories"] if isinstance(c, dict)}
    rles: list[tuple[str, dict]] = []
    for i, a in enumerate(data["annotations"]):
        p = f"annotations[{i}]"
        if not isinstance(a, dict) or a.get("image_id") not in sizes:
            problems.append(f"{p}: unknown or missing image_id")
            continue
        if a.get("category_id") not in cats:
            problems.append(f"{p}.category_id: {a.get('category_id')!r} is not in 'categories'")
        if not isinstance(a.get("track_id"), int):
            problems.append(f"{p}.track_id: must be an integer")
        if not _num(a.get("score", 1.0)) or not 0 <= a.get("score", 1.0) <= 1:
            problems.append(f"{p}.score: must be a number in [0, 1]")
        try:
            rle = to_compressed(a.get("segmentation"))
        except ValueError as exc:
            problems.append(f"{p}.segmentation: {exc}")
            continue
        if tuple(rle["size"]) != sizes[a["image_id"]]:
            problems.append(f"{p}.segmentation: size {rle['size']} is not the image's {list(sizes[a['image_id']])}")
            continue
        rles.append((p, rle))
    for (p, _), why in zip(rles, counts_problems([r for _, r in rles])):
        if why is not None:
            problems.append(f"{p}.segmentation: {why}")
    if problems:
        more = f"; ... and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise DataError(f"{source}: invalid COCO per-frame JSON: {'; '.join(problems[:8])}{more}")
    from pycocotools.coco import COCO  # the reference reader must index it too

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return data


def choose_video(path: Path, shapes: dict[int, tuple[int, tuple[int, int] | None]], video_id: int | None,
                 num_frames: int, height: int, width: int) -> int | None:
    """Pick a video of a file: ``video_id``, the only one, or the unique one matching the clip; then check it.

    ``shapes``: video id -> (frames, (height, width) or None where the file does not say).
    """
    ids = ", ".join(str(v) for v in sorted(shapes))
    clip = f"{num_frames} frames of {width}x{height}"
    if video_id is not None:
        if video_id not in shapes:
            raise DataError(f"{path}: has no video {video_id} (its videos: {ids or 'none'})")
        vid = video_id
    elif not shapes:
        return None
    elif len(shapes) == 1:
        vid = next(iter(shapes))
    else:
        match = [v for v, (n, hw) in shapes.items() if n == num_frames and hw in (None, (height, width))]
        if len(match) != 1:
            found = "none of them matches" if not match else f"{len(match)} of them match"
            raise DataError(f"{path}: holds videos {ids} and {found} the open clip ({clip}); choose a video id")
        vid = match[0]
    n, hw = shapes[vid]
    if n != num_frames:
        raise DataError(f"{path}: video {vid} has {n} frames, but the open clip has {num_frames} ({clip})")
    if hw is not None and hw != (height, width):
        raise DataError(f"{path}: video {vid} is {hw[1]}x{hw[0]} (masks of [height, width] {list(hw)}), "
                        f"but the open clip is {width}x{height}")
    return vid


def _frames(segs: Sequence[dict | None], path: Path, hw: tuple[int, int]) -> dict[int, dict]:
    out = {}
    for t, s in enumerate(segs):
        if s is None:
            continue
        if tuple(s["size"]) != hw:
            raise DataError(f"{path}: frame {t} has a mask of [height, width] {list(s['size'])}, "
                            f"but the open clip is {hw[1]}x{hw[0]}")
        if rle_area(s) > 0:
            out[t] = dict(s)
    return out


def _size_of(segs_lists: Sequence[Sequence[dict | None]]) -> tuple[int, int] | None:
    for segs in segs_lists:
        for s in segs:
            if s is not None:
                return int(s["size"][0]), int(s["size"][1])
    return None


def tracks_from_results(path: Path, results: Sequence[Any], **clip: Any) -> ImportedTracks:
    """YTVIS results (parsed :class:`YtvisResult` objects) -> the chosen video's tracks."""
    by_video: dict[int, list[tuple[int, Any]]] = {}
    for i, r in enumerate(results, 1):
        by_video.setdefault(r.video_id, []).append((i, r))
    shapes = {}
    for vid, rs in by_video.items():
        lengths = {len(r.segmentations) for _, r in rs}
        if len(lengths) > 1:
            raise DataError(f"{path}: the tracks of video {vid} differ in length ({sorted(lengths)} frames)")
        shapes[vid] = (lengths.pop(), _size_of([r.segmentations for _, r in rs]))
    vid = choose_video(path, shapes, clip["video_id"], clip["num_frames"], clip["height"], clip["width"])
    hw = (clip["height"], clip["width"])
    tracks = [ImportedTrack(i, r.category_id, float(r.score), _frames(r.segmentations, path, hw))
              for i, r in by_video.get(vid, [])]
    tracks = tuple(t for t in tracks if t.frames)
    return ImportedTracks(path, "ytvis-results", vid, tuple((c, None) for c in sorted({t.category_id for t in tracks})),
                          tracks)


def tracks_from_gt(path: Path, gt: YtvisGroundTruth, **clip: Any) -> ImportedTracks:
    shapes = {v.id: (v.length, (v.height, v.width)) for v in gt.videos}
    vid = choose_video(path, shapes, clip["video_id"], clip["num_frames"], clip["height"], clip["width"])
    hw = (clip["height"], clip["width"])
    tracks = tuple(t for t in (ImportedTrack(a.id, a.category_id, 1.0, _frames(a.segmentations, path, hw))
                               for a in (gt.tracks(vid) if vid is not None else [])) if t.frames)
    return ImportedTracks(path, "ytvis-gt", vid, tuple((c.id, c.name) for c in gt.categories), tracks)


def tracks_from_coco(path: Path, data: dict[str, Any], **clip: Any) -> ImportedTracks:
    check_coco(data, path)
    frames_of: dict[int, dict[int, int]] = {}  # video id -> image id -> frame index
    shapes: dict[int, tuple[int, tuple[int, int] | None]] = {}
    for im in data["images"]:
        frames_of.setdefault(im["video_id"], {})[im["id"]] = im["frame_index"]
        shapes[im["video_id"]] = (0, (im["height"], im["width"]))
    for vid, fr in frames_of.items():
        if sorted(fr.values()) != list(range(len(fr))):
            raise DataError(f"{path}: the frame_index values of video {vid} are not 0..{len(fr) - 1}")
        shapes[vid] = (len(fr), shapes[vid][1])
    vid = choose_video(path, shapes, clip["video_id"], clip["num_frames"], clip["height"], clip["width"])
    hw = (clip["height"], clip["width"])
    index = frames_of.get(vid, {})
    per_track: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        if a["image_id"] in index:
            per_track.setdefault(a["track_id"], []).append(a)
    tracks = []
    for tid in sorted(per_track):
        anns = per_track[tid]
        segs: list[dict | None] = [None] * len(index)
        for a in anns:
            segs[index[a["image_id"]]] = to_compressed(a["segmentation"])
        score = float(np.mean([a.get("score", 1.0) for a in anns]))
        tracks.append(ImportedTrack(tid, anns[0]["category_id"], score, _frames(segs, path, hw)))
    return ImportedTracks(path, "coco", vid, tuple((c["id"], c.get("name")) for c in data["categories"]),
                          tuple(t for t in tracks if t.frames))


def davis_mask_files(folder: Path, what: str = "") -> list[Path]:
    """The PNG files of a DAVIS mask folder in natural order (hidden files skipped); none: a DataError naming the
    folder (and its sub-folders, when it holds one folder per video), ``what`` appended to the message."""
    try:
        entries = [e for e in os.scandir(folder) if not e.name.startswith(".")]
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the mask folder ({exc.strerror or exc})") from exc
    files = sorted((Path(e.path) for e in entries if e.name.lower().endswith(".png") and e.is_file()),
                   key=lambda p: natural_key(p.name))
    if not files:
        subs = sorted(e.name for e in entries if e.is_dir())
        hint = f"; it holds the folders {', '.join(subs[:8])}: pick one video's folder" if subs else ""
        raise DataError(f"{folder}: no PNG masks found{hint}{'; ' + what if what else ''}")
    return files


def tracks_from_davis(folder: Path, *, num_frames: int, height: int, width: int,
                      category_id: int = 1) -> ImportedTracks:
    """A folder of DAVIS PNG masks (one per frame, natural order): object k becomes track k."""
    files = davis_mask_files(folder)
    if len(files) != num_frames:
        raise DataError(f"{folder}: holds {len(files)} PNG masks, but the open clip has {num_frames} frames")
    frames: dict[int, dict[int, dict]] = {}
    for t, p in enumerate(files):
        labels = read_davis_png(p)
        if labels.shape != (height, width):
            raise DataError(f"{p}: mask is {labels.shape[1]}x{labels.shape[0]}, "
                            f"but the open clip is {width}x{height}")
        for k in np.unique(labels).tolist():
            if k > 0:
                frames.setdefault(int(k), {})[t] = encode_mask(labels == k)
    tracks = tuple(ImportedTrack(k, category_id, 1.0, frames[k]) for k in sorted(frames))
    return ImportedTracks(folder, "davis", None, ((category_id, None),), tracks)
