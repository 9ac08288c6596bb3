"""Propagation in the app: T / Shift+T / Ctrl+T, the keyframe keys and the keyframe strip, wired to the document.

The request is planned on the UI thread (:func:`core.app.document.propagation.plan` / ``plan_fill``: cheap,
and an impossible request is refused at once with its reason); the flow runs on a worker thread
(:class:`PropagationRunner`) over an immutable snapshot of the track, reading the frames through its
own reader (opened and closed on that thread). The result comes back to the UI thread, which commits
it with :meth:`core.app.document.Document.commit_propagation` as one undoable step and shows
:meth:`~core.app.document.propagation.PropagationResult.summary` in the status bar (and in the notice bar
when the run stopped early). Esc cancels: the frames finished so far are committed, also as one step.

One propagation at a time: a second request while one runs is refused with a message. When the
track was deleted, or another clip or project was opened meanwhile, the result is dropped and the
status bar says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QThreadPool, Signal
from superqt.utils import FunctionWorker

from core.app.clips import open_clip_for_pass
from core.app.document import DocEvent, Document, Track
from core.app.document.keyframes import next_gap, next_keyframe, previous_keyframe, propagation_stop
from core.app.document.propagation import PropagationResult, Segment, Snap, plan, plan_fill, propagate
from vpp_gui.propagation_widgets import PropagationOptions, PropagationProgress

log = logging.getLogger(__name__)
MESSAGE_MS = 15000


@dataclass
class PropagationJob:
    """One request: what to fill (planned on the UI thread) and the event that cancels it."""

    doc: Document
    track: Track  # the snapshot the worker reads (immutable)
    segments: Sequence[Segment]
    start: int
    stop: int
    what: str  # "forward", "backward", "fill": for messages
    snap: Snap | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def planned(self) -> int:
        return sum(len(s.frames) for s in self.segments)


def run_job(job: PropagationJob, open_clip: Callable[[str], object],
            progress: Callable[[int, int], None]) -> tuple[bool, PropagationResult | Exception]:
    """On the worker thread: (True, result) or (False, the exception); never raises."""
    try:
        source = open_clip(str(job.doc.clip.path))
        try:
            clip = job.doc.clip
            result = propagate(job.track, job.segments, source.frame, clip.height, clip.width, start=job.start,
                               stop=job.stop, snap=job.snap, cancel=job.cancel, progress=progress)
        finally:
            source.close()
        return True, result
    except Exception as exc:  # reported on the UI thread
        return False, exc


class PropagationRunner(QObject):
    """Runs one :class:`PropagationJob` at a time on its own thread; reports on the UI thread (queued)."""

    progressed = Signal(int, int)  # frames done, planned (emitted on the worker thread: queued)
    finished = Signal(object, bool, object)  # job, ok, result or exception

    def __init__(self, open_clip: Callable[[str], object] = open_clip_for_pass,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.open_clip = open_clip
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self.job: PropagationJob | None = None
        self._alive: set[FunctionWorker] = set()

    @property
    def running(self) -> bool:
        return self.job is not None

    def start(self, job: PropagationJob) -> None:
        if self.job is not None:
            raise RuntimeError("a propagation is already running")
        self.job = job
        worker = FunctionWorker(run_job, job, self.open_clip, self.progressed.emit)
        worker.setAutoDelete(False)
        worker.returned.connect(self._on_returned)  # a slot of this QObject: queued to the UI thread
        worker.finished.connect(lambda: self._alive.discard(worker))
        self._alive.add(worker)
        self._pool.start(worker)

    def cancel(self) -> bool:
        """Ask the running job to stop after the frame in hand; False when none runs."""
        if self.job is None:
            return False
        self.job.cancel.set()
        return True

    def shutdown(self, msecs: int = 10000) -> bool:
        self.cancel()
        return self._pool.waitForDone(msecs)

    def _on_returned(self, out: tuple) -> None:
        job, self.job = self.job, None
        ok, value = out
        self.finished.emit(job, ok, value)


class PropagationController(QObject):
    """The propagation and keyframe actions, the options row, the progress widget and the strip's clicks."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.actions = a = window.actions_
        self.runner = PropagationRunner(parent=self)
        self.options = PropagationOptions(window.settings, window.tracks)
        window.tracks.add_header(self.options)
        self.progress = PropagationProgress(window)
        window.statusBar().addPermanentWidget(self.progress)
        self.strip = window.keyframe_strip
        for act, slot in ((a.propagate_forward, lambda: self.propagate(1)),
                          (a.propagate_backward, lambda: self.propagate(-1)),
                          (a.fill_between, self.fill_between),
                          (a.prev_keyframe, lambda: self.go_keyframe(-1)),
                          (a.next_keyframe, lambda: self.go_keyframe(1)),
                          (a.next_gap, self.go_next_gap)):
            act.triggered.connect(lambda _checked=False, s=slot: s())
        self.progress.cancelRequested.connect(self.cancel)
        self.runner.progressed.connect(self.progress.set_progress)
        self.runner.finished.connect(self._on_finished)
        self.strip.cellClicked.connect(self._on_strip_click)
        window.timeline.frameChanged.connect(self.strip.set_frame)
        window.bridge.changed.connect(self._on_doc_event)
        window.bridge.replaced.connect(self._on_replaced)
        self._on_replaced()

    # -- helpers -------------------------------------------------------------------------------------
    @property
    def doc(self) -> Document | None:
        return self.window.bridge.doc

    @property
    def running(self) -> bool:
        return self.runner.running

    def _frame(self) -> int:
        return self.window.timeline.frame

    def _say(self, text: str, ms: int = 5000) -> None:
        self.window.statusBar().showMessage(text, ms)

    def _current(self) -> tuple[Document, int]:
        doc = self.doc
        if doc is None:
            raise ValueError("Open a clip first (File → Open).")
        if doc.current is None:
            raise ValueError("Select a track first: click its mask (Select tool, V), its row in the Tracks panel "
                             "or its row in the keyframe strip.")
        return doc, doc.current

    # -- propagation ---------------------------------------------------------------------------------
    def propagate(self, direction: int) -> bool:
        """T (+1) / Shift+T (-1): from the current frame to the chosen target; False when refused."""
        what = "forward" if direction > 0 else "backward"
        try:
            doc, tid = self._current()
            if self._refuse_second():
                return False
            track, frame = doc.track(tid), self._frame()
            stop = propagation_stop(track.keyframes, frame, direction, self.options.target(), self.options.count(),
                                    doc.clip.num_frames)
            segments = plan(track, frame, stop, doc.clip.num_frames)
        except ValueError as exc:
            self.window.show_error("Cannot propagate", str(exc))
            return False
        if not segments:
            self._say(f"Nothing to propagate {what}: no frame between frame {frame} and frame {stop} "
                      f"(the clip's end or a keyframe of track {tid}).")
            return False
        return self._start(PropagationJob(doc, track, segments, frame, stop, what))

    def fill_between(self) -> bool:
        """Ctrl+T: fill between the keyframes around the current frame; False when refused."""
        try:
            doc, tid = self._current()
            if self._refuse_second():
                return False
            track = doc.track(tid)
            segments = plan_fill(track, self._frame())
        except ValueError as exc:
            self.window.show_error("Cannot fill between keyframes", str(exc))
            return False
        if not segments:
            self._say(f"Nothing to fill: the keyframes of track {tid} around frame {self._frame()} are neighbours.")
            return False
        start = min(s.left for s in segments if s.left is not None)
        stop = max(s.right for s in segments if s.right is not None)
        return self._start(PropagationJob(doc, track, segments, start, stop, "fill"))

    def _refuse_second(self) -> bool:
        job = self.runner.job
        if job is None:
            return False
        self._say(f"A propagation of track {job.track.id} is running ({job.what}); wait for it or cancel it (Esc) "
                  "first.", MESSAGE_MS)
        return True

    def _start(self, job: PropagationJob) -> bool:
        job.snap = job.doc.model_snap() if self.options.snap() else None
        self.runner.start(job)
        self.progress.start(job.track.id, job.planned)
        verb = "filling between keyframes" if job.what == "fill" else f"propagating {job.what}"
        self._say(f"Track {job.track.id}: {verb}, frames {job.start}→{job.stop} ({job.planned} to fill; Esc "
                  "cancels and keeps what is done)…", 0)
        return True

    def cancel(self) -> bool:
        """Esc: stop the running propagation (its finished frames are kept); False when none runs."""
        if not self.runner.cancel():
            return False
        self._say("Cancelling the propagation: the frames it finished are kept…", 0)
        return True

    def shutdown(self, msecs: int = 10000) -> bool:
        """Cancel and wait for the worker (the window is closing); its result is dropped."""
        return self.runner.shutdown(msecs)

    def _on_finished(self, job: PropagationJob, ok: bool, value) -> None:
        self.progress.hide()
        if not ok:
            from core.app.studio import user_message

            log.warning("propagation failed: %s", value)
            self.window.show_error("Propagation failed", user_message(value))
            return
        result: PropagationResult = value
        doc = self.doc
        if doc is not job.doc:
            self._say("The propagation finished after another clip or project was opened: its result is dropped.",
                      MESSAGE_MS)
            return
        if result.track_id not in doc.tracks:
            self._say(f"Track {result.track_id} was deleted while it was being propagated: the result is dropped.",
                      MESSAGE_MS)
            return
        doc.commit_propagation(result)
        summary = result.summary()
        self._say(summary[:1].upper() + summary[1:], MESSAGE_MS)
        if result.stops and not result.cancelled:
            self.window.notice.notify(f"Propagation of track {result.track_id} stopped early: "
                                      + "; ".join(str(s) for s in result.stops)
                                      + ". Correct the mask there (it becomes a keyframe) and propagate again.")

    # -- keyframe navigation -------------------------------------------------------------------------
    def go_keyframe(self, direction: int) -> int | None:
        """Ctrl+Left / Ctrl+Right: the selected track's previous / next keyframe; the frame, or None."""
        try:
            doc, tid = self._current()
        except ValueError as exc:
            self._say(str(exc))
            return None
        keys, frame = doc.track(tid).keyframes, self._frame()
        target = next_keyframe(keys, frame) if direction > 0 else previous_keyframe(keys, frame)
        if target is None:
            self._say(f"Track {tid} has no keyframe {'after' if direction > 0 else 'before'} frame {frame}"
                      + ("" if keys else " (it has none: draw or correct its mask on a frame)"))
            return None
        self.window.timeline.set_frame(target)
        return target

    def go_next_gap(self) -> int | None:
        """Ctrl+Shift+Right: the next frame where the selected track has no mask; the frame, or None."""
        try:
            doc, tid = self._current()
        except ValueError as exc:
            self._say(str(exc))
            return None
        frame = self._frame()
        target = next_gap(doc.track(tid).frames, frame, doc.clip.num_frames)
        if target is None:
            self._say(f"Track {tid} has a mask on every frame after frame {frame}")
            return None
        self.window.timeline.set_frame(target)
        return target

    # -- strip and document --------------------------------------------------------------------------
    def _on_strip_click(self, track_id: int, frame: int) -> None:
        doc = self.doc
        if doc is None or track_id not in doc.tracks:
            return
        if doc.selected != (track_id,):
            doc.select([track_id])
        if frame >= 0:
            self.window.timeline.set_frame(frame)

    def _on_replaced(self) -> None:
        self.strip.set_document(self.doc)
        self.strip.set_frame(self._frame())
        self._update()

    def _on_doc_event(self, event: DocEvent) -> None:
        if event.kind in ("view", "tracks", "history", "results"):
            self._update()

    def _update(self) -> None:
        doc = self.doc
        results = doc.results if doc is not None else None
        self.options.set_snap_available(results is not None and results.count > 0)
        have = doc is not None and doc.current is not None
        a = self.actions
        for act in (a.propagate_forward, a.propagate_backward, a.fill_between, a.prev_keyframe, a.next_keyframe,
                    a.next_gap):
            act.setEnabled(have)
