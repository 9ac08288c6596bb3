"""Undo / redo: every edit is a :class:`Command`, a list of whole-track changes (before -> after).

Tracks are immutable, so a change only holds references: undo sets each touched track back to its
``before`` (``None``: the track did not exist), redo to its ``after``. That makes undo exact (the
previous mask, bit for bit) and independent of anything that happened in between, a re-inference
included: passes never write into a track that an edit touched.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from core.app.document.tracks import Track

DEFAULT_UNDO_LIMIT = 1000
_serials = itertools.count(1)


@dataclass(frozen=True)
class Change:
    track_id: int
    before: Track | None
    after: Track | None


@dataclass(frozen=True)
class Command:
    label: str
    changes: tuple[Change, ...]
    serial: int = 0

    @classmethod
    def make(cls, label: str, changes: list[Change] | tuple[Change, ...]) -> Command:
        return cls(label, tuple(changes), next(_serials))


class UndoStack:
    """Commands done (undoable) and undone (redoable); a new command clears the redo side.

    ``limit`` bounds the undo depth (oldest dropped first); ``position`` identifies the current
    state (the serial of the last done command; 0 for none, or the newest one the limit dropped) so a
    document can tell whether it is back at its saved state.
    """

    def __init__(self, limit: int = DEFAULT_UNDO_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"undo limit must be at least 1, got {limit}")
        self.limit = limit
        self._done: list[Command] = []
        self._undone: list[Command] = []
        self._floor = 0  # the serial of the newest command dropped by the limit (the state undo stops at)

    def push(self, command: Command) -> None:
        self._done.append(command)
        self._undone.clear()
        self._trim()

    def insert(self, command: Command, *, undone: bool) -> None:
        """Add a command made elsewhere as done (top of the undo side) or undone (top of the redo side),
        keeping the other side (a journal replaying an undo / redo of a command it did not record)."""
        (self._undone if undone else self._done).append(command)
        self._trim()

    def _trim(self) -> None:
        if len(self._done) > self.limit:
            self._floor = self._done[len(self._done) - self.limit - 1].serial
            del self._done[: len(self._done) - self.limit]

    def undo(self) -> Command | None:
        if not self._done:
            return None
        cmd = self._done.pop()
        self._undone.append(cmd)
        return cmd

    def redo(self) -> Command | None:
        if not self._undone:
            return None
        cmd = self._undone.pop()
        self._done.append(cmd)
        return cmd

    def clear(self) -> None:
        self._floor = self.position
        self._done.clear()
        self._undone.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    @property
    def undo_label(self) -> str:
        return self._done[-1].label if self._done else ""

    @property
    def redo_label(self) -> str:
        return self._undone[-1].label if self._undone else ""

    @property
    def position(self) -> int:
        return self._done[-1].serial if self._done else self._floor

    def serials(self) -> set[int]:
        """The serials of every command held (done and undone)."""
        return {c.serial for c in (*self._done, *self._undone)}

    def __len__(self) -> int:
        return len(self._done)
