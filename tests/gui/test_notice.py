"""The app says once, in a dismissible bar, that the default synthetic model is not meant for real clips."""

from __future__ import annotations

from core.app.studio import SYNTHETIC_MODEL_NOTICE, synthetic_model_notice
from core.resources import DEFAULT_MODEL, DEMO_CLIP


def test_notice_rule():
    assert synthetic_model_notice(str(DEFAULT_MODEL), "/data/dojo.mp4") == SYNTHETIC_MODEL_NOTICE
    assert synthetic_model_notice(str(DEFAULT_MODEL), DEMO_CLIP) is None  # the project's own shapes
    assert synthetic_model_notice("/models/ytvis_tiny.safetensors", "/data/dojo.mp4") is None
    assert synthetic_model_notice(None, "/data/dojo.mp4") is None


def test_bar_shows_once_and_dismisses(qtbot, isolated_settings, shared_data, wait_done, monkeypatch):
    from PySide6.QtCore import QSettings

    from tests.gui.conftest import tiny_factory
    from vpp_gui.app import create_window
    from vpp_gui.settings import Settings

    def as_default(spec, device):  # a small fast model that reports itself as the shipped default
        loaded = tiny_factory(spec, device)
        loaded.source = str(DEFAULT_MODEL)
        return loaded

    settings = Settings(QSettings(str(isolated_settings), QSettings.Format.IniFormat))
    w = create_window(shared_data / "davis_car_shadow/frames", model_factory=as_default, settings=settings,
                      demo=False, recover=False, data_dir=isolated_settings.parent / "appdata")
    qtbot.addWidget(w)
    w.show()
    wait_done(w)
    assert w.notice.isVisible() and "synthetic shapes" in w.notice.label.text()
    qtbot.mouseClick(w.notice.close_button, __import__("PySide6.QtCore", fromlist=["Qt"]).Qt.MouseButton.LeftButton)
    assert not w.notice.isVisible()
    with qtbot.waitSignal(w.controller.stateChanged, timeout=5000, check_params_cb=lambda s: s == "running"):
        w.controls.pkr_slider.setValue(0.8)
    wait_done(w)
    assert not w.notice.isVisible()  # once per session
    w.bridge.doc.mark_clean()
    w.close()


def test_downloaded_released_models_are_in_the_model_list(make_window, monkeypatch, tmp_path):
    from core import released_models  # what core.app.models lists the imported released models from

    fake = tmp_path / "tiny-pkr40.9.safetensors"
    fake.write_bytes(b"")
    monkeypatch.setattr(released_models, "imported_models", lambda folder=None: [("tiny-pkr40.9", fake)])
    w = make_window()
    labels = [w.controls.model_combo.itemText(i) for i in range(w.controls.model_combo.count())]
    assert "tiny-pkr40.9.safetensors" in labels
