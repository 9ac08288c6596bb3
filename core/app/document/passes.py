"""A document's model passes: a pass replacing the unreviewed model tracks, its frames becoming tracks.

Plain functions over a :class:`~core.app.document.document.Document`; its ``begin_pass``,
``add_model_frame``, ``set_categories`` (and private ``_add_frame``, ``_model_label``, ``_run_note``)
methods call them. The rules (a person's tracks stay; a model instance shadowing one is not added;
the pass never writes into a track a person touched) are :mod:`core.app.document`'s.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from core.app.document.labels import join_categories
from core.app.document.tracks import FrameMask, Track, rle_iou
from core.results import ClipResults, CompactFrame

if TYPE_CHECKING:
    from core.app.document.document import Document

#: A new model instance overlapping a person's track this much (mask IoU, same frame) is not added.
SHADOW_IOU = 0.5


def begin_pass(doc: Document, results: ClipResults, run: dict[str, Any] | None = None) -> None:
    """Start a pass filling ``results`` on ``doc`` (see :meth:`Document.begin_pass`)."""
    if (results.num_frames, results.height, results.width) != doc.clip.shape:
        raise ValueError(f"results for {results.num_frames} frames of {results.width}x{results.height} "
                         f"do not fit the clip ({doc.clip.num_frames} frames of "
                         f"{doc.clip.width}x{doc.clip.height})")
    gone = [tid for tid, t in doc._tracks.items() if not t.protected]
    for tid in gone:
        del doc._tracks[tid]
        doc.hidden.discard(tid)
    doc.selected = tuple(t for t in doc.selected if t in doc._tracks)
    if doc.solo in gone:
        doc.solo = None
    doc._live.clear()
    doc._votes.clear()
    doc.results = results
    doc.run = run
    doc._passes += 1
    doc._write_journal({"kind": "pass"})
    for frame in list(results):
        doc._add_frame(frame)
    doc._emit("results")
    doc._emit("tracks", gone)


def add_model_frame(doc: Document, frame: CompactFrame) -> None:
    """One frame of ``doc``'s running pass (also stored in its ``results``)."""
    if doc.results is None:
        raise RuntimeError("add_model_frame before begin_pass: start a pass first")
    if doc.results.get(frame.index) is not frame:
        doc.results.add(frame)
    touched = doc._add_frame(frame)
    doc._emit("tracks", touched, [frame.index])


def add_frame(doc: Document, frame: CompactFrame) -> set[int]:
    """Put ``frame``'s instances into ``doc``'s model tracks (a new track per new pass id; the label
    is the one with the most summed score); returns the tracks touched."""
    i = frame.index
    people = [t for t in doc._tracks.values() if t.protected and i in t.frames]
    iou = rle_iou(list(frame.rles), [t.frames[i].rle for t in people]) if people else None
    touched = set()
    for k in range(frame.num_instances):
        if frame.areas[k] == 0 or (iou is not None and iou[k].max() >= SHADOW_IOU):
            continue
        pid = int(frame.track_ids[k])
        category, score = doc._model_label(int(frame.category_ids[k])), float(frame.scores[k])
        did = doc._live.get(pid)
        track = doc._tracks.get(did) if did is not None else None
        if track is None:
            did = doc._new_id()
            track = Track(did, category, "model", note=doc._run_note())
            doc._tracks[did] = track
            doc._live[pid] = did
            doc._votes[did] = defaultdict(float)
        track.frames[i] = FrameMask(frame.rles[k], score, int(frame.areas[k]))  # type: ignore[index]
        votes = doc._votes[did]
        votes[category] += score
        best = max(votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]
        if best != track.category_id:
            doc._tracks[did] = Track(did, best, "model", "unreviewed", False, track.frames, track.note)
        touched.add(did)
    return touched


def run_note(doc: Document) -> str:
    """The note of a new model track: which model made it, at which PKR."""
    if not doc.run:
        return "model"
    return f"model {doc.run.get('model', '?')} at PKR {doc.run.get('pkr', '?')}"


def set_categories(doc: Document, categories: dict[int, str]) -> None:
    """Join the model's categories to ``doc``'s labels by name (see :meth:`Document.set_categories`)."""
    names = {int(k): str(v) for k, v in categories.items()}
    doc._model_names.update(names)
    mapping, created = join_categories(doc._labels, list(names.items()))
    doc._model_map.update(mapping)
    if created:
        doc._labels_changed(by_person=False)


def model_label(doc: Document, category: int, *, create: bool = True) -> int:
    """The label of the model's ``category`` (joined by name again when its label was deleted)."""
    label = doc._model_map.get(category)
    if label is not None and label in doc._labels:
        return label
    name = doc._model_names.get(category)
    if name is None:
        return category
    if not create:
        found = doc._labels.find(name)
        return found if found is not None else category
    doc.set_categories({category: name})
    return doc._model_map[category]
