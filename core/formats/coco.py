"""COCO per-frame JSON (``--coco FILE``): one image per frame, one annotation per (frame, track) present.

``images``: ``file_name`` = "<video name>/<frame file name>", ``video_id``, ``frame_index``; ``annotations``:
compressed RLE, ``area``, ``bbox``, ``track_id``, the track's ``category_id`` and ``score`` (as in the YTVIS
results); ``info``: the run record. Read back (and imported) by :func:`check_coco`, which validates every
field and lets pycocotools index the file.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from core.data.rle import counts_problems, rle_area, rle_bbox, to_compressed
from core.errors import DataError
from core.formats.base import (
    Codec,
    ExportJob,
    ImportedTrack,
    ImportedTracks,
    ImportProbe,
    VideoExport,
    choose_video,
    clip_frames,
    is_number,
    json_bytes,
    load_json_file,
    track_ids,
)


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
        if not is_number(a.get("score", 1.0)) or not 0 <= a.get("score", 1.0) <= 1:
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
        tracks.append(ImportedTrack(tid, anns[0]["category_id"], score, clip_frames(segs, path, hw)))
    return ImportedTracks(path, "coco", vid, tuple((c["id"], c.get("name")) for c in data["categories"]),
                          tuple(t for t in tracks if t.frames))


class CocoCodec(Codec):
    name = "coco"
    label = "COCO JSON"
    option = "--coco"
    help = "COCO per-frame JSON"
    infer_help = "also write a COCO per-frame JSON (one image per frame) to this file"
    summary = "COCO JSON"
    menu_label = "Export COCO per-frame JSON…"
    menu_tip = "Save one COCO image + annotations per frame"
    dialog_title = "Export COCO per-frame JSON"
    file_filter = "COCO per-frame JSON (*.json)"
    default_name = "coco.json"
    suffix = ".json"
    import_kinds = ("COCO per-frame JSON",)

    def build(self, job: ExportJob, path: Path) -> bytes:
        return json_bytes(coco_dataset(job.videos, job.categories, job.run))

    def read_back(self, staged: Path, path: Path, job: ExportJob) -> None:
        check_coco(load_json_file(staged), path)

    def claims(self, probe: ImportProbe) -> bool:
        data = probe.json
        return isinstance(data, dict) and "images" in data and "annotations" in data

    def import_tracks(self, probe: ImportProbe, **clip: Any) -> ImportedTracks:
        clip.pop("category_id", None)
        return tracks_from_coco(probe.path, probe.json, **clip)


CODEC = CocoCodec()
