"""The window's exports and imports: file dialogs, then :mod:`core.export` through the document.

What is exported is what is on screen: the document's tracks after every edit (rejected tracks left
out), snapshotted on the UI thread and written on a worker thread (atomic, all formats or none).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from core.errors import VPPError
from vpp_gui.export import COCO_FILTERS, YTVIS_FILTERS, incomplete_message, write_coco, write_davis, write_ytvis
from vpp_gui.file_dialogs import start_folder, start_path

IMPORT_FILTERS = "YouTube-VIS results or ground truth (*.json *.zip);;All files (*)"


class Transfers:
    def __init__(self, window) -> None:
        self.window = window

    @property
    def doc(self):
        return self.window.bridge.doc

    # -- export ------------------------------------------------------------------------------------
    def ready(self) -> bool:
        w = self.window
        if self.doc is None:
            w.show_error("Nothing to export yet", "There is nothing to export yet: open a clip first.")
            return False
        c = w.controller
        if c.running or (c.results is not None and not c.results.is_complete):
            w.show_error("Nothing to export yet", incomplete_message(c.results) or "Inference is still running.")
            return False
        if w.exporter.busy:
            w.show_error("Export running", "An export is still running; wait for it to finish.")
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

    def ytvis_dialog(self) -> None:
        if not self.ready():
            return
        w = self.window
        start = start_path(w, "export", "results.json")
        path, chosen = QFileDialog.getSaveFileName(w, "Export YouTube-VIS results", start, YTVIS_FILTERS)
        if path:
            self.ytvis(path, zipped=path.lower().endswith(".zip") or ".zip" in chosen)

    def ytvis(self, path: str | Path, *, zipped: bool = False) -> bool:
        path = Path(path)
        if zipped and path.suffix.lower() != ".zip":
            path = path.with_suffix(".zip")
        if not self.ready():
            return False
        self.window.settings.set_folder("export", str(path.parent))
        results, record, categories, _names = self._snapshot()
        return self.window.exporter.start(write_ytvis, results, path, zipped=zipped, record=record,
                                          categories=categories, inputs=self._inputs())

    def davis_dialog(self) -> None:
        if not self.ready():
            return
        w = self.window
        folder = QFileDialog.getExistingDirectory(w, "Export DAVIS masks into a folder", start_folder(w, "export"))
        if folder:
            self.davis(folder)

    def davis(self, folder: str | Path) -> bool:
        if not self.ready():
            return False
        self.window.settings.set_folder("export", str(Path(folder)))
        results, record, _categories, names = self._snapshot()
        return self.window.exporter.start(write_davis, results, folder, names, record=record, inputs=self._inputs())

    def coco_dialog(self) -> None:
        if not self.ready():
            return
        w = self.window
        start = start_path(w, "export", "coco.json")
        path, _ = QFileDialog.getSaveFileName(w, "Export COCO per-frame JSON", start, COCO_FILTERS)
        if path:
            self.coco(path)

    def coco(self, path: str | Path) -> bool:
        if not self.ready():
            return False
        self.window.settings.set_folder("export", str(Path(path).parent))
        results, record, categories, names = self._snapshot()
        return self.window.exporter.start(write_coco, results, path, names, record=record, categories=categories,
                                          video_name=self.doc.clip.name, inputs=self._inputs())

    # -- import ------------------------------------------------------------------------------------
    def import_dialog(self) -> None:
        w = self.window
        path, _ = QFileDialog.getOpenFileName(w, "Import masks for this clip", start_folder(w, "import"),
                                              IMPORT_FILTERS)
        if path:
            self.import_path(path)

    def import_davis_dialog(self) -> None:
        w = self.window
        folder = QFileDialog.getExistingDirectory(w, "Import a folder of DAVIS PNG masks", start_folder(w, "import"))
        if folder:
            self.import_path(folder)

    def import_path(self, path: str | Path) -> list[int]:
        """Import masks for the open clip as new tracks of a person's (one undoable step)."""
        w = self.window
        if self.doc is None:
            w.show_error("Cannot import", "Open the clip the masks belong to first.")
            return []
        try:
            ids = self.doc.import_file(path)
        except (VPPError, OSError, ValueError) as exc:
            w.show_error("Cannot import", str(exc))
            return []
        w.settings.set_folder("import", str(Path(path).parent))
        w.statusBar().showMessage(f"imported {len(ids)} track(s) from {path} (Ctrl+Z undoes it)", 8000)
        return ids
