"""Signal adapter over :class:`core.app.run_control.RunController` (the run state lives in core).

Worker messages arrive on the UI thread (queued) and go to the core controller; what it reports
comes out as Qt signals. Attribute reads (``results``, ``state``, ``pkr`` ...) are the core's.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from core.app.run_control import RunController
from core.app.studio import ResultCache
from core.resources import default_pkr
from vpp_gui.worker import InferenceRunner

_FORWARD = ("clip", "spec", "device", "pkr", "threshold", "results", "previews", "key", "state", "model_info",
            "last_good", "cache", "running", "set_clip", "set_settings", "configure", "current_key", "restart",
            "adopt", "cancel", "want_preview", "run_info", "frame")


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
        self.core = RunController(runner, cache, emit=self._emit, pkr=default_pkr())
        runner.message.connect(self.core.on_message)

    def _emit(self, name: str, *args) -> None:
        getattr(self, name).emit(*args)

    def __getattr__(self, name: str):
        if name in _FORWARD:
            return getattr(self.__dict__["core"] if "core" in self.__dict__ else super().__getattribute__("core"),
                           name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
