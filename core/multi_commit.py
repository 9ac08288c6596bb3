"""Several outputs (files and folders) moved into place together, all or none, even across a SIGKILL or
power loss: :class:`MultiCommit` stages them beside their targets, records the commit in a manifest and
renames them in; :func:`core.commit_recovery.recover_commits` finishes or undoes one a killed process left.

:func:`probe_writable` tells early whether a folder takes new names (:func:`writable_output`: whether a
command's output file can be written, before any work); :func:`real_target` is where a commit
writes (the folder resolved, the name kept). The export door (:mod:`core.export`) is the main user.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from core.commit_recovery import (
    MANIFEST_FORMAT,
    CommitAnomaly,
    CommitEntry,
    clean_up,
    commit_name,
    open_locked,
    our_node,
    remove_ours,
    roll_back,
)
from core.errors import VPPError
from core.regular_files import fsync_dir, write_all

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def probe_writable(folder: str | os.PathLike) -> None:
    """Create and remove an empty folder in ``folder``; raises the OSError that a real write would meet.

    ``os.access`` is not enough: root passes it for ``/proc`` and ``/sys``, where nothing can be created.
    """
    probe = Path(folder) / commit_name(secrets.token_hex(8), "probe")
    os.mkdir(probe, 0o700)
    with contextlib.suppress(OSError):
        os.rmdir(probe)


def writable_output(path: str | os.PathLike, option: str) -> Path:
    """Check, before any work, that ``path`` can be written as a file; raise :class:`VPPError` if not.

    The folder must exist and be writable — found by really creating (and removing) an entry in it, since
    ``os.access`` passes for root on read-only places like ``/proc`` — and ``path`` must not be a folder.
    Returns the path.
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise VPPError(f"{path}: is a folder; {option} needs a file name")
    if not folder.is_dir():
        raise VPPError(f"{path}: cannot write {option}: folder {folder} does not exist")
    try:
        probe_writable(folder)
    except OSError as exc:
        raise VPPError(f"{path}: cannot write {option}: folder {folder} is not writable "
                       f"({exc.strerror or exc})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise VPPError(f"{path}: cannot write {option}: the file exists and is read-only")
    return path


def real_target(path: str | os.PathLike) -> Path:
    """``path`` with its folder resolved (symlinks followed) and its own name kept: where a commit writes.

    ``.``, ``..`` and an empty name are resolved too (a name is needed to rename into)."""
    p = Path(path)
    if p.name in ("", ".", ".."):
        return Path(os.path.realpath(p))
    return Path(os.path.realpath(p.parent)) / p.name


class CommitRefused(FileExistsError):
    """A target may not be replaced (``replaceable`` said why); the commit was rolled back."""


class MultiCommit:
    """Stage several outputs (files or folders) beside their targets and move them all into place, or none.

    Protocol (the rule :mod:`core.export` documents): ``begin`` writes a manifest
    ``.vpp-commit.<token>.json`` (fsync'ed, kept locked while this process lives) into the first target's
    folder and a copy into every other target folder; it lists each target, whether something stood
    there, and so the staging name ``.vpp-commit.<token>.<i>.new`` and backup name ``.<i>.old`` of each.
    ``commit`` creates the marker ``.vpp-commit.<token>.commit`` (fsync'ed), then for each target moves
    (folder) or hard-links (file) what stands there to its backup and renames the staged output in;
    when all are in, it deletes the backups, the marker and the manifests. A failure during the commit
    creates ``.vpp-commit.<token>.rollback`` and puts every old output back.
    :func:`~core.commit_recovery.recover_commits` finishes what a killed process left: a commit marker
    without a rollback marker is rolled forward (every new output is staged or already in place),
    otherwise everything is rolled back; then our leftover names are removed. Only names with a recorded
    token are touched, never through a symlink.
    """

    def __init__(self, targets: Sequence[tuple[str | os.PathLike, bool]]) -> None:
        if not targets:
            raise ValueError("a commit needs at least one target")
        self._targets = [(real_target(p), bool(is_dir)) for p, is_dir in targets]
        if len({p for p, _ in self._targets}) != len(self._targets):
            raise ValueError("a commit cannot write one target twice")
        self.token = ""
        self.entries: list[CommitEntry] = []
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
            primary = folders[0] / commit_name(token, "json")
            try:
                fd = open_locked(primary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                continue
            if fd is not None:
                break
        else:  # pragma: no cover - eight random 64-bit tokens taken
            raise OSError(f"{folders[0]}: cannot create a commit manifest")
        self.token = token
        self.entries = [CommitEntry(p, d, os.path.lexists(p), p.parent / commit_name(token, f"{i}.new"),
                                    p.parent / commit_name(token, f"{i}.old"))
                        for i, (p, d) in enumerate(self._targets)]
        self._locks.append(fd)
        self._manifests.append(primary)
        self._state = "staging"
        try:
            body = json.dumps({"format": MANIFEST_FORMAT, "version": 1, "token": token, "pid": os.getpid(),
                               "folders": [str(f) for f in folders],
                               "entries": [{"final": str(e.final), "dir": e.is_dir, "had_old": e.had_old}
                                           for e in self.entries]}, indent=1).encode()
            self._write_locked(fd, body)
            for folder in folders[1:]:
                copy = folder / primary.name
                fd = open_locked(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
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
        write_all(fd, body)
        os.fsync(fd)

    def stage_bytes(self, index: int, data: bytes, mode: int) -> Path:
        """Write target ``index``'s new content (a file target) to its staging name; returns that path."""
        e = self.entries[index]
        if e.is_dir:
            raise ValueError(f"{e.final}: is a folder target")
        fd = os.open(e.new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        try:
            write_all(fd, data)
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
            if our_node(e.new) != ("dir" if e.is_dir else "file"):
                raise RuntimeError(f"{e.final}: nothing staged for it")
        primary = self.folders[0]
        _touch(primary / commit_name(self.token, "commit"))
        try:
            for e in self.entries:
                try:
                    kind = our_node(e.final)  # a link, pipe, device or another user's node is never replaced
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
                    _touch(primary / commit_name(self.token, "rollback"))
                roll_back(self.entries)
                clean_up(self.entries, self.folders, self._manifests, self.token)
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
                remove_ours(e.new)
            self._finish()
        except (OSError, CommitAnomaly):
            self._release()  # the manifests stay: the next recovery removes what is left

    def _finish(self) -> None:
        try:
            clean_up(self.entries, self.folders, self._manifests, self.token)
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
                write_all(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        shutil.copystat(src, dst, follow_symlinks=False)

