"""The PKR sweep dock: run on a 4-frame labelled clip, plot, table, export, errors and cancel."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis_car_shadow"
N = 4

pytestmark = pytest.mark.skipif(not (DATA / "gt_ytvis.json").exists(), reason="shared DAVIS sample missing")


@pytest.fixture
def clip(tmp_path):
    """(frames folder, GT JSON) for the first 4 frames of davis_car_shadow."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in sorted(p.name for p in (DATA / "frames").iterdir())[:N]:
        shutil.copy(DATA / "frames" / name, frames / name)
    gt = json.loads((DATA / "gt_ytvis.json").read_text())
    video = dict(gt["videos"][0], length=N)
    video["file_names"] = video["file_names"][:N]
    gt["videos"] = [video]
    anns = []
    for a in gt["annotations"]:
        if a["video_id"] == video["id"]:
            a = dict(a, length=N)
            for key in ("segmentations", "areas", "bboxes"):
                a[key] = a[key][:N]
            anns.append(a)
    gt["annotations"] = anns
    gt_path = tmp_path / "gt_4.json"
    gt_path.write_text(json.dumps(gt))
    return frames, gt_path


def _window(make_window, wait_done, frames):
    win = make_window(frames)
    wait_done(win)  # the window's own pass first: the sweep then has the CPU to itself
    win.actions_.sweep.trigger()
    assert win.sweep_dock.isVisible()
    panel = win.sweep_panel
    assert panel.clip_path == str(frames.resolve())
    return win, panel


def test_sweep_runs_plots_exports_and_chooses(make_window, wait_done, qtbot, clip, tmp_path, dialogs):
    frames, gt = clip
    win, panel = _window(make_window, wait_done, frames)
    assert panel.pkr_edit.text() == "1.0, 0.7, 0.55, 0.4, 0.3"
    panel.set_gt(gt)
    panel.pkr_edit.setText("1.0, 0.4")
    panel.random_check.setChecked(True)
    with qtbot.waitSignal(panel.finished, timeout=120_000) as blocker:
        assert panel.run()
        assert panel.state == "running"
    result = blocker.args[0]
    assert panel.state == "done" and panel.result is result
    assert not dialogs
    names = [panel.table.item(r, 0).text() for r in range(panel.table.rowCount())]
    assert names == ["dense", "vpp@0.4", "random@0.4"]
    points = panel.points()
    assert sorted(p[0] for p in points) == sorted(names)
    assert result.device in panel.plot.getPlotItem().titleLabel.text
    assert panel.progress.value() == panel.progress.maximum()

    panel.export_csv(tmp_path / "s.csv")
    panel.export_json(tmp_path / "s.json")
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [r["name"] for r in rows] == names
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["schema"] == "vpp-sweep/1" and data["complete"] is True
    assert [r["name"] for r in data["rows"]] == names
    assert data["input"]["frames"] == N

    # clicking a point moves the window's PKR there (a cache hit or a new pass at that PKR)
    for mode, pkr in (("dense", 1.0), ("vpp", 0.4)):
        item = panel._scatters[mode]
        item.sigClicked.emit(item, item.points(), None)
        assert win.controls.pkr() == pytest.approx(pkr)
        assert win.controller.pkr == pytest.approx(pkr)
        wait_done(win)


def test_missing_gt_names_the_file(make_window, wait_done, qtbot, clip, tmp_path, dialogs):
    frames, _ = clip
    _win, panel = _window(make_window, wait_done, frames)
    missing = tmp_path / "nope" / "gt.json"
    panel.set_gt(missing)
    panel.pkr_edit.setText("1.0")
    with qtbot.waitSignal(panel.failed, timeout=60_000) as blocker:
        panel.run()
    assert str(missing) in blocker.args[0] or missing.name in blocker.args[0]
    assert panel.state == "failed" and panel.result is None
    assert "gt.json" in panel.message.text()
    assert dialogs and dialogs[-1][0] == "PKR sweep failed" and "gt.json" in dialogs[-1][1]


def test_bad_pkr_list_is_refused(make_window, wait_done, clip, dialogs):
    frames, gt = clip
    _win, panel = _window(make_window, wait_done, frames)
    panel.set_gt(gt)
    panel.pkr_edit.setText("1.0, abc")
    assert not panel.run()
    assert panel.state == "failed" and "abc" in panel.message.text()


def test_cancel_ends_cancelled_without_result(make_window, wait_done, qtbot, clip):
    frames, gt = clip
    _win, panel = _window(make_window, wait_done, frames)
    panel.set_gt(gt)
    panel.pkr_edit.setText("1.0, 0.4")
    with qtbot.waitSignal(panel.stateChanged, timeout=60_000,
                          check_params_cb=lambda s: s not in ("running", "cancelling")):
        assert panel.run()
        panel.cancel()
        assert panel.state == "cancelling"
    assert panel.state == "cancelled"
    assert panel.result is None and panel.table.rowCount() == 0 and not panel.points()
    assert "cancelled" in panel.message.text()
    assert not panel.csv_button.isEnabled()


def _row(name, mode, pkr, ms, gflops, ap):
    from core.sweep import SweepRow

    figures = {"AP": ap, "AP50": ap, "AP75": ap, "AR1": ap, "AR10": ap, "bbox_AP": ap, "segm_AP": ap}
    return SweepRow(name, mode, pkr, mode == "dense", pkr, ms, gflops, N, figures)


def test_x_axis_switches_between_ms_and_gflops(qtbot):
    from core.sweep import SweepResult
    from vpp_gui.sweep_panel import SweepPanel

    panel = SweepPanel(None, lambda: (None, "cpu", None))
    qtbot.addWidget(panel)
    rows = [_row("dense", "dense", 1.0, 50.0, 12.0, 0.8), _row("vpp@0.4", "vpp", 0.4, 30.0, 5.0, 0.7),
            _row("random@0.4", "random", 0.4, 29.0, 5.5, 0.4)]
    result = SweepResult(rows, "cpu (1 threads)", "m.safetensors", None, "vpp", True, "clip", "clip", 1, N, {}, 1)
    panel._on_returned(result)  # as the worker delivers it
    assert panel.x_key() == "ms_per_frame"
    assert sorted((name, x) for name, x, _ in panel.points()) == [("dense", 50.0), ("random@0.4", 29.0),
                                                                 ("vpp@0.4", 30.0)]
    assert "ms/frame" in panel.plot.getPlotItem().titleLabel.text
    panel.x_axis.setCurrentIndex(panel.x_axis.findData("gflops_per_frame"))
    assert panel.x_key() == "gflops_per_frame"
    assert sorted((name, x) for name, x, _ in panel.points()) == [("dense", 12.0), ("random@0.4", 5.5),
                                                                 ("vpp@0.4", 5.0)]
    assert "GFLOPs/frame" in panel.plot.getPlotItem().titleLabel.text
    assert "GFLOPs" in panel.plot.getPlotItem().getAxis("bottom").labelText
    line_x, _ = panel._vpp_line.getData()
    assert sorted(line_x.tolist()) == [5.0, 12.0]  # the VPP curve follows the axis too
    assert [p[2] for p in sorted(panel.points())] == [0.8, 0.4, 0.7]  # AP unchanged
    panel.x_axis.setCurrentIndex(0)
    assert sorted(x for _, x, _ in panel.points()) == [29.0, 30.0, 50.0]


def test_equal_aps_keep_a_readable_axis_and_labels_fit(qtbot):
    """All APs 0 (a real clip with the synthetic-shapes model): y stays 0..1, the last x label has room."""
    from core.sweep import SweepResult
    from vpp_gui.sweep_panel import SweepPanel

    panel = SweepPanel(None, lambda: (None, "cpu", None))
    qtbot.addWidget(panel)
    rows = [_row("dense", "dense", 1.0, 50.0, 12.0, 0.0), _row("vpp@0.4", "vpp", 0.4, 30.0, 5.0, 0.0)]
    panel._on_returned(SweepResult(rows, "cpu", "m.safetensors", None, "vpp", True, "clip", "clip", 1, N, {}, 1))
    (x0, x1), (y0, y1) = panel.plot.getPlotItem().getViewBox().viewRange()
    assert y0 <= 0.0 and y1 >= 1.0
    assert x0 < 30.0 and x1 >= 50.0 + 0.1 * 20.0
