"""Regular files only: the checks and opens this program uses wherever a person's files may stand.

What this program reads or writes beside a person's files must be a regular file (or nothing): a
symbolic link, named pipe, device or folder standing there is refused with :class:`NotOurFile`, never
followed, opened, truncated or replaced. :func:`open_regular` and :func:`read_regular` are the one way
this program opens a file it writes beside a person's files, or reads one that may be hostile (a pipe
or device is refused before it is opened, so nothing hangs). :func:`lock_fd` marks a file this process
just created as in use (:mod:`core.atomic` keeps its temporary files locked so that another write's
clean-up leaves them alone). :func:`fsync_dir` makes a new, renamed or removed name in a folder durable.
:func:`file_sha256` is the one hash of a file (model checkpoints, downloads, sweep sources).

:mod:`core.atomic` re-exports these names (it refuses the same nodes when it writes).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat

from core.errors import DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks
    fcntl = None  # type: ignore[assignment]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class NotOurFile(DataError, OSError):
    """Something other than a regular file of ours stands where this program reads or writes one.

    Also an OSError, so that every caller already handling a failed write reports it (never ignores it
    as a crash would)."""


def node_kind(mode: int) -> str:
    """What an ``st_mode`` is, for messages: "a regular file", "a symbolic link", "a named pipe (FIFO)"..."""
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: str | os.PathLike, what: str = "file", *, follow: bool = False,
                  owned: bool = False) -> os.stat_result | None:
    """The stat of the regular file at ``path`` (None when nothing is there); :class:`NotOurFile` when a
    symbolic link (unless ``follow``), a pipe, a device, a folder or (``owned``) another user's file is."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return None
    _check_stat(path, st, what, owned)
    return st


def _check_stat(path, st: os.stat_result, what: str, owned: bool) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = node_kind(st.st_mode)
        extra = f" (to {os.path.realpath(path)})" if stat.S_ISLNK(st.st_mode) else ""
        raise NotOurFile(f"{path}: is {kind}{extra}, not a {what} VPP Studio made; it is left untouched (never "
                         "followed, read or overwritten). Remove or rename it, then try again")
    if owned and hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise NotOurFile(f"{path}: belongs to another user, not a {what} of yours; it is left untouched. "
                         "Remove it or work in a folder of your own")


def open_regular(path: str | os.PathLike, flags: int = os.O_RDONLY, mode: int = 0o600, *, what: str = "file",
                 follow: bool = False, owned: bool = False) -> int:
    """``os.open`` for a regular file only: never through a symbolic link (unless ``follow``), never
    blocking on a named pipe or a device (it is refused before it is opened, and checked again after).

    Raises :class:`NotOurFile` naming ``path`` and what stands there; OSError for the rest."""
    check_regular(path, what, follow=follow, owned=owned)
    try:
        fd = os.open(path, flags | _NONBLOCK | _CLOEXEC | (0 if follow else _NOFOLLOW), mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # replaced by a link / pipe / folder meanwhile
            check_regular(path, what, follow=follow, owned=owned)
        raise
    try:
        _check_stat(path, os.fstat(fd), what, owned)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike, limit: int, *, what: str = "file", follow: bool = True) -> bytes:
    """The bytes of the regular file at ``path`` (a pipe or device refused unopened, so nothing hangs),
    :class:`NotOurFile` / DataError when it is not one or holds more than ``limit`` bytes."""
    fd = open_regular(path, os.O_RDONLY, what=what, follow=follow)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise DataError(f"{path}: {size} bytes is more than a {what} can hold ({limit} bytes); it is not a "
                            f"{what} VPP Studio made, or it is damaged")
        chunks, left = [], size + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise DataError(f"{path}: grew past the {limit} bytes a {what} can hold while it was read")
        return data
    finally:
        os.close(fd)


def lock_fd(fd: int) -> None:
    """Hold an exclusive lock on a file this process just created (it marks the file as in use)."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make the creation, rename or removal of names in ``folder`` durable where the OS allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write fewer than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def unlink_if_still(fd: int, path: str | os.PathLike) -> None:
    """Remove ``path`` only while that name still is the file open as ``fd``, then close ``fd``.

    Someone may have replaced the name since we opened it (a newer lock, a recovered journal): their
    file is left alone. Errors of the removal are ignored; the descriptor is always closed.
    """
    try:
        with contextlib.suppress(OSError):
            st, now = os.fstat(fd), os.lstat(path)
            if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                os.unlink(path)
    finally:
        os.close(fd)


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk_size`` chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()
