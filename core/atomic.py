"""Atomic file writes: a unique temporary file in the target's folder, fsync, then os.replace.

A failed write leaves any existing file untouched and no temporary file behind. What stands at the
target must be a regular file (or nothing): a symbolic link, named pipe, device or folder there is
refused with :class:`NotOurFile`, never followed, truncated or replaced (the checks live in
:mod:`core.regular_files`, and are re-exported here). Temporary files a killed write left
(``.NAME.XXXXXXXX.tmp``, only our own pattern, only regular files no live writer holds) are removed by
the next write of ``NAME``.

Several files and folders committed together, all or none even across a SIGKILL or power loss, are
:class:`core.multi_commit.MultiCommit`'s (recovered by :func:`core.commit_recovery.recover_commits`);
those names are re-exported here too, for the callers that import them from this module.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from core.commit_recovery import COMMIT_PREFIX, CommitAnomaly, recover_commits
from core.errors import DataError
from core.multi_commit import CommitRefused, MultiCommit, probe_writable, real_target
from core.regular_files import (
    NotOurFile,
    check_regular,
    fsync_dir,
    lock_fd,
    node_kind,
    open_regular,
    read_regular,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks, a live temporary file cannot be told from a stale one
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "COMMIT_PREFIX",
    "CommitAnomaly",
    "CommitRefused",
    "MultiCommit",
    "NotOurFile",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_regular",
    "fsync_dir",
    "lock_fd",
    "node_kind",
    "open_regular",
    "probe_writable",
    "read_regular",
    "real_target",
    "recover_commits",
    "remove_stale_temps",
]


def _temp_pattern(name: str) -> re.Pattern:
    """The names :func:`tempfile.mkstemp` gives a temporary file of ``name`` (``.NAME.<8 chars>.tmp``)."""
    return re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp$")


def remove_stale_temps(folder: str | os.PathLike, name: str) -> list[Path]:
    """Remove the temporary files of ``name`` that killed writes left in ``folder``; returns them.

    Only our own pattern, only regular files of this user, never through a link, and never one a live
    writer holds (every writer keeps its temporary file locked until it is renamed into place)."""
    pattern, removed = _temp_pattern(name), []
    try:
        entries = [e.name for e in os.scandir(folder) if pattern.match(e.name)]
    except OSError:
        return removed
    for entry in entries:
        path = Path(folder) / entry
        try:
            fd = open_regular(path, os.O_RDONLY, owned=True)
        except (OSError, DataError):
            continue
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live writer's
            st, now = os.fstat(fd), os.lstat(path)
            if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                os.unlink(path)
                removed.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", *,
                clean: bool = False) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` atomically.

    ``mode`` is "w" (text) or "wb" (binary). If the body raises, the target is not touched. A link,
    pipe, device or folder at ``path`` raises :class:`NotOurFile`. ``clean``: also remove the temporary
    files of ``path`` that killed writes left (:func:`remove_stale_temps`; a folder scan per write).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', not {mode!r}")
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {target}: folder {folder} does not exist")
    check_regular(target)  # a link, pipe, device or folder in the place is refused, never replaced
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    lock_fd(fd)  # so that another write's clean-up leaves this live temporary file alone
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            if fcntl is not None:  # renamed while still locked (Windows cannot rename an open file)
                _place(tmp, target)
                tmp = None
        if tmp is not None:
            _place(tmp, target)
            tmp = None
        if clean:
            remove_stale_temps(folder, target.name)
        fsync_dir(folder)  # make the rename itself durable where the OS allows it
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _place(tmp: str, target: Path) -> None:
    """Rename the finished temporary file onto ``target`` with the permissions of what it replaces."""
    st = check_regular(target)  # again: something may have been put there meanwhile
    if st is not None:
        with contextlib.suppress(OSError):
            os.chmod(tmp, st.st_mode & 0o7777)
    else:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)
