"""Read-only views of a document: its drawing and panel rows, the frame the canvas draws, the export.

:class:`Instance` (one track on one frame) and :class:`TrackRow` (one line of the tracks panel) are
what :meth:`Document.frame_instances` and :meth:`Document.rows` return. The functions take a
:class:`~core.app.document.document.Document`; its ``view_frame``, ``to_clip_results``, ``export`` and
``run_record`` methods call them.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.app.document.tracks import FrameMask, Review, Track
from core.atomic import open_regular
from core.errors import DataError
from core.results import ClipResults, CompactFrame

if TYPE_CHECKING:
    from core.app.document.document import Document


@dataclass(frozen=True)
class Instance:
    """One track on one frame, for drawing."""

    track_id: int
    category_id: int
    score: float
    rle: dict
    area: int
    review: Review
    edited: bool
    origin: str

    def mask(self) -> np.ndarray:
        from core.data.rle import decode_rle

        return decode_rle(self.rle)


@dataclass(frozen=True)
class TrackRow:
    """One line of the tracks panel."""

    id: int
    category_id: int
    category: str
    score: float
    first: int | None
    last: int | None
    num_frames: int
    review: Review
    edited: bool
    origin: str
    hidden: bool


def view_frame(doc: Document, index: int, preview: CompactFrame | None = None) -> CompactFrame | None:
    """What the canvas draws on frame ``index`` (see :meth:`Document.view_frame`)."""
    model = doc.results.get(index) if doc.results is not None else None
    items = [(i.track_id, i.category_id, i.score, i.rle, i.area) for i in doc.frame_instances(index)]
    base = model
    if model is None and preview is not None:
        base = preview
        people = {i.track_id for i in doc.frame_instances(index) if doc._tracks[i.track_id].protected}
        items = [it for it in items if it[0] in people]
        items += [(-int(preview.track_ids[k]), doc._model_label(int(preview.category_ids[k]), create=False),
                   float(preview.scores[k]), preview.rles[k], int(preview.areas[k]))
                  for k in range(preview.num_instances)]
    if base is None and not items:
        return None
    _n, h, w = doc.clip.shape
    return CompactFrame(
        index=index, height=h, width=w,
        track_ids=np.asarray([it[0] for it in items], np.int64),
        category_ids=np.asarray([it[1] for it in items], np.int64),
        scores=np.asarray([it[2] for it in items], np.float32),
        rles=tuple(it[3] for it in items), areas=np.asarray([it[4] for it in items], np.int64),
        kept=base.kept if base is not None else np.zeros((0, 1, 1), bool),
        stage_names=base.stage_names if base is not None else (),
        keep_ratio=base.keep_ratio if base is not None else float("nan"),
        gflops=base.gflops if base is not None else float("nan"),
        ms=base.ms if base is not None else float("nan"))


def to_clip_results(doc: Document, *, include_rejected: bool = False) -> ClipResults:
    """Every frame as the export sees it: the document's tracks (rejected ones left out)."""
    n, h, w = doc.clip.shape
    out = ClipResults(n, h, w)
    per_frame: list[list[tuple[Track, FrameMask]]] = [[] for _ in range(n)]
    for t in sorted(doc._tracks.values(), key=lambda t: t.id):
        if t.review == "rejected" and not include_rejected:
            continue
        for i, f in t.frames.items():
            if f.area > 0:
                per_frame[i].append((t, f))
    no_ids, no_scores, no_kept = _empty(np.int64), _empty(np.float32), _empty(bool, (0, 1, 1))
    for i, items in enumerate(per_frame):
        model = doc.results.get(i) if doc.results is not None else None
        out.add(CompactFrame(  # frames without tracks share read-only empty arrays: memory follows the tracks
            index=i, height=h, width=w,
            track_ids=np.asarray([t.id for t, _ in items], np.int64) if items else no_ids,
            category_ids=np.asarray([t.category_id for t, _ in items], np.int64) if items else no_ids,
            scores=np.asarray([f.score for _, f in items], np.float32) if items else no_scores,
            rles=tuple(dict(f.rle) for _, f in items),
            areas=np.asarray([f.area for _, f in items], np.int64) if items else no_ids,
            kept=model.kept if model is not None else no_kept,
            stage_names=model.stage_names if model is not None else (),
            keep_ratio=model.keep_ratio if model is not None else float("nan"),
            gflops=model.gflops if model is not None else float("nan"),
            ms=model.ms if model is not None else float("nan")))
    return out


def _empty(dtype, shape=(0,)) -> np.ndarray:
    a = np.zeros(shape, dtype)
    a.flags.writeable = False
    return a


def export_video(doc: Document):
    """The document as the one video (id 1) an export writes: its frame names and corrected results."""
    from core.export import VideoExport

    return VideoExport(1, doc.clip.name, doc.clip.frame_names(), doc.to_clip_results())


def export(doc: Document, outputs, *, tool: str = "vpp-studio"):
    """Write the corrected results to ``outputs`` (format name -> path) through
    :func:`core.export.export_results` (atomic, all or none)."""
    from core.export import export_results

    return export_results([export_video(doc)], outputs, categories=tuple(sorted(doc.categories.items())),
                          record=doc.run_record(tool))


def run_record(doc: Document, tool: str):
    """The export's record of what produced the results (model, its hash, PKR, mode, track counts)."""
    from core.export import RunRecord
    from core.regular_files import file_sha256

    run = doc.run or {}
    model = run.get("model") or doc.settings.model_path or doc.settings.model_kind
    sha = run.get("model_sha256")
    if sha is None and run.get("model"):  # the model that made the tracks (the settings name the next run's)
        sha = checkpoint_sha256(str(run["model"]), file_sha256)
    edited = sum(t.protected for t in doc._tracks.values())
    return RunRecord(tool=tool, model=str(model), model_sha256=sha, pkr=run.get("pkr", doc.settings.pkr),
                     mode=run.get("mode", doc.settings.mode),
                     extra={"project": str(doc.path) if doc.path else None, "tracks": len(doc._tracks),
                            "tracks_by_person": edited})


#: What a checkpoint file may be called, and how its first bytes start (zip: torch's; 0x80: a pickle).
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")


def checkpoint_sha256(path: str, hasher) -> str | None:
    """The SHA-256 of ``path`` when it is a regular file that looks like a model checkpoint (its name and
    first bytes), else None: a project naming any other file (``/etc/shadow``, a pipe, a folder) never
    makes an export read it."""
    if not path.lower().endswith(CHECKPOINT_SUFFIXES):
        return None
    try:
        fd = open_regular(path, os.O_RDONLY, what="checkpoint", follow=True)
        try:
            head = os.read(fd, 9)
        finally:
            os.close(fd)
    except (OSError, DataError):
        return None
    safetensors = len(head) == 9 and 2 <= struct.unpack("<Q", head[:8])[0] < 2**27 and head[8:9] == b"{"
    if not (safetensors or head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        return None
    try:
        return hasher(path)
    except OSError:
        return None
