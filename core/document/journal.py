"""The recovery journal: every edit appended to a file the moment it is made, replayed after a crash.

File layout (UTF-8, one record per line): each line is ``<crc32 as 8 hex digits> <JSON>\\n``, the CRC
taken over the JSON's bytes. The first record is the header::

    {"format": "vpp-studio-journal", "version": 1, "clip": {path, num_frames, height, width, ...},
     "base": "/path/project.vppproj" | null, "base_sha256": "..." | null,
     "settings": {...}, "categories": [[id, name], ...], "tracks": [<track>, ...], "snapshot": false,
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
    {"kind": "categories", "categories": [[id, name], ...]}

In a change, ``before`` is ``"current"`` when the replaying document already holds that exact state
(the track is absent, or a person's track, which only journalled edits change), else the whole track;
``after`` is ``null`` (removed), a whole track, or a diff against ``before`` (see
:mod:`core.document.codec`).

Every record is written with one ``write`` and flushed and fsync'ed before the edit returns, so
``kill -9`` loses nothing. A last line without its newline is a write torn by a power cut and is
dropped (that edit was never acknowledged); any other damage (bad CRC, bad JSON, unknown record,
another clip) refuses the whole journal: it is checked completely before anything is applied.
While a document holds its journal it keeps an exclusive ``flock`` on it, so a second app instance
does not offer to "recover" a journal that is still in use.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import DataError

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


class JournalWriter:
    """Appends records to a journal file (created with its header), holding an exclusive lock."""

    def __init__(self, path: str | os.PathLike, header: dict[str, Any] | None) -> None:
        """Start a new journal with ``header``, or (``header=None``) continue an existing one.

        Continuing drops a torn last line first, so new records follow the last complete one.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
        flags |= os.O_CREAT if header is not None else os.O_APPEND  # truncated below, once the lock is held
        fd = os.open(self.path, flags, 0o600)
        self._fd: int | None = fd
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                self._fd = None
                raise DataError(f"{self.path}: the journal is in use by another VPP Studio window") from exc
        if header is not None:
            os.ftruncate(fd, 0)
        if header is None:
            data = self.path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                os.ftruncate(fd, end)
            return
        header = {"format": FORMAT, "version": VERSION, "pid": os.getpid(), "host": socket.gethostname(),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **header}
        self.append(header)
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            raise RuntimeError(f"journal {self.path} is closed")
        line = encode_line(record)
        written = 0
        while written < len(line):
            written += os.write(self._fd, line[written:])
        os.fsync(self._fd)

    def close(self, *, delete: bool = False) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if delete:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    @property
    def closed(self) -> bool:
        return self._fd is None


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
    """Read and check a whole journal; :class:`DataError` naming the file and line for any damage."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JOURNAL_BYTES:
            raise DataError(f"{path}: journal is {size / 2**30:.1f} GiB, more than the {MAX_JOURNAL_BYTES // 2**30} "
                            "GiB a journal can hold; it is not a VPP Studio journal or it is damaged")
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the journal ({exc.strerror or exc})") from exc
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
        record = json.loads(body)
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
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
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
    """Journals in ``<data_dir>/journals`` and beside ``projects`` that no live process holds."""
    paths: list[Path] = []
    if data_dir is not None and (Path(data_dir) / "journals").is_dir():
        paths += sorted((Path(data_dir) / "journals").glob(f"*{SUFFIX}"))
    for project in projects:
        j = journal_path_for(project)
        if j.is_file():
            paths.append(j)
    out = []
    for p in paths:
        if journal_in_use(p):
            continue
        try:
            contents = read_journal(p)
        except DataError as exc:
            out.append(RecoveryCandidate(p, "?", None, 0, "", str(exc)))
            continue
        if contents.edits == 0:  # nothing to recover: a session that ended before any edit
            with contextlib.suppress(OSError):
                p.unlink()
            continue
        h = contents.header
        out.append(RecoveryCandidate(p, str(h["clip"].get("path", "?")), h.get("base"), contents.edits,
                                     str(h.get("created", "")), None))
    return out
