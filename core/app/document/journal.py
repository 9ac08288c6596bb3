"""The recovery journal: every edit appended to a file the moment it is made, replayed after a crash.

File layout (UTF-8, one record per line): each line is ``<crc32 as 8 hex digits> <JSON>\\n``, the CRC
taken over the JSON's bytes. The first record is the header::

    {"format": "vpp-studio-journal", "version": 1, "clip": {path, num_frames, height, width, ...},
     "base": "/path/project.vppproj" | null, "base_sha256": "..." | null,
     "settings": {...}, "categories": [[id, name], ...], "label_colors": [[id, "#rrggbb"], ...],
     "retired_labels": [[id, name, "#rrggbb"], ...], "tracks": [<track>, ...], "snapshot": false,
     "next_id": n, "pid": 1234, "host": "...", "created": "..."}

``base`` is the project file the edits apply to (null: the clip with no tracks, for a document never
saved); ``base_sha256`` is that file's hash when the journal started, so a journal is never applied
to another version of the project. ``tracks`` holds a person's tracks of a document never saved, or
every track when ``snapshot`` is true (a journal started on edits its project file does not hold).
The records that follow are::

    {"kind": "edit", "label": "...", "changes": [{"id": 7, "before": ..., "after": ...}, ...], "next_id": n}
    {"kind": "undo"} | {"kind": "redo"}       # plus "label", "changes", "next_id" as in an edit (for an undo,
                                              # the inverse step) when the command predates the journal
    {"kind": "pass"}                          # a new model pass replaced the unreviewed model tracks
    {"kind": "settings", "settings": {...}}   # the run settings changed
    {"kind": "categories", "categories": [[id, name], ...], "label_colors": [...], "retired_labels": [...]}
                                              # the project's labels changed (the whole set, in order; journals
                                              # of older versions hold only "categories": default colours)

In a change, ``before`` is ``"current"`` when the replaying document already holds that exact state
(the track is absent, or a person's track, which only journalled edits change), else the whole track;
``after`` is ``null`` (removed), a whole track, or a diff against ``before`` (see
:mod:`core.app.document.codec`).

Every record is written with one ``write`` and flushed and fsync'ed before the edit returns, so
``kill -9`` loses nothing. A last line without its newline is a write torn by a power cut and is
dropped (that edit was never acknowledged); any other damage (bad CRC, bad JSON, unknown record,
another clip) refuses the whole journal: it is checked completely before anything is applied.
While a document holds its journal it keeps an exclusive ``flock`` on it, so a second app instance
does not offer to "recover" a journal that is still in use.

The journal is a file written beside a person's files, so it is handled as one that may not be ours:
it is never opened through a symbolic link, never a pipe or device (refused before it is opened: nothing
hangs), never another user's file. A new journal is written whole under a temporary name and renamed
into place, and only over an idle journal of ours that holds no unsaved work: a journal holding edits
(or one that cannot be read, which may hold some) is never truncated, replaced or removed until its
edits are saved or a person discards them (:class:`JournalBusy` says why the place is taken).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.app.document import strict_json
from core.atomic import NotOurFile, check_regular, fsync_dir, open_regular, read_regular, remove_stale_temps
from core.errors import DataError
from core.regular_files import unlink_if_still

FORMAT = "vpp-studio-journal"
VERSION = 1
SUFFIX = ".journal"
RECORD_KINDS = ("edit", "undo", "redo", "pass", "settings", "categories")
MAX_JOURNAL_BYTES = 2 * 2**30

try:  # POSIX; elsewhere a journal's liveness is not checked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def journal_path_for(project: str | os.PathLike) -> Path:
    """Where the journal of a saved project lives: ``.<name>.journal`` beside it."""
    p = Path(project)
    return p.with_name(f".{p.name}{SUFFIX}")


def unsaved_journal_path(data_dir: str | os.PathLike, clip_name: str) -> Path:
    """A fresh journal path for a document never saved, in ``<data_dir>/journals/``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in clip_name)[:60] or "clip"
    return Path(data_dir) / "journals" / f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}{SUFFIX}"


def encode_line(record: dict[str, Any]) -> bytes:
    body = json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return b"%08x " % zlib.crc32(body) + body + b"\n"


class JournalBusy(DataError):
    """The journal's place is taken: a journal in use, one holding unsaved edits, or not a journal of ours."""


def _lock(fd: int, path: Path) -> None:
    if fcntl is None:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        raise JournalBusy(f"{path}: the journal is in use by another VPP Studio window") from exc


def _read_fd(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 24):
        chunks.append(chunk)
    return b"".join(chunks)


class JournalWriter:
    """Appends records to a journal file (created with its header), holding an exclusive lock."""

    def __init__(self, path: str | os.PathLike, header: dict[str, Any] | None, *, take_over: bool = False) -> None:
        """Start a new journal with ``header``, or (``header=None``) continue an existing one.

        Starting never replaces a journal that is in use or holds unsaved edits (unless ``take_over``:
        the caller holds every one of them, e.g. the document recovered from it), nor anything but a
        regular file of ours (:class:`JournalBusy`). Continuing drops a torn last line first, so new
        records follow the last complete one.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        if header is None:
            fd = open_regular(self.path, os.O_RDWR | os.O_APPEND, what="journal", owned=True)
            try:
                if os.fstat(fd).st_nlink > 1:  # appending would also change the file's other names
                    raise JournalBusy(f"{self.path}: the journal has other names (hard links); it is not written "
                                      "to. Recover it into a project and save, or move it away")
                _lock(fd, self.path)
                data = _read_fd(fd)
                end = data.rfind(b"\n") + 1
                if end != len(data):
                    os.ftruncate(fd, end)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return
        header = {"format": FORMAT, "version": VERSION, "pid": os.getpid(), "host": socket.gethostname(),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **header}
        check_place(self.path, take_over)  # a clear refusal before anything is written
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            _lock(fd, Path(tmp))
            self._fd = fd
            self.append(header)
            _put_in_place(tmp, self.path, take_over)
        except BaseException:
            self._fd = None
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        remove_stale_temps(self.path.parent, self.path.name)
        fsync_dir(self.path.parent)

    def append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            raise RuntimeError(f"journal {self.path} is closed")
        line = encode_line(record)
        written = 0
        while written < len(line):
            written += os.write(self._fd, line[written:])
        os.fsync(self._fd)

    def close(self, *, delete: bool = False) -> None:
        """Close the journal (``delete``: and remove it, only while its name is still this file)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if delete:
            unlink_if_still(fd, self.path)
        else:
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd is None


def check_place(path: Path, take_over: bool = False) -> None:
    """:class:`JournalBusy` unless a new journal may be put at ``path``: nothing is there, or a journal
    of ours no window holds and that holds no unsaved edits (a session that ended before any edit;
    ``take_over``: edits the caller holds)."""
    try:
        st = check_regular(path, "journal", owned=True)
    except NotOurFile as exc:
        raise JournalBusy(str(exc)) from None
    if st is None:
        return
    fd = open_regular(path, os.O_RDONLY, what="journal", owned=True)
    try:
        _lock(fd, path)
        if not take_over:
            _check_idle(fd, path)
    finally:
        os.close(fd)


def _check_idle(fd: int, path: Path) -> None:
    """:class:`JournalBusy` when the journal open at ``fd`` (its lock held) holds unsaved work."""
    try:
        pending = pending_edits(_parse(_read_fd(fd), path))
    except DataError as exc:
        raise JournalBusy(f"{path}: a journal is there that cannot be read, so it may hold unsaved edits; it is "
                          f"kept ({exc}). Recover or discard it first (open the project in VPP Studio), or move "
                          "it away") from None
    if pending:
        raise JournalBusy(f"{path}: holds {pending} edit(s) not saved in the project; it is kept until they are "
                          "recovered or discarded (open the project in VPP Studio, or `vpp export --recover`)")


def _put_in_place(tmp: str, path: Path, take_over: bool) -> None:
    """Rename the new journal ``tmp`` to ``path``: into an empty place, or over an idle journal of ours
    (checked again, with its lock held, so that nothing another window wrote meanwhile is replaced)."""
    if check_regular(path, "journal", owned=True) is None:
        try:
            os.link(tmp, path)  # never replaces what another process put there meanwhile
        except FileExistsError:
            raise JournalBusy(f"{path}: another window started a journal here at the same time") from None
        except OSError:  # no hard links on this file system
            os.rename(tmp, path)
        else:
            os.unlink(tmp)
        return
    old = open_regular(path, os.O_RDONLY, what="journal", owned=True)
    try:
        _lock(old, path)
        if not take_over:
            _check_idle(old, path)
        st, now = os.fstat(old), os.lstat(path)
        if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
            raise JournalBusy(f"{path}: was replaced while a new journal was started; try again")
        os.replace(tmp, path)
    finally:
        os.close(old)


@dataclass(frozen=True)
class JournalContents:
    path: Path
    header: dict[str, Any]
    records: tuple[dict[str, Any], ...]
    torn_tail: bool  # the last line was cut off (dropped)

    @property
    def edits(self) -> int:
        return sum(r["kind"] in ("edit", "undo", "redo") for r in self.records)


def read_journal(path: str | os.PathLike) -> JournalContents:
    """Read and check a whole journal; :class:`DataError` naming the file and line for any damage.

    Only a regular file is read, never through a symbolic link (a pipe or device is refused unopened)."""
    path = Path(path)
    try:
        raw = read_regular(path, MAX_JOURNAL_BYTES, what="journal", follow=False)
    except NotOurFile:
        raise
    except OSError as exc:
        raise DataError(f"{path}: cannot read the journal ({exc.strerror or exc})") from exc
    return _parse(raw, path)


def _parse(raw: bytes, path: Path) -> JournalContents:
    lines = raw.split(b"\n")
    torn = lines[-1] != b""
    complete = lines[:-1]
    if not complete:
        raise DataError(f"{path}: the journal is empty or has no complete header; it cannot be recovered")
    records = []
    for number, line in enumerate(complete, start=1):
        records.append(_decode_line(line, path, number))
    header, body = records[0], records[1:]
    if header.get("format") != FORMAT:
        raise DataError(f"{path}: not a VPP Studio journal (format {header.get('format')!r})")
    if header.get("version") != VERSION:
        raise DataError(f"{path}: journal version {header.get('version')!r} is not supported (this VPP Studio "
                        f"reads version {VERSION}); open it with the version that wrote it")
    if not isinstance(header.get("clip"), dict):
        raise DataError(f"{path}: the journal header does not say which clip it belongs to")
    for number, rec in enumerate(body, start=2):
        if rec.get("kind") not in RECORD_KINDS:
            raise DataError(f"{path}: line {number}: unknown record kind {rec.get('kind')!r}")
    return JournalContents(path, header, tuple(body), torn)


def pending_edits(contents: JournalContents) -> int:
    """How many changes of a person's the journal holds: edits, undo / redo, label changes made by a
    person, and one for a header holding tracks (a snapshot of unsaved edits, or a person's tracks of a
    document never saved). 0: nothing would be lost by removing it."""
    h = contents.header
    labels = sum(r["kind"] == "categories" and r.get("person", True) is not False for r in contents.records)
    held = bool(h.get("snapshot")) or (not h.get("base") and bool(h.get("tracks")))
    return contents.edits + labels + int(held)


def unsaved_edits(path: str | os.PathLike) -> int | None:
    """How many edits the journal at ``path`` holds that its project does not: 0 for none (no journal, or
    only its header, as right after a save), None when it cannot be read (it may hold some)."""
    path = Path(path)
    if not os.path.lexists(path):
        return 0
    try:
        contents = read_journal(path)
    except DataError:
        return None
    return pending_edits(contents)


def _decode_line(line: bytes, path: Path, number: int) -> dict[str, Any]:
    crc, _, body = line.partition(b" ")
    try:
        ok = len(crc) == 8 and int(crc, 16) == zlib.crc32(body)
    except ValueError:
        ok = False
    if not ok:
        raise DataError(f"{path}: line {number} is damaged (checksum mismatch); the journal is refused as a "
                        "whole so that no edit is applied half-way")
    try:
        record = strict_json.loads(body, path, f"line {number}: ")
    except DataError:
        raise
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path}: line {number} is not valid JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise DataError(f"{path}: line {number} is not a journal record")
    return record


def journal_in_use(path: str | os.PathLike) -> bool:
    """True when another live process holds the journal (its lock); False for one left by a crash."""
    if fcntl is None:  # pragma: no cover - Windows
        return False
    try:
        fd = open_regular(path, os.O_RDONLY, what="journal")
    except (OSError, DataError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass(frozen=True)
class RecoveryCandidate:
    """A journal left behind by a crash: what it is about and how many edits it holds."""

    path: Path
    clip: str
    base: str | None
    edits: int
    created: str
    problem: str | None  # why it cannot be recovered (then it can only be discarded)


def find_recoverable(data_dir: str | os.PathLike | None = None, projects=()) -> list[RecoveryCandidate]:
    """Journals in ``<data_dir>/journals`` and beside ``projects`` that no live process holds.

    A journal holding no unsaved edits (a session that ended before any edit) is removed; one that
    cannot be read, or something else in a journal's place (a link, a pipe), is listed with its problem."""
    paths: list[Path] = []
    if data_dir is not None and (Path(data_dir) / "journals").is_dir():
        paths += sorted((Path(data_dir) / "journals").glob(f"*{SUFFIX}"))
    for project in projects:
        j = journal_path_for(project)
        if os.path.lexists(j) and j not in paths:
            paths.append(j)
    out = []
    for p in paths:
        candidate = recovery_candidate(p)
        if candidate is not None:
            out.append(candidate)
    return out


def recovery_candidate(p: Path) -> RecoveryCandidate | None:
    """What the journal at ``p`` offers to recover; None when nothing (absent, in use by a live window,
    or idle: then it is removed)."""
    try:
        if check_regular(p, "journal", owned=True) is None:
            return None
    except NotOurFile as exc:
        return RecoveryCandidate(p, "?", None, 0, "", str(exc))
    if journal_in_use(p):
        return None
    try:
        contents = read_journal(p)
    except DataError as exc:
        return RecoveryCandidate(p, "?", None, 0, "", str(exc))
    pending = pending_edits(contents)
    if pending == 0:  # nothing to recover: a session that ended before any edit
        with contextlib.suppress(OSError, DataError):
            fd = open_regular(p, os.O_RDONLY, what="journal", owned=True)
            try:
                _lock(fd, p)
                _check_idle(fd, p)
                os.unlink(p)
            finally:
                os.close(fd)
        return None
    h = contents.header
    return RecoveryCandidate(p, str(h["clip"].get("path", "?")), h.get("base"), max(contents.edits, 1),
                             str(h.get("created", "")), None)
