"""Propagation in the app: T / Shift+T / Ctrl+T on a worker thread, undo, cancel (Esc), the keyframe keys,
the keyframe strip, the right-click menu on a mask, and the window's letter keys while a number box has the
focus.

The clip is synthetic and tiny (a textured square moving over a textured background, 96x72), so the
optical flow has something to follow and every run takes well under a second.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLineEdit, QMenu

N, H, W = 16, 72, 96
SIZE, X0, Y0, DX, DY = 20, 8, 20, 3, 1  # the square: side, start, motion per frame


def square(frame: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    x, y = X0 + DX * frame, Y0 + DY * frame
    m[y:y + SIZE, x:x + SIZE] = True
    return m


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def moving_square(tmp_path_factory):
    rng = np.random.default_rng(1)
    background = cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (0, 0), 1.5)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8), (0, 0), 1.0)
    texture = np.clip(texture.astype(int) // 2 + 128, 0, 255).astype(np.uint8)
    folder = tmp_path_factory.mktemp("moving_square")
    for t in range(N):
        img = background.copy()
        x, y = X0 + DX * t, Y0 + DY * t
        img[y:y + SIZE, x:x + SIZE] = texture
        cv2.imwrite(str(folder / f"{t:05d}.png"), img)
    return folder


@pytest.fixture
def window(make_window, moving_square, wait_done):
    w = make_window(moving_square)
    wait_done(w)
    doc = w.bridge.doc
    if doc.tracks:  # the untrained test model's own tracks would overlap the square
        doc.delete(list(doc.tracks))
    return w


def _track(w, keyframes: dict[int, np.ndarray]) -> int:
    """A person's track with these keyframes (created on the first, set on the others), selected."""
    doc = w.bridge.doc
    frames = sorted(keyframes)
    tid = doc.create_track(frames[0], keyframes[frames[0]], doc.add_category("square"))
    for f in frames[1:]:
        doc.set_mask(tid, f, keyframes[f])
    doc.select([tid])
    return tid


def _wait(w, qtbot) -> None:
    qtbot.waitUntil(lambda: not w.propagation.running, timeout=30_000)


def _key(w, qtbot, key, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(w, key, modifiers)


def test_propagate_forward_to_the_next_keyframe_then_undo(window, qtbot):
    w = window
    doc = w.bridge.doc
    tid = _track(w, {0: square(0), 10: square(10)})
    keyframe_mask = doc.mask(tid, 10).copy()
    w.propagation.options.set_target("keyframe")
    w.timeline.set_frame(0)
    depth = doc.history.position
    _key(w, qtbot, Qt.Key.Key_T)
    assert w.propagation.running or doc.history.position == depth + 1  # on the worker, or already done
    _wait(w, qtbot)
    track = doc.track(tid)
    assert set(track.frames) == set(range(11))  # 1..9 filled, up to (not over) keyframe 10
    assert track.keyframes == {0, 10}
    assert np.array_equal(doc.mask(tid, 10), keyframe_mask)
    assert min(iou(doc.mask(tid, f), square(f)) for f in range(1, 10)) > 0.7  # the flow followed the square
    assert doc.history.position == depth + 1
    assert "filled 9 of 9" in w.statusBar().currentMessage()
    assert not w.propagation.progress.isVisible()
    # one undo removes the whole run; the keyframes stay
    _key(w, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert set(doc.track(tid).frames) == {0, 10} and doc.track(tid).keyframes == {0, 10}
    assert np.array_equal(doc.mask(tid, 10), keyframe_mask)


def test_propagate_backward_n_frames_with_snap_and_the_choice_is_remembered(window, qtbot, monkeypatch):
    w = window
    doc = w.bridge.doc
    tid = _track(w, {12: square(12)})
    w.propagation.options.set_target("frames")
    w.propagation.options.frames.setValue(3)
    # snap: enabled once the pass has results; each propagated mask goes through the document's snap
    snapped = []
    monkeypatch.setattr(doc, "model_snap", lambda: lambda frame, mask: (snapped.append(frame), mask)[1])
    w.propagation.options.snap_box.setChecked(True)
    assert w.propagation.options.snap()
    w.timeline.set_frame(12)
    _key(w, qtbot, Qt.Key.Key_T, Qt.KeyboardModifier.ShiftModifier)
    _wait(w, qtbot)
    assert set(doc.track(tid).frames) == {9, 10, 11, 12}
    assert snapped == [11, 10, 9]
    assert doc.track(tid).keyframes == {12}
    from vpp_gui.propagation_widgets import PropagationOptions

    again = PropagationOptions(w.settings)  # the next session's row reads the same choice
    assert (again.target(), again.count()) == ("frames", 3)
    assert not again.snap()  # no pass here: snap is off, though remembered
    again.set_snap_available(True)
    assert again.snap()
    again.deleteLater()


def test_fill_between_two_keyframes(window, qtbot):
    w = window
    doc = w.bridge.doc
    tid = _track(w, {2: square(2), 12: square(12)})
    before = {f: doc.mask(tid, f).copy() for f in (2, 12)}
    w.timeline.set_frame(7)
    _key(w, qtbot, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    _wait(w, qtbot)
    track = doc.track(tid)
    assert set(track.frames) == set(range(2, 13))
    assert track.keyframes == {2, 12}
    assert all(np.array_equal(doc.mask(tid, f), m) for f, m in before.items())
    assert min(iou(doc.mask(tid, f), square(f)) for f in range(3, 12)) > 0.7
    # outside two keyframes: refused with the reason, nothing runs
    w.timeline.set_frame(14)
    _key(w, qtbot, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    assert not w.propagation.running
    assert w.statusBar().currentMessage().startswith("frame 14 of track")


def test_cancelled_propagation_is_kept_as_one_undo_step(window, qtbot):
    w = window
    doc = w.bridge.doc
    tid = _track(w, {0: square(0)})
    w.propagation.options.set_target("end")
    runner = w.propagation.runner

    def cancel_after_four(done, _planned):  # runs on the worker thread, inside the progress callback
        if done >= 4:
            runner.job.cancel.set()

    runner.progressed.connect(cancel_after_four, Qt.ConnectionType.DirectConnection)
    w.timeline.set_frame(0)
    depth = doc.history.position
    _key(w, qtbot, Qt.Key.Key_T)
    _wait(w, qtbot)
    runner.progressed.disconnect(cancel_after_four)
    assert set(doc.track(tid).frames) == {0, 1, 2, 3, 4}
    assert doc.last_propagation.cancelled
    assert doc.history.position == depth + 1
    assert "cancelled" in w.statusBar().currentMessage()
    _key(w, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert set(doc.track(tid).frames) == {0}


def test_esc_cancels_a_second_request_is_refused_and_a_deleted_track_drops_the_result(window, qtbot):
    w = window
    doc = w.bridge.doc
    tid = _track(w, {0: square(0)})
    w.propagation.options.set_target("end")
    runner = w.propagation.runner
    gate = threading.Event()
    real_open = runner.open_clip

    def held_open(path):  # the worker waits until the test lets it read frames
        gate.wait(30)
        return real_open(path)

    runner.open_clip = held_open
    try:
        w.timeline.set_frame(0)
        _key(w, qtbot, Qt.Key.Key_T)
        assert w.propagation.running
        _key(w, qtbot, Qt.Key.Key_T)  # a second one while the first runs: refused, with a message
        assert "is running" in w.statusBar().currentMessage()
        _key(w, qtbot, Qt.Key.Key_Escape)
        assert runner.job.cancel.is_set()
        gate.set()
        _wait(w, qtbot)
        assert set(doc.track(tid).frames) == {0, 1}  # the frame in hand when Esc came is kept
        assert doc.last_propagation.cancelled

        gate.clear()
        w.timeline.set_frame(1)
        _key(w, qtbot, Qt.Key.Key_T)
        doc.delete([tid])
        depth = doc.history.position
        gate.set()
        _wait(w, qtbot)
        assert tid not in doc.tracks and doc.history.position == depth
        assert "was deleted" in w.statusBar().currentMessage()
    finally:
        gate.set()
        runner.open_clip = real_open


def test_keyframe_keys_move_to_the_right_frames(window, qtbot):
    w = window
    doc = w.bridge.doc
    tid = _track(w, {2: square(2), 6: square(6), 11: square(11)})
    doc.propagate(tid, 2, 4)  # frames 3, 4 propagated: covered, not keyframes
    assert doc.track(tid).keyframes == {2, 6, 11} and {3, 4} <= set(doc.track(tid).frames)
    ctrl, shift = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier
    w.timeline.set_frame(0)
    seen = []
    for _ in range(4):
        _key(w, qtbot, Qt.Key.Key_Right, ctrl)
        seen.append(w.timeline.frame)
    assert seen == [2, 6, 11, 11]  # no keyframe after 11: stays, and says so
    assert "no keyframe after frame 11" in w.statusBar().currentMessage()
    _key(w, qtbot, Qt.Key.Key_Left, ctrl)
    assert w.timeline.frame == 6
    w.timeline.set_frame(2)
    _key(w, qtbot, Qt.Key.Key_Right, ctrl | shift)
    assert w.timeline.frame == 5  # 3 and 4 have masks
    _key(w, qtbot, Qt.Key.Key_Right, ctrl | shift)
    assert w.timeline.frame == 7
    # the Help list is generated from the actions: the new keys are in it
    from vpp_gui.actions import shortcuts_html

    html = shortcuts_html(w.actions_)
    assert "Propagate forward" in html and "Fill between keyframes" in html and "Next keyframe" in html


def test_strip_shows_coverage_and_keyframes_and_a_click_seeks_and_selects(window, qtbot):
    w = window
    doc = w.bridge.doc
    a = _track(w, {2: square(2), 6: square(6)})
    doc.propagate(a, 2, 4)
    b = _track(w, {9: square(9)})
    strip = w.keyframe_strip
    strip.refresh_now()
    c = strip.canvas
    assert c.row_ids() == [a, b]
    assert c.coverage(a).runs == ((2, 4), (6, 6)) and c.coverage(a).keyframes == (2, 6)
    assert c.coverage(b).runs == ((9, 9),) and c.coverage(b).keyframes == (9,)
    # geometry: frames map to increasing x inside the frame area and back
    xs = [c.x_of(f) for f in range(N)]
    assert xs == sorted(xs) and all(c.frame_at(x) == f for f, x in enumerate(xs))
    assert c.frame_at(2) is None  # the id column
    assert c.track_at(c.cell_center(b, 0).y()) == b
    # a click on a's row at frame 12 selects a and seeks there
    w.timeline.set_frame(0)
    qtbot.mouseClick(c, Qt.MouseButton.LeftButton, pos=c.cell_center(a, 12).toPoint())
    assert doc.selected == (a,) and w.timeline.frame == 12 and c.frame == 12
    # hidden tracks leave the strip; an edit shows at once after refresh
    doc.set_hidden([b])
    strip.refresh_now()
    assert c.row_ids() == [a]
    doc.set_mask(a, 12, square(12))
    strip.refresh_now()
    assert c.coverage(a).keyframes == (2, 6, 12)


def test_strip_frames_line_up_with_the_plots_below_also_when_zoomed(window, qtbot):
    w = window
    a = _track(w, {2: square(2), 6: square(6)})
    strip = w.keyframe_strip
    strip.refresh_now()
    c = strip.canvas
    w.show()
    qtbot.waitExposed(w)

    def misalignment() -> float:
        return max(abs(c.x_of(f) - w.plots.frame_x(f, c)) for f in range(N))

    assert misalignment() <= 1.5  # pixels: each frame's cell centre is over the plots' x = frame
    w.plots.plots["keep_ratio"].setXRange(5, 10, padding=0)
    qtbot.wait(10)
    assert misalignment() <= 1.5 and c.frame_at(c.x_of(7)) == 7
    assert c.frame_at(c.x_of(2)) is None or c.x_of(2) < c._frame_area().left()  # off the plots' left edge
    qtbot.mouseClick(c, Qt.MouseButton.LeftButton, pos=c.cell_center(a, 8).toPoint())
    assert w.timeline.frame == 8
    w.timeline_dock.hide()  # plots hidden: the strip falls back to its own width
    assert c.frame_axis(0, c) is None and all(c.frame_at(c.x_of(f)) == f for f in range(N))


def test_strip_with_1000_tracks_paints_only_the_rows_on_screen(window, qtbot):
    from core.data.rle import encode_mask
    from vpp_gui.keyframe_strip import MAX_ROWS

    w = window
    doc = w.bridge.doc
    cat = doc.add_category("square")
    rle = encode_mask(square(0))
    ids = doc.add_tracks([(cat, 1.0, {f: rle for f in range(i % N, N, 5)}) for i in range(1000)])
    strip = w.keyframe_strip
    strip.refresh_now()
    c = strip.canvas
    assert len(c.row_ids()) == 1000 and len(c.visible_ids()) == MAX_ROWS
    assert strip.scroll.isVisibleTo(strip) and strip.scroll.maximum() == 1000 - MAX_ROWS
    doc.select([ids[900]])
    strip.refresh_now()
    assert ids[900] in c.visible_ids()  # the selected track is scrolled into view
    c.grab()  # paints
    assert len(c._cache) <= 2 * MAX_ROWS  # only rows on screen were computed


def _right_click(w, widget, pos: QPoint) -> None:
    """Through the window, as the platform delivers it: Qt makes the context-menu event from the press
    (QTest's widget overloads skip that step)."""
    QTest.mouseClick(w.windowHandle(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier,
                     widget.mapTo(w, pos))


def test_right_click_menu_on_a_mask(window, qtbot):
    w = window
    doc = w.bridge.doc
    tid = _track(w, {3: square(3)})
    other = _track(w, {3: np.roll(square(3), 40, axis=1)})
    assert doc.selected == (other,)
    w.timeline.set_frame(3)
    w.propagation.options.set_target("frames")
    w.propagation.options.frames.setValue(4)
    a = w.actions_
    cx, cy = X0 + DX * 3 + SIZE / 2, Y0 + DY * 3 + SIZE / 2
    menu = w.mask_menu.menu_for(cx, cy)
    assert doc.selected == (tid,)  # the track under the cursor is selected first
    assert any(act.text() == f"Track #{tid} (square)" for act in menu.actions())  # the title
    listed = [act for act in menu.actions() if not act.isSeparator()]
    assert listed == [a.relabel, a.propagate_forward, a.propagate_backward, a.fill_between, a.accept, a.reject,
                      a.delete]
    assert all(act.isEnabled() for act in listed)
    menu.deleteLater()
    assert w.mask_menu.menu_for(2, 2) is None  # beside every mask: no menu
    # through the real event: a right-click on the square's pixel; the person picks Propagate forward
    view = w.view
    pos = view.graphics.mapFromScene(view.view.mapViewToScene(QPointF(cx, cy)))
    doc.select([other])
    viewport = view.graphics.viewport()
    _right_click(w, viewport, pos)
    shown = QApplication.activePopupWidget()
    assert isinstance(shown, QMenu) and a.propagate_forward in shown.actions()
    assert doc.selected == (tid,)
    shown.hide()
    a.propagate_forward.trigger()  # what choosing it in the menu does
    _wait(w, qtbot)
    assert set(doc.track(tid).frames) == {3, 4, 5, 6, 7}
    assert set(doc.track(other).frames) == {3}
    qtbot.waitUntil(lambda: QApplication.activePopupWidget() is None)
    _right_click(w, viewport, QPoint(1, 1))
    assert QApplication.activePopupWidget() is None  # the corner of the view holds no mask


# -- number boxes (issue 26): while one has the focus, letters are still the window's keys ---------------------
# A number box (the "N fr" box, the minimum score, the PKR slider's value, the sweep's PKR list) takes digits,
# the sign and the decimal point; any other printable key (T, Shift+T, A, Space...) is the window's shortcut.


def _focus(qtbot, widget):
    """Click ``widget`` (as a person would) and return the widget that has the focus then (the box or its
    line edit)."""
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=widget.rect().center())
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not None)
    focus = QApplication.focusWidget()
    assert focus is widget or widget.isAncestorOf(focus)
    return focus


def _type(qtbot, key, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(QApplication.focusWidget(), key, modifiers)


def test_t_and_shift_t_propagate_while_the_frames_box_has_the_focus(window, qtbot):
    w = window
    doc = w.bridge.doc
    opts = w.propagation.options
    opts.set_target("frames")
    tid = _track(w, {6: square(6)})
    w.timeline.set_frame(6)
    edit = _focus(qtbot, opts.frames)
    edit.selectAll()
    for key in (Qt.Key.Key_2, Qt.Key.Key_0):  # digits still go into the box (0 is also "fit" elsewhere)
        _type(qtbot, key)
    assert opts.frames.value() == 20 and "20" in opts.frames.text()
    for key in (Qt.Key.Key_Backspace, Qt.Key.Key_Backspace, Qt.Key.Key_2):
        _type(qtbot, key)
    assert opts.count() == 2
    _type(qtbot, Qt.Key.Key_T)
    _wait(w, qtbot)
    assert set(doc.track(tid).frames) == {6, 7, 8}  # T propagated 2 frames forward
    assert opts.frames.text() == "2 fr"  # nothing typed into the box
    _type(qtbot, Qt.Key.Key_T, Qt.KeyboardModifier.ShiftModifier)
    _wait(w, qtbot)
    assert set(doc.track(tid).frames) == {4, 5, 6, 7, 8}  # Shift+T: 2 frames backward
    assert opts.count() == 2


@pytest.mark.parametrize("box", ["threshold", "pkr", "sweep"])
def test_letters_reach_the_window_from_the_other_number_boxes(window, qtbot, box):
    w = window
    doc = w.bridge.doc
    tid = _track(w, {6: square(6)})
    if box == "sweep":
        w.sweep_dock.show()
        w.sweep_dock.raise_()
        qtbot.waitExposed(w.sweep_panel)
    widget = {"threshold": w.controls.threshold_spin, "pkr": w.controls.pkr_slider,
              "sweep": w.sweep_panel.pkr_edit}[box]
    if box == "pkr":
        widget = widget.findChild(QLineEdit)
    edit = _focus(qtbot, widget)
    before = edit.text()
    _type(qtbot, Qt.Key.Key_A)  # Accept
    assert doc.track(tid).review == "accepted"
    assert edit.text() == before
    _type(qtbot, Qt.Key.Key_X)  # Reject
    assert doc.track(tid).review == "rejected"
    assert edit.text() == before
    edit.selectAll()
    _type(qtbot, Qt.Key.Key_0)  # a digit still goes into the box (0 is also "fit" elsewhere)
    assert edit.text().startswith("0")
    if box == "sweep":  # "1.0, 0.7": the list takes a space too
        _type(qtbot, Qt.Key.Key_Space)
        assert edit.text() == "0 "
