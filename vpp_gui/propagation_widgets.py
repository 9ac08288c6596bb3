"""Small widgets of propagation: the "Propagate to" choice above the Tracks panel and the status-bar progress.

:class:`PropagationOptions` is one compact row: "Propagate to [next keyframe | N frames | clip end]
[N] [snap]". The choice, N and the snap box are remembered in the settings (``propagation/*``), so
an annotator sets them once. Snap is enabled only while a model pass has results to snap onto.
Neither widget takes the keyboard focus from a letter (T, Shift+T, Ctrl+T are the window's keys);
the N box takes it on a click and gives it back when its editing is done, and while it has it, it takes
only digits: letters stay the window's keys (:func:`vpp_gui.number_keys.keep_window_keys`).

:class:`PropagationProgress` looks like the inference progress (a bar and *Cancel*, Esc) but is its
own widget: a propagation may run while an inference pass runs, and each shows its own progress.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox, QWidget

from core.app.document.keyframes import PROPAGATE_TO, PropagateTo
from vpp_gui.number_keys import keep_window_keys
from vpp_gui.settings import Settings

TARGET_TEXT = {"keyframe": "next keyframe", "frames": "N frames", "end": "clip end"}
DEFAULT_TARGET: PropagateTo = "keyframe"
DEFAULT_FRAMES = 10
MAX_FRAMES = 100_000
KEY_TARGET, KEY_FRAMES, KEY_SNAP = "propagation/to", "propagation/frames", "propagation/snap"
SNAP_TIP = "Swap each propagated mask for the model instance overlapping it best (mask IoU ≥ 0.5)"


class PropagationOptions(QWidget):
    """Where T / Shift+T propagate to, and whether to snap onto the model's instances (remembered)."""

    changed = Signal()

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self.combo = QComboBox(self)
        self.combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for key in PROPAGATE_TO:
            self.combo.addItem(TARGET_TEXT[key], key)
        self.combo.setToolTip("Propagate forward (T) / backward (Shift+T) to the next keyframe in that direction "
                              "(or the clip's end when there is none), N frames, or the clip's end")
        self.frames = QSpinBox(self)
        self.frames.setRange(1, MAX_FRAMES)
        self.frames.setSuffix(" fr")
        self.frames.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        keep_window_keys(self.frames)  # T / Shift+T propagate while the box has the focus; digits go in
        self.frames.setToolTip("N: how many frames T / Shift+T propagate with “N frames”")
        self.snap_box = QCheckBox("snap", self)
        self.snap_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._snap_wanted = False
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Propagate to:", self))
        row.addWidget(self.combo, 1)
        row.addWidget(self.frames)
        row.addWidget(self.snap_box)

        target = str(settings.value(KEY_TARGET, DEFAULT_TARGET, str))
        self.combo.setCurrentIndex(PROPAGATE_TO.index(target) if target in PROPAGATE_TO else 0)
        self.frames.setValue(max(1, min(MAX_FRAMES, settings.value(KEY_FRAMES, DEFAULT_FRAMES, int))))
        self._snap_wanted = bool(settings.value(KEY_SNAP, False, bool))
        self.set_snap_available(False)
        self.combo.currentIndexChanged.connect(self._on_target)
        self.frames.valueChanged.connect(lambda v: self._save(KEY_FRAMES, int(v)))
        self.frames.editingFinished.connect(self.frames.clearFocus)  # letters are the window's keys again
        self.snap_box.toggled.connect(self._on_snap)
        self._on_target()

    # -- the choice ----------------------------------------------------------------------------------
    def target(self) -> PropagateTo:
        return self.combo.currentData()

    def set_target(self, target: PropagateTo) -> None:
        self.combo.setCurrentIndex(PROPAGATE_TO.index(target))

    def count(self) -> int:
        return int(self.frames.value())

    def snap(self) -> bool:
        """Snap is wanted and possible (a model pass has results)."""
        return self.snap_box.isEnabled() and self.snap_box.isChecked()

    def set_snap_available(self, available: bool) -> None:
        """Enable the snap box while a model pass has results; the person's choice is kept meanwhile."""
        self.snap_box.blockSignals(True)
        self.snap_box.setEnabled(available)
        self.snap_box.setChecked(available and self._snap_wanted)
        self.snap_box.blockSignals(False)
        self.snap_box.setToolTip(SNAP_TIP if available else SNAP_TIP + " — needs a model pass with results")

    # -- internals -----------------------------------------------------------------------------------
    def _on_target(self, *_args) -> None:
        self.frames.setEnabled(self.target() == "frames")
        self._save(KEY_TARGET, self.target())

    def _on_snap(self, on: bool) -> None:
        self._snap_wanted = bool(on)
        self._save(KEY_SNAP, bool(on))

    def _save(self, key: str, value) -> None:
        self._settings.set_value(key, value)
        self.changed.emit()


class PropagationProgress(QWidget):
    """"propagate #7: 12 / 30 [Cancel]" in the status bar while a propagation runs."""

    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 4, 0)
        self.bar = QProgressBar(self)
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(True)
        self.cancel = QPushButton("Cancel", self)
        self.cancel.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.cancel.setToolTip("Stop the propagation; the frames it finished are kept (Esc)")
        self.cancel.clicked.connect(self.cancelRequested)
        row.addWidget(self.bar)
        row.addWidget(self.cancel)
        self.hide()

    def start(self, track_id: int, planned: int) -> None:
        self.bar.setFormat(f"propagate #{track_id}: %v / %m")
        self.bar.setMaximum(max(1, planned))
        self.bar.setValue(0)
        self.show()

    def set_progress(self, done: int, planned: int) -> None:
        self.bar.setMaximum(max(1, planned))
        self.bar.setValue(done)
