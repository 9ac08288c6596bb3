"""The controls dock: model, device, PKR, min score, and the overlay layers with their opacities."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QLabel,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from core.app.settings import ModelSpec, default_pkr
from vpp_gui.number_keys import keep_window_keys
from vpp_gui.overlay import DEPTH_STAGE, heat_legend

PKR_MIN, PKR_MAX, PKR_STEP = 0.2, 1.0, 0.05
PKR_DEBOUNCE_MS = 250
DEFAULT_STAGES = ("Map-SM", "block 3", "block 6", "block 9")
LAYER_TITLES = {"masks": "Masks", "contours": "Contours", "labels": "Labels", "heatmap": "Kept/pruned heatmap"}
CHECKPOINT_ITEM = "Checkpoint file…"
ZOO_ITEM = "Get the authors' models…"


def snap_pkr(value: float) -> float:
    return round(min(PKR_MAX, max(PKR_MIN, round(value / PKR_STEP) * PKR_STEP)), 2)


class ControlsPanel(QWidget):
    modelChosen = Signal(object)  # ModelSpec
    checkpointRequested = Signal()
    zooRequested = Signal()  # "Get the authors' models…" (the window opens vpp_gui.models_dialog)
    deviceChosen = Signal(str)
    pkrChanged = Signal(float)  # debounced, snapped to PKR_STEP
    thresholdChanged = Signal(object)  # float, or None for auto
    stageChanged = Signal(object)  # stage index, or DEPTH_STAGE
    opacityChanged = Signal(str, float)

    def __init__(self, cuda_available: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea(self)  # the dock may be shorter than the controls (the legend is last)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer.addWidget(self.scroll)
        inner = QWidget(self.scroll)
        self.scroll.setWidget(inner)
        layout = QVBoxLayout(inner)
        layout.setContentsMargins(8, 8, 8, 8)

        # -- model ------------------------------------------------------------------------------------
        model_box = QGroupBox("Model", self)
        form = QFormLayout(model_box)
        self.model_combo = QComboBox(model_box)
        self._specs: list[ModelSpec | str] = []  # a model, or the text of an item that opens a dialog
        for spec in (ModelSpec("default"), ModelSpec("tiny"), ModelSpec("small")):
            self._add_spec(spec)
        for item in (CHECKPOINT_ITEM, ZOO_ITEM):
            self.model_combo.addItem(item)
            self._specs.append(item)
        self.model_combo.setItemData(len(self._specs) - 1, "The authors' YouTube-VIS models: download (needs internet) "
                                     "or import one", Qt.ItemDataRole.ToolTipRole)
        self.model_combo.setToolTip("The model to run. Changing it restarts inference.")
        self.model_combo.activated.connect(self._on_model_activated)
        form.addRow("Model", self.model_combo)
        self.device_combo = QComboBox(model_box)
        self.device_combo.addItem("CPU", "cpu")
        self.device_combo.addItem("CUDA", "cuda")
        if not cuda_available:
            item = self.device_combo.model().item(1)
            item.setEnabled(False)
            item.setToolTip("CUDA is not available: no NVIDIA GPU or a CPU-only PyTorch build")
            self.device_combo.setToolTip("CUDA is not available on this machine (torch.cuda.is_available() is False)")
        self.device_combo.activated.connect(lambda _i: self.deviceChosen.emit(self.device()))
        form.addRow("Device", self.device_combo)
        self.model_note = QLabel("", model_box)
        self.model_note.setWordWrap(True)
        self.model_note.setObjectName("modelNote")
        form.addRow(self.model_note)
        layout.addWidget(model_box)

        # -- pruning -----------------------------------------------------------------------------------
        prune_box = QGroupBox("Pruning", self)
        form = QFormLayout(prune_box)
        self.pkr_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal, prune_box)
        self.pkr_slider.setRange(PKR_MIN, PKR_MAX)
        self.pkr_slider.setSingleStep(PKR_STEP)
        self.pkr_slider.setDecimals(2)
        self.pkr_slider.setValue(snap_pkr(default_pkr()))
        self.pkr_slider.setToolTip("Patch keep ratio: the share of tokens the backbone keeps (1.0 = dense).\n"
                                   "Changing it restarts inference; results per PKR are cached.")
        self.pkr_slider.valueChanged.connect(self._on_pkr_moved)
        self.pkr_slider.sliderReleased.connect(self._emit_pkr)
        keep_window_keys(self.pkr_slider)  # its value box: letters stay the window's shortcuts
        form.addRow("PKR", self.pkr_slider)
        self._pkr_timer = QTimer(self)
        self._pkr_timer.setSingleShot(True)
        self._pkr_timer.setInterval(PKR_DEBOUNCE_MS)
        self._pkr_timer.timeout.connect(self._emit_pkr)
        self._pkr = snap_pkr(default_pkr())
        self.threshold_spin = QDoubleSpinBox(prune_box)
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setSingleStep(0.01)
        self.threshold_spin.setDecimals(2)
        self.threshold_spin.setSpecialValueText("auto")
        self.threshold_spin.setToolTip("Minimum instance score. 'auto': 0.25 for trained models, 0.03 for\n"
                                       "untrained ones (their scores are all near 1/num_classes).")
        self.threshold_spin.setKeyboardTracking(False)
        keep_window_keys(self.threshold_spin)
        self.threshold_spin.valueChanged.connect(lambda v: self.thresholdChanged.emit(self.threshold()))
        form.addRow("Min score", self.threshold_spin)
        layout.addWidget(prune_box)

        # -- overlays ----------------------------------------------------------------------------------
        overlay_box = QGroupBox("Overlays", self)
        grid = QFormLayout(overlay_box)
        self.checks: dict[str, QCheckBox] = {}
        self.opacity: dict[str, QSlider] = {}
        for name in ("masks", "contours", "labels", "heatmap"):
            check = QCheckBox(LAYER_TITLES[name], overlay_box)
            check.setChecked(True)
            slider = QSlider(Qt.Orientation.Horizontal, overlay_box)
            slider.setRange(0, 100)
            slider.setToolTip(f"{LAYER_TITLES[name]} opacity")
            slider.valueChanged.connect(lambda v, n=name: self.opacityChanged.emit(n, v / 100.0))
            grid.addRow(check, slider)
            self.checks[name] = check
            self.opacity[name] = slider
        self.stage_combo = QComboBox(overlay_box)
        self.stage_combo.setToolTip("Which prune point the heatmap shows; 'survival depth' colours each token\n"
                                    "by how many prune points it survived (dark = pruned first).")
        self.legend = QLabel("", overlay_box)
        self.legend.setObjectName("heatmapLegend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self._stage_names: tuple[str, ...] = ()
        self.set_stages(DEFAULT_STAGES)
        self.stage_combo.currentIndexChanged.connect(self._on_stage_changed)
        grid.addRow("Heatmap stage", self.stage_combo)
        grid.addRow(self.legend)
        layout.addWidget(overlay_box)
        layout.addStretch(1)
        self._show_legend = False
        self._legend_timer = QTimer(self, singleShot=True, interval=500)
        self._legend_timer.timeout.connect(lambda: setattr(self, "_show_legend", False))
        self.scroll.verticalScrollBar().rangeChanged.connect(self._scroll_to_legend)

    def showEvent(self, event) -> None:
        """As wide as the controls need (fonts and notes are known now): the area only scrolls vertically."""
        super().showEvent(event)
        bar_width = self.scroll.verticalScrollBar().sizeHint().width()
        self.scroll.setMinimumWidth(self.scroll.widget().minimumSizeHint().width() + bar_width)

    # -- model --------------------------------------------------------------------------------------
    def _add_spec(self, spec: ModelSpec) -> int:
        index = len([s for s in self._specs if isinstance(s, ModelSpec)])
        self.model_combo.insertItem(index, spec.label, None)
        if spec.kind == "file":
            self.model_combo.setItemData(index, spec.path, Qt.ItemDataRole.ToolTipRole)
        self._specs.insert(index, spec)
        return index

    def add_model(self, spec: ModelSpec) -> None:
        """Offer ``spec`` in the Model list (e.g. a released model downloaded with ``vpp models download``)."""
        if spec not in self._specs:
            self._add_spec(spec)

    def set_model(self, spec: ModelSpec) -> None:
        if spec not in self._specs:
            self._add_spec(spec)
        self.model_combo.setCurrentIndex(self._specs.index(spec))

    def choose_model(self, spec: ModelSpec) -> None:
        """Select ``spec`` as a person choosing it would (the window runs it)."""
        self.set_model(spec)
        self.modelChosen.emit(spec)

    def model(self) -> ModelSpec:
        spec = self._specs[self.model_combo.currentIndex()]
        return spec if isinstance(spec, ModelSpec) else ModelSpec("default")

    def _on_model_activated(self, index: int) -> None:
        spec = self._specs[index]
        if spec == CHECKPOINT_ITEM:
            self.checkpointRequested.emit()
        elif spec == ZOO_ITEM:
            self.zooRequested.emit()
        else:
            self.modelChosen.emit(spec)

    def set_model_note(self, text: str, *, warn: bool = False, color: str = "#f0b429") -> None:
        self.model_note.setText(text)
        self.model_note.setStyleSheet(f"QLabel#modelNote {{ color: {color}; font-weight: bold; }}" if warn else "")

    # -- device --------------------------------------------------------------------------------------
    def device(self) -> str:
        return str(self.device_combo.currentData())

    def set_device(self, device: str) -> None:
        i = self.device_combo.findData(device)
        if i >= 0 and self.device_combo.model().item(i).isEnabled():
            self.device_combo.setCurrentIndex(i)
        else:
            self.device_combo.setCurrentIndex(0)

    # -- PKR / threshold -------------------------------------------------------------------------------
    def pkr(self) -> float:
        return self._pkr

    def set_pkr(self, value: float) -> None:
        """Set without emitting (restoring settings)."""
        self._pkr = snap_pkr(value)
        self.pkr_slider.blockSignals(True)
        self.pkr_slider.setValue(self._pkr)
        self.pkr_slider.blockSignals(False)

    def _on_pkr_moved(self, _value: float) -> None:
        self._pkr_timer.start()

    def _emit_pkr(self) -> None:
        self._pkr_timer.stop()
        value = snap_pkr(self.pkr_slider.value())
        if abs(value - self.pkr_slider.value()) > 1e-9:
            self.pkr_slider.blockSignals(True)
            self.pkr_slider.setValue(value)
            self.pkr_slider.blockSignals(False)
        if value != self._pkr:
            self._pkr = value
            self.pkrChanged.emit(value)

    def threshold(self) -> float | None:
        v = self.threshold_spin.value()
        return None if v <= 0.0 else float(v)

    def set_threshold(self, value: float | None) -> None:
        self.threshold_spin.blockSignals(True)
        self.threshold_spin.setValue(0.0 if value is None else value)
        self.threshold_spin.blockSignals(False)

    # -- overlays -------------------------------------------------------------------------------------
    def bind_layer_action(self, name: str, action: QAction) -> None:
        """Keep the checkbox and the View-menu action of a layer in step."""
        check = self.checks[name]
        check.setChecked(action.isChecked())
        check.setText(f"{LAYER_TITLES[name]} ({action.shortcut().toString()})")
        check.toggled.connect(action.setChecked)
        action.toggled.connect(check.setChecked)

    def set_opacity(self, name: str, value: float) -> None:
        self.opacity[name].setValue(round(value * 100))

    def set_stages(self, names: tuple[str, ...]) -> None:
        """The model's prune points (the heatmap's choices, plus survival depth)."""
        names = tuple(names)
        if names == self._stage_names:
            return
        self._stage_names = names
        current = self.stage_combo.currentText()
        self.stage_combo.blockSignals(True)
        self.stage_combo.clear()
        self.stage_combo.addItems([*names, DEPTH_STAGE])
        i = self.stage_combo.findText(current)
        self.stage_combo.setCurrentIndex(i if i >= 0 else 0)
        self.stage_combo.blockSignals(False)
        self._update_legend()

    def stage_names(self) -> tuple[str, ...]:
        return self._stage_names

    def _on_stage_changed(self, _index: int) -> None:
        self._update_legend()
        if self.stage() == DEPTH_STAGE:  # the legend is the last thing in the dock: bring it into view
            self._show_legend = True  # until the legend is laid out (a few layout passes)
            self._scroll_to_legend()
            self._legend_timer.start()
        self.stageChanged.emit(self.stage())

    def _scroll_to_legend(self, *_range) -> None:
        """Scroll to the bottom once the new legend is laid out (the range grows when it is)."""
        if self._show_legend:
            bar = self.scroll.verticalScrollBar()
            bar.setValue(bar.maximum())

    def _update_legend(self) -> None:
        """Swatches of the chosen heatmap: pruned / kept, or how many prune points a token survived.

        Lines are broken here (no word wrap: a wrapping label in a scroll area is cut off)."""
        stage = self.stage()
        levels = heat_legend(self._stage_names, stage)
        cells = "".join(f'<td bgcolor="#{r:02x}{g:02x}{b:02x}" align="center">&nbsp;{level}&nbsp;</td>'
                        for level, (r, g, b), _ in levels)
        if stage == DEPTH_STAGE:
            title = "Survival depth (prune points survived):"
            short = [f"{level} {text if i in (0, len(levels) - 1) else text.replace('pruned ', '')}"
                     for i, (level, _, text) in enumerate(levels)]
        else:
            title = "Heatmap: dark = pruned, clear = kept"
            short = [text for _, _, text in levels]
        lines = "<br>".join(" · ".join(short[i:i + 2]) for i in range(0, len(short), 2))
        self.legend.setText(f"{title}<table cellspacing='1' style='color:white'><tr>{cells}</tr></table>{lines}")
        self.legend.setToolTip("\n".join(f"{level}: {text}" for level, _, text in levels))

    def stage(self) -> int | str:
        i = self.stage_combo.currentIndex()
        return DEPTH_STAGE if self.stage_combo.currentText() == DEPTH_STAGE else max(0, i)
