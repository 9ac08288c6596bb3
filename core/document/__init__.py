"""The app's document, Qt-free: a clip, its run settings, the model's results and a person's edits.

The GUI is a view over a :class:`Document`; everything it can do can be done from Python::

    from core.document import Document

    doc = Document.open_clip("clips/dojo")                  # a frame folder or a video file
    doc.set_categories({1: "person", 2: "dog"})
    doc.import_file("someone_elses_results.json")           # YTVIS results / GT, or a DAVIS PNG folder
    for row in doc.rows():                                  # the tracks panel: id, category, score, frames...
        print(row.id, row.category, row.first, row.last, row.review, row.edited)
    doc.relabel([3], 2)                                     # every edit is one undoable command
    doc.paint(3, frame=10, mask=stroke)                     # [H, W] bool at the frame's full size
    doc.paint(3, frame=10, mask=stroke, erase=True)
    doc.merge([3, 5]); new_id = doc.split(3, frame=20)
    doc.accept([3]); doc.reject([new_id]); doc.delete_from(5, frame=30)
    doc.undo(); doc.redo()
    doc.save("dojo.vppproj")                                # versioned JSON, atomic; doc.dirty is False now
    doc.start_journal()                                     # every edit reaches disk before it returns
    doc.export(ytvis="results.json", davis="masks/", coco="coco.json")   # all or nothing

    doc = Document.load("dojo.vppproj")                     # reopen (the clip need not be on disk to export)
    doc = Document.recover(".dojo.vppproj.journal")         # after a crash: the project plus every edit

Model passes feed the document with :meth:`Document.begin_pass` (the unreviewed model tracks go) and
:meth:`Document.add_model_frame` (one frame of results at a time).

**The rules.**

- A track is a person's (*protected*) once a person created, imported, edited (masks, frames or
  label) or reviewed (accepted / rejected) it. When the model runs again (another PKR, model or
  threshold), protected tracks stay exactly as they are; only the unreviewed model tracks are
  replaced, and a new model instance whose mask overlaps a protected track on the same frame (mask
  IoU >= :data:`SHADOW_IOU`) is not added, so accepted objects do not come back twice.
- While a pass runs, the model never writes into a track a person touched: its later frames of that
  object start a new unreviewed track.
- Undo / redo (Ctrl+Z, Ctrl+Shift+Z / Ctrl+Y in the app; 1000 levels) restore whole tracks exactly,
  also across a re-inference.
- Rejected tracks are kept in the project (and drawn as outlines) but are not exported. Hidden / solo
  are view settings, saved with the project, not edits; export writes hidden tracks too.
- The journal (:mod:`core.document.journal`) lives beside the project (``.<name>.journal``) or, for
  a document never saved, in ``<data dir>/journals``; :func:`find_recoverable` lists those left by a
  crash. A damaged journal, or one of another clip or another version of the project, is refused whole.
"""

from core.document.clip import ClipInfo, RunSettings
from core.document.document import SHADOW_IOU, DocEvent, Document, Instance, TrackRow
from core.document.history import Command, UndoStack
from core.document.journal import RecoveryCandidate, find_recoverable, journal_path_for
from core.document.project import SUFFIX as PROJECT_SUFFIX
from core.document.project import read_project, write_project
from core.document.tracks import FrameMask, Track, brush_mask, draw_stroke, fill_holes, polygon_mask

__all__ = [
    "PROJECT_SUFFIX",
    "SHADOW_IOU",
    "ClipInfo",
    "Command",
    "DocEvent",
    "Document",
    "FrameMask",
    "Instance",
    "RecoveryCandidate",
    "RunSettings",
    "Track",
    "TrackRow",
    "UndoStack",
    "brush_mask",
    "draw_stroke",
    "fill_holes",
    "find_recoverable",
    "journal_path_for",
    "polygon_mask",
    "read_project",
    "write_project",
]
