"""The project file (``*.vppproj``): a document saved whole, as versioned JSON, written atomically.

Format version 1::

    {
      "format": "vpp-studio-project", "version": 1,
      "saved_by": "vpp-studio 0.1.0", "saved": "2026-12-01T23:59:00+0000",
      "clip": {"path": "/abs/path/clip", "relative_path": "../clip", "num_frames": 40, "height": 480,
               "width": 854, "fps": 25.0, "names": ["00000.jpg", ...]},
      "settings": {"model_kind": "default", "model_path": "", "device": "cpu", "pkr": 0.4,
                   "threshold": null, "mode": "vpp"},
      "categories": [[1, "person"], ...],
      "next_track_id": 12,
      "view": {"hidden": [3], "solo": null},
      "run": {...} | null,             # the model run whose tracks are in the project (model, PKR, ...)
      "tracks": [<track>, ...]          # see core.document.codec: masks as RLE counts at the clip's size
    }

Every track is saved, the model's unreviewed ones included, so reopening shows exactly what was on
screen. Per-frame model diagnostics (kept-patch maps, timings) are not saved: run the model again to
see them. The clip is found by ``relative_path`` (relative to the project's folder) first, then by
``path``. Unknown top-level keys are kept and written back. A file of a newer version is refused.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.atomic import atomic_open
from core.document.clip import ClipInfo, RunSettings
from core.document.codec import track_from_json, track_to_json
from core.document.tracks import Track
from core.errors import DataError

FORMAT = "vpp-studio-project"
VERSION = 1
SUFFIX = ".vppproj"
MAX_PROJECT_BYTES = 4 * 2**30
_KNOWN = {"format", "version", "saved_by", "saved", "clip", "settings", "categories", "next_track_id", "view",
          "run", "tracks"}


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


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("vpp-studio")
    except Exception:  # not installed (a plain checkout on sys.path)
        return "unknown"


def write_project(path: str | os.PathLike, data: ProjectData) -> None:
    """Write ``data`` to ``path`` atomically (a failed save leaves the previous file intact)."""
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
        "categories": [[int(k), str(v)] for k, v in sorted(data.categories.items())],
        "next_track_id": int(data.next_track_id),
        "view": {"hidden": sorted(int(i) for i in data.hidden), "solo": data.solo},
        "run": data.run,
        "tracks": [track_to_json(t) for t in sorted(data.tracks, key=lambda t: t.id)],
    }
    try:
        with atomic_open(path, "w") as fh:
            json.dump(doc, fh, separators=(",", ":"), allow_nan=False)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: cannot save the project: {exc}") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot save the project ({exc.strerror or exc}); choose another folder") from exc


def read_project(path: str | os.PathLike) -> ProjectData:
    """Read and check a project file; :class:`DataError` naming the file and the bad value."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot open the project ({exc.strerror or exc})") from exc
    if size > MAX_PROJECT_BYTES:
        raise DataError(f"{path}: {size / 2**30:.1f} GiB is more than a project can be "
                        f"({MAX_PROJECT_BYTES // 2**30} GiB); it is not a VPP Studio project")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the project ({exc})") from exc
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not a VPP Studio project: invalid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{path}: not a VPP Studio project (no \"format\": \"{FORMAT}\")")
    version = doc.get("version")
    if not isinstance(version, int) or version < 1:
        raise DataError(f"{path}: bad project version {version!r}")
    if version > VERSION:
        raise DataError(f"{path}: project format version {version} was written by a newer VPP Studio; this "
                        f"version reads up to {VERSION}. Update VPP Studio to open it")
    clip = _clip(doc.get("clip"), path)
    settings = RunSettings.from_json(doc.get("settings", {}), path)
    categories = _categories(doc.get("categories", []), path)
    raw_tracks = doc.get("tracks", [])
    if not isinstance(raw_tracks, list):
        raise DataError(f"{path}: 'tracks' must be a list")
    tracks = [track_from_json(t, num_frames=clip.num_frames, height=clip.height, width=clip.width, source=path)
              for t in raw_tracks]
    ids = [t.id for t in tracks]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: two tracks share an id; the file is damaged")
    next_id = doc.get("next_track_id", max(ids, default=0) + 1)
    if isinstance(next_id, bool) or not isinstance(next_id, int) or next_id <= max(ids, default=0):
        next_id = max(ids, default=0) + 1
    view = doc.get("view") if isinstance(doc.get("view"), dict) else {}
    hidden = {int(i) for i in view.get("hidden", []) if isinstance(i, int) and i in set(ids)}
    solo = view.get("solo") if view.get("solo") in set(ids) else None
    run = doc.get("run") if isinstance(doc.get("run"), dict) else None
    extra = {k: v for k, v in doc.items() if k not in _KNOWN}
    return ProjectData(clip, settings, categories, tracks, next_id, hidden, solo, run, extra)


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
        with open(path, encoding="utf-8") as fh:
            rel = json.load(fh).get("clip", {}).get("relative_path")
    except (OSError, ValueError, AttributeError):
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
        fps = data.get("fps", 25.0)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < 1e4:
            fps = 25.0
        if not isinstance(data.get("path"), str):
            raise ValueError("'path' must be a string")
        return ClipInfo(data["path"], values["num_frames"], values["height"], values["width"], tuple(names),
                        float(fps))
    except ValueError as exc:
        raise DataError(f"{path}: bad 'clip': {exc}") from exc


def _categories(data: Any, path: Path) -> dict[int, str]:
    if not isinstance(data, list):
        raise DataError(f"{path}: 'categories' must be a list of [id, name]")
    out = {}
    for item in data:
        if (not isinstance(item, list) or len(item) != 2 or isinstance(item[0], bool)
                or not isinstance(item[0], int) or not isinstance(item[1], str)):
            raise DataError(f"{path}: category {item!r} must be [id, name]")
        out[item[0]] = item[1]
    return out
