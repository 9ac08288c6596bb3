"""The document: one clip, its run settings, the model's results, a person's edits, undo, journal, project.

:class:`Document` holds the state and its public API (queries, view state, edits, events); most of its
methods are thin calls into plain functions over a document, one module per side:

- :mod:`core.app.document.passes`: model passes (the model's frames becoming tracks, its categories' labels);
- :mod:`core.app.document.steps`: committing an edit as an undoable command, undo / redo, free track ids;
- :mod:`core.app.document.label_edits`: the project's labels (add, rename, ..., delete) and file imports;
- :mod:`core.app.document.propagation_runs`: propagation and fill-between runs and their commit;
- :mod:`core.app.document.recovery`: the journal (records, replay, recovery);
- :mod:`core.app.document.saving`: loading and saving the project file, its lock;
- :mod:`core.app.document.views`: read-only views (canvas frame, export).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.app.document import edits, label_edits, passes, propagation_runs, recovery, saving, steps, views
from core.app.document.clip import ClipInfo
from core.app.document.history import DEFAULT_UNDO_LIMIT, Command, UndoStack
from core.app.document.journal import JournalWriter
from core.app.document.labels import Label, LabelSet
from core.app.document.project import ProjectData
from core.app.document.project_lock import FileIdentity, ProjectLock
from core.app.document.propagation import FrameReader, Progress, PropagationOptions, PropagationResult, Snap
from core.app.document.steps import n_tracks
from core.app.document.tracks import FrameMask, Review, Track, check_mask, fill_holes
from core.app.document.views import Instance, TrackRow
from core.app.settings import RunSettings
from core.results import ClipResults, CompactFrame

EventKind = Literal["tracks", "history", "settings", "clean", "view", "results", "categories", "path"]


@dataclass(frozen=True)
class DocEvent:
    """What changed: ``tracks`` touched (ids) and ``frames`` affected (None: possibly all)."""

    kind: EventKind
    tracks: frozenset[int] = frozenset()
    frames: frozenset[int] | None = None


class Document:
    """See :mod:`core.app.document` for the rules and an example."""

    def __init__(self, clip: ClipInfo, *, settings: RunSettings | None = None,
                 categories: dict[int, str] | None = None, undo_limit: int = DEFAULT_UNDO_LIMIT) -> None:
        self.clip = clip
        self.settings = settings or RunSettings()
        self._labels = LabelSet.from_names(categories or {})  # the project's labels (core.app.document.labels)
        self._labels_serial = 0  # label edits by a person (they make the document dirty)
        self._model_map: dict[int, int] = {}  # the model's category id -> label id (set_categories)
        self._model_names: dict[int, str] = {}  # the model's category id -> name (to join again by name)
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
        self.journal_note: str | None = None  # why the journal is not beside the project (its place was taken)
        self.read_only: str | None = None  # why this document may not save over its project (claim(); Save As may)
        self._lock: ProjectLock | None = None  # held while a window has the project open (claim / release)
        self._hold = False  # claim() was called: keep the lock of the project saved to
        self._recovered_from: Path | None = None  # the journal this document was rebuilt from (its edits are here)
        self._identity: FileIdentity | None = None  # the project file as read or last written
        self._low_free = 1  # where the search for a free track id goes on once ids reach MAX_TRACK_ID
        self.last_propagation: PropagationResult | None = None  # what the last propagation filled and why it stopped
        self._clean: tuple = self._token()

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def open_clip(cls, path: str | os.PathLike, **kwargs) -> Document:
        """A new document over the frame folder or video at ``path``."""
        return cls(ClipInfo.open(path), **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike, *, undo_limit: int = DEFAULT_UNDO_LIMIT) -> Document:
        """Open a project file (the clip itself need not exist: export works without it)."""
        return saving.load(cls, path, undo_limit=undo_limit)

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

    @property
    def categories(self) -> dict[int, str]:
        """The project's labels as id -> name, in their order (a copy; change them through the label methods)."""
        return self._labels.names()

    @property
    def labels(self) -> tuple[Label, ...]:
        """The project's labels (id, name, colour), in their order."""
        return tuple(self._labels)

    def category_name(self, category_id: int) -> str:
        return self._labels.name(category_id)

    def category_color(self, category_id: int) -> str:
        """The label's colour as ``"#rrggbb"``."""
        return self._labels.color(category_id)

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

        ``preview``: a frame the pass has not reached yet, run alone (see :mod:`core.app.studio`); its
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
        return (self.history.position, self._settings_serial if self.path is not None else 0, self._labels_serial)

    # -- model passes ------------------------------------------------------------------------------
    def begin_pass(self, results: ClipResults, run: dict[str, Any] | None = None) -> None:
        """A new pass starts filling ``results``: the unreviewed model tracks go, a person's tracks stay.

        Not an edit (nothing to undo); frames arrive through :meth:`add_model_frame`.
        """
        passes.begin_pass(self, results, run)

    def add_model_frame(self, frame: CompactFrame) -> None:
        """One frame of the running pass (also stored in :attr:`results`)."""
        passes.add_model_frame(self, frame)

    def _add_frame(self, frame: CompactFrame) -> set[int]:
        return passes.add_frame(self, frame)

    def _run_note(self) -> str:
        return passes.run_note(self)

    # -- settings and categories -------------------------------------------------------------------
    def set_settings(self, settings: RunSettings) -> None:
        if settings == self.settings:
            return
        self.settings = settings
        self._settings_serial += 1
        self._write_journal({"kind": "settings", "settings": settings.to_json()})
        self._emit("settings")

    def set_categories(self, categories: dict[int, str]) -> None:
        """The model's categories (its id -> name): model passes label their tracks with the project's
        label of the same name, created when missing (keeping the model's id when it is free). No
        label is renamed; a label a person renames keeps its model category. A model category never
        declared here is taken as the label of that id."""
        passes.set_categories(self, categories)

    def _model_label(self, category: int, *, create: bool = True) -> int:
        """The label of the model's ``category`` (joined by name again when its label was deleted)."""
        return passes.model_label(self, category, create=create)

    # -- labels (the project's: core.app.document.labels); not undoable, journalled, saved -------------
    def add_category(self, name: str, color=None) -> int:
        """A new label called ``name`` (stripped, not empty) and its id; a name that exists (any case)
        returns that label's id. ``color``: "#rrggbb" or (r, g, b) (default: one per id)."""
        return label_edits.add_category(self, name, color)

    def rename_category(self, category_id: int, name: str) -> None:
        """Rename a label (its tracks follow); refused when another label has the name."""
        label_edits.rename_category(self, category_id, name)

    def recolor_category(self, category_id: int, color) -> None:
        label_edits.recolor_category(self, category_id, color)

    def delete_category(self, category_id: int) -> None:
        """Delete a label no track uses (a ValueError names the tracks that do)."""
        label_edits.delete_category(self, category_id)

    def reorder_categories(self, order: Sequence[int]) -> None:
        """Put the labels in ``order`` (every label id once)."""
        label_edits.reorder_categories(self, order)

    def load_categories(self, path: str | os.PathLike) -> list[int]:
        """Add the labels of a YouTube-VIS ground truth (its ids kept where free) or of a text file with
        one name per line; names that exist are not duplicated. Returns the file's labels' ids, in order."""
        return label_edits.load_categories(self, path)

    def _labels_changed(self, *, by_person: bool = True) -> None:
        label_edits.labels_changed(self, by_person=by_person)

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
        if category_id not in self._labels:
            raise ValueError(f"unknown category {category_id}; known: {self._labels.describe()}")
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
        return self._commit(f"Delete {n_tracks(len(tracks))}", edits.delete(tracks))

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
        return self._commit(f"Merge {n_tracks(len(tracks))} into {tracks[0].id}", edits.merge(tracks[0], tracks[1:]))

    def split(self, track_id: int, frame: int) -> int:
        """Frames ``>= frame`` become a new track; returns its id."""
        [new_id] = self._free_ids(1)
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
        if len(self._labels) and int(category_id) not in self._labels:
            raise ValueError(f"unknown category {category_id}; known: {self._labels.describe()}")
        [new_id] = self._free_ids(1)
        track = Track(new_id, int(category_id), "user", frames={self._frame(frame): FrameMask.from_mask(m, 1.0)},
                      note=note, keyframes=frozenset({self._frame(frame)}))
        self._commit("New track", {new_id: track})
        return new_id

    def add_tracks(self, tracks: Sequence[tuple[int, float, dict[int, dict]]], *, origin: str = "import",
                   note: str = "", label: str = "Import") -> list[int]:
        """Add tracks given as (category_id, score, {frame: RLE}) as one undoable step; returns their ids."""
        updates: dict[int, Track | None] = {}
        ids = []
        free = iter(self._free_ids(len(tracks)))
        for category, score, frames in tracks:
            next_id = next(free)
            fm = {}
            for i, rle in frames.items():
                i = self._frame(i)
                if list(rle["size"]) != [self.clip.height, self.clip.width]:
                    raise ValueError(f"{note or 'import'}: a mask of size {rle['size']} in a clip of "
                                     f"{self.clip.height}x{self.clip.width}")
                fm[i] = FrameMask.from_rle(rle, score)
            updates[next_id] = Track(next_id, int(category), origin, frames=fm, note=note,  # type: ignore[arg-type]
                                     keyframes=frozenset(fm))
            ids.append(next_id)
        self._commit(label, updates)
        return ids

    def import_file(self, path: str | os.PathLike, *, video_id: int | None = None,
                    label: int | None = None) -> list[int]:
        """Import a YTVIS results / ground-truth file or a folder of DAVIS PNG masks for this clip.

        The file's categories join the project's labels by name (missing ones are created; no label
        or track is renamed, see :mod:`core.app.document.labels`). ``label``: the label of a DAVIS
        folder's objects (PNG masks carry no classes; default: a label called "object").
        """
        return label_edits.import_file(self, path, video_id=video_id, label=label)

    # -- keyframes and propagation (see core.app.document.propagation) --------------------------------
    def keyframes(self, track_id: int) -> list[int]:
        """The frames of the track a person drew, edited or imported, in order."""
        return sorted(self.track(track_id).keyframes)

    def propagate(self, track_id: int, start: int, stop: int, *, frames: FrameReader | None = None,
                  snap: bool = False, options: PropagationOptions | None = None,
                  cancel: threading.Event | None = None, progress: Progress | None = None) -> Command | None:
        """Carry the track's mask from frame ``start`` toward ``stop`` (inclusive; backward when
        ``stop < start``) with optical flow, as one undoable command (None: nothing changed).

        Between keyframes inside the range both sides are used; keyframes stay unchanged. The run
        stops early where the mask vanishes or the motion is unreliable: :attr:`last_propagation`
        says which frames were filled, where and why it stopped. ``frames``: a reader of the clip's
        frames (default: the clip opened from disk); ``snap``: swap each mask for the model instance
        of the current pass overlapping it best (IoU >= 0.5). A cancelled run keeps what it finished.
        """
        return propagation_runs.propagate(self, track_id, start, stop, frames=frames, snap=snap, options=options,
                                          cancel=cancel, progress=progress)

    def fill_between(self, track_id: int, frame: int, *, frames: FrameReader | None = None, snap: bool = False,
                     options: PropagationOptions | None = None, cancel: threading.Event | None = None,
                     progress: Progress | None = None) -> Command | None:
        """Fill the frames between the keyframes around ``frame`` from both sides (when ``frame`` is a
        keyframe, both of its gaps: a correction reaches its neighbouring keyframes and no further)."""
        return propagation_runs.fill_between(self, track_id, frame, frames=frames, snap=snap, options=options,
                                             cancel=cancel, progress=progress)

    def model_snap(self) -> Snap | None:
        """A snap onto the current pass's instances (None when no pass ran)."""
        return propagation_runs.model_snap(self)

    def commit_propagation(self, result: PropagationResult) -> Command | None:
        """Apply a propagation computed elsewhere (e.g. on a worker thread) as one undoable step.

        Frames that became keyframes meanwhile are left alone; a track deleted meanwhile raises KeyError.
        """
        return propagation_runs.commit_propagation(self, result)

    def _frame(self, frame: int) -> int:
        f = int(frame)
        if not 0 <= f < self.clip.num_frames:
            raise ValueError(f"frame {frame} is outside the clip (0..{self.clip.num_frames - 1})")
        return f

    def _commit(self, label: str, updates: dict[int, Track | None]) -> Command | None:
        return steps.commit(self, label, updates)

    def undo(self) -> Command | None:
        return steps.undo(self)

    def redo(self) -> Command | None:
        return steps.redo(self)

    def _apply(self, cmd: Command, *, forward: bool) -> None:
        steps.apply(self, cmd, forward=forward)

    def _new_id(self) -> int:
        return steps.new_id(self)

    def _free_ids(self, n: int) -> list[int]:
        """``n`` unused track ids (see :func:`core.app.document.steps.free_ids`)."""
        return steps.free_ids(self, n)

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
    def recover(cls, journal: str | os.PathLike, *, clip: ClipInfo | None = None,
                project: str | os.PathLike | None = None) -> Document:
        """A document rebuilt from a journal left by a crash: its base plus every recorded edit.

        The whole journal is checked and replayed on a fresh document; any problem raises
        :class:`DataError` and nothing is applied. ``clip``: the clip open now, which must be the
        journal's (same frames and size). The result is unsaved (``dirty``) and its undo history is
        the one before the crash; call :meth:`start_journal` to keep recording. ``project``: the
        project the journal must belong to (the one it lies beside); a journal of another clip or
        project, or of another version of it, is refused whole.
        """
        return recovery.recover(cls, journal, clip, project)

    # -- saving ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the project (atomically) to ``path`` (default: where it was opened or last saved).

        The journal restarts beside the saved file (the previous one is deleted once the save is done).
        Refused (:class:`DataError`, nothing written) when another window holds the target's lock
        (:meth:`claim`), when the project file changed on disk since this document read or wrote it,
        or when a link, pipe or device stands in its place.
        """
        return saving.save(self, path)

    def claim(self) -> str | None:
        """Take the project's lock while this document is open in a window (see
        :mod:`core.app.document.project_lock`). Returns None, or why another window keeps it: then
        :attr:`read_only` says so and only a save to another path (Save As) succeeds."""
        return saving.claim(self)

    def release_lock(self) -> None:
        """Give the project's lock back (the window closes the document)."""
        saving.release_lock(self)

    def mark_clean(self) -> None:
        self._clean = self._token()
        self._emit("clean")

    def project_data(self) -> ProjectData:
        return saving.project_data(self)

    # -- export ------------------------------------------------------------------------------------
    def to_clip_results(self, *, include_rejected: bool = False) -> ClipResults:
        """Every frame as the export sees it: the document's tracks (rejected ones left out)."""
        return views.to_clip_results(self, include_rejected=include_rejected)

    def export(self, outputs, *, tool: str = "vpp-studio"):
        """Write the corrected results to ``outputs`` (format name -> path, e.g. ``{"ytvis": "r.json"}``) through
        :func:`core.export.export_results` (atomic, all or none)."""
        return views.export(self, outputs, tool=tool)

    def run_record(self, tool: str):
        return views.run_record(self, tool)

