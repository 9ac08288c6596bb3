"""Issue 24, section 4: "Get the authors' models…" in the Model list, against loopback HTTP servers.

The dialog runs the CLI's code (core.released_models.get_model: core.model_zoo.download, then
``vpp import-checkpoint``) on a worker thread. The importer itself is tested in tests/test_release_import.py;
here it is replaced by one that writes a stand-in file.
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from core import model_zoo, release_import
from core.app.studio import ModelSpec
from tests.test_model_zoo import PAYLOAD, server  # noqa: F401 - the loopback server fixture
from vpp_gui.controls import ZOO_ITEM

NAME = "tiny-test"


def _entry(url: str) -> model_zoo.ZooEntry:
    return model_zoo.ZooEntry(name=NAME, variant="tiny", kind="vpp", pkr=0.5, url=url, sha256=None, size=None,
                              config=None, notes="a test entry")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return model_zoo.cache_dir()


@pytest.fixture
def imports(monkeypatch):
    calls = []

    def fake_import(src, out, *, variant):
        calls.append((src, out, variant))
        Path(out).write_bytes(b"model")
        return Path(out)

    monkeypatch.setattr(release_import, "import_release_checkpoint", fake_import)
    return calls


def _open_from_the_model_list(w):
    combo = w.controls.model_combo
    index = combo.findText(ZOO_ITEM)
    assert index >= 0
    combo.setCurrentIndex(index)
    combo.activated.emit(index)  # what choosing the entry does
    dialog = w.models_dialog
    assert dialog is not None and dialog.isVisible()
    assert w.controls.model() == w.controller.spec  # the list shows the model in use, not the entry
    return dialog


def _wait_idle(qtbot, dialog, timeout=30000):
    qtbot.waitUntil(lambda: not dialog.busy, timeout=timeout)


def test_get_downloads_imports_and_selects(make_window, server, folder, imports, monkeypatch, qtbot):  # noqa: F811
    monkeypatch.setattr(model_zoo, "ZOO", (*model_zoo.ZOO, _entry(f"{server.base}/files/model.pth")))
    w = make_window()
    dialog = _open_from_the_model_list(w)
    assert dialog.table.rowCount() == len(model_zoo.ZOO)
    assert dialog.state_of(NAME) == "not present" and dialog.state_of("tiny-pkr40.9") == "not present"
    dialog.select(NAME)
    with qtbot.waitSignal(dialog.modelReady, timeout=30000) as ready:
        qtbot.mouseClick(dialog.get_button, Qt.MouseButton.LeftButton)
    model = folder / f"{NAME}.safetensors"
    assert ready.args == [str(model)]
    assert imports == [(str(folder / f"{NAME}.pth"), str(model), "tiny")]
    assert (folder / f"{NAME}.pth").read_bytes() == PAYLOAD
    assert dialog.state_of(NAME) == "imported"
    assert w.controls.model() == ModelSpec("file", str(model)) == w.controller.spec  # selected and in use
    assert dialog.runner.thread_ids and threading.get_ident() not in dialog.runner.thread_ids  # not the UI thread
    assert dialog.get_button.text() == "Select"


class _Trickle(http.server.BaseHTTPRequestHandler):
    """1 MiB in 4 KiB pieces, 10 ms apart (resumable): slow enough to cancel half-way."""

    protocol_version = "HTTP/1.1"
    SIZE = 1 << 20

    def log_message(self, *args):
        pass

    def do_GET(self):
        start = int(self.headers.get("Range", "bytes=0-")[6:-1] or 0)
        self.server.ranges.append(self.headers.get("Range"))
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{self.SIZE - 1}/{self.SIZE}")
        self.send_header("Content-Length", str(self.SIZE - start))
        self.end_headers()
        try:
            for pos in range(start, self.SIZE, 4096):
                self.wfile.write(b"x" * min(4096, self.SIZE - pos))
                self.wfile.flush()
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def trickle(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    srv.daemon_threads = True
    srv.ranges = []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_cancel_keeps_the_partial_file_and_get_resumes(make_window, trickle, folder, imports, monkeypatch, qtbot):
    monkeypatch.setattr(model_zoo, "ZOO", (_entry(f"http://127.0.0.1:{trickle.server_address[1]}/m.pth"),))
    w = make_window()
    before = w.controller.spec
    dialog = _open_from_the_model_list(w)
    dialog.get(NAME)
    assert dialog.busy and dialog.cancel_button.isEnabled() and not dialog.get_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.progress.maximum() == 1000 and dialog.progress.value() > 0, timeout=20000)
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    _wait_idle(qtbot, dialog)
    part = folder / f"{NAME}.pth.part"
    assert dialog.message.text().startswith("Cancelled") and "kept" in dialog.message.text()
    assert 0 < part.stat().st_size < _Trickle.SIZE and not (folder / f"{NAME}.pth").exists()
    assert dialog.state_of(NAME) == "not present" and not imports
    assert w.controls.model() == before == w.controller.spec and dialog.get_button.isEnabled()
    kept = part.stat().st_size
    with qtbot.waitSignal(dialog.modelReady, timeout=60000):
        dialog.get(NAME)  # resumes where it stopped
    assert trickle.ranges == [None, f"bytes={kept}-"]
    assert (folder / f"{NAME}.pth").stat().st_size == _Trickle.SIZE and len(imports) == 1


def test_without_internet_one_clear_message(make_window, folder, imports, monkeypatch, qtbot, dialogs, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with socket.socket() as s:  # a port nobody listens on: what an offline machine gets
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(model_zoo, "ZOO", (_entry(f"http://127.0.0.1:{port}/m.pth"),))
    w = make_window()
    before = w.controller.spec
    dialog = _open_from_the_model_list(w)
    dialog.get(NAME)
    _wait_idle(qtbot, dialog)
    text = dialog.message.text()
    assert text.startswith(f"Could not download {NAME}: downloading needs internet access")
    assert f"vpp import-checkpoint FILE.pth --out {folder / (NAME + '.safetensors')} --variant tiny" in text
    assert str(folder / f"{NAME}.pth") in text  # or copy the file there and Get again
    assert not dialogs  # no popup (one per retry or otherwise)
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]
    assert not imports and w.controls.model() == before and dialog.state_of(NAME) == "not present"


def test_a_file_copied_in_by_hand_is_imported_without_network(make_window, folder, imports, monkeypatch, qtbot):
    monkeypatch.setattr(model_zoo, "ZOO", (_entry("http://127.0.0.1:9/never-asked.pth"),))
    folder.mkdir(parents=True)
    (folder / f"{NAME}.pth").write_bytes(PAYLOAD)
    w = make_window()
    dialog = _open_from_the_model_list(w)
    dialog.select(NAME)
    assert dialog.state_of(NAME) == "downloaded" and dialog.get_button.text() == "Import"
    assert dialog.table.item(0, 4).text() == "75.0 KiB"  # the size of the file that is here
    with qtbot.waitSignal(dialog.modelReady, timeout=30000):
        dialog.get()
    assert len(imports) == 1 and w.controls.model() == ModelSpec("file", str(folder / f"{NAME}.safetensors"))
