"""Save / Save As / Open project, the prompt before losing edits, and recovery after a crash.

The file work is :mod:`core.app.document`'s (atomic project writes, the journal); this module only asks
the questions. Dialog calls go through small methods so tests can answer them.

Opening a project always looks for the crash journal beside it (whatever the recent-projects list
says) and offers to recover it; "No: ask again next time" keeps it (the session then journals into
the app's data folder), only "Discard" removes it. A project another window has open is opened for
Save As only (:attr:`Document.read_only`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from core.app.document import PROJECT_SUFFIX, Document, find_recoverable, journal_path_for
from core.app.document.journal import recovery_candidate
from core.app.document.project import locate_clip, read_relative_clip_path
from core.errors import VPPError
from vpp_gui.document_bridge import DocumentBridge
from vpp_gui.file_dialogs import DialogFolders, Feedback

log = logging.getLogger(__name__)
PROJECT_FILTER = f"VPP Studio projects (*{PROJECT_SUFFIX});;All files (*)"
Button = QMessageBox.StandardButton


#: ``open_clip(path, document=..., journal=...)``: show a document on its clip; False (said why) if it failed
OpenClip = Callable[..., bool]


class ProjectIO:
    """``parent`` parents the dialogs; ``open_clip`` is the window's way to show a document on its clip;
    ``settings`` keeps the recent projects and folders; unsaved documents journal into ``data_dir``."""

    def __init__(self, parent: QWidget, bridge: DocumentBridge, open_clip: OpenClip, settings,
                 folders: DialogFolders, feedback: Feedback, data_dir: Path) -> None:
        self.parent = parent
        self.bridge = bridge
        self.open_clip = open_clip
        self.settings = settings
        self.folders = folders
        self.feedback = feedback
        self.data_dir = Path(data_dir)

    @property
    def doc(self) -> Document | None:
        return self.bridge.doc

    # -- saving --------------------------------------------------------------------------------------
    def save(self) -> bool:
        doc = self.doc
        if doc is None:
            return False
        if doc.path is None:
            return self.save_as()
        if doc.read_only:
            self.feedback.show_error("Save As only", f"{doc.read_only}\n\nChoose another name to save your work.")
            return self.save_as()
        return self._save_to(doc.path)

    def save_as(self) -> bool:
        doc = self.doc
        if doc is None:
            return False
        start = str(doc.path) if doc.path else self.folders.start_path("project", f"{doc.clip.name}{PROJECT_SUFFIX}")
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
            self.feedback.show_error("Cannot save the project", str(exc))
            return False
        self.folders.remember("project", saved.parent)
        self.settings.add_recent_project(str(saved))
        self.feedback.show_message(f"saved {saved}", 5000)
        return True

    def ask_save_path(self, start: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self.parent, "Save project", start, PROJECT_FILTER)
        return path

    # -- opening -------------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Open project", self.folders.start("project"),
                                              PROJECT_FILTER)
        if path:
            self.open(path)

    def open(self, path: str | Path) -> bool:
        if not self.maybe_save():
            return False
        recovered = self._recover_beside(Path(path))
        if recovered is not None:
            return recovered
        try:
            doc = Document.load(path)
        except (VPPError, OSError) as exc:
            self.feedback.show_error("Cannot open the project", str(exc))
            return False
        return self._show(doc, Path(path))

    def _recover_beside(self, project: Path) -> bool | None:
        """The crash journal beside ``project``, if one holds edits: offered for recovery whatever the
        settings list. Returns whether the recovered document was shown, or None to open the project."""
        try:
            c = recovery_candidate(journal_path_for(project))
        except OSError as exc:
            log.warning("could not look at the journal beside %s: %s", project, exc)
            return None
        if c is None:
            return None
        if c.problem is not None:
            self.feedback.show_error("Cannot recover", f"{c.problem}\n\nThe journal is left at {c.path}; the project "
                                   "opens without it, and your new edits are journalled elsewhere.")
            return None
        return self._offer(c, project)

    def _offer(self, c, project: Path | None) -> bool | None:
        """Ask about one journal: True (recovered and shown), False (recovered, but its clip could not be
        shown), None (not recovered: declined, discarded, or refused; the project then opens as saved)."""
        answer = self.ask_recover(c)
        if answer == Button.Discard:
            self.discard_journal(c.path)
            return None
        if answer != Button.Yes:
            return None  # "ask again next time": the journal stays as it is
        try:
            doc = Document.recover(c.path, project=project)
        except (VPPError, OSError) as exc:
            self.feedback.show_error("Cannot recover", f"{exc}\n\nThe journal is left at {c.path}.")
            return None
        if self._show(doc, doc.path, journal=c.path):
            self.feedback.show_message(f"recovered {c.edits} edit(s) from {c.path}", 10000)
            return True
        return False

    @staticmethod
    def discard_journal(path: Path) -> None:
        """A person chose to discard the journal's edits: remove it (only a regular file, not a link)."""
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)

    def _show(self, doc: Document, project: Path | None, *, journal: Path | None = None) -> bool:
        rel = read_relative_clip_path(project) if project is not None else None
        clip = locate_clip(doc.project_data(), project, rel) if project is not None else None
        if clip is None and Path(doc.clip.path).exists():
            clip = Path(doc.clip.path)
        if clip is None:
            self.feedback.show_error("Clip not found", f"The clip of {project or 'the recovered edits'} is not at "
                                   f"{doc.clip.path}" + (f" nor at {rel} beside the project" if rel else "")
                                   + ". Move it back there, then open the project again.")
            return False
        if not self.open_clip(clip, document=doc, journal=journal):
            return False
        if project is not None:
            self.folders.remember("project", Path(project).resolve().parent)
            self.settings.add_recent_project(str(Path(project).resolve()))
        if doc.read_only:
            self.feedback.show_error("Project open in another window", f"{doc.read_only}\n\nYou can look and edit "
                                   "here; Save stores your work under another name (Save As).")
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
            self.feedback.show_error("Autosave is off", f"Edits cannot be journalled for recovery ({exc}). Save often.")
            return
        if doc.journal_note:
            log.info("journal in %s: %s", doc.journal_path, doc.journal_note)
            self.feedback.show_message(f"edits are journalled in {doc.journal_path} ({doc.journal_note})", 15000)

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
            self.parent, "Unsaved changes", f"{name} has changes that are not saved. Save them?",
            Button.Save | Button.Discard | Button.Cancel, Button.Save)

    # -- recovery ------------------------------------------------------------------------------------
    def offer_recovery(self, skip: Path | str | None = None) -> bool:
        """After a crash: offer each journal left behind; True when one was recovered and opened.

        ``skip``: a project about to be opened (its own journal is offered by :meth:`open`)."""
        try:
            candidates = find_recoverable(self.data_dir, self.settings.recent_projects())
        except OSError as exc:
            log.warning("could not look for journals to recover: %s", exc)
            return False
        skipped = journal_path_for(Path(skip).resolve()) if skip is not None else None
        for c in candidates:
            if skipped is not None and c.path.resolve() == skipped:
                continue
            if c.problem is not None:
                self.feedback.show_error("Cannot recover", f"{c.problem}\n\nThe journal is left at {c.path}.")
                continue
            if self._offer(c, None):
                return True
        return False

    def ask_recover(self, c):
        where = c.base or c.clip
        return QMessageBox.question(
            self.parent, "Recover unsaved edits?",
            f"VPP Studio was closed without saving {c.edits} edit(s) on {where} (started {c.created}).\n\n"
            "Yes: recover them now. Discard: delete them. No: ask again next time.",
            Button.Yes | Button.No | Button.Discard, Button.Yes)
