"""The models the app offers besides its built-in choices: the authors' released models, as the Model list and
the "Get the authors' models…" dialog show them, and getting one.

The rows are :func:`core.released_models.local_models` (the rows of ``vpp models list``); getting a model is
:func:`core.released_models.get_model`, the code ``vpp models download`` runs (resumable download, then
``vpp import-checkpoint``). Everything here is Qt-free; the dialog runs :func:`get_released` on a worker thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from core import released_models
from core.app.settings import ModelSpec
from core.errors import VPPError
from core.model_zoo import DownloadCancelled, DownloadError, ZooEntry
from core.released_models import LocalModel

log = logging.getLogger(__name__)
Folder = str | os.PathLike | None  # None: the user's cache folder, as `vpp models`


def imported_specs(folder: Folder = None) -> list[ModelSpec]:
    """The released models already imported into ``folder``, as Model list choices (the release's order)."""
    return [ModelSpec("file", str(path)) for _name, path in released_models.imported_models(folder)]


def released_rows(folder: Folder = None) -> list[LocalModel]:
    """Every released model with its state in ``folder`` (imported, downloaded, absent)."""
    return released_models.local_models(folder)


def row_cells(row: LocalModel) -> tuple[str, str, str, str, str, str]:
    """A row's cells: name, variant, kind, PKR, size, state."""
    e = row.entry
    return (e.name, e.variant, e.kind, released_models.pkr_text(e), row.size_text, row.state_text)


def download_folder(folder: Folder = None) -> Path:
    """Where a download goes: ``folder``, else the user's cache folder."""
    return released_models.folder_or_cache(folder)


def progress_text(have: int, total: int | None) -> str:
    """"12.0 MiB of 300.0 MiB" (or the bytes so far alone when the size is not known)."""
    return f"{released_models.size_text(have)} of {released_models.size_text(total)}" if total else \
        released_models.size_text(have)


def get_released(entry: ZooEntry, folder: Folder, *, log: Callable[[str], object],
                 on_progress: Callable[[int, int | None], object], cancelled: Callable[[], bool]) -> Path:
    """Download (resuming a partial file) and import ``entry`` into ``folder``; returns the imported model.

    ``cancelled()`` True stops the download between blocks (:class:`core.model_zoo.DownloadCancelled`)."""
    return released_models.get_model(entry, folder, progress=False, log=log, on_progress=on_progress,
                                     cancelled=cancelled)


def was_cancelled(exc: BaseException) -> bool:
    """Whether a Get ended because it was cancelled (not an error to show as one)."""
    return isinstance(exc, DownloadCancelled)


def failure_text(entry: ZooEntry, folder: Folder, exc: BaseException) -> str:
    """The one message of a failed Get: what failed and, for a download, how to get the file another way."""
    if isinstance(exc, DownloadCancelled):
        return f"Cancelled: {exc}"
    if isinstance(exc, DownloadError):
        return f"Could not download {entry.name}: {exc}\n\n{released_models.offline_help(entry, folder)}"
    if isinstance(exc, (VPPError, OSError)):
        return f"Could not import {entry.name}: {exc}"
    log.warning("getting %s failed: %s: %s", entry.name, type(exc).__name__, exc)
    return f"Could not get {entry.name}: {type(exc).__name__}: {exc}"
