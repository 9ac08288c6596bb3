"""The window's exports and imports: file dialogs, then :mod:`core.export` through the document.

Exports: one per format of :mod:`core.formats` (:meth:`Transfers.export_dialog`, :meth:`Transfers.export`).
Imports: YouTube-VIS results or ground truth (their classes joined to the project's labels by name), or a
folder of DAVIS PNG masks, which carry no class: its tracks take the current label (the selector above the
Tracks panel; a label called "object" when none is chosen).

What is exported is what is on screen: the document's tracks after every edit (rejected tracks left
out), snapshotted on the UI thread and written on a worker thread (atomic, all formats or none).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from core.app.exports import codec, codecs
from core.app.run_control import RunController
from core.errors import VPPError
from vpp_gui.document_bridge import DocumentBridge
from vpp_gui.export import Exporter, incomplete_message, write_export
from vpp_gui.file_dialogs import DialogFolders, Feedback

IMPORT_FILTERS = "YouTube-VIS results or ground truth (*.json *.zip);;All files (*)"


class Transfers:
    """The window's exports and imports; ``parent`` parents their dialogs, ``run`` says whether a pass is
    still running, ``exporter`` writes on its worker thread, ``current_label`` gives the label chosen for new
    tracks (None: none), which a DAVIS folder's tracks take."""

    def __init__(self, parent: QWidget, bridge: DocumentBridge, run: RunController, exporter: Exporter,
                 folders: DialogFolders, feedback: Feedback, current_label: Callable[[], int | None]) -> None:
        self.parent = parent
        self.current_label = current_label
        self.bridge = bridge
        self.run = run
        self.exporter = exporter
        self.folders = folders
        self.feedback = feedback

    @property
    def doc(self):
        return self.bridge.doc

    # -- export ------------------------------------------------------------------------------------
    def ready(self) -> bool:
        say = self.feedback.show_error
        if self.doc is None:
            say("Nothing to export yet", "There is nothing to export yet: open a clip first.")
            return False
        c = self.run
        if c.running or (c.results is not None and not c.results.is_complete):
            say("Nothing to export yet", incomplete_message(c.results) or "Inference is still running.")
            return False
        if self.exporter.busy:
            say("Export running", "An export is still running; wait for it to finish.")
            return False
        return True

    def _inputs(self) -> tuple[str, ...]:
        """What an export must never overwrite: the clip and the open project."""
        doc = self.doc
        return tuple(str(p) for p in (doc.clip.path, doc.path) if p)

    def _snapshot(self):
        doc = self.doc
        return (doc.to_clip_results(), doc.run_record("vpp-gui"), tuple(sorted(doc.categories.items())),
                doc.clip.frame_names())

    def export_dialog(self, name: str) -> None:
        """Ask where to write the format ``name`` (a codec of :mod:`core.formats`; a file dialog also offers the
        formats that join it, as the zip joins YouTube-VIS JSON), then export."""
        if not self.ready():
            return
        c = codec(name)
        if c.folder:
            folder = QFileDialog.getExistingDirectory(self.parent, c.dialog_title, self.folders.start("export"))
            if folder:
                self.export(name, folder)
            return
        offered = [c, *(j for j in codecs() if j.menu_joins == name)]
        start = self.folders.start_path("export", c.default_name)
        path, chosen = QFileDialog.getSaveFileName(self.parent, c.dialog_title, start,
                                                   ";;".join(j.file_filter for j in offered))
        if path:
            pick = next((j for j in offered[1:] if path.lower().endswith(j.suffix) or j.suffix in chosen), c)
            self.export(pick.name, path)

    def export(self, name: str, path: str | Path) -> bool:
        """Write the document as the format ``name`` to ``path`` on the exporter's thread; False if refused.
        A format offered in another's dialog (the zip) gets its own suffix."""
        c = codec(name)
        path = Path(path)
        if c.menu_joins and path.suffix.lower() != c.suffix:
            path = path.with_suffix(c.suffix)
        if not self.ready():
            return False
        self.folders.remember("export", path if c.folder else path.parent)
        results, record, categories, names = self._snapshot()
        return self.exporter.start(write_export, name, results, path, names, record=record, categories=categories,
                                   video_name=self.doc.clip.name, inputs=self._inputs())

    # -- import ------------------------------------------------------------------------------------
    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Import masks for this clip", self.folders.start("import"),
                                              IMPORT_FILTERS)
        if path:
            self.import_path(path)

    def import_davis_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.parent, "Import a folder of DAVIS PNG masks",
                                                  self.folders.start("import"))
        if folder:
            self.import_path(folder)

    def import_path(self, path: str | Path) -> list[int]:
        """Import masks for the open clip as new tracks of a person's (one undoable step); a DAVIS folder's
        take the current label (files that name their classes keep them)."""
        if self.doc is None:
            self.feedback.show_error("Cannot import", "Open the clip the masks belong to first.")
            return []
        label = self.current_label()
        try:
            ids = self.doc.import_file(path, label=label if label in self.doc.categories else None)
        except (VPPError, OSError, ValueError) as exc:
            self.feedback.show_error("Cannot import", str(exc))
            return []
        self.folders.remember("import", Path(path).parent)
        self.feedback.show_message(f"imported {len(ids)} track(s) from {path} (Ctrl+Z undoes it)", 8000)
        return ids
