"""Fixtures of the GUI tests: offscreen Qt, settings and HOME in tmp_path, a small fast model.

Every test in this folder is marked ``gui``. The window is built through ``vpp_gui.app.create_window``
(the path ``vpp-gui`` takes) with an injected model factory: an untrained Tiny at 256 px input.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TEST_LONG_SIDE = 256


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gui)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch, qapp):
    """QSettings and HOME live in tmp_path; nothing of the user's is read or written."""
    from PySide6.QtCore import QSettings

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(tmp_path / "qsettings"))
    qapp.setOrganizationName("VPP Studio Tests")
    qapp.setApplicationName("vpp-gui-tests")
    return tmp_path / "settings.ini"


def tiny_factory(spec, device):
    """Untrained Tiny at 256 px for every built-in choice; checkpoint files load for real (errors too)."""
    import torch

    from core.model.vpp.builder import build_vpp
    from core.model.vpp.config import VPPConfig
    from core.resources import LoadedModel, load_model

    if spec.kind == "file":
        return load_model(spec.path, device=device)
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=TEST_LONG_SIDE)
    return LoadedModel(build_vpp(cfg).to(device).eval(), cfg, "test Tiny 256 (untrained)", False)


@pytest.fixture
def make_window(qtbot, isolated_settings):
    """``make_window(path=None)`` -> a shown MainWindow with the test model and isolated settings."""
    from PySide6.QtCore import QSettings

    from vpp_gui.app import create_window
    from vpp_gui.settings import Settings

    windows = []

    def make(path=None, **kwargs):
        settings = Settings(QSettings(str(isolated_settings), QSettings.Format.IniFormat))
        kwargs.setdefault("recover", False)
        kwargs.setdefault("data_dir", isolated_settings.parent / "appdata")
        window = create_window(path, model_factory=tiny_factory, settings=settings, demo=False, **kwargs)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for w in windows:  # stop the worker before the next test (closeEvent does it; close twice is harmless)
        if w.bridge.doc is not None:
            w.bridge.doc.mark_clean()  # no "unsaved changes" prompt at teardown
        w.close()


@pytest.fixture(autouse=True)
def dialogs(monkeypatch):
    """Record QMessageBox.warning / about calls instead of showing modal dialogs (autouse: no test can
    hang on a modal box)."""
    from PySide6.QtWidgets import QMessageBox

    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a, **k: shown.append((title, text)))
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, text, *a, **k: (
        shown.append((title, text)), QMessageBox.StandardButton.Cancel)[1])
    monkeypatch.setattr(QMessageBox, "about", lambda parent, title, text: shown.append((title, text)))
    return shown


@pytest.fixture
def wait_done(qtbot):
    """``wait_done(window)``: wait on the controller's signal until the current pass has ended."""

    def wait(window, timeout=120_000):
        c = window.controller
        if c.state != "running":
            return
        with qtbot.waitSignal(c.stateChanged, timeout=timeout, check_params_cb=lambda s: s != "running"):
            pass

    return wait
