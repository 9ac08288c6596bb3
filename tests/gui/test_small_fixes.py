"""What a new user saw (issue 12, "Smaller, seen by a new user" and the GUI model switch): each a test.

- opening a shorter clip while on a later frame raised an IndexError in show_frame;
- status-bar messages were never visible (the stats widget filled the bar);
- the survival-depth heatmap had no legend;
- the corrupt-frame warning logged a full traceback;
- a model switch to a checkpoint with a bad config said "ZeroDivisionError" without the file.
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from PySide6.QtWidgets import QFileDialog

from core.resources import DEFAULT_MODEL
from vpp_gui.overlay import DEPTH_STAGE

CLIP = "davis_car_shadow/frames"


def _copy_frames(shared_data, dest, n):
    dest.mkdir()
    for i in range(n):
        shutil.copy(shared_data / CLIP / f"{i:05d}.jpg", dest / f"{i:05d}.jpg")
    return dest


def _no_traceback(caplog):
    assert "Traceback" not in caplog.text, caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def test_opening_a_shorter_clip_on_a_later_frame(make_window, shared_data, wait_done, dialogs, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    short = _copy_frames(shared_data, tmp_path / "short", 10)
    w = make_window(shared_data / CLIP)
    wait_done(w)
    w.timeline.set_frame(39)
    assert w.timeline.frame == 39
    assert w.open_path(short)  # an IndexError in a slot fails the test (pytest-qt captures it)
    assert w.timeline.count == 10 and w.timeline.frame in (0, 9)
    assert w.view.image.image is not None and w.view.image.image.shape[:2] == (480, 854)
    wait_done(w)
    assert w.controller.results.is_complete and w.controller.results.num_frames == 10
    assert not dialogs
    _no_traceback(caplog)


def _message_rect_width(bar, permanent) -> int:
    """Width QStatusBar paints a temporary message in: from x=6 to its permanent widget's left - 2
    (QStatusBarPrivate::messageRect)."""
    return min(bar.width() - 12, permanent.x() - 2) - 6


@pytest.mark.parametrize("running", [False, True])
def test_status_bar_messages_are_visible(make_window, shared_data, wait_done, qtbot, running):
    w = make_window(shared_data / CLIP)
    wait_done(w)
    w.timeline.set_frame(3)
    assert "kept" in w.status.stats.text()  # the stats are there, and so is the note of the untrained model
    w.status.set_running(running)  # progress bar and Cancel shown too
    bar = w.statusBar()
    msg = f"inference done: {w.controller.results.num_frames} frames (12.3 s)"
    bar.showMessage(msg, 8000)
    qtbot.wait(50)  # the bar lays itself out again
    assert bar.currentMessage() == msg
    assert bar.fontMetrics().horizontalAdvance(msg) <= _message_rect_width(bar, w.status), (
        bar.width(), w.status.x(), w.status.width())
    # the stats still show in full beside it
    assert w.status.stats.width() >= w.status.stats.fontMetrics().horizontalAdvance(w.status.stats.text())
    w.status.set_running(False)


def test_survival_depth_legend(make_window, shared_data, wait_done, qtbot):
    from vpp_gui.overlay import heat_legend

    w = make_window(shared_data / CLIP)
    wait_done(w)
    c = w.controls
    names = c.stage_names()
    assert names and "dark = pruned" in c.legend.text() and "survived" not in c.legend.text()
    with qtbot.waitSignal(c.stageChanged):
        c.stage_combo.setCurrentIndex(c.stage_combo.findText(DEPTH_STAGE))
    text = c.legend.text()
    assert c.legend.isVisible() and "Survival depth" in text
    levels = heat_legend(names, DEPTH_STAGE)  # one swatch per level: 0 = pruned at the first prune point ...
    assert [level for level, _, _ in levels] == [str(v) for v in range(len(names) + 1)]
    assert len({rgb for _, rgb, _ in levels}) == len(levels)
    for level, rgb, meaning in levels:
        assert "#{:02x}{:02x}{:02x}".format(*rgb) in text and f"{level}: {meaning}" in c.legend.toolTip()
    assert f"0 pruned at {names[0]}" in text and f"1 at {names[1]}" in text and f"{len(names)} kept to the end" in text
    assert c.legend.geometry().bottom() <= c.legend.parentWidget().height()  # not cut off
    with qtbot.waitSignal(c.stageChanged):
        c.stage_combo.setCurrentIndex(1)
    assert "survived" not in c.legend.text() and f"pruned at {names[1]}" in c.legend.text()


def test_corrupt_frame_one_message_no_traceback(make_window, shared_data, dialogs, wait_done, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    clip = _copy_frames(shared_data, tmp_path / "clip", 4)
    (clip / "00002.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    w = make_window(clip)
    wait_done(w)
    w.timeline.set_frame(2)  # the bad frame on screen: a badge, not a second dialog
    w.timeline.set_frame(1)
    assert len(dialogs) == 1 and "00002.jpg" in dialogs[0][1], dialogs
    assert any("00002.jpg" in r.getMessage() for r in caplog.records)
    _no_traceback(caplog)


def _bad_config_checkpoint(tmp_path):
    bad = tmp_path / "heads0.safetensors"
    shutil.copy(DEFAULT_MODEL, bad)
    cfg = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    cfg["num_heads"] = 0  # was: "ZeroDivisionError: integer division or modulo by zero", no file named
    bad.with_suffix(".json").write_text(json.dumps(cfg))
    return bad


def test_model_load_failures_name_the_file_and_keep_the_model(make_window, shared_data, dialogs, monkeypatch,
                                                               wait_done, qtbot, tmp_path, caplog):
    import core.resources

    caplog.set_level(logging.DEBUG)
    w = make_window(_copy_frames(shared_data, tmp_path / "clip", 4))
    wait_done(w)
    good = w.controller.results
    bad = _bad_config_checkpoint(tmp_path)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    with qtbot.waitSignal(w.controller.failed, timeout=60_000):
        w.controls.checkpointRequested.emit()
    title, text = dialogs[-1]
    assert title == "Inference failed"
    # the checkpoint or its .json named (core.build's config check names the .json and the key)
    assert str(tmp_path / "heads0.") in text and "Traceback" not in text, text
    assert w.controls.model().kind == "default" and w.controller.spec.kind == "default"
    assert w.controller.results is good and w.controller.state == "done"

    # any unexpected exception while loading: the same (a message naming the file, the model kept)
    def explode(path=None, **_kw):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(core.resources, "load_model", explode)
    other = tmp_path / "other.safetensors"
    shutil.copy(DEFAULT_MODEL, other)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(other), ""))
    with qtbot.waitSignal(w.controller.failed, timeout=60_000):
        w.controls.checkpointRequested.emit()
    text = dialogs[-1][1]
    assert str(other) in text and "ZeroDivisionError" in text and "cannot load the model" in text, text
    assert w.controls.model().kind == "default" and w.controller.results is good
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and "Traceback" in r.getMessage()]


def test_status_text_shows_a_dash_not_nan_for_a_frame_without_measurements():
    """A document opened without a run has frames with NaN kept/GFLOPs/ms: the status bar says '—', not 'nan'."""
    import numpy as np

    from core.results import CompactFrame
    from vpp_gui.status import frame_stats_text

    def frame(ratio, gflops, ms):
        empty = np.zeros(0, np.int64)
        return CompactFrame(0, 4, 4, empty, empty, np.zeros(0, np.float32), (), empty, np.zeros((0, 1, 1), bool),
                            (), ratio, gflops, ms)

    text = frame_stats_text(frame(float("nan"), float("nan"), float("nan")))
    assert "nan" not in text.lower() and text.count("\u2014") == 3, text
    assert frame_stats_text(frame(0.4, 1.25, 36.0)).startswith("kept 40.0%  ·  1.25 GFLOPs  ·  36 ms/frame"), \
        frame_stats_text(frame(0.4, 1.25, 36.0))


def test_small_plots_draw_few_y_ticks(qtbot):
    """The plots under the timeline are ~35 px high: major y ticks only, and 0 / 0.5 / 1 on the 0..1 plots."""
    from vpp_gui.iou_plot import IouPlot
    from vpp_gui.plots import PlotsPanel

    panel = PlotsPanel()
    qtbot.addWidget(panel)
    iou = IouPlot()
    qtbot.addWidget(iou)
    for axis in (panel.plots["ms"].getAxis("left"), panel.plots["gflops"].getAxis("left")):
        for lo, hi in ((0.0, 87.0), (31.5, 36.2), (0.9, 2.05), (0.0, 1e-3), (0.0, 3.0), (40.0, 1000.0)):
            levels = [lv for lv in axis.tickValues(lo, hi, 35) if len(lv[1])]
            assert len(levels) == 1 and 1 <= len(levels[0][1]) <= 3, (lo, hi, levels)
    for axis in (panel.plots["keep_ratio"].getAxis("left"), panel.plots["tracks"].getAxis("left"),
                 iou.getPlotItem().getAxis("left")):
        assert [[v for v, _ in level] for level in axis._tickLevels] == [[0.0, 0.5, 1.0]]  # set by setTicks
