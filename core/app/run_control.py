"""The app's run state, Qt-free: which clip and settings, the current pass, its previews, the cache.

:class:`RunController` is the logic the window's inference controller used to hold in Qt objects;
``vpp_gui.controller`` is now only a signal adapter over it. It talks to a *runner* (anything with
``start(request, preview=None)``, ``cancel()`` and ``preview(index)``; the app's runs passes on a
worker thread) and reports through ``emit(name, *args)`` with the names

    "resultsReplaced" ()                      a new current ClipResults (new pass, cache hit, adopt)
    "frameArrived" (index, is_preview)        a frame of the current pass (or a preview)
    "stateChanged" (state)                    "idle", "running", "done", "cancelled", "error"
    "modelReady" (ModelInfo)                  the pass's model is loaded
    "failed" (message, detail, model_failed)  the pass ended with an error

Messages of a replaced or cancelled pass are dropped by request id (see :mod:`core.app.studio` for the
pass and preview rule). Results are cached per (clip, model, device, PKR, threshold).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from core.app.settings import ModelSpec, RunSettings
from core.app.studio import FrameMessage, ModelInfo, PassDone, PassError, ResultCache, RunKey, RunRequest
from core.results import ClipResults, CompactFrame

MAX_PREVIEWS = 64


class Runner(Protocol):
    def start(self, request: RunRequest, preview: int | None = None) -> None: ...
    def cancel(self) -> None: ...
    def preview(self, index: int | None) -> None: ...


class RunController:
    def __init__(self, runner: Runner, cache: ResultCache | None = None, *,
                 emit: Callable[..., None] | None = None, pkr: float = 0.4) -> None:
        self.runner = runner
        self.cache = cache if cache is not None else ResultCache()
        self._emit = emit or (lambda name, *args: None)
        self.clip: str | None = None
        self._shape = (0, 0, 0)  # frames, height, width
        self.settings = RunSettings(pkr=pkr)  # the current run settings: the one place they are kept
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
        self._emit("resultsReplaced")

    # the current settings' parts, read-only: change them with set_settings / configure
    @property
    def spec(self) -> ModelSpec:
        return self.settings.spec

    @property
    def device(self) -> str:
        return self.settings.device

    @property
    def pkr(self) -> float:
        return self.settings.pkr

    @property
    def threshold(self) -> float | None:
        return self.settings.threshold  # None = auto

    def set_settings(self, settings: RunSettings | None = None, *, spec: ModelSpec | None = None,
                     device: str | None = None, pkr: float | None = None,
                     threshold: float | str | None = "keep") -> None:
        """Take ``settings`` (else the current ones) with the changes given, without starting anything
        (``configure`` also restarts). A value outside its range raises ``ValueError`` and changes nothing."""
        changes: dict[str, Any] = {}
        if spec is not None:
            changes["spec"] = spec
        if device is not None:
            changes["device"] = device
        if pkr is not None:
            changes["pkr"] = pkr
        if threshold != "keep":
            changes["threshold"] = threshold
        base = settings if settings is not None else self.settings
        self.settings = base.replace(**changes) if changes else base

    def configure(self, settings: RunSettings | None = None, *, spec: ModelSpec | None = None,
                  device: str | None = None, pkr: float | None = None, threshold: float | str | None = "keep",
                  preview: int | None = None) -> None:
        """Change run settings (as :meth:`set_settings`); restarts (or takes the cache) when the key changes.

        ``preview``: the frame on screen, previewed first if a pass starts (see :mod:`core.app.studio`).
        """
        self.set_settings(settings, spec=spec, device=device, pkr=pkr, threshold=threshold)
        self.restart(preview=preview)

    def current_key(self) -> RunKey | None:
        if self.clip is None:
            return None
        return RunKey.make(self.clip, self.settings)

    # -- running -------------------------------------------------------------------------------------
    def restart(self, *, force: bool = False, preview: int | None = None) -> None:
        """Show the cached results of the current settings, or start a pass.

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
            self._emit("resultsReplaced")
            return
        frames, height, width = self._shape
        self.results = ClipResults(frames, height, width)
        self.cache.put(key, self.results)
        self._request_id += 1
        self._active = RunRequest(self._request_id, key.clip, self.settings.replace(threshold=key.threshold))
        self._model_loaded = False
        self.runner.start(self._active, preview=preview if preview else None)
        self._set_state("running")
        self._emit("resultsReplaced")

    def adopt(self) -> None:
        """The open document already holds the results of the current settings (a project was opened):
        take them as done instead of running a pass (``restart(force=True)`` runs the model again)."""
        self.cancel(quiet=True)
        self.key = self.current_key()
        self.previews.clear()
        self.results = None
        self._set_state("done")
        self._emit("resultsReplaced")

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

    def run_info(self) -> dict[str, Any]:
        """What produces the current pass, for the document's run record."""
        settings, spec = self.settings, self.settings.spec
        model = spec.location() or f"untrained {spec.kind}"
        info = self.model_info
        return {"model": model, "model_kind": spec.kind, "pkr": round(float(settings.pkr), 3), "mode": settings.mode,
                "device": settings.device, "threshold": settings.threshold,
                "source": info.source if info is not None else None}

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

    # -- messages from the runner --------------------------------------------------------------------
    def on_message(self, msg) -> None:
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
            self._emit("frameArrived", msg.frame.index, msg.preview)
        elif isinstance(msg, ModelInfo):
            self.model_info = msg
            self._model_loaded = True
            self.last_good = (self.spec, self.device)
            self._emit("modelReady", msg)
        elif isinstance(msg, PassDone):
            self._active = None
            self.cache.trim()
            self._set_state("done")
        elif isinstance(msg, PassError):
            self._active = None
            self._set_state("error")
            self._emit("failed", msg.message, msg.detail, not self._model_loaded)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._emit("stateChanged", state)
