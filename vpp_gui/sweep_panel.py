"""The PKR sweep dock: run :func:`core.app.sweeps.run_sweep` (:func:`core.sweep.sweep`) on the open labelled
clip, plot and export the figures.

The sweep runs on a superqt FunctionWorker (the model is loaded there, through the same factory the app's
inference runner uses); ``progress`` reaches the UI thread through a queued signal and Cancel sets a
``threading.Event`` that the sweep's ``stop`` polls before every frame. Errors (a missing GT names the
file) show in the panel's label and go out through ``failed(message)``; a cancel ends in the "cancelled"
state with no result. Clicking a point of the plot emits ``pkrChosen(pkr)``. The x axis is ms/frame
(measured on the device) or GFLOPs/frame (analytic), chosen with :attr:`SweepPanel.x_axis`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import FunctionWorker

from core.app.studio import user_message
from core.app.sweeps import default_pkrs_text, parse_pkrs, run_sweep, save_sweep, was_cancelled
from vpp_gui.file_dialogs import folder_of
from vpp_gui.number_keys import keep_window_keys

#: (what the plot calls it, symbol, colour) per row mode
STYLES = {"dense": ("dense", "d", "#f5f5f5"), "vpp": ("VPP", "o", "#4fc3f7"), "random": ("random drop", "t", "#ffb74d")}
COLUMNS = (("name", "config"), ("keep_ratio", "kept"), ("ms_per_frame", "ms/frame"),
           ("gflops_per_frame", "GFLOPs"), ("AP_track", "AP_track"), ("AP50", "AP50"), ("AP75", "AP75"),
           ("AR", "AR"), ("mAP_bbox", "mAP bbox"), ("mAP_segm", "mAP segm"))
#: x-axis choices of the plot: (SweepRow attribute, axis title, title of the plot)
X_AXES = (("ms_per_frame", "ms / frame", "ms/frame"), ("gflops_per_frame", "GFLOPs / frame", "GFLOPs/frame"))
RunConfig = Callable[[], tuple]  # () -> (ModelSpec, device, score threshold or None)


class SweepPanel(QWidget):
    pkrChosen = Signal(float)
    stateChanged = Signal(str)  # "running", "cancelling", "done", "cancelled", "failed"
    finished = Signal(object)  # core.sweep.SweepResult
    failed = Signal(str)  # a one-line message (not emitted for a cancel)
    _progress = Signal(int, int)  # from the worker thread, queued

    def __init__(self, factory, run_config: RunConfig, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._factory = factory
        self._run_config = run_config
        self.clip_path: str | None = None
        self.result = None
        self.state = "idle"
        self._stop = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._worker: FunctionWorker | None = None

        self.gt_edit = QLineEdit(self)
        self.gt_edit.setPlaceholderText("ground truth: YTVIS GT JSON or DAVIS PNG folder")
        gt_file = QPushButton("GT JSON…", self)
        gt_file.clicked.connect(self._choose_gt_file)
        gt_folder = QPushButton("GT folder…", self)
        gt_folder.clicked.connect(self._choose_gt_folder)
        self.pkr_edit = QLineEdit(default_pkrs_text(), self)
        self.pkr_edit.setToolTip("PKRs to run, comma separated (1.0 is the dense model)")
        keep_window_keys(self.pkr_edit, also=" ")  # "1.0, 0.7": letters stay the window's shortcuts
        self.pkr_edit.setMinimumWidth(self.pkr_edit.fontMetrics().horizontalAdvance(self.pkr_edit.text() + "0000"))
        self.random_check = QCheckBox("random drop", self)
        self.random_check.setChecked(True)
        self.random_check.setToolTip("Also run a random token drop at the same keep ratios")
        self.run_button = QPushButton("Run", self)
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        self.x_axis = QComboBox(self)
        for key, title, _ in X_AXES:
            self.x_axis.addItem(title, key)
        self.x_axis.setToolTip("x axis of the plot: measured ms per frame, or analytic GFLOPs per frame")
        self.x_axis.currentIndexChanged.connect(lambda _i: self._show_result(self.result))
        self.plot = pg.PlotWidget(self)
        self.plot.setMinimumHeight(160)
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("left", "AP_track")
        self.plot.addLegend(offset=(-10, 10))
        self._scatters: dict[str, pg.ScatterPlotItem] = {}
        self._vpp_line = self.plot.plot(pen=pg.mkPen(STYLES["vpp"][2], width=1))
        for mode, (label, symbol, color) in STYLES.items():
            item = pg.ScatterPlotItem(size=11, symbol=symbol, pen=pg.mkPen(color), brush=pg.mkBrush(color), name=label)
            item.sigClicked.connect(self._on_clicked)
            self.plot.addItem(item)
            self._scatters[mode] = item
        self._labels: list[pg.TextItem] = []
        self._set_titles(None)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels([h for _, h in COLUMNS])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.cellDoubleClicked.connect(lambda r, _c: self._choose_row(r))
        self.csv_button = QPushButton("Export CSV…", self)
        self.csv_button.clicked.connect(lambda: self._export_dialog("csv"))
        self.json_button = QPushButton("Export JSON…", self)
        self.json_button.clicked.connect(lambda: self._export_dialog("json"))

        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.gt_edit, 1)
        row.addWidget(gt_file)
        row.addWidget(gt_folder)
        layout.addLayout(row)
        row = QHBoxLayout()  # the PKRs on a row of their own: the whole list stays readable in a narrow dock
        row.addWidget(QLabel("PKRs", self))
        row.addWidget(self.pkr_edit, 1)
        row.addWidget(self.random_check)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("x axis", self))
        row.addWidget(self.x_axis)
        row.addStretch(1)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        body = QHBoxLayout()
        body.addWidget(self.plot, 3)
        body.addWidget(self.table, 4)
        layout.addLayout(body, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.csv_button)
        row.addWidget(self.json_button)
        layout.addLayout(row)
        self._progress.connect(self._on_progress, Qt.ConnectionType.QueuedConnection)
        self._update_buttons()

    # -- inputs -------------------------------------------------------------------------------------
    def set_clip(self, path: str | Path | None) -> None:
        self.clip_path = str(path) if path is not None else None
        self._update_buttons()

    def set_gt(self, path: str | Path) -> None:
        self.gt_edit.setText(str(path))

    def gt_path(self) -> str:
        return self.gt_edit.text().strip()

    def _choose_gt_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "YouTube-VIS ground truth", self._start_dir(),
                                              "YouTube-VIS GT (*.json);;All files (*)")
        if path:
            self.set_gt(path)

    def _choose_gt_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of DAVIS palette PNGs", self._start_dir())
        if path:
            self.set_gt(path)

    def _start_dir(self) -> str:
        """Beside the GT chosen, else beside the clip (the window's dialogs start there too), else home."""
        return folder_of(self.gt_path(), self.clip_path) or str(Path.home())

    # -- running ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.state in ("running", "cancelling")

    def run(self) -> bool:
        """Start the sweep on the open clip; False (with a message) when it cannot start."""
        if self.running:
            return False
        if self.clip_path is None:
            self._fail("Open a clip first (File → Open).")
            return False
        gt = self.gt_path()
        if not gt:
            self._fail("Choose the clip's ground truth (a YTVIS GT JSON or a DAVIS PNG folder).")
            return False
        try:
            pkrs = parse_pkrs(self.pkr_edit.text())
        except ValueError as exc:
            self._fail(str(exc))
            return False
        spec, device, threshold = self._run_config()
        self._stop = threading.Event()
        self._done = threading.Event()
        self.result = None
        self._show_result(None)
        self.progress.setRange(0, 0)  # busy until the first frame (the model loads first)
        worker = FunctionWorker(run_sweep, self._factory, spec, device, self.clip_path, gt, pkrs,
                                self.random_check.isChecked(), threshold, self._stop, self._progress.emit,
                                self._done)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(lambda: self._forget(worker))
        self._worker = worker
        self._set_state("running", f"sweeping {len(pkrs)} PKR(s) on {Path(self.clip_path).name}…")
        worker.start()
        return True

    def cancel(self) -> None:
        if self.state == "running":
            self._stop.set()
            self._set_state("cancelling", "cancelling…")

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Stop a running sweep and wait for its thread (the window calls this when it closes)."""
        self._stop.set()
        return self._done.wait(timeout_s)

    def _forget(self, worker: FunctionWorker) -> None:
        if self._worker is worker:
            self._worker = None

    def _on_progress(self, done: int, total: int) -> None:
        if self.running:
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(done)

    def _on_returned(self, result) -> None:
        self.result = result
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self._show_result(result)
        self._set_state("done", f"{len(result.rows)} configurations on {result.device}")
        self.finished.emit(result)

    def _on_error(self, exc: BaseException) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        if was_cancelled(exc):
            self._set_state("cancelled", "sweep cancelled (no result)")
        else:
            self._fail(user_message(exc))

    def _fail(self, message: str) -> None:
        self._set_state("failed", message)
        self.failed.emit(message)

    def _set_state(self, state: str, message: str) -> None:
        self.state = state
        self.message.setText(message)
        self._update_buttons()
        self.stateChanged.emit(state)

    def _update_buttons(self) -> None:
        self.run_button.setEnabled(not self.running)
        self.cancel_button.setEnabled(self.state == "running")
        has = self.result is not None
        self.csv_button.setEnabled(has)
        self.json_button.setEnabled(has)

    # -- showing ------------------------------------------------------------------------------------
    def x_key(self) -> str:
        """The SweepRow attribute on the x axis: "ms_per_frame" or "gflops_per_frame"."""
        return self.x_axis.currentData() or X_AXES[0][0]

    def _set_titles(self, device: str | None) -> None:
        where = f" on {device}" if device else ""
        _key, axis, short = next(x for x in X_AXES if x[0] == self.x_key())
        self.plot.setTitle(f"AP_track vs {short}{where}")
        self.plot.setLabel("bottom", f"{axis}{where}")

    def _show_result(self, result) -> None:
        for item in self._labels:
            self.plot.removeItem(item)
        self._labels = []
        rows = result.rows if result is not None else []
        key = self.x_key()
        for mode, item in self._scatters.items():
            spots = []
            for r in rows:
                if r.mode == mode:
                    ap = r.AP_track
                    spot = {"pos": (getattr(r, key), max(ap, 0.0)), "data": (r.name, r.pkr)}
                    if ap < 0:  # undefined: drawn at 0, hollow
                        spot["brush"] = pg.mkBrush(None)
                    spots.append(spot)
            item.setData(spots)
        vpp = [r for r in rows if r.mode in ("vpp", "dense")]
        self._vpp_line.setData([getattr(r, key) for r in vpp], [max(r.AP_track, 0.0) for r in vpp])
        for r in rows:
            text = pg.TextItem("dense" if r.dense else f"{r.pkr:g}", color=STYLES[r.mode][2], anchor=(0, 1))
            text.setPos(getattr(r, key), max(r.AP_track, 0.0))
            self.plot.addItem(text)
            self._labels.append(text)
        self._set_titles(result.device if result is not None else None)
        self._fit_view([getattr(r, key) for r in rows])
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            s = r.summary()
            for j, (key, _) in enumerate(COLUMNS):
                v = s[key]
                cell = QTableWidgetItem(f"{v:.3f}" if isinstance(v, float) else str(v))
                cell.setData(Qt.ItemDataRole.UserRole, r.pkr)
                self.table.setItem(i, j, cell)
        self.table.resizeColumnsToContents()
        self._update_buttons()

    def _fit_view(self, xs: list[float]) -> None:
        """AP on a fixed 0..1 axis (all-equal APs must not collapse it); room right of the last label."""
        self.plot.setYRange(0.0, 1.05, padding=0)
        if xs:
            lo, hi = min(xs), max(xs)
            span = max(hi - lo, 1e-3 * max(abs(hi), 1.0))
            self.plot.setXRange(lo - 0.05 * span, hi + 0.15 * span, padding=0)

    def points(self) -> list[tuple[str, float, float]]:
        """(configuration name, x (ms/frame or GFLOPs/frame, see :meth:`x_key`), plotted AP) of every point."""
        return [(p.data()[0], p.pos().x(), p.pos().y()) for item in self._scatters.values() for p in item.points()]

    def _on_clicked(self, _item, points, _event=None) -> None:
        if len(points):
            self.pkrChosen.emit(float(points[0].data()[1]))

    def _choose_row(self, row: int) -> None:
        cell = self.table.item(row, 0)
        if cell is not None:
            self.pkrChosen.emit(float(cell.data(Qt.ItemDataRole.UserRole)))

    # -- export -------------------------------------------------------------------------------------
    def export_csv(self, path: str | Path) -> None:
        self._export(path, "csv")

    def export_json(self, path: str | Path) -> None:
        self._export(path, "json")

    def _export(self, path: str | Path, kind: str) -> None:
        if self.result is None:
            raise ValueError("there is no sweep result to export yet")
        save_sweep(self.result, path, kind)

    def _export_dialog(self, kind: str) -> None:
        if self.result is None:
            return
        filters = "CSV (*.csv)" if kind == "csv" else "JSON (*.json)"
        path, _ = QFileDialog.getSaveFileName(self, f"Export the sweep as {kind.upper()}",
                                              str(Path(self._start_dir()) / f"sweep.{kind}"), filters)
        if not path:
            return
        try:
            self._export(path, kind)
        except OSError as exc:
            self._fail(f"cannot write {path}: {exc}")
            return
        self.message.setText(f"wrote {path}")
