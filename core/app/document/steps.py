"""A document's undoable steps: committing a command, undo / redo, applying its changes; free track ids.

Plain functions over a :class:`~core.app.document.document.Document`; its ``undo`` and ``redo`` (and
private ``_commit``, ``_apply``, ``_new_id``, ``_free_ids``) methods call them. Every edit is one
:class:`~core.app.document.history.Command` of whole-track changes: journalled (:mod:`core.app.document.recovery`)
before it is pushed on the undo stack and applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.app.document import recovery
from core.app.document.codec import MAX_TRACK_ID
from core.app.document.history import Change, Command
from core.app.document.tracks import Track

if TYPE_CHECKING:
    from core.app.document.document import Document


def n_tracks(n: int) -> str:
    """``"1 track"``, ``"2 tracks"``: for command labels and messages."""
    return f"{n} track{'s' if n != 1 else ''}"


def commit(doc: Document, label: str, updates: dict[int, Track | None]) -> Command | None:
    """Make ``updates`` (track id -> new track, None: deleted) one undoable command on ``doc`` (None:
    nothing changes)."""
    changes = [Change(tid, doc._tracks.get(tid), new) for tid, new in updates.items()
               if not (new is None and tid not in doc._tracks)]
    if not changes:
        return None
    cmd = Command.make(label, changes)
    doc._next_id = min(max(doc._next_id, max(c.track_id for c in changes) + 1), MAX_TRACK_ID + 1)
    doc._write_journal(recovery.edit_record(doc, cmd))
    doc._journalled.add(cmd.serial)
    doc.history.push(cmd)
    doc._apply(cmd, forward=True)
    return cmd


def undo(doc: Document) -> Command | None:
    cmd = doc.history.undo()
    if cmd is not None:
        doc._write_journal(recovery.history_record(doc, "undo", cmd))
        doc._apply(cmd, forward=False)
    return cmd


def redo(doc: Document) -> Command | None:
    cmd = doc.history.redo()
    if cmd is not None:
        doc._write_journal(recovery.history_record(doc, "redo", cmd))
        doc._apply(cmd, forward=True)
    return cmd


def apply(doc: Document, cmd: Command, *, forward: bool) -> None:
    """Put ``cmd``'s after (``forward``) or before states into ``doc`` and say what changed."""
    live_docs = {d: p for p, d in doc._live.items()}
    frames: set[int] = set()
    restored: set[int] = set()
    for ch in cmd.changes if forward else reversed(cmd.changes):
        state = ch.after if forward else ch.before
        for t in (ch.before, ch.after):
            if t is not None:
                frames.update(t.frames)
        if ch.track_id in live_docs:  # a person touched it: the pass never writes into it again
            del doc._live[live_docs[ch.track_id]]
            doc._votes.pop(ch.track_id, None)
        if state is None:
            doc._tracks.pop(ch.track_id, None)
            doc.hidden.discard(ch.track_id)
            doc.selected = tuple(t for t in doc.selected if t != ch.track_id)
            if doc.solo == ch.track_id:
                doc.solo = None
        else:
            doc._tracks[ch.track_id] = state
            restored.add(state.category_id)
    if doc._labels.revive(restored):  # undo / redo brought back a track of a deleted label
        doc._labels_changed(by_person=False)
    doc._emit("tracks", [c.track_id for c in cmd.changes], frames)
    doc._emit("history")


def new_id(doc: Document) -> int:
    """A free track id for a model track (``doc``'s next id moves past it)."""
    [tid] = doc._free_ids(1)
    doc._next_id = max(doc._next_id, tid + 1)
    return tid


def free_ids(doc: Document, n: int) -> list[int]:
    """``n`` unused track ids: the next ones, or, once ids reached :data:`MAX_TRACK_ID` (the largest
    a project file holds), the lowest free ones, so that every saved project opens again."""
    out: list[int] = []
    taken: set[int] = set()
    high = doc._next_id <= MAX_TRACK_ID
    tid, restarts = (doc._next_id if high else doc._low_free), 0
    while len(out) < n:
        if tid > MAX_TRACK_ID:  # from the lowest ids on (once more from 1, for ids freed meanwhile)
            if not high:
                restarts += 1
                if restarts > 1:
                    raise ValueError(f"no free track id is left (ids go up to {MAX_TRACK_ID})")
            high, tid = False, (doc._low_free if restarts == 0 else 1)
            continue
        if tid not in doc._tracks and tid not in taken:
            out.append(tid)
            taken.add(tid)
        tid += 1
    if not high:
        doc._low_free = tid
    return out
