"""Error types of ``core.data``: each names the file (and frame or JSON path) and says what to do."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.errors import DataError

#: How many problems a validation error message lists before "... and N more".
MAX_LISTED_PROBLEMS = 8


class FrameReadError(DataError):
    """A frame of a folder or video cannot be decoded."""

    def __init__(self, path: str | Path, index: int, reason: str) -> None:
        self.path = Path(path)
        self.index = index
        self.reason = reason
        super().__init__(f"{path}: frame {index} cannot be read ({reason})")


class CorruptFramesError(FrameReadError):
    """Several frames of a source cannot be decoded; ``frames`` holds (index, name, reason) of each.

    As a :class:`FrameReadError` it names the first (``path``, ``index``, ``reason``); the message lists
    the first :data:`MAX_LISTED_PROBLEMS` and counts the rest. ``complete`` is False when counting stopped
    early (the message then says "at least")."""

    def __init__(self, source: str | Path, first_path: str | Path,
                 frames: Sequence[tuple[int, str, str]], *, complete: bool = True) -> None:
        self.path = Path(first_path)
        self.source = Path(source)
        self.frames = tuple(frames)
        self.index, _, self.reason = self.frames[0]
        self.complete = complete
        listed = [f"{name} (frame {i}: {why})" for i, name, why in self.frames]
        n = f"{len(self.frames)}" if complete else f"at least {len(self.frames)}"
        DataError.__init__(self, f"{source}: {n} frames cannot be read: {format_problems(listed)}; "
                                 "replace or remove them")


class YtvisReadError(DataError):
    """A YouTube-VIS JSON (or results zip) cannot be read or parsed."""


class YtvisWriteError(DataError):
    """A YouTube-VIS file cannot be written (bad content or file system error)."""


def format_problems(problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    return shown + (f"; ... and {more} more" if more > 0 else "")


class YtvisValidationError(DataError):
    """A YouTube-VIS file parses as JSON but breaks the schema; ``problems`` holds every finding."""

    def __init__(self, path: str | Path, problems: Sequence[str], what: str = "YouTube-VIS file") -> None:
        self.path = Path(path)
        self.problems = tuple(problems)
        n = len(self.problems)
        super().__init__(f"{path}: invalid {what} ({n} problem{'s' if n != 1 else ''}): {format_problems(problems)}")
