"""Where every file dialog of the app starts: beside the work, not in the home folder.

Annotators keep a clip, its ground truth, its labels and its exports together, so a dialog starts in
the open project's folder, else the folder holding the open clip (a video's folder, or the folder that
holds a frame folder: its siblings are the next clips), else the last folder used for that kind of
file (``Settings.folder``), else the home folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol


def folder_of(*paths: str | os.PathLike | None) -> str | None:
    """The existing folder holding the first of ``paths`` that is given, or None."""
    for p in paths:
        if p:
            parent = Path(p).expanduser().resolve().parent
            if parent.is_dir():
                return str(parent)
    return None


class Feedback(Protocol):
    """How the window's helpers (transfers, projects, review) tell the person something."""

    def show_error(self, title: str, message: str) -> None: ...

    def show_message(self, text: str, msecs: int = 0) -> None: ...


class DialogFolders:
    """Where one window's dialogs start (see the module docstring) and the last folder of each kind.

    ``doc()`` gives the open document (or None), ``clip_path()`` the open clip (or None); ``settings`` keeps the
    last folders (:class:`vpp_gui.settings.Settings`).
    """

    def __init__(self, settings, doc: Callable[[], object], clip_path: Callable[[], str | None]) -> None:
        self.settings = settings
        self._doc = doc
        self._clip_path = clip_path

    def start(self, what: str) -> str:
        """The folder a dialog for ``what`` ("open", "import", "export", "gt", "project", "labels"…) starts in."""
        doc = self._doc()
        here = folder_of(doc.path, doc.clip.path) if doc is not None else None
        return here or folder_of(self._clip_path()) or self.settings.folder(what)

    def start_path(self, what: str, name: str) -> str:
        """``name`` in :meth:`start` (the suggested file of a save dialog)."""
        return str(Path(self.start(what)) / name)

    def remember(self, what: str, folder: str | os.PathLike) -> None:
        """``folder`` is the last folder used for ``what``."""
        self.settings.set_folder(what, str(folder))
