"""What every export format shares: the videos to export, the imported tracks, and the :class:`Codec` contract.

A codec (one module of :mod:`core.formats` each, exposing ``CODEC``) knows one format: its name in an
``outputs`` mapping, its CLI option and GUI menu entry, how to check a target before anything is computed,
how to stage its output into a :class:`core.multi_commit.MultiCommit` and read it back, and, where one
exists, how to import tracks from it. :mod:`core.export` loops over the registry; nothing here commits.
Also here: the helpers several formats and readers use (JSON loading, choosing a video of a file, the
RLE size check of a track's frames).
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.data.rle import decode_rle, rle_area
from core.errors import DataError
from core.results import ClipResults


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
    format: str  # "ytvis-results", "ytvis-gt", "coco", "davis" or a codec's own name
    video_id: int | None  # None for a DAVIS folder (or a file holding no video)
    categories: tuple[tuple[int, str | None], ...]  # (id, name); name None where the file gives none
    tracks: tuple[ImportedTrack, ...]


@dataclass
class ExportJob:
    """What one :func:`core.export.export_results` call exports, shared by every codec it stages.

    ``categories``: (id, name) pairs, every id the tracks use included; ``run``: the run record as JSON;
    ``summary``: one dict per video (video_id, name, frames, tracks); ``shared``: what one codec computed
    that another may reuse (the YTVIS JSON and its zip share one body)."""

    videos: tuple[VideoExport, ...]
    categories: list[tuple[int, str]]
    run: dict[str, Any]
    summary: list[dict[str, Any]]
    shared: dict[str, Any] = field(default_factory=dict)


class ImportProbe:
    """A file or folder offered for import, read at most once: what codecs look at to claim it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_dir = path.is_dir()
        self.is_zip = not self.is_dir and zipfile.is_zipfile(path)
        self._json: Any = None
        self._json_error: DataError | None = None
        self._loaded = False

    @property
    def json(self) -> Any:
        """The parsed JSON, or None when the path is a folder, a zip or not valid JSON (see :meth:`json_error`)."""
        if not self._loaded:
            self._loaded = True
            if not (self.is_dir or self.is_zip):
                try:
                    self._json = load_json_file(self.path)
                except DataError as exc:
                    self._json_error = exc
        return self._json

    @property
    def json_error(self) -> DataError | None:
        """Why the file is not JSON (read on first use), or None."""
        _ = self.json
        return self._json_error

    def first_line(self, limit: int = 4096) -> str | None:
        """The file's first line as text (at most ``limit`` bytes), or None for a folder or a file not read."""
        if self.is_dir:
            return None
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(limit)
        except OSError:
            return None
        try:
            return head.split(b"\n", 1)[0].decode("ascii").rstrip("\r")
        except UnicodeDecodeError:
            return None


class Codec:
    """One export format. Subclasses set the class attributes and override the methods they need.

    File codecs build bytes (:meth:`build`) that are staged, then read back (:meth:`read_back`); a folder
    codec (``folder = True``) overrides :meth:`stage` and writes into the staged folder itself.
    """

    name: str = ""  # key of the outputs mapping ("ytvis", "zip", "davis", "coco", ...)
    label: str = ""  # in messages: "the {label} output"
    option: str = ""  # vpp export's and vpp infer's option ("--coco")
    metavar: str | None = None  # argparse's default (the option name) when None
    help: str = ""  # vpp export's help
    infer_help: str = ""  # vpp infer's help (default "also write " + help)
    infer_suffix: str | None = None  # vpp infer: a flag writing OUT with this suffix (``--zip``), not a path
    folder: bool = False  # the output is a folder (replaced as a whole), not a file
    one_video: bool = False  # the format holds one video: a run over several clips refuses it before it starts
    summary: str = ""  # in `vpp export`'s help: what is written ("COCO JSON")
    # the GUI: a File menu entry, or ``menu_joins`` = another codec whose save dialog offers this one's filter
    menu_label: str = ""
    menu_tip: str = ""
    menu_shortcut: tuple[str, ...] = ()
    menu_joins: str | None = None
    dialog_title: str = ""
    file_filter: str = ""
    default_name: str = ""
    suffix: str = ""  # a file output's usual suffix (".json")
    import_kinds: tuple[str, ...] = ()  # what :meth:`import_tracks` reads, for "not a ..." messages

    def check_target(self, path: Path) -> str | None:
        """Why ``path`` must not be written (a folder codec's rule), or None. Files: checked by :mod:`core.export`."""
        return None

    def prepare(self, job: ExportJob) -> None:
        """Checks on the videos before anything is staged (raise :class:`DataError`); may fill ``job.shared``."""

    def build(self, job: ExportJob, path: Path) -> bytes:
        """A file codec's whole output for ``path``."""
        raise NotImplementedError

    def read_back(self, staged: Path, path: Path, job: ExportJob) -> None:
        """Read the staged file as its importer would; :class:`DataError` naming ``path`` if it does not."""

    def stage(self, txn: Any, slot: int, path: Path, mode: int, job: ExportJob) -> str | None:
        """Stage the output for ``path`` into ``txn`` at ``slot`` and read it back; returns a note for the
        export's summary line, or None."""
        staged = txn.stage_bytes(slot, self.build(job, path), mode)
        self.read_back(staged, path, job)
        return None

    def claims(self, probe: ImportProbe) -> bool:
        """True when :meth:`import_tracks` reads what ``probe`` shows."""
        return False

    def import_tracks(self, probe: ImportProbe, *, num_frames: int, height: int, width: int,
                      video_id: int | None, category_id: int) -> ImportedTracks:
        raise DataError(f"{probe.path}: {self.label} files cannot be imported")


# -- helpers shared by several formats --------------------------------------------------------------


def track_ids(clip: ClipResults) -> list[int]:
    """The track IDs of ``clip.to_ytvis`` entries, in the same (ascending) order."""
    return sorted({int(f.track_ids[k]) for f in clip for k in range(f.num_instances) if f.areas[k] > 0})


def json_bytes(obj: Any) -> bytes:
    """Compact JSON (no NaN) as UTF-8: the body of every JSON output."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def load_json_file(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: not a valid JSON file ({exc}); the file may be truncated") from exc


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def present_frames(segs: Sequence[dict | None], hw: tuple[int, int],
                   mismatch: Callable[[int, list], str]) -> dict[int, dict]:
    """Frame index -> a copy of each segmentation with pixels; a :class:`DataError` with ``mismatch(frame,
    size)`` for one whose ``size`` is not ``hw``. The one RLE size check of importers and ground truth."""
    out = {}
    for t, s in enumerate(segs):
        if s is None:
            continue
        if tuple(s["size"]) != hw:
            raise DataError(mismatch(t, list(s["size"])))
        if rle_area(s) > 0:
            out[t] = dict(s)
    return out


def clip_frames(segs: Sequence[dict | None], path: Path, hw: tuple[int, int]) -> dict[int, dict]:
    """:func:`present_frames` of an imported track, against the open clip's size ``hw``."""
    return present_frames(segs, hw, lambda t, size: f"{path}: frame {t} has a mask of [height, width] {size}, "
                                                    f"but the open clip is {hw[1]}x{hw[0]}")


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

