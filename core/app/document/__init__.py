"""The app's document, Qt-free: a clip, its run settings, the model's results and a person's edits.

The GUI is a view over a :class:`Document`; everything it can do can be done from Python::

    from core.app.document import Document

    doc = Document.open_clip("clips/dojo")                  # a frame folder or a video file
    doc.set_categories({1: "person", 2: "dog"})             # the model's categories, joined to the labels by name
    chair = doc.add_category("chair")                       # the project's labels (core.app.document.labels): a new
    doc.rename_category(chair, "armchair")                  # one's id (an existing name: its id); also recolour,
    doc.load_categories("labels.txt")                       # delete (unused), reorder; a YTVIS GT or one name a line
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
    doc.export({"ytvis": "results.json", "davis": "masks/", "coco": "coco.json"})   # all or nothing

    doc = Document.load("dojo.vppproj")                     # reopen (the clip need not be on disk to export)
    doc = Document.recover(".dojo.vppproj.journal")         # after a crash: the project plus every edit

Keyframes and propagation (:mod:`core.app.document.propagation`: OpenCV's DIS optical flow, no weights)::

    doc.keyframes(3)                                        # [0, 20]: the frames a person drew, edited or imported
    doc.propagate(3, start=0, stop=39)                      # carry frame 0's mask to frame 39 (backward: stop < start);
    doc.propagate(3, 39, 0, frames=source.frame)            # keyframes in the range anchor it and stay unchanged
    doc.fill_between(3, frame=10)                           # the gap(s) around frame 10, from both keyframes
    print(doc.last_propagation.summary())                   # what was filled; where and why it stopped early
    doc.undo()                                              # a run (also a cancelled one) is one undoable step

Each returns the :class:`Command` it committed (None: nothing changed). For a worker thread,
:func:`core.app.document.propagation.propagate` computes on an immutable track and
:meth:`Document.commit_propagation` applies the result on the UI thread.

Box to mask (:mod:`core.app.document.grabcut`, OpenCV's GrabCut: no weights, works offline)::

    from core.app.document import box_to_mask, refine_mask
    mask = box_to_mask(rgb, (x0, y0, x1, y1))               # [H, W] bool; hints=[H, W] int8 (1 fg, -1 bg)
    doc.set_mask(3, frame=10, mask=refine_mask(rgb, doc.mask(3, 10)), label="Refine edge")

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
- A track's *keyframes* are the frames whose mask a person drew, edited (brush, eraser, polygon, box,
  set mask, fill) or imported; deleting a frame drops it, split and merge carry them along. Propagation
  writes only the other frames and never a keyframe.
- Rejected tracks are kept in the project (and drawn as outlines) but are not exported. Hidden / solo
  are view settings, saved with the project, not edits; export writes hidden tracks too.
- The journal (:mod:`core.app.document.journal`) lives beside the project (``.<name>.journal``) or, for
  a document never saved, in ``<data dir>/journals``; :func:`find_recoverable` lists those left by a
  crash. A damaged journal, or one of another clip or another version of the project, is refused whole.
  A journal holding edits is never replaced or removed by starting another one (it then goes to the data
  folder; :attr:`Document.journal_note` says why), and no journal, project, lock or temporary file is
  written through a link or into a pipe (:mod:`core.atomic`'s ``open_regular``).
- A window claims its project (:meth:`Document.claim`: ``.<name>.lock``, see
  :mod:`core.app.document.project_lock`): a second opener gets :attr:`Document.read_only` (Save As only),
  and :meth:`Document.save` refuses to overwrite a project file changed on disk since it was read.
"""

from core.app.document.clip import ClipInfo
from core.app.document.document import DocEvent, Document, Instance, TrackRow
from core.app.document.grabcut import BoxPrompt, box_to_mask, refine_mask
from core.app.document.history import Command, UndoStack
from core.app.document.journal import RecoveryCandidate, find_recoverable, journal_path_for
from core.app.document.passes import SHADOW_IOU
from core.app.document.project import SUFFIX as PROJECT_SUFFIX
from core.app.document.project import read_project, write_project
from core.app.document.tracks import FrameMask, Track, brush_mask, draw_stroke, fill_holes, polygon_mask

__all__ = [
    "PROJECT_SUFFIX",
    "SHADOW_IOU",
    "BoxPrompt",
    "ClipInfo",
    "Command",
    "DocEvent",
    "Document",
    "FrameMask",
    "Instance",
    "RecoveryCandidate",
    "Track",
    "TrackRow",
    "UndoStack",
    "box_to_mask",
    "brush_mask",
    "draw_stroke",
    "fill_holes",
    "find_recoverable",
    "journal_path_for",
    "polygon_mask",
    "read_project",
    "refine_mask",
    "write_project",
]
