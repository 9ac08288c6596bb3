"""Save / Save As / Open project, the prompt before losing edits, and recovery after a crash.

The file work is :mod:`core.document`'s (atomic project writes, the journal); this module only asks
the questions. Dialog calls go through small methods so tests can answer them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from core.document import PROJECT_SUFFIX, Document, find_recoverable
from core.document.project import locate_clip, read_relative_clip_path
from core.errors import VPPError

log = logging.getLogger(__name__)
PROJECT_FILTER = f"VPP Studio projects (*{PROJECT_SUFFIX});;All files (*)"
Button = QMessageBox.StandardButton


class ProjectIO:
    def __init__(self, window, settings, data_dir: Path) -> None:
        self.window = window
        self.settings = settings
        self.data_dir = Path(data_dir)

    @property
    def doc(self) -> Document | None:
        return self.window.bridge.doc

    # -- saving --------------------------------------------------------------------------------------
    def save(self) -> bool:
        doc = self.doc
        if doc is None:
            return False
        if doc.path is None:
            return self.save_as()
        return self._save_to(doc.path)

    def save_as(self) -> bool:
        doc = self.doc
        if doc is None:
            return False
        start = str(doc.path) if doc.path else str(Path(self.settings.folder("project")) /
                                                    f"{doc.clip.name}{PROJECT_SUFFIX}")
        path = self.ask_save_path(start)
        if not path:
            return False
        path = Path(path)
        if path.suffix != PROJECT_SUFFIX:
            path = path.with_name(path.name + PROJECT_SUFFIX)
        return self._save_to(path)

    def _save_to(self, path: Path) -> bool:
        try:
            saved = self.doc.save(path)
        except (VPPError, OSError, ValueError) as exc:
            self.window.show_error("Cannot save the project", str(exc))
            return False
        self.settings.set_folder("project", str(saved.parent))
        self.settings.add_recent_project(str(saved))
        self.window.statusBar().showMessage(f"saved {saved}", 5000)
        return True

    def ask_save_path(self, start: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self.window, "Save project", start, PROJECT_FILTER)
        return path

    # -- opening -------------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open project", self.settings.folder("project"),
                                              PROJECT_FILTER)
        if path:
            self.open(path)

    def open(self, path: str | Path) -> bool:
        if not self.maybe_save():
            return False
        try:
            doc = Document.load(path)
        except (VPPError, OSError) as exc:
            self.window.show_error("Cannot open the project", str(exc))
            return False
        return self._show(doc, Path(path))

    def _show(self, doc: Document, project: Path | None, *, journal: Path | None = None) -> bool:
        rel = read_relative_clip_path(project) if project is not None else None
        clip = locate_clip(doc.project_data(), project, rel) if project is not None else None
        if clip is None and Path(doc.clip.path).exists():
            clip = Path(doc.clip.path)
        if clip is None:
            self.window.show_error("Clip not found", f"The clip of {project or 'the recovered edits'} is not at "
                                   f"{doc.clip.path}" + (f" nor at {rel} beside the project" if rel else "")
                                   + ". Move it back there, then open the project again.")
            return False
        if not self.window.open_path(clip, document=doc, journal=journal):
            return False
        if project is not None:
            self.settings.set_folder("project", str(Path(project).resolve().parent))
            self.settings.add_recent_project(str(Path(project).resolve()))
        return True

    def start_journal(self, doc: Document, journal: Path | None = None) -> None:
        """Record the document's edits from now on (``journal``: continue a recovered one)."""
        try:
            if journal is not None:
                doc.resume_journal(journal)
            else:
                doc.start_journal(self.data_dir)
        except (VPPError, OSError) as exc:
            log.warning("no recovery journal: %s", exc)
            self.window.show_error("Autosave is off", f"Edits cannot be journalled for recovery ({exc}). Save often.")

    # -- closing -------------------------------------------------------------------------------------
    def maybe_save(self) -> bool:
        """Before the document goes away: True to go on (saved or discarded), False to stay."""
        doc = self.doc
        if doc is None or not doc.dirty:
            return True
        answer = self.ask_unsaved(doc.path.name if doc.path else doc.clip.name)
        if answer == Button.Save:
            return self.save()
        return answer == Button.Discard

    def ask_unsaved(self, name: str):
        return QMessageBox.question(
            self.window, "Unsaved changes", f"{name} has changes that are not saved. Save them?",
            Button.Save | Button.Discard | Button.Cancel, Button.Save)

    # -- recovery ------------------------------------------------------------------------------------
    def offer_recovery(self) -> bool:
        """After a crash: offer each journal left behind; True when one was recovered and opened."""
        try:
            candidates = find_recoverable(self.data_dir, self.settings.recent_projects())
        except OSError as exc:
            log.warning("could not look for journals to recover: %s", exc)
            return False
        for c in candidates:
            if c.problem is not None:
                self.window.show_error("Cannot recover", f"{c.problem}\n\nThe journal is left at {c.path}.")
                continue
            answer = self.ask_recover(c)
            if answer == Button.Discard:
                c.path.unlink(missing_ok=True)
                continue
            if answer != Button.Yes:
                continue
            try:
                doc = Document.recover(c.path)
            except (VPPError, OSError) as exc:
                self.window.show_error("Cannot recover", f"{exc}\n\nThe journal is left at {c.path}.")
                continue
            if self._show(doc, doc.path, journal=c.path):
                self.window.statusBar().showMessage(f"recovered {c.edits} edit(s) from {c.path}", 10000)
                return True
        return False

    def ask_recover(self, c):
        where = c.base or c.clip
        return QMessageBox.question(
            self.window, "Recover unsaved edits?",
            f"VPP Studio was closed without saving {c.edits} edit(s) on {where} (started {c.created}).\n\n"
            "Yes: recover them now. Discard: delete them. No: ask again next time.",
            Button.Yes | Button.No | Button.Discard, Button.Yes)
