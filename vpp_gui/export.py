"""Export the current pass: YouTube-VIS results (JSON or zipped) and DAVIS palette PNGs, via core's writers.

The writing runs on a superqt FunctionWorker (no torch involved) so a long clip does not freeze the
window; every file is written atomically by core (temporary file, fsync, rename).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from superqt.utils import FunctionWorker

from core.results import ClipResults

YTVIS_FILTERS = "YouTube-VIS results (*.json);;Zipped results.json for the evaluation server (*.zip)"


def write_ytvis(results: ClipResults, path: str | Path, *, video_id: int = 1, zipped: bool | None = None) -> str:
    """Validate and write the YTVIS results of ``results``; returns a one-line summary."""
    from core.data.ytvis import parse_ytvis_results, write_ytvis_results

    path = Path(path)
    entries = results.to_ytvis(video_id)
    parsed = parse_ytvis_results(entries, source=path)
    as_zip = path.suffix.lower() == ".zip" if zipped is None else zipped
    write_ytvis_results(path, parsed, zip=as_zip)
    return f"exported {len(parsed)} track{'s' if len(parsed) != 1 else ''} to {path}"


def write_davis(results: ClipResults, folder: str | Path, names: Sequence[str]) -> str:
    """One DAVIS palette PNG per frame (named like the frame) in ``folder``; objects = best tracks."""
    from core.data.davis import write_davis_png
    from core.errors import DataError

    folder = Path(folder)
    if len(names) != results.num_frames:
        raise ValueError(f"{len(names)} frame names for {results.num_frames} frames")
    stems = [Path(n).stem for n in names]
    if len(set(stems)) != len(stems):
        raise DataError(f"{folder}: frame names do not have distinct stems; cannot name one PNG per frame")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from exc
    objects = results.davis_objects()
    for i, stem in enumerate(stems):
        write_davis_png(folder / f"{stem}.png", results.davis_label_map(i, objects))
    return f"exported {len(stems)} DAVIS masks ({len(objects)} objects) to {folder}"


def incomplete_message(results: ClipResults | None) -> str | None:
    """Why the results cannot be exported yet, or None."""
    if results is None:
        return "There is nothing to export yet: open a clip and let inference run."
    if not results.is_complete:
        return (f"Inference has results for {results.count} of {results.num_frames} frames. Wait for it to "
                "finish (or press Run, Ctrl+R, after a cancel) before exporting.")
    return None


class Exporter(QObject):
    """Runs one export at a time on a worker thread; reports with ``finished`` / ``failed``."""

    finished = Signal(str)  # summary
    failed = Signal(str)  # message

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._workers: set[FunctionWorker] = set()  # each held until its thread is done
        self._busy = False  # cleared before finished/failed, so a slot may start the next export

    @property
    def busy(self) -> bool:
        return self._busy

    def start(self, func, *args, **kwargs) -> bool:
        if self._busy:
            return False
        worker = FunctionWorker(func, *args, **kwargs)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(lambda: self._workers.discard(worker))
        self._workers.add(worker)
        self._busy = True
        worker.start()
        return True

    def _on_returned(self, summary: str) -> None:
        self._busy = False
        self.finished.emit(summary)

    def _on_error(self, exc: Exception) -> None:
        from core.studio import user_message

        self._busy = False
        self.failed.emit(user_message(exc))
