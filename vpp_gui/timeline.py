"""Timeline: play/pause, a frame scrubber with a strip showing which frames have results, frame counter.

The slider's value is the app's current frame: everything that seeks sets it, and ``frameChanged``
tells the window which frame to show. Playback advances it with a timer at the clip's fps.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QToolButton, QVBoxLayout, QWidget


class ComputedStrip(QWidget):
    """A thin bar under the slider: frames ``[0, done)`` have results of the current pass."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedHeight(4)
        self._done = 0
        self._total = 0
        self._color = QColor("#3d7bd9")

    def set_progress(self, done: int, total: int) -> None:
        if (done, total) != (self._done, self._total):
            self._done, self._total = done, total
            self.update()

    def set_color(self, color: str) -> None:
        self._color = QColor(color)
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(128, 128, 128, 60))
        if self._total > 0 and self._done > 0:
            p.fillRect(QRectF(0, 0, self.width() * self._done / self._total, self.height()), self._color)
        p.end()


class Timeline(QWidget):
    frameChanged = Signal(int)
    playingChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.play_button = QToolButton(self)
        self.play_button.setText("▶")
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.setCheckable(True)
        self.play_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.play_button.toggled.connect(self._on_play_toggled)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # arrow keys are the window's shortcuts
        self.slider.setToolTip("Frame (←/→ or D/F step, Home/End)")
        self.slider.valueChanged.connect(self._on_value)
        self.strip = ComputedStrip(self)
        self.counter = QLabel("– / –", self)
        self.counter.setMinimumWidth(110)
        self.counter.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        track = QVBoxLayout()
        track.setSpacing(2)
        track.addWidget(self.slider)
        track.addWidget(self.strip)
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 2, 6, 2)
        row.addWidget(self.play_button)
        row.addLayout(track, 1)
        row.addWidget(self.counter)

        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._fps = 25.0
        self._names: tuple[str, ...] = ()
        self.set_clip(0, 25.0)

    # -- clip ---------------------------------------------------------------------------------------
    def set_clip(self, count: int, fps: float, names: tuple[str, ...] = ()) -> None:
        self.pause()
        self._fps = fps if fps > 0 else 25.0
        self._names = tuple(names)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, count - 1))
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.setEnabled(count > 0)
        self.strip.set_progress(0, count)
        self._update_counter()

    @property
    def count(self) -> int:
        return self.slider.maximum() + 1 if self.isEnabled() else 0

    @property
    def frame(self) -> int:
        return self.slider.value()

    def set_frame(self, index: int) -> None:
        self.slider.setValue(max(0, min(index, self.slider.maximum())))

    def step(self, delta: int) -> None:
        self.set_frame(self.frame + delta)

    def set_progress(self, done: int) -> None:
        self.strip.set_progress(done, self.count)

    # -- playback -------------------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    def toggle_play(self) -> None:
        self.play_button.setChecked(not self.play_button.isChecked())

    def pause(self) -> None:
        self.play_button.setChecked(False)

    def _on_play_toggled(self, on: bool) -> None:
        if on and self.count > 1:
            if self.frame >= self.slider.maximum():
                self.set_frame(0)
            self._timer.start(max(1, round(1000 / self._fps)))
            self.play_button.setText("⏸")
        else:
            self._timer.stop()
            self.play_button.setText("▶")
            if on:
                self.play_button.setChecked(False)
                return
        self.playingChanged.emit(self.playing)

    def _tick(self) -> None:
        if self.frame >= self.slider.maximum():
            self.pause()
        else:
            self.step(1)

    # -- internals ------------------------------------------------------------------------------------
    def _on_value(self, value: int) -> None:
        self._update_counter()
        self.frameChanged.emit(value)

    def _update_counter(self) -> None:
        n = self.count
        if n == 0:
            self.counter.setText("– / –")
            return
        i = self.frame
        name = self._names[i] if i < len(self._names) else ""
        self.counter.setText(f"{i + 1} / {n}" + (f"  {name}" if name else ""))
        self.counter.setToolTip(name)
