""""Get the authors' models…": the released models with their size and state, and getting one.

The rows are :func:`core.app.models.released_rows`, the rows of ``vpp models list``. *Get* runs
:func:`core.app.models.get_released`, the code ``vpp models download`` runs (resumable download,
then ``vpp import-checkpoint``), on a worker thread (:class:`vpp_gui.background.LatestRunner`) with a
progress bar and *Cancel*: the download stops between blocks and keeps its partial file, so *Get* again
resumes it; an import, once started, runs to its end. A model already imported is selected at once; a
``.pth`` already in the folder (copied there by hand) is imported without downloading. Once the model is
imported the dialog emits ``modelReady(path)`` and the window selects it in the Model list.

A failure (no internet here, an HTTP error, a bad file) is one message in the dialog, no popup and no
traceback: what failed, and how to bring the file onto the machine another way. The dialog is not
modal, so the app stays usable during a download; closing it lets the download go on.
"""

from __future__ import annotations

import threading
from functools import partial

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.app import models as released
from core.app.settings import ModelSpec
from vpp_gui.background import LatestRunner

COLUMNS = ("Model", "Variant", "Kind", "PKR", "Size", "State")
NAME_ROLE = int(Qt.ItemDataRole.UserRole) + 1


class ModelsDialog(QDialog):
    modelReady = Signal(str)  # the imported .safetensors
    _progress = Signal(int, object)  # bytes so far, total or None (from the worker thread: queued)
    _log = Signal(str)

    def __init__(self, parent: QWidget | None = None, folder: str | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("The authors' models")
        self.setModal(False)
        self.folder = folder  # None: the user's cache folder, as `vpp models`
        self._stop = threading.Event()
        self._job: str | None = None  # the name being got
        self.runner = LatestRunner(self)
        self.runner.done.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)
        self._progress.connect(self._on_progress)
        self._log.connect(self._on_log)

        self.intro = QLabel(self)
        self.intro.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._update)
        self.table.cellDoubleClicked.connect(lambda _r, _c: self.get())
        self.notes = QLabel(self)
        self.notes.setWordWrap(True)
        self.progress = QProgressBar(self)
        self.progress.hide()
        self.message = QLabel(self)
        self.message.setObjectName("modelsMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)  # commands to copy
        self.get_button = QPushButton("Get", self)
        self.get_button.setDefault(True)
        self.get_button.clicked.connect(lambda: self.get())
        self.cancel_button = QPushButton("Cancel download", self)
        self.cancel_button.clicked.connect(self.cancel)
        close = QPushButton("Close", self)
        close.clicked.connect(self.hide)

        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.notes)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        row = QHBoxLayout()
        row.addStretch(1)
        for button in (self.get_button, self.cancel_button, close):
            row.addWidget(button)
        layout.addLayout(row)
        self.resize(760, 560)  # all eight rows, the notes and a two-paragraph message
        self.refresh()

    # -- the list -----------------------------------------------------------------------------------
    def models(self) -> list[released.LocalModel]:
        return released.released_rows(self.folder)

    def refresh(self) -> None:
        """Re-read every row's state (files may have been copied in meanwhile); keeps the selected row."""
        keep = self.selected_name()
        rows = self.models()
        self.table.setRowCount(len(rows))
        for r, m in enumerate(rows):
            e = m.entry
            for c, text in enumerate(released.row_cells(m)):
                item = QTableWidgetItem(text)
                item.setData(NAME_ROLE, e.name)
                item.setToolTip(e.notes)
                self.table.setItem(r, c, item)
            if e.name == keep:
                self.table.selectRow(r)
        if self.selected_name() is None and rows:
            self.table.selectRow(0)
        folder = released.download_folder(self.folder)
        self.intro.setText("The models the VPP authors released (YouTube-VIS 2021, 40 categories; two COCO "
                           f"pretrainings). Get downloads one (needs internet) into {folder} and imports it; "
                           "an imported model is then in the Model list. The release publishes no sizes or "
                           "checksums: a size shows once a file is here.")
        self._update()

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return str(rows[0].data(NAME_ROLE)) if rows else None

    def select(self, name: str) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(NAME_ROLE) == name:
                self.table.selectRow(r)
                return
        raise KeyError(f"no model {name!r} in the list")

    def state_of(self, name: str) -> str:
        """The State cell of ``name`` as shown."""
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(NAME_ROLE) == name:
                return self.table.item(r, len(COLUMNS) - 1).text()
        raise KeyError(name)

    def _local(self, name: str) -> released.LocalModel:
        return next(m for m in self.models() if m.entry.name == name)

    # -- getting ------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._job is not None

    def get(self, name: str | None = None) -> None:
        """Get ``name`` (default: the selected row): select it if imported, else download and import it."""
        name = name or self.selected_name()
        if name is None or self.busy:
            return
        local = self._local(name)
        if local.state == "imported":
            self._say(f"{name} is imported: selected in the Model list ({local.model}).")
            self.modelReady.emit(str(local.model))
            return
        self._job = name
        self._stop.clear()
        self.progress.setRange(0, 0)  # busy until the first block says how big the file is
        self.progress.show()
        self._say(f"getting {name}…" if local.state == "absent" else f"importing {local.pth}…")
        job = partial(released.get_released, local.entry, self.folder, log=self._log.emit,
                      on_progress=self._progress.emit, cancelled=self._stop.is_set)
        self.runner.submit(name, job)
        self._update()

    def cancel(self) -> None:
        if self.busy:
            self._stop.set()
            self._say(f"cancelling the download of {self._job}…")
            self._update()

    def _on_progress(self, have: int, total) -> None:
        if not self.busy:
            return
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * have / total))
        self.progress.setFormat(released.progress_text(have, total))

    def _on_log(self, text: str) -> None:
        if self.busy:
            self._say(text)

    def _finish(self) -> str:
        name, self._job = self._job or "", None
        self.progress.hide()
        self.refresh()
        return name

    def _on_done(self, _tag, path, _seconds: float) -> None:
        name = self._finish()
        self._say(f"{name} is imported: {path}. It is selected in the Model list.")
        self.modelReady.emit(str(path))

    def _on_failed(self, _tag, exc: BaseException) -> None:
        name = self._finish()
        entry = next(e.entry for e in self.models() if e.entry.name == name)
        self._say(released.failure_text(entry, self.folder, exc), error=not released.was_cancelled(exc))

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("QLabel#modelsMessage { color: #f0b429; }" if error else "")

    def _update(self) -> None:
        name = self.selected_name()
        self.get_button.setEnabled(name is not None and not self.busy)
        self.cancel_button.setEnabled(self.busy and not self._stop.is_set())
        if name is not None:
            local = self._local(name)
            self.get_button.setText({"imported": "Select", "downloaded": "Import"}.get(local.state, "Get"))
            self.notes.setText(local.entry.notes)

    # -- closing ------------------------------------------------------------------------------------
    def shutdown(self, msecs: int = 10000) -> bool:
        """Stop a download and wait for the worker (the window calls it when it closes)."""
        self._stop.set()
        return self.runner.shutdown(msecs)


def show_models_dialog(window) -> ModelsDialog:
    """Open (or raise) the window's dialog; the Model list goes back to the model in use meanwhile."""
    dialog = getattr(window, "models_dialog", None)
    if dialog is None:
        dialog = window.models_dialog = ModelsDialog(window)
        dialog.modelReady.connect(lambda path: window.controls.choose_model(ModelSpec("file", path)))
    window.controls.set_model(window.controller.spec)
    dialog.refresh()
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog
