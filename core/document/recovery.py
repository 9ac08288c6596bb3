"""The document's journal side: starting a journal, its edit / undo / redo records, and replaying one.

Plain functions over a :class:`~core.document.document.Document`; its ``start_journal``,
``resume_journal``, ``stop_journal`` and ``recover`` methods call them. The file format is
:mod:`core.document.journal`'s.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.document.clip import ClipInfo, RunSettings
from core.document.codec import apply_diff, track_diff, track_from_json, track_to_json
from core.document.history import Change, Command
from core.document.journal import JournalWriter, journal_path_for, read_journal, unsaved_journal_path
from core.errors import DataError

if TYPE_CHECKING:
    from core.document.document import Document


# -- recording -------------------------------------------------------------------------------------
def start_journal(doc: Document, data_dir: str | os.PathLike | None = None) -> Path:
    """Open a new journal for ``doc`` (beside its project, else in ``<data_dir>/journals``)."""
    if data_dir is not None:
        doc._journal_dir = Path(data_dir)
    doc.stop_journal(delete=False)
    if doc.path is not None:
        path, base, sha = journal_path_for(doc.path), str(doc.path), sha256(doc.path)
    elif doc._journal_dir is not None:
        path, base, sha = unsaved_journal_path(doc._journal_dir, doc.clip.name), None, None
    else:
        raise ValueError("an unsaved document needs a data_dir for its journal")
    # a saved project with edits not in its file: the header holds every track (the state to replay onto)
    snapshot = base is not None and doc.dirty
    doc._journal = JournalWriter(path, {
        "clip": doc.clip.to_json(), "base": base, "base_sha256": sha, "settings": doc.settings.to_json(),
        "categories": [[k, v] for k, v in sorted(doc.categories.items())],
        "tracks": [track_to_json(t) for t in doc._tracks.values() if snapshot or (base is None and t.protected)],
        "snapshot": snapshot, "next_id": doc._next_id,
    })
    doc._journalled = set()
    return path


def resume_journal(doc: Document, path: str | os.PathLike) -> None:
    """Keep recording into the journal ``doc`` was recovered from (it holds its edits)."""
    doc.stop_journal(delete=False)
    doc._journal = JournalWriter(path, None)
    doc._journalled = doc.history.serials()


def stop_journal(doc: Document, *, delete: bool = True) -> None:
    """Close ``doc``'s journal (``delete``: the edits are safe elsewhere, e.g. saved or discarded)."""
    if doc._journal is not None:
        doc._journal.close(delete=delete)
        doc._journal = None


def edit_record(doc: Document, cmd: Command) -> dict[str, Any]:
    """The ``edit`` record of ``cmd``, just made on ``doc``."""
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
    return {"kind": "edit", "label": cmd.label, "changes": changes, "next_id": doc._next_id}


def history_record(doc: Document, kind: str, cmd: Command) -> dict[str, Any]:
    """An undo / redo record. A command made before the journal started (e.g. before a save) is not in
    it, so the record carries that command's step (as an edit record would) for the replay."""
    if doc._journal is None or doc._replaying or cmd.serial in doc._journalled:
        return {"kind": kind}
    doc._journalled.add(cmd.serial)
    return {**edit_record(doc, cmd if kind == "redo" else inverse(cmd)), "kind": kind}


def inverse(cmd: Command) -> Command:
    """The command that undoes ``cmd`` (its changes reversed, before and after swapped)."""
    return Command(cmd.label, tuple(Change(c.track_id, c.after, c.before) for c in reversed(cmd.changes)),
                   cmd.serial)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- recovering ------------------------------------------------------------------------------------
def recover(cls: type[Document], journal: str | os.PathLike, clip: ClipInfo | None = None) -> Document:
    """A ``cls`` rebuilt from ``journal``: its base plus every recorded edit (see :meth:`Document.recover`)."""
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
        if sha256(base) != h.get("base_sha256"):
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
                replay(doc, rec, src)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise DataError(f"{src}: line {number} ({rec.get('kind')}) does not apply: {exc}") from exc
    finally:
        doc._replaying = False
    doc._clean = (None,)  # recovered edits are not in any file yet
    return doc


def replay(doc: Document, rec: dict[str, Any], src: Path) -> None:
    """Apply one journal record (after the header) to ``doc``."""
    kind = rec["kind"]
    if kind in ("undo", "redo") and "changes" in rec:  # of a command made before the journal started
        step = command_from(doc, rec, src)
        cmd = step if kind == "redo" else inverse(step)
        doc.history.insert(cmd, undone=kind == "undo")
        doc._apply(cmd, forward=kind == "redo")
    elif kind == "undo":
        if doc.undo() is None:
            raise ValueError("nothing to undo")
    elif kind == "redo":
        if doc.redo() is None:
            raise ValueError("nothing to redo")
    elif kind == "pass":
        for tid in [t for t, tr in doc._tracks.items() if not tr.protected]:
            del doc._tracks[tid]
    elif kind == "settings":
        doc.settings = RunSettings.from_json(rec["settings"], src)
    elif kind == "categories":
        doc.categories = {int(k): str(v) for k, v in rec["categories"]}
    elif kind == "edit":
        cmd = command_from(doc, rec, src)
        doc.history.push(cmd)
        doc._apply(cmd, forward=True)
        doc._next_id = max(doc._next_id, int(rec.get("next_id", 1)))
    else:  # read_journal already refused unknown kinds
        raise ValueError(f"unknown record kind {kind!r}")


def command_from(doc: Document, rec: dict[str, Any], src: Path) -> Command:
    """The command of an edit record (its ``before`` states as ``doc`` holds them now)."""
    shape = {"num_frames": doc.clip.num_frames, "height": doc.clip.height, "width": doc.clip.width}
    changes = []
    for ch in rec["changes"]:
        tid = int(ch["id"])
        if ch["before"] == "current":
            before = doc._tracks.get(tid)
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
