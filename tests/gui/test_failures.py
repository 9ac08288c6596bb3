"""Failure paths: each shows a clear message and leaves a working app."""

from __future__ import annotations

import shutil

import torch
from PySide6.QtWidgets import QFileDialog

CLIP = "davis_car_shadow/frames"


def test_bad_folder_shows_a_message_and_the_clip_stays(make_window, shared_data, dialogs, wait_done, tmp_path):
    w = make_window(shared_data / CLIP)
    wait_done(w)
    missing = tmp_path / "no_such_folder"
    assert not w.open_path(missing)
    assert dialogs[-1][0] == "Cannot open clip" and str(missing) in dialogs[-1][1]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not w.open_path(empty)
    assert "no images found" in dialogs[-1][1]
    assert w.timeline.count == 40 and w.controller.results.is_complete  # the open clip is untouched
    w.timeline.set_frame(5)
    assert "kept" in w.status.stats.text()


def test_empty_window_explains_how_to_open(make_window):
    w = make_window()
    assert w.source is None and "Ctrl+O" in w.view.hint.text()
    w.timeline.step(1)  # nothing to do, nothing breaks
    w.export_dialog("ytvis")


def test_open_dialog_and_drop(make_window, shared_data, monkeypatch, qtbot, wait_done):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    w = make_window()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(shared_data / CLIP))
    w.actions_.open.trigger()
    assert w.timeline.count == 40
    wait_done(w)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(shared_data / CLIP))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(w.clipOpened):
        w.dropEvent(event)
    wait_done(w)
    assert w.controller.results.is_complete  # same settings: the cached pass is reused


def test_corrupt_frame_stops_inference_with_a_message(make_window, shared_data, dialogs, wait_done, qtbot, tmp_path):
    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(4):
        shutil.copy(shared_data / CLIP / f"{i:05d}.jpg", clip / f"{i:05d}.jpg")
    (clip / "00002.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    w = make_window(clip)
    wait_done(w)
    assert w.controller.state == "error"
    title, text = dialogs[-1]
    assert title == "Inference failed" and "00002.jpg" in text
    assert w.controller.results.count == 2  # frames before the bad one are kept
    w.timeline.set_frame(2)
    assert w.view.badge.isVisible() and "00002.jpg" in w.view.badge.text()
    w.timeline.set_frame(1)
    assert "kept" in w.status.stats.text()


def test_wrong_checkpoint_and_missing_cuda_fall_back(make_window, shared_data, dialogs, monkeypatch, wait_done,
                                                     qtbot, tmp_path):
    w = make_window(shared_data / CLIP)
    wait_done(w)
    good = w.controller.results
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"definitely not safetensors")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    with qtbot.waitSignal(w.controller.failed, timeout=30_000):
        w.controls.checkpointRequested.emit()
    assert dialogs[-1][0] == "Inference failed" and "broken.safetensors" in dialogs[-1][1]
    assert w.controls.model().kind == "default"  # reverted to the model that worked
    assert w.controller.results is good and w.controller.state == "done"

    if not torch.cuda.is_available():
        item = w.controls.device_combo.model().item(1)
        assert not item.isEnabled() and "CUDA" in w.controls.device_combo.toolTip()
        with qtbot.waitSignal(w.controller.failed, timeout=30_000):
            w.controller.configure(device="cuda")
        assert "CUDA is not available" in dialogs[-1][1]
        assert w.controller.device == "cpu" and w.controller.results is good
