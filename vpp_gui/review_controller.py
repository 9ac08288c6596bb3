"""Ground truth in the app: loading it, drawing it, the review and evaluation docks, the IoU plot.

The state (the GT, the latest review and evaluation, GT / predictions / both) is the Qt-free
:class:`core.app.review_state.ReviewState`; this controller wires it to the window. Three one-thread
:class:`~vpp_gui.background.LatestRunner` s keep the UI thread free: one loads the GT file (a DAVIS folder of
a long clip takes seconds), one runs :func:`core.app.review.review_tracks` on a snapshot of the tracks, one
runs :func:`core.app.review.evaluate_entries` (pycocotools) on :func:`core.app.review.document_entries`. Document
edits restart two debounce timers (review :data:`REVIEW_DEBOUNCE_MS`, evaluation
:data:`EVAL_DEBOUNCE_MS`); a result that a newer computation made stale is dropped
(:meth:`ReviewState.finish`). Errors (a bad GT file names the file) go to ``feedback.show_error``.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QDockWidget, QFileDialog, QWidget

from core.app.review_state import MODE_TEXT, ReviewState, Ticket
from core.errors import VPPError
from vpp_gui.actions import Actions
from vpp_gui.background import LatestRunner
from vpp_gui.document_bridge import DocumentBridge
from vpp_gui.eval_panel import EvalPanel
from vpp_gui.file_dialogs import DialogFolders, Feedback
from vpp_gui.frame_view import FrameView
from vpp_gui.gt_overlay import gt_labels, render_gt
from vpp_gui.iou_plot import IouPlot
from vpp_gui.review_panel import ReviewPanel
from vpp_gui.timeline import Timeline

REVIEW_DEBOUNCE_MS = 150
EVAL_DEBOUNCE_MS = 500
FLASH_MS = 250
FLASH_TICKS = 8  # on / off four times, then off
_EVENTS = frozenset({"tracks", "results", "categories"})


def review_docks(window) -> tuple[QDockWidget, QDockWidget]:
    """Create ``window.review_panel`` / ``window.eval_panel`` in docks tabbed with the Tracks dock (hidden
    until a GT is loaded)."""
    window.review_panel = ReviewPanel(window)
    window.eval_panel = EvalPanel(window)
    docks = []
    for title, name, widget in (("Review against GT", "reviewDock", window.review_panel),
                                ("Evaluation", "evalDock", window.eval_panel)):
        dock = window._dock(title, name, widget, Qt.DockWidgetArea.RightDockWidgetArea)
        window.tabifyDockWidget(window.tracks_dock, dock)
        dock.hide()
        docks.append(dock)
    window.tracks_dock.raise_()
    return docks[0], docks[1]


def _snapshot(tracks: dict) -> dict:
    """Tracks with their own frame dicts: a running pass adds frames to a track in place."""
    return {tid: dataclasses.replace(t, frames=dict(t.frames)) for tid, t in tracks.items()}


def _frames_text(first, last) -> str:
    return "" if first is None else (f"frame {first}" if first == last else f"frames {first}–{last}")


class ReviewController(QObject):
    gtLoaded = Signal(object)  # ClipGroundTruth
    reviewUpdated = Signal(object)  # Review
    evaluated = Signal(object)  # EvaluationReport
    loadFailed = Signal(str)  # the message shown

    def __init__(self, parent: QWidget, *, bridge: DocumentBridge, actions: Actions, timeline: Timeline,
                 view: FrameView, iou_plot: IouPlot, docks: tuple[QDockWidget, QDockWidget], folders: DialogFolders,
                 feedback: Feedback) -> None:
        """``docks``: the review and evaluation docks of :func:`review_docks` (their widgets are the panels)."""
        super().__init__(parent)
        self.parent_widget = parent
        self.bridge, self.timeline, self.view = bridge, timeline, view
        self.folders, self.feedback = folders, feedback
        self.actions = actions
        self.review_dock, self.eval_dock = docks
        self.state = ReviewState()
        self.panel: ReviewPanel = self.review_dock.widget()
        self.eval_panel: EvalPanel = self.eval_dock.widget()
        self.plot = iou_plot
        self.loader, self.reviewer, self.evaluator = LatestRunner(self), LatestRunner(self), LatestRunner(self)
        self._load_serial = 0
        self._review_timer = QTimer(self, singleShot=True, interval=REVIEW_DEBOUNCE_MS)
        self._review_timer.timeout.connect(self.start_review)
        self._eval_timer = QTimer(self, singleShot=True, interval=EVAL_DEBOUNCE_MS)
        self._eval_timer.timeout.connect(self.start_eval)
        self._flash_timer = QTimer(self, interval=FLASH_MS)
        self._flash_timer.timeout.connect(self._flash_tick)
        self._flash_left = 0

        a = actions
        a.load_gt.triggered.connect(lambda: self.load_dialog("file"))
        a.load_gt_folder.triggered.connect(lambda: self.load_dialog("folder"))
        for mode, act in a.gt_modes.items():
            act.triggered.connect(lambda _c=False, m=mode: self.set_mode(m))
        a.cycle_gt.triggered.connect(self.cycle_mode)
        self.panel.loadRequested.connect(self.load_dialog)
        self.panel.predActivated.connect(self.show_prediction)
        self.panel.gtActivated.connect(self.show_miss)
        self.plot.seekRequested.connect(timeline.set_frame)
        timeline.frameChanged.connect(self._on_frame)
        bridge.changed.connect(self._on_doc_event)
        bridge.replaced.connect(self._on_replaced)
        self.loader.done.connect(self._on_loaded)
        self.loader.failed.connect(self._on_load_failed)
        self.reviewer.done.connect(self._on_reviewed)
        self.reviewer.failed.connect(self._on_review_failed)
        self.evaluator.done.connect(self._on_evaluated)
        self.evaluator.failed.connect(self._on_eval_failed)

    @property
    def doc(self):
        return self.bridge.doc

    # -- loading ------------------------------------------------------------------------------------
    def load_dialog(self, kind: str = "file") -> None:
        w = self.parent_widget
        if self.doc is None:
            self.feedback.show_error("Cannot load ground truth", "Open the clip the ground truth belongs to first.")
            return
        start = self.folders.start("gt")
        if kind == "folder":
            path = QFileDialog.getExistingDirectory(w, "Ground truth: a folder of DAVIS PNG masks", start)
        else:
            path, _ = QFileDialog.getOpenFileName(w, "Ground truth: a YouTube-VIS GT JSON", start,
                                                  "YouTube-VIS ground truth (*.json);;All files (*)")
        if path:
            self.folders.remember("gt", Path(path).parent)
            self.load(path)

    def load(self, path: str | Path) -> bool:
        """Read the GT for the open clip on the loader thread; False (with a message) if there is no clip."""
        from core.app.review import load_ground_truth

        doc = self.doc
        if doc is None:
            self.feedback.show_error("Cannot load ground truth", "Open the clip the ground truth belongs to first.")
            return False
        self._load_serial += 1
        clip = doc.clip
        fn = partial(load_ground_truth, str(path), num_frames=clip.num_frames, height=clip.height,
                     width=clip.width, names=list(clip.frame_names()))
        self.loader.submit((self._load_serial, doc, str(path)), fn)
        self.feedback.show_message(f"loading ground truth {path}…")
        return True

    def _on_loaded(self, tag, gt, _seconds: float) -> None:
        serial, doc, _path = tag
        if serial != self._load_serial or doc is not self.doc:
            return  # another GT was asked for, or another clip opened meanwhile
        self.state.set_gt(gt)
        n = len(gt.annotated)
        agnostic = " · class-agnostic (DAVIS masks have no classes)" if gt.class_agnostic else ""
        self.panel.set_gt_info(f"{Path(gt.path).name} ({gt.format}) · {len(gt.tracks)} GT track(s) · "
                               f"{n} / {gt.num_frames} frames annotated{agnostic}")
        self.eval_panel.clear("waiting for the first evaluation…")
        self.plot.set_values(None)
        self.plot.show()
        for dock in (self.eval_dock, self.review_dock):
            dock.show()
            dock.raise_()
        self.feedback.show_message(f"ground truth {gt.path}: {len(gt.tracks)} track(s), {n} of "
                                       f"{gt.num_frames} frames annotated (Ctrl+G: GT / predictions / both)", 10000)
        self.redraw()
        self.start_review()
        self.start_eval()
        self.gtLoaded.emit(gt)

    def _on_load_failed(self, tag, exc: BaseException) -> None:
        from core.app.studio import user_message

        serial, _doc, path = tag
        if serial != self._load_serial:
            return
        message = user_message(exc)
        if path not in message and Path(path).name not in message:
            message = f"{path}: {message}"
        self.feedback.show_error("Cannot load ground truth", message)
        self.loadFailed.emit(message)

    def _on_replaced(self) -> None:
        self._load_serial += 1  # a GT still loading was for the old clip
        self.state.clear()
        self._review_timer.stop()
        self._eval_timer.stop()
        self._flash_timer.stop()
        self.panel.set_gt_info("")
        self.panel.set_review(None)
        self.eval_panel.clear()
        doc = self.doc
        self.plot.set_clip(doc.clip.num_frames if doc is not None else 0)
        self.plot.hide()
        self.redraw()

    # -- computing ----------------------------------------------------------------------------------
    def _on_doc_event(self, event) -> None:
        if event.kind in _EVENTS and self.state.has_gt:
            self._review_timer.start()
            self._eval_timer.start()

    def start_review(self) -> None:
        from core.app.review import review_tracks

        if not self.state.has_gt or self.doc is None:
            return
        self._review_timer.stop()
        self.reviewer.submit(self.state.begin("review"), review_tracks, self.state.gt, _snapshot(self.doc.tracks))

    def start_eval(self) -> None:
        from core.app.review import document_entries, evaluate_entries

        if not self.state.has_gt or self.doc is None:
            return
        self._eval_timer.stop()
        ticket = self.state.begin("eval")  # from here on, a result still running is stale
        try:
            entries = document_entries(self.doc)  # a snapshot, taken here on the UI thread
        except (VPPError, ValueError) as exc:
            self._on_eval_failed(ticket, exc)
            return
        self.evaluator.submit(ticket, evaluate_entries, self.state.gt, entries)
        self.eval_panel.set_computing()

    def _on_reviewed(self, ticket: Ticket, review, _seconds: float) -> None:
        if not self.state.finish(ticket, review):
            return
        doc = self.doc

        def pred_name(pid: int) -> str:
            t = doc.tracks.get(pid) if doc is not None else None
            if t is None:
                return ""
            text = f"{doc.category_name(t.category_id)}  {_frames_text(t.first, t.last)}"
            if pid in review.by_pred or pid not in review.pred_ids or not review.gt_ids:
                return text
            row = review.ious[review.pred_ids.index(pid)]  # why it is false: its best overlap
            best = int(row.argmax())
            return f"{text}  (best: GT #{review.gt_ids[best]}, IoU {float(row[best]):.2f})"

        def gt_name(gid: int) -> str:
            first = self.state.gt_first_frame(gid)
            return f"{self.state.gt_category(gid)}  " + ("" if first is None else f"from frame {first}")

        self.panel.set_review(review, pred_name=pred_name, gt_name=gt_name)
        self.plot.set_values(review.frame_iou)
        self.plot.set_cursor(self.timeline.frame)
        self.reviewUpdated.emit(review)

    def _on_review_failed(self, ticket: Ticket, exc: BaseException) -> None:
        from core.app.studio import user_message

        if self.state.fail(ticket):
            self.feedback.show_message(f"review against the ground truth failed: {user_message(exc)}", 15000)

    def _on_evaluated(self, ticket: Ticket, report, seconds: float) -> None:
        if self.state.finish(ticket, report, at=time.time(), seconds=seconds):
            self.eval_panel.set_report(report, when=self.state.report_time, took=seconds)
            self.evaluated.emit(report)

    def _on_eval_failed(self, ticket: Ticket, exc: BaseException) -> None:
        from core.app.studio import user_message

        if self.state.fail(ticket):
            self.eval_panel.set_error(user_message(exc))

    @property
    def computing(self) -> bool:
        return self.state.computing("eval") or self.state.computing("review")

    # -- showing ------------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        self.state.set_mode(mode)
        self.actions.gt_modes[mode].setChecked(True)
        if not self.state.has_gt:
            self.feedback.show_message("no ground truth loaded: File → Load ground truth… (Ctrl+Shift+G)", 6000)
        else:
            self.feedback.show_message(f"showing {MODE_TEXT[mode]} (Ctrl+G)", 4000)
        self.redraw()

    def cycle_mode(self) -> None:
        self.set_mode(self.state.cycle_mode())

    def _on_frame(self, index: int) -> None:
        self.plot.set_cursor(index)
        self.redraw()

    def redraw(self) -> None:
        """Draw the current frame's GT outlines (or the "not annotated" badge) as the mode says."""
        view, state = self.view, self.state
        view.set_predictions_visible(state.shows_predictions)
        gt = state.gt
        if not state.shows_gt:
            view.set_gt(None, [])
            return
        frame = self.timeline.frame
        masks = gt.masks_at(frame) if 0 <= frame < gt.num_frames else None
        if masks is None:
            view.set_gt(None, [], not_annotated=True)
            return
        flash = state.flash_gt if self._flash_left % 2 == 0 else None
        layer = render_gt(masks, gt.height, gt.width, flash=flash)
        view.set_gt(layer, gt_labels(masks, gt.categories, class_agnostic=gt.class_agnostic))

    # -- navigation ---------------------------------------------------------------------------------
    def show_prediction(self, track_id: int) -> None:
        """Select a predicted track and, as the Tracks panel does, stay on the frame shown when the track is on
        it, else seek to its nearest frame (:meth:`core.app.document.Track.nearest_frame`)."""
        doc = self.doc
        if doc is None or track_id not in doc.tracks:
            return
        doc.select([track_id])
        target = doc.track(track_id).nearest_frame(self.timeline.frame)
        if target is not None and target != self.timeline.frame:
            self.timeline.set_frame(target)

    def show_miss(self, gt_id: int) -> None:
        """Seek to a GT track's first frame and flash its outline."""
        first = self.state.gt_first_frame(gt_id)
        if first is None:
            return
        if self.state.mode == "pred":
            self.set_mode("both")
        self.state.flash_gt = gt_id
        self._flash_left = FLASH_TICKS
        self._flash_timer.start()
        if self.timeline.frame == first:
            self.redraw()
        else:
            self.timeline.set_frame(first)

    def _flash_tick(self) -> None:
        self._flash_left -= 1
        if self._flash_left <= 0:
            self._flash_timer.stop()
            self._flash_left = 0
            self.state.flash_gt = None
        self.redraw()

    def shutdown(self, msecs: int = 10000) -> bool:
        self._review_timer.stop()
        self._eval_timer.stop()
        self._flash_timer.stop()
        return all([r.shutdown(msecs) for r in (self.loader, self.reviewer, self.evaluator)])
