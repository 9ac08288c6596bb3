"""Atomic file writes: a unique temporary file in the target's folder, fsync, then os.replace.

A failed write leaves any existing file untouched and no temporary file behind. What stands at the
target must be a regular file (or nothing): a symbolic link, named pipe, device or folder there is
refused with :class:`NotOurFile`, never followed, truncated or replaced. Temporary files a killed
write left (``.NAME.XXXXXXXX.tmp``, only our own pattern, only regular files no live writer holds)
are removed by the next write of ``NAME``. :func:`open_regular` and :func:`read_regular` are the one
way this program opens a file it writes beside a person's files, or reads one that may be hostile.

:class:`MultiCommit` does the same for several files and folders at once, all or none even across a
SIGKILL or power loss (a manifest records the commit; :func:`recover_commits` finishes or undoes it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from core.errors import DataError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks, recovery cannot tell a live commit from a dead one
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


def lock_fd(fd: int) -> None:
    """Hold an exclusive lock on a file this process just created (it marks the file as in use)."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


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
        with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows it
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
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


# -- several outputs committed together, safe across a crash ------------------------------------------

#: Every name a :class:`MultiCommit` creates starts with this prefix and the commit's random token.
COMMIT_PREFIX = ".vpp-commit."
_TOKEN = "[0-9a-f]{16}"
_MANIFEST_RE = re.compile(rf"^\.vpp-commit\.({_TOKEN})\.json$")
_PROBE_RE = re.compile(rf"^\.vpp-commit\.({_TOKEN})\.probe$")
_FORMAT = "vpp-commit"


def _commit_name(token: str, what: str) -> str:
    return f"{COMMIT_PREFIX}{token}.{what}"


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make the creation, rename or removal of names in ``folder`` durable where the OS allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def probe_writable(folder: str | os.PathLike) -> None:
    """Create and remove an empty folder in ``folder``; raises the OSError that a real write would meet.

    ``os.access`` is not enough: root passes it for ``/proc`` and ``/sys``, where nothing can be created.
    """
    probe = Path(folder) / _commit_name(secrets.token_hex(8), "probe")
    os.mkdir(probe, 0o700)
    with contextlib.suppress(OSError):
        os.rmdir(probe)


def real_target(path: str | os.PathLike) -> Path:
    """``path`` with its folder resolved (symlinks followed) and its own name kept: where a commit writes.

    ``.``, ``..`` and an empty name are resolved too (a name is needed to rename into)."""
    p = Path(path)
    if p.name in ("", ".", ".."):
        return Path(os.path.realpath(p))
    return Path(os.path.realpath(p.parent)) / p.name


class CommitRefused(FileExistsError):
    """A target may not be replaced (``replaceable`` said why); the commit was rolled back."""


class CommitAnomaly(RuntimeError):
    """A leftover commit whose files are not in a state a crash can leave: left alone."""


@dataclass(frozen=True)
class _Entry:
    final: Path
    is_dir: bool
    had_old: bool
    new: Path  # the staged output, renamed to ``final`` by the commit
    old: Path  # what stood at ``final`` before, kept until every output is in place


def _node(path: Path) -> str | None:
    """The kind of node at ``path``: "file", "dir" or None (absent).

    Raises CommitAnomaly for a symlink, another type or another user's node: never ours."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise CommitAnomaly(f"{path}: is a symbolic link, not a file this program made; left alone")
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise CommitAnomaly(f"{path}: belongs to another user; left alone")
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    raise CommitAnomaly(f"{path}: is neither a file nor a folder; left alone")


def _remove(path: Path) -> None:
    """Remove one of our staging or backup names (never through a symlink)."""
    kind = _node(path)
    if kind == "dir":
        shutil.rmtree(path)
    elif kind == "file":
        os.unlink(path)


def _open_locked(path: Path, flags: int, mode: int = 0o600) -> int | None:
    """Open ``path`` (never through a symlink) and take its exclusive lock without waiting.

    Returns the fd, or None when another live process holds the lock (its commit is running) or the
    name was removed or replaced meanwhile."""
    fd = os.open(path, flags | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
        st, now = os.fstat(fd), os.lstat(path)
        if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
            os.close(fd)
            return None
    except FileNotFoundError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


class MultiCommit:
    """Stage several outputs (files or folders) beside their targets and move them all into place, or none.

    Protocol (the rule :mod:`core.export` documents): ``begin`` writes a manifest
    ``.vpp-commit.<token>.json`` (fsync'ed, kept locked while this process lives) into the first target's
    folder and a copy into every other target folder; it lists each target, whether something stood
    there, and so the staging name ``.vpp-commit.<token>.<i>.new`` and backup name ``.<i>.old`` of each.
    ``commit`` creates the marker ``.vpp-commit.<token>.commit`` (fsync'ed), then for each target moves
    (folder) or hard-links (file) what stands there to its backup and renames the staged output in;
    when all are in, it deletes the backups, the marker and the manifests. A failure during the commit
    creates ``.vpp-commit.<token>.rollback`` and puts every old output back. :func:`recover_commits`
    finishes what a killed process left: a commit marker without a rollback marker is rolled forward
    (every new output is staged or already in place), otherwise everything is rolled back; then our
    leftover names are removed. Only names with a recorded token are touched, never through a symlink.
    """

    def __init__(self, targets: Sequence[tuple[str | os.PathLike, bool]]) -> None:
        if not targets:
            raise ValueError("a commit needs at least one target")
        self._targets = [(real_target(p), bool(is_dir)) for p, is_dir in targets]
        if len({p for p, _ in self._targets}) != len(self._targets):
            raise ValueError("a commit cannot write one target twice")
        self.token = ""
        self.entries: list[_Entry] = []
        self._locks: list[int] = []
        self._manifests: list[Path] = []
        self._state = "new"  # new -> staging -> committed | discarded

    # -- staging ------------------------------------------------------------------------------------
    def __enter__(self) -> MultiCommit:
        self.begin()
        return self

    def __exit__(self, *exc) -> None:
        if self._state == "staging":
            self.discard()

    @property
    def folders(self) -> list[Path]:
        return list(dict.fromkeys(e.final.parent for e in self.entries))

    def begin(self) -> None:
        """Write and lock the manifests; nothing is staged yet."""
        folders = list(dict.fromkeys(p.parent for p, _ in self._targets))
        for _attempt in range(8):
            token = secrets.token_hex(8)
            primary = folders[0] / _commit_name(token, "json")
            try:
                fd = _open_locked(primary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                continue
            if fd is not None:
                break
        else:  # pragma: no cover - eight random 64-bit tokens taken
            raise OSError(f"{folders[0]}: cannot create a commit manifest")
        self.token = token
        self.entries = [_Entry(p, d, os.path.lexists(p), p.parent / _commit_name(token, f"{i}.new"),
                               p.parent / _commit_name(token, f"{i}.old")) for i, (p, d) in enumerate(self._targets)]
        self._locks.append(fd)
        self._manifests.append(primary)
        self._state = "staging"
        try:
            body = json.dumps({"format": _FORMAT, "version": 1, "token": token, "pid": os.getpid(),
                               "folders": [str(f) for f in folders],
                               "entries": [{"final": str(e.final), "dir": e.is_dir, "had_old": e.had_old}
                                           for e in self.entries]}, indent=1).encode()
            self._write_locked(fd, body)
            for folder in folders[1:]:
                copy = folder / primary.name
                fd = _open_locked(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                if fd is None:  # pragma: no cover - removed by a concurrent recovery between open and lock
                    raise OSError(f"{copy}: the commit manifest vanished while it was written")
                self._locks.append(fd)
                self._manifests.append(copy)
                self._write_locked(fd, body)
            for folder in folders:
                fsync_dir(folder)
        except BaseException:
            self.discard()
            raise

    @staticmethod
    def _write_locked(fd: int, body: bytes) -> None:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)

    def stage_bytes(self, index: int, data: bytes, mode: int) -> Path:
        """Write target ``index``'s new content (a file target) to its staging name; returns that path."""
        e = self.entries[index]
        if e.is_dir:
            raise ValueError(f"{e.final}: is a folder target")
        fd = os.open(e.new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(e.new, mode)
        return e.new

    def stage_dir(self, index: int, mode: int) -> Path:
        """Create target ``index``'s staging folder (a folder target) and return it; the caller fills it."""
        e = self.entries[index]
        if not e.is_dir:
            raise ValueError(f"{e.final}: is a file target")
        os.mkdir(e.new, 0o700)
        os.chmod(e.new, mode)
        return e.new

    # -- commit -------------------------------------------------------------------------------------
    def commit(self, replaceable: Callable[[Path, bool], str | None] | None = None) -> None:
        """Move every staged output into place, all or none.

        ``replaceable(final, is_dir)`` is asked before an existing target is replaced: a message
        (a string) refuses, the commit is rolled back and :class:`CommitRefused` carries the message."""
        if self._state != "staging":
            raise RuntimeError("commit() needs a begun, not yet committed MultiCommit")
        for e in self.entries:
            if _node(e.new) != ("dir" if e.is_dir else "file"):
                raise RuntimeError(f"{e.final}: nothing staged for it")
        primary = self.folders[0]
        _touch(primary / _commit_name(self.token, "commit"))
        try:
            for e in self.entries:
                try:
                    kind = _node(e.final)  # a link, pipe, device or another user's node is never replaced
                except CommitAnomaly as exc:
                    raise CommitRefused(str(exc).replace("left alone", "it is not replaced")) from None
                if kind not in (None, "dir" if e.is_dir else "file"):
                    raise CommitRefused(f"{e.final}: is a {'file' if e.is_dir else 'folder'}; it is not replaced")
                if os.path.lexists(e.final):
                    why = replaceable(e.final, e.is_dir) if replaceable is not None else None
                    if why:
                        raise CommitRefused(why)
                    if e.is_dir:
                        os.rename(e.final, e.old)
                    else:
                        _link_or_copy(e.final, e.old)
                if e.is_dir:
                    os.rename(e.new, e.final)
                else:
                    os.replace(e.new, e.final)
            for folder in self.folders:
                fsync_dir(folder)
        except BaseException:
            self._state = "discarded"
            try:
                with contextlib.suppress(OSError):
                    _touch(primary / _commit_name(self.token, "rollback"))
                _roll_back(self.entries)
                _cleanup(self.entries, self.folders, self._manifests, self.token)
            except Exception:  # what is left, the next recovery undoes (the rollback marker says so)
                pass
            finally:
                self._release()
            raise
        self._state = "committed"
        with contextlib.suppress(OSError, CommitAnomaly):  # all outputs are in: a later recovery finishes this
            self._finish()

    def discard(self) -> None:
        """Remove everything staged so far and the manifests (before a commit)."""
        self._state = "discarded"
        try:
            for e in self.entries:
                _remove(e.new)
            self._finish()
        except (OSError, CommitAnomaly):
            self._release()  # the manifests stay: the next recovery removes what is left

    def _finish(self) -> None:
        try:
            _cleanup(self.entries, self.folders, self._manifests, self.token)
        finally:
            self._release()

    def _release(self) -> None:
        for fd in self._locks:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._locks.clear()


def _touch(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` = the file at ``src`` (a hard link where the file system allows it, else a copy), durable."""
    try:
        os.link(src, dst, follow_symlinks=False)
        return
    except OSError:
        pass
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    try:
        with open(src, "rb") as fin:
            while chunk := fin.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        shutil.copystat(src, dst, follow_symlinks=False)


def _check_states(entries: Sequence[_Entry]) -> None:
    """CommitAnomaly unless every entry is in a state our own commit, roll-forward or roll-back can leave."""
    for e in entries:
        new, old = _node(e.new), _node(e.old)
        want = "dir" if e.is_dir else "file"
        if new not in (None, want) or old not in (None, want):
            raise CommitAnomaly(f"{e.final}: its staged or backup copy changed type; left alone")
        if _node(e.final) not in (None, want):  # also refuses a symlink or another user's file in its place
            raise CommitAnomaly(f"{e.final}: is not a {'folder' if e.is_dir else 'file'} any more; left alone")
        if e.is_dir and new and old and os.path.lexists(e.final):
            raise CommitAnomaly(f"{e.final}: the old folder was moved aside, yet something stands in its place; "
                                "left alone")


def _roll_forward(entries: Sequence[_Entry]) -> None:
    _check_states(entries)
    for e in entries:
        if _node(e.new) is None:
            continue  # already in place
        if e.is_dir:
            if os.path.lexists(e.final):
                if _node(e.old) is not None:
                    raise CommitAnomaly(f"{e.final}: both the old and the new folder are still staged; left alone")
                os.rename(e.final, e.old)
            os.rename(e.new, e.final)
        else:
            os.replace(e.new, e.final)
    for folder in dict.fromkeys(e.final.parent for e in entries):
        fsync_dir(folder)


def _roll_back(entries: Sequence[_Entry]) -> None:
    _check_states(entries)
    for e in reversed(entries):
        staged, backup = _node(e.new), _node(e.old)
        if staged is not None or not os.path.lexists(e.final):
            # the new output never went in (or is gone): only a moved-aside old output needs putting back
            if backup is not None and not os.path.lexists(e.final):
                os.rename(e.old, e.final)
            continue
        if backup is not None:
            if e.is_dir:
                os.rename(e.final, e.new)  # the new folder back to its staging name, removed below
                os.rename(e.old, e.final)
            else:
                os.replace(e.old, e.final)
        elif not e.had_old:
            os.rename(e.final, e.new)  # nothing stood here before: the new output goes
    for folder in dict.fromkeys(e.final.parent for e in entries):
        fsync_dir(folder)


def _cleanup(entries: Sequence[_Entry], folders: Sequence[Path], manifests: Sequence[Path], token: str) -> None:
    """Remove staging and backup names, then the markers, then the manifest copies, the first one last."""
    for e in entries:
        _remove(e.new)
        _remove(e.old)
    for what in ("commit", "rollback"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folders[0] / _commit_name(token, what))
    for m in list(manifests[1:]) + list(manifests[:1]):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(m)
    for folder in folders:
        fsync_dir(folder)


def _parse_manifest(raw: bytes, token: str) -> tuple[list[Path], list[_Entry]] | None:
    """(folders, entries) of a manifest, or None when it is not one we wrote completely."""
    try:
        data = json.loads(raw)
        if not (isinstance(data, dict) and data.get("format") == _FORMAT and data.get("token") == token):
            return None
        folders = [Path(f) for f in data["folders"]]
        entries = []
        for i, item in enumerate(data["entries"]):
            final = Path(item["final"])
            if not final.is_absolute() or final.name in ("", ".", "..") or final.parent not in folders:
                return None
            entries.append(_Entry(final, bool(item["dir"]), bool(item["had_old"]),
                                  final.parent / _commit_name(token, f"{i}.new"),
                                  final.parent / _commit_name(token, f"{i}.old")))
    except (ValueError, KeyError, TypeError):
        return None
    if not folders or not entries or not all(f.is_absolute() for f in folders):
        return None
    return folders, entries


def recover_commits(folders: Iterable[str | os.PathLike],
                    replaceable: Callable[[Path, bool], str | None] | None = None) -> list[str]:
    """Finish or undo every commit a killed process left in ``folders``; returns one line per commit handled.

    A commit whose process still runs (its manifest is locked) is left alone, as is one whose files are
    in a state no crash leaves (a symlink, another user's file; the line says so). ``replaceable`` is
    asked, as in :meth:`MultiCommit.commit`, before a roll-forward replaces a target; a refusal rolls back.
    """
    notes: list[str] = []
    seen: set[str] = set()
    for folder in dict.fromkeys(Path(os.path.realpath(f)) for f in folders):
        try:
            names = [e.name for e in os.scandir(folder)]
        except OSError:
            continue
        for name in names:
            probe = _PROBE_RE.match(name)
            if probe:
                with contextlib.suppress(OSError, CommitAnomaly):
                    if _node(folder / name) == "dir":
                        os.rmdir(folder / name)  # only ever an empty folder
                continue
            m = _MANIFEST_RE.match(name)
            if m and m.group(1) not in seen:
                seen.add(m.group(1))
                note = _recover_one(folder / name, m.group(1), replaceable)
                if note:
                    notes.append(note)
    return notes


def _refused(e: _Entry, replaceable) -> bool:
    """Whether a roll-forward must not replace what now stands at ``e.final`` (the new output is still staged)."""
    if not os.path.lexists(e.final):
        return False
    if e.is_dir and not e.had_old:
        return True  # a folder appeared where there was none: not ours
    return bool(replaceable is not None and replaceable(e.final, e.is_dir))


def _recover_one(path: Path, token: str, replaceable) -> str | None:
    try:
        if _node(path) != "file":
            return None
    except CommitAnomaly:
        return None
    locks: list[int] = []
    try:
        fd = _open_locked(path, os.O_RDONLY)
        if fd is None:
            return None  # its process is still committing
        locks.append(fd)
        raw = os.read(fd, 1 << 22)
        parsed = _parse_manifest(raw, token)
        if parsed is None:  # written only partly when its process died: nothing was staged yet
            os.unlink(path)
            return None
        folders, entries = parsed
        if path.parent not in folders:
            return None  # a manifest copied elsewhere: not ours to act on
        primary = folders[0] / path.name
        if primary != path:
            try:
                fd = _open_locked(primary, os.O_RDONLY)
            except FileNotFoundError:
                return f"{path}: its commit's first manifest {primary} is gone; left alone"
            if fd is None:
                return None
            locks.append(fd)
            if _parse_manifest(os.read(fd, 1 << 22), token) != parsed:
                return None
        manifests = [f / path.name for f in folders]
        done = os.path.lexists(folders[0] / _commit_name(token, "commit"))
        undo = os.path.lexists(folders[0] / _commit_name(token, "rollback"))
        targets = ", ".join(str(e.final) for e in entries)
        try:
            states = [(_node(e.new), _node(e.old)) for e in entries]
            if done and not undo:
                missing = any(new is None and not os.path.lexists(e.final) for e, (new, _) in zip(entries, states))
                refused = any(_refused(e, replaceable) for e, (new, _) in zip(entries, states) if new is not None)
                if not missing and not refused:
                    _roll_forward(entries)
                    note = f"finished an interrupted export: {targets}"
                else:
                    _roll_back(entries)
                    note = f"undid an interrupted export (its outputs were incomplete): {targets}"
            elif done or undo:
                _roll_back(entries)
                note = f"undid an interrupted export: {targets}"
            else:
                note = None  # killed while staging: nothing was replaced
            _cleanup(entries, folders, manifests, token)
        except CommitAnomaly as exc:
            return str(exc)
        return note
    except OSError as exc:
        return f"{path}: could not finish or undo an interrupted export ({exc}); it is tried again next time"
    finally:
        for fd in locks:
            with contextlib.suppress(OSError):
                os.close(fd)
