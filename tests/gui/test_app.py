"""End to end: open a real clip, run inference, scrub, change PKR, cancel, export, screenshot."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from core.resources import default_pkr
from vpp_gui.controls import snap_pkr

CLIP = "davis_car_shadow/frames"
FRAMES, HEIGHT, WIDTH = 40, 480, 854


def _mean_kept(window) -> float:
    return float(np.nanmean(window.controller.results.series()["keep_ratio"]))


def test_open_run_scrub_pkr_cancel_export(make_window, shared_data, qtbot, wait_done, dialogs, tmp_path):
    from core.data.davis import read_davis_folder
    from core.data.ytvis import read_ytvis_results

    w = make_window(shared_data / CLIP)
    c = w.controller
    assert w.timeline.count == FRAMES
    assert c.state == "running"
    wait_done(w)
    assert c.state == "done" and c.results.is_complete and c.results.count == FRAMES
    assert w.status.note.isVisible() and "untrained" in w.status.note.text()
    first = c.results
    # a first start uses the PKR the embedded default model was exported for
    start = w.controls.pkr()
    assert start == snap_pkr(default_pkr()) == c.pkr and 0.3 <= start <= 0.6
    kept_start = _mean_kept(w)
    assert start - 0.1 < kept_start < start + 0.1

    # scrub: keyboard shortcuts, Home/End, a click on a plot seeks too
    qtbot.keyClick(w, Qt.Key.Key_Right)
    assert w.timeline.frame == 1
    qtbot.keyClick(w, Qt.Key.Key_F)
    qtbot.keyClick(w, Qt.Key.Key_D)
    qtbot.keyClick(w, Qt.Key.Key_Right)
    assert w.timeline.frame == 2
    qtbot.keyClick(w, Qt.Key.Key_End)
    assert w.timeline.frame == FRAMES - 1
    qtbot.keyClick(w, Qt.Key.Key_Home)
    assert w.timeline.frame == 0
    with qtbot.waitSignal(w.plots.seekRequested):
        w.plots.seekRequested.emit(17)
    assert w.timeline.frame == 17
    assert "kept" in w.status.stats.text() and "ms/frame" in w.status.stats.text()
    assert not w.view.items["heatmap"].isVisible()  # off on a real clip (issue 24): H shows it
    qtbot.keyClick(w, Qt.Key.Key_H)
    assert w.view.items["heatmap"].isVisible() and w.view.items["heatmap"].image is not None
    qtbot.keyClick(w, Qt.Key.Key_H)
    assert not w.actions_.layers["heatmap"].isChecked() and not w.view.items["heatmap"].isVisible()
    assert not w.controls.checks["heatmap"].isChecked()

    # a lower PKR restarts the pass; the measured kept ratio follows
    with qtbot.waitSignal(c.stateChanged, timeout=5000, check_params_cb=lambda s: s == "running"):
        w.controls.pkr_slider.setValue(start - 0.2)
    wait_done(w)
    assert c.results is not first and c.results.is_complete
    assert _mean_kept(w) < kept_start - 0.1

    # back to the start PKR: instant, from the cache (no pass runs)
    with qtbot.waitSignal(w.controls.pkrChanged, timeout=5000):
        w.controls.pkr_slider.setValue(start)
    assert c.state == "done" and c.results is first

    # cancel a running pass: partial results stay, export is refused with a message
    with qtbot.waitSignal(c.frameArrived, timeout=60_000, check_params_cb=lambda i, preview: not preview):
        w.controls.pkr_slider.setValue(0.8)
    qtbot.keyClick(w, Qt.Key.Key_Escape)
    assert c.state == "cancelled" and not c.running
    assert 0 < c.results.count < FRAMES
    assert not w.export_to("ytvis", tmp_path / "partial.json")
    assert dialogs and "Wait for it to finish" in dialogs[-1][1]
    assert not (tmp_path / "partial.json").exists()

    # back to the start PKR and export YTVIS (json and zip) and DAVIS masks; read them back with core's readers
    with qtbot.waitSignal(w.controls.pkrChanged, timeout=5000):
        w.controls.pkr_slider.setValue(start)
    assert c.results is first
    for name, zipped in (("results.json", False), ("results.zip", True)):
        with qtbot.waitSignal(w.exporter.finished, timeout=60_000):
            assert w.export_to("zip" if zipped else "ytvis", tmp_path / name)
        tracks = read_ytvis_results(tmp_path / name)
        assert len(tracks) == len(first.to_ytvis(1)) > 0
        for t in tracks:
            assert len(t.segmentations) == FRAMES
            assert all(s is None or list(s["size"]) == [HEIGHT, WIDTH] for s in t.segmentations)
    assert w.settings.folder("export") == str(tmp_path)
    with qtbot.waitSignal(w.exporter.finished, timeout=120_000):
        assert w.export_to("davis", tmp_path / "davis")
    names, labels = read_davis_folder(tmp_path / "davis")
    assert len(names) == FRAMES and labels.shape == (FRAMES, HEIGHT, WIDTH) and labels.max() > 0

    # screenshot of the whole window: saved, and not blank
    shot = tmp_path / "main_window.png"
    assert w.grab().save(str(shot))
    img = QImage(str(shot)).convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, : img.width() * 3]
    assert img.width() > 800 and arr.astype(np.float32).var() > 100.0


def test_preview_shows_the_current_frame_before_the_pass_reaches_it(make_window, shared_data, qtbot, wait_done):
    w = make_window(shared_data / CLIP)
    c = w.controller
    wait_done(w)
    w.timeline.set_frame(30)
    with qtbot.waitSignal(c.frameArrived, timeout=60_000, check_params_cb=lambda i, preview: preview and i == 30):
        w.controls.pkr_slider.setValue(0.8)
    result, preview = c.frame(30)
    assert preview and result.index == 30
    assert "preview" in w.status.stats.text() and w.view.badge.isVisible()
    assert 30 not in c.results  # previews never enter the pass's store
    wait_done(w)
    result, preview = c.frame(30)
    assert not preview and c.results.is_complete and not c.previews


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_layout_theme_and_recent_files_persist(make_window, shared_data, qtbot, wait_done, theme):
    w = make_window(shared_data / CLIP)
    wait_done(w)
    w.set_theme(theme)
    w.controls_dock.hide()
    w.actions_.layers["labels"].setChecked(False)
    w.close()
    w2 = make_window()
    assert w2.settings.recent_files()[0].endswith(CLIP)
    assert not w2.controls_dock.isVisible()
    assert w2.actions_.themes[theme].isChecked()
    assert not w2.actions_.layers["labels"].isChecked()
    assert w2.actions_.recent_menu.isEnabled()
    assert w2.controls.pkr() == w.controls.pkr()
