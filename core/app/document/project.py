"""The project file (``*.vppproj``): a document saved whole, as versioned JSON, written atomically.

Format version 1::

    {
      "format": "vpp-studio-project", "version": 1,
      "saved_by": "vpp-studio 0.1.0", "saved": "2026-12-01T23:59:00+0000",
      "clip": {"path": "/abs/path/clip", "relative_path": "../clip", "num_frames": 40, "height": 480,
               "width": 854, "fps": 25.0, "names": ["00000.jpg", ...]},
      "settings": {"model_kind": "default", "model_path": "", "device": "cpu", "pkr": 0.4,
                   "threshold": null, "mode": "vpp"},
      "categories": [[1, "person"], ...],   # the project's labels, in their order (see core.app.document.labels)
      "label_colors": [[1, "#f2a33a"], ...], # absent in older projects: default colours
      "next_track_id": 12,
      "view": {"hidden": [3], "solo": null},
      "run": {...} | null,             # the model run whose tracks are in the project (model, PKR, ...)
      "tracks": [<track>, ...]          # see core.app.document.codec: masks as RLE counts at the clip's size
    }

Every track is saved, the model's unreviewed ones included, so reopening shows exactly what was on
screen. Per-frame model diagnostics (kept-patch maps, timings) are not saved: run the model again to
see them. The clip is found by ``relative_path`` (relative to the project's folder) first, then by
``path``. Unknown top-level keys are kept and written back. A file of a newer version is refused.

What is read is checked whole before anything is used, so a project that opens can always be saved:
numbers are finite everywhere (unknown keys and ``run`` included: :mod:`core.app.document.strict_json`),
ids within 0..2**31-1, scores within [0, 1], ``view`` and ``run`` of the documented types, at most
:data:`MAX_TRACKS` tracks, and a clip without frame names declares at most :data:`MAX_UNNAMED_FRAMES`
frames (memory follows what the file holds). A save writes only what this reader accepts (the new
text is read back before it replaces the file) and never through a link, pipe or device in the
project's place (:mod:`core.atomic`); it removes temporary files killed saves left.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.app.document import strict_json
from core.app.document.clip import ClipInfo
from core.app.document.codec import MAX_TRACK_ID, track_from_json, track_to_json
from core.app.document.project_lock import FileIdentity
from core.app.document.tracks import Track
from core.app.settings import RunSettings
from core.atomic import NotOurFile, atomic_open, open_regular, read_regular
from core.errors import DataError
from core.values import is_int

FORMAT = "vpp-studio-project"
VERSION = 1
SUFFIX = ".vppproj"
MAX_PROJECT_BYTES = 4 * 2**30
#: Tracks a project may hold (a model pass makes a few hundred; more would freeze the app's panels).
MAX_TRACKS = 50_000
#: Frames a clip may declare without listing their names (VPP Studio always lists them).
MAX_UNNAMED_FRAMES = 10_000
_SHA256 = re.compile(r"[0-9a-f]{64}")
_KNOWN = {"format", "version", "saved_by", "saved", "clip", "settings", "categories", "label_colors",
          "next_track_id", "view", "run", "tracks"}


@dataclass
class ProjectData:
    clip: ClipInfo
    settings: RunSettings
    categories: dict[int, str]
    tracks: list[Track]
    next_track_id: int
    hidden: set[int] = field(default_factory=set)
    solo: int | None = None
    run: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, written back unchanged
    label_colors: dict[int, str] = field(default_factory=dict)  # label id -> "#rrggbb"
    identity: FileIdentity | None = None  # the file as read (set by read_project)


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("vpp-studio")
    except Exception:  # not installed (a plain checkout on sys.path)
        return "unknown"


def write_project(path: str | os.PathLike, data: ProjectData) -> FileIdentity | None:
    """Write ``data`` to ``path`` atomically (a failed save leaves the previous file intact).

    The text is read back by :func:`read_project`'s checks first: what would not open again is not
    written (:class:`DataError`). Returns the written file's identity (None when it cannot be read back)."""
    path = Path(path)
    clip = data.clip.to_json()
    try:
        clip["relative_path"] = os.path.relpath(data.clip.path, path.resolve().parent)
    except ValueError:  # another drive on Windows
        clip["relative_path"] = None
    doc = {
        **data.extra,
        "format": FORMAT,
        "version": VERSION,
        "saved_by": f"vpp-studio {package_version()}",
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "clip": clip,
        "settings": data.settings.to_json(),
        "categories": [[int(k), str(v)] for k, v in data.categories.items()],
        "label_colors": [[int(k), str(v)] for k, v in data.label_colors.items() if k in data.categories],
        "next_track_id": int(data.next_track_id),
        "view": {"hidden": sorted(int(i) for i in data.hidden), "solo": data.solo},
        "run": data.run,
        "tracks": [track_to_json(t) for t in sorted(data.tracks, key=lambda t: t.id)],
    }
    try:
        text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    except ValueError:
        where = strict_json.find_not_finite(doc)
        raise DataError(f"{path}: not saved: {where} is not a finite number; the previous file is kept") from None
    try:
        project_from_json(strict_json.loads(text, path), path)
    except DataError as exc:
        raise DataError(f"not saved, the project would not open again: {exc}. The previous file is kept") from None
    body = text.encode("utf-8")
    try:
        with atomic_open(path, "wb", clean=True) as fh:
            fh.write(body)
    except NotOurFile:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{path}: cannot save the project: {exc}") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot save the project ({exc.strerror or exc}); choose another folder") from exc
    try:
        return FileIdentity.of(os.stat(path), body)
    except OSError:
        return None


def read_project(path: str | os.PathLike) -> ProjectData:
    """Read and check a project file; :class:`DataError` naming the file and the bad value."""
    path = Path(path)
    try:  # a regular file only: a pipe or device is refused before it is opened (nothing hangs)
        fd = open_regular(path, os.O_RDONLY, what="project", follow=True)
    except NotOurFile:
        raise
    except OSError as exc:
        raise DataError(f"{path}: cannot open the project ({exc.strerror or exc})") from exc
    try:
        st = os.fstat(fd)
        if st.st_size > MAX_PROJECT_BYTES:
            raise DataError(f"{path}: {st.st_size / 2**30:.1f} GiB is more than a project can be "
                            f"({MAX_PROJECT_BYTES // 2**30} GiB); it is not a VPP Studio project")
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read()  # its size was checked above
    except OSError as exc:
        raise DataError(f"{path}: cannot read the project ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
    try:
        doc = strict_json.loads(raw.decode("utf-8"), path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot read the project ({exc})") from exc
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not a VPP Studio project: invalid JSON ({exc})") from exc
    data = project_from_json(doc, path)
    data.identity = FileIdentity.of(st, raw)
    return data


def project_from_json(doc: Any, path: Path) -> ProjectData:
    """Check a parsed project file whole (see the module docstring); :class:`DataError` naming the key."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{path}: not a VPP Studio project (no \"format\": \"{FORMAT}\")")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DataError(f"{path}: bad project version {version!r}")
    if version > VERSION:
        raise DataError(f"{path}: project format version {version} was written by a newer VPP Studio; this "
                        f"version reads up to {VERSION}. Update VPP Studio to open it")
    clip = _clip(doc.get("clip"), path)
    settings = RunSettings.from_json(doc.get("settings", {}), path)
    categories = _categories(doc.get("categories", []), path)
    colors = dict(_label_colors(doc.get("label_colors", []), path))
    raw_tracks = doc.get("tracks", [])
    if not isinstance(raw_tracks, list):
        raise DataError(f"{path}: 'tracks' must be a list")
    if len(raw_tracks) > MAX_TRACKS:
        raise DataError(f"{path}: holds {len(raw_tracks)} tracks, more than the {MAX_TRACKS} a project can hold; "
                        "it is damaged or not written by VPP Studio")
    tracks = [track_from_json(t, num_frames=clip.num_frames, height=clip.height, width=clip.width, source=path)
              for t in raw_tracks]
    ids = [t.id for t in tracks]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: two tracks share an id; the file is damaged")
    next_id = doc.get("next_track_id", max(ids, default=0) + 1)
    if (isinstance(next_id, bool) or not isinstance(next_id, int) or next_id <= max(ids, default=0)
            or next_id > MAX_TRACK_ID + 1):  # only a hint: new ids are always checked for room
        next_id = max(ids, default=0) + 1
    hidden, solo = _view(doc.get("view"), set(ids), path)
    run = _run(doc.get("run"), path)
    extra = {k: v for k, v in doc.items() if k not in _KNOWN}
    return ProjectData(clip, settings, categories, tracks, next_id, hidden, solo, run, extra, colors)


def _view(view: Any, ids: set[int], path: Path) -> tuple[set[int], int | None]:
    """``view``: ``{"hidden": [track ids], "solo": track id | null}`` (ids of no track are dropped)."""
    if view is None:
        return set(), None
    if not isinstance(view, dict):
        raise DataError(f"{path}: 'view' must be an object {{\"hidden\": [track ids], \"solo\": id or null}}, "
                        f"got {type(view).__name__}")
    hidden = view.get("hidden", [])
    if not isinstance(hidden, list) or not all(is_int(i) for i in hidden):
        raise DataError(f"{path}: 'view.hidden' must be a list of track ids, got {_short(hidden)}")
    solo = view.get("solo")
    if solo is not None and not is_int(solo):
        raise DataError(f"{path}: 'view.solo' must be a track id or null, got {_short(solo)}")
    return {i for i in hidden if i in ids}, solo if solo in ids else None


#: The ``run`` keys VPP Studio writes, and the types they must have (others are kept as they are).
_RUN_KEYS: dict[str, tuple[type, ...]] = {"model": (str,), "model_sha256": (str,), "model_kind": (str,),
                                          "pkr": (int, float), "mode": (str,), "device": (str,),
                                          "threshold": (int, float), "source": (str,)}


def _run(run: Any, path: Path) -> dict[str, Any] | None:
    """``run``: null or an object whose known keys have their types (null allowed), PKR and threshold
    in [0, 1], ``model_sha256`` 64 hex digits."""
    if run is None:
        return None
    if not isinstance(run, dict):
        raise DataError(f"{path}: 'run' must be an object or null, got {type(run).__name__}")
    for key, types in _RUN_KEYS.items():
        value = run.get(key)
        if value is None:
            continue
        ok = isinstance(value, types) and not isinstance(value, bool)
        if ok and key in ("pkr", "threshold"):
            ok = 0.0 <= value <= 1.0
        if ok and key == "model_sha256":
            ok = bool(_SHA256.fullmatch(value))
        if not ok:
            want = {"pkr": "a number in [0, 1]", "threshold": "a number in [0, 1]",
                    "model_sha256": "64 lowercase hex digits"}.get(key, "a string")
            raise DataError(f"{path}: 'run.{key}' must be {want} or null, got {_short(value)}; fix or remove it")
    return run


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def locate_clip(data: ProjectData, project: str | os.PathLike, relative: str | None = None) -> Path | None:
    """The clip on disk: by the path relative to the project's folder, then the absolute one; None if gone."""
    candidates = []
    if relative:
        candidates.append(Path(project).resolve().parent / relative)
    candidates.append(Path(data.clip.path))
    for c in candidates:
        if c.exists():
            return c.resolve()
    return None


def read_relative_clip_path(path: str | os.PathLike) -> str | None:
    """The ``clip.relative_path`` of a project file (for :func:`locate_clip`), without checking the rest."""
    try:
        rel = json.loads(read_regular(path, MAX_PROJECT_BYTES, what="project")).get("clip", {}).get("relative_path")
    except (OSError, ValueError, AttributeError, RecursionError, DataError):
        return None
    return rel if isinstance(rel, str) else None


def _clip(data: Any, path: Path) -> ClipInfo:
    if not isinstance(data, dict):
        raise DataError(f"{path}: 'clip' must be an object with path, num_frames, height and width")
    try:
        names = data.get("names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("'names' must be a list of frame names")
        values = {k: data.get(k) for k in ("num_frames", "height", "width")}
        for k, v in values.items():
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 2**20:
                raise ValueError(f"'{k}' must be a positive integer, got {v!r}")
        if values["height"] * values["width"] > 2**28:
            raise ValueError(f"{values['width']}x{values['height']} frames are larger than VPP Studio supports")
        if not names and values["num_frames"] > MAX_UNNAMED_FRAMES:
            raise ValueError(f"it declares {values['num_frames']} frames but lists no frame names (VPP Studio lists "
                             f"every frame; at most {MAX_UNNAMED_FRAMES} frames may go unnamed)")
        fps = data.get("fps", 25.0)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < 1e4:
            fps = 25.0
        if not isinstance(data.get("path"), str):
            raise ValueError("'path' must be a string")
        return ClipInfo(data["path"], values["num_frames"], values["height"], values["width"], tuple(names),
                        float(fps))
    except ValueError as exc:
        raise DataError(f"{path}: bad 'clip': {exc}") from exc


def _label_colors(data: Any, path: Path) -> list[tuple[int, str]]:
    """``label_colors``: [[id, "#rrggbb"], ...] (checked as colours when the labels are built)."""
    if not isinstance(data, list) or not all(
            isinstance(i, list) and len(i) == 2 and is_int(i[0]) and 0 <= i[0] <= MAX_TRACK_ID
            and isinstance(i[1], str) for i in data):
        raise DataError(f"{path}: 'label_colors' must be a list of [id, \"#rrggbb\"]")
    return [(int(k), v) for k, v in data]


def _categories(data: Any, path: Path) -> dict[int, str]:
    if not isinstance(data, list):
        raise DataError(f"{path}: 'categories' must be a list of [id, name]")
    out = {}
    for item in data:
        if (not isinstance(item, list) or len(item) != 2 or not is_int(item[0])
                or not 0 <= item[0] <= MAX_TRACK_ID or not isinstance(item[1], str)):
            raise DataError(f"{path}: category {_short(item)} must be [id, name] with an id in 0..{MAX_TRACK_ID}")
        out[item[0]] = item[1]
    return out
