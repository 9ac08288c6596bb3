"""Exports for the app: the formats the File menu offers and writing one pass's results in one of them.

The GUI reaches :mod:`core.formats` and :mod:`core.export` only through here. :func:`write_export` is a thin
wrapper over :func:`core.export.export_results` (all or nothing, atomic, with a run record beside the output)
and returns a one-line summary; the app runs it on a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.export import RunRecord, VideoExport, export_results
from core.formats import Codec, codec, codecs
from core.results import ClipResults

__all__ = ["Codec", "codec", "codecs", "incomplete_message", "write_export"]


def _record(record: RunRecord | None) -> RunRecord:
    return record if record is not None else RunRecord("vpp-gui", "unknown")


def _video(results: ClipResults, name: str, names: Sequence[str] | None, video_id: int = 1):
    if names is None:  # YTVIS results do not name frames
        names = [f"{t:05d}.jpg" for t in range(results.num_frames)]
    if len(names) != results.num_frames:
        raise ValueError(f"{len(names)} frame names for {results.num_frames} frames")
    return VideoExport(int(video_id), name, tuple(names), results)


def write_export(name: str, results: ClipResults, path: str | Path, names: Sequence[str] | None = None, *,
                 record: RunRecord | None = None, categories: Sequence[tuple[int, str]] = (),
                 video_name: str | None = None, inputs: Sequence[str | Path] = ()) -> str:
    """Validate and write ``results`` as the format ``name`` (a codec of :mod:`core.formats`) to ``path``;
    returns a one-line summary. ``names``: the frame names (default ``00000.jpg`` ...); ``video_name``: the
    video's name (COCO ``file_name`` is "<video_name>/<frame name>"; default the file's stem or folder's name).
    A folder output must be new, empty or an earlier export (it is replaced as a whole)."""
    path = Path(path)
    default = path.name if codec(name).folder else path.stem
    return export_results([_video(results, video_name or default, names)], {name: path}, categories=categories,
                          record=_record(record), inputs=inputs).message


def incomplete_message(results: ClipResults | None) -> str | None:
    """Why the results cannot be exported yet, or None."""
    if results is None:
        return "There is nothing to export yet: open a clip and let inference run."
    if not results.is_complete:
        return (f"Inference has results for {results.count} of {results.num_frames} frames. Wait for it to "
                "finish (or press Run, Ctrl+R, after a cancel) before exporting.")
    return None


