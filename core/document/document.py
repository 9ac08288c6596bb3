"""The document: one clip, its run settings, the model's results, a person's edits, undo, journal, project.

:class:`Document` holds the state and the edits; its journal side (records, replay, recovery) is in
:mod:`core.document.recovery` and its read-only views (canvas frame, export) in :mod:`core.document.views`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.document import edits, recovery, views
from core.document.clip import ClipInfo, RunSettings
from core.document.history import DEFAULT_UNDO_LIMIT, Change, Command, UndoStack
from core.document.journal import JournalWriter
from core.document.project import ProjectData, read_project, write_project
from core.document.tracks import FrameMask, Review, Track, check_mask, fill_holes, rle_iou
from core.document.views import Instance, TrackRow
from core.errors import DataError
from core.results import ClipResults, CompactFrame

#: A new model instance overlapping a person's track this much (mask IoU, same frame) is not added.
SHADOW_IOU = 0.5
EventKind = Literal["tracks", "history", "settings", "clean", "view", "results", "categories", "path"]


@dataclass(frozen=True)
class DocEvent:
    """What changed: ``tracks`` touched (ids) and ``frames`` affected (None: possibly all)."""

    kind: EventKind
    tracks: frozenset[int] = frozenset()
    frames: frozenset[int] | None = None


class Document:
    """See :mod:`core.document` for the rules and an example."""

    def __init__(self, clip: ClipInfo, *, settings: RunSettings | None = None,
                 categories: dict[int, str] | None = None, undo_limit: int = DEFAULT_UNDO_LIMIT) -> None:
        self.clip = clip
        self.settings = settings or RunSettings()
        self.categories: dict[int, str] = dict(categories or {})
        self.results: ClipResults | None = None  # the current pass's raw per-frame results (heatmap, plots)
        self.run: dict[str, Any] | None = None  # what produced the model tracks (model, PKR, ...)
        self.history = UndoStack(undo_limit)
        self.path: Path | None = None
        self.hidden: set[int] = set()
        self.solo: int | None = None
        self.selected: tuple[int, ...] = ()  # the tracks the tools act on (the current one first)
        self._tracks: dict[int, Track] = {}
        self._next_id = 1
        self._live: dict[int, int] = {}  # the running pass's track id -> document track id
        self._votes: dict[int, dict[int, float]] = {}  # live track -> category -> summed score
        self._listeners: list[Callable[[DocEvent], None]] = []
        self._journal: JournalWriter | None = None
        self._journal_dir: Path | None = None
        self._replaying = False
        self._journalled: set[int] = set()  # serials of the commands the journal holds (undo / redo need them)
        self._passes = 0
        self._settings_serial = 0
        self._extra: dict[str, Any] = {}  # unknown keys of the project file, written back
        self.journal_error: str | None = None  # why edits are not journalled (None: they are, or no journal)
        self._clean: tuple = self._token()

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def open_clip(cls, path: str | os.PathLike, **kwargs) -> Document:
        """A new document over the frame folder or video at ``path``."""
        return cls(ClipInfo.open(path), **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike, *, undo_limit: int = DEFAULT_UNDO_LIMIT) -> Document:
        """Open a project file (the clip itself need not exist: export works without it)."""
        data = read_project(path)
        doc = cls(data.clip, settings=data.settings, categories=data.categories, undo_limit=undo_limit)
        doc._tracks = {t.id: t for t in data.tracks}
        doc._next_id = data.next_track_id
        doc.hidden, doc.solo, doc.run = data.hidden, data.solo, data.run
        doc._extra = data.extra
        doc.path = Path(path).resolve()
        doc._clean = doc._token()
        return doc

    # -- listening ---------------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[DocEvent], None]) -> Callable[[], None]:
        """Call ``listener(event)`` after every change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, kind: EventKind, tracks: Iterable[int] = (), frames: Iterable[int] | None = None) -> None:
        event = DocEvent(kind, frozenset(tracks), None if frames is None else frozenset(frames))
        for listener in list(self._listeners):
            listener(event)

    # -- queries -----------------------------------------------------------------------------------
    @property
    def tracks(self) -> dict[int, Track]:
        """id -> track (a copy of the mapping; tracks themselves are immutable)."""
        return dict(self._tracks)

    def track(self, track_id: int) -> Track:
        try:
            return self._tracks[track_id]
        except KeyError:
            raise KeyError(f"no track {track_id} in this document (tracks: {sorted(self._tracks)})") from None

    def category_name(self, category_id: int) -> str:
        return self.categories.get(category_id, f"class {category_id}")

    def rows(self) -> list[TrackRow]:
        return [TrackRow(t.id, t.category_id, self.category_name(t.category_id), t.score, t.first, t.last,
                         len(t.frames), t.review, t.edited, t.origin, not self.visible(t.id))
                for t in sorted(self._tracks.values(), key=lambda t: t.id)]

    def visible(self, track_id: int) -> bool:
        return track_id not in self.hidden and (self.solo is None or self.solo == track_id)

    def frame_instances(self, index: int, *, include_hidden: bool = False) -> list[Instance]:
        """The tracks present on frame ``index``, lowest score first (so the best ends on top when drawn)."""
        out = []
        for t in self._tracks.values():
            f = t.frames.get(index)
            if f is None or f.area == 0 or not (include_hidden or self.visible(t.id)):
                continue
            out.append(Instance(t.id, t.category_id, f.score, f.rle, f.area, t.review, t.edited, t.origin))
        out.sort(key=lambda i: (i.score, -i.track_id))
        return out

    def view_frame(self, index: int, preview: CompactFrame | None = None) -> CompactFrame | None:
        """What the canvas draws on frame ``index``: the visible tracks, with the pass's kept-patch maps.

        ``preview``: a frame the pass has not reached yet, run alone (see :mod:`core.studio`); its
        instances are drawn under their pass ids next to the document's protected tracks. None when
        there is nothing to draw (no result and no track on the frame).
        """
        return views.view_frame(self, index, preview)

    def mask(self, track_id: int, frame: int) -> np.ndarray:
        """Track ``track_id``'s mask on ``frame`` as ``[H, W]`` bool (all False where it is absent)."""
        f = self.track(track_id).frames.get(frame)
        return f.decode() if f is not None else np.zeros((self.clip.height, self.clip.width), bool)

    def track_at(self, frame: int, x: float, y: float) -> int | None:
        """The visible track whose mask covers pixel (x, y) on ``frame`` (the top-most one), or None."""
        xi, yi = int(x), int(y)
        if not (0 <= xi < self.clip.width and 0 <= yi < self.clip.height):
            return None
        for inst in reversed(self.frame_instances(frame)):
            if inst.mask()[yi, xi]:
                return inst.track_id
        return None

    @property
    def dirty(self) -> bool:
        """True when a person's work is not in a file yet: an edit (or undo / redo) since the last save,
        or, for a saved project, changed run settings. Model passes alone do not count (they can be
        run again)."""
        return self._token() != self._clean

    def _token(self) -> tuple:
        return (self.history.position, self._settings_serial if self.path is not None else 0)

    # -- model passes ------------------------------------------------------------------------------
    def begin_pass(self, results: ClipResults, run: dict[str, Any] | None = None) -> None:
        """A new pass starts filling ``results``: the unreviewed model tracks go, a person's tracks stay.

        Not an edit (nothing to undo); frames arrive through :meth:`add_model_frame`.
        """
        if (results.num_frames, results.height, results.width) != self.clip.shape:
            raise ValueError(f"results for {results.num_frames} frames of {results.width}x{results.height} "
                             f"do not fit the clip ({self.clip.num_frames} frames of "
                             f"{self.clip.width}x{self.clip.height})")
        gone = [tid for tid, t in self._tracks.items() if not t.protected]
        for tid in gone:
            del self._tracks[tid]
            self.hidden.discard(tid)
        self.selected = tuple(t for t in self.selected if t in self._tracks)
        if self.solo in gone:
            self.solo = None
        self._live.clear()
        self._votes.clear()
        self.results = results
        self.run = run
        self._passes += 1
        self._write_journal({"kind": "pass"})
        for frame in list(results):
            self._add_frame(frame)
        self._emit("results")
        self._emit("tracks", gone)

    def add_model_frame(self, frame: CompactFrame) -> None:
        """One frame of the running pass (also stored in :attr:`results`)."""
        if self.results is None:
            raise RuntimeError("add_model_frame before begin_pass: start a pass first")
        if self.results.get(frame.index) is not frame:
            self.results.add(frame)
        touched = self._add_frame(frame)
        self._emit("tracks", touched, [frame.index])

    def _add_frame(self, frame: CompactFrame) -> set[int]:
        i = frame.index
        people = [t for t in self._tracks.values() if t.protected and i in t.frames]
        iou = rle_iou(list(frame.rles), [t.frames[i].rle for t in people]) if people else None
        touched = set()
        for k in range(frame.num_instances):
            if frame.areas[k] == 0 or (iou is not None and iou[k].max() >= SHADOW_IOU):
                continue
            pid = int(frame.track_ids[k])
            category, score = int(frame.category_ids[k]), float(frame.scores[k])
            did = self._live.get(pid)
            track = self._tracks.get(did) if did is not None else None
            if track is None:
                did = self._new_id()
                track = Track(did, category, "model", note=self._run_note())
                self._tracks[did] = track
                self._live[pid] = did
                self._votes[did] = defaultdict(float)
            track.frames[i] = FrameMask(frame.rles[k], score, int(frame.areas[k]))  # type: ignore[index]
            votes = self._votes[did]
            votes[category] += score
            best = max(votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]
            if best != track.category_id:
                self._tracks[did] = Track(did, best, "model", "unreviewed", False, track.frames, track.note)
            touched.add(did)
        return touched

    def _run_note(self) -> str:
        if not self.run:
            return "model"
        return f"model {self.run.get('model', '?')} at PKR {self.run.get('pkr', '?')}"

    def _new_id(self) -> int:
        tid = self._next_id
        self._next_id += 1
        return tid

    # -- settings and categories -------------------------------------------------------------------
    def set_settings(self, settings: RunSettings) -> None:
        if settings == self.settings:
            return
        self.settings = settings
        self._settings_serial += 1
        self._write_journal({"kind": "settings", "settings": settings.to_json()})
        self._emit("settings")

    def set_categories(self, categories: dict[int, str]) -> None:
        """Add (or rename) categories; ids already used by tracks are never dropped."""
        merged = {**self.categories, **{int(k): str(v) for k, v in categories.items()}}
        if merged == self.categories:
            return
        self.categories = merged
        self._write_journal({"kind": "categories", "categories": [[k, v] for k, v in sorted(merged.items())]})
        self._emit("categories")

    # -- view state (not edits: not undoable, saved with the project) -------------------------------
    def set_hidden(self, track_ids: Iterable[int], hidden: bool = True) -> None:
        ids = {int(t) for t in track_ids} & set(self._tracks)
        self.hidden = (self.hidden | ids) if hidden else (self.hidden - ids)
        self._emit("view", ids)

    def select(self, track_ids: Iterable[int]) -> None:
        """Make ``track_ids`` the selection (unknown ids are ignored; the first is the current track)."""
        ids = tuple(int(t) for t in dict.fromkeys(track_ids) if int(t) in self._tracks)
        if ids != self.selected:
            self.selected = ids
            self._emit("view", ids)

    @property
    def current(self) -> int | None:
        """The selected track the mask tools paint into (None: drawing makes a new track)."""
        return self.selected[0] if self.selected else None

    def set_solo(self, track_id: int | None) -> None:
        self.solo = None if track_id is None or track_id == self.solo else int(track_id)
        self._emit("view")

    # -- edits -------------------------------------------------------------------------------------
    def _get(self, ids: Iterable[int]) -> list[Track]:
        return [self.track(int(t)) for t in dict.fromkeys(ids)]

    def relabel(self, track_ids: Iterable[int], category_id: int) -> Command | None:
        category_id = int(category_id)
        if category_id not in self.categories:
            raise ValueError(f"unknown category {category_id}; known: "
                             + ", ".join(f"{k} {v}" for k, v in sorted(self.categories.items())))
        return self._commit(f"Relabel as {self.category_name(category_id)}",
                            edits.relabel(self._get(track_ids), category_id))

    def accept(self, track_ids: Iterable[int]) -> Command | None:
        return self._commit("Accept", edits.set_review(self._get(track_ids), "accepted"))

    def reject(self, track_ids: Iterable[int]) -> Command | None:
        return self._commit("Reject", edits.set_review(self._get(track_ids), "rejected"))

    def set_review(self, track_ids: Iterable[int], review: Review) -> Command | None:
        return self._commit(f"Mark {review}", edits.set_review(self._get(track_ids), review))

    def delete(self, track_ids: Iterable[int]) -> Command | None:
        tracks = self._get(track_ids)
        return self._commit(f"Delete {_n_tracks(len(tracks))}", edits.delete(tracks))

    def delete_from(self, track_id: int, frame: int) -> Command | None:
        return self._commit(f"Delete track {track_id} from frame {frame}", edits.delete_from(self.track(track_id),
                                                                                             self._frame(frame)))

    def delete_frames(self, track_id: int, frames: Sequence[int]) -> Command | None:
        return self._commit(f"Delete track {track_id} on {len(frames)} frame(s)",
                            edits.delete_frames(self.track(track_id), [self._frame(f) for f in frames]))

    def merge(self, track_ids: Sequence[int]) -> Command | None:
        """Merge the tracks into the first one."""
        tracks = self._get(track_ids)
        if len(tracks) < 2:
            raise ValueError("select at least two tracks to merge")
        return self._commit(f"Merge {_n_tracks(len(tracks))} into {tracks[0].id}", edits.merge(tracks[0], tracks[1:]))

    def split(self, track_id: int, frame: int) -> int:
        """Frames ``>= frame`` become a new track; returns its id."""
        new_id = self._next_id
        self._commit(f"Split track {track_id} at frame {frame}",
                     edits.split(self.track(track_id), self._frame(frame), new_id))
        return new_id

    def paint(self, track_id: int, frame: int, mask: np.ndarray, *, erase: bool = False) -> Command | None:
        """Add (brush) or remove (eraser) ``mask`` ``[H, W]`` bool on ``frame`` of the track."""
        stroke = check_mask(mask, self.clip.height, self.clip.width)
        return self._commit("Erase" if erase else "Brush",
                            edits.paint(self.track(track_id), self._frame(frame), stroke, erase=erase))

    def set_mask(self, track_id: int, frame: int, mask: np.ndarray, *, label: str = "Set mask") -> Command | None:
        m = check_mask(mask, self.clip.height, self.clip.width)
        return self._commit(label, edits.set_mask(self.track(track_id), self._frame(frame), m))

    def fill_holes(self, track_id: int, frame: int, point: tuple[int, int] | None = None) -> Command | None:
        """Fill the mask's holes on ``frame`` (only the one under ``point`` (x, y) if given)."""
        current = self.mask(track_id, self._frame(frame))
        return self.set_mask(track_id, frame, fill_holes(current, point), label="Fill hole")

    def create_track(self, frame: int, mask: np.ndarray, category_id: int, *, note: str = "drawn") -> int:
        """A new track of a person's, from a mask drawn on ``frame``; returns its id."""
        m = check_mask(mask, self.clip.height, self.clip.width)
        if not m.any():
            raise ValueError("the drawn mask is empty; draw inside the frame to make a new track")
        if self.categories and int(category_id) not in self.categories:
            raise ValueError(f"unknown category {category_id}; known: "
                             + ", ".join(f"{k} {v}" for k, v in sorted(self.categories.items())))
        new_id = self._next_id
        track = Track(new_id, int(category_id), "user", frames={self._frame(frame): FrameMask.from_mask(m, 1.0)},
                      note=note)
        self._commit("New track", {new_id: track})
        return new_id

    def add_tracks(self, tracks: Sequence[tuple[int, float, dict[int, dict]]], *, origin: str = "import",
                   note: str = "", label: str = "Import") -> list[int]:
        """Add tracks given as (category_id, score, {frame: RLE}) as one undoable step; returns their ids."""
        updates: dict[int, Track | None] = {}
        ids = []
        next_id = self._next_id
        for category, score, frames in tracks:
            fm = {}
            for i, rle in frames.items():
                i = self._frame(i)
                if list(rle["size"]) != [self.clip.height, self.clip.width]:
                    raise ValueError(f"{note or 'import'}: a mask of size {rle['size']} in a clip of "
                                     f"{self.clip.height}x{self.clip.width}")
                fm[i] = FrameMask.from_rle(rle, score)
            updates[next_id] = Track(next_id, int(category), origin, frames=fm, note=note)  # type: ignore[arg-type]
            ids.append(next_id)
            next_id += 1
        self._commit(label, updates)
        return ids

    def import_file(self, path: str | os.PathLike, *, video_id: int | None = None) -> list[int]:
        """Import a YTVIS results / ground-truth file or a folder of DAVIS PNG masks for this clip."""
        from core.export import import_tracks

        imported = import_tracks(path, num_frames=self.clip.num_frames, height=self.clip.height,
                                 width=self.clip.width, video_id=video_id)
        names = {k: v if v is not None else self.category_name(k) for k, v in imported.categories
                 if v is not None or k not in self.categories}  # a file without names renames nothing
        if names:
            self.set_categories(names)
        if not imported.tracks:
            raise DataError(f"{path}: holds no masks for this clip")
        return self.add_tracks([(t.category_id, t.score, t.frames) for t in imported.tracks],
                               note=f"imported from {Path(path).name}", label=f"Import {Path(path).name}")

    def _frame(self, frame: int) -> int:
        f = int(frame)
        if not 0 <= f < self.clip.num_frames:
            raise ValueError(f"frame {frame} is outside the clip (0..{self.clip.num_frames - 1})")
        return f

    def _commit(self, label: str, updates: dict[int, Track | None]) -> Command | None:
        changes = [Change(tid, self._tracks.get(tid), new) for tid, new in updates.items()
                   if not (new is None and tid not in self._tracks)]
        if not changes:
            return None
        cmd = Command.make(label, changes)
        self._next_id = max(self._next_id, max(c.track_id for c in changes) + 1)
        self._write_journal(recovery.edit_record(self, cmd))
        self._journalled.add(cmd.serial)
        self.history.push(cmd)
        self._apply(cmd, forward=True)
        return cmd

    def undo(self) -> Command | None:
        cmd = self.history.undo()
        if cmd is not None:
            self._write_journal(recovery.history_record(self, "undo", cmd))
            self._apply(cmd, forward=False)
        return cmd

    def redo(self) -> Command | None:
        cmd = self.history.redo()
        if cmd is not None:
            self._write_journal(recovery.history_record(self, "redo", cmd))
            self._apply(cmd, forward=True)
        return cmd

    def _apply(self, cmd: Command, *, forward: bool) -> None:
        live_docs = {d: p for p, d in self._live.items()}
        frames: set[int] = set()
        for ch in cmd.changes if forward else reversed(cmd.changes):
            state = ch.after if forward else ch.before
            for t in (ch.before, ch.after):
                if t is not None:
                    frames.update(t.frames)
            if ch.track_id in live_docs:  # a person touched it: the pass never writes into it again
                del self._live[live_docs[ch.track_id]]
                self._votes.pop(ch.track_id, None)
            if state is None:
                self._tracks.pop(ch.track_id, None)
                self.hidden.discard(ch.track_id)
                self.selected = tuple(t for t in self.selected if t != ch.track_id)
                if self.solo == ch.track_id:
                    self.solo = None
            else:
                self._tracks[ch.track_id] = state
        self._emit("tracks", [c.track_id for c in cmd.changes], frames)
        self._emit("history")

    # -- journal -----------------------------------------------------------------------------------
    def start_journal(self, data_dir: str | os.PathLike | None = None) -> Path:
        """Record every edit from now on (beside the project, else in ``<data_dir>/journals``)."""
        return recovery.start_journal(self, data_dir)

    def resume_journal(self, path: str | os.PathLike) -> None:
        """Keep recording into the journal this document was recovered from (it holds its edits)."""
        recovery.resume_journal(self, path)

    def stop_journal(self, *, delete: bool = True) -> None:
        """Close the journal (``delete``: the edits are safe elsewhere, e.g. saved or discarded)."""
        recovery.stop_journal(self, delete=delete)

    @property
    def journal_path(self) -> Path | None:
        return self._journal.path if self._journal is not None else None

    def _write_journal(self, record: dict[str, Any]) -> None:
        if self._journal is not None and not self._replaying:
            self._journal.append(record)

    @classmethod
    def recover(cls, journal: str | os.PathLike, *, clip: ClipInfo | None = None) -> Document:
        """A document rebuilt from a journal left by a crash: its base plus every recorded edit.

        The whole journal is checked and replayed on a fresh document; any problem raises
        :class:`DataError` and nothing is applied. ``clip``: the clip open now, which must be the
        journal's (same frames and size). The result is unsaved (``dirty``) and its undo history is
        the one before the crash; call :meth:`start_journal` to keep recording.
        """
        return recovery.recover(cls, journal, clip)

    # -- saving ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the project (atomically) to ``path`` (default: where it was opened or last saved).

        The journal restarts beside the saved file (the previous one is deleted once the save is done).
        """
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("the document was never saved: give a path")
        target = target.resolve()
        if target.exists() and target.is_dir():
            raise DataError(f"{target}: is a folder; choose a project file name (*.vppproj)")
        had_journal = self._journal is not None
        write_project(target, self.project_data())
        old_path = self.path
        self.path = target
        self._clean = self._token()
        if had_journal:
            self.stop_journal(delete=True)
            try:
                self.start_journal()
            except (DataError, OSError) as exc:  # the project is saved; say that edits are not journalled now
                self.journal_error = str(exc)
        if old_path != target:
            self._emit("path")
        self._emit("clean")
        return target

    def mark_clean(self) -> None:
        self._clean = self._token()
        self._emit("clean")

    def project_data(self) -> ProjectData:
        return ProjectData(self.clip, self.settings, dict(self.categories), list(self._tracks.values()),
                           self._next_id, set(self.hidden), self.solo, self.run, dict(self._extra))

    # -- export ------------------------------------------------------------------------------------
    def to_clip_results(self, *, include_rejected: bool = False) -> ClipResults:
        """Every frame as the export sees it: the document's tracks (rejected ones left out)."""
        return views.to_clip_results(self, include_rejected=include_rejected)

    def export(self, *, ytvis=None, zip=None, davis=None, coco=None, tool: str = "vpp-studio"):
        """Write the corrected results through :func:`core.export.export_results` (atomic, all or none)."""
        return views.export(self, ytvis=ytvis, zip=zip, davis=davis, coco=coco, tool=tool)

    def run_record(self, tool: str):
        return views.run_record(self, tool)



def _n_tracks(n: int) -> str:
    return f"{n} track{'s' if n != 1 else ''}"
