"""The authors' released models on this machine: each one's state, and getting one (download, then import).

``vpp models list`` / ``vpp models download`` and the app's "Get the authors' models…" dialog both use
this module, so they show the same states and run the same code: :func:`core.model_zoo.download`
(resumable; the app passes ``on_progress`` / ``cancelled``) and then
:func:`core.release_import.import_release_checkpoint` (what ``vpp import-checkpoint`` runs), which turns the
released ``.pth`` into ``NAME.safetensors`` beside it. States:

- ``imported``: ``NAME.safetensors`` is in the folder (the Model list offers it);
- ``downloaded``: only ``NAME.pth`` is there (getting it again imports it without downloading);
- ``absent``: neither.

Without internet a download fails with one :class:`~core.model_zoo.DownloadError`; :func:`offline_help`
says how to bring the file onto the machine another way. A ``.pth`` whose import is refused (its content:
a :class:`~core.errors.CheckpointError` or :class:`~core.errors.DataError`) does not stay as if it were
good: it is moved aside to ``NAME.pth.refused`` (its recorded checksum removed), the error says so, and
the next Get downloads it anew. Qt-free; torch is imported only to import.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core import model_zoo
from core.errors import CheckpointError, DataError
from core.model_zoo import ZooEntry

State = Literal["imported", "downloaded", "absent"]
STATE_TEXT: dict[str, str] = {"imported": "imported", "downloaded": "downloaded", "absent": "not present"}


@dataclass(frozen=True)
class LocalModel:
    """One registry entry as this machine has it."""

    entry: ZooEntry
    state: State
    size: int | None  # bytes: the registry's, else the downloaded file's (the release publishes none)
    pth: Path  # where the download goes (or is)
    model: Path  # the imported .safetensors

    @property
    def size_text(self) -> str:
        return size_text(self.size)

    @property
    def state_text(self) -> str:
        return STATE_TEXT[self.state]


def folder_or_cache(folder: str | os.PathLike | None = None) -> Path:
    """``folder``, else the user's cache folder (:func:`core.model_zoo.cache_dir`)."""
    return Path(folder) if folder is not None else model_zoo.cache_dir()


def imported_path(entry: ZooEntry, folder: str | os.PathLike) -> Path:
    """Where the imported model of ``entry`` goes: ``NAME.safetensors`` beside the download."""
    return Path(folder) / f"{entry.name}.safetensors"


def local_model(entry: ZooEntry, folder: str | os.PathLike | None = None) -> LocalModel:
    folder = folder_or_cache(folder)
    pth, model = folder / entry.filename, imported_path(entry, folder)
    downloaded = pth.is_file()
    state: State = "imported" if model.is_file() else "downloaded" if downloaded else "absent"
    size = entry.size if entry.size is not None else (pth.stat().st_size if downloaded else None)
    return LocalModel(entry, state, size, pth, model)


def local_models(folder: str | os.PathLike | None = None) -> list[LocalModel]:
    """Every registry entry, in the release's order, with its state in ``folder`` (default: the cache)."""
    return [local_model(e, folder) for e in model_zoo.ZOO]


def imported_models(folder: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """(name, path) of the released models already imported into ``folder`` (default: the cache), in the
    release's order: what the app's Model list offers."""
    return [(m.entry.name, m.model) for m in local_models(folder) if m.state == "imported"]


def pkr_text(entry: ZooEntry) -> str:
    if entry.pkr is None:
        return "-"
    return "100% (dense)" if entry.pkr == 1.0 else f"{entry.pkr * 100:.1f}%"


def size_text(n: int | None) -> str:
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)  # pragma: no cover


def offline_help(entry: ZooEntry, folder: str | os.PathLike | None = None) -> str:
    """How to get ``entry`` onto a machine that cannot download it."""
    folder = folder_or_cache(folder)
    return (f"To use it without internet here: on a machine with internet, download {entry.url} (all files: "
            f"{model_zoo.RELEASE_FILES_PAGE}), copy the file to {folder / entry.filename} and get it again (a file "
            f"already there is imported without downloading), or import it from wherever you put it with: "
            f"vpp import-checkpoint FILE.pth --out {imported_path(entry, folder)} --variant {entry.variant}")


def get_model(entry: ZooEntry, folder: str | os.PathLike | None = None, *, do_import: bool = True,
              progress: bool = True, log: Callable[[str], None] | None = None,
              on_progress: model_zoo.ProgressCallback | None = None,
              cancelled: Callable[[], bool] | None = None) -> Path:
    """Download ``entry`` into ``folder`` (default: the cache), then import it; returns the ``.safetensors``
    (with ``do_import=False``: the ``.pth``).

    ``progress`` / ``log`` / ``on_progress`` / ``cancelled`` go to :func:`core.model_zoo.download`
    (cancelling stops the download, keeping its partial file; the import, once started, runs to its end).
    """
    folder = folder_or_cache(folder)
    path = model_zoo.download(entry, folder, progress=progress, log=log, on_progress=on_progress,
                              cancelled=cancelled)
    if not do_import:
        return path
    from core import release_import  # torch is imported only to import

    out = imported_path(entry, folder)
    if log is not None:
        log(f"importing {path} as {out}")
    try:
        release_import.import_release_checkpoint(str(path), str(out), variant=entry.variant)
    except (CheckpointError, DataError) as exc:  # the file itself was refused: it must not stay as if good
        raise type(exc)(f"{exc}\n{quarantine(path)}") from None
    return out


def refused_path(path: str | os.PathLike) -> Path:
    """Where a downloaded file whose import was refused is moved: ``NAME.pth.refused``."""
    p = Path(path)
    return p.with_name(p.name + ".refused")


def quarantine(path: str | os.PathLike) -> str:
    """Move a refused download aside (never to be imported or listed as downloaded again) and remove its
    recorded checksum; returns the sentence that says so (or why it could not be moved)."""
    src, dst = Path(path), refused_path(path)
    with contextlib.suppress(OSError):
        model_zoo.sidecar_path(src).unlink()
    try:
        os.replace(src, dst)
    except OSError as exc:
        return (f"{src}: could not be moved aside ({exc.strerror or exc}); delete it by hand before getting "
                "the model again")
    return (f"{src}: moved to {dst}, so it is not used again; delete that file, then get the model again to "
            "download it anew")
