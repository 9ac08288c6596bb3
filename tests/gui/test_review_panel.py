"""Ground truth in the app (issue 15): load it, draw it as outlines, GT / predictions / both, the review dock
(matches, misses, false tracks; clicks seek and select), the per-frame IoU plot, the evaluation dock on a
worker thread, and bad GT files. On the real DAVIS car-shadow clip; the window opens the clip with a
document of imported tracks, so no model pass runs."""

from __future__ import annotations

import json
import shutil
import threading

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt

from vpp_gui.gt_overlay import FLASH_COLOR, GT_COLOR, GT_DARK

CLIP = "davis_car_shadow/frames"
PRED = "davis_car_shadow/pred_ytvis_results.json"
GT_JSON = "davis_car_shadow/gt_ytvis.json"
FRAMES, HEIGHT, WIDTH = 40, 480, 854
CAR = 5
MISSED_ID = 7  # the extra GT track of the review test (not the id of any predicted track there)


def _png_masks(folder) -> np.ndarray:
    """[40, H, W] bool straight from the PNGs (grey level or palette index > 0), independent of core's readers."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(folder / f"{i:05d}.png")) > 0 for i in range(FRAMES)])


@pytest.fixture(scope="module")
def gt_masks(shared_data):
    return _png_masks(shared_data / "davis_car_shadow/masks")


@pytest.fixture(scope="module")
def pred_masks(shared_data):
    return _png_masks(shared_data / "davis_car_shadow/pred_masks")


def _inner_edge(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a background pixel (or the frame border) among their 8 neighbours."""
    p = np.pad(mask, 1)
    core = np.ones_like(mask)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            core &= p[1 + dy:1 + dy + mask.shape[0], 1 + dx:1 + dx + mask.shape[1]]
    return mask & ~core


def _box(y0, x0, y1, x1) -> np.ndarray:
    m = np.zeros((HEIGHT, WIDTH), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture
def opened(make_window, shared_data):
    """(window, document, imported prediction id): the clip with the OSVOS prediction imported, no pass."""
    from core.app.document import ClipInfo, Document

    doc = Document(ClipInfo.open(shared_data / CLIP), categories={CAR: "car"})
    [pred] = doc.import_file(shared_data / PRED)
    w = make_window()
    assert w.open_path(shared_data / CLIP, document=doc)
    assert w.controller.state != "running" and w.bridge.doc is doc
    return w, doc, pred


def _load(qtbot, w, path):
    with qtbot.waitSignal(w.review.reviewUpdated, timeout=60_000):
        assert w.review.load(path)
    return w.review.state.gt


def _gt_image(w) -> np.ndarray | None:
    item = w.view.gt_item
    return item.image if item.isVisible() else None


def test_gt_outlines_are_drawn_and_ctrl_g_cycles_gt_pred_both(opened, shared_data, qtbot, gt_masks, dialogs,
                                                              monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    w, _doc, _pred = opened
    assert _gt_image(w) is None and not w.iou_plot.isVisible()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(shared_data / GT_JSON), ""))
    with qtbot.waitSignal(w.review.reviewUpdated, timeout=60_000):
        w.review_panel.load_button.click()  # the review dock's button (File → Load ground truth… is the same)
    assert not dialogs
    assert w.review_dock.isVisible() and w.iou_plot.isVisible()
    w.timeline.set_frame(7)
    layer = _gt_image(w)
    assert layer is not None and layer.shape == (HEIGHT, WIDTH, 4)
    drawn = layer[..., 3] > 0
    # exactly the GT mask's inner outline (1 px at 854x480), dashed yellow / dark
    assert np.array_equal(drawn, _inner_edge(gt_masks[7])) and drawn.sum() > 300
    colours = [tuple(c) for c in layer[drawn][:, :3].tolist()]
    assert set(colours) == {GT_COLOR, GT_DARK} and GT_COLOR != GT_DARK
    assert 0.3 < colours.count(GT_COLOR) / len(colours) < 0.7  # dashes
    assert any(i.isVisible() and i.toPlainText() == "GT #1 car" for i in w.view._gt_label_items)
    masks_item = w.view.items["masks"]
    assert masks_item.isVisible() and (masks_item.image[..., 3] > 0).sum() > 10_000  # the prediction, filled
    assert not w.view.gt_badge.isVisible()

    def shown():
        return w.view.items["masks"].isVisible(), _gt_image(w) is not None

    assert shown() == (True, True) and w.actions_.gt_modes["both"].isChecked()
    qtbot.keyClick(w, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    assert w.review.state.mode == "gt" and shown() == (False, True) and w.actions_.gt_modes["gt"].isChecked()
    assert not w.view.items["contours"].isVisible()
    qtbot.keyClick(w, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    assert w.review.state.mode == "pred" and shown() == (True, False)
    w.timeline.set_frame(8)  # a new frame keeps the mode
    assert shown() == (True, False)
    qtbot.keyClick(w, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    assert w.review.state.mode == "both" and shown() == (True, True)
    assert np.array_equal(_gt_image(w)[..., 3] > 0, _inner_edge(gt_masks[8]))
    w.actions_.gt_modes["gt"].trigger()  # the View menu's checkable actions
    assert shown() == (False, True)
    # the layer switches (M) still work on top of the mode
    w.actions_.gt_modes["both"].trigger()
    qtbot.keyClick(w, Qt.Key.Key_M)
    assert shown() == (False, True)
    qtbot.keyClick(w, Qt.Key.Key_M)
    assert shown() == (True, True)


def test_sparse_davis_gt_shows_not_annotated_and_gaps(opened, shared_data, qtbot, tmp_path, gt_masks, pred_masks,
                                                      monkeypatch):
    w, _doc, _pred = opened
    folder = tmp_path / "sparse"
    folder.mkdir()
    labelled = (0, 10, 20, 30)
    for i in labelled:
        shutil.copy(shared_data / f"davis_car_shadow/masks/{i:05d}.png", folder / f"{i:05d}.png")
    cv2.imwrite(str(folder / "00015.png"), np.zeros((HEIGHT, WIDTH), np.uint8))  # annotated, empty
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    with qtbot.waitSignal(w.review.reviewUpdated, timeout=60_000):
        w.actions_.load_gt_folder.trigger()  # File → Load ground truth (DAVIS PNG folder)…
    gt = w.review.state.gt
    assert gt.format == "davis" and gt.annotated == [0, 10, 15, 20, 30]
    assert "5 / 40 frames annotated" in w.review_panel.info.text()
    w.timeline.set_frame(5)
    assert w.view.gt_badge.isVisible() and "not annotated" in w.view.gt_badge.text()
    assert _gt_image(w) is None
    w.timeline.set_frame(15)  # annotated and empty: nothing drawn, no badge
    assert not w.view.gt_badge.isVisible() and _gt_image(w) is None
    w.timeline.set_frame(10)
    assert not w.view.gt_badge.isVisible()
    assert np.array_equal(_gt_image(w)[..., 3] > 0, _inner_edge(gt_masks[10]))
    w.timeline.set_frame(5)
    w.actions_.gt_modes["pred"].trigger()  # predictions only: no GT, no badge
    assert not w.view.gt_badge.isVisible()
    w.actions_.gt_modes["both"].trigger()
    assert w.view.gt_badge.isVisible()

    # the IoU plot: a gap at every frame that is not annotated, the frame IoU elsewhere
    plot = w.iou_plot
    assert plot.gaps() == [i for i in range(FRAMES) if i not in (0, 10, 15, 20, 30)]
    values = plot.values()
    for i in labelled:
        inter = (gt_masks[i] & pred_masks[i]).sum()
        union = (gt_masks[i] | pred_masks[i]).sum()
        assert values[i] == pytest.approx(inter / union, abs=1e-9)
    assert values[15] == 0.0  # the prediction is there, the GT says nothing is
    _x, y = plot.curve.getData()
    assert np.isnan(y[5]) and plot.curve.opts["connect"] == "finite"
    assert plot.cursor.value() == 5
    with qtbot.waitSignal(plot.seekRequested):
        plot.seekRequested.emit(20)
    assert w.timeline.frame == 20 and plot.cursor.value() == 20


def _gt_with_extra_track(shared_data, tmp_path, box: np.ndarray, frames: range) -> tuple:
    """The car GT plus a second GT track (a box on ``frames``), written as a YTVIS GT JSON."""
    from core.data.rle import encode_mask

    gt = json.loads((shared_data / GT_JSON).read_text())
    rle = encode_mask(box)
    counts = rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"]
    seg = {"size": [HEIGHT, WIDTH], "counts": counts}
    extra = dict(gt["annotations"][0], id=MISSED_ID,
                 segmentations=[seg if i in frames else None for i in range(FRAMES)],
                 areas=[float(box.sum()) if i in frames else None for i in range(FRAMES)],
                 bboxes=[[0.0, 0.0, 1.0, 1.0] if i in frames else None for i in range(FRAMES)])
    gt["annotations"].append(extra)
    path = tmp_path / "gt_two.json"
    path.write_text(json.dumps(gt))
    return path


def _track_iou(pred: dict[int, np.ndarray], gt: dict[int, np.ndarray]) -> float:
    inter = union = 0
    for i in set(pred) | set(gt):
        p = pred.get(i, np.zeros((HEIGHT, WIDTH), bool))
        g = gt.get(i, np.zeros((HEIGHT, WIDTH), bool))
        inter += int((p & g).sum())
        union += int((p | g).sum())
    return inter / union if union else 0.0


def test_review_lists_and_clicks_seek_and_select(opened, shared_data, qtbot, tmp_path, gt_masks, pred_masks):
    w, doc, pred = opened
    gt_box, false_box = _box(10, 10, 60, 90), _box(400, 760, 470, 840)
    assert not (gt_masks & gt_box).any() and not (gt_masks & false_box).any()
    assert not (pred_masks & gt_box).any() and not (pred_masks & false_box).any()
    false_id = doc.create_track(12, false_box, CAR)
    for i in (13, 14):
        doc.paint(false_id, i, false_box)
    path = _gt_with_extra_track(shared_data, tmp_path, gt_box, range(5, 10))
    _load(qtbot, w, path)

    # the expectation, from the masks alone: track IoU of every (prediction, GT) pair, matched at >= 0.5
    preds = {pred: dict(enumerate(pred_masks)), false_id: {i: false_box for i in (12, 13, 14)}}
    gts = {1: dict(enumerate(gt_masks)), MISSED_ID: {i: gt_box for i in range(5, 10)}}
    ious = {(p, g): _track_iou(pm, gm) for p, pm in preds.items() for g, gm in gts.items()}
    matched = {(p, g) for (p, g), v in ious.items() if v >= 0.5}
    assert matched == {(pred, 1)}
    panel = w.review_panel
    assert panel.matched_ids() == sorted(matched)
    assert panel.miss_ids() == sorted(set(gts) - {g for _, g in matched}) == [MISSED_ID]
    assert panel.false_ids() == sorted(set(preds) - {p for p, _ in matched}) == [false_id]
    assert panel.matches.item(0, 3).text() == f"{ious[pred, 1]:.3f}" == "0.937"
    assert "(1)" in panel.misses_title.text() and "(1)" in panel.false_title.text()
    assert f"GT #{MISSED_ID}" in panel.misses.item(0).text() and "from frame 5" in panel.misses.item(0).text()
    best = max((1, MISSED_ID), key=lambda g: ious[false_id, g])
    assert f"best: GT #{best}, IoU {ious[false_id, best]:.2f}" in panel.false_tracks.item(0).text()
    assert panel.false_tracks.item(0).toolTip() == panel.false_tracks.item(0).text()  # readable when elided

    def click_list(widget, row):
        rect = widget.visualItemRect(widget.item(row))
        qtbot.mouseClick(widget.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())

    w.review_dock.raise_()
    qtbot.waitExposed(panel)
    w.timeline.set_frame(30)
    click_list(panel.false_tracks, 0)
    assert w.timeline.frame == 14 and doc.selected == (false_id,)  # its nearest frame (12-14), as in Tracks
    w.timeline.set_frame(13)
    click_list(panel.false_tracks, 0)
    assert w.timeline.frame == 13 and doc.selected == (false_id,)  # on the frame shown: stay (it went to 12)
    click_list(panel.misses, 0)
    assert w.timeline.frame == 5 and doc.selected == (false_id,)
    layer = _gt_image(w)
    flashed = np.all(layer[..., :3] == FLASH_COLOR, axis=-1) & (layer[..., 3] > 0)
    assert flashed.any() and not (flashed & ~gt_box).any()  # the missed GT box, highlighted
    qtbot.waitUntil(lambda: w.review.state.flash_gt is None, timeout=5000)  # the flash ends
    assert not np.all(_gt_image(w)[..., :3] == FLASH_COLOR, axis=-1).any()
    table = panel.matches
    rect = table.visualItemRect(table.item(0, 1))
    assert 5 in doc.track(pred).frames and doc.track(pred).first == 0
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    assert w.timeline.frame == 5 and doc.selected == (pred,)  # the track is on frame 5: stay (it went to 0)


def test_eval_panel_equals_vpp_eval_runs_on_a_worker_and_follows_edits(opened, shared_data, qtbot):
    from core.app.review import document_entries, evaluate_entries, load_ground_truth
    from core.data.ytvis import read_ytvis_gt, read_ytvis_results
    from core.evaluation.ytvis_eval import evaluate
    from vpp_gui.eval_panel import figure_text

    w, doc, pred = opened
    with qtbot.waitSignal(w.review.evaluated, timeout=60_000) as blocker:
        assert w.review.load(shared_data / GT_JSON)
    report = blocker.args[0]
    gt = load_ground_truth(shared_data / GT_JSON, num_frames=FRAMES, height=HEIGHT, width=WIDTH)
    expected = evaluate_entries(gt, document_entries(doc))
    assert report.overall == pytest.approx(expected.overall)
    cli = evaluate(read_ytvis_gt(shared_data / GT_JSON), read_ytvis_results(shared_data / PRED))  # vpp eval
    assert report.overall["AP_track"] == pytest.approx(cli["AP"]) == pytest.approx(0.9)
    assert report.overall["AR10"] == pytest.approx(cli["AR10"])
    panel = w.eval_panel
    assert panel.figures() == {k: figure_text(v) for k, v in expected.overall.items() if k in panel.values}
    assert panel.figures()["AP_track"] == "0.900"
    assert panel.table.rowCount() == 1 and panel.table.item(0, 0).text() == "car"
    assert panel.table.item(0, 1).text() == "0.900"
    assert panel.status.text().startswith("updated ")
    ids = w.review.evaluator.thread_ids
    assert ids and threading.get_ident() not in ids  # pycocotools ran on the worker, not the UI thread
    assert threading.get_ident() not in w.review.reviewer.thread_ids + w.review.loader.thread_ids

    # an edit: debounced, then "computing…", then the new figures
    with qtbot.waitSignal(w.review.evaluated, timeout=60_000) as blocker:
        doc.delete([pred])
        assert w.review._eval_timer.isActive() and panel.status.text().startswith("updated ")
        qtbot.waitUntil(lambda: panel.status.text().startswith("computing"), timeout=5000)
    after = blocker.args[0]
    again = evaluate_entries(gt, document_entries(doc))
    assert after.overall == pytest.approx(again.overall)
    assert after.overall["AP_track"] != pytest.approx(report.overall["AP_track"])
    assert panel.figures()["AP_track"] == figure_text(again.overall["AP_track"]) != "0.900"
    qtbot.waitUntil(lambda: not w.review.reviewer.busy, timeout=10_000)
    assert w.review_panel.miss_ids() == [1] and w.review_panel.matched_ids() == []
    assert np.isnan(w.iou_plot.values()).sum() == 0 and (w.iou_plot.values() == 0).all()  # all missed

    # undo: back to the first figures; two quick requests: only the newer result is shown
    doc.undo()
    got = []
    w.review.evaluated.connect(got.append)
    runs = len(ids)
    w.review.start_eval()
    w.review.start_eval()
    qtbot.waitUntil(lambda: not w.review.evaluator.busy and not w.review.computing, timeout=60_000)
    assert len(ids) == runs + 2 and len(got) == 1  # the first (stale) result was dropped
    assert got[0].overall == pytest.approx(report.overall)
    assert panel.figures()["AP_track"] == "0.900"


def test_bad_gt_files_name_the_file_and_the_app_keeps_working(opened, shared_data, qtbot, tmp_path, dialogs):
    w, _doc, _pred = opened
    short = json.loads((shared_data / GT_JSON).read_text())
    short["videos"][0] = dict(short["videos"][0], length=30, file_names=short["videos"][0]["file_names"][:30])
    for a in short["annotations"]:
        for key in ("segmentations", "areas", "bboxes"):
            a[key] = a[key][:30]
    (tmp_path / "gt_30_frames.json").write_text(json.dumps(short))
    for bad in (shared_data / PRED, tmp_path / "gt_30_frames.json", tmp_path / "missing.json"):
        with qtbot.waitSignal(w.review.loadFailed, timeout=30_000) as blocker:
            assert w.review.load(bad)
        title, message = dialogs[-1]
        assert title == "Cannot load ground truth" and bad.name in message and message == blocker.args[0]
        assert "Traceback" not in message and "\n" not in message
        assert not w.review.state.has_gt and _gt_image(w) is None
    assert "40" in dialogs[-2][1] and "30" in dialogs[-2][1]  # the frame counts
    qtbot.keyClick(w, Qt.Key.Key_Right)  # still working
    assert w.timeline.frame == 1
    _load(qtbot, w, shared_data / GT_JSON)
    assert w.review.state.has_gt and _gt_image(w) is not None
    # a bad file after a good one keeps the good one
    with qtbot.waitSignal(w.review.loadFailed, timeout=30_000):
        w.review.load(shared_data / PRED)
    assert w.review.state.has_gt and _gt_image(w) is not None


def test_opening_another_clip_drops_the_gt(opened, shared_data, qtbot, tmp_path):
    w, _doc, _pred = opened
    _load(qtbot, w, shared_data / GT_JSON)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        shutil.copy(shared_data / CLIP / f"{i:05d}.jpg", frames / f"{i:05d}.jpg")
    w.bridge.doc.mark_clean()
    assert w.open_path(frames)
    assert not w.review.state.has_gt and _gt_image(w) is None and not w.iou_plot.isVisible()
    assert w.review_panel.matched_ids() == [] and w.eval_panel.report is None
