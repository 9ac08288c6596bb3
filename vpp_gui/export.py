"""Export the current pass: YouTube-VIS results (JSON or zipped), DAVIS palette PNGs and COCO per-frame JSON.

Each writer is a thin wrapper over :func:`core.export.export_results` (all or nothing, atomic, with a
run record beside the output) and returns a one-line summary. The writing runs on a superqt
FunctionWorker (no torch involved) so a long clip does not freeze the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from superqt.utils import FunctionWorker

from core.results import ClipResults

if TYPE_CHECKING:
    from core.export import RunRecord

YTVIS_FILTERS = "YouTube-VIS results (*.json);;Zipped results.json for the evaluation server (*.zip)"
COCO_FILTERS = "COCO per-frame JSON (*.json)"


def _record(record: RunRecord | None) -> RunRecord:
    from core.export import RunRecord

    return record if record is not None else RunRecord("vpp-gui", "unknown")


def _video(results: ClipResults, name: str, names: Sequence[str] | None, video_id: int = 1):
    from core.export import VideoExport

    if names is None:  # YTVIS results do not name frames
        names = [f"{t:05d}.jpg" for t in range(results.num_frames)]
    if len(names) != results.num_frames:
        raise ValueError(f"{len(names)} frame names for {results.num_frames} frames")
    return VideoExport(int(video_id), name, tuple(names), results)


def write_ytvis(results: ClipResults, path: str | Path, *, video_id: int = 1, zipped: bool | None = None,
                record: RunRecord | None = None, categories: Sequence[tuple[int, str]] = (),
                inputs: Sequence[str | Path] = ()) -> str:
    """Validate and write the YTVIS results of ``results`` (a zip holding results.json when ``zipped``, or by
    default when ``path`` ends in .zip); returns a one-line summary."""
    from core.export import export_results

    path = Path(path)
    as_zip = path.suffix.lower() == ".zip" if zipped is None else zipped
    target = {"zip": path} if as_zip else {"ytvis": path}
    return export_results([_video(results, path.stem, None, video_id)], **target, categories=categories,
                          record=_record(record), inputs=inputs).message


def write_davis(results: ClipResults, folder: str | Path, names: Sequence[str], *,
                record: RunRecord | None = None, inputs: Sequence[str | Path] = ()) -> str:
    """One DAVIS palette PNG per frame (named like the frame) in ``folder``; objects = best tracks.

    ``folder`` must be new, empty or an earlier export (it is replaced as a whole)."""
    from core.export import export_results

    folder = Path(folder)
    return export_results([_video(results, folder.name, names)], davis=folder, record=_record(record),
                          inputs=inputs).message


def write_coco(results: ClipResults, path: str | Path, names: Sequence[str], *, record: RunRecord | None = None,
               categories: Sequence[tuple[int, str]] = (), video_name: str | None = None,
               inputs: Sequence[str | Path] = ()) -> str:
    """A COCO per-frame JSON (one image per frame, one annotation per present track); returns a summary.

    Image ``file_name`` is "<video_name>/<frame name>" (``video_name`` defaults to the file's stem)."""
    from core.export import export_results

    path = Path(path)
    return export_results([_video(results, video_name or path.stem, names)], coco=path, categories=categories,
                          record=_record(record), inputs=inputs).message


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
        from core.app.studio import user_message

        self._busy = False
        self.failed.emit(user_message(exc))
