"""The on-disk state of a :class:`core.multi_commit.MultiCommit`, and the recovery of one a crash left.

Both sides of the commit protocol (documented on :class:`~core.multi_commit.MultiCommit`) share what is
here: the names a commit creates (``.vpp-commit.<token>.*``), the manifest format and its entries, the
checks that only ever touch our own nodes (never through a symbolic link, never another user's), the
locked open that tells a live commit from a dead one, rolling forward or back, and the clean-up.
:func:`recover_commits` finishes or undoes every commit a killed process left in a set of folders
(``export_results`` and ``vpp infer`` run it first).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.regular_files import fsync_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks, recovery cannot tell a live commit from a dead one
    fcntl = None  # type: ignore[assignment]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

#: Every name a :class:`~core.multi_commit.MultiCommit` creates starts with this prefix and the commit's token.
COMMIT_PREFIX = ".vpp-commit."
_TOKEN = "[0-9a-f]{16}"
_MANIFEST_RE = re.compile(rf"^\.vpp-commit\.({_TOKEN})\.json$")
_PROBE_RE = re.compile(rf"^\.vpp-commit\.({_TOKEN})\.probe$")
MANIFEST_FORMAT = "vpp-commit"


def commit_name(token: str, what: str) -> str:
    return f"{COMMIT_PREFIX}{token}.{what}"


class CommitAnomaly(RuntimeError):
    """A leftover commit whose files are not in a state a crash can leave: left alone."""


@dataclass(frozen=True)
class CommitEntry:
    final: Path
    is_dir: bool
    had_old: bool
    new: Path  # the staged output, renamed to ``final`` by the commit
    old: Path  # what stood at ``final`` before, kept until every output is in place


def our_node(path: Path) -> str | None:
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


def remove_ours(path: Path) -> None:
    """Remove one of our staging or backup names (never through a symlink)."""
    kind = our_node(path)
    if kind == "dir":
        shutil.rmtree(path)
    elif kind == "file":
        os.unlink(path)


def open_locked(path: Path, flags: int, mode: int = 0o600) -> int | None:
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



def _check_states(entries: Sequence[CommitEntry]) -> None:
    """CommitAnomaly unless every entry is in a state our own commit, roll-forward or roll-back can leave."""
    for e in entries:
        new, old = our_node(e.new), our_node(e.old)
        want = "dir" if e.is_dir else "file"
        if new not in (None, want) or old not in (None, want):
            raise CommitAnomaly(f"{e.final}: its staged or backup copy changed type; left alone")
        if our_node(e.final) not in (None, want):  # also refuses a symlink or another user's file in its place
            raise CommitAnomaly(f"{e.final}: is not a {'folder' if e.is_dir else 'file'} any more; left alone")
        if e.is_dir and new and old and os.path.lexists(e.final):
            raise CommitAnomaly(f"{e.final}: the old folder was moved aside, yet something stands in its place; "
                                "left alone")


def _roll_forward(entries: Sequence[CommitEntry]) -> None:
    _check_states(entries)
    for e in entries:
        if our_node(e.new) is None:
            continue  # already in place
        if e.is_dir:
            if os.path.lexists(e.final):
                if our_node(e.old) is not None:
                    raise CommitAnomaly(f"{e.final}: both the old and the new folder are still staged; left alone")
                os.rename(e.final, e.old)
            os.rename(e.new, e.final)
        else:
            os.replace(e.new, e.final)
    for folder in dict.fromkeys(e.final.parent for e in entries):
        fsync_dir(folder)


def roll_back(entries: Sequence[CommitEntry]) -> None:
    _check_states(entries)
    for e in reversed(entries):
        staged, backup = our_node(e.new), our_node(e.old)
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


def clean_up(entries: Sequence[CommitEntry], folders: Sequence[Path], manifests: Sequence[Path],
             token: str) -> None:
    """Remove staging and backup names, then the markers, then the manifest copies, the first one last."""
    for e in entries:
        remove_ours(e.new)
        remove_ours(e.old)
    for what in ("commit", "rollback"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folders[0] / commit_name(token, what))
    for m in list(manifests[1:]) + list(manifests[:1]):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(m)
    for folder in folders:
        fsync_dir(folder)


def _parse_manifest(raw: bytes, token: str) -> tuple[list[Path], list[CommitEntry]] | None:
    """(folders, entries) of a manifest, or None when it is not one we wrote completely."""
    try:
        data = json.loads(raw)
        if not (isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT and data.get("token") == token):
            return None
        folders = [Path(f) for f in data["folders"]]
        entries = []
        for i, item in enumerate(data["entries"]):
            final = Path(item["final"])
            if not final.is_absolute() or final.name in ("", ".", "..") or final.parent not in folders:
                return None
            entries.append(CommitEntry(final, bool(item["dir"]), bool(item["had_old"]),
                                  final.parent / commit_name(token, f"{i}.new"),
                                  final.parent / commit_name(token, f"{i}.old")))
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
    asked, as in :meth:`core.multi_commit.MultiCommit.commit`, before a roll-forward replaces a target;
    a refusal rolls back.
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
                    if our_node(folder / name) == "dir":
                        os.rmdir(folder / name)  # only ever an empty folder
                continue
            m = _MANIFEST_RE.match(name)
            if m and m.group(1) not in seen:
                seen.add(m.group(1))
                note = _recover_one(folder / name, m.group(1), replaceable)
                if note:
                    notes.append(note)
    return notes


def _refused(e: CommitEntry, replaceable) -> bool:
    """Whether a roll-forward must not replace what now stands at ``e.final`` (the new output is still staged)."""
    if not os.path.lexists(e.final):
        return False
    if e.is_dir and not e.had_old:
        return True  # a folder appeared where there was none: not ours
    return bool(replaceable is not None and replaceable(e.final, e.is_dir))


def _recover_one(path: Path, token: str, replaceable) -> str | None:
    try:
        if our_node(path) != "file":
            return None
    except CommitAnomaly:
        return None
    locks: list[int] = []
    try:
        fd = open_locked(path, os.O_RDONLY)
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
                fd = open_locked(primary, os.O_RDONLY)
            except FileNotFoundError:
                return f"{path}: its commit's first manifest {primary} is gone; left alone"
            if fd is None:
                return None
            locks.append(fd)
            if _parse_manifest(os.read(fd, 1 << 22), token) != parsed:
                return None
        manifests = [f / path.name for f in folders]
        done = os.path.lexists(folders[0] / commit_name(token, "commit"))
        undo = os.path.lexists(folders[0] / commit_name(token, "rollback"))
        targets = ", ".join(str(e.final) for e in entries)
        try:
            states = [(our_node(e.new), our_node(e.old)) for e in entries]
            if done and not undo:
                missing = any(new is None and not os.path.lexists(e.final) for e, (new, _) in zip(entries, states))
                refused = any(_refused(e, replaceable) for e, (new, _) in zip(entries, states) if new is not None)
                if not missing and not refused:
                    _roll_forward(entries)
                    note = f"finished an interrupted export: {targets}"
                else:
                    roll_back(entries)
                    note = f"undid an interrupted export (its outputs were incomplete): {targets}"
            elif done or undo:
                roll_back(entries)
                note = f"undid an interrupted export: {targets}"
            else:
                note = None  # killed while staging: nothing was replaced
            clean_up(entries, folders, manifests, token)
        except CommitAnomaly as exc:
            return str(exc)
        return note
    except OSError as exc:
        return f"{path}: could not finish or undo an interrupted export ({exc}); it is tried again next time"
    finally:
        for fd in locks:
            with contextlib.suppress(OSError):
                os.close(fd)
