"""A document's project file: loading it, saving it (lock and on-disk checks), claiming its lock.

Plain functions over a :class:`~core.app.document.document.Document`; its ``load``, ``save``, ``claim``,
``release_lock`` and ``project_data`` methods call them. The file format is :mod:`core.app.document.project`'s,
the lock :mod:`core.app.document.project_lock`'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from core.app.document.labels import LabelSet
from core.app.document.project import ProjectData, read_project, write_project
from core.app.document.project_lock import ProjectInUse, ProjectLock
from core.atomic import NotOurFile, real_target
from core.errors import DataError

if TYPE_CHECKING:
    from core.app.document.document import Document


def load(cls: type[Document], path: str | os.PathLike, *, undo_limit: int) -> Document:
    """A ``cls`` opened from the project file at ``path`` (see :meth:`Document.load`)."""
    data = read_project(path)
    doc = cls(data.clip, settings=data.settings, undo_limit=undo_limit)
    try:
        doc._labels = LabelSet.from_names(data.categories, data.label_colors)
    except ValueError as exc:
        raise DataError(f"{path}: bad label: {exc}") from exc
    doc._tracks = {t.id: t for t in data.tracks}
    doc._next_id = data.next_track_id
    doc.hidden, doc.solo, doc.run = data.hidden, data.solo, data.run
    doc._extra = data.extra
    doc.path = real_target(path)  # its folder resolved, its own name kept: a link there is never saved through
    doc._identity = data.identity
    doc._clean = doc._token()
    return doc


def save(doc: Document, path: str | os.PathLike | None = None) -> Path:
    """Write ``doc``'s project (atomically) to ``path``; see :meth:`Document.save` for what is refused."""
    target = Path(path) if path is not None else doc.path
    if target is None:
        raise ValueError("the document was never saved: give a path")
    target = real_target(target)
    if target.exists() and target.is_dir() and not target.is_symlink():
        raise DataError(f"{target}: is a folder; choose a project file name (*.vppproj)")
    had_journal = doc._journal is not None
    lock = None
    if doc._lock is None or doc._lock.project != target:
        try:
            lock = ProjectLock.acquire(target)
        except NotOurFile:  # a link, pipe or device in the lock's place
            raise
        except OSError:  # no lock file can be made there: the write below says why it fails, or succeeds
            lock = None
    try:
        if target == doc.path and doc._identity is not None:
            doc._identity.check_unchanged(target)
        identity = write_project(target, doc.project_data())
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if lock is not None and doc._hold:  # this window now holds the project it saved to
        doc.release_lock()
        doc._lock, doc._hold, doc.read_only = lock, True, None
    elif lock is not None:
        lock.release()
    doc._identity = identity
    old_path = doc.path
    doc.path = target
    doc._clean = doc._token()
    if had_journal:
        doc.stop_journal(delete=True)
        try:
            doc.start_journal()
        except (DataError, OSError) as exc:  # the project is saved; say that edits are not journalled now
            doc.journal_error = str(exc)
    if old_path != target:
        doc._emit("path")
    doc._emit("clean")
    return target


def claim(doc: Document) -> str | None:
    """Take the lock of ``doc``'s project (see :meth:`Document.claim`); None, or why another window keeps it."""
    doc._hold = True
    if doc.path is None or doc._lock is not None:
        return None
    try:
        doc._lock = ProjectLock.acquire(doc.path)
        doc.read_only = None
    except (DataError, OSError) as exc:
        doc.read_only = str(exc) if isinstance(exc, ProjectInUse) else f"{doc.path}: cannot be locked ({exc})"
    return doc.read_only


def release_lock(doc: Document) -> None:
    """Give the lock of ``doc``'s project back."""
    if doc._lock is not None:
        doc._lock.release()
        doc._lock = None
    doc._hold = False


def project_data(doc: Document) -> ProjectData:
    """What a project file of ``doc`` holds."""
    return ProjectData(doc.clip, doc.settings, doc._labels.names(), list(doc._tracks.values()),
                       doc._next_id, set(doc.hidden), doc.solo, doc.run, dict(doc._extra),
                       {k.id: k.color for k in doc._labels})
