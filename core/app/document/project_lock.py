"""Who may save a project: an advisory lock beside it, and the file's identity when it was read.

Two windows (or processes) on one project would otherwise overwrite each other's saves. The window
that opens a project for editing takes :class:`ProjectLock` (``.NAME.vppproj.lock`` beside it, an
exclusive ``flock`` held while the project is open; the lock file says which process holds it). A
second opener cannot take it: :class:`ProjectInUse` says who has it, and that window may only *Save
As* another name. Independently, :class:`FileIdentity` records the project file as it was read or
last written (device, inode, size, mtime and SHA-256): a save onto that path first checks the file is
still the same and refuses (:class:`ProjectChanged`) when another program changed it meanwhile.

The lock file is created and opened as any file written beside a person's files: never through a
symbolic link, never a pipe or device. It is removed when released (only while it is still ours).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from core.atomic import NotOurFile, open_regular
from core.errors import DataError
from core.regular_files import unlink_if_still

try:  # POSIX; elsewhere only the identity check guards a save
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class ProjectInUse(DataError):
    """Another live window or process holds the project's lock."""


class ProjectChanged(DataError):
    """The project file changed on disk since this document read or wrote it."""


def lock_path_for(project: str | os.PathLike) -> Path:
    """``.<name>.lock`` beside the project."""
    p = Path(project)
    return p.with_name(f".{p.name}.lock")


class ProjectLock:
    """The exclusive right to save ``project`` (see the module docstring); :meth:`release` gives it back."""

    def __init__(self, project: Path, path: Path, fd: int | None) -> None:
        self.project, self.path, self._fd = project, path, fd

    @classmethod
    def acquire(cls, project: str | os.PathLike) -> ProjectLock:
        """Take the lock of ``project`` (an absolute path) without waiting; :class:`ProjectInUse` when
        another window holds it, :class:`NotOurFile` when a link, pipe or device stands in its place,
        OSError when the lock file cannot be created (a read-only folder...)."""
        project = Path(project)
        path = lock_path_for(project)
        if fcntl is None:  # pragma: no cover - Windows: no advisory locks; the identity check still guards saves
            return cls(project, path, None)
        for _attempt in range(5):
            fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o644, what="project lock")  # OSError: read-only folder...
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder(fd)
                os.close(fd)
                raise ProjectInUse(f"{project}: is open in another VPP Studio window{holder}; this window may not "
                                   "save over it. Use Save As (Ctrl+Shift+S) to save your work under another "
                                   "name, or close the other window first") from None
            try:
                st, now = os.fstat(fd), os.lstat(path)
            except FileNotFoundError:
                now = None
            if now is None or (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
                os.close(fd)  # released (and removed) by its holder meanwhile: take the new one
                continue
            body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "project": str(project)}).encode()
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, body, 0)
            return cls(project, path, fd)
        raise ProjectInUse(f"{project}: its lock {path} keeps changing; another window is opening it. Try again")

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the lock back and remove the lock file (only while its name is still this lock's)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        unlink_if_still(fd, self.path)


def _holder(fd: int) -> str:
    """`` (process 123 on host)`` from a lock file, or "" when it says nothing readable."""
    try:
        info = json.loads(os.pread(fd, 4096, 0))
        pid, host = int(info["pid"]), str(info["host"])[:100]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return f" (process {pid} on {host})"


@dataclass(frozen=True)
class FileIdentity:
    """A file as it was read or written: what a later save compares before replacing it."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, st: os.stat_result, data: bytes) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, hashlib.sha256(data).hexdigest())

    def check_unchanged(self, path: Path) -> None:
        """:class:`ProjectChanged` when ``path`` is no longer this file's content (absent: nothing to lose)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (self.device, self.inode, self.size, self.mtime_ns):
            return
        try:
            fd = open_regular(path, os.O_RDONLY, what="project", follow=True)
        except (OSError, NotOurFile) as exc:
            raise ProjectChanged(f"{path}: is no longer the project this window opened ({exc}); use Save As to "
                                 "save your work under another name") from None
        h = hashlib.sha256()
        try:
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
        finally:
            os.close(fd)
        if h.hexdigest() != self.sha256:
            raise ProjectChanged(f"{path}: was changed on disk (by another window or program) after this window "
                                 "opened or saved it; saving would overwrite those changes. Use Save As "
                                 "(Ctrl+Shift+S) to save your work under another name, then compare the two")
