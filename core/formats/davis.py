"""DAVIS indexed PNG masks: a folder with one PNG per frame, named by the frame's stem (``--davis-png DIR``).

Objects 1..K are ``ClipResults.davis_objects()`` (every track, in that order; where tracks overlap, the
label map of :meth:`ClipResults.davis_label_map` decides which object a pixel shows). A video with more than
255 tracks gets 16-bit greyscale PNGs (labels as stored, marked with the text chunk ``vpp-davis: labels``),
never a cut to 255; more than 65535 tracks is refused. One video: PNGs straight into the folder; several:
one sub-folder per video named by its ``name`` (a name used by several videos, or not a plain folder name,
gets ``-<video_id>`` appended). ``vpp_run.json`` inside the folder is the run record (it also maps objects
to track IDs) and marks the folder as ours: a folder is written only if it is new, empty or an earlier
export of ours, and is then replaced as a whole. Every PNG is read back and compared as it is written.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from core.data.davis import MAX_OBJECTS_16, read_davis_png, write_davis_png
from core.data.rle import encode_mask
from core.data.sources import natural_key
from core.errors import DataError
from core.formats.base import Codec, ExportJob, ImportedTrack, ImportedTracks, ImportProbe, VideoExport
from core.regular_files import fsync_dir

#: The run record inside an exported DAVIS folder; its presence marks the folder as ours.
DAVIS_RECORD = "vpp_run.json"


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


# -- the target folder ----------------------------------------------------------------------------


def _record_folders(record: Path) -> set[str] | None:
    """The video folders a DAVIS folder's ``vpp_run.json`` lists ("" = PNGs at the top), or None if it is not ours."""
    try:
        st = os.lstat(record)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 64 << 20:
            return None
        data = json.loads(record.read_bytes())
        folders = {v["folder"] for v in data["videos"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return folders if all(isinstance(f, str) for f in folders) else None


def _is_png(entry: os.DirEntry) -> bool:
    return entry.name.lower().endswith(".png") and entry.is_file(follow_symlinks=False)


def _only_pngs(folder: str) -> bool:
    try:
        with os.scandir(folder) as it:
            return all(_is_png(e) for e in it)
    except OSError:
        return False


def davis_problem(folder: str | os.PathLike) -> str | None:
    """Why an export must not write the DAVIS folder ``folder``, or None: it is new, empty or one of our exports
    (``vpp_run.json`` and only the PNGs and video folders it lists), which is replaced as a whole."""
    folder = Path(folder)
    choose = "choose an empty or new folder for the DAVIS masks"
    if os.path.islink(folder):
        return f"{folder}: is a symbolic link (to {os.path.realpath(folder)}); give the folder itself"
    if not os.path.lexists(folder):
        return None
    if not folder.is_dir():
        return f"{folder}: is a file, not a folder; {choose}"
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        return f"{folder}: cannot list the folder ({exc.strerror or exc}); {choose}"
    if not entries:
        return None
    listed = _record_folders(folder / DAVIS_RECORD)
    if listed is None:
        return f"{folder}: the folder is not empty and holds no {DAVIS_RECORD} (it is not a VPP export); {choose}"
    foreign = [e.name for e in entries
               if not ((e.name == DAVIS_RECORD and e.is_file(follow_symlinks=False))
                       or ("" in listed and _is_png(e))
                       or (e.name in listed and e.is_dir(follow_symlinks=False) and _only_pngs(e.path)))]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return (f"{folder}: holds {shown} besides an earlier export (an export replaces the folder as a whole); "
                f"move them out or {choose}")
    return None


# -- import ---------------------------------------------------------------------------------------


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


class DavisCodec(Codec):
    name = "davis"
    label = "DAVIS folder"
    option = "--davis-png"
    metavar = "DIR"
    help = "a folder for DAVIS indexed PNG masks (new, empty, or an earlier export of ours)"
    infer_help = ("also export DAVIS palette PNG masks into DIR (one sub-folder per video for a split), with "
                  "its run record DIR/vpp_run.json. DIR must be a new or empty folder, or an earlier export of "
                  "ours (it holds vpp_run.json and only the masks it lists): DIR is then written, or replaced "
                  "as a whole, only after the new masks are complete. A folder holding any other file is "
                  "refused before inference starts, and so are the input's own folder, a folder inside it "
                  "or one containing it")
    folder = True
    summary = "DAVIS PNGs"
    menu_label = "Export &DAVIS masks…"
    menu_tip = "Save one indexed PNG mask per frame"
    menu_shortcut = ("Ctrl+Shift+E",)
    dialog_title = "Export DAVIS masks into a folder"

    def check_target(self, path: Path) -> str | None:
        return davis_problem(path)

    def prepare(self, job: ExportJob) -> None:
        job.shared["davis"] = check_davis_names(job.videos)

    def stage(self, txn: Any, slot: int, path: Path, mode: int, job: ExportJob) -> str | None:
        subs = job.shared["davis"]
        tmp_dir = txn.stage_dir(slot, mode)
        objects: dict[int, list[int]] = {}
        for v, sub in zip(job.videos, subs):
            folder = tmp_dir / sub
            folder.mkdir(exist_ok=True)
            objects[v.video_id] = write_davis_video(folder, v)
        videos = [{**s, "folder": sub, "objects": objects[s["video_id"]]} for s, sub in zip(job.summary, subs)]
        with open(tmp_dir / DAVIS_RECORD, "xb") as fh:  # a fresh name in our own new staging folder
            fh.write(json.dumps({**job.run, "outputs": ["."], "videos": videos}, indent=2).encode())
            fh.flush()
            os.fsync(fh.fileno())
        for sub in {*subs, ""}:
            fsync_dir(tmp_dir / sub)
        k = max(map(len, objects.values()), default=0)
        wide = ", 16-bit PNGs: more than 255 objects" if k > 255 else ""
        return f"DAVIS: {k} object{'s' if k != 1 else ''}{wide}"

    def claims(self, probe: ImportProbe) -> bool:
        return probe.is_dir

    def import_tracks(self, probe: ImportProbe, *, num_frames: int, height: int, width: int,
                      video_id: int | None, category_id: int) -> ImportedTracks:
        return tracks_from_davis(probe.path, num_frames=num_frames, height=height, width=width,
                                 category_id=category_id)


CODEC = DavisCodec()
