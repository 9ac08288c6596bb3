"""The document's journal side: starting a journal, its edit / undo / redo records, and replaying one.

Plain functions over a :class:`~core.app.document.document.Document`; its ``start_journal``,
``resume_journal``, ``stop_journal`` and ``recover`` methods call them. The file format is
:mod:`core.app.document.journal`'s.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.app.document.clip import ClipInfo
from core.app.document.codec import MAX_TRACK_ID, apply_diff, track_diff, track_from_json, track_to_json
from core.app.document.history import Change, Command
from core.app.document.journal import JournalBusy, JournalWriter, journal_path_for, read_journal, unsaved_journal_path
from core.app.document.labels import LabelSet
from core.app.settings import RunSettings
from core.errors import DataError
from core.multi_commit import real_target

if TYPE_CHECKING:
    from core.app.document.document import Document


# -- recording -------------------------------------------------------------------------------------
def start_journal(doc: Document, data_dir: str | os.PathLike | None = None) -> Path:
    """Open a new journal for ``doc`` (beside its project, else in ``<data_dir>/journals``).

    The place beside the project may be taken (a journal of another window, or one holding edits
    not recovered yet, which is never replaced): the journal then goes to ``<data_dir>/journals``
    (its header names the project; :attr:`Document.journal_note` says why), or, without a data
    folder, :class:`JournalBusy` is raised."""
    if data_dir is not None:
        doc._journal_dir = Path(data_dir)
    doc.stop_journal(delete=False)
    doc.journal_note = None
    if doc.path is not None:
        base, sha = str(doc.path), sha256(doc.path)
    elif doc._journal_dir is not None:
        base, sha = None, None
    else:
        raise ValueError("an unsaved document needs a data_dir for its journal")
    # a saved project with edits not in its file: the header holds every track (the state to replay onto)
    snapshot = base is not None and doc.dirty
    header = {
        "clip": doc.clip.to_json(), "base": base, "base_sha256": sha, "settings": doc.settings.to_json(),
        **doc._labels.to_json(),  # categories (in order), label_colors, retired_labels
        "tracks": [track_to_json(t) for t in doc._tracks.values() if snapshot or (base is None and t.protected)],
        "snapshot": snapshot, "next_id": doc._next_id,
    }
    if doc.path is not None:
        path = journal_path_for(doc.path)
        try:  # the journal this document was recovered from holds nothing it does not hold itself
            doc._journal = JournalWriter(path, header, take_over=doc._recovered_from == real_target(path))
        except JournalBusy as exc:
            if doc._journal_dir is None:
                raise
            doc.journal_note = str(exc)
    if doc._journal is None:
        path = unsaved_journal_path(doc._journal_dir, doc.clip.name)
        doc._journal = JournalWriter(path, header)
    doc._recovered_from = None
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
def recover(cls: type[Document], journal: str | os.PathLike, clip: ClipInfo | None = None,
            project: str | os.PathLike | None = None) -> Document:
    """A ``cls`` rebuilt from ``journal``: its base plus every recorded edit (see :meth:`Document.recover`).

    ``project``: the project the journal must belong to (the one it lies beside). A journal of a clip
    never saved, of another project or of another version of it is then refused whole."""
    contents = read_journal(journal)
    h, src = contents.header, Path(journal)
    if project is not None:
        h = {**h, "base": _check_owner(h, src, Path(project))}
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
            doc._labels = LabelSet.from_json(h, src)
    else:
        doc = cls(jclip, settings=RunSettings.from_json(h.get("settings", {}), src))
        doc._labels = LabelSet.from_json(h, src)
    if not h.get("base") or h.get("snapshot"):
        for t in h.get("tracks", []):
            tr = track_from_json(t, num_frames=jclip.num_frames, height=jclip.height, width=jclip.width,
                                 source=src)
            doc._tracks[tr.id] = tr
        try:
            first_free = next_id(h.get("next_id", 1), src)
        except ValueError as exc:
            raise DataError(f"{src}: line 1 (header): {exc}") from exc
        doc._next_id = max([first_free, *(t + 1 for t in doc._tracks)])
        doc.hidden &= set(doc._tracks)
        doc.solo = doc.solo if doc.solo in doc._tracks else None
    doc._recovered_from = real_target(src)
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


def next_id(value: Any, src: Path) -> int:
    """A journal's ``next_id``: an integer; a value past the last id a file can hold is capped (new ids
    are always checked for room, see :meth:`Document._free_ids`)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'next_id' must be a positive integer, got {value!r:.40}")
    return min(value, MAX_TRACK_ID + 1)


def _check_owner(h: dict[str, Any], src: Path, project: Path) -> str:
    """The path to load as the journal's base: ``project``, once the header says the journal is its own
    (a project base whose content at the journal's start was this file's, and the same clip)."""
    if not h.get("base"):
        raise DataError(f"{src}: is the journal of a clip never saved ({h['clip'].get('path', '?')}), not of the "
                        f"project {project}; it is refused whole. Open it in VPP Studio (it is offered for "
                        "recovery at start) or move it away")
    if not project.is_file():
        raise DataError(f"{src}: its project {project} is not a file")
    if os.path.exists(h["base"]) and not os.path.samefile(h["base"], project):
        # another project that still exists: refused even when both files hold the same bytes
        raise DataError(f"{src}: belongs to the project {h['base']}, not to {project} (another project); the "
                        "journal is refused whole and nothing is applied")
    if sha256(project) != h.get("base_sha256"):
        same = os.path.exists(h["base"]) and os.path.samefile(h["base"], project)
        if same:
            raise DataError(f"{src}: the project {project} was changed after this journal started; the edits "
                            "belong to an older version and are not applied")
        raise DataError(f"{src}: belongs to the project {h['base']}, not to {project} (another project or "
                        "another version of it); the journal is refused whole and nothing is applied")
    from core.app.document.project import read_project

    theirs = read_project(project).clip
    clip = h["clip"]
    if (clip.get("path"), clip.get("num_frames"), clip.get("height"), clip.get("width")) != (
            theirs.path, theirs.num_frames, theirs.height, theirs.width):
        raise DataError(f"{src}: is a journal of the clip {clip.get('path', '?')}, not of {project}'s clip "
                        f"{theirs.path}; it is refused whole")
    return str(project)


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
    elif kind == "categories":  # the whole label set (older journals: names only)
        doc._labels = LabelSet.from_json(rec, src)
    elif kind == "edit":
        cmd = command_from(doc, rec, src)
        doc.history.push(cmd)
        doc._apply(cmd, forward=True)
        doc._next_id = max(doc._next_id, next_id(rec.get("next_id", 1), src))
    else:  # read_journal already refused unknown kinds
        raise ValueError(f"unknown record kind {kind!r}")


def command_from(doc: Document, rec: dict[str, Any], src: Path) -> Command:
    """The command of an edit record (its ``before`` states as ``doc`` holds them now)."""
    shape = {"num_frames": doc.clip.num_frames, "height": doc.clip.height, "width": doc.clip.width}
    changes = []
    if not isinstance(rec["changes"], list):
        raise ValueError("'changes' must be a list")
    for ch in rec["changes"]:
        tid = ch["id"]
        if isinstance(tid, bool) or not isinstance(tid, int) or not 0 <= tid <= MAX_TRACK_ID:
            raise ValueError(f"a change names track {tid!r:.40}; ids are integers in 0..{MAX_TRACK_ID}")
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
        for state in (before, after):
            if state is not None and state.id != tid:  # else two tracks would share an id once saved
                raise ValueError(f"a change of track {tid} holds track {state.id}")
        changes.append(Change(tid, before, after))
    return Command.make(str(rec.get("label", "Edit")), changes)
