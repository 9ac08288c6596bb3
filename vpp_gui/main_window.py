"""The main window: builds the widgets, wires their signals to the controller, nothing more.

Layout: the frame view in the centre, the controls dock on the right, the timeline and plots dock at
the bottom; docks and geometry are restored from the settings.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QDockWidget, QFileDialog, QMainWindow, QMessageBox, QVBoxLayout, QWidget

from core.app.clips import open_clip
from core.app.display_frames import DisplayFrames
from core.app.document import ClipInfo, DocEvent, Document
from core.app.models import imported_specs
from core.app.settings import ModelSpec
from core.app.studio import ModelInfo, default_model_factory, synthetic_model_notice
from core.errors import VPPError
from vpp_gui import overlay, window_state
from vpp_gui.actions import Actions, shortcuts_html
from vpp_gui.controller import InferenceController
from vpp_gui.controls import ControlsPanel
from vpp_gui.document_bridge import DocumentBridge
from vpp_gui.editing import EditController
from vpp_gui.export import Exporter
from vpp_gui.file_dialogs import DialogFolders
from vpp_gui.frame_view import FrameView
from vpp_gui.heatmap_default import HeatmapDefault
from vpp_gui.iou_plot import IouPlot
from vpp_gui.keyframe_strip import KeyframeStrip
from vpp_gui.mask_menu import MaskMenu
from vpp_gui.models_dialog import ModelsDialog, show_models_dialog
from vpp_gui.notice_bar import NoticeBar
from vpp_gui.plots import PlotsPanel
from vpp_gui.project_io import ProjectIO
from vpp_gui.propagation import PropagationController
from vpp_gui.review_controller import ReviewController, review_docks
from vpp_gui.settings import Settings
from vpp_gui.status import StatusPanel
from vpp_gui.sweep_panel import SweepPanel
from vpp_gui.theme import apply_theme, get_theme
from vpp_gui.timeline import Timeline
from vpp_gui.tracks_panel import TracksPanel
from vpp_gui.transfer import Transfers
from vpp_gui.worker import InferenceRunner

log = logging.getLogger(__name__)
PLOT_REFRESH_MS = 300
SWEEP_WIDTH_SHARE = 0.45  # of the window, for the PKR sweep dock beside the timeline
UNTRAINED_NOTE = "untrained model — masks are not meaningful"
PROJECT_PLOTS_HINT = "kept ratio, ms and GFLOPs per frame are not saved in a project: Run (Ctrl+R) measures them"
VIDEO_FILTERS = "Videos (*.mp4 *.avi *.mkv *.mov *.webm *.m4v);;All files (*)"


class MainWindow(QMainWindow):
    clipOpened = Signal(str)

    def __init__(self, settings: Settings, runner: InferenceRunner, *, cuda_available: bool = False,
                 demo_hint: str = "", data_dir: str | Path | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.data_dir = Path(data_dir) if data_dir is not None else Path.home() / ".local/share/vpp-studio"
        self.source = None
        self.frames: DisplayFrames | None = None  # the source's frames at the view's resolution, read ahead
        self._shown_index = 0
        self._direction = 1  # of the last step (+1 forward, -1 backward): where frames are read ahead
        self.clip_path: str | None = None
        self._pass_started = 0.0
        self._names: dict[int, str] = {}
        self._geometry = (640, 16)  # model input long side, patch (for the heatmap)
        self._theme = get_theme("dark")
        self.setWindowTitle("VPP Studio")
        self.setAcceptDrops(True)
        self.resize(1600, 960)

        self.view = FrameView(self)
        self.notice = NoticeBar(self)
        central = QWidget(self)
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.notice)
        column.addWidget(self.view, 1)
        self.setCentralWidget(central)
        self.controls = ControlsPanel(cuda_available, self)
        for spec in imported_specs():  # downloaded and imported with `vpp models download NAME`
            self.controls.add_model(spec)
        self.timeline = Timeline(self)
        self.plots = PlotsPanel(self)
        self.status = StatusPanel(self)
        self.statusBar().addPermanentWidget(self.status)  # no stretch: messages get the rest of the bar
        self.controller = InferenceController(runner, parent=self)
        self.exporter = Exporter(self)
        self.bridge = DocumentBridge(self)
        self.folders = DialogFolders(settings, lambda: self.bridge.doc, lambda: self.clip_path)
        self.tracks = TracksPanel(self)
        self.transfers = Transfers(self, self.bridge, self.controller, self.exporter, self.folders, self,
                                   lambda: self.editing.labels.current_id())  # a DAVIS folder's label
        self.projects = ProjectIO(self, self.bridge, self.open_path, settings, self.folders, self, self.data_dir)
        self._demo_hint = demo_hint
        self._render_timer = QTimer(self, singleShot=True, interval=0)
        self._render_timer.timeout.connect(self.show_frame)
        self.view.resolutionChanged.connect(self._render_timer.start)  # zoomed past the shown pixels, or out

        self.controls_dock = self._dock("Controls", "controlsDock", self.controls,
                                        Qt.DockWidgetArea.RightDockWidgetArea)
        bottom = QWidget(self)
        col = QVBoxLayout(bottom)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.timeline)
        self.keyframe_strip = KeyframeStrip(self)  # per track: its frames and keyframes (vpp_gui.propagation)
        col.addWidget(self.keyframe_strip)
        self.keyframe_strip.follow_axis(self.plots.frame_x, self.plots.frameAxisChanged)  # frames over the plots'
        self.iou_plot = IouPlot(self)  # per-frame IoU against the ground truth (shown once one is loaded)
        col.addWidget(self.iou_plot)
        col.addWidget(self.plots, 1)
        self.timeline_dock = self._dock("Timeline and plots", "timelineDock", bottom,
                                        Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tracks_dock = self._dock("Tracks", "tracksDock", self.tracks, Qt.DockWidgetArea.RightDockWidgetArea)
        self.review_dock, self.eval_dock = review_docks(self)
        factory = getattr(runner, "model_factory", default_model_factory)  # the app's loader
        self.sweep_panel = SweepPanel(factory, lambda: (self.controls.model(), self.controls.device(),
                                                        self.controls.threshold()), self)
        self.sweep_dock = self._dock("PKR sweep", "sweepDock", self.sweep_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.sweep_dock.hide()  # until Inference → PKR sweep
        # the right column as wide as the Tracks table's columns (no horizontal scroll bar at 1600x960)
        self.resizeDocks([self.controls_dock], [max(330, self.tracks.preferred_width())], Qt.Orientation.Horizontal)
        self.resizeDocks([self.timeline_dock], [300], Qt.Orientation.Vertical)
        # the Tracks / Review docks get the taller share: the controls scroll, and M C L H reach the layers
        self.resizeDocks([self.controls_dock, self.tracks_dock], [280, 340], Qt.Orientation.Vertical)

        self.actions_ = Actions(self)
        self.actions_.build_menus(self, [self.controls_dock, self.tracks_dock, self.timeline_dock,
                                         self.sweep_dock, self.review_dock, self.eval_dock])
        self.editing = EditController(self, self.bridge, self.actions_, self.view.tools, self.tracks)
        self.review = ReviewController(  # ground truth: load, draw, review and evaluation docks
            self, bridge=self.bridge, actions=self.actions_, timeline=self.timeline, view=self.view,
            iou_plot=self.iou_plot, docks=(self.review_dock, self.eval_dock), folders=self.folders, feedback=self)
        self.iou_plot.setXLink(self.plots.plots["keep_ratio"])  # zoom / pan together with the plots below
        self.review.gtLoaded.connect(lambda gt: self.sweep_panel.gt_path() or self.sweep_panel.set_gt(gt.path))
        self.propagation = PropagationController(self)  # T / Shift+T / Ctrl+T, keyframe keys and strip
        self.mask_menu = MaskMenu(self)  # right-click on a mask
        for name, act in self.actions_.layers.items():
            self.controls.bind_layer_action(name, act)
        self._plot_timer = QTimer(self, singleShot=True, interval=PLOT_REFRESH_MS)
        self._plot_timer.timeout.connect(self._refresh_plots)
        self._connect()
        window_state.restore(self)
        self.heatmap_default = HeatmapDefault(self)  # after restore: on for the demo, off for real work
        self.models_dialog: ModelsDialog | None = None  # "Get the authors' models…", made when first asked
        self._update_recent_menu()
        self.view.show_hint(self._no_clip_text())

    # -- construction helpers -----------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _connect(self) -> None:
        a, c = self.actions_, self.controller
        a.open.triggered.connect(self.choose_and_open)
        a.open_video.triggered.connect(self.choose_and_open_video)
        for name, act in a.exports.items():  # one per format of core.formats
            act.triggered.connect(lambda _checked=False, n=name: self.export_dialog(n))
        a.import_results.triggered.connect(self.transfers.import_dialog)
        a.import_davis.triggered.connect(self.transfers.import_davis_dialog)
        a.open_project.triggered.connect(self.projects.open_dialog)
        a.save.triggered.connect(self.projects.save)
        a.save_as.triggered.connect(self.projects.save_as)
        a.quit.triggered.connect(self.close)
        for name, act in a.layers.items():
            act.toggled.connect(lambda on, n=name: self._on_layer_toggled(n, on))
        a.fit.triggered.connect(self.view.fit)
        for name, act in a.themes.items():
            act.triggered.connect(lambda _c=False, n=name: self.set_theme(n))
        a.play.triggered.connect(self.timeline.toggle_play)
        a.prev.triggered.connect(lambda: self.timeline.step(-1))
        a.next.triggered.connect(lambda: self.timeline.step(1))
        a.first.triggered.connect(lambda: self.timeline.set_frame(0))
        a.last.triggered.connect(lambda: self.timeline.set_frame(self.timeline.count - 1))
        a.run.triggered.connect(lambda: c.restart(force=True, preview=self.timeline.frame))
        # Esc: the gesture on the canvas (polygon, box), else propagation, else inference
        a.cancel.triggered.connect(lambda: self.editing.escape() or self.propagation.cancel() or c.cancel())
        a.sweep.triggered.connect(self._show_sweep)
        self.clipOpened.connect(self.sweep_panel.set_clip)
        self.sweep_panel.pkrChosen.connect(lambda v: (self.controls.set_pkr(v),
                                                      self._configure(pkr=self.controls.pkr())))
        self.sweep_panel.failed.connect(lambda msg: self.show_error("PKR sweep failed", msg))
        a.shortcuts.triggered.connect(self.show_shortcuts)
        a.about.triggered.connect(self.show_about)

        self.controls.modelChosen.connect(lambda spec: self._configure(spec=spec))
        self.controls.checkpointRequested.connect(self.choose_checkpoint)
        self.controls.zooRequested.connect(lambda: show_models_dialog(self))
        self.controls.deviceChosen.connect(lambda d: self._configure(device=d))
        self.controls.pkrChanged.connect(lambda v: self._configure(pkr=v))
        self.controls.thresholdChanged.connect(lambda t: self._configure(threshold=t))
        self.controls.stageChanged.connect(lambda _s: self.show_frame())
        self.controls.opacityChanged.connect(self.view.set_layer_opacity)
        self.timeline.frameChanged.connect(self._on_frame_changed)
        self.plots.seekRequested.connect(self.timeline.set_frame)
        self.status.cancelRequested.connect(c.cancel)

        self.bridge.changed.connect(self._on_doc_event)
        self.bridge.replaced.connect(self._update_title)
        c.resultsReplaced.connect(self._on_results_replaced)
        c.frameArrived.connect(self._on_frame_arrived)
        c.stateChanged.connect(self._on_state)
        c.modelReady.connect(self._on_model_ready)
        c.failed.connect(self._on_failed)
        self.exporter.finished.connect(lambda msg: self.statusBar().showMessage(msg, 10000))
        self.exporter.failed.connect(lambda msg: self.show_error("Export failed", msg))

    # -- opening ------------------------------------------------------------------------------------
    def open_path(self, path: str | Path, *, document: Document | None = None, journal: Path | None = None) -> bool:
        """Open a frame folder or a video (with ``document``: a project's or a recovered one for it);
        on failure show why and keep the current clip."""
        if document is None and not self.projects.maybe_save():
            return False
        try:
            source = open_clip(path)
        except (VPPError, OSError, ValueError) as exc:
            self.show_error("Cannot open clip", str(exc))
            return False
        clip = ClipInfo.from_source(source, path)
        if document is not None and document.clip.shape != clip.shape:
            source.close()
            n, h, w = document.clip.shape
            self.show_error("Clip does not match", f"{path} has {clip.num_frames} frames of {clip.width}x"
                            f"{clip.height}, but the project was made for {n} frames of {w}x{h}. Open the "
                            "project's own clip.")
            return False
        if self.frames is not None:
            self.frames.close()
        if self.source is not None:
            self.source.close()
        old = self.bridge.doc
        if old is not None:
            old.stop_journal(delete=True)  # saved or discarded by maybe_save
            old.release_lock()
        doc = document or Document(clip, settings=window_state.run_settings(self))
        doc.claim()  # this window's project (a second window gets Save As only: doc.read_only)
        self.projects.start_journal(doc, journal)
        self.source, self.clip_path = source, str(Path(path).resolve())
        self.frames = DisplayFrames(source)
        self._shown_index, self._direction = 0, 1
        self.settings.add_recent(self.clip_path)
        self._update_recent_menu()
        self.timeline.set_clip(len(source), source.fps, source.names)  # first: what follows shows its frame
        self.plots.set_clip(len(source))
        self.bridge.set_document(doc)
        self.controller.set_clip(self.clip_path, len(source), clip.height, clip.width)
        self.show_frame()
        self.view.fit()
        if document is not None and document.tracks:
            window_state.apply_run_settings(self, document.settings)
            self.controller.adopt()
            self.statusBar().showMessage("tracks from the project; Run (Ctrl+R) runs the model again (your edits "
                                         "stay)", 10000)
        else:
            self._configure()
        self.clipOpened.emit(self.clip_path)
        return True

    def choose_and_open(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder of frames", self.folders.start("open"))
        if path:
            self.folders.remember("open", Path(path).parent)
            self.open_path(path)

    def choose_and_open_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a video", self.folders.start("open"), VIDEO_FILTERS)
        if path:
            self.folders.remember("open", Path(path).parent)
            self.open_path(path)

    def choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model checkpoint", self.settings.folder("model"),
                                              "Checkpoints (*.safetensors);;All files (*)")
        if not path:
            self.controls.set_model(self.controller.spec)
            return
        self.folders.remember("model", Path(path).parent)
        spec = ModelSpec("file", path)
        self.controls.set_model(spec)
        self._configure(spec=spec)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_path(url.toLocalFile())
                event.acceptProposedAction()
                return

    def _update_recent_menu(self) -> None:
        menu = self.actions_.recent_menu
        menu.clear()
        for path in self.settings.recent_files():
            menu.addAction(path, lambda p=path: self.open_path(p))
        menu.setEnabled(not menu.isEmpty())

    # -- running ------------------------------------------------------------------------------------
    def _configure(self, **changes) -> None:
        """Run with the controls' settings, ``changes`` (``spec``, ``device``, ``pkr``, ``threshold``) over them:
        made and checked once here, then the run control's and the document's."""
        try:
            settings = window_state.run_settings(self).replace(**changes)
        except ValueError as exc:
            log.warning("settings not used: %s", exc)
            return
        self._set_untrained_note(settings.spec.known_untrained())
        if self.bridge.doc is not None:
            self.bridge.doc.set_settings(settings)
        self.controller.configure(settings, preview=self.timeline.frame)

    def _on_results_replaced(self) -> None:
        doc, results = self.bridge.doc, self.controller.results
        if doc is not None and results is not None:
            if self._names and self.controller.state == "done":  # a cache hit: no ModelInfo will come
                doc.set_categories(self._names)
            doc.begin_pass(results, self.controller.run_info())
        self._refresh_plots()
        self.timeline.set_progress(self.controller.results.count if self.controller.results else 0)
        self.show_frame()

    def _refresh_plots(self) -> None:
        """The pass's results; with none (a project opened, no pass run yet), the document's tracks."""
        results, doc = self.controller.results, self.bridge.doc
        if results is None and doc is not None and doc.tracks:
            self.plots.set_results(doc.to_clip_results(), missing_hint=PROJECT_PLOTS_HINT)
        else:
            self.plots.set_results(results)

    def _on_frame_arrived(self, index: int, preview: bool) -> None:
        results = self.controller.results
        doc = self.bridge.doc
        if not preview and results is not None and doc is not None and doc.results is results:
            doc.add_model_frame(results.get(index))
        if not preview and results is not None:
            self.status.set_progress(results.count, results.num_frames)
            self.timeline.set_progress(results.count)
            if not self._plot_timer.isActive():
                self._plot_timer.start()
        if index == self.timeline.frame:
            self.show_frame()

    def _on_state(self, state: str) -> None:
        results = self.controller.results
        self.status.set_running(state == "running")
        if state == "running":
            self._pass_started = time.perf_counter()
            self.status.set_progress(results.count if results else 0, results.num_frames if results else 0)
            self.statusBar().showMessage("running inference…")
        elif state == "done" and results is not None:
            self.plots.set_results(results)
            took = time.perf_counter() - self._pass_started
            self.statusBar().showMessage(f"inference done: {results.num_frames} frames ({took:.1f} s)", 8000)
        elif state == "cancelled" and results is not None:
            self.statusBar().showMessage(f"inference cancelled at {results.count} / {results.num_frames} "
                                         "frames (Ctrl+R runs it again)")

    def _on_model_ready(self, info: ModelInfo) -> None:
        self._names = dict(zip(info.category_ids, info.category_names))
        if self.bridge.doc is not None:
            self.bridge.doc.set_categories(self._names)
        self._geometry = (info.input_long_side, info.patch)
        self._set_untrained_note(not info.trained, info.source)
        self.notice.notify(synthetic_model_notice(info.source, self.clip_path) or "")

    def _set_untrained_note(self, untrained: bool, source: str = "") -> None:
        note = UNTRAINED_NOTE if untrained else ""
        self.status.set_note(note, self._theme.warning)
        self.controls.set_model_note(note or source, warn=untrained, color=self._theme.warning)
        self.controls.model_note.setToolTip(source)

    def _on_failed(self, message: str, detail: str, model_failed: bool) -> None:
        log.warning("inference failed: %s", message)  # the message names the file; no traceback
        if detail:
            log.debug("%s", detail)
        self.show_error("Inference failed", message)
        good = self.controller.last_good
        if model_failed and good is not None and good != (self.controller.spec, self.controller.device):
            self.controls.set_model(good[0])
            self.controls.set_device(good[1])
            self._configure(spec=good[0], device=good[1])

    # -- showing a frame --------------------------------------------------------------------------------
    def _on_frame_changed(self, index: int) -> None:
        if index != self._shown_index:
            self._direction = 1 if index > self._shown_index else -1
        self.controller.want_preview(index)
        self.show_frame()

    def show_frame(self) -> None:
        """The current frame at the view's resolution (:mod:`core.app.display_frames`) with its layers at the
        same resolution; the next frames in the direction of stepping are read ahead."""
        if self.source is None:
            return
        index = min(self.timeline.frame, len(self.source) - 1)
        self._shown_index = index
        self.plots.set_cursor(index)
        w, h = self.source.size
        size = self.view.display_size(w, h)
        try:
            rgb = self.frames.frame(index, size)
        except (VPPError, OSError) as exc:
            self.view.set_blank(w, h, str(exc))
            self.statusBar().showMessage(str(exc), 10000)
            return
        self.view.set_frame(rgb, frame_size=(w, h))
        self.frames.read_ahead(index, self._direction, size)
        model, preview = self.controller.frame(index)
        doc = self.bridge.doc
        result = doc.view_frame(index, model if preview else None) if doc is not None else model
        self.status.set_stats(model if model is not None else result, preview)
        if result is None:
            self.view.set_layers(None)
            self.view.set_badge("computing…" if self.controller.running else "")
            return
        if result.stage_names:
            self.controls.set_stages(tuple(result.stage_names))  # the legend follows the model's prune points
        on = {n: a.isChecked() for n, a in self.actions_.layers.items()}
        long_side, patch = self._geometry
        names = {**self._names, **(doc.categories if doc is not None else {})}
        rejected = frozenset(t for t, tr in doc.tracks.items() if tr.review == "rejected") if doc else frozenset()
        self.view.set_layers(overlay.render_layers(
            result, masks=on["masks"], contours=on["contours"], heatmap=on["heatmap"], labels_on=on["labels"],
            stage=self.controls.stage(), long_side=long_side, patch=patch, names=names, hollow=rejected,
            selected=frozenset(doc.selected) if doc is not None else frozenset(),
            size=rgb.shape[:2] if size != (w, h) else None))
        self.view.set_badge("preview: this frame run alone (fresh state); the full pass replaces it"
                            if preview else "", warn=preview)

    def _on_doc_event(self, event: DocEvent) -> None:
        if event.kind in ("tracks", "view", "categories", "results") and (
                event.frames is None or self.timeline.frame in event.frames):
            self._render_timer.start()
        self._update_title()

    def _update_title(self) -> None:
        doc = self.bridge.doc
        if doc is None:
            self.setWindowTitle("VPP Studio")
            return
        name = doc.path.name if doc.path is not None else Path(doc.clip.path).name
        self.setWindowTitle(f"VPP Studio — {name}[*]")
        self.setWindowModified(doc.dirty)

    def _on_layer_toggled(self, name: str, on: bool) -> None:
        self.view.set_layer_visible(name, on)
        self.show_frame()

    # -- export (see vpp_gui.transfer) -------------------------------------------------------------------
    def export_dialog(self, name: str) -> None:
        """The File menu's export of the format ``name`` (a codec of :mod:`core.formats`)."""
        self.transfers.export_dialog(name)

    def export_to(self, name: str, path: str | Path) -> bool:
        return self.transfers.export(name, path)

    # -- misc -----------------------------------------------------------------------------------------
    def _show_sweep(self) -> None:
        """Show the sweep dock beside the timeline; when it opens, give it a share of the width its fields,
        plot and table can use (it opened at its minimum width, its PKR field a few characters wide)."""
        opening = self.sweep_dock.isHidden()
        self.sweep_dock.show()
        self.sweep_dock.raise_()
        if opening:
            self.resizeDocks([self.sweep_dock], [int(self.width() * SWEEP_WIDTH_SHARE)], Qt.Orientation.Horizontal)

    def show_error(self, title: str, message: str) -> None:
        self.statusBar().showMessage(message, 15000)
        QMessageBox.warning(self, title, message)

    def show_message(self, text: str, msecs: int = 0) -> None:
        self.statusBar().showMessage(text, msecs)

    def show_shortcuts(self) -> None:
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", shortcuts_html(self.actions_),
                          QMessageBox.StandardButton.Close, self)
        box.setModal(False)
        box.show()

    def show_about(self) -> None:
        QMessageBox.about(self, "About VPP Studio", "VPP Studio: video instance segmentation with Video Patch "
                          "Pruning. The heatmap shows which patches the model kept at each prune point.")

    def set_theme(self, name: str) -> None:
        theme = self._theme = apply_theme(QApplication.instance(), name, self)
        self.actions_.themes[theme.name].setChecked(True)
        self.view.set_theme(theme)
        self.plots.set_theme(theme)
        self.iou_plot.set_theme(theme)
        self.timeline.strip.set_color(theme.highlight)
        self._set_untrained_note(bool(self.status.note.text()),
                                 self.controls.model_note.toolTip())
        self.settings.set_value("theme", theme.name)

    def _no_clip_text(self) -> str:
        return ("No clip open.\n\nFile → Open (Ctrl+O) a folder of frames, or drop a folder or a video file "
                "here." + (f"\n\n{self._demo_hint}" if self._demo_hint else ""))

    def closeEvent(self, event) -> None:
        if not self.projects.maybe_save():
            event.ignore()
            return
        if self.bridge.doc is not None:
            self.bridge.doc.stop_journal(delete=True)  # saved or deliberately discarded
            self.bridge.doc.release_lock()
        self.timeline.pause()
        window_state.save(self)
        self.controller.cancel(quiet=True)
        self.propagation.shutdown()
        self.sweep_panel.shutdown()
        if self.models_dialog is not None:
            self.models_dialog.shutdown()
        self.review.shutdown()
        self.editing.box.shutdown()  # a GrabCut still running (box or refine)
        if not self.controller.runner.shutdown(10000):
            log.warning("the inference thread did not stop within 10 s")
        self._render_timer.stop()
        if self.frames is not None:
            self.frames.close()
            self.frames = None
        if self.source is not None:
            self.source.close()
            self.source = None
        super().closeEvent(event)
