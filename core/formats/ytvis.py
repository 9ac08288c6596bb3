"""YouTube-VIS results JSON: one entry per track (``ClipResults.to_ytvis``), checked by the YTVIS parser.

Export (``--out FILE``): the entries of every video, validated against a track-less ground truth holding the
clips' lengths and sizes, written as compact JSON and read back with :func:`core.data.ytvis.read_ytvis_results`.
Import: a YTVIS results list or a YTVIS ground truth (``videos``/``annotations``); the video is ``video_id``,
else the only one, else the unique one matching the clip. :mod:`core.formats.ytvis_zip` shares the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.data.ytvis import (
    YtvisCategory,
    YtvisGroundTruth,
    YtvisVideo,
    parse_ytvis_gt,
    parse_ytvis_results,
    read_ytvis_results,
    results_to_json,
)
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
    json_bytes,
)


def ytvis_entries(videos: Sequence[VideoExport]) -> list[dict]:
    return [e for v in videos for e in v.results.to_ytvis(v.video_id)]


def ytvis_reference(videos: Sequence[VideoExport], categories: Sequence[tuple[int, str]]) -> YtvisGroundTruth:
    """A track-less ground truth holding the clips' lengths and sizes, to validate results against."""
    vids = tuple(YtvisVideo(v.video_id, v.results.width, v.results.height, tuple(v.frame_names)) for v in videos)
    return YtvisGroundTruth(vids, (), tuple(YtvisCategory(i, n) for i, n in categories))


def results_body(job: ExportJob, source: Path) -> tuple[YtvisGroundTruth, list, bytes]:
    """(reference, parsed results, JSON body) of the job, computed once for the JSON and the zip (``source``
    names the file in the parser's messages: the first of them staged)."""
    if "ytvis" not in job.shared:
        reference = ytvis_reference(job.videos, job.categories)
        parsed = parse_ytvis_results(ytvis_entries(job.videos), reference, source=source)
        job.shared["ytvis"] = (reference, parsed, json_bytes(results_to_json(parsed)))
    return job.shared["ytvis"]


def check_read_back(staged: Path, path: Path, job: ExportJob) -> None:
    reference, parsed, _ = job.shared["ytvis"]
    if len(read_ytvis_results(staged, reference)) != len(parsed):
        raise DataError(f"{path}: the written results do not read back; check the disk")


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
    tracks = [ImportedTrack(i, r.category_id, float(r.score), clip_frames(r.segmentations, path, hw))
              for i, r in by_video.get(vid, [])]
    tracks = tuple(t for t in tracks if t.frames)
    return ImportedTracks(path, "ytvis-results", vid, tuple((c, None) for c in sorted({t.category_id for t in tracks})),
                          tracks)


def tracks_from_gt(path: Path, gt: YtvisGroundTruth, **clip: Any) -> ImportedTracks:
    shapes = {v.id: (v.length, (v.height, v.width)) for v in gt.videos}
    vid = choose_video(path, shapes, clip["video_id"], clip["num_frames"], clip["height"], clip["width"])
    hw = (clip["height"], clip["width"])
    tracks = tuple(t for t in (ImportedTrack(a.id, a.category_id, 1.0, clip_frames(a.segmentations, path, hw))
                               for a in (gt.tracks(vid) if vid is not None else [])) if t.frames)
    return ImportedTracks(path, "ytvis-gt", vid, tuple((c.id, c.name) for c in gt.categories), tracks)


class YtvisCodec(Codec):
    name = "ytvis"
    label = "YTVIS results"
    option = "--out"
    help = "YTVIS results JSON"
    infer_help = ("results JSON (YTVIS results format); its run record <OUT stem>.run.json is written beside "
                  "it. For a split, a folder of clips or a torchrun run, per-video results are kept in "
                  "<OUT>.work/ (a rerun of the same command reuses the finished videos; a clip that fails "
                  "leaves <OUT>.work/video-NNNNN.error.json and nothing is merged), and <OUT stem>.videos.json "
                  "maps each video_id to its clip's name and path (YTVIS results carry no names)")
    summary = "YTVIS JSON/zip"  # the zip codec adds nothing to this
    menu_label = "&Export YouTube-VIS…"
    menu_tip = "Save the results as YouTube-VIS JSON (or a zip for the server)"
    menu_shortcut = ("Ctrl+E",)
    dialog_title = "Export YouTube-VIS results"
    file_filter = "YouTube-VIS results (*.json)"
    default_name = "results.json"
    suffix = ".json"
    import_kinds = ("YouTube-VIS results list", "YouTube-VIS ground truth")

    def build(self, job: ExportJob, path: Path) -> bytes:
        return results_body(job, path)[2]

    def read_back(self, staged: Path, path: Path, job: ExportJob) -> None:
        check_read_back(staged, path, job)

    def claims(self, probe: ImportProbe) -> bool:
        data = probe.json
        return isinstance(data, list) or (isinstance(data, dict) and "videos" in data)

    def import_tracks(self, probe: ImportProbe, **clip: Any) -> ImportedTracks:
        clip.pop("category_id", None)
        if isinstance(probe.json, list):
            return tracks_from_results(probe.path, parse_ytvis_results(probe.json, source=probe.path), **clip)
        return tracks_from_gt(probe.path, parse_ytvis_gt(probe.json, source=probe.path), **clip)


CODEC = YtvisCodec()
