"""The window's remembered state: theme, run choices, layers, layout (QSettings), and the run settings
between the controls and the document."""

from __future__ import annotations

from core.app.settings import RunSettings, default_pkr

#: The dock layout's version: raised when the default layout changes, so that a layout saved before (e.g.
#: the Tracks dock too narrow for its columns, issue 24) is not restored over the new defaults.
LAYOUT_VERSION = 1


def restore(window) -> None:
    """Theme, run choices, layers and the window layout from the settings."""
    self = window
    s = self.settings
    self.set_theme(s.value("theme", "dark", str))
    self.controls.set_pkr(s.value("run/pkr", default_pkr(), float))
    self.controls.set_device(s.value("run/device", "cpu", str))
    t = s.value("run/threshold", 0.0, float)
    self.controls.set_threshold(t if t > 0 else None)
    for name, act in self.actions_.layers.items():
        act.setChecked(s.value(f"layers/{name}", True, bool))
        opacity = s.value(f"layers/{name}_opacity", self.view.layer_opacity(name), float)
        self.controls.set_opacity(name, opacity)
        self.view.set_layer_opacity(name, opacity)
    geometry, state = s.window_layout()
    if geometry is not None:
        self.restoreGeometry(geometry)
    if state is not None:
        self.restoreState(state, LAYOUT_VERSION)  # a layout saved by an older version is refused: defaults


def save(window) -> None:
    """The window layout, run choices and layers into the settings."""
    self = window
    s = self.settings
    s.set_window_layout(self.saveGeometry(), self.saveState(LAYOUT_VERSION))
    s.set_value("run/pkr", self.controls.pkr())
    s.set_value("run/device", self.controls.device())
    s.set_value("run/threshold", self.controls.threshold() or 0.0)
    for name, act in self.actions_.layers.items():
        s.set_value(f"layers/{name}", act.isChecked())
        s.set_value(f"layers/{name}_opacity", self.view.layer_opacity(name))
    s.sync()


def run_settings(window) -> RunSettings:
    """The run settings the controls show now (over the run control's: the mode, which no control shows)."""
    c = window.controls
    return window.controller.settings.replace(spec=c.model(), device=c.device(), pkr=float(c.pkr()),
                                              threshold=c.threshold())


def apply_run_settings(window, rs: RunSettings) -> None:
    """Show a document's run settings in the controls and the controller (nothing starts)."""
    self = window
    spec = rs.spec
    self.controls.set_model(spec)
    self.controls.set_device(rs.device)
    self.controls.set_pkr(rs.pkr)
    self.controls.set_threshold(rs.threshold)
    self.controller.set_settings(rs)
    self._set_untrained_note(spec.known_untrained(), spec.location())  # the model's path, until it loads
