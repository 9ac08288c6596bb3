"""Box to mask, refine edge and the polygon fixes in the app: the real window, its keys and a real mouse."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

CLIP = "davis_car_shadow"
PRED = "davis_car_shadow/pred_ytvis_results.json"
FRAME = 20
LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def window(make_window, shared_data, wait_done):
    w = make_window(shared_data / CLIP / "frames")
    wait_done(w)
    w.timeline.set_frame(FRAME)
    return w


def _gt(shared_data) -> np.ndarray:
    return cv2.imread(str(shared_data / CLIP / "masks" / f"{FRAME:05d}.png"), cv2.IMREAD_GRAYSCALE) > 127


def _iou(a, b) -> float:
    return float((a & b).sum() / (a | b).sum())


def _pos(w, x, y):
    """Frame pixel (x, y) -> viewport position (computed now: a pan would move it)."""
    v = w.view
    return v.graphics.mapFromScene(v.view.mapViewToScene(QPointF(x + 0.5, y + 0.5)))


def _drag(qtbot, w, points) -> None:
    viewport = w.view.graphics.viewport()
    pos = [_pos(w, x, y) for x, y in points]
    qtbot.mouseMove(viewport, pos[0])
    qtbot.wait(20)
    qtbot.mousePress(viewport, LEFT, pos=pos[0])
    for p in pos[1:]:
        qtbot.wait(20)
        qtbot.mouseMove(viewport, p)
    qtbot.wait(20)
    qtbot.mouseRelease(viewport, LEFT, pos=pos[-1])
    qtbot.wait(20)


def _box_around(gt, pad=5):
    ys, xs = np.nonzero(gt)
    return int(xs.min()) - pad, int(ys.min()) - pad, int(xs.max()) + pad, int(ys.max()) + pad


def _wait_preview(qtbot, w) -> np.ndarray:
    box = w.editing.box
    qtbot.waitUntil(lambda: box.mask is not None and not box.busy, timeout=30_000)
    return box.mask


def test_box_to_mask_makes_a_track_and_undo_removes_it(window, shared_data, qtbot):
    w = window
    doc = w.bridge.doc
    gt = _gt(shared_data)
    doc.select([])
    w.actions_.tools["box"].trigger()
    assert w.view.tools.tool() == "box"
    x0, y0, x1, y1 = _box_around(gt)
    _drag(qtbot, w, [(x0, y0), ((x0 + x1) / 2, (y0 + y1) / 2), (x1, y1)])
    preview = _wait_preview(qtbot, w)
    assert _iou(preview, gt) > 0.7 and w.editing.box._layer.isVisible()
    ran_on = w.editing.box._runner.thread_ids
    assert len(ran_on) == 1 and threading.main_thread().ident not in ran_on  # GrabCut ran off the UI thread
    before = set(doc.tracks)
    qtbot.keyClick(w, Qt.Key.Key_Return)  # Enter accepts
    new = set(doc.tracks) - before
    assert len(new) == 1
    tid = new.pop()
    mask = doc.mask(tid, FRAME)
    assert doc.track(tid).origin == "user" and set(doc.track(tid).frames) == {FRAME} and doc.current == tid
    assert np.array_equal(mask, preview) and _iou(mask, gt) > 0.7
    inside = np.zeros_like(mask)
    inside[y0:y1 + 1, x0:x1 + 1] = True
    assert not (mask & ~inside).any()
    assert w.view.tools.box_rect() is None and not w.editing.box.active  # ready for the next object
    qtbot.keyClick(w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert tid not in doc.tracks


def test_strokes_rerun_grabcut_esc_drops_and_enter_adds_to_the_current_track_s_mask(window, shared_data, qtbot):
    w = window
    doc = w.bridge.doc
    gt = _gt(shared_data)
    tid = w.transfers.import_path(shared_data / PRED)[0]
    w.tracks.select([tid])
    old = doc.mask(tid, FRAME)
    w.actions_.tools["box"].trigger()
    x0, y0, x1, y1 = _box_around(gt)
    w.view.tools.finish_box(x0, y0, x1 + 1, y1 + 1)
    first = _wait_preview(qtbot, w).copy()
    # a background stroke across the box's upper left corner, and the mask is computed again without it
    tools = w.view.tools
    tools.set_radius(4)
    assert tools.begin_hint(x0 + 4, y0 + 4, foreground=False)
    tools.extend_stroke(x0 + 40, y0 + 4)
    tools.end_stroke()
    assert w.editing.box.busy
    second = _wait_preview(qtbot, w)
    assert not second[y0 + 4, x0 + 4:x0 + 41].any() and not np.array_equal(first, second)
    # Esc drops the box, its strokes and the preview; nothing changed in the document
    position = doc.history.position
    qtbot.keyClick(w, Qt.Key.Key_Escape)
    assert not w.editing.box.active and tools.box_rect() is None and not w.editing.box._layer.isVisible()
    assert np.array_equal(doc.mask(tid, FRAME), old) and doc.history.position == position
    # again, and Enter: the box's mask is added to the selected track's on this frame, one undo step
    tools.finish_box(x0, y0, x1 + 1, y1 + 1)
    preview = _wait_preview(qtbot, w)
    qtbot.keyClick(w, Qt.Key.Key_Return)
    assert np.array_equal(doc.mask(tid, FRAME), old | preview) and doc.history.undo_label == "Box to mask"
    w.actions_.undo.trigger()
    assert np.array_equal(doc.mask(tid, FRAME), old)


def test_enter_adds_the_box_s_mask_to_the_selected_track_s_mask_as_one_undo_step(window, shared_data, qtbot):
    """As the brush does: what the track had on the frame outside the box stays (union), one undo step."""
    w = window
    doc = w.bridge.doc
    gt = _gt(shared_data)
    x0, y0, x1, y1 = _box_around(gt)
    blob = np.zeros_like(gt)
    blob[5:25, 5:25] = True
    assert not blob[y0:y1 + 1, x0:x1 + 1].any()  # the track's mask lies outside the box
    tid = doc.create_track(FRAME, blob, next(iter(doc.categories)))
    w.tracks.select([tid])
    assert doc.current == tid
    position = doc.history.position
    w.actions_.tools["box"].trigger()
    w.view.tools.finish_box(x0, y0, x1 + 1, y1 + 1)
    preview = _wait_preview(qtbot, w).copy()
    assert preview.any()
    qtbot.keyClick(w, Qt.Key.Key_Return)
    assert np.array_equal(doc.mask(tid, FRAME), blob | preview)
    assert doc.history.position == position + 1 and doc.history.undo_label == "Box to mask"
    w.actions_.undo.trigger()
    assert np.array_equal(doc.mask(tid, FRAME), blob) and doc.history.position == position


def test_refine_edge_snaps_a_sloppy_mask_as_one_undo_step(window, shared_data, qtbot):
    w = window
    doc = w.bridge.doc
    gt = _gt(shared_data)
    tid = w.transfers.import_path(shared_data / PRED)[0]
    w.tracks.select([tid])
    sloppy = cv2.dilate(gt.astype(np.uint8), np.ones((13, 13), np.uint8)).astype(bool)  # 6 px too large
    doc.set_mask(tid, FRAME, sloppy)
    qtbot.keyClick(w, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: doc.history.undo_label == "Refine edge", timeout=30_000)
    refined = doc.mask(tid, FRAME)
    assert _iou(refined, gt) > _iou(sloppy, gt) + 0.05
    w.actions_.undo.trigger()
    assert np.array_equal(doc.mask(tid, FRAME), sloppy)
    doc.select([])
    w.actions_.refine_edge.trigger()  # nothing selected: the action is off, nothing happens
    assert not w.actions_.refine_edge.isEnabled() and np.array_equal(doc.mask(tid, FRAME), sloppy)


def test_shift_polygon_subtracts_and_quick_clicks_make_one_polygon_one_undo_step(window, shared_data, qtbot):
    w = window
    doc = w.bridge.doc
    tid = w.transfers.import_path(shared_data / PRED)[0]
    w.tracks.select([tid])
    w.actions_.tools["polygon"].trigger()
    viewport = w.view.graphics.viewport()
    gt = _gt(shared_data)
    x0, y0, x1, y1 = _box_around(gt, pad=-40)  # well inside the car
    before = doc.mask(tid, FRAME)
    assert before[y0:y1, x0:x1].mean() > 0.9
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    for i, (x, y) in enumerate(corners):  # Shift at the first click: this polygon erases
        mods = Qt.KeyboardModifier.ShiftModifier if i == 0 else Qt.KeyboardModifier.NoModifier
        qtbot.mouseClick(viewport, LEFT, mods, _pos(w, x, y))
        qtbot.wait(10)
    qtbot.keyClick(w, Qt.Key.Key_Return)
    after = doc.mask(tid, FRAME)
    assert not after[y0 + 2:y1 - 1, x0 + 2:x1 - 1].any() and np.array_equal(after[:, : x0 - 2], before[:, : x0 - 2])
    assert doc.history.undo_label == "Erase"
    w.actions_.undo.trigger()
    assert np.array_equal(doc.mask(tid, FRAME), before)
    # a new track from 8 clicks 50 ms apart (every second one a double-click, as Qt reports quick pairs)
    doc.select([])
    commands, tracks = doc.history.position, set(doc.tracks)
    outline = [(100, 100), (160, 90), (220, 100), (240, 150), (220, 200), (160, 210), (100, 200), (80, 150)]
    for i, (x, y) in enumerate(outline):
        pos = _pos(w, x, y)
        if i % 2:
            qtbot.mouseDClick(viewport, LEFT, pos=pos)
        else:
            qtbot.mousePress(viewport, LEFT, pos=pos)
        qtbot.mouseRelease(viewport, LEFT, pos=pos)
        qtbot.wait(50)
    assert doc.history.position == commands and len(w.view.tools.polygon_points()) == len(outline)
    qtbot.keyClick(w, Qt.Key.Key_Return)
    assert len(set(doc.tracks) - tracks) == 1 and doc.history.undo_label == "New track"  # one polygon
    m = doc.mask(doc.current, FRAME)
    assert m[150, 160] and m[100, 100] and m[150, 80] and not m[90, 100]
    w.actions_.undo.trigger()  # one undo step takes it all
    assert set(doc.tracks) == tracks and doc.history.position == commands
