"""One door for every export and import of tracks: YTVIS results (JSON or zip), COCO per-frame JSON, DAVIS PNGs.

Public API::

    file_sha256(path) -> str
    RunRecord(tool, model, model_sha256=None, pkr=None, mode=None, version=<package>, created=<UTC now>, extra={})
    RunRecord.for_model(tool, model, *, pkr=None, mode=None, extra=None) -> RunRecord   # hashes a model file
    VideoExport(video_id, name, frame_names, results)       # results: a core.results.ClipResults
    check_outputs(*, ytvis=None, zip=None, davis=None, coco=None) -> dict[str, Path]
    export_results(videos, *, ytvis=None, zip=None, davis=None, coco=None, categories=(), record) -> ExportSummary
    import_tracks(path, *, num_frames, height, width, video_id=None, category_id=1) -> ImportedTracks
    ImportedTracks(path, format, video_id, categories, tracks)  /  ImportedTrack(source_id, category_id, score, frames)

Example::

    from core.export import RunRecord, VideoExport, export_results, import_tracks

    video = VideoExport(1, "car-shadow", tuple(source.names), clip)     # clip: a complete ClipResults
    record = RunRecord.for_model("vpp infer", "model.safetensors", pkr=0.4, mode="vpp")
    summary = export_results([video], ytvis="out/results.json", zip="out/results.zip", davis="out/masks",
                             coco="out/frames_coco.json", categories=[(1, "car")], record=record)
    print(summary.message)
    back = import_tracks("out/results.json", num_frames=clip.num_frames, height=clip.height, width=clip.width)

Outputs:

- ``ytvis``: a YTVIS results JSON (one entry per track, ``ClipResults.to_ytvis``); ``zip``: a zip holding
  ``results.json`` (what the evaluation server takes); ``coco``: COCO per-frame JSON (``images`` one per frame
  with ``file_name`` = "<video name>/<frame file name>", ``annotations`` with compressed RLE, ``track_id``,
  the track's category and score; ``info`` = the run record). ``categories``: (id, name) pairs; ids the
  tracks use but the list lacks are added as "category <id>".
- ``davis``: one palette PNG per frame, named by the frame's stem (objects 1..K = ``davis_objects()``).
  One video: PNGs straight into the folder; several: one sub-folder per video named by its ``name``;
  a name used by several videos (or not a plain folder name) gets ``-<video_id>`` appended.
- A run record next to every output: ``<stem>.run.json`` beside each file (a JSON and a zip of the same
  stem share one) and ``vpp_run.json`` inside the DAVIS folder (it also maps objects to track IDs).

Every output is staged in its target's own folder (temporary names, fsync), read back with the reader
that imports it, and only when all are staged committed together (``os.replace``; an existing DAVIS folder
is moved aside, the new one renamed in, the old one deleted). Any failure removes the staging and restores
what was replaced; existing files are never left half-written. A non-empty DAVIS folder without
``vpp_run.json`` is never replaced (it is the user's, not ours): :class:`DataError`.

Imports (auto-detected): a YTVIS results JSON list or a zip holding ``results.json``, a YTVIS ground
truth (``videos``/``annotations``), a COCO per-frame JSON as written here, or a folder of DAVIS PNGs.
The video is ``video_id``, else the only one, else the unique one matching the clip's length and size.
This module imports neither Qt nor torch.
"""

from __future__ import annotations

import builtins  # export_results has a parameter named zip
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.data.ytvis import parse_ytvis_gt, parse_ytvis_results, read_ytvis_results, write_ytvis_results
from core.errors import DataError
from core.export_formats import (
    DAVIS_RECORD,
    ImportedTrack,
    ImportedTracks,
    VideoExport,
    check_coco,
    check_davis_names,
    coco_dataset,
    load_json_file,
    tracks_from_coco,
    tracks_from_davis,
    tracks_from_gt,
    tracks_from_results,
    write_davis_video,
    ytvis_entries,
    ytvis_reference,
)

__all__ = ["ExportSummary", "ImportedTrack", "ImportedTracks", "RunRecord", "VideoExport", "check_outputs",
           "export_results", "file_sha256", "import_tracks", "package_version"]

_KINDS = ("ytvis", "zip", "coco", "davis")  # staging order; DAVIS (the slowest) last
_LABELS = {"ytvis": "YTVIS results", "zip": "zipped results", "coco": "COCO JSON", "davis": "DAVIS folder"}


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: changing the umask is process-wide, racy in a worker thread


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk_size`` chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vpp-studio")
    except PackageNotFoundError:
        return "unknown"


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunRecord:
    """Who made an export, from which model, at which PKR and mode; written beside every output."""

    tool: str  # "vpp infer", "vpp-gui", "vpp export", ...
    model: str  # a path or a label
    model_sha256: str | None = None
    pkr: float | None = None
    mode: str | None = None
    version: str = field(default_factory=package_version)
    created: str = field(default_factory=_utc_now)
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def for_model(cls, tool: str, model: str | os.PathLike | None, *, pkr: float | None = None,
                  mode: str | None = None, extra: dict[str, Any] | None = None) -> RunRecord:
        """A record for ``model``: a file path gets its SHA-256; None or a label is kept as given."""
        label = "unknown" if model is None else str(model)
        sha = file_sha256(model) if model is not None and Path(model).is_file() else None
        return cls(tool, label, sha, None if pkr is None else float(pkr), mode, extra=dict(extra or {}))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExportSummary:
    paths: tuple[Path, ...]  # every file or folder written, run records included
    tracks: dict[int, int] = field(hash=False)  # video id -> tracks exported
    message: str = ""


# -- output locations -----------------------------------------------------------------------------


def _sidecar(path: Path) -> Path:
    return path.with_name(f"{path.stem}.run.json")


def _writable_parent(path: Path, what: str) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise DataError(f"{path}: output folder {parent} does not exist; create it or choose another {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{path}: output folder {parent} is not writable; choose another {what}")


def _is_ours(folder: Path) -> bool:
    try:
        return (folder / DAVIS_RECORD).is_file() or not any(folder.iterdir())
    except OSError:
        return False


def check_outputs(*, ytvis: str | os.PathLike | None = None, zip: str | os.PathLike | None = None,
                  davis: str | os.PathLike | None = None,
                  coco: str | os.PathLike | None = None) -> dict[str, Path]:
    """Check every output location before anything is computed or written; returns kind -> path.

    Raises ValueError when no output is given and :class:`DataError` for a missing or read-only folder,
    a path given twice (run records included), a file inside the DAVIS folder, or a DAVIS folder that
    holds other files than one of our exports.
    """
    given = {"ytvis": ytvis, "zip": zip, "coco": coco, "davis": davis}
    outputs = {k: Path(given[k]) for k in _KINDS if given[k] is not None}
    if not outputs:
        raise ValueError("export needs at least one output: ytvis, zip, coco or davis")
    seen: dict[Path, str] = {}
    for kind, p in outputs.items():
        key = p.resolve()
        if key in seen:
            raise DataError(f"{p}: given as both the {seen[key]} and the {_LABELS[kind]} output; "
                            "choose a different name for each")
        seen[key] = _LABELS[kind]
    if "davis" in outputs:
        d = outputs["davis"].resolve()
        inside = [p for k, p in outputs.items() if k != "davis" and d in p.resolve().parents]
        if inside:
            raise DataError(f"{inside[0]}: lies inside the DAVIS folder {outputs['davis']}, which an export "
                            "replaces as a whole; write it elsewhere")
    for kind, p in outputs.items():
        if kind == "davis":
            continue
        side = _sidecar(p).resolve()
        if side in seen:
            raise DataError(f"{p}: its run record {_sidecar(p)} would overwrite the {seen[side]} output; "
                            "choose other names")
        _writable_parent(p, "file name")
        for q in (p, _sidecar(p)):
            if q.is_dir():
                raise DataError(f"{q}: is a folder; give a file name for the {_LABELS[kind]} output")
    if "davis" in outputs:
        d = outputs["davis"]
        _writable_parent(d, "folder")
        if d.exists() and not d.is_dir():
            raise DataError(f"{d}: is a file, not a folder; choose an empty or new folder for the DAVIS masks")
        if d.is_dir() and not _is_ours(d):
            raise DataError(f"{d}: the folder is not empty and holds no {DAVIS_RECORD} (it is not a VPP export); "
                            "choose an empty or new folder for the DAVIS masks")
    return outputs


# -- staging and commit ---------------------------------------------------------------------------


@dataclass
class _Staged:
    tmp: Path
    final: Path
    is_dir: bool
    old: Path | None = None  # what stood at ``final`` before, moved aside (folder) or hard-linked (file)
    done: bool = False


def _mode_for(final: Path, *, folder: bool = False) -> int:
    """Permissions for a new output: those of what it replaces, else the default under the umask."""
    with contextlib.suppress(OSError):
        if final.exists():
            return final.stat().st_mode & 0o7777
    return (0o777 if folder else 0o666) & ~_UMASK


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _stage_file(final: Path, staged: list[_Staged]) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    staged.append(_Staged(Path(tmp), final, False))
    return Path(tmp)


def _stage_bytes(final: Path, data: bytes, staged: list[_Staged]) -> None:
    tmp = _stage_file(final, staged)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, _mode_for(final))


def _aside(path: Path) -> Path:
    while True:
        p = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
        if not os.path.lexists(p):
            return p


def _commit(staged: list[_Staged]) -> None:
    """Move every staged output into place (folders first); on any failure put everything back."""
    order = [s for s in staged if s.is_dir] + [s for s in staged if not s.is_dir]
    try:
        for s in order:
            if s.is_dir:
                if os.path.lexists(s.final):
                    if not _is_ours(s.final):
                        raise DataError(f"{s.final}: files appeared in the folder during the export; choose an "
                                        "empty or new folder for the DAVIS masks")
                    s.old = _aside(s.final)
                    os.rename(s.final, s.old)
                os.rename(s.tmp, s.final)
            else:
                if s.final.exists():
                    s.old = _aside(s.final)
                    try:
                        os.link(s.final, s.old)
                    except OSError:
                        shutil.copy2(s.final, s.old)
                os.replace(s.tmp, s.final)
            s.done = True
    except BaseException:
        for s in reversed(order):  # the new output back to its staging name, the old one back in place
            with contextlib.suppress(OSError):
                if s.done:
                    os.rename(s.final, s.tmp)
                    s.done = False
                if s.old is not None:
                    os.replace(s.old, s.final)
                    s.old = None
        raise
    for s in order:
        if s.old is not None:
            with contextlib.suppress(OSError):
                if s.is_dir:
                    shutil.rmtree(s.old)
                else:
                    os.unlink(s.old)
            s.old = None
    for folder in {s.final.parent for s in order}:
        _fsync_dir(folder)


def _cleanup(staged: list[_Staged]) -> None:
    for s in staged:
        if s.done:
            continue
        with contextlib.suppress(OSError):
            if s.is_dir:
                shutil.rmtree(s.tmp)
            else:
                os.unlink(s.tmp)


# -- export ---------------------------------------------------------------------------------------


def _check_videos(videos: Sequence[VideoExport]) -> None:
    if not videos:
        raise ValueError("nothing to export: no videos given")
    ids = [v.video_id for v in videos]
    if len(set(ids)) != len(ids):
        raise DataError(f"video ids are not unique ({', '.join(map(str, ids))}); each video needs its own id")
    for v in videos:
        clip = v.results
        if len(v.frame_names) != clip.num_frames:
            raise ValueError(f"video {v.video_id}: {len(v.frame_names)} frame names for {clip.num_frames} frames")
        if not clip.is_complete:
            raise DataError(f"video {v.video_id} ({v.name}): results for {clip.count} of {clip.num_frames} "
                            "frames only; let inference finish before exporting")


def _categories(videos: Sequence[VideoExport], given: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    cats = {int(i): str(n) for i, n in given}
    for v in videos:
        for f in v.results:
            for c in f.category_ids.tolist():
                cats.setdefault(int(c), f"category {c}")
    return sorted(cats.items())


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def export_results(videos: Iterable[VideoExport], *, ytvis: str | os.PathLike | None = None,
                   zip: str | os.PathLike | None = None, davis: str | os.PathLike | None = None,
                   coco: str | os.PathLike | None = None, categories: Iterable[tuple[int, str]] = (),
                   record: RunRecord) -> ExportSummary:
    """Write any subset of the formats for ``videos``, all or nothing; see the module docstring."""
    outputs = check_outputs(ytvis=ytvis, zip=zip, davis=davis, coco=coco)
    videos = tuple(videos)
    _check_videos(videos)
    cats = _categories(videos, categories)
    tracks = {v.video_id: len(v.results.to_ytvis(v.video_id)) for v in videos}
    summary_videos = [{"video_id": v.video_id, "name": v.name, "frames": v.results.num_frames,
                       "tracks": tracks[v.video_id]} for v in videos]
    subs = check_davis_names(videos) if "davis" in outputs else []
    run = record.to_json()
    staged: list[_Staged] = []
    try:
        if "ytvis" in outputs or "zip" in outputs:
            reference = ytvis_reference(videos, cats)
            parsed = parse_ytvis_results(ytvis_entries(videos), reference, source=outputs.get("ytvis", zip))
            for kind in ("ytvis", "zip"):
                if kind in outputs:
                    tmp = _stage_file(outputs[kind], staged)
                    write_ytvis_results(tmp, parsed, gt=reference, zip=kind == "zip")
                    os.chmod(tmp, _mode_for(outputs[kind]))
                    if len(read_ytvis_results(tmp, reference)) != len(parsed):
                        raise DataError(f"{outputs[kind]}: the written results do not read back; check the disk")
        if "coco" in outputs:
            data = coco_dataset(videos, cats, run)
            _stage_bytes(outputs["coco"], _json_bytes(data), staged)
            check_coco(load_json_file(staged[-1].tmp), outputs["coco"])
        objects: dict[int, list[int]] = {}
        if "davis" in outputs:
            final = outputs["davis"]
            tmp_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
            staged.append(_Staged(tmp_dir, final, True))
            os.chmod(tmp_dir, _mode_for(final, folder=True))
            for v, sub in builtins.zip(videos, subs):
                folder = tmp_dir / sub
                folder.mkdir(exist_ok=True)
                objects[v.video_id] = write_davis_video(folder, v)
            davis_videos = [{**s, "folder": sub, "objects": objects[s["video_id"]]}
                            for s, sub in builtins.zip(summary_videos, subs)]
            with open(tmp_dir / DAVIS_RECORD, "wb") as fh:
                fh.write(json.dumps({**run, "outputs": ["."], "videos": davis_videos}, indent=2).encode())
                fh.flush()
                os.fsync(fh.fileno())
            for sub in {*subs, ""}:
                _fsync_dir(tmp_dir / sub)
        sidecars: dict[Path, list[str]] = {}
        for kind, p in outputs.items():
            if kind != "davis":
                sidecars.setdefault(_sidecar(p), []).append(p.name)
        for side, names in sidecars.items():
            _stage_bytes(side, json.dumps({**run, "outputs": names, "videos": summary_videos}, indent=2).encode(),
                         staged)
        _commit(staged)
    finally:
        _cleanup(staged)
    n = sum(tracks.values())
    where = ", ".join(str(outputs[k]) for k in _KINDS if k in outputs)
    k = max(map(len, objects.values()), default=0)
    davis_note = f" (DAVIS: {k} object{'s' if k != 1 else ''})" if objects else ""
    message = (f"exported {n} track{'s' if n != 1 else ''} of {len(videos)} video{'s' if len(videos) != 1 else ''} "
               f"to {where}{davis_note}")
    return ExportSummary(tuple(s.final for s in staged), tracks, message)


# -- import ---------------------------------------------------------------------------------------


def import_tracks(path: str | os.PathLike, *, num_frames: int, height: int, width: int, video_id: int | None = None,
                  category_id: int = 1) -> ImportedTracks:
    """Tracks of one clip (``num_frames`` frames of ``height`` x ``width``) from a file or DAVIS folder.

    ``category_id`` is given to DAVIS objects (PNG masks carry no classes). Raises :class:`DataError`
    naming the file when the format is unknown, or the chosen video's length or size is not the clip's.
    """
    path = Path(path)
    clip = {"num_frames": int(num_frames), "height": int(height), "width": int(width), "video_id": video_id}
    if not path.exists():
        raise DataError(f"{path}: does not exist; check the path")
    if path.is_dir():
        return tracks_from_davis(path, num_frames=num_frames, height=height, width=width, category_id=category_id)
    if zipfile.is_zipfile(path):
        return tracks_from_results(path, read_ytvis_results(path), **clip)
    data = load_json_file(path)
    if isinstance(data, list):
        return tracks_from_results(path, parse_ytvis_results(data, source=path), **clip)
    if isinstance(data, dict) and "videos" in data:
        return tracks_from_gt(path, parse_ytvis_gt(data, source=path), **clip)
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return tracks_from_coco(path, data, **clip)
    raise DataError(f"{path}: not a YouTube-VIS results list, YouTube-VIS ground truth or COCO per-frame JSON")
