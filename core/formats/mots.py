"""KITTI-MOTS text (``--mots FILE``): one line per object per frame, ``frame obj_id class_id height width rle``.

``frame`` is 0-based; ``rle`` is the COCO compressed RLE counts string of the object's mask on that frame
(``height`` x ``width``, column-major, as pycocotools writes it). Object ids: ``obj_id = class_id * 1000 + k``,
where ``class_id`` is the track's category (as in the YTVIS results: its score-weighted vote) and ``k`` = 1, 2,
... numbers the tracks of that class by ascending track ID; a class with more than 999 tracks is refused
(:class:`DataError` naming the file), never cut. The format holds one sequence: one video per file.

Masks do not overlap, as the format requires: each frame is the DAVIS export's label map
(:meth:`core.results.ClipResults.davis_label_map`: where instances overlap the higher-scored one keeps the
pixel), and each object's line is its label there; a track left with no pixel on a frame has no line. Lines
are sorted by frame, then object id. Read back as written before the commit: every line parsed, every RLE
decodable to its size, no two masks of a frame sharing a pixel. Import: the tracks of such a file (object id
10000, KITTI-MOTS's ignore regions, is skipped); they carry no score (1.0).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from core.data.rle import counts_problems, decode_rle, encode_mask
from core.errors import DataError
from core.formats.base import (
    Codec,
    ExportJob,
    ImportedTrack,
    ImportedTracks,
    ImportProbe,
    VideoExport,
    clip_frames,
    track_ids,
)

#: The most tracks of one class an id ``class_id * 1000 + k`` can number.
MAX_PER_CLASS = 999
#: KITTI-MOTS's id of ignore regions (class 10), skipped on import.
IGNORE_ID = 10000
_LINE = re.compile(r"(\d+) (\d+) (\d+) (\d+) (\d+) (\S+)")

Record = tuple[int, int, int, int, int, str]  # frame, obj_id, class_id, height, width, counts


def object_ids(video: VideoExport, path: Path) -> dict[int, tuple[int, int]]:
    """Track ID -> (obj_id, class_id): the k-th track of a class (ascending track ID) gets class_id * 1000 + k."""
    clip = video.results
    classes = {t: int(e["category_id"]) for t, e in zip(track_ids(clip), clip.to_ytvis(video.video_id))}
    count: dict[int, int] = {}
    out = {}
    for tid in sorted(classes):
        c = classes[tid]
        count[c] = count.get(c, 0) + 1
        if count[c] > MAX_PER_CLASS:
            n = sum(1 for x in classes.values() if x == c)
            raise DataError(f"{path}: video {video.video_id} ({video.name}) has {n} tracks of class {c}, more than "
                            f"the {MAX_PER_CLASS} per class a KITTI-MOTS object id (class_id * 1000 + index) can "
                            "number; export YouTube-VIS JSON or COCO instead, or remove tracks")
        out[tid] = (c * 1000 + count[c], c)
    return out


def mots_records(video: VideoExport, path: Path) -> list[Record]:
    """The lines of one video: per frame, the DAVIS label map's objects (non-overlapping), sorted by object id."""
    clip = video.results
    ids = object_ids(video, path)
    objects = clip.davis_objects()
    records: list[Record] = []
    for t in range(clip.num_frames):
        labels = clip.davis_label_map(t, objects)
        frame = []
        for lab in np.unique(labels).tolist():
            if lab > 0:
                obj, cls = ids[objects[lab - 1]]
                frame.append((t, obj, cls, clip.height, clip.width, encode_mask(labels == lab)["counts"]))
        records += sorted(frame, key=lambda r: r[1])
    return records


def parse_mots(text: str, path: Path) -> list[Record]:
    """Every line of a KITTI-MOTS text as a record; :class:`DataError` naming the file and line otherwise."""
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.fullmatch(line.strip())
        if m is None:
            raise DataError(f"{path}: line {n} is not 'frame obj_id class_id height width rle' (KITTI-MOTS text)")
        t, obj, cls, h, w = (int(g) for g in m.groups()[:5])
        records.append((t, obj, cls, h, w, m.group(6)))
    return records


def check_records(records: list[Record], path: Path) -> None:
    """Every RLE decodable to its size, and no two masks of one frame (of one size) sharing a pixel."""
    rles = [{"size": [h, w], "counts": c} for _t, _o, _c, h, w, c in records]
    for (t, obj, *_), why in zip(records, counts_problems(rles)):
        if why is not None:
            raise DataError(f"{path}: frame {t}, object {obj}: {why}")
    taken: dict[int, np.ndarray] = {}
    for (t, obj, *_), rle in zip(records, rles):
        mask = decode_rle(rle)
        seen = taken.setdefault(t, np.zeros_like(mask))
        if seen.shape != mask.shape:
            raise DataError(f"{path}: frame {t} has masks of different sizes")
        if (seen & mask).any():
            raise DataError(f"{path}: frame {t}, object {obj} overlaps another mask (KITTI-MOTS masks must not)")
        seen |= mask


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("ascii")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a KITTI-MOTS text file (not ASCII: {exc})") from exc


class MotsCodec(Codec):
    name = "mots"
    label = "KITTI-MOTS text"
    option = "--mots"
    metavar = "FILE"
    help = "KITTI-MOTS text (frame obj_id class_id height width rle per line, non-overlapping masks)"
    infer_help = ("also write KITTI-MOTS text to FILE: one line 'frame obj_id class_id height width rle' per object "
                  "and frame, obj_id = class_id * 1000 + the track's index in its class, overlaps resolved as in "
                  "the DAVIS masks (one video only)")
    summary = "KITTI-MOTS text"
    menu_label = "Export &KITTI-MOTS text…"
    menu_tip = "Save one line per object and frame (KITTI-MOTS: class, id and RLE mask, no overlaps)"
    dialog_title = "Export KITTI-MOTS text"
    file_filter = "KITTI-MOTS text (*.txt)"
    default_name = "mots.txt"
    suffix = ".txt"
    one_video = True
    import_kinds = ("KITTI-MOTS text",)

    def build(self, job: ExportJob, path: Path) -> bytes:
        if len(job.videos) != 1:
            raise DataError(f"{path}: KITTI-MOTS text holds one sequence, but {len(job.videos)} videos are exported; "
                            "export one video per file, or YouTube-VIS JSON or COCO for several")
        records = mots_records(job.videos[0], path)
        job.shared["mots"] = records
        return "".join(f"{t} {o} {c} {h} {w} {r}\n" for t, o, c, h, w, r in records).encode("ascii")

    def read_back(self, staged: Path, path: Path, job: ExportJob) -> None:
        back = parse_mots(_read_text(staged), path)
        if back != job.shared["mots"]:
            raise DataError(f"{path}: the written KITTI-MOTS text does not read back as written; check the disk")
        check_records(back, path)

    def claims(self, probe: ImportProbe) -> bool:
        if probe.is_dir or probe.is_zip or probe.json is not None:
            return False
        line = probe.first_line()
        return line is not None and _LINE.fullmatch(line.strip()) is not None

    def import_tracks(self, probe: ImportProbe, *, num_frames: int, height: int, width: int,
                      video_id: int | None, category_id: int) -> ImportedTracks:
        path = probe.path
        records = [r for r in parse_mots(_read_text(path), path) if r[1] != IGNORE_ID]
        check_records(records, path)
        segs: dict[int, list[dict | None]] = {}
        classes: dict[int, int] = {}
        for t, obj, cls, h, w, counts in records:
            if t >= num_frames:
                raise DataError(f"{path}: frame {t} is past the open clip's {num_frames} frames")
            segs.setdefault(obj, [None] * num_frames)[t] = {"size": [h, w], "counts": counts}
            classes[obj] = cls
        tracks = tuple(t for t in (ImportedTrack(obj, classes[obj], 1.0, clip_frames(segs[obj], path, (height, width)))
                                   for obj in sorted(segs)) if t.frames)
        return ImportedTracks(path, "kitti-mots", None, tuple((c, None) for c in sorted(set(classes.values()))),
                              tracks)


CODEC = MotsCodec()
