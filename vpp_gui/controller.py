"""Glue between the window and the worker: request ids, the per-(model, PKR) cache, previews.

See :mod:`core.studio` for the pass/preview rule. The controller keeps the results of the current
run (one :class:`ClipResults` per pass) and the previews of that pass apart; ``frame(i)`` answers
with the pass's result when it has one, else with a preview, marked as such.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from core.resources import default_pkr
from core.results import ClipResults, CompactFrame
from core.studio import (
    FrameMessage,
    ModelInfo,
    ModelSpec,
    PassDone,
    PassError,
    ResultCache,
    RunKey,
    RunRequest,
)
from vpp_gui.worker import InferenceRunner

MAX_PREVIEWS = 64


class InferenceController(QObject):
    resultsReplaced = Signal()  # a new current ClipResults (new pass, or a cache hit)
    frameArrived = Signal(int, bool)  # frame index, is_preview
    stateChanged = Signal(str)  # "idle", "running", "done", "cancelled", "error"
    modelReady = Signal(object)  # ModelInfo
    failed = Signal(str, str, bool)  # message, detail, model_failed (the model never loaded)

    def __init__(self, runner: InferenceRunner, cache: ResultCache | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.runner.message.connect(self._on_message)
        self.cache = cache if cache is not None else ResultCache()
        self.clip: str | None = None
        self._shape = (0, 0, 0)  # frames, height, width
        self.spec = ModelSpec("default")
        self.device = "cpu"
        self.pkr = default_pkr()
        self.threshold: float | None = None  # None = auto
        self.results: ClipResults | None = None
        self.previews: OrderedDict[int, CompactFrame] = OrderedDict()
        self.key: RunKey | None = None
        self.state = "idle"
        self.model_info: ModelInfo | None = None
        self.last_good: tuple[ModelSpec, str] | None = None
        self._request_id = 0
        self._active: RunRequest | None = None
        self._model_loaded = False

    # -- configuration ------------------------------------------------------------------------------
    def set_clip(self, path: str | Path | None, frames: int = 0, height: int = 0, width: int = 0) -> None:
        self.cancel()
        self.clip = str(path) if path is not None else None
        self._shape = (frames, height, width)
        self.results = None
        self.previews.clear()
        self.key = None
        self.resultsReplaced.emit()

    def configure(self, *, spec: ModelSpec | None = None, device: str | None = None, pkr: float | None = None,
                  threshold: float | str | None = "keep", preview: int | None = None) -> None:
        """Change run settings; restarts (or takes the cache) when the key changes.

        ``preview``: the frame on screen, previewed first if a pass starts (see :mod:`core.studio`).
        """
        if spec is not None:
            self.spec = spec
        if device is not None:
            self.device = device
        if pkr is not None:
            self.pkr = float(pkr)
        if threshold != "keep":
            self.threshold = threshold  # type: ignore[assignment]
        self.restart(preview=preview)

    def current_key(self) -> RunKey | None:
        if self.clip is None:
            return None
        return RunKey.make(self.clip, self.spec, self.device, self.pkr, self.threshold)

    # -- running -------------------------------------------------------------------------------------
    def restart(self, *, force: bool = False, preview: int | None = None) -> None:
        """Show the cached results of the current settings, or start a pass (see the module docstring).

        ``force`` reruns even when the settings did not change or a complete cached pass exists.
        """
        key = self.current_key()
        if key is None:
            return
        if key == self.key and not force and self.state in ("running", "done"):
            return
        self.cancel(quiet=True)
        self.key = key
        self.previews.clear()
        cached = self.cache.get(key)
        if cached is not None and cached.is_complete and not force:
            self.results = cached
            self._set_state("done")
            self.resultsReplaced.emit()
            return
        frames, height, width = self._shape
        self.results = ClipResults(frames, height, width)
        self.cache.put(key, self.results)
        self._request_id += 1
        self._active = RunRequest(self._request_id, key.clip, self.spec, self.device, self.pkr, key.threshold)
        self._model_loaded = False
        self.runner.start(self._active, preview=preview if preview else None)
        self._set_state("running")
        self.resultsReplaced.emit()

    def cancel(self, *, quiet: bool = False) -> None:
        if self._active is not None:
            self.runner.cancel()
            self._active = None
            if not quiet:
                self._set_state("cancelled")

    def want_preview(self, index: int) -> None:
        """The user looks at ``index``: if the pass has not reached it, preview it next."""
        if self._active is None or self.results is None or index in self.results or index in self.previews:
            return
        self.runner.preview(index)

    # -- queries -------------------------------------------------------------------------------------
    def frame(self, index: int) -> tuple[CompactFrame | None, bool]:
        """(result for ``index``, is_preview)."""
        if self.results is not None:
            f = self.results.get(index)
            if f is not None:
                return f, False
        p = self.previews.get(index)
        return (p, True) if p is not None else (None, False)

    @property
    def running(self) -> bool:
        return self._active is not None

    # -- messages from the worker ---------------------------------------------------------------------
    def _on_message(self, msg) -> None:
        if self._active is None or msg.request_id != self._active.id:
            return  # a replaced or cancelled pass: stale
        if isinstance(msg, FrameMessage):
            if msg.preview:
                self.previews[msg.frame.index] = msg.frame
                while len(self.previews) > MAX_PREVIEWS:
                    self.previews.popitem(last=False)
            else:
                self.results.add(msg.frame)
                self.previews.pop(msg.frame.index, None)
            self.frameArrived.emit(msg.frame.index, msg.preview)
        elif isinstance(msg, ModelInfo):
            self.model_info = msg
            self._model_loaded = True
            self.last_good = (self.spec, self.device)
            self.modelReady.emit(msg)
        elif isinstance(msg, PassDone):
            self._active = None
            self.cache.trim()
            self._set_state("done")
        elif isinstance(msg, PassError):
            self._active = None
            self._set_state("error")
            self.failed.emit(msg.message, msg.detail, not self._model_loaded)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.stateChanged.emit(state)
