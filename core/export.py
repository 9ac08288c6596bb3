"""One door for every export and import of tracks, in every format of :mod:`core.formats` (YTVIS results as JSON
or zip, DAVIS PNGs, COCO per-frame JSON, ...).

Public API (``outputs``: a mapping of format name -> path, e.g. ``{"ytvis": "r.json", "davis": "masks"}``;
``None`` values are left out; the names are :func:`core.formats.codecs`')::

    RunRecord(tool, model, model_sha256=None, pkr=None, mode=None, version=<package>, created=<UTC now>, extra={})
    RunRecord.for_model(tool, model, *, pkr=None, mode=None, extra=None) -> RunRecord   # hashes a model file
    VideoExport(video_id, name, frame_names, results)       # results: a core.results.ClipResults
    check_outputs(outputs, *, inputs=()) -> dict[str, Path]
    export_results(videos, outputs, *, categories=(), record, inputs=()) -> ExportSummary
    recover_exports(*outputs) -> list[str]       # finish or undo what a killed export left beside these outputs
    import_tracks(path, *, num_frames, height, width, video_id=None, category_id=1) -> ImportedTracks
    ImportedTracks(path, format, video_id, categories, tracks)  /  ImportedTrack(source_id, category_id, score, frames)

Example::

    from core.export import RunRecord, VideoExport, export_results, import_tracks

    video = VideoExport(1, "car-shadow", tuple(source.names), clip)     # clip: a complete ClipResults
    record = RunRecord.for_model("vpp infer", "model.safetensors", pkr=0.4, mode="vpp")
    summary = export_results([video], {"ytvis": "out/results.json", "zip": "out/results.zip", "davis": "out/masks",
                                       "coco": "out/frames_coco.json"}, categories=[(1, "car")], record=record,
                             inputs=[source.path])
    print(summary.message)
    back = import_tracks("out/results.json", num_frames=clip.num_frames, height=clip.height, width=clip.width)

Outputs (each format's own rules are in its module of :mod:`core.formats`):

- ``ytvis``: a YTVIS results JSON (one entry per track, ``ClipResults.to_ytvis``); ``zip``: a zip holding
  ``results.json`` (what the evaluation server takes); ``coco``: COCO per-frame JSON (``images`` one per frame
  with ``file_name`` = "<video name>/<frame file name>", ``annotations`` with compressed RLE, ``track_id``,
  the track's category and score; ``info`` = the run record). ``categories``: (id, name) pairs; ids the
  tracks use but the list lacks are added as "category <id>".
- ``davis``: one palette PNG per frame, named by the frame's stem (objects 1..K = ``davis_objects()``, every
  track); a video with more than 255 tracks gets 16-bit greyscale PNGs (labels as stored, marked with the
  text chunk ``vpp-davis: labels``), never a cut to 255; more than 65535 tracks is refused.
  One video: PNGs straight into the folder; several: one sub-folder per video named by its ``name``;
  a name used by several videos (or not a plain folder name) gets ``-<video_id>`` appended, so every
  video gets its own folder.
- A run record next to every output: ``<stem>.run.json`` beside each file (a JSON and a zip of the same
  stem share one) and ``vpp_run.json`` inside the DAVIS folder (it also maps objects to track IDs).
- Files are staged in the registry's order, folders last; the summary lists them in that order.

Rules that always hold (:func:`check_outputs` refuses, with :class:`DataError`, before anything is computed):

- Outputs never overwrite inputs: an output (or its run record) that is, lies inside, or contains one of
  ``inputs`` (frame folders, videos, a split's annotation file and image folder, the model), symlinks
  resolved, is refused naming both paths. An output path that is itself a symbolic link is refused.
- A folder output is checked by its codec (``Codec.check_target``). A DAVIS folder is written only if it is
  new, empty, or an earlier export of ours: it holds
  ``vpp_run.json`` and nothing but the PNGs and video folders that record lists. It is then replaced as
  a whole, after the new masks are complete. A folder with any other file is never touched.
- Every output folder must exist and take a new entry (tried by creating and removing an empty folder:
  a read-only folder, ``/proc`` or ``/sys`` is refused), and no two outputs (run records included) share a path.

Commit rule (kill-safe, :class:`core.multi_commit.MultiCommit`): every output is staged in its target's own
folder under ``.vpp-commit.<token>.<i>.new`` (fsync'ed) and read back with the reader that imports it.
Before staging, a manifest ``.vpp-commit.<token>.json`` (fsync'ed, locked while the process lives) is
written in the first target's folder, with a copy in every other target folder. The commit creates the
marker ``.vpp-commit.<token>.commit``, then per target keeps what stood there as ``.vpp-commit.<token>.<i>.old``
(a folder moved aside, a file hard-linked) and renames the new output in; once all are in, the backups,
the marker and the manifests are deleted. An error restores every old output. A process killed at any
point leaves a manifest; the next :func:`export_results` into that folder (and ``vpp infer`` at its
start) calls :func:`recover_exports`: with the commit marker, and every new output staged or in place,
it rolls forward; otherwise it restores the backups. Then it removes the names that manifest recorded,
never following a symlink and never touching another name. So after a crash the folder holds the
complete old outputs or the complete new ones, and no leftovers once recovered.

Imports (auto-detected, by the first codec in registry order that claims the path): a YTVIS results JSON
list or a zip holding ``results.json``, a YTVIS ground truth (``videos``/``annotations``), a COCO per-frame
JSON as written here, a folder of DAVIS PNGs, or any other format whose codec has an importer.
The video is ``video_id``, else the only one, else the unique one matching the clip's length and size.
This module imports neither Qt nor torch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.commit_recovery import recover_commits
from core.errors import DataError
from core.formats import Codec, codec, codecs, staging_order
from core.formats.base import ExportJob, ImportedTrack, ImportedTracks, ImportProbe, VideoExport
from core.formats.davis import davis_problem
from core.multi_commit import CommitRefused, MultiCommit, probe_writable, real_target
from core.regular_files import file_sha256

__all__ = ["ExportSummary", "ImportedTrack", "ImportedTracks", "RunRecord", "VideoExport", "check_outputs",
           "davis_problem", "export_results", "import_tracks", "package_version", "recover_exports"]

Outputs = Mapping[str, "str | os.PathLike | None"]


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: changing the umask is process-wide, racy in a worker thread


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
        """As JSON values; a NaN or infinite number (a PKR of a damaged project...) becomes null, never a
        bare ``NaN`` that JSON readers refuse."""
        return _finite(asdict(self))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@dataclass(frozen=True)
class ExportSummary:
    paths: tuple[Path, ...]  # every file or folder written, run records included
    tracks: dict[int, int] = field(hash=False)  # video id -> tracks exported
    message: str = ""
    recovered: tuple[str, ...] = ()  # what recover_exports finished or undid first (one line each)


# -- output locations -----------------------------------------------------------------------------


def _sidecar(path: Path) -> Path:
    return path.with_name(f"{path.stem}.run.json")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same_node(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_inputs(targets: Sequence[tuple[str, Path]], inputs: Iterable[str | os.PathLike]) -> None:
    """DataError when an output (``targets``: (what, path)) is, lies inside, or contains an input."""
    ins = [(Path(i), _real(Path(i))) for i in inputs]
    for what, p in targets:
        rp = _real(p)
        for given, ri in ins:
            if rp == ri or _same_node(p, given):
                rel = "is"
            elif ri in rp.parents:
                rel = "lies inside"
            elif rp in ri.parents:
                rel = "contains"
            else:
                continue
            links = [f"{x} resolves to {r}" for x, r in ((p, rp), (given, ri)) if Path(os.path.abspath(x)) != r]
            via = f" ({'; '.join(links)})" if links else ""
            raise DataError(f"{p}: the {what} {rel} the input {given}{via}; outputs never overwrite inputs, "
                            "choose another location")


def _writable_parent(path: Path, what: str, probed: set[Path]) -> None:
    parent = real_target(path).parent
    if not parent.is_dir():
        raise DataError(f"{path}: output folder {path.parent} does not exist; create it or choose another {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{path}: output folder {path.parent} is not writable; choose another {what}")
    if parent in probed:
        return
    try:
        probe_writable(parent)
    except OSError as exc:
        raise DataError(f"{path}: cannot create files in the output folder {parent} ({exc.strerror or exc}); "
                        f"choose another {what}") from None
    probed.add(parent)


def _replaceable(final: Path, is_dir: bool) -> str | None:
    """Why a folder must not be replaced (None: some folder codec takes it as its own export); files: None."""
    if not is_dir:
        return None
    problems = [c.check_target(final) for c in codecs() if c.folder]
    return None if not problems or None in problems else problems[0]


def _what(c: Codec) -> str:
    """How messages name an output: "the DAVIS folder", "the COCO JSON output"."""
    return c.label if c.folder else f"{c.label} output"


def _phrase(words: Sequence[str], last: str) -> str:
    return f"{', '.join(words[:-1])} {last} {words[-1]}" if len(words) > 1 else "".join(words)


def check_outputs(outputs: Outputs, *, inputs: Iterable[str | os.PathLike] = ()) -> dict[str, Path]:
    """Check every output location before anything is computed or written; returns name -> path (staging order).

    ``outputs``: format name -> path (None: not written). Raises ValueError when no output is given or a
    name is not a format, and :class:`DataError` for an output that is, lies inside or contains one of
    ``inputs`` (symlinks resolved), a missing folder or one nothing can be created in, a path given twice
    (run records included), a symbolic link, a file inside a folder output, or a folder its codec refuses
    (DAVIS: one that holds anything but one of our exports). Writes nothing (the write test leaves no trace).
    """
    for name in outputs:
        codec(name)  # ValueError for an unknown name
    chosen = {c.name: (c, Path(outputs[c.name])) for c in staging_order() if outputs.get(c.name) is not None}
    if not chosen:
        raise ValueError(f"export needs at least one output: {_phrase([c.name for c in staging_order()], 'or')}")
    for c, p in chosen.values():
        if not c.folder and p.name in ("", ".", ".."):
            raise DataError(f"{p}: not a file name; give a file name for the {c.label} output")
    seen: dict[Path, str] = {}
    for c, p in chosen.values():
        key = p.resolve()
        if key in seen:
            raise DataError(f"{p}: given as both the {seen[key]} and the {c.label} output; "
                            "choose a different name for each")
        seen[key] = c.label
    targets = [(_what(c), p) for c, p in chosen.values()]
    targets += [(f"run record of the {c.label} output", _sidecar(p)) for c, p in chosen.values() if not c.folder]
    _check_inputs(targets, inputs)
    for c, d in chosen.values():
        if c.folder:
            inside = [p for k, p in chosen.values() if k is not c and d.resolve() in p.resolve().parents]
            if inside:
                raise DataError(f"{inside[0]}: lies inside the {c.label} {d}, which an export "
                                "replaces as a whole; write it elsewhere")
    probed: set[Path] = set()
    for c, p in chosen.values():
        if c.folder:
            continue
        side = _sidecar(p).resolve()
        if side in seen:
            raise DataError(f"{p}: its run record {_sidecar(p)} would overwrite the {seen[side]} output; "
                            "choose other names")
        _writable_parent(p, "file name", probed)
        for q in (p, _sidecar(p)):
            if os.path.islink(q):
                raise DataError(f"{q}: is a symbolic link (to {os.path.realpath(q)}); give the real path, "
                                f"not a link, for the {c.label} output")
            if q.is_dir():
                raise DataError(f"{q}: is a folder; give a file name for the {c.label} output")
            if os.path.lexists(q) and not q.is_file():  # a pipe or device: never written into or replaced
                raise DataError(f"{q}: is not a regular file (a pipe or a device?); give a file name for the "
                                f"{c.label} output")
    for c, d in chosen.values():
        if c.folder:
            _writable_parent(d, "folder", probed)
            problem = c.check_target(d)
            if problem:
                raise DataError(problem)
    return {name: p for name, (_c, p) in chosen.items()}


def recover_exports(*outputs: str | os.PathLike) -> list[str]:
    """Finish or undo any export a killed process left beside ``outputs`` (files or DAVIS folders).

    Looks for our commit manifests in each output's folder (see the module docstring); returns one line
    per interrupted export handled. Exports still running in another process are left alone.
    """
    folders = []
    for p in outputs:
        with contextlib.suppress(OSError, ValueError):
            folders.append(real_target(p).parent)
    return recover_commits(folders, replaceable=_replaceable)


# -- staging --------------------------------------------------------------------------------------


def _mode_for(final: Path, *, folder: bool = False) -> int:
    """Permissions for a new output: those of what it replaces, else the default under the umask."""
    with contextlib.suppress(OSError):
        if final.exists():
            return final.stat().st_mode & 0o7777
    return (0o777 if folder else 0o666) & ~_UMASK


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


def export_results(videos: Iterable[VideoExport], outputs: Outputs, *, categories: Iterable[tuple[int, str]] = (),
                   record: RunRecord, inputs: Iterable[str | os.PathLike] = ()) -> ExportSummary:
    """Write ``outputs`` (format name -> path) for ``videos``, all or nothing; see the module docstring.

    ``inputs``: the files and folders the results were computed from (frames, videos, the model); no
    output may be, lie inside or contain one of them. A killed earlier export beside these outputs is
    finished or undone first (:func:`recover_exports`; its lines are in ``ExportSummary.recovered``).
    """
    inputs = tuple(inputs)
    recovered = tuple(recover_exports(*(outputs[c.name] for c in staging_order()
                                        if outputs.get(c.name) is not None)))
    paths = check_outputs(outputs, inputs=inputs)
    videos = tuple(videos)
    _check_videos(videos)
    cats = _categories(videos, categories)
    tracks = {v.video_id: len(v.results.to_ytvis(v.video_id)) for v in videos}
    summary_videos = [{"video_id": v.video_id, "name": v.name, "frames": v.results.num_frames,
                       "tracks": tracks[v.video_id]} for v in videos]
    job = ExportJob(videos, cats, record.to_json(), summary_videos)
    order = [codec(name) for name in paths]
    for c in order:
        c.prepare(job)
    sidecars: dict[Path, list[str]] = {}
    for c in order:
        if not c.folder:
            sidecars.setdefault(_sidecar(paths[c.name]), []).append(paths[c.name].name)
    targets = [(paths[c.name], c.folder) for c in order] + [(side, False) for side in sidecars]
    notes: list[str] = []
    with MultiCommit(targets) as txn:
        for slot, c in enumerate(order):
            path = paths[c.name]
            note = c.stage(txn, slot, path, _mode_for(path, folder=c.folder), job)
            if note:
                notes.append(note)
        for i, (side, names) in enumerate(sidecars.items(), len(order)):
            body = {**job.run, "outputs": names, "videos": summary_videos}
            txn.stage_bytes(i, json.dumps(body, indent=2).encode(), _mode_for(side))
        try:
            txn.commit(replaceable=_replaceable)
        except CommitRefused as exc:
            raise DataError(str(exc)) from None
    n = sum(tracks.values())
    where = ", ".join(str(p) for p in paths.values())
    extra = "".join(f" ({note})" for note in notes)
    message = (f"exported {n} track{'s' if n != 1 else ''} of {len(videos)} video{'s' if len(videos) != 1 else ''} "
               f"to {where}{extra}")
    return ExportSummary(tuple(paths.values()) + tuple(sidecars), tracks, message, recovered)


# -- import ---------------------------------------------------------------------------------------


def import_tracks(path: str | os.PathLike, *, num_frames: int, height: int, width: int, video_id: int | None = None,
                  category_id: int = 1) -> ImportedTracks:
    """Tracks of one clip (``num_frames`` frames of ``height`` x ``width``) from a file or folder of any format
    whose codec imports (the first in registry order that claims it).

    ``category_id`` is given to DAVIS objects (PNG masks carry no classes). Raises :class:`DataError`
    naming the file when the format is unknown, or the chosen video's length or size is not the clip's.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: does not exist; check the path")
    probe = ImportProbe(path)
    for c in codecs():
        if c.claims(probe):
            return c.import_tracks(probe, num_frames=int(num_frames), height=int(height), width=int(width),
                                   video_id=video_id, category_id=category_id)
    if probe.json_error is not None:
        raise probe.json_error
    kinds = [k for c in codecs() for k in c.import_kinds]
    raise DataError(f"{path}: not a {_phrase(kinds, 'or')}")
