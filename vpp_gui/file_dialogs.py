"""Where every file dialog of the app starts: beside the work, not in the home folder.

Annotators keep a clip, its ground truth, its labels and its exports together, so a dialog starts in
the open project's folder, else the folder holding the open clip (a video's folder, or the folder that
holds a frame folder: its siblings are the next clips), else the last folder used for that kind of
file (``Settings.folder``), else the home folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def folder_of(*paths: str | os.PathLike | None) -> str | None:
    """The existing folder holding the first of ``paths`` that is given, or None."""
    for p in paths:
        if p:
            parent = Path(p).expanduser().resolve().parent
            if parent.is_dir():
                return str(parent)
    return None


def start_folder(window, what: str) -> str:
    """The folder a dialog for ``what`` ("open", "import", "export", "gt", "project", "labels"…) starts in."""
    doc = window.bridge.doc
    here = folder_of(doc.path, doc.clip.path) if doc is not None else None
    return here or folder_of(getattr(window, "clip_path", None)) or window.settings.folder(what)


def start_path(window, what: str, name: str) -> str:
    """``name`` in :func:`start_folder` (the suggested file of a save dialog)."""
    return str(Path(start_folder(window, what)) / name)
