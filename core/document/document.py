"""The document: one clip, its run settings, the model's results, a person's edits, undo, journal, project."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.document import edits
from core.document.clip import ClipInfo, RunSettings
from core.document.codec import apply_diff, track_diff, track_from_json, track_to_json
from core.document.history import DEFAULT_UNDO_LIMIT, Change, Command, UndoStack
from core.document.journal import (
    JournalWriter,
    journal_path_for,
    read_journal,
    unsaved_journal_path,
)
from core.document.project import ProjectData, read_project, write_project
from core.document.tracks import FrameMask, Review, Track, check_mask, fill_holes, rle_iou
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


@dataclass(frozen=True)
class Instance:
    """One track on one frame, for drawing."""

    track_id: int
    category_id: int
    score: float
    rle: dict
    area: int
    review: Review
    edited: bool
    origin: str

    def mask(self) -> np.ndarray:
        from core.data.rle import decode_rle

        return decode_rle(self.rle)


@dataclass(frozen=True)
class TrackRow:
    """One line of the tracks panel."""

    id: int
    category_id: int
    category: str
    score: float
    first: int | None
    last: int | None
    num_frames: int
    review: Review
    edited: bool
    origin: str
    hidden: bool


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
        model = self.results.get(index) if self.results is not None else None
        items = [(i.track_id, i.category_id, i.score, i.rle, i.area) for i in self.frame_instances(index)]
        base = model
        if model is None and preview is not None:
            base = preview
            people = {i.track_id for i in self.frame_instances(index) if self._tracks[i.track_id].protected}
            items = [it for it in items if it[0] in people]
            items += [(-int(preview.track_ids[k]), int(preview.category_ids[k]), float(preview.scores[k]),
                       preview.rles[k], int(preview.areas[k])) for k in range(preview.num_instances)]
        if base is None and not items:
            return None
        _n, h, w = self.clip.shape
        return CompactFrame(
            index=index, height=h, width=w,
            track_ids=np.asarray([it[0] for it in items], np.int64),
            category_ids=np.asarray([it[1] for it in items], np.int64),
            scores=np.asarray([it[2] for it in items], np.float32),
            rles=tuple(it[3] for it in items), areas=np.asarray([it[4] for it in items], np.int64),
            kept=base.kept if base is not None else np.zeros((0, 1, 1), bool),
            stage_names=base.stage_names if base is not None else (),
            keep_ratio=base.keep_ratio if base is not None else float("nan"),
            gflops=base.gflops if base is not None else float("nan"),
            ms=base.ms if base is not None else float("nan"))

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
        self._write_journal(self._edit_record(cmd))
        self._journalled.add(cmd.serial)
        self.history.push(cmd)
        self._apply(cmd, forward=True)
        return cmd

    def undo(self) -> Command | None:
        cmd = self.history.undo()
        if cmd is not None:
            self._write_journal(self._history_record("undo", cmd))
            self._apply(cmd, forward=False)
        return cmd

    def redo(self) -> Command | None:
        cmd = self.history.redo()
        if cmd is not None:
            self._write_journal(self._history_record("redo", cmd))
            self._apply(cmd, forward=True)
        return cmd

    def _history_record(self, kind: str, cmd: Command) -> dict[str, Any]:
        """An undo / redo record. A command made before the journal started (e.g. before a save) is not in
        it, so the record carries that command's step (as an edit record would) for the replay."""
        if self._journal is None or self._replaying or cmd.serial in self._journalled:
            return {"kind": kind}
        self._journalled.add(cmd.serial)
        return {**self._edit_record(cmd if kind == "redo" else _inverse(cmd)), "kind": kind}

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
        if data_dir is not None:
            self._journal_dir = Path(data_dir)
        self.stop_journal(delete=False)
        if self.path is not None:
            path, base, sha = journal_path_for(self.path), str(self.path), _sha256(self.path)
        elif self._journal_dir is not None:
            path, base, sha = unsaved_journal_path(self._journal_dir, self.clip.name), None, None
        else:
            raise ValueError("an unsaved document needs a data_dir for its journal")
        # a saved project with edits not in its file: the header holds every track (the state to replay onto)
        snapshot = base is not None and self.dirty
        self._journal = JournalWriter(path, {
            "clip": self.clip.to_json(), "base": base, "base_sha256": sha, "settings": self.settings.to_json(),
            "categories": [[k, v] for k, v in sorted(self.categories.items())],
            "tracks": [track_to_json(t) for t in self._tracks.values() if snapshot or (base is None and t.protected)],
            "snapshot": snapshot, "next_id": self._next_id,
        })
        self._journalled = set()
        return path

    def resume_journal(self, path: str | os.PathLike) -> None:
        """Keep recording into the journal this document was recovered from (it holds its edits)."""
        self.stop_journal(delete=False)
        self._journal = JournalWriter(path, None)
        self._journalled = self.history.serials()

    def stop_journal(self, *, delete: bool = True) -> None:
        """Close the journal (``delete``: the edits are safe elsewhere, e.g. saved or discarded)."""
        if self._journal is not None:
            self._journal.close(delete=delete)
            self._journal = None

    @property
    def journal_path(self) -> Path | None:
        return self._journal.path if self._journal is not None else None

    def _write_journal(self, record: dict[str, Any]) -> None:
        if self._journal is not None and not self._replaying:
            self._journal.append(record)

    def _edit_record(self, cmd: Command) -> dict[str, Any]:
        changes = []
        for ch in cmd.changes:
            before = "current" if ch.before is None or ch.before.protected else track_to_json(ch.before)
            if ch.after is None:
                after = None
            elif ch.before is None:
                after = {"full": track_to_json(ch.after)}
            else:
                after = {"diff": track_diff(ch.before, ch.after)}
            changes.append({"id": ch.track_id, "before": before, "after": after})
        return {"kind": "edit", "label": cmd.label, "changes": changes, "next_id": self._next_id}

    @classmethod
    def recover(cls, journal: str | os.PathLike, *, clip: ClipInfo | None = None) -> Document:
        """A document rebuilt from a journal left by a crash: its base plus every recorded edit.

        The whole journal is checked and replayed on a fresh document; any problem raises
        :class:`DataError` and nothing is applied. ``clip``: the clip open now, which must be the
        journal's (same frames and size). The result is unsaved (``dirty``) and its undo history is
        the one before the crash; call :meth:`start_journal` to keep recording.
        """
        contents = read_journal(journal)
        h, src = contents.header, Path(journal)
        try:
            jclip = ClipInfo(**{k: h["clip"][k] for k in ("path", "num_frames", "height", "width")},
                             names=tuple(h["clip"].get("names", ())), fps=float(h["clip"].get("fps", 25.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{src}: the journal's clip record is damaged ({exc})") from exc
        if clip is not None and clip.shape != jclip.shape:
            raise DataError(f"{src}: the journal is for {jclip.path} ({jclip.num_frames} frames of "
                            f"{jclip.width}x{jclip.height}), not for the open clip {clip.path} "
                            f"({clip.num_frames} frames of {clip.width}x{clip.height})")
        if h.get("base"):
            base = Path(h["base"])
            if not base.is_file():
                raise DataError(f"{src}: its project {base} no longer exists; the edits cannot be applied")
            if _sha256(base) != h.get("base_sha256"):
                raise DataError(f"{src}: the project {base} was changed after this journal started; the edits "
                                "belong to an older version and are not applied")
            doc = cls.load(base)
            if h.get("snapshot"):  # started on unsaved edits: the header holds the tracks, not the file
                doc._tracks = {}
                doc.settings = RunSettings.from_json(h.get("settings", {}), src)
                doc.categories = {int(k): str(v) for k, v in h.get("categories", [])}
        else:
            doc = cls(jclip, settings=RunSettings.from_json(h.get("settings", {}), src),
                      categories={int(k): str(v) for k, v in h.get("categories", [])})
        if not h.get("base") or h.get("snapshot"):
            for t in h.get("tracks", []):
                tr = track_from_json(t, num_frames=jclip.num_frames, height=jclip.height, width=jclip.width,
                                     source=src)
                doc._tracks[tr.id] = tr
            doc._next_id = max([int(h.get("next_id", 1)), *(t + 1 for t in doc._tracks)])
            doc.hidden &= set(doc._tracks)
            doc.solo = doc.solo if doc.solo in doc._tracks else None
        doc._replaying = True
        try:
            for number, rec in enumerate(contents.records, start=2):
                try:
                    doc._replay(rec, src)
                except (KeyError, TypeError, ValueError, IndexError) as exc:
                    raise DataError(f"{src}: line {number} ({rec.get('kind')}) does not apply: {exc}") from exc
        finally:
            doc._replaying = False
        doc._clean = (None,)  # recovered edits are not in any file yet
        return doc

    def _replay(self, rec: dict[str, Any], src: Path) -> None:
        kind = rec["kind"]
        if kind in ("undo", "redo") and "changes" in rec:  # of a command made before the journal started
            step = self._command_from(rec, src)
            cmd = step if kind == "redo" else _inverse(step)
            self.history.insert(cmd, undone=kind == "undo")
            self._apply(cmd, forward=kind == "redo")
        elif kind == "undo":
            if self.undo() is None:
                raise ValueError("nothing to undo")
        elif kind == "redo":
            if self.redo() is None:
                raise ValueError("nothing to redo")
        elif kind == "pass":
            for tid in [t for t, tr in self._tracks.items() if not tr.protected]:
                del self._tracks[tid]
        elif kind == "settings":
            self.settings = RunSettings.from_json(rec["settings"], src)
        elif kind == "categories":
            self.categories = {int(k): str(v) for k, v in rec["categories"]}
        elif kind == "edit":
            cmd = self._command_from(rec, src)
            self.history.push(cmd)
            self._apply(cmd, forward=True)
            self._next_id = max(self._next_id, int(rec.get("next_id", 1)))
        else:  # read_journal already refused unknown kinds
            raise ValueError(f"unknown record kind {kind!r}")

    def _command_from(self, rec: dict[str, Any], src: Path) -> Command:
        """The command of an edit record (its ``before`` states as this document holds them now)."""
        shape = {"num_frames": self.clip.num_frames, "height": self.clip.height, "width": self.clip.width}
        changes = []
        for ch in rec["changes"]:
            tid = int(ch["id"])
            if ch["before"] == "current":
                before = self._tracks.get(tid)
            else:
                before = track_from_json(ch["before"], source=src, **shape)
            a = ch["after"]
            if a is None:
                after = None
            elif "full" in a:
                after = track_from_json(a["full"], source=src, **shape)
            else:
                if before is None:
                    raise ValueError(f"a change of track {tid}, which does not exist")
                after = apply_diff(before, a["diff"], source=src, **shape)
            changes.append(Change(tid, before, after))
        return Command.make(str(rec.get("label", "Edit")), changes)

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
        n, h, w = self.clip.shape
        out = ClipResults(n, h, w)
        per_frame: list[list[tuple[Track, FrameMask]]] = [[] for _ in range(n)]
        for t in sorted(self._tracks.values(), key=lambda t: t.id):
            if t.review == "rejected" and not include_rejected:
                continue
            for i, f in t.frames.items():
                if f.area > 0:
                    per_frame[i].append((t, f))
        for i, items in enumerate(per_frame):
            model = self.results.get(i) if self.results is not None else None
            out.add(CompactFrame(
                index=i, height=h, width=w,
                track_ids=np.asarray([t.id for t, _ in items], np.int64),
                category_ids=np.asarray([t.category_id for t, _ in items], np.int64),
                scores=np.asarray([f.score for _, f in items], np.float32),
                rles=tuple(dict(f.rle) for _, f in items),
                areas=np.asarray([f.area for _, f in items], np.int64),
                kept=model.kept if model is not None else np.zeros((0, 1, 1), bool),
                stage_names=model.stage_names if model is not None else (),
                keep_ratio=model.keep_ratio if model is not None else float("nan"),
                gflops=model.gflops if model is not None else float("nan"),
                ms=model.ms if model is not None else float("nan")))
        return out

    def export(self, *, ytvis=None, zip=None, davis=None, coco=None, tool: str = "vpp-studio"):
        """Write the corrected results through :func:`core.export.export_results` (atomic, all or none)."""
        from core.export import VideoExport, export_results

        video = VideoExport(1, self.clip.name, self.clip.frame_names(), self.to_clip_results())
        return export_results([video], ytvis=ytvis, zip=zip, davis=davis, coco=coco,
                              categories=tuple(sorted(self.categories.items())), record=self.run_record(tool))

    def run_record(self, tool: str):
        from core.export import RunRecord, file_sha256

        run = self.run or {}
        model = run.get("model") or self.settings.model_path or self.settings.model_kind
        sha = run.get("model_sha256")
        if sha is None and model and Path(str(model)).is_file():
            sha = file_sha256(model)
        edited = sum(t.protected for t in self._tracks.values())
        return RunRecord(tool=tool, model=str(model), model_sha256=sha, pkr=run.get("pkr", self.settings.pkr),
                         mode=run.get("mode", self.settings.mode),
                         extra={"project": str(self.path) if self.path else None, "tracks": len(self._tracks),
                                "tracks_by_person": edited})


def _inverse(cmd: Command) -> Command:
    """The command that undoes ``cmd`` (its changes reversed, before and after swapped)."""
    return Command(cmd.label, tuple(Change(c.track_id, c.after, c.before) for c in reversed(cmd.changes)),
                   cmd.serial)


def _n_tracks(n: int) -> str:
    return f"{n} track{'s' if n != 1 else ''}"


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
