"""The run control with Qt signals: :class:`core.app.run_control.RunController` (the run state, in core) whose
reports come out as signals.

Worker messages arrive on the UI thread (queued) and go to :meth:`RunController.on_message`; what the run
control reports through ``emit(name, *args)`` is emitted as the signal of that name. Everything else
(``results``, ``state``, ``settings``, ``configure`` ...) is the run control's own.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from core.app.run_control import RunController
from core.app.settings import default_pkr
from core.app.studio import ResultCache
from vpp_gui.worker import InferenceRunner


class InferenceController(RunController, QObject):
    resultsReplaced = Signal()  # a new current ClipResults (new pass, or a cache hit)
    frameArrived = Signal(int, bool)  # frame index, is_preview
    stateChanged = Signal(str)  # "idle", "running", "done", "cancelled", "error"
    modelReady = Signal(object)  # ModelInfo
    failed = Signal(str, str, bool)  # message, detail, model_failed (the model never loaded)

    def __init__(self, runner: InferenceRunner, cache: ResultCache | None = None,
                 parent: QObject | None = None) -> None:
        QObject.__init__(self, parent)
        RunController.__init__(self, runner, cache, emit=self._emit, pkr=default_pkr())
        self.runner: InferenceRunner = runner
        runner.message.connect(self.on_message)

    def _emit(self, name: str, *args) -> None:
        getattr(self, name).emit(*args)
